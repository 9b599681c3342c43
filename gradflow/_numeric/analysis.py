"""Summaries of measured gradient flow: decay-rate phase grids and per-flow decay tables.

Core code (no plotting): the numbers here are what :mod:`gradflow._views.plots` draws and what reports
print. A decay rate is the least-squares slope of a batch-mean log10 norm curve against T − k
(:func:`gradflow.decay_rate`): log10 change per step, < 0 when gradients vanish.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .._checks import GradflowError, positive_int
from .._symbolic.cells import get_cell
from .._vocabulary import InitScheme
from .flow import Curves, Flow, decay_rate, gradient_flow, network, random_inputs
from .norms import get_norm

#: scales of W swept by default: from strongly contracting to expanding
DEFAULT_SCALES = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
#: forget-gate biases swept by default (cells with a forget gate)
DEFAULT_FORGET_BIASES = (-2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


@dataclass(frozen=True, eq=False)
class PhaseGrid:
    """Decay rates over a grid of recurrent-weight scale × forget-gate bias.

    Attributes:
        scales: the gains of W (columns of ``rates``).
        forget_biases: the forget-gate biases b_f (rows of ``rates``); ``(None,)`` for cells
            without a forget gate.
        rates: (len(forget_biases), len(scales)) array, log10 decay per step (read-only).
        cell: the cell's name.
        hidden, steps: n and T of every run.
        which: the curve measured, ``"full"`` (∂s_T/∂s_k) or ``"cell_state"`` (∂c_T/∂c_k).
        init: the initialisation scheme.
    """

    scales: tuple[float, ...]
    forget_biases: tuple[float | None, ...]
    rates: np.ndarray
    cell: str
    hidden: int
    steps: int
    which: str = "full"
    init: InitScheme = "orthogonal"


def _finite_tuple(name: str, values: Iterable, *, allow_none: bool = False) -> tuple:
    out: list[float | None] = []
    for v in values:
        if v is None and allow_none:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(v)):
            raise GradflowError(f"{name} must be finite numbers, got {v!r}")
        out.append(float(v))
    if not out:
        raise GradflowError(f"{name} must not be empty")
    return tuple(out)


def phase_grid(cell: str = "lstm", *, hidden: int = 16, input: int = 4, steps: int = 50,
               scales: Sequence[float] = DEFAULT_SCALES,
               forget_biases: Sequence[float | None] | None = None, seed: int = 0,
               init: InitScheme = "orthogonal", which: str = "full", batch: int = 4) -> PhaseGrid:
    """Decay rate of ‖∂s_T/∂s_k‖₂ (batch mean) over recurrent-weight scale × forget-gate bias.

    Every grid point uses the same seed (weights and inputs), so only the scale and the bias
    change between points.

    Arguments:
        cell: cell name.
        hidden, input, steps: n, m and T.
        scales: gains of the init scheme (the scale of W).
        forget_biases: forget-gate biases b_f; default :data:`DEFAULT_FORGET_BIASES` for cells
            with a forget gate and ``(None,)`` (no bias set) for the others, where any other
            value is a ``ValueError``.
        seed: seed of the weights and of the inputs.
        init: initialisation scheme (see :func:`gradflow.init_weights`).
        which: ``"full"`` (∂s_T/∂s_k) or ``"cell_state"`` (the c→c block; cells with a c state).
        batch: input sequences per grid point.

    Returns:
        :class:`PhaseGrid` whose ``rates[i, j]`` belongs to ``forget_biases[i]``, ``scales[j]``.
    """
    c = get_cell(cell)
    if which not in ("full", "cell_state"):
        raise GradflowError(f"which must be 'full' or 'cell_state', got {which!r}")
    if which == "cell_state" and "c" not in c.states:
        raise GradflowError(f"which='cell_state' needs a cell with a cell state c; {c.name} has "
                         f"states {', '.join(c.states)}")
    scales = _finite_tuple("scales", scales)
    if forget_biases is None:
        forget_biases = DEFAULT_FORGET_BIASES if c.has_forget_gate else (None,)
    forget_biases = _finite_tuple("forget_biases", forget_biases, allow_none=True)
    if not c.has_forget_gate and forget_biases != (None,):
        raise GradflowError(f"{c.name} has no forget gate: forget_biases must be (None,), "
                         f"got {forget_biases!r}")
    steps = positive_int(steps, "steps", 2)  # a decay rate is a slope over at least two lags
    inputs = random_inputs(steps, input, batch=batch, seed=seed)
    rates = np.empty((len(forget_biases), len(scales)))
    for i, fb in enumerate(forget_biases):
        for j, gain in enumerate(scales):
            net = network(c, hidden, input, init=init, seed=seed, gain=gain, forget_bias=fb)
            flow = gradient_flow(net, inputs, lyapunov=False, bound=False, mode="exact")  # ‖·‖₂ at any N
            curves = flow.full if which == "full" else flow.cell_state
            assert curves is not None  # which="cell_state" is checked above for cells without c
            rates[i, j] = decay_rate(curves.mean()["log10_norm_2"])
    rates.setflags(write=False)
    return PhaseGrid(scales, forget_biases, rates, c.name, int(hidden), int(steps), which, init)


def _curve_stats(curves: Curves | None, key: str) -> tuple[float | None, float | None]:
    if curves is None:
        return None, None
    y = curves.mean()[key]
    return (decay_rate(y) if len(y) >= 2 else None), float(y[0])  # T = 1: no slope, not measured


def decay_table(flows: Flow | Iterable[Flow], *, norm: str = "2") -> list[dict]:
    """One row per flow: sizes, decay rates and the norm at k = 0, for reports.

    Arguments:
        flows: a :class:`~gradflow.Flow` or several.
        norm: ``"2"`` (spectral) or ``"fro"`` (Frobenius) norm curves.

    Returns:
        list of dicts with keys ``cell``, ``n``, ``T``, ``batch``, ``rate`` (log10 per step of
        the full ∂s_T/∂s_k), ``log10_norm_k0`` (log10 ‖∂s_T/∂s_0‖), and ``rate_cell_state`` and
        ``log10_norm_k0_cell_state`` for the c→c block (``None`` for cells without c). A rate is
        ``None`` for T = 1 (a slope needs two lags).
    """
    key = get_norm(norm).field
    if isinstance(flows, Flow):
        flows = [flows]
    rows = []
    for f in flows:
        if not isinstance(f, Flow):
            raise GradflowError(f"decay_table takes Flow objects, got {type(f).__name__}")
        f.check_curve(key)
        rate, k0 = _curve_stats(f.full, key)
        rate_c, k0_c = _curve_stats(f.cell_state, key)
        rows.append({"cell": f.cell, "n": f.hidden, "T": f.steps, "batch": f.batch,
                     "rate": rate, "log10_norm_k0": k0,
                     "rate_cell_state": rate_c, "log10_norm_k0_cell_state": k0_c})
    return rows
