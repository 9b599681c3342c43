"""The O(T·n) path for cells whose derived state Jacobian is diagonal (IndRNN, minGRU, minLSTM …).

When every non-zero block of ∂s_t/∂s_{t−1} that the symbolic core derived is a diag(v) or the
identity on the block diagonal, J_t = diag(a_t) and the product over time is diagonal too:

    ∂s_T/∂s_k = diag(∏_{s=k+1}^{T} a_s),   ‖·‖₂ = max_j ∏|a_{s,j}|,   ‖·‖_F² = Σ_j ∏ a_{s,j}²,
    ‖∂L/∂s_k‖² = Σ_j g_j² ∏ a_{s,j}²   (g = ∂L/∂s_T).

Nothing n × n is ever formed. Products are kept as sums of log|a| (and a count of exact zeros, so
that a unit switched off stays exactly 0): the forward pass is run twice, once for the totals
C_T = Σ_{s ≤ T} log|a_s| and once to read off C_T − C_k at every k, so memory is O(B·n) whatever T.
The log-domain difference costs an absolute error of about T·ε·max|log|a|| in log, i.e. a relative
error ~1e-11 in the norms at T = 10⁴.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from .._checks import GradflowError
from .loading import note
from .network import Network, Trajectory, kernels, to_host

_LN10 = math.log(10.0)


def is_diagonal(cell) -> bool:
    """True when every non-zero derived block of ∂s_t/∂s_{t−1} is diagonal and on the block diagonal."""
    return all(blk.a == blk.b and blk.kind in ("diag", "identity") for blk in kernels(cell).blocks)


@cache
def jacobian_reads_state(cell) -> bool:
    """True when the derived ∂s_t/∂s_{t−1}, its named quantities expanded, reads s_{t−1}.

    IndRNN's diag(φ′(W x_t + u ⊙ h_{t−1} + b) ⊙ u) does; Mamba's diag(exp(Δ_t ⊙ A)) does not.
    """
    step = cell.recorded
    prev = set(step.prev.values())
    seen: set = set()
    todo = [sym for e in cell.jacobian().blocks.values() for sym in e.free_symbols]
    while todo:
        sym = todo.pop()
        if sym not in seen:
            seen.add(sym)
            if sym in step.definitions:
                todo.extend(step.definitions[sym].free_symbols)
    return bool(seen & prev)


def _diagonal(net: Network, env, B: int):
    """a_t (B, N): the diagonal of J_t from the compiled diagonal blocks (0 where a block is zero)."""
    xp, n = net.xp, net.hidden
    parts = [xp.zeros((B, n), dtype=net.dtype) for _ in net.cell.states]
    for blk in kernels(net.cell).blocks:
        if blk.kind == "identity":
            parts[blk.a] = xp.ones((B, n), dtype=net.dtype)
        else:
            parts[blk.a] = xp.broadcast_to(blk.fn(env), (B, n))
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=-1)


def _overflow_words(net: Network, t: int, big: float) -> str:
    return (f"{net.cell.name}: the state overflowed at step t = {t}: s_{t} holds ±inf or NaN, beyond the "
            f"range of {np.dtype(net.dtype)} (the largest |s_{t - 1}| was {big:.3g})")


def _log_abs(xp, a):
    """(log|a| with zeros as 0, zero indicator)."""
    zero = a == 0
    safe = xp.where(zero, xp.ones_like(a), a)
    return xp.log(xp.abs(safe)), xp.astype(zero, a.dtype)


def _lse(xp, v):
    """log Σ_j exp(v_j) over the last axis (−inf when every v_j is −inf)."""
    mx = xp.max(v, axis=-1)
    shift = xp.where(xp.isfinite(mx), mx, xp.zeros_like(mx))
    with np.errstate(divide="ignore"):
        return shift + xp.log(xp.sum(xp.exp(v - shift[..., None]), axis=-1))


def diagonal_curves(net: Network, inputs, initial=None, loss_gradient=None, *,
                    loss_reads_state: bool | None = None) -> dict:
    """log10 ‖∂s_T/∂s_k‖₂, ‖·‖_F and ‖∂L/∂s_k‖ (each (B, T)) and the Lyapunov exponents (B, N).

    ``loss_gradient``: ``trajectory -> ∂L/∂s_T`` (it reads the final state only); default L = Σ h_T.
    ``loss_reads_state``: whether the loss's gradient reads the states (default: when
    ``loss_gradient`` is given). A state that overflowed is then one error; otherwise one note,
    since J_t = diag(a_t) of these cells may not read the state (Mamba's ā_t = exp(Δ_t ⊙ A)).
    Raises ``ValueError`` for a cell whose Jacobian is not diagonal (use the dense sweep).
    """
    if not is_diagonal(net.cell):
        raise GradflowError(f"{net.cell.name}: the state Jacobian is not diagonal")
    xp = net.xp
    inputs = net.check_inputs(inputs)
    T, B, _ = inputs.shape
    s0 = net.unroll(inputs[:1], initial, finite=False).states[0]  # the initial state, checked like unroll's

    overflow: dict = {}  # the first step whose state (or diagonal) left the dtype's range

    def run(each):
        s = s0
        for t in range(T):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # reported once, below
                s_new, env = net.step(s, inputs[t])
                a = _diagonal(net, env, B)
            if not bool(xp.all(xp.isfinite(a))):
                if "state" in overflow and jacobian_reads_state(net.cell):
                    raise GradflowError(f"{_overflow_words(net, *overflow['state'])}; J_t reads it, so every "
                                        "Jacobian from that step on is not representable; scale the weights "
                                        "or inputs down, or use fewer steps")
                raise GradflowError(f"{net.cell.name}: the diagonal of J_{t + 1} holds ±inf or NaN at step "
                                    f"t = {t + 1} (inputs or weights beyond the range of {np.dtype(net.dtype)}); "
                                    "scale the weights or inputs down")
            each(t, _log_abs(xp, a))
            if "state" not in overflow and not bool(xp.all(xp.isfinite(s_new))):
                overflow["state"] = (t + 1, float(xp.max(xp.abs(s))))
            s = s_new
        return s

    total = {"log": xp.zeros_like(s0), "zeros": xp.zeros_like(s0)}

    def accumulate(t, la):
        total["log"] = total["log"] + la[0]
        total["zeros"] = total["zeros"] + la[1]

    s_T = run(accumulate)
    if "state" in overflow:
        words = _overflow_words(net, *overflow["state"])
        if jacobian_reads_state(net.cell):  # J_t from an overflowed state: no number to give
            raise GradflowError(f"{words}; J_t reads the state, so every Jacobian from that step on is not "
                                "representable; scale the weights or inputs down, or use fewer steps")
        if loss_gradient is not None if loss_reads_state is None else loss_reads_state:
            raise GradflowError(f"{words}; the loss gradient reads the states, so it is not representable; scale the "
                                "weights or inputs down, or use the loss sum")
        note(f"{words}; J_t = diag(a_t) does not read the state and L = sum of h_T has ∂L/∂h_T = 1, so the "
             "norms are exact all the same")
    if loss_gradient is None:  # L = Σ h_T
        g = xp.concat([xp.ones_like(s_T[:, :net.hidden]), xp.zeros_like(s_T[:, net.hidden:])], axis=-1)
    else:
        g = loss_gradient(Trajectory(inputs, [s_T]))
    with np.errstate(divide="ignore"):
        log_g2 = xp.log(g * g)
    out = {key: np.empty((B, T)) for key in ("log10_norm_2", "log10_norm_fro", "log10_grad_norm")}
    C, Z = total["log"], total["zeros"]
    running = {"log": xp.zeros_like(s0), "zeros": xp.zeros_like(s0)}

    def read(t, la):
        # k = t: the product over s = k+1 … T is exp(C_T − C_k), exactly 0 where a zero remains
        L = xp.where((Z - running["zeros"]) > 0, xp.full_like(C, -math.inf), C - running["log"])
        out["log10_norm_2"][:, t] = to_host(xp.max(L, axis=-1)) / _LN10
        out["log10_norm_fro"][:, t] = to_host(_lse(xp, 2 * L)) / (2 * _LN10)
        out["log10_grad_norm"][:, t] = to_host(_lse(xp, 2 * L + log_g2)) / (2 * _LN10)
        running["log"] = running["log"] + la[0]
        running["zeros"] = running["zeros"] + la[1]

    run(read)
    lyap = to_host(xp.where(Z > 0, xp.full_like(C, -math.inf), C)) / T
    return {**out, "lyapunov": -np.sort(-lyap, axis=1)}


#: a_t (B, N), the diagonal of J_t (public name for the reverse sweep of :mod:`.loss`)
jacobian_diagonal = _diagonal
