"""Figures of measured gradient flow (a view: draws results the core computed, computes nothing).

Every plot function takes an optional ``ax`` (a new figure is made when it is None) and returns
the :class:`~matplotlib.axes.Axes` it drew on. Matplotlib is imported lazily, inside the
functions, so ``import gradflow`` stays fast and never touches ``matplotlib.pyplot``; no backend
is chosen here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import GradflowError
from .._numeric.flow import Flow
from .._numeric.norms import get_norm
from .._numeric.stack import StackedFlow

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .._numeric.analysis import PhaseGrid

#: Okabe & Ito (2008) colour-blind-safe palette, in the order of the paper style's colour cycle
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

_FORMATS = ("pdf", "svg", "png")
_DIVERGING = "RdBu_r"


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    return ax


def _frame(ax: Axes) -> None:
    """A heat map gets a full frame and no grid, whatever the style says."""
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(True)


def _norm_key(norm: str) -> tuple[str, str]:
    spec = get_norm(norm)
    return spec.field, spec.subscript


def _as_2d(a: Any, what: str) -> np.ndarray:
    from .._numeric.weights import to_numpy

    a = np.asarray(to_numpy(a), dtype=float)
    if a.ndim != 2:
        raise GradflowError(f"{what} must be a 2-D array, got shape {a.shape}"
                         + (" (pass J[b] for one batch element)" if a.ndim == 3 else ""))
    return a


def plot_decay(flows: Flow | Sequence[Flow], *, ax: Axes | None = None, norm: str = "2",
               bound: bool = True, labels: Sequence[str] | None = None) -> Axes:
    """log10 ‖∂s_T/∂s_k‖ (batch mean) against T − k, one line per flow.

    Arguments:
        flows: a :class:`~gradflow.Flow` or several (e.g. different cells) on one Axes.
        ax: Axes to draw on; a new figure when None.
        norm: ``"2"`` (spectral) or ``"fro"`` (Frobenius).
        bound: also draw the Pascanu bound, dashed in the flow's colour, where the flow has one.
        labels: legend labels, one per flow (default: the cell names).

    Returns:
        the Axes.
    """
    key, sub = _norm_key(norm)
    if not isinstance(flows, (Flow, Iterable)) or isinstance(flows, (str, Mapping)):
        raise GradflowError(f"plot_decay takes a Flow or a list of Flows, got {type(flows).__name__}")
    flows = [flows] if isinstance(flows, Flow) else list(flows)
    for f in flows:
        if isinstance(f, Flow):
            f.check_curve(key)
    if not flows:
        raise GradflowError("plot_decay needs at least one Flow")
    for f in flows:
        if not isinstance(f, Flow):
            raise GradflowError(f"plot_decay takes Flow objects, got {type(f).__name__}")
    if labels is None:
        labels = [f.cell for f in flows]
    elif len(labels) != len(flows):
        raise GradflowError(f"{len(labels)} labels for {len(flows)} flows")
    ax = _axes(ax)
    for f, label in zip(flows, labels, strict=True):
        x = f.steps - f.k
        (line,) = ax.plot(x, f.full.mean()[key], label=str(label))
        mark_exact_zero(ax, x, f.full.mean()[key], line.get_color())
        if bound and f.bound is not None:
            ax.plot(x, np.asarray(f.bound), linestyle="--", color=line.get_color(),
                    linewidth=0.8 * line.get_linewidth(), label=f"{label} bound")
    ax.set_xlabel(r"$T-k$")
    ax.set_ylabel(rf"$\log_{{10}}\|\partial s_T/\partial s_k\|_{sub}$")
    ax.legend()
    return ax


def _human(cell: str) -> str:
    """A cell's title for a panel (``LSTM with forget gate``), not its command-line name."""
    from .._symbolic.cells import CELLS

    c = CELLS.get(cell)
    return cell if c is None else panel_title(c.title)


def panel_title(title: str) -> str:
    """A title as plain words for a plot: clauses with code or formulas (``_``, ``=``) left out.

    ``"residual RNN, h_t = h_{t-1} + tanh(.)"`` → ``"residual RNN"``; ``"GRU (PyTorch; Keras
    reset_after=True)"`` → ``"GRU (PyTorch)"`` (the text font has no ``_`` or braces).
    """
    import re

    def keep(part: str) -> bool:
        return not any(ch in part for ch in "_={}")

    def paren(m):
        parts = [p.strip() for p in m.group(1).split(";") if keep(p)]
        return f"({'; '.join(parts)})" if parts else ""

    clauses, depth, cur = [], 0, ""
    for ch in title:  # top-level clauses, split at ';' outside parentheses
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == ";" and depth == 0:
            clauses.append(cur)
            cur = ""
        else:
            cur += ch
    clauses.append(cur)
    out = "; ".join([clauses[0].strip()] + [c.strip() for c in clauses[1:] if keep(c)])
    out = re.sub(r"\(([^()]*)\)", paren, out)
    out = ", ".join(p.strip() for p in out.split(",") if keep(p))
    return re.sub(r"\s+", " ", out).strip() or title


def _note_size() -> float:
    """The font size of notes written into a plot: the legend's (never below 8 pt in the presets)."""
    import matplotlib

    return float(matplotlib.font_manager.FontProperties(size=matplotlib.rcParams["legend.fontsize"])
                 .get_size_in_points())


def mark_exact_zero(ax: Axes, x: Any, y: Any, color: Any) -> int | None:
    """Where a log10 curve becomes −∞ (an exact zero), mark its last finite point and say so.

    Returns the first lag with an exact zero (None when the curve never reaches zero).
    """
    x, y = np.asarray(x), np.asarray(y, dtype=float)
    zero = np.isneginf(y)
    if not zero.any() or zero.all():
        return None
    first_zero = float(np.min(x[zero]))
    finite = np.isfinite(y) & (x < first_zero)
    if not finite.any():
        return None
    i = int(np.argmax(np.where(finite, x, -np.inf)))
    ax.plot([x[i]], [y[i]], marker="v", color=color, markersize=5, linestyle="none")
    # beside the marker, at its height (below it, where the marker often sits at the bottom of the
    # frame, the text ran onto the tick labels): to the right unless the marker is far right on
    # the curve's lag axis (the frame's limits are not final while other curves are still to come)
    left = x[i] > x.min() + 0.6 * (x.max() - x.min())
    ax.annotate(f"exact 0 from lag {first_zero:g}", (x[i], y[i]), xytext=(-6 if left else 6, 0),
                textcoords="offset points", ha="right" if left else "left", va="center",
                fontsize=_note_size(), color=color)
    return int(first_zero)


def plot_decay_band(spreads: Mapping[str, Any], *, ax: Axes | None = None,
                    bounds: Mapping[str, Any] | None = None, labels: Mapping[str, str] | None = None,
                    clip_bound: bool = True) -> Axes:
    """Median of log10 ‖∂s_T/∂s_k‖₂ and its quantile band (a :class:`Spread` per cell) against T − k.

    Arguments:
        spreads: cell name → :class:`~gradflow._numeric.spread.Spread`.
        ax: Axes to draw on; a new figure when None.
        bounds: cell name → log10 bound curve (T,), drawn dashed in the cell's colour.
        labels: cell name → legend label (default: the cell's title).
        clip_bound: keep the y-range on the measured curves; a bound that leaves it is cut at
            the frame and its largest value written at the edge.

    Returns:
        the Axes.
    """
    if not spreads:
        raise GradflowError("plot_decay_band needs at least one spread")
    ax = _axes(ax)
    lo_y, hi_y = np.inf, -np.inf
    for name, sp in spreads.items():
        T = sp.median.shape[0]
        x = T - np.arange(T)
        label = (labels or {}).get(name, _human(name))
        (line,) = ax.plot(x, sp.median, label=label)
        lo = np.where(np.isneginf(sp.lo), np.nan, sp.lo)
        ax.fill_between(x, lo, sp.hi, color=line.get_color(), alpha=0.2, linewidth=0)
        mark_exact_zero(ax, x, sp.median, line.get_color())
        fin = np.concatenate([v[np.isfinite(v)] for v in (sp.median, sp.lo, sp.hi)])
        if fin.size:
            lo_y, hi_y = min(lo_y, fin.min()), max(hi_y, fin.max())
        b = None if bounds is None else bounds.get(name)
        if b is not None:
            b = np.asarray(b, dtype=float)
            ax.plot(x, b, linestyle="--", color=line.get_color(), linewidth=0.8 * line.get_linewidth(),
                    label=f"{label}: bound")
    if clip_bound and np.isfinite(lo_y) and bounds:
        pad = 0.08 * max(hi_y - lo_y, 1.0)
        top = hi_y + pad
        ax.set_ylim(lo_y - pad, top)
        for b in bounds.values():
            if b is not None and np.nanmax(b) > top:
                big = float(np.nanmax(b))  # two significant digits: AntisymmetricRNN's 0.27 read "+0"
                ax.annotate(f"bound up to {big:+.0f} (off scale)" if abs(big) >= 10 else
                            f"bound up to {big:+.2g} (off scale)", (0.98, 0.98),
                            xycoords="axes fraction", ha="right", va="top", fontsize=_note_size())
                break
    ax.set_xlabel(r"lag $T-k$")
    ax.set_ylabel(r"$\log_{10}\|\partial s_T/\partial s_k\|_2$")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))  # a lag is whole steps
    return ax


def _lag_axes(ax: Axes, title: str | None) -> Axes:
    """x: the lag T − k in whole steps; y: log10 ‖·‖₂; the panel title when given."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel(r"lag $T-k$")
    ax.set_ylabel(r"$\log_{10}\|\cdot\|_2$")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))  # a lag is whole steps
    if title:
        ax.set_title(title)
    return ax


def plot_cell_state_paths(paths: Any, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """An LSTM's ∂c_T/∂c_k split by path (first sequence): block, carousel, paths through h.

    Arguments:
        paths: a :class:`~gradflow._numeric.paths.CellStatePaths`.
        ax: Axes to draw on; a new figure when None.
        title: panel title.

    Returns:
        the Axes.
    """
    import matplotlib

    ax = _axes(ax)
    T = paths.block.shape[1]
    x = T - np.arange(T)
    lw = float(matplotlib.rcParams["lines.linewidth"])
    every = max(1, T // 12)  # markers a twelfth of the lag axis apart: sparse enough to read the line
    # drawn wide to narrow, later ones on top: the block (wide, solid) under the carousel (dashed) under
    # the paths through h (dotted, open circles), which at long lags lie on the block
    curves = ((paths.block[0], r"$c\to c$ block $\partial c_T/\partial c_k$",
               dict(linestyle="-", linewidth=2.2 * lw, color="C0", zorder=2.0)),
              (paths.carousel[0], r"carousel (truncated $c\to c$ product)",
               dict(linestyle="--", linewidth=lw, color="C1", zorder=2.2)),
              (paths.through_h[0], r"paths through $h$ (block $-$ carousel)",
               dict(linestyle=":", linewidth=lw, color="C2", zorder=2.4, marker="o", markersize=3.5,
                    markerfacecolor="white", markevery=(every // 2, every))))
    for y, label, style in curves:
        (line,) = ax.plot(x, y, label=label, **style)  # type: ignore[arg-type]
        mark_exact_zero(ax, x, y, line.get_color())
    lags = on_curve_lags(x, paths.through_h[0], paths.block[0])
    if lags is not None:  # say it: there the two curves are one line on the page
        from matplotlib.legend import Legend

        # a note placed where it covers the least data ("best"), without a frame and beneath the
        # curves, so it hides none of them; not the axes' legend, so figure_legend neither collects
        # nor removes it
        note = Legend(ax, [], [], title=f"paths through $h$ = block\nto {ON_CURVE * 100:g} % at lags {lags[0]} to "
                      f"{lags[1]}", loc="best", frameon=False, title_fontsize=_note_size(), borderpad=0.3)
        note.get_title().set_color("C2")
        note.set_zorder(1.5)
        ax.add_artist(note)
    return _lag_axes(ax, title)


#: two log10 curves closer than log10(1 + ON_CURVE) are drawn as one line at any printed size (a
#: line is ≥ 0.1 decade wide on the report's axes): where that holds, the figure says so
ON_CURVE = 0.01


def on_curve_lags(x: Any, y: Any, ref: Any, rel: float = ON_CURVE) -> tuple[int, int] | None:
    """The longest run of consecutive lags (smallest, largest) on which the log10 curves ``y`` and
    ``ref`` agree to ``rel`` (|y − ref| ≤ log10(1 + rel), both finite), if it spans at least a tenth
    of the lags (and 3); None otherwise."""
    x, y, ref = np.asarray(x), np.asarray(y, dtype=float), np.asarray(ref, dtype=float)
    order = np.argsort(x)
    x, y, ref = x[order], y[order], ref[order]
    with np.errstate(invalid="ignore"):
        close = np.isfinite(y) & np.isfinite(ref) & (np.abs(y - ref) <= np.log10(1 + rel))
    best, start = (0, 0), None
    for i, c in enumerate([*close, False]):
        if c and start is None:
            start = i
        elif not c and start is not None:
            best = max(best, (i - start, start))
            start = None
    length, first = best
    if length < max(3, len(x) / 10):
        return None
    return int(x[first]), int(x[first + length - 1])


def plot_memory_paths(full: Any, memory: Any, *, ax: Axes | None = None, title: str | None = None) -> Axes:
    """mLSTM: the memory block ‖∂(C_T, n_T)/∂(C_k, n_k)‖₂ = ∏_{j>k} f_j against the full product ‖∂s_T/∂s_k‖₂.

    Arguments:
        full: log10 ‖∂s_T/∂s_k‖₂ of one sequence, (T,), index k (``Flow.full.log10_norm_2[b]``).
        memory: log10 ‖∂(C_T, n_T)/∂(C_k, n_k)‖₂ of the same sequence, (T,) (``Flow.cell_state``).
        ax: Axes to draw on; a new figure when None.
        title: panel title.

    Returns:
        the Axes.
    """
    ax = _axes(ax)
    full, memory = np.asarray(full, dtype=float), np.asarray(memory, dtype=float)
    T = full.shape[0]
    x = T - np.arange(T)
    # colours of their own: the LSTM panels of the same figure use C0–C2 for other curves
    for y, label, style, color in ((full, r"full product $\partial s_T/\partial s_k$", "-", "C3"),
                                   (memory, r"memory block $\partial (C_T, n_T)/\partial (C_k, n_k)$", "--", "C4")):
        (line,) = ax.plot(x, y, linestyle=style, color=color, label=label)
        mark_exact_zero(ax, x, y, line.get_color())
    return _lag_axes(ax, title)


def plot_carousel(flow: Flow, *, ax: Axes | None = None, norm: str = "2") -> Axes:
    """LSTM: the full Jacobian, its c→c block and the carousel path ∏ diag(f_j), against T − k.

    Arguments:
        flow: an LSTM flow computed with ``gradient_flow(..., carousel=True)``.
        ax: Axes to draw on; a new figure when None.
        norm: ``"2"`` or ``"fro"``.

    Returns:
        the Axes.
    """
    if not isinstance(flow, Flow):
        raise GradflowError(f"plot_carousel takes a Flow, got {type(flow).__name__}")
    if flow.cell_state is None:
        raise GradflowError(f"plot_carousel needs an LSTM flow (a cell with a cell state c); "
                         f"got a {flow.cell} flow")
    if flow.carousel is None:
        raise GradflowError("this flow has no carousel curves: compute it with "
                         "gradient_flow(net, inputs, carousel=True)")
    key, sub = _norm_key(norm)
    flow.check_curve(key)
    ax = _axes(ax)
    x = flow.steps - flow.k
    ax.plot(x, flow.full.mean()[key], label=r"full $\partial s_T/\partial s_k$")
    ax.plot(x, flow.cell_state.mean()[key], label=r"$c\to c$ block $\partial c_T/\partial c_k$")
    ax.plot(x, flow.carousel.mean()[key], linestyle="--",
            label=r"carousel $\prod_j\,\mathrm{diag}(f_j)$")
    ax.set_xlabel(r"$T-k$")
    ax.set_ylabel(rf"$\log_{{10}}\|\cdot\|_{sub}$")
    ax.set_title(f"{_human(flow.cell)}, $n = {flow.hidden}$")
    ax.legend()
    return ax


def plot_spectrum(spectra: Mapping[int, Any], *, ax: Axes | None = None) -> Axes:
    """Singular values of ∂s_T/∂s_k (log10, descending) against their index i, one line per k.

    Arguments:
        spectra: dict k → log10 σ_i, as returned by :func:`gradflow.singular_values`.
        ax: Axes to draw on; a new figure when None.

    Returns:
        the Axes.
    """
    if not spectra:
        raise GradflowError("plot_spectrum needs at least one k")
    ax = _axes(ax)
    notes = []
    zeros_from: dict[int, list[int]] = {}  # first index of the exact zeros → the k that have them
    unresolved: list[int] = []  # k whose every non-zero value is NaN (nothing to draw)
    partial = []
    all_zero = 0
    import matplotlib

    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for idx, k in enumerate(sorted(spectra)):  # colour fixed by k, so panels sharing a legend agree
        s = np.asarray(spectra[k], dtype=float).reshape(-1)
        zero = np.isneginf(s)
        if zero.all():  # nothing to draw: say so instead of a legend entry without a curve
            notes.append(f"$k = {int(k)}$: every $\\sigma_i = 0$")
            all_zero += 1
            continue
        if zero.any():
            zeros_from.setdefault(int(np.argmax(zero)) + 1, []).append(int(k))
        missing = np.flatnonzero(np.isnan(s)) + 1
        if not np.isfinite(s).any():  # no value resolved (NaN, the rest exact zeros): say so
            unresolved.append(int(k))
            continue
        ax.plot(np.arange(1, s.size + 1), s, marker="o", markersize=3, label=f"$k = {int(k)}$",
                color=colours[idx % len(colours)])
        if missing.size:  # drawn in part: which values are missing
            which = (f"${missing[0]} \\leq i \\leq {missing[-1]}$" if missing[-1] - missing[0] + 1 == missing.size
                     else f"{missing.size} of {s.size}")
            partial.append(f"$k = {int(k)}$: {which} not resolved")
    if unresolved:
        notes.append(f"$k = {', '.join(map(str, unresolved))}$: no $\\sigma_i$ resolved")
    notes += partial
    for first, ks in zeros_from.items():  # one line per first index, not one per k (mLSTM: five alike)
        who = ("every $k$" if len(ks) == len(spectra) - all_zero > 1 else
               "$k = " + ", ".join(map(str, ks)) + "$")
        notes.append(f"{who}: $\\sigma_i = 0$, $i \\geq {first}$")
    lo, hi = ax.get_ylim()
    if hi - lo < 1.0:  # a flat spectrum: a readable range around it, not ±0.04 of rounding
        mid = 0.5 * (lo + hi)
        lo, hi = mid - 0.5, mid + 0.5
        ax.set_ylim(lo, hi)
    if notes:
        # a band below the lowest curve for the notes, so that they cover no point: its share of the
        # axes is the notes' height over the axes' height, with room for a layout that shrinks the axes
        line_pt = 1.3 * _note_size()
        axes_pt = max(ax.bbox.height * 72.0 / ax.figure.dpi, 1.0)
        share = min(0.6, 1.6 * (len(notes) * line_pt + 6.0) / axes_pt)
        ax.set_ylim(lo - (hi - lo) * share / (1.0 - share), hi)
        ax.text(0.02, 0.02, "\n".join(notes), transform=ax.transAxes, ha="left", va="bottom",
                fontsize=_note_size())
    from matplotlib.ticker import MaxNLocator

    # i is an index; "auto": as many ticks as the axis has room for once laid out (mLSTM: i to 289)
    ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True))
    ax.set_xlabel(r"index $i$")
    ax.set_ylabel(r"$\log_{10}\sigma_i(\partial s_T/\partial s_k)$")
    ax.legend()
    return ax


def plot_jacobian(J: Any, *, ax: Axes | None = None, title: str | None = None,
                  state_names: Sequence[str] | None = None,
                  state_sizes: Sequence[int] | None = None) -> Axes:
    """Heat map of one Jacobian, diverging colour map centred at 0, with a colour bar.

    Arguments:
        J: (N, N) array (one batch element of :meth:`gradflow.Network.step_jacobian`).
        ax: Axes to draw on; a new figure when None.
        title: Axes title (default ``$J$``).
        state_names: names of the equal state blocks of J (e.g. ``("h", "c")``): block
            separators are drawn and the blocks labelled.
        state_sizes: the size of each named state where they differ (mLSTM: n, n², n; the
            network's ``layout.sizes``); default: equal blocks.

    Returns:
        the Axes.
    """
    J = _as_2d(J, "J")
    ax = _axes(ax)
    finite = np.abs(J[np.isfinite(J)])
    v = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    im = ax.imshow(J, cmap=_DIVERGING, vmin=-v, vmax=v, interpolation="nearest")
    _frame(ax)
    cb = ax.figure.colorbar(im, ax=ax)
    cb.set_label(f"range $\\pm{v:.3g}$")  # each panel's own: say so in the caption
    rows, cols = J.shape
    if state_names:
        S = len(state_names)
        if state_sizes is None:
            if rows % S or cols % S:
                raise GradflowError(f"a {rows}×{cols} Jacobian does not split into {S} state blocks")
            sizes = [rows // S] * S
        else:
            sizes = [int(v) for v in state_sizes]
            if len(sizes) != S or sum(sizes) != rows or rows != cols:
                raise GradflowError(f"a {rows}×{cols} Jacobian does not split into states of sizes {sizes}")
        edges = np.cumsum([0, *sizes])
        for e in edges[1:-1]:
            ax.axhline(e - 0.5, color="black", linewidth=0.8)
            ax.axvline(e - 0.5, color="black", linewidth=0.8)
        names = [f"${s}$" for s in state_names]
        middles = [(a + b) / 2 - 0.5 for a, b in zip(edges[:-1], edges[1:], strict=True)]
        # a block of one or two entries (mLSTM's m) puts its label next to its neighbour's: the
        # second label of such a close pair moves one label further out, down (x) or left (y)
        import matplotlib

        label_pt = matplotlib.font_manager.FontProperties(
            size=matplotlib.rcParams["xtick.labelsize"]).get_size_in_points()
        side_pt = max(min(ax.bbox.width, ax.bbox.height) * 72.0 / ax.figure.dpi, 1.0)
        close = rows * 2.0 * label_pt / side_pt  # two label heights, in entries of J
        ax.set_yticks(middles, names)
        ax.set_xticks(middles, names)
        from matplotlib.transforms import ScaledTranslation

        moved = False
        for i in range(1, len(middles)):
            moved = middles[i] - middles[i - 1] < close and not moved
            if moved:
                for tick, dx, dy in ((ax.xaxis.get_major_ticks()[i], 0.0, -1.1 * label_pt),
                                     (ax.yaxis.get_major_ticks()[i], -1.4 * label_pt, 0.0)):
                    lab = tick.label1
                    lab.set_transform(lab.get_transform()
                                      + ScaledTranslation(dx / 72.0, dy / 72.0, ax.figure.dpi_scale_trans))
    ax.set_xlabel(r"component of $s_{t-1}$")
    ax.set_ylabel(r"component of $s_t$")
    ax.set_title(r"$J$" if title is None else title)
    return ax


def plot_phase_diagram(grid: PhaseGrid, *, ax: Axes | None = None, annotate: bool = False,
                       vmax: float | None = None) -> Axes:
    """Decay rate over recurrent-weight scale × forget-gate bias, with its contour at rate 0.

    Grid points sit at equal spacing, labelled with their values (the sweep need not be uniform).

    Arguments:
        grid: a :class:`~gradflow.PhaseGrid`.
        ax: Axes to draw on; a new figure when None.
        annotate: write each rate in its cell (±∞ is always written: drawn in the scale's end
            colour; a missing point, NaN, is grey).
        vmax: the colour range is ±vmax (default: the grid's largest |rate|); give one value to
            several panels to compare them by colour.

    Returns:
        the Axes.
    """
    import matplotlib

    from .._numeric.analysis import PhaseGrid

    if not isinstance(grid, PhaseGrid):
        raise GradflowError(f"plot_phase_diagram takes a PhaseGrid (gradflow.phase_grid), got {type(grid).__name__}")
    raw = np.asarray(grid.rates, dtype=float)
    rates = np.ma.masked_invalid(raw)
    ax = _axes(ax)
    v = float(np.abs(rates).max()) if rates.count() and np.abs(rates).max() > 0 else 1.0
    if vmax is not None:
        v = float(vmax)
    # ±∞ (a product exactly 0, or an overflow) takes the colour map's end and is marked; only a
    # missing point (NaN) is left out, in grey: a blank cell would read as the white of rate 0
    shown = np.ma.masked_invalid(np.where(np.isinf(raw), np.sign(raw) * v, raw))
    cmap = matplotlib.colormaps[_DIVERGING].with_extremes(bad="0.8")
    im = ax.imshow(shown, cmap=cmap, vmin=-v, vmax=v, origin="lower", aspect="auto",
                   interpolation="nearest")
    _frame(ax)
    cb = ax.figure.colorbar(im, ax=ax)
    cb.set_label(rf"decay rate ($\log_{{10}}$ per step; range $\pm{v:.3g}$)")
    ny, nx = rates.shape
    if ny >= 2 and nx >= 2 and rates.count() and rates.min() < 0 < rates.max():
        ax.contour(np.arange(nx), np.arange(ny), rates, levels=[0.0], colors="black",
                   linewidths=1.0)
    for i in range(ny):
        for j in range(nx):
            if np.isinf(raw[i, j]):  # always marked: its colour alone is the end of the scale
                ax.text(j, i, "−∞ (exact 0)" if raw[i, j] < 0 else "+∞", ha="center", va="center",
                        fontsize=_note_size(), color="white")
            elif annotate and not np.ma.getmaskarray(rates)[i, j]:
                r = float(rates[i, j])  # white on the dark ends of the colour map
                ax.text(j, i, f"{r:.2f}", ha="center", va="center", fontsize=_note_size(),
                        color="white" if abs(r) > 0.6 * v else "black")
    ax.set_xticks(range(nx), [f"{s:g}" for s in grid.scales])
    ax.set_yticks(range(ny), ["default" if b is None else f"{b:g}" for b in grid.forget_biases])
    ax.set_xlabel(r"recurrent weight scale (gain of $W$)")
    ax.set_ylabel(r"forget-gate bias $b_f$" if grid.forget_biases != (None,) else "")
    what = r"$\partial c_T/\partial c_k$" if grid.which == "cell_state" else r"$\partial s_T/\partial s_k$"
    ax.set_title(f"{_human(grid.cell)}, $n = {grid.hidden}$, $T = {grid.steps}$: {what}")
    return ax


def paper_style(rc: Mapping[str, Any] | None = None) -> AbstractContextManager:
    """Context manager (``with paper_style(): ...``) of rcParams for papers and slides.

    Fonts embedded as TrueType in PDF (``pdf.fonttype`` 42) and kept as text in SVG, legible
    sizes, the colour-blind-safe Okabe–Ito palette (:data:`OKABE_ITO`) as the colour cycle,
    tight layout.

    Arguments:
        rc: further rcParams, overriding these (``{"font.size": 8}``).

    Returns:
        a :func:`matplotlib.rc_context`.
    """
    import matplotlib
    from cycler import cycler

    params: dict[str, Any] = {
        "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none",
        "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "legend.fontsize": 8,
        "xtick.labelsize": 9, "ytick.labelsize": 9,
        "lines.linewidth": 1.5, "axes.linewidth": 0.8, "legend.frameon": False,
        "axes.prop_cycle": cycler(color=list(OKABE_ITO)),
        "axes.spines.top": False, "axes.spines.right": False,
        "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5,
        "figure.figsize": (4.0, 3.0), "figure.autolayout": True,
        "savefig.bbox": "tight", "savefig.pad_inches": 0.02,
    }
    params.update(rc or {})
    return matplotlib.rc_context(params)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FigureSize:
    """A figure preset: its width at print size, its font size, the height of a row of panels."""

    width: float  # inches, as printed
    font: float  # pt: labels and titles; tick labels, legends and notes half a point smaller, never below 8
    row_height: float  # inches per row of panels
    max_cols: int  # panels side by side


#: presets for where a figure goes: a column of a two-column paper (3.3 in), the full width of a
#: page (6.9 in), a slide (4.8 in: a 128 mm beamer frame less its margins)
FIGURE_SIZES: dict[str, FigureSize] = {
    "one-column": FigureSize(3.3, 8.0, 2.1, 2),
    "two-column": FigureSize(6.9, 9.0, 2.5, 3),
    "slide": FigureSize(4.8, 10.0, 2.6, 2),
}


def figure_size(name: str) -> FigureSize:
    """The :data:`FIGURE_SIZES` preset called ``name``; GradflowError naming the presets otherwise."""
    from .._checks import one_of
    from .._vocabulary import FIGURE_SIZE_NAMES

    return FIGURE_SIZES[one_of(name, "figure size", FIGURE_SIZE_NAMES)]


def figure_style(size: str | FigureSize = "two-column", rc: Mapping[str, Any] | None = None
                 ) -> AbstractContextManager:
    """:func:`paper_style` for a figure printed at ``size``: serif text and Computer Modern math.

    Text is set in a serif family (matplotlib's ``cmr10``, Computer Modern Roman, which it ships)
    and math in ``mathtext.fontset = "cm"``, matching a LaTeX document without requiring usetex;
    every font is 8–10 pt at print size; constrained layout and ``savefig.bbox = "standard"`` keep
    the saved file exactly ``size.width`` wide, so LaTeX can include it unscaled.
    """
    fs = figure_size(size) if isinstance(size, str) else size
    tick = max(8.0, fs.font - 0.5)  # 8.5 pt on the 6.9 in preset: still 8 pt in a 6.6 in text column
    params: dict[str, Any] = {
        "font.family": "serif", "font.serif": ["cmr10", "DejaVu Serif"], "mathtext.fontset": "cm",
        "axes.formatter.use_mathtext": True, "axes.unicode_minus": True,
        "font.size": fs.font, "axes.titlesize": fs.font, "axes.labelsize": fs.font,
        "legend.fontsize": tick, "xtick.labelsize": tick, "ytick.labelsize": tick,
        "figure.titlesize": fs.font, "legend.title_fontsize": fs.font,
        "figure.autolayout": False, "figure.constrained_layout.use": True,
        "savefig.bbox": "standard", "savefig.pad_inches": 0.0,
        "lines.linewidth": 1.2, "lines.markersize": 3,
    }
    params.update(rc or {})
    return paper_style(params)


def preset_figure(count: int, size: str | FigureSize = "two-column", *, cols: int | None = None,
                  height: float | None = None):
    """A figure of ``count`` panels laid out for ``size`` (rows of ``size.max_cols``), and its Axes."""
    from matplotlib.figure import Figure

    fs = figure_size(size) if isinstance(size, str) else size
    cols = max(1, min(cols or fs.max_cols, fs.max_cols, count))
    rows = -(-count // cols)
    fig = Figure(figsize=(fs.width, (height or fs.row_height) * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, list(axes[:count])


def figure_legend(fig: Figure, axes: Sequence[Axes], *, ncols: int | None = None) -> None:
    """One legend for the figure, below the panels (off the data); duplicate labels once."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels and not lab.startswith("_"):
                handles.append(h)
                labels.append(lab)
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
    import re

    ks = [re.fullmatch(r"\$k = (-?\d+)\$", lab) for lab in labels]
    if handles and all(ks):  # one entry per k (a panel may lack some): in the order of k
        order = sorted(range(len(labels)), key=lambda i: int(ks[i].group(1)))  # type: ignore[union-attr]
        handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    if handles:
        import matplotlib

        size = matplotlib.font_manager.FontProperties(
            size=matplotlib.rcParams["legend.fontsize"]).get_size_in_points()
        # a column is as wide as the longest label (≈ 0.5 em a character) plus the line sample
        col = max(len(lab) for lab in labels) * 0.5 * size / 72 + 0.6
        fit = max(1, int(fig.get_figwidth() // col))
        fig.legend(handles, labels, loc="outside lower center", ncols=ncols or min(len(labels), fit))


def save_figure(fig: Figure, stem: str | Path, formats: Sequence[str] = ("pdf", "png"),
                dpi: int = 200) -> list[Path]:
    """Write ``fig`` as ``stem.<format>`` for each format: vector PDF/SVG, raster PNG.

    Arguments:
        fig: the figure (an Axes is taken as its figure).
        stem: path without extension; missing parent folders are created.
        formats: any of ``"pdf"``, ``"svg"``, ``"png"``.
        dpi: resolution of the PNG (and of images embedded in vector files).

    Returns:
        the paths written, in the order of ``formats``.
    """
    if isinstance(formats, str):
        formats = (formats,)
    fmts = [str(f).lower().lstrip(".") for f in formats]
    if not fmts:
        raise GradflowError("formats must name at least one of " + ", ".join(_FORMATS))
    bad = [f for f in fmts if f not in _FORMATS]
    if bad:
        raise GradflowError(f"unknown figure format(s) {', '.join(map(repr, bad))}; "
                         f"use {', '.join(_FORMATS)}")
    fig = getattr(fig, "figure", fig) if not hasattr(fig, "savefig") else fig
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    meta = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "png": {}}
    out = []
    import logging

    quiet = logging.getLogger("fontTools")  # embedding cmr10 logs its old font timestamps
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        for f in fmts:
            path = stem.parent / f"{stem.name}.{f}"
            fig.savefig(path, format=f, dpi=dpi, metadata=meta[f])
            out.append(path)
    finally:
        quiet.setLevel(level)
    return out


def plot_depth_time(flow: StackedFlow, *, ax: Axes | None = None) -> Axes:
    """Depth × time heat map of log10 ‖∂L/∂h^(l,d)_t‖ (batch mean) of a stacked network.

    One row per layer and direction (top layer at the top), one column per original time step t;
    the reverse direction's states sit at their original times t = T + 1 − k. Blank cells: no
    state there (t = T + 1 forward, t = 0 reverse) or an exactly zero gradient (log10 0 = −∞).
    The colour bar states the range of the finite values.

    Arguments:
        flow: a :class:`~gradflow._numeric.stack.StackedFlow` (:func:`~gradflow.stacked_flow`).
        ax: Axes to draw on; a new figure when None.

    Returns:
        the Axes.
    """
    if not isinstance(flow, StackedFlow):
        raise GradflowError(f"plot_depth_time takes a StackedFlow (gradflow.stacked_flow), got {type(flow).__name__}")
    labels, grid = flow.grad_map()
    data = np.ma.masked_invalid(grid)
    ax = _axes(ax)
    if data.count():
        lo, hi = float(data.min()), float(data.max())
    else:
        lo, hi = -1.0, 0.0
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    im = ax.imshow(data, cmap="viridis", vmin=lo, vmax=hi, aspect="auto", interpolation="nearest")
    _frame(ax)
    cb = ax.figure.colorbar(im, ax=ax)
    cb.set_label(r"$\log_{10}\|\partial L/\partial h^{(l)}_t\|$" + f" (from {lo:.3g} to {hi:.3g})")
    ax.set_yticks(range(len(labels)), labels)
    T = grid.shape[1]
    step = max(1, T // 10)
    ax.set_xticks(range(0, T, step), [str(t) for t in range(0, T, step)])
    ax.set_xlabel("time step t")
    ax.set_ylabel("layer (top first)")
    ax.set_title(f"{flow.cell}: {flow.num_layers} layer(s)"
                 f"{', bidirectional' if flow.bidirectional else ''}, T = {flow.steps}")
    return ax
