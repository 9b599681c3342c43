"""How the decay curve changes while a network trains (recordings of :class:`~gradflow.torch.Recorder`).

As every plot of gradflow: an optional ``ax``, the :class:`~matplotlib.axes.Axes` returned,
matplotlib imported inside the function.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import GradflowError
from .._numeric.norms import get_norm
from .._numeric.training import curve_matrix, read_records

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def plot_training_curves(records: Sequence[Mapping[str, Any]] | str | os.PathLike, *, ax: Axes | None = None,
                         norm: str = "2", block: str | None = None, cmap: str = "viridis") -> Axes:
    """One decay curve log10 ‖∂s_T/∂s_k‖ against T − k per recording, coloured by training step.

    Arguments:
        records: the recordings (:attr:`Recorder.records`, :func:`read_records`) or the path of a
            Recorder's JSON-lines file.
        ax: the Axes to draw on (a new figure when None).
        norm: ``"2"`` (spectral), ``"fro"`` (Frobenius) or ``"grad"`` (‖∂L/∂s_k‖).
        block: None for the whole state, ``"cell_state"`` for an LSTM's c→c block.
        cmap: the colour map of the training step (the colour bar is labelled "training step").

    Returns:
        The Axes.
    """
    import matplotlib as mpl

    if isinstance(records, (str, os.PathLike)):
        records = read_records(records)
    if block not in (None, "cell_state", "carousel"):
        raise GradflowError(f"block must be None, 'cell_state' or 'carousel', got {block!r}")
    if norm == "grad":
        field, subscript = "log10_grad_norm", ""
    else:
        spec = get_norm(norm)
        field, subscript = spec.field, spec.subscript
    steps, values = curve_matrix(records, field, block)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots()
    T = values.shape[1]
    distance = T - np.arange(T)  # T − k: how far back the gradient travels
    lo, hi = float(steps.min()), float(steps.max())
    colour_norm = mpl.colors.Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1)
    colours = mpl.colormaps[cmap]
    for s, row in zip(steps, values, strict=True):
        shown = np.where(np.isfinite(row), row, np.nan)
        ax.plot(distance, shown, color=colours(colour_norm(s)), lw=1.4)
    bar = ax.figure.colorbar(mpl.cm.ScalarMappable(norm=colour_norm, cmap=colours), ax=ax)
    bar.set_label("training step")
    what = {"cell_state": r"\partial c_T/\partial c_k", "carousel": r"\prod_j \mathrm{diag}(f_j)"}.get(
        block or "", r"\partial s_T/\partial s_k")
    if field == "log10_grad_norm":
        ax.set_ylabel(r"$\log_{10}\|\partial L/\partial %s_k\|$" % ("c" if block else "s"))
    else:
        ax.set_ylabel(rf"$\log_{{10}}\|{what}\|_{{{subscript}}}$")
    ax.set_xlabel("distance T − k (steps back from T)")
    cell = records[0].get("cell", "") if records else ""
    ax.set_title(f"{cell}: gradient decay during training ({len(steps)} recordings)".strip(": "))
    return ax
