"""The LaTeX layout of reports and slides: breakable numbered displays, references, BibTeX, files.

Oracles: the logs of pdflatex and bibtex run here by hand on a copy of the written sources
(Overfull \\hbox, undefined citations and references), the written files themselves (every
\\label referenced, no \\resizebox, no absolute path), and for the line breaking the printed
expression itself: the broken lines, joined again, are the unbroken LaTeX character for character.

Tests that compile need pdflatex (and bibtex): without them they skip, and under
GRADFLOW_REQUIRE_TEX=1 (CI) they fail. The smallest report that has every layout element is used
(one LSTM, n = 2, T = 3).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import need_program

from gradflow import get_cell, latex, write_report
from gradflow._cli import main
from gradflow._views.bibtex import bibliography
from gradflow._views.document import BUDGET_MD, BUDGET_TWO, Doc, break_math, heading_text, visible_width
from gradflow._views.report import derive_cell

LSTM_HH = get_cell("lstm").jacobian()["h", "h"]


# -- line breaking (no TeX needed) ----------------------------------------------------------------
def _joined(lines: list[tuple[int, str]]) -> str:
    """Lines put back together, fixed-size delimiters back to \\left/\\right."""
    s = " ".join(text for _, text in lines)
    return re.sub(r"\\[Bb]ig([lr])", lambda m: "\\left" if m.group(1) == "l" else "\\right", s)


@pytest.mark.parametrize("budget", [30.0, 38.0, 62.0])
def test_broken_lines_are_the_expression_and_fit(budget):
    tex = latex(LSTM_HH)
    lines = break_math(tex, budget)
    assert len(lines) > 1
    assert _joined(lines).split() == tex.split()  # nothing lost, added or reordered
    for _, text in lines:
        assert text.count("{") == text.count("}"), text  # a cut never falls inside braces
        assert text.count("\\left") == text.count("\\right"), text  # only whole \left…\right pairs
        # every line fits, except a single factor that has no operator to cut at
        assert visible_width(text) <= budget or not re.search(r" (\+|-|\\odot) ", text), text


def test_derive_latex_breaks_the_long_lstm_block(capsys):
    assert main(["derive", "lstm", "--latex"]) == 0
    out = capsys.readouterr().out
    for line in out.splitlines():  # ∂h_t/∂h_{t-1} was one line of ~650 characters
        assert visible_width(line) <= BUDGET_MD + 4, line
    block = out.split(r"\frac{\partial h_{t}}{\partial h_{t - 1}} &= ", 1)[1].split(r"\frac{\partial c_{t}}", 1)[0]
    lines = [ln.strip().removesuffix("\\\\").strip().removeprefix("&\\quad").strip() for ln in block.splitlines()]
    assert len(lines) == 4  # one summand per line: diag(…) W_o + diag(…) W_f + diag(…) W_i + diag(…) W_g
    assert " ".join(lines).split() == latex(LSTM_HH).split()


# -- notation and headings ------------------------------------------------------------------------
def test_one_notation():
    doc = Doc(bibliography())
    for name in ("tanh-rnn", "lstm-1997", "residual-rnn"):
        derive_cell(doc, get_cell(name))
    for text in (doc.markdown(), doc.latex_body(2)):
        assert "\\circ" not in text and "\\mathbb{I}" not in text
        assert not re.search(r"\\phi\b", text) and "\\varphi'" in text  # one glyph for the activation
        assert r"\tanh^{2}\left(c_{t}\right)" in text and r"\right)^{\odot" not in text
        assert r"\frac{\partial c_{t}}{\partial c_{t - 1}} &= I" in text
    md = doc.markdown()
    heading = next(ln for ln in md.splitlines() if ln.startswith("### ") and "residual-rnn" in ln)
    assert r"$h_t = h_{t-1} + \tanh(\cdot)$" in heading
    assert not re.search(r"[_{}]", re.sub(r"\$[^$]*\$|`[^`]*`", "", heading))  # no raw h_{t-1}
    assert heading_text("Elman RNN, tanh") == "Elman RNN, tanh"


# -- a written report -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lstm_report(tmp_path_factory):
    """A two-column report with slides, written to a relative path (as typed on a command line)."""
    need_program("pdflatex")
    need_program("bibtex")
    base = tmp_path_factory.mktemp("layout")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        assert main(["report", "lstm", "-o", "rep", "--hidden", "2", "--steps", "3", "--columns", "2",
                     "--slides"]) == 0
    return base / "rep"


def _compile_by_hand(src: Path, name: str, work: Path) -> str:
    """pdflatex, bibtex, pdflatex ×2 (slides: pdflatex ×2) on a copy of the sources; the last log."""
    shutil.copytree(src, work)
    steps = [["pdflatex"], ["bibtex"], ["pdflatex"], ["pdflatex"]] if name != "slides" else [["pdflatex"]] * 2
    for cmd in steps:
        args = [*cmd, name] if cmd == ["bibtex"] else [*cmd, "-interaction=nonstopmode", "-halt-on-error",
                                                         f"{name}.tex"]
        proc = subprocess.run(args, cwd=work, capture_output=True, timeout=120)
        assert proc.returncode in ((0, 1) if cmd == ["bibtex"] else (0,)), proc.stdout.decode("latin-1")[-1500:]
    return (work / f"{name}.log").read_text(encoding="latin-1")


def _stand_ins(bin_dir: Path, bibtex: bool = True) -> None:
    """pdflatex and bibtex stand-ins that write every auxiliary file the real ones write."""
    bin_dir.mkdir()
    (bin_dir / "pdflatex").write_text(
        '#!/bin/sh\nfor a; do n="$a"; done; n="${n%.tex}"\n'
        "echo > \"$n.aux\"; echo log > \"$n.log\"; echo out > \"$n.out\"\n"
        "[ \"$n\" = report ] && printf '%s\\n' '\\bibdata{references}' > report.aux\n"
        'printf "%%PDF-1.5 stand-in" > "$n.pdf"\n')
    if bibtex:
        (bin_dir / "bibtex").write_text('#!/bin/sh\necho bbl > "$1.bbl"; echo blg > "$1.blg"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)


@pytest.mark.parametrize("bibtex", [True, False])
def test_pdf_leaves_only_the_pdfs_and_the_sources(tmp_path, monkeypatch, capsys, bibtex):
    from _fast_report import fake_build

    import gradflow._views.report as R

    def build(stage, cells, out, **kw):  # the real LaTeX sources' names, a few bytes each
        fake_build(stage, cells, out, **kw)
        (stage / "report-body.tex").write_text("x\n")
        if kw.get("slides"):
            (stage / "slides.tex").write_text("x\n")

    _stand_ins(tmp_path / "bin", bibtex)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no other TeX programs
    monkeypatch.setattr(R, "_build", build)
    out = tmp_path / "rep"
    assert main(["report", "lstm", "-o", str(out), "--slides", "--pdf"]) == 0
    top = {p.name for p in out.iterdir()}
    assert top == {"report.md", "report.tex", "report-body.tex", "references.bib", "flows.json",
                   "provenance.json", "figures", "slides.tex", "report.pdf", "slides.pdf",
                   ".gradflow-manifest.json"}
    err = capsys.readouterr().err
    assert (err == "") if bibtex else (err.count("\n") == 1 and "bibtex not found" in err), err


def test_written_files_name_no_absolute_path(lstm_report):
    root = str(lstm_report.parent)
    for f in lstm_report.rglob("*"):
        if f.suffix in (".md", ".tex", ".json", ".bib"):
            text = f.read_text(encoding="utf-8")
            assert root not in text and str(Path.home()) + "/" not in text, f.name
            assert not re.search(r"(?<![\w.])/(tmp|home|usr|root|work)/", text), f.name
    assert "gradflow report lstm -o rep --hidden 2" in (lstm_report / "report-body.tex").read_text()


def test_every_label_is_referenced_and_nothing_is_resized(lstm_report):
    body = (lstm_report / "report-body.tex").read_text()
    for name in ("report.tex", "report-body.tex", "slides.tex"):
        assert "\\resizebox" not in (lstm_report / name).read_text()
    labels = re.findall(r"\\label\{([^}]+)\}", body)
    assert {"gf:fig:decay", "gf:fig:carousel", "gf:tab:1", "gf:eq:lstm-jacobian", "gf:sec:evidence"} <= set(labels)
    refs = set(re.findall(r"\\(?:eq)?ref\{([^}]+)\}", body))
    assert set(labels) <= refs and refs <= set(labels)
    # floats stay near the text that cites them
    assert not re.search(r"\\begin\{(figure|table)\*?\}(?!\[htbp\])", body)
    assert "\\begin{align}" in body and "\\notag" in body  # numbered, breakable displays
    assert "\\input{report-body}" in (lstm_report / "report.tex").read_text()
    assert "\\documentclass" not in body and "\\begin{document}" not in body


@pytest.mark.parametrize("name", ["report", "report-one-column", "slides"])
def test_compiles_without_overfull_lines_or_undefined_citations(lstm_report, tmp_path, name):
    src = lstm_report
    if name == "report-one-column":  # the same body in a one-column page
        src = tmp_path / "one"
        shutil.copytree(lstm_report, src)
        tex = (lstm_report / "report.tex").read_text()
        assert "[10pt,twocolumn]" in tex
        (src / f"{name}.tex").write_text(tex.replace("[10pt,twocolumn]", "[11pt]"))
    log = _compile_by_hand(src, name, tmp_path / "w")
    assert "Overfull \\hbox" not in log
    assert not re.search(r"(Citation|Reference) .* undefined", log)
    if name != "slides":
        bbl = (tmp_path / "w" / f"{name}.bbl").read_text(encoding="latin-1")
        cited = {k for g in re.findall(r"\\cite[pt]\{([^}]*)\}", (lstm_report / "report-body.tex").read_text())
                 for k in g.split(",")}
        assert cited and cited == set(re.findall(r"\\bibitem\[[^\]]*\]\{([^}]+)\}", bbl, flags=re.S))


def test_long_jacobians_fit_one_column_of_two(tmp_path):
    """LSTM and GRU blocks broken to a column of a two-column page, the normalised sLSTM's 3 × 3 block matrix
    in text style: no overfull line, nothing scaled."""
    exe = need_program("pdflatex")
    doc = Doc(bibliography())
    for name in ("lstm", "gru", "slstm-normalised"):
        derive_cell(doc, get_cell(name))
    (tmp_path / "two.tex").write_text(doc.latex("two columns", "today", columns=2))
    proc = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "two.tex"], cwd=tmp_path,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout.decode("latin-1")[-2000:]
    assert "Overfull \\hbox" not in (tmp_path / "two.log").read_text(encoding="latin-1")
    tex = (tmp_path / "two.tex").read_text()
    assert "\\resizebox" not in tex and "\\arraycolsep" in tex  # the 3 × 3 product, narrower gaps
    assert BUDGET_TWO < 62


def test_bad_columns(tmp_path, capsys):
    assert main(["report", "lstm", "-o", str(tmp_path / "r"), "--columns", "3"]) == 2
    assert capsys.readouterr().err == "gradflow: error: --columns must be 1 or 2, got '3'\n"
    with pytest.raises(ValueError, match="columns must be 1 or 2"):
        write_report("lstm", tmp_path / "r", columns=True)
    assert not (tmp_path / "r").exists()
