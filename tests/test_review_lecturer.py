"""Defects a lecturer found reading reports and slides of cells not reviewed before
(lru, s4d, rg-lru, mingru; cornn, antisymmetric-rnn, lipschitz-rnn, minlstm; slstm,
peephole-lstm, cifg, mamba-zoh). Each test failed before its fix."""

from __future__ import annotations

import math
from types import SimpleNamespace


def test_slow_decay_is_ranked_and_printed_not_rounded_to_zero():
    """S4D (s4d-lin, n = m = 8) decays at -0.5·Δ_min/ln 10 ≈ -2.2e-4 per step: slower than the
    RG-LRU's -0.009. The takeaway slide called rg-lru the slowest decay and printed s4d as -0.000."""
    from gradflow._views.slides import _num, _ranking

    s4d = -0.5 * 0.001 / math.log(10)  # the slowest mode of S4D-Lin: Δ = 0.001, Re A = -1/2
    rates = {"lru": -0.3085, "s4d": s4d, "rg-lru": -0.0090, "exprnn": 2.2e-16}
    b = SimpleNamespace(cells=[SimpleNamespace(name=k) for k in rates],
                        runs={k: SimpleNamespace(rate_full=v) for k, v in rates.items()})
    text = _ranking(b)
    assert "Slowest decay here: \\texttt{s4d} ($-2.2\\times 10^{-4}$)" in text
    assert "fastest: \\texttt{lru} ($-0.308$)" in text
    assert "exprnn" not in text  # rounding, neither growth nor decay
    assert _num(s4d) != "$-0.000$" and _num(-0.0090) == "$-0.009$" and _num(0.0) == "$0$"
    assert _num(float("-inf")) == "$-\\infty$"


def test_cornn_block_prints_a_difference_not_plus_minus():
    """Eq. (2) of a coRNN report read '... W + −Δt γ I' (SymPy's sum printer missed the sign of the
    scalar (−Δt γ)). Written out: ∂z_t/∂h_{t−1} = Δt diag(1 − tanh²(a_t)) W − Δt γ I."""
    from gradflow import get_cell
    from gradflow._symbolic.printing import latex

    for name in ("cornn", "cornn-imex"):
        for block in get_cell(name).jacobian().blocks.values():
            assert "+ -" not in latex(block)
    zh = latex(get_cell("cornn").jacobian().blocks[("z", "h")])
    assert zh.endswith(r"W - \Delta t \gamma I")


def test_a_long_bound_is_named_by_its_equation_in_captions():
    """Figure 1 and Table 2 of a lipschitz-rnn report printed the whole bound, two σ_max of
    (1 − β)(M + Mᵀ) + β(M − Mᵀ) − γI, as one unbreakable formula that ran off the page; the caption
    now names its equation, whose \\label the LaTeX body must then hold (else "(??)")."""
    import re

    from gradflow import get_cell
    from gradflow._views.bibtex import bibliography
    from gradflow._views.derivation import derive_cell
    from gradflow._views.document import Doc
    from gradflow._views.evidence import bound_words_of

    assert bound_words_of(get_cell("lipschitz-rnn")) == "the bound [#eq:lipschitz-rnn-bound] for `lipschitz-rnn`"
    short = bound_words_of(get_cell("antisymmetric-rnn"))  # short enough to print in full
    assert short.startswith("$") and r"\sigma_{\max}(W - W^{T} - \gamma I)" in short
    doc = Doc(bibliography())
    doc.heading(2, "Derivation", label="sec:derivation")
    derive_cell(doc, get_cell("lipschitz-rnn"))
    doc.heading(2, "Numeric evidence", label="sec:evidence")
    doc.para("Measured.")
    doc.figure("decay", "Dashed: " + bound_words_of(get_cell("lipschitz-rnn")) + ".")
    md, tex = doc.markdown(), doc.latex_body()
    # the display holding the bound (‖∂h_t/∂h_k‖₂ ≤ …) is the one the caption names
    tag = re.search(r"\\le (?:(?!\$\$).)*?\\tag\{(\d+)\}", md, flags=re.S)
    assert tag and f"Dashed: the bound ({tag.group(1)}) for `lipschitz-rnn`." in md
    assert re.search(r"\\le [^%]*?\\label\{gf:eq:lipschitz-rnn-bound\}", tex, flags=re.S)
    assert r"\eqref{gf:eq:lipschitz-rnn-bound}" in tex


def _carousel_frame(name: str) -> str:
    from gradflow import get_cell
    from gradflow._views.bibtex import bibliography
    from gradflow._views.slides import _cell_frames

    b = SimpleNamespace(doc=SimpleNamespace(bib=bibliography()))
    frames = [f for f in _cell_frames(b, get_cell(name)) if "the cell state carries the gradient" in f]
    assert len(frames) == 1
    return frames[0]


def test_carousel_slide_words_follow_the_cell():
    """The slide "the cell state carries the gradient" said "no φ'; it decays only as far as the forget
    gates fall below 1" for every cell. The peephole LSTM's factor holds σ' (its gates read c_{t−1})
    and can exceed 1, and CIFG has no forget gate (its factor is 1 − i_t). Oracle: the scalar
    peephole step differentiated by SymPy."""
    import sympy as sp

    c, a_f, a_i, g, w_f, w_i = sp.symbols("c a_f a_i g w_f w_i", real=True)
    f, i = 1 / (1 + sp.exp(-(a_f + w_f * c))), 1 / (1 + sp.exp(-(a_i + w_i * c)))
    dc = sp.diff(f * c + i * g, c)
    assert sp.simplify(dc - f) != 0  # not the forget gate alone: the peephole adds σ' terms
    assert dc.subs({a_f: 3, a_i: 0, c: 2, g: 1, w_f: 2, w_i: 2}).evalf() > 1  # and it can exceed 1

    peep = _carousel_frame("peephole-lstm")
    assert "forget gates fall below 1" not in peep and "no $\\varphi'$" not in peep
    assert "w_{f}" in peep and "gates held fixed" not in peep
    cifg = _carousel_frame("cifg")
    assert "forget gates" not in cifg and "1 - i_{t}" in cifg
    assert "forget gates fall below 1" in _carousel_frame("lstm")


def test_arxiv_references_keep_their_identifier_for_bibtex():
    """The PDF's reference list ended arXiv papers at the year ("Soham De, … Griffin: …, 2024."):
    plainnat prints no eprint field. The Markdown list printed "Were RNNs all we needed?." """
    import re

    from gradflow._views.bibtex import bib_for_bibtex, bibliography, bibliography_text, format_entry, parse_bibtex

    text = bib_for_bibtex(bibliography_text())
    entries = parse_bibtex(text)
    assert entries["de2024griffin"].fields["howpublished"] == "arXiv:2402.19427 [cs.LG]"
    assert entries["feng2024minimal"].fields["howpublished"] == "arXiv:2410.01201 [cs.LG]"
    assert "howpublished" not in entries["gu2022s4d"].fields  # @inproceedings: its booktitle prints
    misc = re.findall(r"@misc\{(\w+),", text)
    assert misc and all("howpublished" in entries[k].fields for k in misc if "eprint" in entries[k].fields)
    md = format_entry(bibliography()["feng2024minimal"], "md")
    assert "Were RNNs all we needed? arXiv:2410.01201" in md and "?." not in md


def test_path_section_and_reproduce_block_typeset_cleanly(tmp_path):
    """pdflatex's log of a report: Section 3's peephole-LSTM sentence ran 60 pt into the margin (its
    factor inline, unbreakable inside \\left( … \\right)), and the Reproduce block's line continuation
    '\\' drew "Font shape `OMS/cmtt/m/n' undefined". Oracle: pdflatex itself."""
    import subprocess

    from conftest import need_program

    from gradflow import get_cell
    from gradflow._views.bibtex import bibliography
    from gradflow._views.document import Doc
    from gradflow._views.evidence import measure
    from gradflow._views.paths import gradient_path_section

    exe = need_program("pdflatex")
    cell = get_cell("peephole-lstm")
    doc = Doc(bibliography())
    doc.heading(2, "Which path carries the gradient")
    gradient_path_section(doc, [cell], measure([cell], 2, 2, 3, 0), 2, 3, 0)
    doc.code("gradflow report peephole-lstm -o r --hidden 2 \\\n    --steps 3")
    md = doc.markdown()
    assert "the cell-state path $\\partial c_t/\\partial c_{t-1}$ of (?), a diagonal matrix," in md
    (tmp_path / "t.tex").write_text(doc.latex("t", "2026-01-01"), encoding="utf-8")
    subprocess.run([exe, "-interaction=nonstopmode", "t.tex"], cwd=tmp_path, capture_output=True, timeout=120)
    log = (tmp_path / "t.log").read_text(encoding="latin-1")
    assert "Output written on t.pdf" in log and "Overfull \\hbox" not in log
    assert "OMS/cmtt" not in log


def test_path_section_names_the_identity_term_it_said_was_absent():
    """Section 3 said "no single diagonal term free of recurrent matrices can be isolated in
    ∂h_t/∂h_{t−1}" for antisymmetric-rnn (whose Section 1 names its identity term, the residual
    path) and for coRNN, whose ∂h_t/∂h_{t−1} holds (1 − γΔt²) I. Oracle: the scalar coRNN step
    differentiated by SymPy with the recurrent weights at 0."""
    import sympy as sp

    from gradflow import get_cell
    from gradflow._views.bibtex import bibliography
    from gradflow._views.document import Doc
    from gradflow._views.evidence import measure
    from gradflow._views.paths import gradient_path_section

    h, z, w, wz, dt, gamma, eps, a = sp.symbols("h z w w_z dt gamma epsilon a", real=True)
    z_new = z + dt * (sp.tanh(w * h + wz * z + a) - gamma * h - eps * z)
    assert sp.simplify(sp.diff(h + dt * z_new, h).subs(w, 0) - (1 - gamma * dt**2)) == 0

    cells = [get_cell("antisymmetric-rnn"), get_cell("cornn")]
    doc = Doc(bibliography())
    gradient_path_section(doc, cells, measure(cells, 2, 2, 3, 0), 2, 3, 0)
    md = doc.markdown()
    assert "no single diagonal term free of recurrent matrices" not in md
    assert "the term $I$ holds no recurrent matrix, but the other term, through recurrent matrices" in md
    assert r"the term $\left(1 - \gamma \Delta t^{2}\right) I$ holds no recurrent matrix" in md
    assert "also passes through $z$" in md


def test_bound_slide_of_a_diagonal_jacobian_names_no_matrix_m():
    """minGRU's bound slide read "one term diag(v) M, at most sup|v| σ_max(M)"; its Jacobian is
    diag(1 − z_t) alone (no M). IndRNN keeps the diag(v) M words (M = diag(u))."""
    from gradflow import get_cell
    from gradflow._views.bibtex import bibliography
    from gradflow._views.slides import _cell_frames

    b = SimpleNamespace(doc=SimpleNamespace(bib=bibliography()))

    def bound_frame(name):
        return next(f for f in _cell_frames(b, get_cell(name)) if ": the bound}" in f)

    mingru = bound_frame("mingru")
    assert "M" not in mingru.split("\\le")[0].replace("Mikolov", "") and "single diagonal matrix" in mingru
    assert "one term $\\operatorname{diag}(v)\\,M$" in bound_frame("indrnn")


def test_off_scale_bound_note_keeps_its_digits():
    """The antisymmetric-rnn slide read "bound up to +0 (off scale)": its bound, 60 steps at
    log10(1 + ε σ_max) = 0.0046 per step, reaches 0.276, printed with no decimals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from gradflow import plot_decay_band

    T = 60
    lag = np.arange(T, 0, -1, dtype=float)  # index k: lag T − k
    flat = SimpleNamespace(median=1e-4 * lag, lo=0.5e-4 * lag, hi=2e-4 * lag)
    ax = plot_decay_band({"antisymmetric-rnn": flat}, bounds={"antisymmetric-rnn": 0.0046 * lag})
    notes = [t.get_text() for t in ax.texts]
    assert "bound up to +0.28 (off scale)" in notes, notes
    plt.close(ax.figure)


def test_lru_and_minlstm_get_the_no_recurrent_matrix_sentence():
    """Section 1 treated LRU unlike S4D (the same rotation-scaling structure: "a statement about a
    single state ... read off in the section on that path") and said of minLSTM that "gradflow derives
    no supremum for diag(f'_t) ... (it holds a state or a weight whose size the recurrence leaves
    open ...)" though f'_t = f_t/(f_t + i_t) reads x_t only. Oracle: the scalar steps in SymPy."""
    import sympy as sp

    from gradflow import get_cell
    from gradflow._views.bibtex import bibliography
    from gradflow._views.derivation import derive_cell
    from gradflow._views.document import Doc

    h, q, x, nu, th, uf, ui, uh = sp.symbols("h q x nu theta u_f u_i u_h", real=True)
    f, i = 1 / (1 + sp.exp(-uf * x)), 1 / (1 + sp.exp(-ui * x))
    dmin = sp.diff(f / (f + i) * h + i / (f + i) * uh * x, h)
    assert h not in dmin.free_symbols and x in dmin.free_symbols  # reads the input, never the state
    rho, om = sp.exp(-sp.exp(nu)), sp.exp(th)
    step = [rho * sp.cos(om) * h - rho * sp.sin(om) * q + x, rho * sp.sin(om) * h + rho * sp.cos(om) * q + x]
    J = sp.Matrix(step).jacobian([h, q])
    assert not (J.free_symbols & {h, q, x})  # the same factor at every step

    for name, words in (("minlstm", "depend on the input $x_t$ and the parameters, never on the previous state"),
                        ("lru", "depend on the parameters only: the same at every step")):
        doc = Doc(bibliography())
        derive_cell(doc, get_cell(name))
        md = doc.markdown()
        assert "The one-step Jacobian holds no recurrent weight matrix" in md and words in md, name
        assert "gradflow derives no supremum" not in md and "is a statement about a single state" not in md


def test_long_carousel_and_block_are_named_by_their_equations_in_captions():
    """A two-column report's Figure 2 (carousel) and Figure 4 (Jacobian) captions printed the peephole
    LSTM's diag(⨀ (f_j ⊙ (c_{j−1} ⊙ (1 − f_j) ⊙ w_f + 1) + g_j ⊙ i_j ⊙ (1 − i_j) ⊙ w_i)) inline:
    75 pt and 34 pt past the column (pdflatex's log). Short ones stay printed."""
    import re

    from gradflow import get_cell
    from gradflow._views.bibtex import bibliography
    from gradflow._views.bound_words import carousel_words, cc_block_words
    from gradflow._views.derivation import derive_cell
    from gradflow._views.document import Doc

    cells = [get_cell("peephole-lstm"), get_cell("slstm")]
    car, blk = carousel_words(cells), cc_block_words(cells)
    assert car.startswith("the product [#eq:peephole-lstm-carousel] for `peephole-lstm`; $")
    assert r"\bigodot_{j=k + 1}^{T} f_{j}" in car and "w_{f}" not in car
    assert blk.startswith("its block in [#eq:peephole-lstm-jacobian] for `peephole-lstm`; $") and "w_{f}" not in blk
    doc = Doc(bibliography())
    doc.heading(2, "Derivation", label="sec:derivation")
    derive_cell(doc, cells[0])
    doc.para("Measured.")
    doc.figure("carousel", f"The carousel ({car}).")
    md, tex = doc.markdown(), doc.latex_body()
    tag = re.search(r"carousel\}\} &= (?:(?!\$\$).)*?\\tag\{(\d+)\}", md, flags=re.S)
    assert tag and f"The carousel (the product ({tag.group(1)}) for `peephole-lstm`;" in md
    assert r"\label{gf:eq:peephole-lstm-carousel}" in tex


def test_decay_caption_names_a_triangle_only_where_one_is_drawn():
    """Every Figure 1 caption ended "a triangle marks the last lag before a median that is exactly
    zero", with no triangle in the figure (lru, s4d, rg-lru, mingru: no median reaches 0).
    Oracle: the plot's own marker (mark_exact_zero returns the lag it marked, or None)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from gradflow._views.evidence import triangle_words
    from gradflow._views.plots import mark_exact_zero

    x = np.arange(6, 0, -1)
    smooth = np.array([-3.0, -2.5, -2.0, -1.5, -1.0, -0.5])
    dead = np.array([-np.inf, -np.inf, -2.0, -1.5, -1.0, -0.5])  # exactly 0 from lag 5 on
    fig, ax = plt.subplots()
    for curve in (smooth, dead):
        drawn = mark_exact_zero(ax, x, curve, "k") is not None
        said = bool(triangle_words({"c": SimpleNamespace(median=curve)}))
        assert drawn == said
    assert triangle_words({"a": SimpleNamespace(median=smooth), "b": SimpleNamespace(median=dead)})
    plt.close(fig)


def test_truncation_sentence_lists_only_blocks_it_removes():
    """sLSTM's 1997-truncation paragraph said truncation "sets the blocks ∂h/∂h and ∂c/∂h and ∂n/∂h
    and ∂n_t/∂c_{t−1} and ∂c_t/∂n_{t−1} to zero"; the last two are 0 in the full Jacobian already.
    Oracle: the scalar sLSTM step in SymPy."""
    import sympy as sp

    from gradflow import get_cell
    from gradflow._views.bibtex import bibliography
    from gradflow._views.derivation import derive_cell
    from gradflow._views.document import Doc

    c, nn, i, f, z = sp.symbols("c n i f z", positive=True)  # gates read h_{t-1} and x_t only
    assert sp.diff(f * nn + i, c) == 0 and sp.diff(f * c + i * z, nn) == 0

    doc = Doc(bibliography())
    derive_cell(doc, get_cell("slstm"))
    md = doc.markdown()
    start = md.index("In the one-step Jacobian this sets")
    sentence = md[start:md.index(" to zero.", start)]
    assert sentence.count("\\frac") == 3 and "partial h_{t - 1}}$ and $" in sentence
    assert "c_{t - 1}}" not in sentence.replace("\\partial c_{t}}", "") and "n_{t - 1}}" not in sentence


def test_peephole_block_prints_one_minus_tanh_squared():
    """The peephole LSTM's blocks read "tanh(c_t) ⊙ (1 − o_t) ⊙ w_o − (tanh²(c_t) − 1)": right, but
    not how anyone writes tanh' (a nested sum SymPy negated when printing). Oracle: the scalar
    d[o(c) tanh(c)]/dc in SymPy, o = σ(a + w_o c)."""
    import sympy as sp

    from gradflow import get_cell
    from gradflow._symbolic.printing import latex

    c, a, w = sp.symbols("c a w_o", real=True)
    o = 1 / (1 + sp.exp(-(a + w * c)))
    assert sp.simplify(sp.diff(o * sp.tanh(c), c) - o * (sp.tanh(c) * (1 - o) * w + (1 - sp.tanh(c) ** 2))) == 0
    tex = latex(get_cell("peephole-lstm").jacobian().blocks[("h", "c")])
    assert r"w_{o} + \left(1 - \tanh^{2}\left(c_{t}\right)\right)" in tex
    assert r"- \left(\tanh^{2}" not in tex


def test_lru_and_s4d_titles_do_not_call_the_state_x():
    """Headings read "LRU, …; state (Re x, Im x) = (h, q)" above a recurrence whose x_t is the
    input. The title names the complex state h + i q instead (and plot panels keep the short form)."""
    from gradflow import get_cell
    from gradflow._views.plots import panel_title

    for name in ("lru", "s4d"):
        cell = get_cell(name)
        assert "x_{t}" in "".join(str(v) for v in cell.recorded.definitions.values())  # x is the input
        assert "Re x" not in cell.title and cell.title.endswith("complex state = h + i q")
        assert "state" not in panel_title(cell.title)
