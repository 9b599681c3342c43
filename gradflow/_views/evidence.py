"""The numeric-evidence section of a report: runs, figures, the sentences beside them, the table.

Every number comes from the numeric engine; every sentence that states a property of a number
(below the bound, flat carousel, exact zero) is decided on that number before it is printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sympy import Identity

from .._numeric.flow import json_number
from .._symbolic.cell import Cell
from .._symbolic.many_steps import carousel, pascanu_bound
from .document import Doc, fmt_num


@dataclass(frozen=True)
class Measurement:
    """One cell's run: the network, its flow, the last one-step Jacobian, spectra and decay rates.

    Rates are log10 per step of lag (``None`` where the curve does not exist for the cell).
    """

    cell: Cell
    net: Any
    flow: Any
    J_T: np.ndarray
    spectra: dict
    init: str
    rate_full: float
    rate_cell_state: float | None
    rate_carousel: float | None
    rate_bound: float | None
    sigma_max_W: float | None


@dataclass(frozen=True)
class Evidence:
    """What the evidence section produced: figure files by stem, the decay table, the phase grid."""

    figures: dict[str, list[str]]
    table: list[dict]
    phase: dict | None




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


def _init_words(scheme: str, hidden: int, input: int) -> str:
    """The init as the report names it; a state-space cell's reference init with its sizes."""
    from .._numeric.reference_init import SCHEME_CELLS

    if scheme not in SCHEME_CELLS:
        return scheme
    if scheme == "rg-lru":
        return "rg-lru, Griffin's reference init"
    return (f"{scheme}, the reference code's init with $d = {input}$ channels and "
            f"$N = {hidden // input}$ state entries each")


def measure(cells: list[Cell], hidden: int, input: int, steps: int, seed: int,
            forget_bias: float | None = None, inits: dict[str, str] | None = None) -> dict[str, Measurement]:
    """Run every cell once (random weights and inputs from ``seed``) and measure what the report shows.

    ``inits``: cell name → init scheme (default: the cell's own)."""
    from .._numeric.flow import decay_rate, gradient_flow, network, random_inputs, singular_values

    out = {}
    ks = _spectrum_ks(steps)
    for cell in cells:
        fb = forget_bias if cell.has_forget_gate else None
        init = (inits or {}).get(cell.name, cell.default_init)
        net = network(cell, hidden, input, init=init, seed=seed, forget_bias=fb)  # type: ignore[arg-type]
        inputs = random_inputs(steps, input, seed=seed)
        flow = gradient_flow(net, inputs, carousel="c" in cell.states)
        traj = net.unroll(inputs)
        J_T = np.asarray(net.step_jacobian(traj, steps))[0]
        spectra = singular_values(net, inputs, ks)
        W = net.weights.arrays.get("W")
        out[cell.name] = Measurement(
            cell=cell, net=net, flow=flow, J_T=J_T, spectra=spectra, init=init,
            rate_full=decay_rate(flow.full.mean().log10_norm_2),
            rate_cell_state=None if flow.cell_state is None else decay_rate(flow.cell_state.mean().log10_norm_2),
            rate_carousel=None if flow.carousel is None else decay_rate(flow.carousel.mean().log10_norm_2),
            rate_bound=None if flow.bound is None else decay_rate(flow.bound),
            sigma_max_W=None if W is None or not _bound_reads_w(cell) else float(np.linalg.norm(np.asarray(W), 2)))
    return out


def evidence_section(doc: Doc, stage: Path, cells: list[Cell], runs: dict[str, Measurement], hidden: int,
                     input: int, steps: int, seed: int, forget_bias: float | None = None) -> Evidence:
    """Section 2: the figures (saved under ``stage/figures``), the sentences beside them and the table."""
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

    flows = [runs[c.name].flow for c in cells]
    lstm_cells = [c for c in cells if "c" in c.states]
    inits = "; ".join(f"`{c.name}`: {_init_words(runs[c.name].init, hidden, input)}" for c in cells)
    doc.heading(2, "Numeric evidence", label="sec:evidence")
    doc.para(f"Each cell is unrolled for $T = {steps}$ steps with hidden size $n = {hidden}$ and input "
             f"size $m = {input}$, weights from the initialisation ({inits}) with seed "
             f"{seed}"
             + ("" if forget_bias is None else
                f" and the forget-gate bias set to $b_f = {float(forget_bias):g}$ "
                "[@jozefowicz2015empirical]")
             + ", standard normal inputs from the same seed, zero initial state and batch size 1. "
             "The one-step Jacobians are evaluated from the closed forms of [#sec:derivation] (not by automatic "
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
        f = r.flow
        full = f.full.mean()["log10_norm_2"]
        text = (f"`{c.name}`: decay rate {fmt_num(r.rate_full)} per step, "
                f"$\\log_{{10}}\\lVert \\partial s_T/\\partial s_0 \\rVert_2$ = {fmt_num(full[0], '{:.2f}')}")
        zero = np.isneginf(full)
        if zero.any():  # once exactly zero, every longer lag stays zero
            first = steps - int(np.nonzero(zero)[0].max())
            text += (f"; the product is exactly zero for lags $T-k \\ge {first}$ "
                     "(no gradient at all reaches those steps): an unbounded decay, hence the rate $-\\infty$")
        if f.bound is not None:
            below = bool(np.all(full <= np.asarray(f.bound) + 1e-9))
            sigma = "" if r.sigma_max_W is None else f"; $\\sigma_{{\\max}}(W)$ = {fmt_num(r.sigma_max_W)}"
            text += (f"{sigma}; bound rate "
                     f"{fmt_num(r.rate_bound)} per step; the measured curve lies "
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
                plot_carousel(runs[c.name].flow, ax=ax)
            save(fig, "carousel")
        doc.figure("carousel", "The LSTM's gradient split by path: the full Jacobian "
                   "$\\partial s_T/\\partial s_k$, its $c \\to c$ block, and the carousel path alone "
                   "(the $c \\to c$ block of the 1997-truncated product, "
                   "$\\prod_j \\operatorname{diag}(f_j)$) [@hochreiter1997lstm].",
                   0.95 if len(lstm_cells) > 1 else 0.65)
        for c in lstm_cells:
            r = runs[c.name]
            car = r.flow.carousel.mean()["log10_norm_2"]
            text = (f"`{c.name}`: the carousel path decays at {fmt_num(r.rate_carousel)} per step, the "
                    f"$c \\to c$ block of the full product at {fmt_num(r.rate_cell_state)} and the full "
                    f"Jacobian at {fmt_num(r.rate_full)}.")
            if carousel(c).constant:
                dev = float(np.max(np.abs(car))) if np.all(np.isfinite(car)) else float("inf")
                text += (" The carousel curve is flat at $\\log_{10} \\lVert I \\rVert_2 = 0$ "
                         f"(largest deviation {dev:.1e}), as the algebra says."
                         if dev < 1e-9 else
                         f" The carousel curve deviates from 0 by up to {dev:.3g}, which contradicts "
                         "the algebra: please report this.")
            doc.para(text)

    with paper_style():
        fig, axes = _grid(len(cells), 4.2, 3.2)
        for ax, c in zip(axes, cells, strict=True):
            plot_spectrum(runs[c.name].spectra, ax=ax)
            ax.set_title(f"{c.name}")
        save(fig, "spectrum")
    doc.figure("spectrum", "Singular values of $\\partial s_T/\\partial s_k$ ($\\log_{10}$, in descending "
               f"order) at $k \\in \\{{{', '.join(map(str, _spectrum_ks(steps)))}\\}}$, one panel per cell: "
               "how many directions of the state keep a gradient as the lag grows. Each value is computed "
               "from the product in factored form with high relative accuracy and carries an error "
               "bound; values not resolved to $10^{-6}$ in $\\log_{10}$ are not drawn.",
               0.95 if len(cells) > 1 else 0.6)

    with paper_style():
        fig, axes = _grid(len(cells), 4.2, 3.6)
        for ax, c in zip(axes, cells, strict=True):
            plot_jacobian(runs[c.name].J_T, ax=ax, title=f"{c.name}: $J_T$", state_names=c.states)
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
                 "rates": [[json_number(v, f"phase-grid rate of {c.name}") for v in row] for row in grid.rates]}
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
                     fmt_num(row["rate_cell_state"]), fmt_num(r.rate_carousel), fmt_num(r.rate_bound),
                     fmt_num(row["log10_norm_k0"], "{:.2f}")])
    doc.table(["cell", "$n$", "$m$", "$T$", "rate $\\partial s_T/\\partial s_k$",
               "rate $\\partial c_T/\\partial c_k$", "rate carousel", "rate bound",
               "$\\log_{10}\\lVert\\partial s_T/\\partial s_0\\rVert_2$"],
              rows, "Decay rates ($\\log_{10}$ change of the spectral norm per step of lag; negative: "
              "vanishing) and the norm over the whole sequence. Carousel: the $c \\to c$ block of the "
              "1997-truncated product; bound: $(\\gamma\\,\\sigma_{\\max}(W))^{T-k}$ where it applies.",
              "lrrrrrrrr")
    return Evidence(figures=figures, table=table, phase=phase)
