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
from .flow import products
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
    shape = getattr(inputs, "shape", None) or np.shape(inputs)
    if len(shape) in (2, 3):  # other shapes: the unroll says what is wrong
        from .size_guard import check_api_flow_size

        # the trajectory and two products (full and truncated) at once: a run's buffers, twice
        B, N = int(shape[1]) if len(shape) == 3 else 1, net.state_size
        check_api_flow_size(net.cell, net.hidden, net.input, int(shape[0]), B, 8, what="cell_state_paths",
                            extra=8 * 8 * B * N * N, modes=False, device=net.xp)
    traj = net.unroll(inputs, initial)
    T, n = traj.steps, net.hidden
    ci = net.cell.states.index("c")
    c = slice(ci * n, (ci + 1) * n)
    B = traj.states[0].shape[0]
    out = {k: np.empty((B, T)) for k in ("block", "carousel", "through_h")}
    forget = np.empty((B, T, n))
    # the full and the 1997-truncated products, each carried as 10^L · P (far below float64's
    # smallest number an unscaled product would read as an exact zero); the truncated one's c→c
    # block is the carousel ∏ diag(f_j), its J_{k+1}'s c→c block diag(f_{k+1})
    for full, trunc in zip(products(net, traj), products(net, traj, truncated=True), strict=True):
        k = full.k
        forget[:, k] = np.diagonal(to_host(trunc.jacobian)[:, c, c], axis1=1, axis2=2)
        block, Lb = to_host(full.P)[:, c, c], to_host(full.log10_scale)
        car, Lc = to_host(trunc.P)[:, c, c], to_host(trunc.log10_scale)
        out["block"][:, k] = _log10_norm2(block) + Lb
        out["carousel"][:, k] = _log10_norm2(car) + Lc
        top = np.maximum(Lb, Lc)  # the difference on the larger scale of the two
        top = np.where(np.isfinite(top), top, 0.0)
        with np.errstate(under="ignore", invalid="ignore"):
            diff = block * (10.0 ** (Lb - top))[:, None, None] - car * (10.0 ** (Lc - top))[:, None, None]
        out["through_h"][:, k] = _log10_norm2(diff) + top
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
