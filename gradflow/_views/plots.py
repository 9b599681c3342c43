"""Figures of measured gradient flow (a view: draws results the core computed, computes nothing).

Every plot function takes an optional ``ax`` (a new figure is made when it is None) and returns
the :class:`~matplotlib.axes.Axes` it drew on. Matplotlib is imported lazily, inside the
functions, so ``import gradflow`` stays fast and never touches ``matplotlib.pyplot``; no backend
is chosen here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import GradflowError
from .._numeric.flow import Flow
from .._numeric.norms import get_norm

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
    flows = [flows] if isinstance(flows, Flow) else list(flows)
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
        if bound and f.bound is not None:
            ax.plot(x, np.asarray(f.bound), linestyle="--", color=line.get_color(),
                    linewidth=0.8 * line.get_linewidth(), label=f"{label} bound")
    ax.set_xlabel(r"$T-k$")
    ax.set_ylabel(rf"$\log_{{10}}\|\partial s_T/\partial s_k\|_{sub}$")
    ax.legend()
    return ax


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
    ax = _axes(ax)
    x = flow.steps - flow.k
    ax.plot(x, flow.full.mean()[key], label=r"full $\partial s_T/\partial s_k$")
    ax.plot(x, flow.cell_state.mean()[key], label=r"$c\to c$ block $\partial c_T/\partial c_k$")
    ax.plot(x, flow.carousel.mean()[key], linestyle="--",
            label=r"carousel $\Pi_j\,\mathrm{diag}(f_j)$")
    ax.set_xlabel(r"$T-k$")
    ax.set_ylabel(rf"$\log_{{10}}\|\cdot\|_{sub}$")
    ax.set_title(f"{flow.cell}, n = {flow.hidden}")
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
    for k in sorted(spectra):
        s = np.asarray(spectra[k], dtype=float).reshape(-1)
        ax.plot(np.arange(1, s.size + 1), s, marker="o", markersize=3, label=f"$k = {int(k)}$")
    ax.set_xlabel(r"$i$")
    ax.set_ylabel(r"$\log_{10}\sigma_i(\partial s_T/\partial s_k)$")
    ax.legend()
    return ax


def plot_jacobian(J: Any, *, ax: Axes | None = None, title: str | None = None,
                  state_names: Sequence[str] | None = None) -> Axes:
    """Heat map of one Jacobian, diverging colour map centred at 0, with a colour bar.

    Arguments:
        J: (N, N) array (one batch element of :meth:`gradflow.Network.step_jacobian`).
        ax: Axes to draw on; a new figure when None.
        title: Axes title (default ``$J$``).
        state_names: names of the equal state blocks of J (e.g. ``("h", "c")``): block
            separators are drawn and the blocks labelled.

    Returns:
        the Axes.
    """
    J = _as_2d(J, "J")
    ax = _axes(ax)
    finite = np.abs(J[np.isfinite(J)])
    v = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    im = ax.imshow(J, cmap=_DIVERGING, vmin=-v, vmax=v, interpolation="nearest")
    _frame(ax)
    ax.figure.colorbar(im, ax=ax)
    rows, cols = J.shape
    if state_names:
        S = len(state_names)
        if rows % S or cols % S:
            raise GradflowError(f"a {rows}×{cols} Jacobian does not split into {S} state blocks")
        br, bc = rows // S, cols // S
        for i in range(1, S):
            ax.axhline(i * br - 0.5, color="black", linewidth=0.8)
            ax.axvline(i * bc - 0.5, color="black", linewidth=0.8)
        names = [f"${s}$" for s in state_names]
        ax.set_yticks([(i + 0.5) * br - 0.5 for i in range(S)], names)
        ax.set_xticks([(i + 0.5) * bc - 0.5 for i in range(S)], names)
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
    cb.set_label(r"decay rate ($\log_{10}$ per step)")
    ny, nx = rates.shape
    if ny >= 2 and nx >= 2 and rates.count() and rates.min() < 0 < rates.max():
        ax.contour(np.arange(nx), np.arange(ny), rates, levels=[0.0], colors="black",
                   linewidths=1.0)
    for i in range(ny):
        for j in range(nx):
            if np.isinf(raw[i, j]):  # always marked: its colour alone is the end of the scale
                ax.text(j, i, "−∞ (exact 0)" if raw[i, j] < 0 else "+∞", ha="center", va="center",
                        fontsize="small", color="white")
            elif annotate and not np.ma.getmaskarray(rates)[i, j]:
                r = float(rates[i, j])  # white on the dark ends of the colour map
                ax.text(j, i, f"{r:.2f}", ha="center", va="center", fontsize="small",
                        color="white" if abs(r) > 0.6 * v else "black")
    ax.set_xticks(range(nx), [f"{s:g}" for s in grid.scales])
    ax.set_yticks(range(ny), ["default" if b is None else f"{b:g}" for b in grid.forget_biases])
    ax.set_xlabel(r"recurrent weight scale (gain of $W$)")
    ax.set_ylabel(r"forget-gate bias $b_f$" if grid.forget_biases != (None,) else "")
    what = r"$\partial c_T/\partial c_k$" if grid.which == "cell_state" else r"$\partial s_T/\partial s_k$"
    ax.set_title(f"{grid.cell}, n = {grid.hidden}, T = {grid.steps}: {what}")
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
    for f in fmts:
        path = stem.parent / f"{stem.name}.{f}"
        fig.savefig(path, format=f, dpi=dpi, metadata=meta[f])
        out.append(path)
    return out
