"""The user guide builds with MkDocs in strict mode, and what it shows is true.

* ``mkdocs build --strict`` succeeds (conftest.py's ``site``; broken links, missing anchors and API objects that
  mkdocstrings cannot resolve are errors) and writes every page;
* docs/derived.md is what docs/gen_formulas.py generates from gradflow's symbolic core now;
* every Python block of the tutorial runs, and prints exactly the output shown under it;
* the figures the pages show exist and are small PNGs.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = ("index", "theory", "derived", "tutorial", "examples", "cli", "api")


def test_site_has_every_page(site):
    assert (site / "index.html").is_file()
    for page in PAGES[1:]:
        assert (site / page / "index.html").is_file(), page
    assert not (site / "gen_formulas.py").exists()      # helper scripts stay out of the site


def test_math_is_marked_for_mathjax(site):
    theory = (site / "theory" / "index.html").read_text(encoding="utf-8")
    assert theory.count('class="arithmatex"') > 30
    assert r"\frac{\partial c_t}{\partial c_{t-1}} = \operatorname{diag}(f_t)" in theory
    assert "javascripts/mathjax.js" in theory


def test_api_reference_is_generated_from_docstrings(site):
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("gradient_flow", "count_params", "load_weights", "pascanu_bound", "carousel",
                 "plot_decay", "phase_grid", "write_report"):
        assert f'id="gradflow.{name}"' in api, name
    assert "Measure ‖∂s_T/∂s_k‖₂" in api                 # a docstring's own text
    assert ":class:<code>" not in api                   # the roles hook rewrote them


def test_cli_page_documents_every_subcommand(site):
    from gradflow._cli import COMMANDS, build_parser

    build_parser()                                      # registers every subcommand
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for name in COMMANDS:
        assert f"## `gradflow {name}`" in text, name
    for key in ('"cell"', '"hidden"', '"steps"', '"batch"', '"curve"', '"k"', '"log10_norm_2"',
                '"log10_norm_fro"', '"log10_grad_norm"', '"cell_state"', '"carousel"', '"log10_bound"',
                '"lyapunov"'):
        assert key in text, key


def test_derived_page_is_up_to_date():
    proc = subprocess.run([sys.executable, str(DOCS / "gen_formulas.py"), "--check"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def _tutorial_blocks() -> list[tuple[str, str | None]]:
    """(code, the text block right after it or None), in page order."""
    text = (DOCS / "tutorial.md").read_text(encoding="utf-8")
    fence = re.compile(r"^```(\w+)\n(.*?)^```\n", re.S | re.M)
    found = [(m.group(1), m.group(2), m.start(), m.end()) for m in fence.finditer(text)]
    blocks = []
    for i, (lang, body, _, end) in enumerate(found):
        if lang != "python":
            continue
        after = found[i + 1] if i + 1 < len(found) else None
        shown = after[1] if after and after[0] == "text" and not text[end:after[2]].strip() else None
        blocks.append((body, shown))
    return blocks


def test_tutorial_runs_and_prints_what_it_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                         # it writes figures/, lstm.pt, report/
    blocks = _tutorial_blocks()
    assert len(blocks) >= 10
    namespace: dict = {}
    for i, (code, shown) in enumerate(blocks):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"tutorial block {i}", "exec"), namespace)
        if shown is not None:
            assert out.getvalue().strip() == shown.strip(), f"tutorial block {i}:\n{code}"


def test_figures_exist_and_are_small():
    shown = set()
    for page in DOCS.glob("*.md"):
        shown |= set(re.findall(r"\]\((figures/[^)]+\.png)\)", page.read_text(encoding="utf-8")))
    assert len(shown) >= 4
    for rel in shown:
        png = DOCS / rel
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", rel
        assert 10_000 < png.stat().st_size < 300_000, rel
