"""Derivation reports: the mathematics of gradient flow and the numbers that confirm it, as files.

:func:`write_report` writes, for one or more cells, a self-contained report directory::

    report.md          GitHub-renderable Markdown ($$ display math, $ inline math)
    report.tex         the same content as a standalone LaTeX article (pdflatex)
    figures/           every figure as PDF and PNG
    references.bib     the bibliography (gradflow's package data)
    flows.json         the measured curves behind the figures
    provenance.json    command line, versions, seed, sizes, date

This module is a view: every formula is printed from the symbolic core (the cells' recorded
recurrences, :meth:`Cell.jacobian`, :mod:`gradflow._symbolic.many_steps`), every number from the numeric
engine (:mod:`gradflow._numeric.flow`, :mod:`gradflow._numeric.analysis`); only the connecting prose is
written here. Claims in the prose that depend on the algebra (no W in the carousel, an identity
block, a finite bound) are checked on the symbolic objects before they are stated.

The report is built in a temporary sibling directory and moved into place only when complete,
so a failed run never leaves a half-written report behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sympy as sp
from sympy import BlockMatrix, Identity, MatMul, MatrixSymbol, ZeroMatrix, block_collapse

from .._checks import positive_int
from .._symbolic.cell import Cell
from .._symbolic.cell import n as _n
from .._symbolic.cell import t as _t
from .._symbolic.cells import get_cell
from .._symbolic.many_steps import carousel, pascanu_bound, state_product, truncated_jacobian
from .._symbolic.many_steps import j as _j
from .._symbolic.nodes import Diag, Elementwise
from .._symbolic.printing import latex
from .bibtex import bibliography_text, parse_bibtex
from .document import Doc, Row, bmatrix, display_row, fmt_num, visible_width

#: files whose presence marks a directory as holding a gradflow report
REPORT_MARKERS = ("report.md", "report.tex", "provenance.json")

#: Debian packages that provide pdflatex and every LaTeX package report.tex uses
TEXLIVE_PACKAGES = ("texlive-latex-base", "texlive-latex-recommended", "texlive-fonts-recommended")


# ================================================================================================
# The derivation, cell by cell (every formula from the symbolic core)
# ================================================================================================


def _relation_row(tex: str, rel: str) -> Row:
    """A display row from ``lhs rel rhs`` exactly as the symbolic core printed it."""
    lhs, _, rhs = tex.partition(f" {rel} ")
    return Row(lhs, (rhs,), rel)


def _weight_names(expr) -> list[str]:
    """Names of the weight matrices W... that occur in ``expr``."""
    return sorted({a.name for a in expr.atoms(MatrixSymbol) if a.name == "W" or a.name.startswith("W_")})


def _has_activation(expr) -> bool:
    return any(isinstance(a, Elementwise) for a in sp.preorder_traversal(expr))


def _elman_form(cell: Cell):
    """(activation, pre-activation, diagonal vector) when ∂h_t/∂h_{t−1} = diag(φ'(a_t))·W, else None."""
    if cell.states != ("h",):
        return None
    st = cell.recorded
    h_def = st.definitions.get(st.new["h"])
    block = cell.jacobian()["h", "h"]
    if not isinstance(h_def, Elementwise) or not isinstance(block, MatMul) or len(block.args) != 2:
        return None
    D, W = block.args
    if not isinstance(D, Diag) or not isinstance(W, MatrixSymbol):
        return None
    return h_def.activation, h_def.arg, D.vector


def _block_names_matrix(cell: Cell, time, zero=()) -> str:
    J = cell.jacobian(time)
    return bmatrix([["0" if (a, b) in zero else J.block_name((a, b)) for b in cell.states]
                     for a in cell.states])


def derive_cell(doc: Doc, cell: Cell, number: int) -> None:
    st = cell.recorded
    J = cell.jacobian()
    ref = f" [@{cell.reference}]" if cell.reference else ""
    doc.heading(3, f"1.{number} {cell.title} (`{cell.name}`)")

    # the recurrence ----------------------------------------------------------------------------
    doc.para("One time step of the cell, with its named intermediate quantities in the order they "
             f"are computed{ref}:")
    doc.display([display_row(latex(s), e) for s, e in st.definitions.items()])

    # the one-step Jacobian -------------------------------------------------------------------
    if len(cell.states) == 1:
        doc.para(f"The state is $s_t = {latex(st.new['h'])}$. Differentiating the step through the named "
                 "quantities with gradflow's matrix chain rule gives the one-step Jacobian, in numerator "
                 "layout (row $i$ holds the derivatives of the $i$-th entry of the new state; an "
                 "$n \\times n$ matrix):")
    else:
        names = ", ".join(latex(st.new[s]) for s in cell.states)
        doc.para(f"The state is the pair $s_t = ({names})$, so the one-step Jacobian "
                 f"$\\partial s_t/\\partial s_{{t-1}}$ has {len(cell.states) ** 2} blocks, each "
                 "$n \\times n$ in numerator layout (row $i$ of a block holds the derivatives of the "
                 "$i$-th entry of its numerator). Differentiating the step through the named "
                 "quantities with gradflow's matrix chain rule gives:")
    doc.display([display_row(J.block_name(key), v) for key, v in J.blocks.items()])
    elman = _elman_form(cell)
    if elman is not None:
        act, arg, vec = elman
        doc.para("The diagonal factor is the derivative of the activation at the pre-activation, "
                 "entry by entry, written through the quantities of the step:")
        doc.display([display_row(act.latex + "'\\left(" + latex(arg) + "\\right)", vec)])

    # the product over time -------------------------------------------------------------------
    prod = state_product(cell)
    lhs, _, full_rhs = prod.latex().partition(" = ")
    body = prod.expr.args[0]
    doc.para("Over $t-k$ steps the chain rule multiplies one-step Jacobians, the latest on the left "
             "[@hochreiter1991untersuchungen; bengio1994learning]:")
    if len(cell.states) == 1 and visible_width(latex(body)) <= 48:
        doc.display([Row(lhs, (full_rhs,))])
    else:
        Jj = MatrixSymbol(f"J_{{{sp.latex(_j)}}}", *body.shape)
        compact = prod.expr.func(Jj, *prod.expr.args[1:])
        doc.display([Row(lhs, (latex(compact),))])
        if len(cell.states) == 1:
            doc.para("where $J_j$ is the one-step Jacobian above at step $j$ (every $t$ replaced by $j$).")
        else:
            doc.para("where $J_j$ is the one-step Jacobian at step $j$, assembled from the blocks above "
                     "with every $t$ replaced by $j$, the state ordered as "
                     f"$({', '.join(cell.states)})$:")
            doc.display([Row(f"J_{{{sp.latex(_j)}}}", (_block_names_matrix(cell, _j),))])
    doc.para("Whether the product shrinks or grows geometrically in $t-k$ depends on the sizes of "
             "its factors; the next paragraphs bound them and Section 2 measures them.")

    # the bound -----------------------------------------------------------------------------------
    try:
        bound = pascanu_bound(cell)
    except ValueError:
        bound = None
    if bound is not None and elman is not None and bound.gamma is not None:
        act = elman[0]
        g = bound.gamma
        doc.para("Since $\\lVert \\operatorname{diag}(v) \\rVert_2 = \\max_i |v_i|$ and the spectral norm "
                 "is submultiplicative, every factor has norm at most $\\gamma\\,\\sigma_{\\max}(W)$ with "
                 f"$\\gamma = \\sup|\\phi'| = {sp.latex(g)}$ for $\\phi = {act.latex}$. This is the bound "
                 "of @[pascanu2013difficulty]:")
        doc.display([_relation_row(bound.latex(), "\\le")])
        doc.para(f"Hence $\\sigma_{{\\max}}(W) < 1/\\gamma = {sp.latex(1 / g)}$ is sufficient for the "
                 "gradient to vanish geometrically in $t-k$. It is not necessary, and "
                 f"$\\sigma_{{\\max}}(W) > {sp.latex(1 / g)}$ does not by itself imply that gradients "
                 "explode.")
    elif bound is not None:
        doc.para("The one-step Jacobian is a sum of terms $\\operatorname{diag}(v)\\,M$. Bounding each "
                 "by $\\sup|v|\\,\\sigma_{\\max}(M)$, in the manner of @[pascanu2013difficulty], gives")
        doc.display([_relation_row(bound.latex(), "\\le")])
        identity_terms = [s for s, M in bound.terms if isinstance(M, Identity) and s >= 1]
        if identity_terms:
            doc.para("Its rate is at least 1 whatever $W$ is, so this bound cannot show that gradients "
                     "vanish: the identity term passes the gradient from one step to the previous one "
                     "unchanged, the mechanism of residual connections [@he2016residual].")
    elif len(cell.states) == 1:
        doc.para("A diagonal factor of this Jacobian involves quantities that gradflow cannot bound from "
                 "the recurrence alone (such as the previous state or a pre-activation), so no bound "
                 "of the form of @[pascanu2013difficulty] follows from the one-step Jacobian; the "
                 "measurements in Section 2 take its place.")
    else:
        doc.para("The bound of @[pascanu2013difficulty] is a statement about a single state; for this "
                 "two-state cell the decisive path is the cell state, below.")

    if "c" in cell.states:
        _derive_carousel(doc, cell)


def _derive_carousel(doc: Doc, cell: Cell) -> None:
    J = cell.jacobian()
    car = carousel(cell)
    doc.heading(4, f"The cell state of `{cell.name}`: the constant error carousel")
    doc.para("The cell-state block of the one-step Jacobian is")
    doc.display([display_row(J.block_name(("c", "c")), J["c", "c"])])
    no_w, no_phi = not _weight_names(car.expr), not _has_activation(car.expr)
    if car.constant:
        doc.para("the identity, so along the cell state alone (the path "
                 "$c_k \\to c_{k+1} \\to \\dots \\to c_t$, gates held fixed) the product over any lag "
                 "$t-k$ is the identity too:")
        doc.display([_relation_row(car.latex(), "=")])
        doc.para("This is the constant error carousel of @[hochreiter1997lstm]: error flowing back along "
                 "the cell state is neither multiplied by a weight matrix nor damped by an activation "
                 "derivative, however long the lag.")
    else:
        doc.para("Along the cell state alone (the path $c_k \\to c_{k+1} \\to \\dots \\to c_t$, gates held "
                 "fixed) the product of these blocks is a product of diagonal matrices, hence diagonal:")
        doc.display([_relation_row(car.latex(), "=")])
        if no_w and no_phi:
            doc.para("It contains no recurrent weight matrix and no activation derivative $\\phi'$: each "
                     "unit's gradient is multiplied by its own forget gate at every step, and decays only "
                     "as far as its forget gates fall below 1. The network controls this decay through "
                     "the forget gate introduced by @[gers2000forget]; initialising the forget-gate bias "
                     "at 1 [@jozefowicz2015empirical] moves the initial forget gates towards 1 and slows "
                     "the decay at the start of training. With all forget gates equal to 1 the product "
                     "is the identity: the constant error carousel of @[hochreiter1997lstm].")
        else:
            present = ", ".join(f"${w}$" for w in _weight_names(car.expr)) or "activation derivatives"
            doc.para(f"Unlike the 1997 carousel, this path contains {present}.")

    # the 1997 truncated gradient versus the full one ---------------------------------------------
    T = truncated_jacobian(cell)
    zero = {key for key, v in T.blocks.items() if isinstance(v, ZeroMatrix)}
    cut = [J.block_name(key) for key in J.blocks if key in zero]
    doc.heading(4, f"The 1997 truncated gradient versus the full gradient (`{cell.name}`)")
    doc.para("@[hochreiter1997lstm] trained the LSTM with a truncated gradient: error that reaches the "
             "gates and the cell input through the recurrent connections $h_{t-1}$ is not propagated "
             "further back. In the one-step Jacobian this sets the blocks "
             + " and ".join(f"${c}$" for c in cut) + " to zero. With the state ordered as "
             f"$({', '.join(cell.states)})$, the full and the truncated one-step Jacobians are")
    doc.display([Row("J_{t}", (_block_names_matrix(cell, _t),)),
                 Row("\\tilde{J}_{t}", (_block_names_matrix(cell, _t, zero),))])
    doc.para("with the blocks that remain in the truncated Jacobian")
    doc.display([display_row(T.block_name(key), v) for key, v in T.blocks.items() if key not in zero])

    def placeholder(time):
        Jt = cell.jacobian(time)
        return BlockMatrix([[ZeroMatrix(_n, _n) if (a, b) in zero
                             else MatrixSymbol(Jt.block_name((a, b)), _n, _n)
                             for b in cell.states] for a in cell.states])

    two = block_collapse(placeholder(_t) * placeholder(_t - 1))
    S = len(cell.states)
    doc.para("Two truncated steps multiply to")
    doc.display([Row("\\tilde{J}_{t}\\,\\tilde{J}_{t-1}",
                      (bmatrix([[latex(two.blocks[a, b]) for b in range(S)] for a in range(S)]),))])
    w_cut = sorted({w for key in zero for w in _weight_names(J.blocks[key])})
    doc.para("The first block column stays zero, so the $c \\to c$ block of any product of truncated "
             "Jacobians is the product of the $c \\to c$ blocks alone: under truncation the gradient "
             "along the cell state is exactly the carousel above. The full gradient keeps the blocks "
             "with respect to $h_{t-1}$; they contain the recurrent weights "
             + ", ".join(f"${w}$" for w in w_cut)
             + " and activation derivatives, and they add paths that leave the cell state and return "
             "to it. Section 2 separates the two numerically.")


# ================================================================================================
# Numbers and figures
# ================================================================================================


def _grid(count: int, width: float = 4.0, height: float = 3.0, cols: int | None = None):
    """A figure with ``count`` panels (2 columns, 3 beyond four panels) and its Axes."""
    from matplotlib.figure import Figure

    cols = min(cols or (2 if count <= 4 else 3), count)
    rows = -(-count // cols)
    fig = Figure(figsize=(width * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, list(axes[:count])


def _spectrum_ks(steps: int) -> list[int]:
    return sorted({0, steps // 4, steps // 2, (3 * steps) // 4, steps - 1})


def _bound_reads_w(cell: Cell) -> bool:
    """True when the Pascanu bound's matrices are W itself (not W − Wᵀ − γI): σ_max(W) is its input."""
    try:
        terms = pascanu_bound(cell).terms
    except ValueError:
        return False
    return all(isinstance(M, Identity) or getattr(M, "name", None) == "W" for _, M in terms)


def _measure(cells: list[Cell], hidden: int, input: int, steps: int, seed: int,
             forget_bias: float | None = None) -> dict:
    from .._numeric.flow import decay_rate, gradient_flow, network, random_inputs, singular_values

    out = {}
    ks = _spectrum_ks(steps)
    for cell in cells:
        fb = forget_bias if cell.has_forget_gate else None
        net = network(cell, hidden, input, seed=seed, forget_bias=fb)
        inputs = random_inputs(steps, input, seed=seed)
        flow = gradient_flow(net, inputs, carousel="c" in cell.states)
        traj = net.unroll(inputs)
        J_T = np.asarray(net.step_jacobian(traj, steps))[0]
        spectra = singular_values(net, inputs, ks)
        extra = {"rate_full": decay_rate(flow.full.mean()["log10_norm_2"]), "rate_cell_state": None,
                 "rate_carousel": None, "rate_bound": None, "sigma_max_W": None}
        if flow.cell_state is not None:
            extra["rate_cell_state"] = decay_rate(flow.cell_state.mean()["log10_norm_2"])
        if flow.carousel is not None:
            extra["rate_carousel"] = decay_rate(flow.carousel.mean()["log10_norm_2"])
        if flow.bound is not None:
            extra["rate_bound"] = decay_rate(flow.bound)
        if "W" in net.weights.arrays and _bound_reads_w(cell):
            extra["sigma_max_W"] = float(np.linalg.norm(np.asarray(net.weights.arrays["W"]), 2))
        out[cell.name] = {"cell": cell, "net": net, "flow": flow, "J_T": J_T, "spectra": spectra,
                          "init": cell.default_init, **extra}
    return out


def _numeric_section(doc: Doc, stage: Path, cells: list[Cell], runs: dict, hidden: int, input: int,
                     steps: int, seed: int, forget_bias: float | None = None) -> dict:
    from .._numeric.analysis import decay_table, phase_grid
    from .plots import (
        paper_style,
        plot_carousel,
        plot_decay,
        plot_jacobian,
        plot_phase_diagram,
        plot_spectrum,
        save_figure,
    )

    figures: dict[str, list[str]] = {}
    fig_dir = stage / "figures"

    def save(fig, stem):
        paths = save_figure(fig, fig_dir / stem, formats=("pdf", "png"), dpi=200)
        figures[stem] = [p.relative_to(stage).as_posix() for p in paths]

    flows = [runs[c.name]["flow"] for c in cells]
    lstm_cells = [c for c in cells if "c" in c.states]
    inits = ", ".join(f"`{c.name}`: {c.default_init}" for c in cells)
    doc.heading(2, "2. Numeric evidence")
    doc.para(f"Each cell is unrolled for $T = {steps}$ steps with hidden size $n = {hidden}$ and input "
             f"size $m = {input}$, weights from the cell's default initialisation ({inits}) with seed "
             f"{seed}"
             + ("" if forget_bias is None else
                f" and the forget-gate bias set to $b_f = {float(forget_bias):g}$ "
                "[@jozefowicz2015empirical]")
             + ", standard normal inputs from the same seed, zero initial state and batch size 1. "
             "The one-step Jacobians are evaluated from the closed forms of Section 1 (not by automatic "
             "differentiation) and multiplied backwards, "
             "$\\partial s_T/\\partial s_k = J_T J_{T-1} \\cdots J_{k+1}$; norms are reported as "
             "$\\log_{10}$. A decay rate is the least-squares slope of such a curve against $T-k$: "
             "the change of $\\log_{10}$ of the norm per step, negative when gradients vanish.")

    with paper_style():
        fig, (ax,) = _grid(1, 5.0, 3.4, cols=1)
        plot_decay(flows, ax=ax, bound=True)
        save(fig, "decay")
    caption = "Spectral norm of $\\partial s_T/\\partial s_k$ against the lag $T-k$ for every requested cell"
    if any(f.bound is not None for f in flows):
        caption += ("; dashed: the bound $(\\gamma\\,\\sigma_{\\max}(W))^{T-k}$ evaluated on the same "
                    "weights, for the cells that have one [@pascanu2013difficulty]")
    doc.figure("decay", caption + ".", 0.7)

    notes = []
    for c in cells:
        r = runs[c.name]
        f = r["flow"]
        full = f.full.mean()["log10_norm_2"]
        text = (f"`{c.name}`: decay rate {fmt_num(r['rate_full'])} per step, "
                f"$\\log_{{10}}\\lVert \\partial s_T/\\partial s_0 \\rVert_2$ = {fmt_num(full[0], '{:.2f}')}")
        zero = np.isneginf(full)
        if zero.any():  # once exactly zero, every longer lag stays zero
            first = steps - int(np.nonzero(zero)[0].max())
            text += (f"; the product is exactly zero for lags $T-k \\ge {first}$ "
                     "(no gradient at all reaches those steps): an unbounded decay, hence the rate $-\\infty$")
        if f.bound is not None:
            below = bool(np.all(full <= np.asarray(f.bound) + 1e-9))
            sigma = ("" if r["sigma_max_W"] is None else
                     f"; $\\sigma_{{\\max}}(W)$ = {fmt_num(r['sigma_max_W'])}")
            text += (f"{sigma}; bound rate "
                     f"{fmt_num(r['rate_bound'])} per step; the measured curve lies "
                     + ("below the bound at every $k$, as it must." if below else
                        "ABOVE the bound at some $k$, which contradicts the algebra: please report this."))
        else:
            text += "."
        notes.append(text)
    for text in notes:
        doc.para(text)

    if lstm_cells:
        with paper_style():
            fig, axes = _grid(len(lstm_cells), 4.6, 3.4)
            for ax, c in zip(axes, lstm_cells, strict=True):
                plot_carousel(runs[c.name]["flow"], ax=ax)
            save(fig, "carousel")
        doc.figure("carousel", "The LSTM's gradient split by path: the full Jacobian "
                   "$\\partial s_T/\\partial s_k$, its $c \\to c$ block, and the carousel path alone "
                   "(the $c \\to c$ block of the 1997-truncated product, "
                   "$\\prod_j \\operatorname{diag}(f_j)$) [@hochreiter1997lstm].",
                   0.95 if len(lstm_cells) > 1 else 0.65)
        for c in lstm_cells:
            r = runs[c.name]
            car = r["flow"].carousel.mean()["log10_norm_2"]
            text = (f"`{c.name}`: the carousel path decays at {fmt_num(r['rate_carousel'])} per step, the "
                    f"$c \\to c$ block of the full product at {fmt_num(r['rate_cell_state'])} and the full "
                    f"Jacobian at {fmt_num(r['rate_full'])}.")
            if carousel(c).constant:
                dev = float(np.max(np.abs(car))) if np.all(np.isfinite(car)) else float("inf")
                text += (" The carousel curve is flat at $\\log_{10} \\lVert \\mathbb{I} \\rVert_2 = 0$ "
                         f"(largest deviation {dev:.1e}), as the algebra says."
                         if dev < 1e-9 else
                         f" The carousel curve deviates from 0 by up to {dev:.3g}, which contradicts "
                         "the algebra: please report this.")
            doc.para(text)

    with paper_style():
        fig, axes = _grid(len(cells), 4.2, 3.2)
        for ax, c in zip(axes, cells, strict=True):
            plot_spectrum(runs[c.name]["spectra"], ax=ax)
            ax.set_title(f"{c.name}")
        save(fig, "spectrum")
    doc.figure("spectrum", "Singular values of $\\partial s_T/\\partial s_k$ ($\\log_{10}$, in descending "
               f"order) at $k \\in \\{{{', '.join(map(str, _spectrum_ks(steps)))}\\}}$, one panel per cell: "
               "how many directions of the state keep a gradient as the lag grows.",
               0.95 if len(cells) > 1 else 0.6)

    with paper_style():
        fig, axes = _grid(len(cells), 4.2, 3.6)
        for ax, c in zip(axes, cells, strict=True):
            plot_jacobian(runs[c.name]["J_T"], ax=ax, title=f"{c.name}: $J_T$", state_names=c.states)
        save(fig, "jacobian")
    doc.figure("jacobian", "The last one-step Jacobian $J_T = \\partial s_T/\\partial s_{T-1}$ of each "
               "cell, entry by entry (numerator layout: rows are entries of $s_T$, columns entries of "
               "$s_{T-1}$). For an LSTM the $c \\to c$ block is diagonal, $\\operatorname{diag}(f_T)$.",
               0.95 if len(cells) > 1 else 0.6)

    phase = None
    if lstm_cells:
        c = lstm_cells[0]
        has_forget = c.has_forget_gate
        p_hidden, p_input, p_steps = min(hidden, 8), min(input, 4), min(steps, 40)
        scales = (0.5, 1.0, 1.5, 2.0)
        biases = (-1.0, 0.0, 1.0, 2.0) if has_forget else (None,)
        grid = phase_grid(c.name, hidden=p_hidden, input=p_input, steps=p_steps, scales=scales,
                          forget_biases=biases, seed=seed, batch=2)
        with paper_style():
            fig, (ax,) = _grid(1, 5.0, 3.6, cols=1)
            plot_phase_diagram(grid, ax=ax, annotate=True)
            save(fig, "phase")
        phase = {"cell": c.name, "hidden": p_hidden, "input": p_input, "steps": p_steps, "batch": 2,
                 "scales": list(scales), "forget_biases": list(biases), "init": grid.init,
                 "rates": [[None if not np.isfinite(v) else float(v) for v in row] for row in grid.rates]}
        what = ("and the forget-gate bias $b_f$" if has_forget else "(this cell has no forget gate)")
        caption = (f"Decay rate of $\\partial s_T/\\partial s_k$ for `{c.name}` over the scale of the "
                   f"recurrent weights {what} (a small grid: $n = {p_hidden}$, $m = {p_input}$, "
                   f"$T = {p_steps}$, {grid.init} initialisation, seed {seed}); the black contour, where "
                   "drawn, marks rate 0.")
        if has_forget:
            caption += (" A larger forget-gate bias keeps forget gates nearer 1 "
                        "[@gers2000forget; jozefowicz2015empirical].")
        doc.figure("phase", caption, 0.7)

    rows = []
    table = decay_table(flows)
    for row in table:
        r = runs[row["cell"]]
        rows.append([f"`{row['cell']}`", str(row["n"]), str(input), str(row["T"]), fmt_num(row["rate"]),
                     fmt_num(row["rate_cell_state"]), fmt_num(r["rate_carousel"]), fmt_num(r["rate_bound"]),
                     fmt_num(row["log10_norm_k0"], "{:.2f}")])
    doc.table(["cell", "$n$", "$m$", "$T$", "rate $\\partial s_T/\\partial s_k$",
               "rate $\\partial c_T/\\partial c_k$", "rate carousel", "rate bound",
               "$\\log_{10}\\lVert\\partial s_T/\\partial s_0\\rVert_2$"],
              rows, "Decay rates ($\\log_{10}$ change of the spectral norm per step of lag; negative: "
              "vanishing) and the norm over the whole sequence. Carousel: the $c \\to c$ block of the "
              "1997-truncated product; bound: $(\\gamma\\,\\sigma_{\\max}(W))^{T-k}$ where it applies.",
              "lrrrrrrrr")
    return {"figures": figures, "table": table, "phase": phase}


# ================================================================================================
# The report
# ================================================================================================


def _versions() -> dict:
    import matplotlib

    from .._version import __version__

    return {"gradflow": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "sympy": sp.__version__, "matplotlib": matplotlib.__version__}


def _canonical_command(cells: list[Cell], out_dir: str, hidden: int, steps: int, seed: int,
                       input: int, forget_bias: float | None = None) -> str:
    fb = [] if forget_bias is None else ["--forget-bias", repr(float(forget_bias))]
    return shlex.join(["gradflow", "report", *[c.name for c in cells], "-o", out_dir,
                       "--hidden", str(hidden), "--steps", str(steps), "--seed", str(seed),
                       "--input", str(input), *fb])


def _wrap_command(cmd: str, width: int = 78) -> str:
    """A shell command folded with backslash continuations (still a valid command)."""
    lines, cur = [], ""
    for tok in shlex.split(cmd):
        q = shlex.quote(tok)
        if cur and len(cur) + 1 + len(q) > width - 2:
            lines.append(cur + " \\")
            cur = "    " + q
        else:
            cur = (cur + " " + q) if cur else q
    lines.append(cur)
    return "\n".join(lines)


def _check_out_dir(out_dir, force: bool) -> Path:
    """The absolute output directory, or ValueError if it cannot (or must not) be written."""
    if out_dir is None or str(out_dir).strip() == "":
        raise ValueError("no output directory given")
    out = Path(os.path.abspath(os.path.expanduser(str(out_dir))))
    if out.parent == out:
        raise ValueError(f"cannot write a report to the root directory {out}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"cannot write the report to {out}: it exists and is not a directory")
    anc = out if out.exists() else out.parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ValueError(f"cannot create the output directory {out}: {anc} is not a directory")
    if out.is_dir():
        try:
            contents = {p.name for p in out.iterdir()}
        except OSError as e:
            raise ValueError(f"cannot read the output directory {out}: {e.strerror or e}") from None
        if contents & set(REPORT_MARKERS):
            if not force:
                raise ValueError(f"{out} already contains a report; use --force to replace it")
        elif contents:
            raise ValueError(f"{out} exists and is not empty (and holds no gradflow report); "
                             "choose a new or empty directory")
    writable_dir = out.parent if out.parent.exists() else anc
    if not os.access(writable_dir, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the report to {out}: {writable_dir} is not writable")
    return out


def _install(stage: Path, out: Path) -> None:
    """Move the finished ``stage`` to ``out``, replacing an old report (already cleared by the checks)."""
    if out.is_dir() and any(out.iterdir()):
        old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
        os.rename(out, old)
        try:
            os.rename(stage, out)
        except BaseException:
            os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return
    if out.is_dir():
        os.rmdir(out)
    os.rename(stage, out)


def write_report(cells: str | Cell | Iterable[str | Cell], out_dir: str | os.PathLike, *, hidden: int = 16,
                 steps: int = 100, seed: int = 0, input: int | None = None,
                 forget_bias: float | None = None,
                 command: str | Sequence[str] | None = None, force: bool = False) -> Path:
    """Write a derivation report for ``cells`` into ``out_dir`` and return its path.

    The directory receives ``report.md``, ``report.tex``, ``figures/`` (PDF and PNG),
    ``references.bib``, ``flows.json`` and ``provenance.json`` (see the module docstring).

    Arguments:
        cells: cell names (or one name); duplicates are dropped, order is kept.
        out_dir: the report directory; created if missing (with its parents).
        hidden, steps, input: n, T and m of the numeric runs (``input`` defaults to ``hidden``).
        seed: seed of the weights and the inputs.
        forget_bias: forget-gate bias b_f of the cells that have a forget gate (default: the
            initialisation's own), e.g. 1 as recommended by Jozefowicz et al. (2015).
        command: the command line that produced the report, as a string or argv list (the CLI
            passes the real one); default: the equivalent ``gradflow report`` command.
        force: replace a report already in ``out_dir``.

    Raises:
        ValueError: an unknown cell or bad size; ``out_dir`` holds a report and ``force`` is
            False; ``out_dir`` is not a directory, not empty, or cannot be written. Nothing is
            left in ``out_dir`` by a failed run.
    """
    if isinstance(cells, (str, Cell)):
        cells = [cells]
    resolved: list[Cell] = []
    for c in cells:
        c = get_cell(c)
        if c not in resolved:
            resolved.append(c)
    if not resolved:
        raise ValueError("name at least one cell")
    hidden = positive_int(hidden, "hidden", 1)
    steps = positive_int(steps, "steps", 2)
    seed = positive_int(seed, "seed", 0)
    input = hidden if input is None else positive_int(input, "input", 1)
    if forget_bias is not None:
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float)) \
                or not np.isfinite(forget_bias):
            raise ValueError(f"forget bias must be a finite number, got {forget_bias!r}")
        if not any(c.has_forget_gate for c in resolved):
            raise ValueError("a forget bias needs a cell with a forget gate (lstm)")
    out = _check_out_dir(out_dir, force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
        stage.mkdir()
    except OSError as e:
        raise ValueError(f"cannot write the report to {out}: {e.strerror or e}") from None
    try:
        _build(stage, resolved, out, hidden=hidden, steps=steps, seed=seed, input=input,
               forget_bias=forget_bias, command=command, out_arg=str(out_dir))
        _install(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out


def _build(stage: Path, cells: list[Cell], out: Path, *, hidden: int, steps: int, seed: int,
           input: int, forget_bias: float | None, command, out_arg: str) -> None:
    bib_text = bibliography_text()
    bib = parse_bibtex(bib_text)
    versions = _versions()
    date = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    canonical = _canonical_command(cells, out_arg, hidden, steps, seed, input, forget_bias)
    if command is None:
        command_str = canonical
    elif isinstance(command, str):
        command_str = command
    else:
        command_str = shlex.join([str(a) for a in command])

    names = ", ".join(c.name for c in cells)
    title = f"Gradient flow in recurrent networks: {names}"
    doc = Doc(bib)
    doc.heading(1, title)
    doc.para(f"Generated by gradflow {versions['gradflow']} on {date[:10]}. For each requested cell "
             "this report derives how the gradient with respect to an earlier state, "
             "$\\partial L/\\partial s_k = (\\partial L/\\partial s_t)(\\partial s_t/\\partial s_k)$, "
             "depends on the one-step Jacobians of the recurrence, and then measures the same "
             "quantities on a network with random weights. Every formula is printed from gradflow's "
             "symbolic derivation of the cell's recurrence as written once in the library; the "
             "connecting text is fixed commentary.")
    doc.para("Gradients that shrink or grow geometrically with the time lag were analysed by "
             "@[hochreiter1991untersuchungen] and by @[bengio1994learning], and bounded through the "
             "recurrent weight matrix by @[pascanu2013difficulty]. The simple recurrent network "
             "studied here goes back to @[elman1990]. The remedies give the gradient a path whose "
             "one-step Jacobian is close to the identity: the additive cell state of the LSTM "
             "[@hochreiter1997lstm], with the forget gate of its common form [@gers2000forget], the "
             "interpolating update of "
             "the GRU [@cho2014gru], the identity initialisation of ReLU recurrences [@le2015irnn] "
             "and, in feed-forward networks, residual connections [@he2016residual].")
    doc.para("Notation. Vectors are columns. Jacobians use numerator layout: "
             "$\\partial y/\\partial x$ has one row per entry of $y$ and one column per entry of $x$, "
             "so chain-rule products run from the output on the left to the input on the right. "
             "$u \\circ v$ is the entry-wise (Hadamard) product and $v^{\\circ 2} = v \\circ v$; "
             "$\\operatorname{diag}(v)$ is the diagonal matrix with $v$ on its diagonal; $\\mathbb{I}$ "
             "the identity; $\\sigma$ the logistic sigmoid; $H$ the Heaviside step (the derivative of "
             "ReLU, $H(0) = 0$); $\\sigma_{\\max}(W) = \\lVert W \\rVert_2$ the largest singular value. "
             "$W$ are recurrent weights ($n \\times n$), $U$ input weights ($n \\times m$), $b$ "
             "biases; $n$ is the hidden size and $m$ the input size.")

    doc.heading(2, "1. Derivation")
    for i, cell in enumerate(cells, 1):
        derive_cell(doc, cell, i)

    runs = _measure(cells, hidden, input, steps, seed, forget_bias)
    numeric = _numeric_section(doc, stage, cells, runs, hidden, input, steps, seed, forget_bias)

    doc.heading(2, "3. Reproduce")
    doc.para("This report was produced by the command")
    doc.code(_wrap_command(command_str) if command_str else "")
    if command_str != canonical:
        doc.para("which is equivalent to (every parameter explicit)")
        doc.code(_wrap_command(canonical))
    doc.para("with " + ", ".join(f"{k} {v}" for k, v in versions.items())
             + f" on {platform.system() or 'unknown OS'} {platform.machine()}, at {date} (UTC). "
             f"Sizes: $n = {hidden}$, $m = {input}$, $T = {steps}$, batch 1; seed {seed}. The same "
             "command with the same versions regenerates the figures and numbers; "
             "`provenance.json` records all of this, and `flows.json` holds the measured curves. "
             "To cite gradflow itself [@gradflow], run `gradflow cite`.")

    md = doc.markdown()
    tex = doc.latex(title, date[:10])
    (stage / "report.md").write_text(md, encoding="utf-8")
    (stage / "report.tex").write_text(tex, encoding="utf-8")
    (stage / "references.bib").write_text(bib_text, encoding="utf-8")

    flows_json = {name: {**r["flow"].to_json(), "init": r["init"],
                         "sigma_max_W": r["sigma_max_W"],
                         "singular_values": {str(k): [None if not np.isfinite(v) else float(v) for v in s]
                                             for k, s in r["spectra"].items()}}
                  for name, r in runs.items()}
    (stage / "flows.json").write_text(json.dumps({"flows": flows_json, "phase": numeric["phase"]},
                                                 allow_nan=False) + "\n", encoding="utf-8")

    def clean(x):
        if isinstance(x, float) and not np.isfinite(x):
            return None
        if isinstance(x, (np.floating, np.integer)):
            return clean(x.item())
        return x

    provenance = {
        "command": command_str,
        "canonical_command": canonical,
        "argv": None if command is None or isinstance(command, str) else [str(a) for a in command],
        "cells": [c.name for c in cells],
        "hidden": hidden, "input": input, "steps": steps, "batch": 1, "seed": seed,
        "forget_bias": forget_bias,
        "init": {c.name: c.default_init for c in cells},
        "date": date,
        "versions": versions,
        "platform": {"system": platform.system(), "machine": platform.machine(),
                     "python_implementation": platform.python_implementation()},
        "output": str(out),
        "figures": numeric["figures"],
        "decay_table": [{k: clean(v) for k, v in row.items()} for row in numeric["table"]],
        "references": doc.cited,
    }
    (stage / "provenance.json").write_text(json.dumps(provenance, indent=2, allow_nan=False) + "\n",
                                           encoding="utf-8")


def compile_pdf(out_dir: str | os.PathLike, *, timeout: float = 180.0) -> Path:
    """Run pdflatex (twice, for the citations) on ``out_dir/report.tex``; return the PDF's path.

    Raises:
        ValueError: pdflatex is not installed, or the compilation fails (the first LaTeX error
            is quoted; the full log is ``report.log``).
    """
    out = Path(out_dir)
    tex = out / "report.tex"
    if not tex.is_file():
        raise ValueError(f"no report.tex in {out}")
    exe = shutil.which("pdflatex")
    if exe is None:
        raise ValueError(f"pdflatex not found (install TeX Live, e.g. apt-get install "
                         f"{' '.join(TEXLIVE_PACKAGES)}); report.md and report.tex are in {out}")
    for _ in range(2):
        try:
            proc = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
                                  cwd=out, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ValueError(f"pdflatex did not finish within {timeout:g} s on {tex}") from None
        if proc.returncode != 0:
            log = (out / "report.log").read_text(encoding="latin-1") if (out / "report.log").exists() \
                else proc.stdout.decode("latin-1")
            first = next((ln for ln in log.splitlines() if ln.startswith("!")), "unknown error")
            raise ValueError(f"pdflatex failed on {tex}: {first.lstrip('! ')} (see {out / 'report.log'})")
    pdf = out / "report.pdf"
    if not pdf.is_file():
        raise ValueError(f"pdflatex produced no PDF in {out}")
    return pdf
