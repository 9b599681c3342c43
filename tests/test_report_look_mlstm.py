"""What a reader sees of the mLSTM cells (matrix memory (C, n); h a read-out): slides that fit their
frames, a spectrum whose notes leave the curves legible, words that fit a three- or four-state memory.

Oracles: pdflatex's own log (no Overfull \\vbox or \\hbox on a beamer frame), matplotlib's rendered
geometry (the bounding box of a note against the display position of every drawn point), and the
cells' states as written in the symbolic core. TeX tests skip without pdflatex.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import need_program

from gradflow import get_cell, latex
from gradflow._views.document import display_row


def _beamer(frames: list[str]) -> str:
    return ("\\documentclass[aspectratio=169,11pt]{beamer}\n\\usepackage{amsmath}\n\\usepackage{amssymb}\n"
            "\\setbeamertemplate{navigation symbols}{}\n\\begin{document}\n" + "\n".join(frames)
            + "\n\\end{document}\n")


@pytest.mark.parametrize("name", ["mlstm-stabilised", "mlstm"])
def test_mlstm_jacobian_and_recurrence_frames_fit(tmp_path, name):
    """mlstm-stabilised: eight fraction-led lines ran 27 pt off a frame and ∂h_t/∂m_{t-1} (17 lines,
    one row) 128 pt off another: frames are filled by height, and a row taller than a frame continues
    on the next."""
    need_program("pdflatex")
    from gradflow._views.slides import _display_frames

    cell = get_cell(name)
    J = cell.jacobian()
    frames = _display_frames("J", [display_row(J.block_name(k), v) for k, v in J.blocks.items()])
    frames += _display_frames("step", [display_row(latex(k), v) for k, v in cell.recorded.definitions.items()])
    (tmp_path / "f.tex").write_text(_beamer(frames), encoding="utf-8")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "f.tex"], cwd=tmp_path,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout.decode("latin-1")[-1500:]
    log = (tmp_path / "f.log").read_text(encoding="latin-1")
    assert "Overfull \\vbox" not in log and "Overfull \\hbox" not in log
    body = "\n".join(frames)
    assert ("\\frac{\\partial h_{t}}{\\partial m_{t - 1}}" in body) == (name == "mlstm-stabilised")


def _mlstm_like_spectra() -> dict[int, np.ndarray]:
    """Five k of a 24-entry state, 20 values per k and σ_21 … σ_24 exactly 0 (the h columns), the
    lowest curve near the bottom left, where the notes were written over it."""
    out = {}
    for k, level in zip((0, 10, 20, 30, 39), (-16.0, -12.0, -8.0, -3.3, 0.0), strict=True):
        s = np.full(24, -np.inf)
        s[:20] = level - np.linspace(0.0, 0.2, 20)
        out[k] = s
    return out


def test_spectrum_notes_leave_every_point_visible():
    """mlstm at n = 4: five notes "k = …: σ_i = 0 for i ≥ 21" were stacked over each other and over
    the k = 0 and k = 10 curves. One note when every k has the same exact zeros, and no drawn point
    under it (matplotlib's rendered boxes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from gradflow._views.plots import figure_style, plot_spectrum

    with figure_style("two-column"):
        fig = Figure(figsize=(2.3, 2.0))
        FigureCanvasAgg(fig)
        ax = plot_spectrum(_mlstm_like_spectra(), ax=fig.subplots())
        renderer = fig.canvas.get_renderer()
        fig.draw(renderer)
        notes = [t for t in ax.texts if t.get_text()]
        assert len(notes) == 1
        text = notes[0].get_text()
        assert "i \\geq 21" in text and "every" in text and text.count("\\sigma_i") == 1
        box = notes[0].get_window_extent(renderer)
        for line in ax.get_lines():
            xy = ax.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]))
            xy = xy[np.isfinite(xy).all(axis=1)]
            inside = ((xy[:, 0] >= box.x0 - 2) & (xy[:, 0] <= box.x1 + 2)
                      & (xy[:, 1] >= box.y0 - 2) & (xy[:, 1] <= box.y1 + 2))
            assert not inside.any(), (line.get_label(), xy[inside][:3], box)


def test_spectrum_keeps_distinct_notes_apart():
    """Different zeros per k stay one note per k (what the report's other cells need)."""
    from matplotlib.figure import Figure

    from gradflow._views.plots import plot_spectrum

    ax = plot_spectrum({0: np.full(4, -np.inf), 3: np.array([0.0, -1.0, -2.0, -np.inf]),
                        5: np.array([0.0, -1.0, -np.inf, -np.inf])}, ax=Figure().subplots())
    text = " ".join(t.get_text() for t in ax.texts)
    assert "$k = 0$: every $\\sigma_i = 0$" in text
    assert "$k = 3$: $\\sigma_i = 0$, $i \\geq 4$" in text and "$k = 5$: $\\sigma_i = 0$, $i \\geq 3$" in text


def test_jacobian_block_labels_of_a_one_entry_state_do_not_overlap():
    """mlstm-stabilised's m (one entry) sat next to n: the labels "n" and "m" were drawn over each
    other on both axes. Oracle: the rendered boxes of the tick labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from gradflow._views.plots import figure_style, plot_jacobian

    sizes = (4, 16, 4, 1)
    with figure_style("two-column"):
        fig = Figure(figsize=(2.0, 1.8))
        FigureCanvasAgg(fig)
        ax = plot_jacobian(np.eye(25), ax=fig.subplots(), state_names=("h", "C", "n", "m"), state_sizes=sizes)
        renderer = fig.canvas.get_renderer()
        fig.draw(renderer)
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            boxes = [t.get_window_extent(renderer) for t in labels if t.get_text()]
            assert len(boxes) == 4
            for a in range(4):
                for b in range(a + 1, 4):
                    assert not boxes[a].overlaps(boxes[b]), (labels[a].get_text(), labels[b].get_text())


def test_mlstm_stabilised_spectrum_says_exact_zeros_where_mpmath_finds_them():
    """A step whose stabiliser resets (m_t = ĩ_t, so ∂m_t/∂s_{t−1} = 0: a zero row) after steps that
    never read h (zero columns) leaves ∂s_T/∂s_k of rank N − n − 1: σ_{N−n} was NaN, "not resolved",
    in the report's Figure 3 at k = 10, 20, 30; it is exactly 0. Oracle: the product of the same
    float64 Jacobians in mpmath at 60 digits, whose zero values sit 40+ orders below the rest."""
    import math

    import mpmath as mp

    import gradflow as gf

    n, T = 2, 12
    net = gf.network("mlstm-stabilised", n, 3, seed=0)
    x = gf.random_inputs(T, 3, seed=0)
    ks = [0, 4, 8]
    got = gf.singular_values(net, x, ks)
    traj = net.unroll(x)
    N = net.state_size
    for k in ks:
        with mp.workdps(60):
            P = None
            for t in range(T, k, -1):
                Jm = mp.matrix(np.asarray(net.step_jacobian(traj, t))[0].tolist())
                P = Jm if P is None else P * Jm
            ref = sorted((float(mp.log10(v)) if v > 0 else -math.inf for v in mp.svd_r(P, compute_uv=False)),
                         reverse=True)
        ref = np.array(ref)
        zero = ref < ref[0] - 40  # exactly 0 in the product of these matrices (rounding at 60 digits)
        assert zero.sum() == n + 1, (k, ref)
        assert not np.isnan(got[k]).any(), (k, got[k])
        np.testing.assert_array_equal(np.isneginf(got[k]), zero)
        np.testing.assert_allclose(got[k][~zero], ref[~zero], rtol=0, atol=1e-6)
    assert N == n + n * n + n + 1


@pytest.fixture(scope="module")
def mlstm_lstm_md(tmp_path_factory):
    """The Markdown of a small report; its figures are not rendered (empty files: the words are tested)."""
    from pathlib import Path

    import gradflow as gf
    import gradflow._views.plots as plots

    def empty_files(fig, stem, formats=("pdf", "png"), dpi=200):
        paths = [Path(f"{stem}.{f}") for f in formats]
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"")
        return paths

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "save_figure", empty_files)
        out = gf.write_report(["mlstm", "lstm"], tmp_path_factory.mktemp("look") / "rep", hidden=2, steps=6)
    return (out / "report.md").read_text(encoding="utf-8")


def test_decay_table_names_the_mlstm_memory_block(mlstm_lstm_md):
    """The table's column "rate ∂c_T/∂c_k" held mlstm's memory block ∂(C_T, n_T)/∂(C_k, n_k) under
    the LSTM's name: the caption says which block each memory row is."""
    md = mlstm_lstm_md
    caption = next(ln for ln in md.splitlines() if ln.startswith("*Table 2.*"))
    row = next(ln for ln in md.splitlines() if ln.startswith("| `mlstm` |"))
    assert row.count("–") == 2  # no carousel and no bound for mlstm, but a memory-block rate
    assert "`mlstm`" in caption and "\\partial (C_T, n_T)/\\partial (C_k, n_k)" in caption


def test_a_shared_cell_state_formula_is_printed_once():
    """Figures 2 and 4 of `report lru mamba-zoh mingru slstm gru lstm` read "diag(f_T) for `slstm`;
    diag(f_T) for `lstm`": the same formula twice. Each formula once, naming every cell that has it."""
    from gradflow._views.bound_words import carousel_words, cc_block_words

    cells = [get_cell(n) for n in ("slstm", "lstm", "lstm-1997")]
    words = cc_block_words(cells)
    assert words == ("$\\operatorname{diag}\\left(f_{T}\\right)$ for `slstm` and `lstm`; $I$ for `lstm-1997`")
    car = carousel_words(cells)
    assert car.count("\\bigodot") == 1 and car.endswith("for `slstm` and `lstm`; $I$ for `lstm-1997`")


def test_two_columns_do_not_stretch_paragraphs_apart(tmp_path):
    """Page 1 of `report lru mamba-zoh mingru slstm gru lstm --columns 2` had its paragraphs spread
    over the column with blank bands between them (two-column article is \\flushbottom): pdflatex
    reported "Underfull \\vbox (badness 10000) has occurred while \\output is active" when the
    first display did not fit under the introduction. Introductions of a few lengths, then the LRU."""
    exe = need_program("pdflatex")
    from gradflow._views.bibtex import bibliography
    from gradflow._views.document import Doc
    from gradflow._views.report import derive_cell

    bad = []
    for extra in (1, 5):
        doc = Doc(bibliography())
        for words in (140, 110, 170, 3 * extra):
            doc.para(" ".join(["gradient"] * words))
        derive_cell(doc, get_cell("lru"))
        work = tmp_path / str(extra)
        work.mkdir()
        (work / "two.tex").write_text(doc.latex("two columns", "today", columns=2), encoding="utf-8")
        proc = subprocess.run([exe, "-interaction=nonstopmode", "two.tex"], cwd=work, capture_output=True,
                              timeout=120)
        assert (work / "two.pdf").exists(), proc.stdout.decode("latin-1")[-2000:]
        if "Underfull \\vbox" in (work / "two.log").read_text(encoding="latin-1"):
            bad.append(extra)
    assert not bad


def test_notation_defines_the_matrix_memory_symbols(mlstm_lstm_md):
    """mLSTM's derivation prints vec C_t (n² entries), k_t ⊗ v_t, (q_tᵀ ⊗ I) C_t and the ones column
    in 1 f_t; the Notation paragraph defined none of them. Checked against the cell as written:
    C_t has n² entries, and the printed recurrence uses ⊗ and the spread 1 f_t."""

    from gradflow._symbolic.cell import n

    md = mlstm_lstm_md
    notation = next(ln for ln in md.splitlines() if ln.startswith("Notation."))
    assert get_cell("mlstm").size("C") == n ** 2
    assert "\\otimes" in md and "\\left(1 f_{t}\\right)" in md
    assert "\\otimes" in notation and "Kronecker" in notation
    assert "\\operatorname{vec}" in notation and "column of ones" in notation
    assert "q^{T} \\otimes I" in notation  # the read-out C q written as it is printed


def test_notation_stays_short_without_a_matrix_memory():
    """No Kronecker sentence for cells that print no ⊗ (oracle: the printed recurrences)."""
    from gradflow._views.report import notation_extras

    assert notation_extras([get_cell("lstm"), get_cell("gru")]) == ""
    assert "Kronecker" in notation_extras([get_cell("lstm"), get_cell("mlstm-stabilised")])


def test_a_row_continued_on_the_next_frame_names_its_left_side():
    """mlstm-stabilised's ∂h_t/∂m_{t−1} runs over three frames; the second and third began with a bare
    "− diag(…)": each now starts "∂h_t/∂m_{t−1} = ⋯"."""
    from gradflow._views.slides import _display_frames

    J = get_cell("mlstm-stabilised").jacobian()
    frames = _display_frames("J", [display_row(J.block_name(k), v) for k, v in J.blocks.items()])
    lhs = "\\frac{\\partial h_{t}}{\\partial m_{t - 1}}"
    holding = [f for f in frames if lhs in f]
    assert len(holding) >= 2
    for f in holding[1:]:
        first = f.split("\\begin{align*}\n", 1)[1].split(" \\\\\n", 1)[0]
        assert first == f"{lhs} &= \\cdots", first


def test_spectrum_says_which_k_are_not_resolved_and_ticks_do_not_collide():
    """The default report (n = 16, T = 100): mlstm's panel showed only k = 75 (three points) and
    k = 99; k = 0, 25, 50 had all 272 non-zero σ_i NaN (not resolved) and 16 exact zeros, and said
    nothing. Its index ticks, 0 30 60 … 270, ran into each other. Oracles: the arrays themselves
    (counts of NaN) and the rendered tick-label boxes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from gradflow._views.plots import figure_style, plot_spectrum

    N, zeros = 288, 16
    spectra = {}
    for k in (0, 25, 50):
        s = np.full(N, np.nan)
        s[N - zeros:] = -np.inf
        spectra[k] = s
    part = np.full(N, np.nan)
    part[:16] = -7.5
    part[N - zeros:] = -np.inf
    spectra[75] = part
    top = np.full(N, -np.inf)
    top[:N - zeros] = 0.0
    spectra[99] = top
    with figure_style("two-column"):
        fig = Figure(figsize=(2.3, 2.2))
        FigureCanvasAgg(fig)
        ax = plot_spectrum(spectra, ax=fig.subplots())
        renderer = fig.canvas.get_renderer()
        fig.draw(renderer)
        text = " ".join(t.get_text() for t in ax.texts)
        assert "$k = 0, 25, 50$: no $\\sigma_i$ resolved" in text  # none of their 272 non-zero values
        assert "$k = 75$: $17 \\leq i \\leq 272$ not resolved" in text
        assert "every $k$: $\\sigma_i = 0$, $i \\geq 273$" in text
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels()
                 if t.get_text() and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
        assert len(boxes) >= 2
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_mlstm_derivations_fit_one_column_of_two(tmp_path):
    """`report mlstm mlstm-stabilised lstm --columns 2`: a line of ∂h_t/∂m_{t−1} with no + − ⊙ left to
    cut at (… q_tᵀ diag(n_{t−1}) 1 diag(…)) ran 9.9 pt into the margin. Oracle: pdflatex's log; the
    broken lines joined again are the printed expression, token for token."""
    exe = need_program("pdflatex")
    from gradflow._views.bibtex import bibliography
    from gradflow._views.document import BUDGET_TWO, Doc, break_math
    from gradflow._views.report import derive_cell

    block = get_cell("mlstm-stabilised").jacobian()["h", "m"]
    tex = latex(block)
    lines = break_math(tex, BUDGET_TWO, 12.0, 12.0)
    joined = " ".join(t for _, t in lines).replace("\\bigl", "\\left").replace("\\bigr", "\\right")
    joined = joined.replace("\\Bigl", "\\left").replace("\\Bigr", "\\right")
    assert joined.split() == tex.split()
    doc = Doc(bibliography())
    for name in ("mlstm", "mlstm-stabilised"):
        derive_cell(doc, get_cell(name))
    (tmp_path / "two.tex").write_text(doc.latex("two columns", "today", columns=2), encoding="utf-8")
    proc = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "two.tex"], cwd=tmp_path,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout.decode("latin-1")[-2000:]
    assert "Overfull \\hbox" not in (tmp_path / "two.log").read_text(encoding="latin-1")
