"""A grid of gradient-flow runs: its points, their keys and the measurement of one point.

A sweep is the Cartesian product cells × gains × forget biases × n × T × seeds. Each point is
one :func:`~gradflow.gradient_flow` run on freshly initialised weights (batch-mean curves over
``batch`` standard-normal input sequences), summarised as decay rates — least-squares slopes of
the log10 norm curves against the lag T − k, in log10 per step (:func:`~gradflow.decay_rate`).

A point's **key** is a hash of exactly the parameters that determine its numbers (and
:data:`SCHEMA`, bumped whenever what a point measures changes): the same point is never
computed twice, whatever grid it was part of.

No scheduler lives here: :func:`measure_point` is a plain function of one :class:`GridPoint`,
which :mod:`gradflow._numeric.sweep_run` hands to Dask (or runs in this process).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import cast

import numpy as np

from .._checks import GradflowError, finite_float, positive_int
from .._symbolic.cells import get_cell
from .._vocabulary import INIT_SCHEMES, InitScheme
from .analysis import PhaseGrid
from .flow import decay_rate, gradient_flow, network, random_inputs
from .reference_init import REFERENCE_INIT, default_input
from .size_guard import MAX_POINTS, MAX_WORK, check_flow_size, check_sweep_size, flow_work
from .structure import structured_path

#: version of what a point measures; part of every key
SCHEMA = 1

#: the columns of a result row, in table order (see :func:`measure_point`)
COLUMNS = ("key", "cell", "gain", "forget_bias", "hidden", "input", "steps", "seed", "batch", "init",
           "rate", "rate_fro", "rate_grad", "log10_norm_k0", "rate_cell_state", "seconds")


@dataclass(frozen=True)
class GridPoint:
    """One run of a sweep.

    Attributes:
        cell: the cell's name.
        gain: scale of the recurrent weights W (with the ``orthogonal`` init, W = gain·Q for every
            gate, so gain = σ_max of each gate's recurrent matrix).
        forget_bias: b_f (cells with a forget gate), None for the cell's default.
        hidden, input, steps: n, m, T.
        seed: seed of the weights and the inputs.
        batch: input sequences averaged over.
        init: initialisation scheme.
    """

    cell: str
    gain: float
    forget_bias: float | None
    hidden: int
    input: int
    steps: int
    seed: int
    batch: int
    init: InitScheme

    @property
    def key(self) -> str:
        """16 hex digits of SHA-256 over the point's parameters and :data:`SCHEMA`."""
        text = json.dumps({"schema": SCHEMA, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """The point in words, for progress and error lines."""
        fb = "" if self.forget_bias is None else f" b_f={self.forget_bias:g}"
        return (f"{self.cell} gain={self.gain:g}{fb} n={self.hidden} T={self.steps} "
                f"seed={self.seed}")


def _numbers(name: str, values: Iterable, *, allow_none: bool = False) -> tuple:
    out: list = []
    for v in values:
        if v is None and allow_none:
            out.append(None)
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
            raise GradflowError(f"{name} must be finite numbers, got {v!r}")
        out.append(float(v))
    if not out:
        raise GradflowError(f"{name} must not be empty")
    if len(set(out)) != len(out):
        raise GradflowError(f"{name} lists a value twice: {', '.join(map(str, out))}")
    return tuple(out)


def _ints(name: str, values: Iterable[int], minimum: int = 1) -> tuple[int, ...]:
    out = tuple(positive_int(v, name) if minimum >= 1 else int(v) for v in values)
    if not out:
        raise GradflowError(f"{name} must not be empty")
    if minimum < 1 and any(isinstance(v, bool) or v < minimum for v in out):
        raise GradflowError(f"{name} must be integers ≥ {minimum}, got {', '.join(map(str, out))}")
    if len(set(out)) != len(out):
        raise GradflowError(f"{name} lists a value twice: {', '.join(map(str, out))}")
    return out


def own_reference(cell: str) -> str | None:
    """The reference init a sweep gives ``cell`` by default: the cell's scheme in
    :data:`~gradflow._numeric.reference_init.REFERENCE_INIT` when it has no recurrent matrix W for
    a gain to scale (a cell with W is swept over σ_max(W) under the orthogonal init)."""
    return None if has_recurrent_matrix(cell) else REFERENCE_INIT.get(get_cell(cell).name)


def has_recurrent_matrix(cell: str) -> bool:
    """Whether the cell has an n × n recurrent matrix W, the matrix a sweep's gain scales."""
    return any(p.kind == "W" for p in get_cell(cell).recorded.params)


def grid_points(cells: Sequence[str], *, gains: Sequence[float] = (0.5, 1.0, 1.5),
                forget_biases: Sequence[float | None] = (None,), hidden: Sequence[int] = (16,),
                steps: Sequence[int] = (50,), seeds: Sequence[int] = (0,), input: int | None = None,
                batch: int = 4, init: InitScheme | None = None, max_points: int = MAX_POINTS,
                max_work: float = MAX_WORK) -> list[GridPoint]:
    """Every point of the grid cells × gains × forget biases × n × T × seeds, checked.

    A forget bias applies only to cells with a forget gate; for the others the points use the
    cell's default (``forget_bias`` None) once, whatever ``forget_biases`` lists. Likewise a gain
    (σ_max of each gate's recurrent matrix W) applies only to cells with such a matrix; cells
    without one (diagonal and state-space cells: LRU, S4D, Mamba, RG-LRU, minGRU, IndRNN …) run
    once at gain 1, their init unscaled, whatever ``gains`` lists.

    ``init`` None (the default): ``"orthogonal"`` (W = gain·Q, so the gain is σ_max of each
    gate's W), except for the cells that have a reference initialisation and no W (Mamba, S4D,
    RG-LRU, the LRU: :data:`~gradflow._numeric.reference_init.REFERENCE_INIT`), which get it, as
    ``gradflow flow`` and the report do. ``input`` None: 4, except for those cells under their
    reference init, which get :func:`~gradflow._numeric.reference_init.default_input` (Mamba
    m = n/16, S4D n/32, RG-LRU and LRU m = n). A given ``init`` or ``input`` applies to every cell.

    The grid's size is checked before a point is built: at most ``max_points`` points
    (:data:`~gradflow._numeric.size_guard.MAX_POINTS`, 10 000) and ``max_work`` multiply-adds for
    all runs together (:data:`~gradflow._numeric.size_guard.MAX_WORK`, 1e13, about three hours of
    one core; :func:`~gradflow._numeric.size_guard.flow_work`); raise them to run a larger grid.

    Raises:
        GradflowError: unknown cell or init, non-finite or repeated values, fewer than 2 steps, a run too large for
            this machine's memory (the size guard, checked on the largest n and T), more
            points than ``max_points`` or more work than ``max_work``.
    """
    if isinstance(cells, str):
        cells = [cells]
    names = [get_cell(c).name for c in cells]
    if not names:
        raise GradflowError("give at least one cell")
    if len(set(names)) != len(names):
        raise GradflowError(f"cells lists a cell twice: {', '.join(names)}")
    if init is not None and init not in INIT_SCHEMES:
        raise GradflowError(f"unknown init scheme {init!r}; known: {', '.join(INIT_SCHEMES)}")
    gs = _numbers("gains", gains)
    if min(gs) < 0:  # a gain scales W: σ_max(W) = gain under the orthogonal init
        raise GradflowError(f"gains must be non-negative (the scale of W), got {min(gs):g}")
    fbs = _numbers("forget biases", forget_biases, allow_none=True)
    ns, Ts = _ints("hidden sizes", hidden), _ints("steps", steps)
    if min(Ts) < 2:  # one lag has no slope: every rate of the point would be missing
        raise GradflowError(f"steps must be at least 2 (a decay rate is a slope over the lags T − k), "
                            f"got {min(Ts)}")
    sds = _ints("seeds", seeds, minimum=0)
    m, B = (None if input is None else positive_int(input, "input size")), positive_int(batch, "batch")

    def own_init(name: str) -> InitScheme:
        return init if init is not None else cast(InitScheme, own_reference(name) or "orthogonal")

    def own_input(name: str, n: int) -> int:
        if m is not None:
            return m
        ref = own_reference(name) if init is None else None
        return 4 if ref is None else default_input(ref, n)

    cap_points = positive_int(max_points, "max_points")
    cap_work = finite_float(max_work, "max_work")
    if cap_work <= 0:
        raise GradflowError(f"max_work must be positive, got {max_work!r}")
    # counted, not built: a grid too large is refused before it takes memory or time
    copies = {x: (len(fbs) if get_cell(x).has_forget_gate else 1) * (len(gs) if has_recurrent_matrix(x) else 1)
              * len(sds) for x in names}
    check_sweep_size(sum(copies.values()) * len(ns) * len(Ts), max_points=cap_points)
    for name in names:
        c = get_cell(name)
        mm = own_input(name, max(ns))
        check_flow_size(c, max(ns), mm, max(Ts), B, what=f"the sweep's largest {name} run (hidden size "
                        f"{max(ns)}, input size {mm}, {max(Ts)} steps, batch {B}) on one worker",
                        structured=structured_path(c) is not None)
    work, largest = 0.0, ("", 0.0)
    for name in names:
        c = get_cell(name)
        structured = structured_path(c) is not None
        for n, T in itertools.product(ns, Ts):
            w = flow_work(c, n, own_input(name, n), T, B, structured=structured)
            work += copies[name] * w
            if w > largest[1]:
                largest = (f"{name} n={n} T={T} batch {B}", w)
    check_sweep_size(0, work, largest, max_work=cap_work)
    points = []
    for name in names:
        own_fbs = fbs if get_cell(name).has_forget_gate else (None,)
        own_gs = gs if has_recurrent_matrix(name) else (1.0,)
        first = sorted(own_gs, key=lambda g: g != 1.0)  # gain 1 first: an init for another cell says so
        scheme = own_init(name)
        for g, fb, n in itertools.product(first, own_fbs, ns):  # refused now, not point by point later:
            network(name, n, own_input(name, n), init=scheme, seed=0, gain=g,  # mLSTM, an init for
                    forget_bias=fb)                                           # another cell
        for g, fb, n, T, s in itertools.product(own_gs, own_fbs, ns, Ts, sds):
            points.append(GridPoint(name, g, fb, n, own_input(name, n), T, s, B, scheme))
    return points


def measure_point(point: GridPoint) -> dict:
    """Run one point and summarise it as one result row (keys :data:`COLUMNS`).

    ``rate``, ``rate_fro``: decay rates of the batch-mean log10 ‖∂s_T/∂s_k‖₂ and ‖·‖_F;
    ``rate_grad``: of log10 ‖∂L/∂s_k‖ for L = Σ h_T; ``log10_norm_k0``: log10 ‖∂s_T/∂s_0‖₂ (batch
    mean); ``rate_cell_state``: decay rate of ‖∂c_T/∂c_k‖₂ for cells with a cell state, else None.
    A rate is −∞ where a product is exactly zero from some lag on, None where T = 1. One BLAS thread:
    the parallelism of a sweep is across points. A point that runs matrix-free (N above
    ``MATRIX_FREE_ABOVE``, or an exact run too large for memory) has no ‖·‖₂ curve, only a band:
    its ``rate``, ``log10_norm_k0`` and ``rate_cell_state`` are None (not measured) and
    ``rate_fro`` is the slope of the matrix-free ‖·‖_F estimate.
    """
    start = time.perf_counter()
    net = network(point.cell, point.hidden, point.input, init=point.init, seed=point.seed,
                  gain=point.gain, forget_bias=point.forget_bias)
    x = random_inputs(point.steps, point.input, batch=point.batch, seed=point.seed)
    flow = gradient_flow(net, x, lyapunov=False, bound=False, threads=1)
    full = flow.full.mean()

    def rate(curve) -> float | None:
        r = decay_rate(curve)  # −∞: a product exactly zero from some lag on (kept as −∞)
        return None if math.isnan(r) else r

    two = flow.sketch is None  # matrix-free: ‖·‖₂ is a band, not a curve
    row = {"key": point.key, **asdict(point),
           "rate": rate(full.log10_norm_2) if two else None, "rate_fro": rate(full.log10_norm_fro),
           "rate_grad": rate(full.log10_grad_norm),
           "log10_norm_k0": float(full.log10_norm_2[0]) if two else None,
           "rate_cell_state": rate(flow.cell_state.mean().log10_norm_2)
           if flow.cell_state is not None and two else None}
    row["seconds"] = round(time.perf_counter() - start, 4)
    return {c: row[c] for c in COLUMNS}


def _none_if_nan(v):
    return None if v is None or (isinstance(v, numbers.Real) and math.isnan(float(v))) else v


def phase_grids(rows: Sequence[dict], *, which: str = "rate") -> list[PhaseGrid]:
    """The sweep's rows as phase grids: one per (cell, n, T, init), the seed mean of ``which``.

    ``which`` is a rate column (``rate``, ``rate_fro``, ``rate_grad``, ``rate_cell_state``). A grid
    cell is NaN where no finished point has it (a failed point) or a rate is missing; a mean over
    seeds that includes −∞ is −∞.
    """
    if which not in ("rate", "rate_fro", "rate_grad", "rate_cell_state"):
        raise GradflowError(f"which must be a rate column, got {which!r}")
    groups: dict[tuple, list[dict]] = {}
    # a missing value read back through pandas is NaN, not None: the cell's default forget bias
    rows = [{**r, "forget_bias": _none_if_nan(r["forget_bias"]), which: _none_if_nan(r[which])} for r in rows]
    for r in rows:
        groups.setdefault((r["cell"], r["hidden"], r["steps"], r["init"]), []).append(r)
    grids = []
    for (cell, n, T, init), rs in groups.items():
        gains = tuple(sorted({float(r["gain"]) for r in rs}))
        fbs = sorted({r["forget_bias"] for r in rs}, key=lambda b: (b is not None, b or 0.0))
        rates = np.full((len(fbs), len(gains)), np.nan)
        for i, fb in enumerate(fbs):
            for j, g in enumerate(gains):
                vals = [r[which] for r in rs if r["forget_bias"] == fb and float(r["gain"]) == g
                        and r[which] is not None]
                if vals:
                    rates[i, j] = float(np.mean(vals))
        rates.setflags(write=False)
        grids.append(PhaseGrid(gains, tuple(fbs), rates, cell, int(n), int(T),
                               "cell_state" if which == "rate_cell_state" else "full", init))
    return grids
