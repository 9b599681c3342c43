"""What a lecturer sees in a report: one notation, tables that parse, captions true for the cells
shown, every float cited by a sentence, titles inside their figure, integer lag ticks, slides with
one decay frame per cell, no absolute path (issue 12).

Oracles: the Markdown table grammar (a row has as many unescaped ``|`` as its header), matplotlib's
own text extents against the figure's box, tick values, the equations written out here, the
definition of the carousel (the full and the truncated one-step c → c blocks agree, so their
difference at lag 1 is exactly zero), and pdflatex's log (no overfull box) where pdflatex exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import need_program

from gradflow._cli import main

VIEWS = Path(__file__).resolve().parents[1] / "gradflow" / "_views"
CELLS = ["mingru", "lstm"]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A small report with slides, written to an ABSOLUTE path (as a script would pass it)."""
    import gradflow._views.plots as plots

    real = plots.save_figure

    def coarse(fig, stem, formats=("pdf", "png"), dpi=200):  # the PNGs are not looked at here: low dpi
        return real(fig, stem, formats=formats, dpi=20)

    out = tmp_path_factory.mktemp("looks") / "rep"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "save_figure", coarse)
        assert main(["report", *CELLS, "-o", str(out), "--hidden", "2", "--input", "2", "--steps", "3",
                     "--slides"]) == 0
    return out


def _sections(md: str) -> dict[str, str]:
    """Level-3 sections of report.md by the cell name in their heading's backticks."""
    out = {}
    for part in re.split(r"\n(?=### )", md):
        m = re.match(r"### .*\(`([\w-]+)`\)", part)
        if m:
            out[m.group(1)] = part
    return out


# -- notation -------------------------------------------------------------------------------------
def test_no_view_writes_another_notation():
    """⊙ for Hadamard products and I for the identity, everywhere: the views' own sentences too."""
    for f in VIEWS.glob("*.py"):
        src = f.read_text(encoding="utf-8")
        if f.name == "document.py":  # its normaliser names \circ to replace it
            src = src.replace(r're.sub(r"\\(circ|odot)\b", "oo", s)', "")
        assert not re.search(r"\\\\circ\b|\\circ\b", src), f.name
        assert "mathbb{I}" not in src, f.name


def test_written_report_uses_one_notation(report):
    for name in ("report.md", "report-body.tex", "slides.tex"):
        text = (report / name).read_text(encoding="utf-8")
        assert "\\circ" not in text and "\\mathbb{I}" not in text, name


def test_markdown_tables_have_as_many_cells_as_their_header(report):
    md = (report / "report.md").read_text(encoding="utf-8")
    tables = re.findall(r"(?:^\|.*\|\n)+", md, flags=re.M)
    assert len(tables) >= 2  # the one-unit walk-through and the decay table
    for t in tables:
        widths = {len(re.findall(r"(?<!\\)\|", row)) for row in t.splitlines()}
        assert len(widths) == 1, t  # a bare | inside $…$ splits a GFM cell


# -- sentences true for the cells shown --------------------------------------------------------
def test_only_a_bare_identity_is_called_a_residual_path():
    from gradflow import get_cell
    from gradflow._views.bibtex import bibliography
    from gradflow._views.document import Doc
    from gradflow._views.report import derive_cell

    doc = Doc(bibliography())
    for name in ("residual-rnn", "mingru"):
        derive_cell(doc, get_cell(name))
    sec = _sections(doc.markdown())
    assert "running sum" in sec["residual-rnn"] and "identity term" in sec["residual-rnn"]
    # minGRU: ∂h_t/∂h_{t-1} = diag(1 - z_t), z_t = σ(·) ∈ (0, 1): a contraction, not a residual path
    assert r"\operatorname{diag}\left(1 - z_{t}\right)" in sec["mingru"]
    assert "running sum" not in sec["mingru"] and "identity term" not in sec["mingru"]
    assert "sum of terms" not in sec["mingru"] and r"\le 1^{t - k}" in sec["mingru"]


def test_bound_formulas_are_the_derived_ones():
    from gradflow import get_cell
    from gradflow._views.bound_words import bound_formula, identity_summand

    assert bound_formula(get_cell("residual-rnn")) == r"\left(1 + \sigma_{\max}(W)\right)^{T-k}"
    assert bound_formula(get_cell("mingru")) == "1^{T-k}"
    assert identity_summand(get_cell("residual-rnn")) and not identity_summand(get_cell("mingru"))
    assert not identity_summand(get_cell("tanh-rnn"))


def test_carousel_words_follow_each_cell():
    from gradflow import get_cell
    from gradflow._views.bound_words import carousel_words

    text = carousel_words([get_cell(n) for n in ("lstm", "lstm-1997", "slstm-normalised")])
    assert r"$\operatorname{diag}\left(\bigodot_{j=k + 1}^{T} f_{j}\right)$ for `lstm`" in text
    assert "$I$ for `lstm-1997`" in text
    assert r"\left(1 - \kappa_{j}\right)\right)$ for `slstm-normalised`" in text


def test_bound_captions_print_each_cells_own_bound(report):
    md = (report / "report.md").read_text(encoding="utf-8")
    fig1 = next(ln for ln in md.splitlines() if ln.startswith("*Figure 1.*"))
    tab = next(ln for ln in md.splitlines() if ln.startswith("*Table 2.*"))
    for cap in (fig1, tab):
        assert "$1^{T-k}$ for `mingru`" in cap, cap  # ‖diag(1 − z_t)‖₂ < 1: not (1 + σ_max(W))^{T−k}
        assert "sigma_{\\max}(W))^{T-k}" not in cap, cap


def test_carousel_caption_names_only_the_cells_shown(report):
    md = (report / "report.md").read_text(encoding="utf-8")
    cap = next(ln for ln in md.splitlines() if ln.startswith("*Figure 2.*"))
    assert "1997" not in cap.split("[@")[0].replace("1997-truncated", "").replace("Schmidhuber 1997", "")
    assert r"\operatorname{diag}\left(\bigodot_{j=k + 1}^{T} f_{j}\right)$ for `lstm`" in cap
    assert r"one-step block is $\operatorname{diag}(f_T)$" not in cap


def test_lag_one_difference_is_exactly_zero_for_every_cell_state_cell():
    """The caption's "at lag 1 the difference is exactly zero", on the cells it now covers."""
    from gradflow._numeric.flow import network, random_inputs
    from gradflow._numeric.paths import cell_state_paths

    for name in ("lstm", "lstm-1997", "slstm-normalised"):
        net = network(name, 3, 2, seed=1)
        P = cell_state_paths(net, random_inputs(5, 2, seed=1))
        assert np.isneginf(P.through_h[0][-1]), name  # log10 of an exact zero
        assert np.all(np.isfinite(P.through_h[0][:-2])), name


def test_every_float_is_cited_by_a_sentence_before_it(report):
    md = (report / "report.md").read_text(encoding="utf-8")
    floats = [(m.group(1) or m.group(3), m.group(2) or m.group(4), m.start())
              for m in re.finditer(r"^!\[(Figure) (\d+)\]|^\*(Table) (\d+)\.\*", md, flags=re.M)]
    assert len(floats) >= 6
    lines = md.splitlines(keepends=True)
    starts = np.cumsum([0] + [len(ln) for ln in lines])
    prose = [(int(a), ln) for a, ln in zip(starts, lines, strict=False)
             if not ln.startswith(("*Figure", "*Table", "![", "|"))]
    for kind, n, at in floats:
        cite = re.compile(rf"\b{kind}s?~? ?(?:\d+, )*(?:\d+ and )?{n}\b|\b{kind}s? (?:\d+, )*\d+ and {n}\b")
        first = [a for a, ln in prose if cite.search(ln)]
        assert first and min(first) < at, f"{kind} {n} is not cited before it appears"
    assert not re.search(r"\.\) \(Figure", md)  # a citation glued after a closed parenthesis


# -- figures -------------------------------------------------------------------------------------
def test_long_panel_titles_are_broken_to_fit():
    from gradflow._views.figure_fit import fit_titles, title_overflows
    from gradflow._views.plots import figure_style, preset_figure

    with figure_style("two-column"):
        fig, axes = preset_figure(3, "two-column")
        for ax in axes:
            ax.plot([0, 1], [0, 1])
        axes[2].set_title("LSTM without forget gate (1997), a panel title too long")
        axes[0].set_title("tanh")
        assert title_overflows(fig) == ["LSTM without forget gate (1997), a panel title too long"]
        fit_titles(fig)
        assert title_overflows(fig) == []
        assert axes[2].get_title().count("\n") >= 1 and axes[0].get_title() == "tanh"


def test_lag_ticks_are_whole_steps():
    from matplotlib.figure import Figure

    from gradflow._numeric.spread import spread_of
    from gradflow._views.plots import plot_decay_band

    rng = np.random.default_rng(0)
    curves = np.cumsum(-rng.random((6, 7)), axis=1)[:, ::-1]  # T = 7: default ticks would be 1.0, 1.5, …
    ax = Figure().subplots()
    plot_decay_band({"tanh-rnn": spread_of(curves)}, ax=ax)
    ax.figure.canvas.draw() if hasattr(ax.figure.canvas, "draw") else None
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


# -- slides -----------------------------------------------------------------------------------------
def test_slides_show_each_cells_decay(report):
    tex = (report / "slides.tex").read_text(encoding="utf-8")
    for cell in CELLS:
        frame = re.search(r"\\begin\{frame\}\{\\texttt\{" + re.escape(cell.replace("-", "-"))
                          + r"\}: the measured decay\}(.*?)\\end\{frame\}", tex, flags=re.S)
        assert frame, cell
        pdf = re.search(r"\\includegraphics\[[^]]*\]\{([^}]+)\}", frame.group(1)).group(1)
        assert (report / pdf).read_bytes().startswith(b"%PDF"), pdf
    assert "keeps the gradient" not in tex  # the fixed claim, replaced by a ranking from the rates


def test_the_path_split_slides_are_drawn_at_the_slide_width(report):
    tex = (report / "slides.tex").read_text(encoding="utf-8")
    stems = re.findall(r"figures/(slide-paths-[a-z0-9-]+)\.pdf", tex)
    assert stems and "figures/carousel.pdf" not in tex
    for stem in stems:
        box = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)", (report / "figures" / f"{stem}.pdf").read_bytes())
        assert box and float(box.group(1)) == pytest.approx(4.8 * 72, abs=0.1), stem


def test_the_joint_decay_slide_is_drawn_at_the_slide_width(report):
    """Not the report's page-wide figure shrunk onto a slide: its own figure, 4.8 in wide (the
    slide preset), so that its fonts print at 8-10 pt on the slide."""
    tex = (report / "slides.tex").read_text(encoding="utf-8")
    frame = re.search(r"\\begin\{frame\}\{Measured: the gradient norm against the lag\}(.*?)\\end\{frame\}",
                      tex, flags=re.S)
    assert frame and "figures/slide-decay.pdf" in frame.group(1)
    box = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)", (report / "figures" / "slide-decay.pdf").read_bytes())
    assert box and float(box.group(1)) == pytest.approx(4.8 * 72, abs=0.1)


def test_takeaway_ranks_from_the_rates():
    from gradflow._views.slides import _ranking

    rates = {"a": -0.30, "b": -0.05, "c": 0.01, "d": float("-inf")}
    b = SimpleNamespace(cells=[SimpleNamespace(name=k) for k in rates],
                        runs={k: SimpleNamespace(rate_full=v) for k, v in rates.items()})
    text = _ranking(b)
    assert "Slowest decay here: \\texttt{b} ($-0.050$)" in text
    assert "fastest: \\texttt{a} ($-0.300$)" in text
    assert "Growing, not decaying: \\texttt{c}." in text
    one = SimpleNamespace(cells=b.cells[2:3], runs=b.runs)
    assert "decay" not in _ranking(one).replace("not decaying", "")  # no "slowest decay" for a growing cell


def test_slides_compile_without_overfull_boxes(report, tmp_path):
    need_program("pdflatex")
    import shutil

    work = tmp_path / "s"
    shutil.copytree(report, work)
    for _ in range(2):
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "slides.tex"],
                              cwd=work, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stdout.decode("latin-1")[-1500:]
    log = (work / "slides.log").read_text(encoding="latin-1")
    assert "Overfull \\hbox" not in log and "Overfull \\vbox" not in log


# -- reproducibility without the writer's folders -------------------------------------------------
def test_no_absolute_path_in_what_is_written(report):
    """The printed commands name the output folder relatively; provenance.json's argv keeps the real
    command line (a record of what ran, test_report.test_cli_report_records_real_argv)."""
    import json

    root = str(report.parent)
    for f in report.rglob("*"):
        if f.suffix in (".md", ".tex"):
            assert root not in f.read_text(encoding="utf-8"), f.name
    prov = json.loads((report / "provenance.json").read_text(encoding="utf-8"))
    assert root not in prov["command"] and root not in prov["canonical_command"]
    assert str(report) in prov["argv"]
    md = (report / "report.md").read_text(encoding="utf-8")
    assert "-o rep " in md


def test_relative_output():
    from gradflow._views.report import relative_output

    assert relative_output("gradflow report lstm -o /tmp/x/r1 --force") == "gradflow report lstm -o r1 --force"
    assert relative_output("gradflow report lstm --output=/a/b") == "gradflow report lstm --output=b"
    assert relative_output("gradflow report lstm -o rel/dir") == "gradflow report lstm -o rel/dir"


def test_the_band_uses_the_init_of_the_run():
    """The decay figure's band and the sentences beside it describe the same networks: a report that
    runs mamba-zoh with its reference init drew its band with the default init (−0.24 vs −0.0004 per
    step at n = m = 16). Oracle: the curves of runs built here with that init."""
    from gradflow._numeric.flow import gradient_flow, network, random_inputs
    from gradflow._numeric.spread import flow_spread

    sp = flow_spread("mamba-zoh", 4, 4, 6, seed=0, seeds=2, batch=2, init="mamba")
    rows = []
    for s in (0, 1):
        net = network("mamba-zoh", 4, 4, seed=s, init="mamba")
        rows.append(np.asarray(gradient_flow(net, random_inputs(6, 4, batch=2, seed=s), lyapunov=False,
                                             bound=False).full.log10_norm_2))
    np.testing.assert_allclose(sp.curves, np.concatenate(rows), rtol=0, atol=1e-12)  # seed-major
    other = flow_spread("mamba-zoh", 4, 4, 6, seed=0, seeds=2, batch=2)  # the default init differs
    assert not np.allclose(other.curves, sp.curves)


def test_a_cell_without_a_cell_state_is_not_sent_to_one():
    """LRU's state is (h, q): no cell state, no carousel section below it."""
    from gradflow import get_cell
    from gradflow._views.bibtex import bibliography
    from gradflow._views.document import Doc
    from gradflow._views.report import derive_cell

    doc = Doc(bibliography())
    derive_cell(doc, get_cell("lru"))
    derive_cell(doc, get_cell("lstm-1997"))
    sec = _sections(doc.markdown())
    # LRU is written as S4D is: no recurrent matrix, factors that never read the state
    assert "cell state" not in sec["lru"] and "holds no recurrent weight matrix" in sec["lru"]
    assert "two-state cell the decisive path is the cell state, below" in sec["lstm-1997"]


def test_a_spectrum_with_nothing_resolved_says_so():
    from matplotlib.figure import Figure

    from gradflow._views.plots import plot_spectrum

    ax = Figure().subplots()
    plot_spectrum({0: np.full(3, np.nan), 5: np.array([0.0, -1.0, -2.0])}, ax=ax)
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == ["$k = 5$"]  # k = 0 has no curve ...
    assert any("k = 0" in t.get_text() and "resolved" in t.get_text() for t in ax.texts)  # ... and says why


def test_a_long_jacobian_is_spread_over_frames_that_fit(tmp_path):
    """sLSTM's nine-block Jacobian: nine display lines with four fractions ran 18 pt off a frame."""
    need_program("pdflatex")
    from gradflow import get_cell
    from gradflow._views.document import display_row
    from gradflow._views.slides import _display_frames

    J = get_cell("slstm-normalised").jacobian()
    frames = _display_frames("J", [display_row(J.block_name(k), v) for k, v in J.blocks.items()])
    assert len(frames) >= 2
    (tmp_path / "f.tex").write_text(
        "\\documentclass[aspectratio=169,11pt]{beamer}\n\\usepackage{amsmath}\n\\usepackage{amssymb}\n"
        "\\begin{document}\n" + "\n".join(frames) + "\n\\end{document}\n", encoding="utf-8")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "f.tex"], cwd=tmp_path,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout.decode("latin-1")[-1500:]
    log = (tmp_path / "f.log").read_text(encoding="latin-1")
    assert "Overfull \\vbox" not in log and "Overfull \\hbox" not in log


def test_no_string_that_writes_text_holds_a_control_character():
    """"\\tanh" in a plain Python string is a TAB and "anh": the residual RNN's note printed it so. Every
    string constant of the layers that write text and LaTeX (symbolic, views), as Python's own parser
    reads it, is free of \\t \\b \\f \\a \\v \\r (the CLI's progress bars use \\r on purpose)."""
    import ast

    bad = re.compile("[\t\b\f\a\v\r]")
    root = VIEWS.parent
    for f in sorted([*(root / "_symbolic").rglob("*.py"), *(root / "_views").rglob("*.py")]):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and bad.search(node.value):
                raise AssertionError(f"{f.relative_to(root)}:{node.lineno}: {node.value[:60]!r}")


def test_written_report_has_no_control_characters(report):
    for name in ("report.md", "report-body.tex", "slides.tex"):
        assert not re.search("[\t\b\f\a\v\r]", (report / name).read_text(encoding="utf-8")), name


def test_a_shared_spectrum_legend_means_the_same_k_in_every_panel():
    """A panel that cannot draw k = 0 drew k = 99 in k = 0's colour, under a legend shared by all panels."""
    from matplotlib.colors import to_rgba

    from gradflow._views.plots import figure_legend, figure_style, plot_spectrum, preset_figure

    full = {0: np.array([0.0, -1.0]), 50: np.array([-1.0, -2.0]), 99: np.array([-2.0, -3.0])}
    part = {0: np.full(2, np.nan), 50: np.full(2, np.nan), 99: np.array([-2.5, -3.5])}
    with figure_style("two-column"):
        fig, axes = preset_figure(2, "two-column")
        plot_spectrum(part, ax=axes[0])
        plot_spectrum(full, ax=axes[1])
        figure_legend(fig, axes)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["$k = 0$", "$k = 50$", "$k = 99$"]
    colour = {lab: to_rgba(h.get_color()) for lab, h in zip(labels, legend.legend_handles, strict=True)}
    for ax in axes:
        for line in ax.get_lines():
            assert to_rgba(line.get_color()) == colour[line.get_label()], line.get_label()
