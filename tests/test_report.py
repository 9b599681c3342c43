"""Derivation reports: content against independent expectations, LaTeX that compiles, safe writing.

Expectations are written here by hand (the LaTeX a reader would write for diag(f_t), the tanh
RNN's diag(1 − h_t ⊙ h_t)·W, γ = 1/4 for the sigmoid) or parsed from the files themselves
(BibTeX entries, \\cite keys); the report must also agree with the symbolic core it prints.

Tests that compile LaTeX need pdflatex: without it they skip with the reason; CI installs TeX Live
and sets GRADFLOW_REQUIRE_TEX=1 (.ci/run), where a missing pdflatex fails them.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import sympy
from conftest import need_program

import gradflow
from gradflow import CELLS, get_cell, latex, write_report
from gradflow._cli import main
from gradflow._views.bibtex import bibliography
from gradflow._views.document import Doc
from gradflow._views.report import compile_pdf, derive_cell

ROOT = Path(__file__).resolve().parents[1]
CLASSICS = ("hochreiter1991untersuchungen", "bengio1994learning", "hochreiter1997lstm", "gers2000forget",
            "pascanu2013difficulty", "cho2014gru", "le2015irnn", "he2016residual", "elman1990",
            "jozefowicz2015empirical")
COMMAND = ["gradflow", "report", "tanh-rnn", "lstm", "-o", "rep", "--hidden", "4", "--steps", "12"]


def _need_pdflatex() -> str:
    return need_program("pdflatex")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = write_report(["tanh-rnn", "lstm"], tmp_path_factory.mktemp("r") / "rep", hidden=4, steps=12,
                       seed=0, command=COMMAND)
    return out


@pytest.fixture(scope="module")
def pdf(report):
    _need_pdflatex()
    return compile_pdf(report)


def _displays(md: str) -> list[str]:
    return re.findall(r"^\$\$\n(.*?)\n\$\$$", md, flags=re.S | re.M)


def _bib_entries(text: str) -> dict[str, str]:
    """Independent minimal BibTeX reader: key -> entry body (checks braces balance per entry)."""
    out = {}
    for m in re.finditer(r"^@(\w+)\{([^,\s]+),", text, flags=re.M):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        assert m.group(2) not in out, f"duplicate key {m.group(2)}"
        out[m.group(2)] = text[m.end():i - 1]
    return out


# -- files ------------------------------------------------------------------------------------------
def test_files_exist(report):
    for name in ("report.md", "report.tex", "references.bib", "provenance.json", "flows.json"):
        assert (report / name).is_file(), name
    for stem in ("decay", "carousel", "spectrum", "jacobian", "phase"):
        assert (report / "figures" / f"{stem}.pdf").read_bytes()[:4] == b"%PDF", stem
        assert (report / "figures" / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
    siblings = [p.name for p in report.parent.iterdir() if p.name != report.name]
    assert siblings == [], f"temporary directories left behind: {siblings}"


def test_figures_print_at_their_size_with_their_data(report):
    """Default preset two-column: every PDF is 6.9 in wide, LaTeX includes it at 6.9 in (shrunk only
    to the line), and each figure has its data beside it as CSV and pgfplots."""
    tex = (report / "report-body.tex").read_text()
    widths = re.findall(r"\\gradflowfigure\{([\d.]+)in\}", tex)
    assert widths and set(widths) == {"6.90"}
    assert "\\providecommand{\\gradflowfigure}[2]{\\ifdim#1>\\linewidth" in tex
    for pdf in (report / "figures").glob("*.pdf"):
        box = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)", pdf.read_bytes())
        assert box and float(box.group(1)) == pytest.approx(6.9 * 72, abs=0.1), pdf.name
    for stem in ("decay", "carousel", "spectrum", "jacobian", "phase"):
        assert (report / "figures" / f"{stem}.csv").is_file() and (report / "figures" / f"{stem}.tex").is_file()
    md = (report / "report.md").read_text()
    assert "10–90 %" in md and "4 weight draws × 4 input sequences" in md
    prov = json.loads((report / "provenance.json").read_text())
    assert prov["figure_size"] == "two-column" and "paths" in prov["claims"]


# -- the derivation ---------------------------------------------------------------------------------
def test_lstm_cell_state_block_is_diag_f(report):
    md = (report / "report.md").read_text()
    tex = (report / "report-body.tex").read_text()
    line = r"\frac{\partial c_{t}}{\partial c_{t - 1}} &= \operatorname{diag}\left(f_{t}\right)"
    assert line in md and line in tex
    # the carousel over many steps: diag of the entry-wise product of the forget gates
    assert r"\operatorname{diag}\left(\bigodot_{j=k + 1}^{t} f_{j}\right)" in md
    assert "no recurrent weight matrix and no activation derivative" in md
    # the 1997 truncation made explicit: both blocks with respect to h_{t-1} set to zero
    assert r"\tilde{J}_{t} &= \begin{bmatrix}" in md
    trunc = md.split(r"\tilde{J}_{t} &= \begin{bmatrix}", 1)[1].split(r"\end{bmatrix}", 1)[0]
    rows = [r.strip().rstrip("\\").strip() for r in trunc.strip().splitlines()]
    assert [r.split(" & ")[0] for r in rows] == ["0", "0"]


def test_tanh_rnn_block(report):
    md = (report / "report.md").read_text()
    # written by hand: ∂h_t/∂h_{t−1} = diag(1 − h_t ⊙ h_t) W, with h⊙h printed as h^{⊙2}
    assert (r"\frac{\partial h_{t}}{\partial h_{t - 1}} &= "
            r"\operatorname{diag}\left(1 - h_{t}^{\odot 2}\right) W") in md
    assert r"\gamma = \sup|\varphi'| = 1$ for $\varphi = \tanh$" in md
    assert r"\sigma_{\max}(W)^{t - k}" in md
    # the report prints exactly what the symbolic core derives
    assert latex(get_cell("tanh-rnn").jacobian()["h", "h"]) in md


def test_block_matches_explicit_sympy_jacobian():
    """The printed tanh block against an explicit n = 2 Jacobian (independent of gradflow)."""
    W = sympy.Matrix(2, 2, sympy.symbols("w0:4"))
    hp = sympy.Matrix(sympy.symbols("p0:2"))
    a = W * hp + sympy.Matrix(sympy.symbols("q0:2"))
    h = a.applyfunc(sympy.tanh)
    expected = sympy.diag(*[1 - v ** 2 for v in h]) * W  # diag(1 − h ⊙ h) W
    assert sympy.simplify(h.jacobian(hp) - expected) == sympy.zeros(2, 2)


def _derivation_md(name: str) -> str:
    doc = Doc(bibliography())
    derive_cell(doc, get_cell(name))
    return doc.markdown()


def test_sigmoid_gamma_quarter_and_1997_identity():
    md = _derivation_md("sigmoid-rnn")
    assert r"\gamma = \sup|\varphi'| = \frac{1}{4}$" in md
    assert r"1/\gamma = 4$" in md
    md = _derivation_md("lstm-1997")
    assert r"\frac{\partial c_{t}}{\partial c_{t - 1}} &= I" in md
    assert r"\right|_{\text{carousel}} &= I" in md
    assert "constant error carousel" in md
    md = _derivation_md("gru")
    # a finite one-step bound exists while |h| < 1 (tests/test_report_claims.py checks it numerically)
    assert "no bound" not in md and r"&\le 1 + \tfrac{1}{2}\sigma_{\max}(W_z)" in md


def test_markdown_math_is_github_safe(report):
    md = (report / "report.md").read_text()
    for block in _displays(md):
        for line in block.splitlines():  # GitHub protects \\ only at the end of a line
            assert "\\\\" not in line.rstrip()[:-2], line
    assert len(_displays(md)) >= 10
    # no backslash before punctuation in math (Markdown may take it for an escape): \| \{ \,
    math = "".join(_displays(md)) + "".join(re.findall(r"\$[^$\n]+\$", md))
    assert not re.search(r"\\[|{},;:!]", math.replace("\\\\", ""))


# -- provenance -------------------------------------------------------------------------------------
def test_provenance(report):
    p = json.loads((report / "provenance.json").read_text())
    assert p["command"] == " ".join(COMMAND)
    assert p["argv"] == COMMAND
    assert p["versions"] == {"gradflow": gradflow.__version__, "numpy": np.__version__,
                             "sympy": sympy.__version__, "matplotlib": matplotlib.__version__,
                             "python": ".".join(map(str, sys.version_info[:3]))}
    assert (p["seed"], p["hidden"], p["input"], p["steps"]) == (0, 4, 4, 12)
    assert p["cells"] == ["tanh-rnn", "lstm"]
    assert datetime.datetime.fromisoformat(p["date"]).tzinfo is not None
    for doc in ("report.md", "report-body.tex"):
        text = (report / doc).read_text()
        assert "Reproduce" in text
        assert "gradflow report tanh-rnn lstm -o rep --hidden 4 --steps 12" in text
        assert f"numpy {np.__version__}" in text
    flows = json.loads((report / "flows.json").read_text())["flows"]
    assert set(flows) == {"tanh-rnn", "lstm"} and len(flows["lstm"]["curve"]) == 12


# -- references -------------------------------------------------------------------------------------
def test_references_bib(report):
    text = (report / "references.bib").read_text()
    # the package's file, with gradflow's own version filled in from the package metadata; for
    # BibTeX's plainnat (which prints no eprint) an arXiv @misc also says howpublished = {arXiv:ID}
    package = (ROOT / "gradflow" / "references.bib").read_text().replace("@VERSION@", gradflow.__version__)
    assert re.sub(r"^  howpublished = \{arXiv:[^}]*\},\n", "", text, flags=re.M) == package
    entries = _bib_entries(text)
    for key, body in entries.items():
        for field in ("author", "title", "year"):
            assert re.search(rf"^\s*{field}\s*=\s*[{{\"\d]", body, flags=re.M), (key, field)
    assert set(CLASSICS) <= set(entries)
    assert {c.reference for c in CELLS.values()} <= set(entries)
    year = re.search(r"year\s*=\s*\{(\d+)\}", entries["hochreiter1997lstm"]).group(1)
    assert year == "1997"
    assert re.search(r"version\s*=\s*\{([^}]*)\}", entries["gradflow"]).group(1) == gradflow.__version__


def test_every_cite_key_exists(report):
    tex = (report / "report-body.tex").read_text()
    keys = set(_bib_entries((report / "references.bib").read_text()))
    cited = {k.strip() for group in re.findall(r"\\cite[pt]\{([^}]*)\}", tex) for k in group.split(",")}
    assert cited and cited <= keys
    assert "\\bibliography{references}" in (report / "report.tex").read_text()
    assert set(CLASSICS) <= cited


# -- LaTeX --------------------------------------------------------------------------------------------
def test_tex_compiles(report, pdf):
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert not (report / "report.log").exists()  # the log (and .aux, .bbl) stay in the work folder
    tex = (report / "report.tex").read_text()
    used = set()
    for group in re.findall(r"\\usepackage(?:\[[^\]]*\])?\{([^}]*)\}", tex):
        used |= {p.strip() for p in group.split(",")}
    assert used <= {"amsmath", "amssymb", "graphicx", "booktabs", "hyperref", "geometry", "natbib"}
    # the layout (overfull lines, undefined citations) is checked in test_latex_layout.py


def test_every_cell_derivation_compiles(tmp_path):
    """The long blocks (LSTM, GRU) of every cell must not break pdflatex."""
    exe = _need_pdflatex()
    doc = Doc(bibliography())
    for cell in CELLS.values():
        derive_cell(doc, cell)
    (tmp_path / "all.tex").write_text(doc.latex("all cells", "today"))
    proc = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "all.tex"], cwd=tmp_path,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout.decode("latin-1")[-2000:]
    assert (tmp_path / "all.pdf").read_bytes()[:4] == b"%PDF"
    assert "Overfull \\hbox" not in (tmp_path / "all.log").read_text(encoding="latin-1")


# -- safe writing ---------------------------------------------------------------------------------
def _small(out, **kw):
    return write_report("tanh-rnn", out, hidden=2, steps=3, **kw)


def test_refuses_to_overwrite_then_force_replaces(report, tmp_path):
    before = (report / "report.md").read_text()
    with pytest.raises(ValueError, match="already contains a report; use --force to replace it"):
        write_report(["tanh-rnn"], report, hidden=2, steps=3)
    assert (report / "report.md").read_text() == before

    out = _small(tmp_path / "rep")
    (out / "stale.txt").write_text("from the old report")
    _small(tmp_path / "rep", seed=3, force=True)
    assert json.loads((out / "provenance.json").read_text())["seed"] == 3
    # issue 9: --force replaces only the report's own files; a file the user added is kept
    assert (out / "stale.txt").read_text() == "from the old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_invalid_output_dirs(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        _small(f)
    with pytest.raises(ValueError, match="not a directory"):
        _small(f / "sub" / "rep")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        _small(busy, force=True)
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(ValueError, match="not writable|cannot write"):
                _small(ro / "rep")
        finally:
            ro.chmod(0o700)
    assert sorted(p.name for p in tmp_path.iterdir()) in (["busy", "file.txt"], ["busy", "file.txt", "ro"])


def test_failed_run_leaves_nothing(tmp_path, monkeypatch):
    import gradflow._views.report as R

    old = _small(tmp_path / "old")
    before = (old / "report.md").read_text()

    def boom(*a, **k):
        raise RuntimeError("simulated failure while drawing")

    monkeypatch.setattr(R, "evidence_section", boom)
    with pytest.raises(RuntimeError):
        _small(tmp_path / "new")
    with pytest.raises(RuntimeError):
        _small(tmp_path / "old", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    assert (old / "report.md").read_text() == before


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown cell"):
        write_report(["no-such-cell"], "/nonexistent/never-created")
    with pytest.raises(ValueError, match="hidden"):
        write_report(["lstm"], "/nonexistent/never-created", hidden=0)
    assert not Path("/nonexistent").exists()


# -- command line ---------------------------------------------------------------------------------
def test_cli_report_records_real_argv(tmp_path):
    out = tmp_path / "cli"
    argv = ["report", "tanh-rnn", "-o", str(out), "--hidden", "2", "--steps", "3"]
    proc = subprocess.run([sys.executable, "-m", "gradflow", *argv], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.md").is_file()
    assert json.loads((out / "provenance.json").read_text())["argv"] == ["gradflow", *argv]


def test_in_process_report_records_its_own_argv(tmp_path, monkeypatch):
    """main([...]) records the arguments it was given, not this process's sys.argv (which once
    differed only in --forget-bias and was recorded instead)."""
    out = tmp_path / "inproc"
    argv = ["report", "lstm", "-o", str(out), "--hidden", "2", "--steps", "3", "--forget-bias", "1"]
    monkeypatch.setattr(sys, "argv", ["gradflow", *[a for a in argv if a not in ("--forget-bias", "1")]])
    assert main(argv) == 0
    p = json.loads((out / "provenance.json").read_text())
    assert p["argv"] == ["gradflow", *argv]
    assert "--forget-bias 1" in p["command"] and p["forget_bias"] == 1.0


def test_cli_errors(tmp_path, capsys, monkeypatch):
    out = tmp_path / "x"
    assert main(["report", "tanh-rnn", "not-a-cell", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradflow: error: unknown cell") and err.count("\n") == 1
    assert not out.exists()

    monkeypatch.setenv("PATH", str(tmp_path))  # no pdflatex on PATH
    assert main(["report", "tanh-rnn", "-o", str(out), "--hidden", "2", "--steps", "3", "--pdf"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradflow: error: pdflatex not found") and err.count("\n") == 1
    assert (out / "report.md").is_file() and (out / "report.tex").is_file()


def test_cli_cite(capsys):
    assert main(["cite"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("@software{gradflow,")
    assert _bib_entries(text).keys() == {"gradflow"}
    assert main(["cite", "--format", "cff"]) == 0
    cff = capsys.readouterr().out
    assert cff == (ROOT / "CITATION.cff").read_text()
    assert "cff-version: 1.2.0" in cff and f"version: {gradflow.__version__}" in cff
