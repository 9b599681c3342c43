"""The O(T·n·S²) path for cells whose state Jacobian is block-structured by unit (LRU …).

With S states of n units each, when every non-zero block ∂(s_t)_α/∂(s_{t−1})_β the symbolic core
derived is a diag(v) or the identity (α ≠ β allowed), unit j's S states couple only among
themselves: after the permutation that groups the states by unit, J_t = ⊕_j J_t^{(j)} with S × S
blocks J_t^{(j)}[α, β] = (v_{αβ,t})_j. For the LRU (S = 2) J_t^{(j)} is the rotation–scaling
[[Re λ_j, −Im λ_j], [Im λ_j, Re λ_j]]. Then, with G_k^{(j)} = J_T^{(j)} ⋯ J_{k+1}^{(j)},

    ‖∂s_T/∂s_k‖₂ = max_j σ_max(G_k^{(j)}),   ‖·‖_F² = Σ_j ‖G_k^{(j)}‖_F²,
    ‖∂L/∂s_k‖² = Σ_j ‖G_k^{(j)ᵀ} g^{(j)}‖²   (g = ∂L/∂s_T, g^{(j)}_α = g_{αn + j}),

and the Lyapunov spectrum is the union over j of the S exponents of unit j's cocycle (QR
iteration on S × S blocks). Nothing N × N is formed: one backward sweep over the stored
trajectory costs O(T·B·n·S³) flops and O(B·n·S²) memory beyond the trajectory. Each G^{(j)} is
rescaled by its largest entry at every step (the scale kept as a log), so products far below the
float range stay resolved; an exactly zero block stays exactly 0 (−inf in log).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import sympy as sp
from sympy import Identity, MatAdd, MatMul, OneMatrix, ZeroMatrix
from sympy.matrices.expressions.matexpr import MatrixExpr

from .._checks import GradflowError
from .._symbolic.nodes import Diag
from .compile import compile_expr, stable_substitutions
from .layout import refuse_sized_states
from .network import Network, to_host
from .qr_growth import exponents, qr_growth

_LN10 = math.log(10.0)


def _diagonal_vector(e):
    """v with e = diag(v) for a block written as diag(v), I, c·diag(v) or a sum of them; else None."""
    if isinstance(e, Identity):
        return OneMatrix(e.shape[0], 1)
    if isinstance(e, Diag):
        return e.vector
    if isinstance(e, MatMul):
        mats = [a for a in e.args if isinstance(a, MatrixExpr)]
        coeff = sp.Mul(*[a for a in e.args if not isinstance(a, MatrixExpr)])
        v = _diagonal_vector(mats[0]) if len(mats) == 1 else None
        return None if v is None else MatMul(coeff, v)
    if isinstance(e, MatAdd):
        parts = [_diagonal_vector(a) for a in e.args]
        return None if any(p is None for p in parts) else MatAdd(*parts)
    return None


@cache
def _unit_kernels(cell) -> tuple | None:
    """((a, b, fn), …) for the non-zero blocks, fn(env) their diagonals; None if a block is dense."""
    J = cell.jacobian()
    idx = {s: i for i, s in enumerate(cell.states)}
    vectors = {}
    for (a, b), e in J.blocks.items():
        if isinstance(e, ZeroMatrix):
            continue
        v = _diagonal_vector(e)
        if v is None:
            return None
        vectors[(idx[a], idx[b])] = v
    subs = stable_substitutions(cell.recorded.definitions, list(vectors.values()))
    return tuple((a, b, compile_expr(v, subs)) for (a, b), v in vectors.items())


def is_block_structured(cell) -> bool:
    """True when every non-zero derived block of ∂s_t/∂s_{t−1} is diagonal (diag(v), ±I, sums)."""
    return _unit_kernels(cell) is not None


def unit_blocks(net: Network, env, B: int) -> np.ndarray:
    """J_t as per-unit blocks, (B, n, S, S): [b, j, α, β] = ∂(s_t)_{α, j}/∂(s_{t−1})_{β, j}."""
    n, S = net.hidden, len(net.cell.states)
    kern = _unit_kernels(net.cell)
    if kern is None:
        raise GradflowError(f"{net.cell.name}: a dense block; the state Jacobian is not block-structured")
    out = np.zeros((B, n, S, S))
    for a, b, fn in kern:
        out[:, :, a, b] = np.broadcast_to(to_host(fn(env)), (B, n))
    return out


def _log_sigma_max(G: np.ndarray) -> np.ndarray:
    """log σ_max of each S × S block of G (..., S, S) (−inf for a zero block).

    S = 2 in closed form, for G = [[a, b], [c, d]]:
    σ_max = (√((a + d)² + (c − b)²) + √((a − d)² + (b + c)²))/2, a sum of non-negative terms (no
    cancellation, also where σ_max = σ_min, as for a rotation–scaling); larger S by an SVD.
    """
    with np.errstate(divide="ignore"):
        if G.shape[-1] == 2:
            a, b, c, d = G[..., 0, 0], G[..., 0, 1], G[..., 1, 0], G[..., 1, 1]
            return np.log(0.5 * (np.hypot(a + d, c - b) + np.hypot(a - d, b + c)))
        return np.log(np.linalg.svd(G, compute_uv=False)[..., 0])


def block_curves(net: Network, inputs, initial=None, loss_gradient=None, lyapunov: int = 0) -> dict:
    """log10 ‖∂s_T/∂s_k‖₂, ‖·‖_F and ‖∂L/∂s_k‖ (each (B, T)), and the leading Lyapunov exponents.

    ``loss_gradient``: ``trajectory -> ∂L/∂s_T`` (B, N); default L = Σ h_T. ``lyapunov``: how many
    exponents (batch mean, descending); 0 for none. ``GradflowError`` for a cell with a dense block.
    """
    refuse_sized_states(net.cell, "the per-unit block path")
    if not is_block_structured(net.cell):
        raise GradflowError(f"{net.cell.name}: the state Jacobian has dense blocks (use the dense sweep)")
    traj = net.unroll(inputs, initial)
    T, B = traj.steps, traj.states[0].shape[0]
    n, S = net.hidden, len(net.cell.states)
    if loss_gradient is None:
        g = np.zeros((B, S * n))
        g[:, :n] = 1.0
    else:
        g = to_host(loss_gradient(traj))
    g_units = np.transpose(np.reshape(g, (B, S, n)), (0, 2, 1))  # (B, n, S): g^{(j)}
    G = np.broadcast_to(np.eye(S), (B, n, S, S)).copy()
    log_scale = np.zeros((B, n))
    out = {key: np.empty((B, T)) for key in ("log10_norm_2", "log10_norm_fro", "log10_grad_norm")}
    lyap_sum = np.zeros((B, n, S)) if lyapunov else None
    Q = np.broadcast_to(np.eye(S), (B, n, S, S)).copy() if lyapunov else None
    blocks = [unit_blocks(net, net.step_env(traj, t), B) for t in range(1, T + 1)] if lyapunov else None
    for t in range(T, 0, -1):
        J = blocks[t - 1] if blocks is not None else unit_blocks(net, net.step_env(traj, t), B)
        G = G @ J
        scale = np.max(np.abs(G), axis=(-2, -1))
        zero = scale == 0
        safe = np.where(zero, 1.0, scale)
        G = G / safe[..., None, None]
        with np.errstate(divide="ignore"):
            log_scale = np.where(zero, -math.inf, log_scale + np.log(safe))
        k = t - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            l2 = np.where(zero, -math.inf, log_scale + _log_sigma_max(G))
            fro = np.where(zero, -math.inf, log_scale + 0.5 * np.log(np.sum(G * G, axis=(-2, -1))))
            gg = np.einsum("bjas,bja->bjs", G, g_units)
            lg = np.where(zero, -math.inf, log_scale + 0.5 * np.log(np.sum(gg * gg, axis=-1)))
        out["log10_norm_2"][:, k] = np.max(l2, axis=-1) / _LN10
        out["log10_norm_fro"][:, k] = _lse(2 * fro) / (2 * _LN10)
        out["log10_grad_norm"][:, k] = _lse(2 * lg) / (2 * _LN10)
    result: dict = dict(out)
    if lyapunov:
        assert blocks is not None and Q is not None and lyap_sum is not None
        unresolved = np.zeros((B, n, S), dtype=bool)
        for t in range(T):  # forward QR per unit: s_t's tangent frames
            Q, logd, floor = qr_growth(np, blocks[t] @ Q)
            lyap_sum = lyap_sum + logd
            unresolved |= floor
        spectrum = exponents(np.reshape(lyap_sum, (B, n * S)), np.reshape(unresolved, (B, n * S)), T)
        result["lyapunov"] = spectrum.mean(axis=0)[:lyapunov]
    return result


def _lse(v: np.ndarray) -> np.ndarray:
    """log Σ_j exp(v_j) over the last axis (−inf when every v_j is −inf)."""
    mx = np.max(v, axis=-1)
    shift = np.where(np.isfinite(mx), mx, 0.0)
    with np.errstate(divide="ignore"):
        return shift + np.log(np.sum(np.exp(v - shift[..., None]), axis=-1))
