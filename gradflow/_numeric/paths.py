"""The LSTM's cell-state gradient split by path, and the drift of states that the report explains.

For a cell with a cell state c, the c→c block of the full product ∂s_T/∂s_k is

    ∂c_T/∂c_k = ∏_j diag(f_j)  +  (paths through h),

where the first term is the carousel (the c→c block of the 1997-truncated product, whose first
block column is zero, see :func:`gradflow.truncated_jacobian`) and the second is everything else:
every path that leaves the cell state at some step, runs through h_{j−1} into the gates and the
candidate of a later step, and comes back. Both terms are computed here as matrices, so their
norms and their overlap (how much of the carousel the full block keeps, sign included) are
measured, not inferred from the norms of the sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import GradflowError
from .network import check_network, to_host


def _log10_norm2(M: np.ndarray) -> np.ndarray:
    """log10 of the spectral norms of a stack (B, n, n); −inf for an exact zero."""
    s = np.linalg.norm(M, 2, axis=(-2, -1))
    with np.errstate(divide="ignore"):
        return np.log10(s)


@dataclass(frozen=True)
class CellStatePaths:
    """log10 spectral norms per sequence and k, arrays (B, T): lag T − k.

    Attributes:
        block: ‖∂c_T/∂c_k‖₂, the c→c block of the full product.
        carousel: ‖∏_{j=k+1}^T diag(f_j)‖₂.
        through_h: ‖∂c_T/∂c_k − ∏ diag(f_j)‖₂, the paths through h.
        forget: (B, T, n) the forget gates f_t (the diagonal of the c→c block), t = 1…T.
    """

    block: np.ndarray
    carousel: np.ndarray
    through_h: np.ndarray
    forget: np.ndarray


def cell_state_paths(net: Any, inputs: Any, initial: Any = None) -> CellStatePaths:
    """Split ∂c_T/∂c_k into the carousel and the paths through h (dense products, NumPy; small n)."""
    check_network(net, "cell_state_paths")
    if "c" not in net.cell.states:
        raise GradflowError(f"{net.cell.name} has no cell state c")
    traj = net.unroll(inputs, initial)
    T, n = traj.steps, net.hidden
    ci = net.cell.states.index("c")
    c = slice(ci * n, (ci + 1) * n)
    J = to_host(net.step_jacobian(traj, T))
    B, N = J.shape[0], J.shape[1]
    # P = J_T ⋯ J_{k+1} = P̂ · 10^S and D = ∏ f_j = ±10^logD are carried scaled: at long T they fall
    # far below float64's smallest number, and an underflow would read as an exact zero (−∞)
    P = np.broadcast_to(np.eye(N), (B, N, N)).copy()
    S = np.zeros(B)
    logD = np.zeros((B, n))
    Dhat = np.ones((B, n))  # D on P's scale, D / 10^S, scaled by the same divisions as P
    out = {k: np.empty((B, T)) for k in ("block", "carousel", "through_h")}
    forget = np.empty((B, T, n))
    idx = np.arange(n)
    for k in range(T - 1, -1, -1):
        Jk = to_host(net.step_jacobian(traj, k + 1))
        Jt = to_host(net.step_jacobian(traj, k + 1, truncated=True))
        forget[:, k] = np.diagonal(Jt[:, c, c], axis1=1, axis2=2)  # the truncated c→c block is diag(f)
        with np.errstate(divide="ignore"):
            logD += np.log10(np.abs(forget[:, k]))
        P = P @ Jk
        Dhat = Dhat * forget[:, k]
        big = np.abs(P).max(axis=(1, 2))
        live = big > 0  # an exactly zero product stays zero
        with np.errstate(under="ignore"):
            P[live] /= big[live, None, None]
            Dhat[live] /= big[live, None]
        S[live] += np.log10(big[live])
        block = P[:, c, c]
        car = np.zeros_like(block)
        car[:, idx, idx] = Dhat  # the carousel on P's scale (at lag 1 exactly the block)
        out["block"][:, k] = _log10_norm2(block) + S
        out["carousel"][:, k] = np.max(logD, axis=1)  # ‖diag(D)‖₂ = max_i |D_i|
        out["through_h"][:, k] = _log10_norm2(block - car) + S
    return CellStatePaths(out["block"], out["carousel"], out["through_h"], forget)


@dataclass(frozen=True)
class Drift:
    """How far the states wander: max over units of |s_t| per step (B, T+1), and tanh′ at the end."""

    max_abs: dict[str, np.ndarray]
    tanh_prime_c_T: np.ndarray | None  # (B, n): 1 − tanh²(c_T), the factor h_T = o ⊙ tanh(c_T) passes


def state_drift(net: Any, inputs: Any, initial: Any = None) -> Drift:
    """|s_t|_∞ for every state and step, and tanh′(c_T) for cells with a cell state."""
    traj = check_network(net, "state_drift").unroll(inputs, initial)
    n = net.hidden
    S = np.stack([to_host(s) for s in traj.states])  # (T+1, B, N)
    out = {}
    for i, name in enumerate(net.cell.states):
        out[name] = np.abs(S[:, :, net.layout.slice(i)]).max(axis=2).T
    tp = None
    if "c" in net.cell.states:
        ci = net.cell.states.index("c")
        tp = 1 - np.tanh(S[-1, :, ci * n:(ci + 1) * n]) ** 2
    return Drift(out, tp)
