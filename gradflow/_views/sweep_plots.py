"""Figures of a sweep's table: decay rate against the gain of W, and the phase diagrams.

Both read the rows :func:`~gradflow.run_sweep` returns (or ``results.parquet`` read back as
records); they compute nothing but seed means, medians and extremes of rates already measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._checks import GradflowError
from .._numeric.sweep_grid import phase_grids
from .plots import OKABE_ITO, paper_style, plot_phase_diagram, save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

_RATES = {"rate": r"$\|\partial s_T/\partial s_k\|_2$", "rate_fro": r"$\|\partial s_T/\partial s_k\|_F$",
          "rate_grad": r"$\|\partial L/\partial s_k\|$", "rate_cell_state": r"$\|\partial c_T/\partial c_k\|_2$"}
#: at most this many phase-diagram panels; beyond it only the largest n and T are drawn
MAX_PANELS = 12


def _label(cell: str, fb, n: int, T: int, several_sizes: bool) -> str:
    text = cell if fb is None else f"{cell}, $b_f = {fb:g}$"
    return f"{text} (n = {n}, T = {T})" if several_sizes else text


def _setup(pairs: set) -> str:
    """``orthogonal init, m = 4`` for the (init, input) pairs of one line or panel."""
    inits = sorted({str(i) for i, _ in pairs})
    ms = sorted({int(m) for _, m in pairs if m is not None})
    return f"{'/'.join(inits)} init, m = {'/'.join(map(str, ms))}"


def plot_sweep_rates(rows: Sequence[dict], *, ax: Axes | None = None, which: str = "rate") -> Axes:
    """Decay rate against the gain of W: one line per cell (and forget bias, and n, T when they vary).

    The line is the median over seeds; the band spans the smallest to the largest seed (drawn
    when there are several seeds). Rates of −∞ (products exactly zero) are left out of the line
    and counted in the legend.

    Arguments:
        rows: the sweep's result rows.
        ax: Axes to draw on; a new figure when None.
        which: the rate column: ``rate`` (spectral, default), ``rate_fro``, ``rate_grad`` or
            ``rate_cell_state``.

    Returns:
        the Axes.
    """
    if which not in _RATES:
        raise GradflowError(f"which must be one of {', '.join(_RATES)}, got {which!r}")
    if not rows:
        raise GradflowError("no rows to plot")
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    sizes = {(r["hidden"], r["steps"]) for r in rows}
    setups = {(r.get("init"), r.get("input")) for r in rows}
    setups_of: dict[tuple, set] = {}
    lines: dict[tuple, dict[float, list[float]]] = {}
    for r in rows:
        if r[which] is None or (isinstance(r[which], float) and math.isnan(r[which])):
            continue  # None, or NaN as pandas reads a missing value back
        fb = r["forget_bias"]
        key = (r["cell"], None if fb is None or (isinstance(fb, float) and math.isnan(fb)) else fb,
               r["hidden"], r["steps"])
        lines.setdefault(key, {}).setdefault(float(r["gain"]), []).append(float(r[which]))
        setups_of.setdefault(key, set()).add((r.get("init"), r.get("input")))
    if not lines:
        raise GradflowError(f"no finished point has a value of {which}")
    for i, (key, by_gain) in enumerate(sorted(lines.items(), key=lambda kv: str(kv[0]))):
        gains = sorted(by_gain)
        vals = [np.array(by_gain[g]) for g in gains]
        zero = sum(int(np.isneginf(v).sum()) for v in vals)
        finite = [v[np.isfinite(v)] for v in vals]
        keep = [j for j, v in enumerate(finite) if v.size]
        x = np.array([gains[j] for j in keep])
        med = np.array([np.median(finite[j]) for j in keep])
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        label = _label(key[0], key[1], key[2], key[3], len(sizes) > 1)
        if len(setups) > 1:  # cells at different inits or input sizes (a sweep's defaults): say which
            label += ", " + _setup(setups_of[key])
        if zero:
            label += f" ({zero} exactly 0)"
        ax.plot(x, med, marker="o", color=colour, label=label)
        if max(len(by_gain[g]) for g in gains) > 1 and keep:
            lo = np.array([finite[j].min() for j in keep])
            hi = np.array([finite[j].max() for j in keep])
            ax.fill_between(x, lo, hi, color=colour, alpha=0.2, linewidth=0)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(r"gain of $W$ ($\sigma_{\max}$ of each gate's $W$ with the orthogonal init)")
    ax.set_ylabel(f"decay rate of {_RATES[which]}\n($\\log_{{10}}$ per step)")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return ax


def write_sweep_figures(rows: Sequence[dict], out: str | Path) -> list[Path]:
    """``decay_rates.{png,pdf}`` and ``phase_diagram.{png,pdf}`` in ``out``; returns the paths.

    The phase diagram has one panel per (cell, n, T); beyond :data:`MAX_PANELS` panels only the
    largest n and T are drawn, and of them the first :data:`MAX_PANELS` cells (both said in the
    figure's title, with the cells left out).
    """
    import matplotlib.pyplot as plt

    out = Path(out)
    written: list[Path] = []
    with paper_style():
        fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
        plot_sweep_rates(rows, ax=ax)
        written += save_figure(fig, out / "decay_rates", formats=("png", "pdf"))
        plt.close(fig)
        grids = phase_grids(rows)
        title = ""
        if len(grids) > MAX_PANELS:
            n_max = max(g.hidden for g in grids)
            t_max = max(g.steps for g in grids if g.hidden == n_max)
            largest = [g for g in grids if g.hidden == n_max and g.steps == t_max]
            grids = largest[:MAX_PANELS]
            title = f"largest size only (n = {n_max}, T = {t_max})"
            if len(largest) > MAX_PANELS:  # never leave cells out without saying which
                title += (f"; first {MAX_PANELS} of {len(largest)} cells (not drawn: "
                          f"{', '.join(g.cell for g in largest[MAX_PANELS:])})")
        finite = [abs(float(v)) for g in grids for v in np.ravel(g.rates) if np.isfinite(v)]
        vmax = max(finite) if finite and max(finite) > 0 else 1.0
        seeds = sorted({r["seed"] for r in rows})
        what = f"mean over {len(seeds)} seeds" if len(seeds) > 1 else f"seed {seeds[0]}"
        title = f"decay rate, {what}; one colour scale ±{vmax:.2g} for every panel" + (
            f"; {title}" if title else "")
        cols = min(3, len(grids))
        nrows = math.ceil(len(grids) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), layout="constrained",
                                 squeeze=False)
        for a, g in zip(axes.flat, grids, strict=False):
            plot_phase_diagram(g, ax=a, annotate=g.rates.size <= 42, vmax=vmax)
            if len({(r.get("init"), r.get("input")) for r in rows}) > 1:  # say each panel's init and m
                mine = {(r.get("init"), r.get("input")) for r in rows if r["cell"] == g.cell
                        and r["hidden"] == g.hidden and r["steps"] == g.steps and r.get("init") == g.init}
                a.set_title(f"{a.get_title()}\n{_setup(mine)}")
        for a in list(axes.flat)[len(grids):]:
            a.set_visible(False)
        fig.suptitle(title)
        written += save_figure(fig, out / "phase_diagram", formats=("png", "pdf"))
        plt.close(fig)
    return written
