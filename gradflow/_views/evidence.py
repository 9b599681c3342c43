"""The numeric-evidence section of a report: runs, figures, the sentences beside them, the table.

Every number comes from the numeric engine; every sentence that states a property of a number
(below the bound, flat carousel, exact zero) is decided on that number before it is printed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sympy import Identity, MatMul, OneMatrix

from .._numeric.flow import json_number
from .._numeric.layout import memory_states, state_layout
from .._symbolic.cell import Cell
from .._symbolic.many_steps import carousel, pascanu_bound
from .._symbolic.nodes import Diag
from .._symbolic.printing import latex
from .bound_words import bound_formula, carousel_words, cc_block_words, identity_summand
from .document import Doc, fmt_num, visible_width


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
    net_inputs: Any = None  # the inputs (T, 1, m) of the run


@dataclass(frozen=True)
class Evidence:
    """What the evidence section produced: figure files by stem, the decay table, the phase grid."""

    figures: dict[str, list[str]]
    table: list[dict]
    phase: dict | None
    claims: dict | None = None  # the numbers behind the sentences (paths, drift, spread)
    spreads: dict | None = None  # cell name → Spread of the decay figure (median and band)
    bounds: dict | None = None  # cell name → log10 bound curve drawn dashed in the decay figure
    paths: dict | None = None  # cell name → CellStatePaths of the path-split figure (LSTM cells)
    memory: dict | None = None  # cell name → (full, memory block) log10 ‖·‖₂ curves, (T,) each (mLSTM cells)




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
    if scheme == "lru-ring":
        return ("lru-ring, the LRU's ring initialisation [@orvieto2023lru]: "
                "$|\\lambda_j|^2 \\sim U[0, 1]$, phases $\\sim U[0, 6.28]$")
    from .._numeric.reference_init import USUAL_STATE

    N, usual = hidden // input, USUAL_STATE.get(scheme)
    channels = f"$d = {input}$ channel{'' if input == 1 else 's'}"
    if scheme.startswith("s4d"):  # a unit is a complex mode: two real state entries (h, q)
        shape = (f"{channels} and $N = {N}$ complex mode{'' if N == 1 else 's'} each, i.e. `d_state` "
                 f"$= 2N = {2 * N}$ real state entries")
        default = f"S4D's default is `d_state` $= {2 * usual if usual else 0}$ ($N = {usual}$)"
    else:
        shape = f"{channels} and $N = {N}$ state entr{'y' if N == 1 else 'ies'} each, Mamba's `d_state`"
        default = f"Mamba's default is $N = {usual}$"
    words = f"{scheme}, the reference code's init with {shape}"
    if usual is None or N == usual:
        return words
    return words + f"; {default}" + (f", more than $n = {hidden}$ allows" if hidden < usual else "")


def input_words(inputs: Mapping[str, int], code: Callable[[str], str] = lambda name: f"`{name}`") -> str:
    """``$m = 16$``, or the input size of each cell where they differ (each cell's default);
    ``code`` writes a cell's name (Markdown backticks; the slides pass LaTeX's ``\\texttt``)."""
    sizes = set(inputs.values())
    if len(sizes) == 1:
        return f"$m = {sizes.pop()}$"
    return "input sizes " + ", ".join(f"$m = {m}$ ({code(name)})" for name, m in inputs.items())


def measure(cells: list[Cell], hidden: int, input: int | Mapping[str, int], steps: int, seed: int,
            forget_bias: float | None = None, inits: dict[str, str] | None = None) -> dict[str, Measurement]:
    """Run every cell once (random weights and inputs from ``seed``) and measure what the report shows.

    ``input``: m, one for every cell or cell name → m; ``inits``: cell name → init scheme (default:
    the cell's own)."""
    from .._numeric.flow import decay_rate, gradient_flow, network, random_inputs, singular_values

    out = {}
    ks = _spectrum_ks(steps)
    for cell in cells:
        fb = forget_bias if cell.has_forget_gate else None
        init = (inits or {}).get(cell.name, cell.default_init)
        m = input[cell.name] if isinstance(input, Mapping) else input
        net = network(cell, hidden, m, init=init, seed=seed, forget_bias=fb)  # type: ignore[arg-type]
        inputs = random_inputs(steps, m, seed=seed)
        flow = gradient_flow(net, inputs, carousel="c" in cell.states, mode="exact")  # ‖·‖₂ at any N
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
            sigma_max_W=None if W is None or not _bound_reads_w(cell) else float(np.linalg.norm(np.asarray(W), 2)),
            net_inputs=inputs)
    return out


#: how the report's decay figure spreads its curves: weight draws × input sequences per draw
SPREAD_SEEDS, SPREAD_BATCH = 4, 4
#: above this work N²·T (N the state size), fewer: 2 × 2 sequences, and 1 × 2 beyond SPREAD_SMALLEST
SPREAD_FULL_BELOW, SPREAD_SMALLEST = 5e7, 1e9


def spread_plan(cells: list[Cell], hidden: int, steps: int) -> tuple[int, int]:
    """(weight draws, sequences per draw) of the decay figure: 4 × 4, fewer for large runs so that
    the band never costs more than a few sweeps of the run itself."""
    work = max(state_layout(c, hidden).total for c in cells) ** 2 * steps  # N = n² + 2n for mLSTM
    if work <= SPREAD_FULL_BELOW:
        return SPREAD_SEEDS, SPREAD_BATCH
    return (2, 2) if work <= SPREAD_SMALLEST else (1, 2)


def _bound_kind(cell: Cell) -> str | None:
    """Which one-step bound the flow's dashed curve is: "pascanu" (γ σ_max(W))^{T−k}, "residual", None."""
    try:
        terms = pascanu_bound(cell).terms
    except ValueError:
        return None
    if identity_summand(cell):
        return "residual"
    return "pascanu" if len(terms) == 1 and getattr(terms[0][1], "name", None) == "W" else "triangle"


#: a bound formula wider than this (visible characters) is named by its equation in captions:
#: Lipschitz RNN's two σ_max of (1 − β)(M + Mᵀ) + β(M − Mᵀ) − γI ran off the page
CAPTION_FORMULA_WIDTH = 30.0


def bound_words_of(cell: Cell) -> str:
    """A derived bound as a caption names it: "$F$ for `cell`", or, for a long F, its equation number."""
    formula = bound_formula(cell)
    if visible_width(formula) <= CAPTION_FORMULA_WIDTH:
        return f"${formula}$ for `{cell.name}`"
    return f"the bound [#eq:{cell.name}-bound] for `{cell.name}`"


def triangle_words(spreads: dict) -> str:
    """The decay caption's words on the triangle, only where one is drawn: a median that becomes an
    exact zero after some finite lags (as :func:`~gradflow._views.plots.mark_exact_zero` draws it)."""
    zeros = [np.isneginf(np.asarray(sp_.median, dtype=float)) for sp_ in spreads.values()]
    if any(z.any() and not z.all() for z in zeros):
        return "; a triangle marks the last lag before a median that is exactly zero"
    return ""


def _zero_sentence(curve: np.ndarray, steps: int) -> str:
    """What a curve that reaches an exact zero does before it, and from which lag it is zero."""
    from .._numeric.flow import decay_rate

    zero = np.isneginf(curve)
    first = steps - int(np.nonzero(zero)[0].max())  # lags T − k ≥ first are exactly zero
    finite = curve[steps - first + 1:] if first > 1 else curve[:0]
    text = ""
    if finite.size >= 2:
        lo, hi = float(finite.min()), float(finite.max())
        rate = decay_rate(finite)
        if hi - lo < 1e-9:
            text = (f"; for lags 1 to {first - 1} the norm is constant, "
                    f"$\\log_{{10}} = {hi:.4f}$ (no decay at all)")
        else:
            text = (f"; for lags 1 to {first - 1} $\\log_{{10}}$ of the norm stays in "
                    f"[{lo:.2f}, {hi:.2f}] (slope {fmt_num(rate)} per step over those lags)")
    return (text + f"; from lag {first} on the product is exactly zero: no gradient at all reaches "
            "those steps (the table's rate $-\\infty$ records this jump to zero, not a steady decay)")


def _drift_sentence(name: str, series: np.ndarray, steps: int, what: str) -> tuple[str, dict]:
    """max_i |s_t| at t = T/10, T/2, T and whether it drifts (grows by 3× and beyond 3)."""
    ts = sorted({max(1, steps // 10), steps // 2, steps})
    vals = [float(series[t]) for t in ts]
    drifts = vals[-1] > 3.0 and vals[-1] > 3.0 * vals[0]
    nums = ", ".join(f"{v:.3g} at $t = {t}$" for v, t in zip(vals, ts, strict=True))
    return (f"$\\max_i |{what}_{{t,i}}|$ is {nums}", {"t": ts, "max_abs": vals, "drifts": drifts})


def bound_sentence(curve: np.ndarray, bound: np.ndarray, tol: float = 1e-9) -> str:
    """How the measured log10 curve sits against its bound: below it, on it at some k (an identity
    W, say, meets the bound exactly), or above it (a contradiction of the algebra)."""
    if not np.all(curve <= bound + tol):
        return "the measured curve lies ABOVE the bound at some $k$, which contradicts the algebra: please report this."
    if np.any(np.abs(curve - bound) <= tol):
        return "the measured curve never exceeds the bound and meets it at some $k$, as the algebra allows."
    return "the measured curve lies below the bound at every $k$, as it must."


def path_rates_sentence(name: str, block: float | None, carousel: float | None,
                        through_h: float | None, full: float | None) -> str:
    """The rates of the cell-state paths in one sentence; "decays at" only when none is positive
    (a positive rate is growth: "decays at $0.0095$" would say the opposite)."""
    if all(x is None or not x > 0 for x in (block, carousel, through_h, full)):
        return (f"`{name}`: the $c \\to c$ block decays at {fmt_num(block)} per step, the carousel at "
                f"{fmt_num(carousel)}, the paths through $h$ at {fmt_num(through_h)} (lags $\\ge 2$) and the "
                f"full Jacobian at {fmt_num(full)}.")
    return (f"`{name}`: per step of lag, $\\log_{{10}}$ of the norm changes by {fmt_num(block)} "
            f"for the $c \\to c$ block, {fmt_num(carousel)} for the carousel, {fmt_num(through_h)} for "
            f"the paths through $h$ (lags $\\ge 2$) and {fmt_num(full)} for the full "
            "Jacobian (negative: it decays; positive: it grows).")


def _memory_factor(cell: Cell) -> str | None:
    """LaTeX of the scalar f with ∂n_j/∂n_{j−1} = f I on the derived Jacobian (mLSTM: f_j, f'_j), else None."""
    block = cell.jacobian()[("n", "n")]
    v = getattr(block, "vector", None)
    if isinstance(block, Diag) and isinstance(v, MatMul) and len(v.args) == 2 and isinstance(v.args[0], OneMatrix):
        return latex(v.args[1]).replace("_{t}", "_{j}")  # the factor of step j inside ∏_j
    return None


def _path_caption(lstm_cells: list[Cell], memory_cells: list[Cell], memory_first: bool = False) -> str:
    """The caption of the path figure: what each kind of panel draws (LSTM cells; mLSTM's memory),
    in the order of the panels (``memory_first``: an mLSTM panel comes first)."""
    parts = []
    if lstm_cells:
        parts.append(
            "The cell-state gradient split by path (first sequence): the "
            "$c \\to c$ block of the full product, $\\partial c_T/\\partial c_k$; the carousel, "
            "the $c \\to c$ block of the 1997-truncated product [@hochreiter1997lstm] "
            f"({carousel_words(lstm_cells)}); and their difference, every path that leaves the cell "
            "state through $h_{j-1}$ (and the cell's other states) into the gates and the candidate "
            "of a later step and comes back. At lag 1 the difference is exactly zero (one step holds "
            "no such path: the full and the truncated one-step $c \\to c$ blocks are the same). The block "
            "is the wide solid line, the carousel dashed, the paths through $h$ dotted with open circles "
            "and drawn on top: where they agree with the block to within one per cent the two are one line "
            "on the page, and the panel names those lags.")
    if memory_cells:
        names = ", ".join(f"`{c.name}`" for c in memory_cells)
        factors = {c.name: _memory_factor(c) for c in memory_cells}
        prods = "; ".join(f"for `{k}`, $\\prod_{{j=k+1}}^{{T}} ({f}) I$" for k, f in factors.items() if f)
        parts.append(
            ("" if lstm_cells and not memory_first else "The gradient split by path (first sequence). ")
            + f"For {names} (the memory $(C, n)$: matrix memory $C$ "
            "and normaliser $n$; $h_t$ is a read-out that feeds nothing back): the memory block of "
            "the full product, $\\lVert \\partial (C_T, n_T)/\\partial (C_k, n_k) \\rVert_2$ (dashed), "
            "against the full product $\\lVert \\partial s_T/\\partial s_k \\rVert_2$ (solid). "
            "The memory block is a multiple of the identity"
            + (f" ({prods})" if prods else "")
            + ", so its norm is the product of the forget gates alone; the full product adds the blocks "
            "of the cell's other states ("
            + ("$h$, and the stabiliser $m$ where there is one" if any("m" in c.states for c in memory_cells)
               else "the read-out $h$") + ").")
        if memory_first and lstm_cells:
            parts.reverse()
    parts.append("Data: `figures/carousel.csv`, `figures/carousel.tex`.")
    return " ".join(parts)


def evidence_section(doc: Doc, stage: Path, cells: list[Cell], runs: dict[str, Measurement], hidden: int,
                     input: int | Mapping[str, int], steps: int, seed: int, forget_bias: float | None = None,
                     figure_size: str = "two-column") -> Evidence:
    """The numeric-evidence section: the figures (saved under ``stage/figures``), the sentences
    beside them and the table. ``input``: m (each run's own, ``runs[name].net.input``, is used)."""
    from .._numeric.analysis import decay_table, phase_grid
    from .._numeric.flow import decay_rate
    from .._numeric.paths import cell_state_paths, state_drift
    from .._numeric.spread import flow_spread
    from .figure_data import export_curves, export_matrices
    from .figure_fit import fit_titles
    from .plots import (
        figure_legend,
        figure_style,
        panel_title,
        plot_cell_state_paths,
        plot_decay_band,
        plot_jacobian,
        plot_memory_paths,
        plot_phase_diagram,
        plot_spectrum,
        preset_figure,
        save_figure,
    )
    from .plots import (
        figure_size as get_figure_size,
    )

    size = get_figure_size(figure_size)
    n_seeds, n_batch = spread_plan(cells, hidden, steps)
    figures: dict[str, list[str]] = {}
    claims: dict[str, Any] = {}
    fig_dir = stage / "figures"

    def save(fig, stem):
        fit_titles(fig)
        paths = save_figure(fig, fig_dir / stem, formats=("pdf", "png"), dpi=200)
        figures[stem] = [p.relative_to(stage).as_posix() for p in paths]

    def add_figure(stem, caption):
        doc.figure(stem, caption, min(1.0, size.width / 6.5), print_width=size.width)
        figures[stem] += [f"figures/{stem}.csv", f"figures/{stem}.tex"]

    flows = [runs[c.name].flow for c in cells]
    lstm_cells = [c for c in cells if "c" in c.states]
    m_of = {c.name: int(runs[c.name].net.input) for c in cells}
    inits = "; ".join(f"`{c.name}`: {_init_words(runs[c.name].init, hidden, m_of[c.name])}" for c in cells)
    doc.heading(2, "Numeric evidence", label="sec:evidence")
    m_words = input_words(m_of)
    doc.para(f"Each cell is unrolled for $T = {steps}$ steps with hidden size $n = {hidden}$ and "
             f"{'input size ' if m_words.startswith('$') else ''}{m_words}, weights from the "
             f"initialisation ({inits}) with seed {seed}"
             + ("" if forget_bias is None else
                f" and the forget-gate bias set to $b_f = {float(forget_bias):g}$ "
                "[@jozefowicz2015empirical]")
             + ", standard normal inputs from the same seed and zero initial state. "
             "The one-step Jacobians are evaluated from the closed forms of [#sec:derivation] (not by automatic "
             "differentiation) and multiplied backwards, "
             "$\\partial s_T/\\partial s_k = J_T J_{T-1} \\cdots J_{k+1}$; norms are reported as "
             "$\\log_{10}$. A decay rate is the least-squares slope of such a curve against $T-k$: "
             "the change of $\\log_{10}$ of the norm per step, negative when gradients vanish. The "
             f"main figure shows {n_seeds * n_batch} sequences per cell ({n_seeds} weight "
             f"draws, seeds {seed} to {seed + n_seeds - 1}, × {n_batch} input sequences each); "
             "the sentences and the table read the first sequence of seed "
             f"{seed} (batch size 1), whose curves `flows.json` holds.")

    # -- the decay figure: median and band over seeds × sequences --------------------------------
    spreads = {c.name: flow_spread(c, hidden, m_of[c.name], steps, seed=seed, seeds=n_seeds, batch=n_batch,
                                   forget_bias=forget_bias if c.has_forget_gate else None,
                                   init=runs[c.name].init) for c in cells}
    bounds = {c.name: runs[c.name].flow.bound for c in cells if runs[c.name].flow.bound is not None}
    with figure_style(size):
        fig, (ax,) = preset_figure(1, size, height=size.row_height * 1.15)
        plot_decay_band(spreads, ax=ax, bounds=bounds)
        figure_legend(fig, [ax])
        save(fig, "decay")
    lag = steps - np.arange(steps)
    series = []
    for c in cells:
        sp_ = spreads[c.name]
        series += [("", f"{c.name} median", lag, sp_.median), ("", f"{c.name} q{sp_.q_lo:g}", lag, sp_.lo),
                   ("", f"{c.name} q{sp_.q_hi:g}", lag, sp_.hi)]
        if c.name in bounds:
            series.append(("", f"{c.name} bound", lag, np.asarray(bounds[c.name])))
    export_curves(fig_dir / "decay", series, "lag $T-k$", "$\\log_{10}\\|\\partial s_T/\\partial s_k\\|_2$")
    caption = (f"$\\log_{{10}}$ spectral norm of $\\partial s_T/\\partial s_k$ against the lag $T-k$: the "
               f"line is the median and the shaded band the 10–90 % range (at each lag, the 10 % and 90 % "
               f"empirical quantiles) of {n_seeds * n_batch} curves per cell, {n_seeds} "
               f"weight draws × {n_batch} input sequences")
    kinds = {c.name: _bound_kind(c) for c in cells if c.name in bounds}
    by_name = {c.name: c for c in cells}
    pas = [f"`{k}`" for k, v in kinds.items() if v == "pascanu"]
    res = [bound_words_of(by_name[k]) for k, v in kinds.items() if v in ("residual", "triangle")]
    if pas:
        caption += (f"; dashed: the bound $(\\gamma\\,\\sigma_{{\\max}}(W))^{{T-k}}$ of "
                    f"@[pascanu2013difficulty] on the weights of seed {seed} ({', '.join(pas)})")
    if res:
        caption += (f"; dashed: the one-step bound derived in [#sec:derivation], {', '.join(res)}, "
                    "cut at the frame where it leaves the measured range")
    caption += triangle_words(spreads) + ". Data: `figures/decay.csv`, `figures/decay.tex` (pgfplots)."
    add_figure("decay", caption)
    claims["spread"] = {c.name: {"count": spreads[c.name].count, "median_last": json_number(
        spreads[c.name].median[0], f"median of {c.name}")} for c in cells}

    notes = []
    drift_claims: dict[str, Any] = {}
    for c in cells:
        r = runs[c.name]
        f = r.flow
        full = f.full.mean()["log10_norm_2"]
        if np.isneginf(full).any():  # once exactly zero, every longer lag stays zero
            text = (f"`{c.name}`: no steady decay to fit a rate to"
                    + _zero_sentence(full, steps))
        else:
            text = (f"`{c.name}`: decay rate {fmt_num(r.rate_full)} per step, "
                    f"$\\log_{{10}}\\lVert \\partial s_T/\\partial s_0 \\rVert_2$ = {fmt_num(full[0], '{:.2f}')}")
        if f.bound is not None:
            sigma = "" if r.sigma_max_W is None else f"; $\\sigma_{{\\max}}(W)$ = {fmt_num(r.sigma_max_W)}"
            text += (f"{sigma}; bound rate "
                     f"{fmt_num(r.rate_bound)} per step; " + bound_sentence(full, np.asarray(f.bound)))
        else:
            text += "."
        if c.name in ("gru", "gru-cho"):
            from .._numeric.gru_bound import gru_step_bound

            gb = gru_step_bound(r.net.weights)
            traj = r.net.unroll(r.net_inputs)
            worst = max(float(np.linalg.norm(np.asarray(r.net.step_jacobian(traj, t))[0], 2))
                        for t in range(1, steps + 1))
            drift_claims.setdefault("gru_bound", {})[c.name] = {"bound": gb, "max_one_step_norm": worst}
            text += (f" Its one-step bound of [#sec:derivation] (valid while $|h_t| < 1$) is {gb:.4g} "
                     "on these weights; "
                     f"the largest measured one-step norm $\\lVert J_t \\rVert_2$ is {worst:.4g}"
                     + ("." if worst <= gb else ", ABOVE the bound: please report this."))
        if _bound_kind(c) == "residual":
            d = state_drift(r.net, r.net_inputs)
            sent, info = _drift_sentence(c.name, d.max_abs["h"][0], steps, "h")
            drift_claims[c.name] = info
            if info["drifts"]:
                text += (f" The price of the identity path: the state drifts, {sent}. Each step adds "
                         "$\\tanh(a_t) \\in (-1, 1)$ to $h$ and nothing pulls it back, so this remedy keeps "
                         "the gradient at the cost of a state that grows with $T$.")
            else:
                text += f" The state stays moderate here: {sent}."
        notes.append(text)
    for text in notes:
        doc.para(text)

    # -- the LSTM's cell-state gradient split by path ------------------------------------------------
    path_claims: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    # mLSTM: the memory block ∂(C_T, n_T)/∂(C_k, n_k) = ∏ f_j I, measured by the sweep as Flow.cell_state
    memory_cells = [c for c in cells if memory_states(c) == ("C", "n") and runs[c.name].flow.cell_state is not None]
    memory = {c.name: (np.asarray(runs[c.name].flow.full.log10_norm_2, dtype=float)[0],
                       np.asarray(runs[c.name].flow.cell_state.log10_norm_2, dtype=float)[0])  # type: ignore[union-attr]
              for c in memory_cells}
    if lstm_cells or memory_cells:
        paths = {c.name: cell_state_paths(runs[c.name].net, runs[c.name].net_inputs) for c in lstm_cells}
        with figure_style(size):
            fig, axes = preset_figure(len(lstm_cells) + len(memory_cells), size)
            for ax, c in zip(axes, [c for c in cells if c in lstm_cells or c.name in memory], strict=True):
                if c.name in memory:
                    plot_memory_paths(*memory[c.name], ax=ax, title=panel_title(c.title))
                else:
                    plot_cell_state_paths(paths[c.name], ax=ax, title=panel_title(c.title))
            figure_legend(fig, axes)
            save(fig, "carousel")
        series = []
        for c in lstm_cells:
            P = paths[c.name]
            series += [(c.name, "block", lag, P.block[0]), (c.name, "carousel", lag, P.carousel[0]),
                       (c.name, "through h", lag, P.through_h[0])]
        for c in memory_cells:
            full_c, mem_c = memory[c.name]
            series += [(c.name, "full", lag, full_c), (c.name, "memory block (C, n)", lag, mem_c)]
        export_curves(fig_dir / "carousel", series, "lag $T-k$", "$\\log_{10}\\|\\cdot\\|_2$")
        first = next(c for c in cells if c in lstm_cells or c.name in memory)
        add_figure("carousel", _path_caption(lstm_cells, memory_cells, memory_first=first.name in memory))
    if lstm_cells:
        for c in lstm_cells:
            r = runs[c.name]
            P = paths[c.name]
            blk, car, thr = P.block[0], P.carousel[0], P.through_h[0]
            r_blk, r_car = decay_rate(blk), decay_rate(car)
            r_thr = decay_rate(thr[:-1]) if thr.size > 2 and np.all(np.isfinite(thr[:-1])) else None
            F = P.forget[0]  # (T, n), row k holds f_{k+1}
            best_unit = float(np.log10(F).mean(axis=0).max())  # rate of max_i ∏_j f_{j,i} at lag T
            best_step = float(np.log10(F.max(axis=1)).mean())  # rate of ∏_j max_i f_{j,i}
            over = np.nonzero(thr > car)[0]
            cross = int(steps - over.max()) if over.size else None
            info = {"rate_block": r_blk, "rate_carousel": r_car, "rate_through_h": r_thr,
                    "rate_full": r.rate_full, "best_single_unit": best_unit, "best_unit_per_step": best_step,
                    "first_lag_through_h_exceeds_carousel": cross,
                    "log10_block_T": float(blk[0]), "log10_carousel_T": float(car[0])}
            path_claims[c.name] = info
            text = path_rates_sentence(c.name, r_blk, r_car, r_thr, r.rate_full)
            if carousel(c).constant:
                dev = float(np.max(np.abs(car))) if np.all(np.isfinite(car)) else float("inf")
                text += (" The carousel curve is flat at $\\log_{10} \\lVert I \\rVert_2 = 0$ "
                         f"(largest deviation {dev:.1e}), as the algebra says."
                         if dev < 1e-9 else
                         f" The carousel curve deviates from 0 by up to {dev:.3g}, which contradicts "
                         "the algebra: please report this.")
            if cross is not None:
                text += (f" From lag {cross} on the paths through $h$ carry more than the carousel; at "
                         f"lag {steps} the block is $10^{{{blk[0]:.2f}}}$ and the carousel "
                         f"$10^{{{car[0]:.2f}}}$.")
            cc_block = c.jacobian()["c", "c"]
            is_diag_f = isinstance(cc_block, Diag) and getattr(cc_block.vector, "name", "").startswith("f")
            if not is_diag_f and not carousel(c).constant:
                text += (" (This cell's one-step $c \\to c$ block is not $\\operatorname{diag}(f_t)$ alone; "
                         "the carousel here is the product of its truncated $c \\to c$ blocks.)")
            elif not carousel(c).constant and r_car < r_blk:
                if r_car < r_blk <= best_step + 1e-12:
                    text += (" Why the full block beats the carousel: the carousel keeps the gradient in "
                             "one unit for the whole lag, so its norm is that of the best single unit, "
                             "$\\max_i \\prod_j f_{j,i}$ (rate "
                             f"{fmt_num(best_unit)} per step at lag $T$; the carousel's fitted rate is "
                             "close), while the paths "
                             "through $h$ can move it between units at every step. Taking the largest "
                             "forget gate at each step, $\\prod_j \\max_i f_{j,i}$, would decay at "
                             f"{fmt_num(best_step)}; the measured block lies between the two, as it does "
                             "when the gradient changes units at the cost of the cross-unit path "
                             "$\\partial c_j/\\partial h_{j-1}\\,\\partial h_{j-1}/\\partial c_{j-1}$. The gate "
                             "paths are not the weak ones: at long lags they carry almost all of it.")
                else:
                    text += (f" The block decays more slowly than the carousel; the best single unit decays "
                             f"at {fmt_num(best_unit)} and the per-step best forget gate at "
                             f"{fmt_num(best_step)} per step.")
            if carousel(c).constant:
                d = state_drift(r.net, r.net_inputs)
                sent, info_d = _drift_sentence(c.name, d.max_abs["c"][0], steps, "c")
                assert d.tanh_prime_c_T is not None
                tp = d.tanh_prime_c_T[0]
                sat = float(np.mean(tp < 0.01))
                info_d.update({"tanh_prime_mean": float(tp.mean()), "share_tanh_prime_below_0.01": sat})
                drift_claims[c.name] = info_d
                if r.rate_full > 0:
                    text += (f" Here the full gradient grows ({fmt_num(r.rate_full)} per step): the paths "
                             "through $h$ add to the identity carousel.")
                if info_d["drifts"]:
                    text += (f" The cell state drifts: $c_t = c_{{t-1}} + i_t \\odot g_t$ has nothing that "
                             f"pulls it back, and {sent}. In $h_t = o_t \\odot \\tanh(c_t)$ the factor "
                             f"$\\tanh'(c_T) = 1 - \\tanh^2(c_T)$ averages {tp.mean():.3g} over the units and "
                             f"is below 0.01 in {100 * sat:.0f} % of them: the output saturates and stops "
                             "responding to the cell it reads. This is why @[gers2000forget] added the "
                             "forget gate: to let the cell reset its state.")
            doc.para(text)
    claims["paths"] = path_claims
    claims["drift"] = drift_claims
    doc.para("Beyond the norm, [#fig:spectrum] shows how many directions of the state keep a gradient as "
             "the lag grows, and [#fig:jacobian] the last one-step Jacobian of each cell entry by entry"
             + (f"; [#fig:phase] how the decay rate of `{lstm_cells[0].name}` moves with the scale of its "
                "recurrent weights" if lstm_cells else "")
             + ". [#tab:decay] collects the rates.")

    with figure_style(size):
        fig, axes = preset_figure(len(cells), size)
        for ax, c in zip(axes, cells, strict=True):
            plot_spectrum(runs[c.name].spectra, ax=ax)
            ax.set_title(panel_title(c.title))
        figure_legend(fig, axes)
        save(fig, "spectrum")
    series = []
    for c in cells:
        for k, sv in runs[c.name].spectra.items():
            sv = np.asarray(sv, dtype=float)
            series.append((c.name, f"k = {k}", np.arange(1, sv.size + 1), sv))
    export_curves(fig_dir / "spectrum", series, "index $i$", "$\\log_{10}\\sigma_i$")
    add_figure("spectrum", "Singular values of $\\partial s_T/\\partial s_k$ ($\\log_{10}$, in descending "
               f"order) at $k \\in \\{{{', '.join(map(str, _spectrum_ks(steps)))}\\}}$, one panel per cell: "
               "how many directions of the state keep a gradient as the lag grows. Each value is computed "
               "from the product in factored form with high relative accuracy and carries an error "
               "bound; values not resolved to $10^{-6}$ in $\\log_{10}$ are not drawn, and are named in the "
               "panel, as are values that are exactly 0 (by the rank that the Jacobians' zero rows and "
               "columns allow). Data: "
               "`figures/spectrum.csv`, `figures/spectrum.tex`.")

    with figure_style(size):
        cols = min(len(cells), size.max_cols)  # square-ish panels: a heat map of a square matrix
        fig, axes = preset_figure(len(cells), size, height=0.8 * size.width / cols)
        for ax, c in zip(axes, cells, strict=True):
            plot_jacobian(runs[c.name].J_T, ax=ax, title=panel_title(c.title), state_names=c.states,
                          state_sizes=runs[c.name].net.layout.sizes)
        save(fig, "jacobian")
    export_matrices(fig_dir / "jacobian", [(c.name, runs[c.name].J_T) for c in cells])
    add_figure("jacobian", "The last one-step Jacobian $J_T = \\partial s_T/\\partial s_{T-1}$ of each "
               "cell, entry by entry (numerator layout: rows are entries of $s_T$, columns entries of "
               "$s_{T-1}$). Each panel has its own colour range, symmetric about 0 and written on its "
               "colour bar."
               + (f" The $c \\to c$ block is diagonal: {cc_block_words(lstm_cells)}."
                  if cc_block_words(lstm_cells) else "")
               + " Data: `figures/jacobian.csv`, `figures/jacobian.tex`.")
    phase = None
    if lstm_cells:
        c = lstm_cells[0]
        has_forget = c.has_forget_gate
        p_hidden, p_input, p_steps = min(hidden, 8), min(m_of[c.name], 4), min(steps, 40)
        scales = (0.5, 1.0, 1.5, 2.0)
        biases = (-1.0, 0.0, 1.0, 2.0) if has_forget else (None,)
        grid = phase_grid(c.name, hidden=p_hidden, input=p_input, steps=p_steps, scales=scales,
                          forget_biases=biases, seed=seed, batch=2)
        with figure_style(size):
            fig, (ax,) = preset_figure(1, size, height=size.row_height * 1.2)
            plot_phase_diagram(grid, ax=ax, annotate=True)
            save(fig, "phase")
        export_matrices(fig_dir / "phase", [(c.name, np.asarray(grid.rates, dtype=float))])
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
        add_figure("phase", caption + " Data: `figures/phase.csv`, `figures/phase.tex`.")

    rows = []
    table = decay_table(flows)
    with_c = bool(lstm_cells)  # the c-columns only where some cell has a cell state
    mem_groups: dict[tuple[str, ...], list[Cell]] = {}  # memory without a c (mLSTM: (C, n)) → its cells
    for c in cells:
        if "c" not in c.states and memory_states(c):
            mem_groups.setdefault(memory_states(c), []).append(c)
    for row in table:
        r = runs[row["cell"]]
        cs = [fmt_num(row["rate_cell_state"]), fmt_num(r.rate_carousel)] if with_c else []
        rows.append([f"`{row['cell']}`", str(row["n"]), str(m_of[row["cell"]]), str(row["T"]), fmt_num(row["rate"]),
                     *cs, fmt_num(r.rate_bound), fmt_num(row["log10_norm_k0"], "{:.2f}")])
    bound_words = []
    if pas:
        bound_words.append(f"$(\\gamma\\,\\sigma_{{\\max}}(W))^{{T-k}}$ [@pascanu2013difficulty] for {', '.join(pas)}")
    if res:
        bound_words.append(f"the one-step bound derived in [#sec:derivation], {', '.join(res)}")
    doc.table(["cell", "$n$", "$m$", "$T$", "rate $\\partial s_T/\\partial s_k$",
               *(["rate $\\partial c_T/\\partial c_k$", "rate carousel"] if with_c else []), "rate bound",
               "$\\log_{10}\\lVert\\partial s_T/\\partial s_0\\rVert_2$"],
              rows, "Decay rates ($\\log_{10}$ change of the spectral norm per step of lag; negative: "
              "vanishing) and the norm over the whole sequence, first sequence of seed "
              f"{seed}. "
              + ("Carousel: the $c \\to c$ block of the 1997-truncated product. " if with_c else "")
              + "".join(f"For {', '.join(f'`{c.name}`' for c in group)} the column "
                        "$\\partial c_T/\\partial c_k$ holds the memory block "
                        f"$\\partial ({', '.join(f'{m}_T' for m in mem)})"
                        f"/\\partial ({', '.join(f'{m}_k' for m in mem)})$"
                        " (no cell state $c$). " for mem, group in mem_groups.items() if with_c)
              + ("Bound: " + "; ".join(bound_words) + "." if bound_words else ""),
              "lrrrrrrrr" if with_c else "lrrrrrr", label="tab:decay")
    return Evidence(figures=figures, table=table, phase=phase, claims=claims, spreads=spreads, bounds=bounds,
                    paths=paths or None, memory=memory or None)
