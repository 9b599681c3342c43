"""How much memory a run needs, checked before anything is allocated.

:func:`flow_bytes` estimates the peak memory of :func:`gradflow.gradient_flow` on one cell from
its sizes alone: the weights, the unrolled trajectory (every state and every named quantity of
every step, kept for the backward sweep), the inputs and a handful of (batch, N, N) buffers of the
sweep (the Jacobian, the running product, the spectral-norm and Lyapunov workspaces). It is an
upper estimate within a small factor (the tests compare it with measured peaks); it exists to
refuse runs that cannot fit, with the estimate and the largest size that would, instead of a
``MemoryError`` traceback after minutes, or the machine swapping.

The memory available is ``MemAvailable`` of ``/proc/meminfo``, lowered by a cgroup limit or an
address-space rlimit when they are smaller; for a network on a GPU (CuPy arrays) it is the
device's free memory plus the free blocks of CuPy's memory pool, where the run's buffers live. The
environment variable ``GRADFLOW_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix) overrides both.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Callable, Mapping
from functools import cache

import sympy as sp

from .._checks import GradflowError, positive_int
from .layout import param_shape, state_layout

#: (batch, N, N) buffers alive at once in the sweep (J_t, the product, workspaces), with room
_SQUARE_BUFFERS = 8
#: bytes of bookkeeping per kept array (object header, dict slot), measured with tracemalloc
_PER_ARRAY = 160
#: results, compiled kernels and other bookkeeping that does not grow with the sizes
_FIXED = 1 << 20
#: a run may use at most this share of the available memory
MEMORY_SHARE = 0.8


def human(nbytes: float) -> str:
    """``7.28 TiB``-style size."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(nbytes) < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.2f} {unit}"
        nbytes /= 1024
    raise AssertionError


def _parse_bytes(text: str) -> int | None:
    s = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    if s[-1:] in "KMGTP" and s[-1:]:
        mult = 1024 ** ("KMGTP".index(s[-1]) + 1)
        s = s[:-1]
    try:
        v = float(s)
    except ValueError:
        return None
    # inf (int() overflows) and sizes below one byte are not sizes: the caller says what is wanted
    return int(v * mult) if math.isfinite(v) and v * mult >= 1 else None


def on_gpu(xp) -> bool:
    """Whether the array namespace ``xp`` is CuPy's (checked by name: CuPy is not imported)."""
    return xp is not None and getattr(xp, "__name__", "").split(".")[-1] == "cupy"


def _gpu_free() -> int | None:
    """Free memory of the current CUDA device plus CuPy's pooled free blocks, or None if unknown."""
    try:
        import cupy

        free, _ = cupy.cuda.runtime.memGetInfo()
        return int(free) + int(cupy.get_default_memory_pool().free_bytes())
    except Exception:  # no device, no driver, a CuPy without these calls: the host's memory applies
        return None


def available_bytes(device=None) -> int:
    """Memory this process may use now (see the module docstring); ``device``: the array
    namespace of the run (CuPy's: the GPU's free memory)."""
    env = os.environ.get("GRADFLOW_MEMORY_LIMIT")
    if env:
        v = _parse_bytes(env)
        if v is None:
            raise GradflowError(f"GRADFLOW_MEMORY_LIMIT must be a size in bytes (e.g. 4G), got {env!r}")
        return v
    if on_gpu(device):
        gpu = _gpu_free()
        if gpu is not None:
            return gpu
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 1 << 62
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            lim = f.read().strip()
        if lim.isdigit():
            avail = min(avail, int(lim))
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft not in (resource.RLIM_INFINITY, -1) and soft > 0:
        avail = min(avail, soft)
    return avail


def weight_entries(cell, n: int, m: int) -> int:
    """How many numbers the cell's parameters hold at sizes n, m (W n × n, U n × m, b and w n, …)."""
    return sum(math.prod(param_shape(p, n, m)) for p in cell.recorded.params)


def flow_bytes(cell, hidden: int, input: int, steps: int, batch: int = 1, itemsize: int = 8, *,
               structured: bool = False, precomputed: bool = True, streaming: bool = False) -> int:
    """Estimated peak bytes of a gradient-flow run of ``cell`` (a :class:`Cell`) at these sizes;
    ``structured``: the exact mode takes the diagonal or per-unit block path
    (:func:`gradflow._numeric.structure.structured_path`), which holds no N × N matrix;
    ``precomputed``: the exact chain's Jacobian terms for all steps at once are counted
    (:func:`_precompute_entries`; the matrix-free sweep evaluates them step by step);
    ``streaming``: the structured run is the diagonal path without a per-step loss, two forward
    passes that keep no trajectory (:mod:`gradflow._numeric.diagonal`: O(B·N) whatever T): the
    inputs, a few (B, N) rows and the (B, T) curves."""
    n, m, T, B = int(hidden), int(input), int(steps), int(batch)
    S = len(cell.states)
    N, named_entries = state_entries(cell, n)
    G = max(1, len(cell.recorded.gates))
    named = max(1, len(cell.recorded.definitions))
    weights = G * n * (n + m + 2)
    trajectory = (T + 1) * B * N + T * B * named_entries + T * B * m
    if structured:  # per step a few (B, n, S, S) blocks and (B, N) rows, no N × N buffer
        weights = 2 * weight_entries(cell, n, m)  # and a stacked copy
        sweep = 8 * (T + 1) * B * N * S + 8 * T * B
    else:
        sweep = _SQUARE_BUFFERS * B * N * N + 8 * T * B
        if precomputed:
            sweep += _precompute_entries(cell, n, N, named_entries, T, B, itemsize)
    objects = T * (named + S + 4) * _PER_ARRAY  # every step keeps a few small arrays and their dict
    if structured and streaming:
        trajectory, sweep, objects = T * B * m, 16 * B * N * S + 8 * T * B, 0
    return itemsize * (weights + trajectory + sweep) + objects + _FIXED


#: the bytes up to which the NumPy chain evaluates its Jacobian terms for all steps at once
#: (:meth:`gradflow._numeric.matrix_free.JacobianOperator.precompute`'s ``limit``)
_PRECOMPUTE_LIMIT = 2**27


@cache
def _vector_terms(cell) -> int:
    """The terms with a vector v the exact chain precomputes for all steps
    (:func:`gradflow._numeric.jacobian_terms.vector_term_count`: the operator's own classification)."""
    from .jacobian_terms import vector_term_count

    return vector_term_count(cell)


def _precompute_entries(cell, n: int, N: int, named: int, T: int, B: int, itemsize: int) -> int:
    """Entries the chain holds while it precomputes its Jacobian terms for all T steps: v for each
    of ``nv`` terms and the fused blocks' coefficients (about 2·nv·T·B·n kept, twice that at the
    peak of their evaluation) and the flattened copy of the trajectory (T·B·(N + named), twice);
    measured with tracemalloc (LSTM, GRU, tanh-RNN at n = 64, 256: at most 36·T·B·n for the
    LSTM, which this counts as 52). None when the chain skips the precomputation (its limit)."""
    nv = _vector_terms(cell)
    if not nv or 2 * T * B * n * nv * itemsize > _PRECOMPUTE_LIMIT:
        return 0
    return T * B * (4 * nv * n + 2 * (N + named))


@cache
def state_entries(cell, n: int) -> tuple[int, int]:
    """(N, the entries of one step's named quantities): S·n and (named)·n when every state and
    quantity has n entries; mLSTM's vec C_t has n², so N = n² + 2n (+ 1 with its stabiliser m)."""
    from .._symbolic.cell import n as n_symbol

    try:
        N = state_layout(cell, n).total
    except GradflowError:  # a size in another symbol (a projected LSTM's p): n per state
        N = len(cell.states) * n
    named = 0
    for sym in cell.recorded.definitions:
        rows = sp.sympify(sym.shape[0]).subs(n_symbol, n)
        named += int(rows) if rows.is_Integer else n
    return N, max(n, named)


def _largest(fits: Callable[[int], bool], upper: int) -> int:
    """The largest k in 1..upper with fits(k) (fits is monotone), 0 if none."""
    if not fits(1):
        return 0
    lo, hi = 1, max(1, upper)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def check_flow_size(cell, hidden: int, input: int | None, steps: int, batch: int = 1,
                    itemsize: int = 8, *, what: str | None = None,
                    input_follows_hidden: bool | Callable[[int], int] = False,
                    mode: str = "exact", probes: int = 32, structured: bool = False, hidden_step: int = 1,
                    extra: int = 0, precomputed: bool = True, streaming: bool = False, device=None,
                    per_step: int = 0) -> int:
    """Refuse a run whose estimate exceeds the memory available; return the estimate.

    ``input_follows_hidden``: m is the hidden size (the report's default), so the largest hidden
    size that fits is searched with m = n, or with m = ``input_follows_hidden(n)`` when it is a
    function (the report's default for the state-space cells, m = n / N), among the multiples of
    ``hidden_step`` (N: the advised size keeps N state entries per channel). ``mode``: ``"exact"`` or ``"matrix-free"``
    (:func:`matrix_free_bytes`), as :func:`choose_mode` resolves it; ``probes``: the matrix-free
    mode's probe vectors per state (its rows: the gradient and ``probes`` per state); ``extra``:
    bytes the caller holds beside the run (added to the estimate at every size tried);
    ``precomputed``: as :func:`flow_bytes` (False for a stack, whose chain precomputes nothing);
    ``device``: the run's array namespace (CuPy's: checked against the GPU's free memory).
    """
    m = hidden if input is None else input
    rows = 1 + int(probes) * len(cell.states)

    def estimate(c, n, mm, T, B, size):  # per_step: bytes a step beside the run (the CLI's output)
        if mode == "matrix-free":
            return matrix_free_bytes(c, n, mm, T, B, size, rows=rows) + extra + per_step * T
        return flow_bytes(c, n, mm, T, B, size, structured=structured, precomputed=precomputed,
                          streaming=streaming) + extra + per_step * T

    need = estimate(cell, hidden, m, steps, batch, itemsize)
    avail = available_bytes(device)
    budget = int(avail * MEMORY_SHARE)
    if need <= budget:
        return need

    def fits_n(k):
        mk = input_follows_hidden(k) if callable(input_follows_hidden) else k if input_follows_hidden else m
        return estimate(cell, k, mk, steps, batch, itemsize) <= budget

    def fits_t(k):
        return estimate(cell, hidden, m, k, batch, itemsize) <= budget

    step = max(1, int(hidden_step))
    best_n = step * _largest(lambda j: fits_n(step * j), hidden // step)
    best_t = _largest(fits_t, steps)
    label = what or f"{cell.name} with hidden size {hidden}, input size {m}, {steps} steps, batch {batch}"
    if mode == "matrix-free" and probes != 32:
        label += f", {probes} probe vectors"
    hints = []
    if best_n:
        hints.append(f"the largest hidden size that fits is {best_n}")
    if best_t:
        hints.append(f"the most steps that fit are {best_t}")
    hint = " and ".join(hints) if hints else "no size fits with these other settings"
    where = " on the GPU" if on_gpu(device) and not os.environ.get("GRADFLOW_MEMORY_LIMIT") else ""
    raise GradflowError(f"{label} needs about {human(need)} of memory, but {human(avail)} is available{where} "
                        f"(a run may use {int(MEMORY_SHARE * 100)}%): {hint}")


def check_api_flow_size(cell, hidden: int, input: int, steps: int, batch: int, itemsize: int = 8, *,
                        mode: str = "exact", probes: object = 32, structured: bool = False,
                        what: str = "gradient_flow", extra: int = 0, modes: bool = True,
                        streaming: bool = False, device=None) -> int:
    """:func:`check_flow_size` for a call from Python (:func:`gradflow.gradient_flow`,
    :func:`gradflow.singular_values`): the same estimate and budget as the CLI, and a message that
    names the way out in the API's words (``mode="matrix-free"``, fewer steps, a smaller batch,
    ``GRADFLOW_MEMORY_LIMIT``). ``extra``: bytes beyond the gradient-flow run (see
    :func:`check_flow_size`); ``modes``: the caller has a ``mode`` argument to suggest. Returns the
    estimate in bytes; ``device``: the run's array namespace (see :func:`check_flow_size`)."""
    if mode == "matrix-free":
        probes = positive_int(probes, "probes", 2)
    else:
        probes = 32
    label = (f"{what} of {cell.name} with hidden size {hidden}, input size {input}, {steps} steps, "
             f"batch {batch}, {mode} mode")
    try:
        return check_flow_size(cell, hidden, input, steps, batch, itemsize, what=label, mode=mode,
                               probes=probes, structured=structured, extra=extra, streaming=streaming,
                               device=device)
    except GradflowError as e:
        budget = int(available_bytes(device) * MEMORY_SHARE)
        ways = []
        rows = 1 + probes * len(cell.states)
        if modes and mode == "exact" and not structured and not any(s in cell.sizes for s in cell.states):
            mf = matrix_free_bytes(cell, hidden, input, steps, batch, itemsize, rows=rows)
            if mf <= budget:
                ways.append(f'mode="matrix-free" needs about {human(mf)} (norms estimated, '
                            f"the gradient exact)")

        def fits_b(k):
            if mode == "matrix-free":
                return matrix_free_bytes(cell, hidden, input, steps, k, itemsize, rows=rows) + extra <= budget
            return flow_bytes(cell, hidden, input, steps, k, itemsize, structured=structured,
                              streaming=streaming) + extra <= budget

        best_b = _largest(fits_b, batch) if batch > 1 else 0
        if best_b:
            ways.append(f"a batch of at most {best_b} fits")
        ways.append("GRADFLOW_MEMORY_LIMIT (bytes, e.g. 64G) overrides the memory gradflow sees")
        raise GradflowError(f"{e}; {'; '.join(ways)}") from None


def check_stacked_size(net, steps: int, batch: int, itemsize: int = 8, *, api: bool = False) -> None:
    """A stacked network's run must fit (``gradflow flow`` on a stack, :func:`gradflow.stacked_flow`):
    every layer, and the whole stack as one state of the summed size. ``api``: the message adds
    the override of a call from Python (``GRADFLOW_MEMORY_LIMIT``) and a smaller batch."""
    T, B = int(steps), int(batch)
    try:
        for lay in net.all_layers():
            check_flow_size(lay.cell, lay.hidden, lay.input, T, B, itemsize, precomputed=False)
        S = len(net.cell.states)
        # beside the run: the scaled adjoints of every layer and of the whole stack, (T + 1, B, N)
        # each, and the layers' input cotangents; every layer keeps its own steps' small arrays
        # (counted once, for the whole stack, in flow_bytes; measured: up to ~4x that per layer)
        layers = net.all_layers()
        per_step = sum(max(1, len(lay.cell.recorded.definitions)) + len(lay.cell.states) + 4 for lay in layers)
        held = 3 * (T + 1) * B * net.state_size * itemsize + 4 * T * per_step * _PER_ARRAY
        check_flow_size(net.cell, -(-net.state_size // S), net.input, T, B, itemsize,
                        what=f"the whole stack ({net.state_size} states), {T} steps, batch {B}",
                        precomputed=False, extra=held)
    except GradflowError as e:
        if not api:
            raise
        raise GradflowError(f"stacked_flow: {e}; fewer steps or a smaller batch fit in less, and "
                            f"GRADFLOW_MEMORY_LIMIT (bytes, e.g. 64G) overrides the memory gradflow sees") from None


def check_report_size(cells, hidden: int, input: int | None, steps: int, structured=(),
                      inits: Mapping[str, str] | None = None) -> None:
    """The report's numeric runs (one per cell, batch 1, float64, exact) must fit; ``structured``:
    the names of the cells whose exact run takes the diagonal or per-unit block path; ``inits``:
    cell name → init scheme, which sets the default input size when ``input`` is None
    (:func:`gradflow._numeric.reference_init.default_input`: m = n, Mamba and S4D m = n / N)."""
    from .reference_init import USUAL_STATE, default_input

    for c in cells:
        scheme = (inits or {}).get(c.name, "")

        def follows(k: int, scheme: str = scheme) -> int:
            return default_input(scheme, k)

        m = follows(hidden) if input is None else input
        usual = USUAL_STATE.get(scheme, 1) if input is None and hidden >= USUAL_STATE.get(scheme, 1) else 1
        check_flow_size(c, hidden, m, steps, 1, 8, input_follows_hidden=follows if input is None else False,
                        hidden_step=usual,
                        what=f"the report's run of {c.name} with hidden size {hidden}, "
                             f"input size {m}, {steps} steps",
                        structured=c.name in structured)


#: the exact sweep (O(T·N³)) is chosen up to this state size N; above it the matrix-free one
#: (O(T·R·n²), :mod:`gradflow._numeric.matrix_free`): an LSTM with n = 512 is still exact
MATRIX_FREE_ABOVE = 1024


def matrix_free_bytes(cell, hidden: int, input: int, steps: int, batch: int = 1, itemsize: int = 8,
                      rows: int = 65) -> int:
    """Estimated peak bytes of a matrix-free run: the exact run's weights and trajectory, a
    second copy of all weights (the temporaries of their initialisation or loading, measured:
    at n = 4096 the weights dominate), a stacked copy of the recurrent weights, and a few
    (batch, rows, N) row blocks instead of the (batch, N, N) buffers."""
    n, m, T, B = int(hidden), int(input), int(steps), int(batch)
    N = state_entries(cell, n)[0]
    G = max(1, len(cell.recorded.gates))
    square = _SQUARE_BUFFERS * B * N * N * itemsize
    weights = G * n * (n + m + 2) * itemsize
    return flow_bytes(cell, n, m, T, B, itemsize, precomputed=False) - square + weights + G * n * n * itemsize + \
        8 * B * rows * N * 8 + 8 * B * T * 8 * 6


def choose_mode(cell, hidden: int, input: int, steps: int, batch: int = 1, itemsize: int = 8,
                mode: str = "auto", *, structured: bool = False, device=None) -> str:
    """``"exact"`` or ``"matrix-free"`` for ``mode="auto"``: exact while N ≤ :data:`MATRIX_FREE_ABOVE`
    and the exact run fits in memory, matrix-free otherwise; a given mode is returned as is. A cell
    with states of other sizes than n (mLSTM) runs exact only: the size guard then says what fits;
    a cell with a diagonal or per-unit block Jacobian (``structured``) runs exact at any size."""
    if mode != "auto":
        return mode
    if any(s in cell.sizes for s in cell.states) or structured:
        return "exact"
    N = state_entries(cell, int(hidden))[0]
    budget = int(available_bytes(device) * MEMORY_SHARE)
    if N <= MATRIX_FREE_ABOVE and flow_bytes(cell, hidden, input, steps, batch, itemsize) <= budget:
        return "exact"
    return "matrix-free"


# -- the size of a sweep: how many runs, and how much work ----------------------------------------
#: the most points a sweep runs unless raised (``max_points=``, ``gradflow sweep --max-points``)
MAX_POINTS = 10_000
#: multiply-adds per second of one single-threaded run, measured with :func:`flow_work`'s estimate
#: (LSTM n = 64 and 600, tanh-RNN n = 256, exact and matrix-free: 0.4e9 to 1.5e9 per second)
WORK_PER_SECOND = 1e9
#: the most multiply-adds a sweep's runs may need together unless raised (``max_work=``,
#: ``--max-work``): 1e13, about three hours of one core at :data:`WORK_PER_SECOND`
MAX_WORK = 1e13


def flow_work(cell, hidden: int, input: int, steps: int, batch: int = 1, itemsize: int = 8,
              structured: bool = False) -> float:
    """Multiply-adds of one gradient-flow run, by its dominant term.

    Exact sweep (``mode`` as :func:`choose_mode` picks it): one N × N product P·J_t per step and
    sequence, T·B·N³ (filling J_t, the norms and the warm-started power iteration are O(N²) per
    step). Matrix-free: R = 65 row vectors through the derived blocks, T·B·R·N·(n + m).
    ``structured`` (a diagonal or per-unit-block state Jacobian, no cell state): T·B·N·S².
    """
    n, m, T, B = int(hidden), int(input), int(steps), int(batch)
    S = len(cell.states)
    N = S * n
    if structured:
        return float(T) * B * N * S * S
    if choose_mode(cell, n, m, T, B, itemsize) == "exact":
        return float(T) * B * float(N) ** 3
    return float(T) * B * 65 * N * (n + m)


def check_sweep_size(points: int, work: float = 0.0, largest: tuple[str, float] = ("", 0.0), *,
                     max_points: int = MAX_POINTS, max_work: float = MAX_WORK) -> None:
    """Refuse a sweep of more than ``max_points`` points, or whose runs need more than ``max_work``
    multiply-adds in all (:func:`flow_work`); ``largest`` = (the costliest point in words, its work).
    Checked before any point is built, directory written or worker started."""
    if points > max_points:
        raise GradflowError(f"the sweep has {points:,} points (cells × gains × forget biases × n × T × seeds), "
                            f"more than the cap of {max_points:,}: pass max_points={points} "
                            f"(--max-points {points}) to run them all")
    if work > max_work:
        raise GradflowError(f"the sweep's runs need about {work:.2g} multiply-adds (the largest, "
                            f"{largest[0]}: {largest[1]:.2g}), more than the cap of {max_work:.2g} "
                            f"(about {max_work / WORK_PER_SECOND / 3600:.2g} hours of one core): "
                            f"pass max_work={_up(work):.2g} (--max-work {_up(work):.2g}) to run them all")


def _up(x: float) -> float:
    """``x`` rounded up to two significant digits (a cap that admits it)."""
    e = math.floor(math.log10(x)) - 1
    return math.ceil(x / 10.0 ** e) * 10.0 ** e


def check_square_buffers(batch: int, N: int, itemsize: int, what: str) -> None:
    """Refuse a computation holding a few (batch, N, N) buffers (the products' J_t, P and
    workspaces, counted as the sweep counts them) that cannot fit: :func:`check_allocation`."""
    check_allocation(_SQUARE_BUFFERS * int(batch) * int(N) ** 2 * int(itemsize),
                     f"{what} (a few (batch, N, N) = ({batch}, {N}, {N}) buffers; a smaller batch needs less)")


def check_allocation(nbytes: float, what: str) -> None:
    """Refuse one allocation of ``nbytes`` (an API call's weights or inputs) that exceeds the
    memory available, before it is made: ``GradflowError`` with the estimate, not a MemoryError or
    the system's out-of-memory killer after the fact."""
    avail = available_bytes()
    if nbytes > avail * MEMORY_SHARE:
        raise GradflowError(f"{what} need about {human(nbytes)} of memory, but {human(avail)} is available "
                            f"(a run may use {int(MEMORY_SHARE * 100)}%)")
