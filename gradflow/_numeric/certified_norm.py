"""σ_max of blocks of a batch of matrices with a checked a-posteriori error bound.

The cheap path is warm-started subspace iteration in the left singular space (the basis of the
previous k is the starting guess). A value is *accepted only when a rigorous upper bound* on
σ_max is within the tolerance of the Ritz value, which is itself a lower bound; everything else
gets σ_max computed directly (:func:`largest_singular_value`: the Gram matrix's largest eigenvalue
within its a-priori error bound, else an SVD). No stagnation or gap-estimate heuristics: an
accepted value is certified.

The bound (exact arithmetic; a rounding slack is added). Let A = P Pᵀ, U (R × r) orthonormal,
H = Uᵀ A U with Ritz pairs (θ_i, v_i), θ_1 ≥ θ_2 ≥ …, residuals ρ_i = ‖A v_i − θ_i v_i‖ (each
orthogonal to span U), and d ≥ λ_max of A compressed to U⊥; d ≤ trace = ‖P‖_F² − ‖UᵀP‖_F².
For a unit vector x = α v_1 + β w (w ⊥ v_1) one has xᵀAx ≤ α²θ_1 + 2|αβ|ρ_1 + β² d′, where d′
bounds λ_max of A compressed to v_1⊥; splitting w over span(v_2…v_r) and U⊥ the same way gives
d′ ≤ μ(θ_2, d, ‖[ρ_2 … ρ_r]‖_F), with μ(a, b, c) = (a + b)/2 + √(((a − b)/2)² + c²) the
largest eigenvalue of [[a, c], [c, b]]. So σ_max² ≤ μ(θ_1, d′, ρ_1), and σ_max ≥ √θ_1 always.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace

_EPS = float(np.finfo(np.float64).eps)


def _to_np(a):
    from .weights import to_numpy

    return np.asarray(to_numpy(a))


def _mu(xp, a, b, c):
    """λ_max of [[a, c], [c, b]] (a, b, c arrays, c ≥ 0)."""
    return 0.5 * (a + b) + xp.hypot(0.5 * (a - b), c)  # √(x² + c²) without overflow in x², c²


def upper_bound_sq(xp, U, W, Z, sumsq):
    """(θ_1, rigorous upper bound of σ_max²) for the block P with basis U, W = UᵀP, Z = P Wᵀ.

    U (B, R, r) orthonormal, W (B, r, C), Z = A U (B, R, r), sumsq = ‖P‖_F² (B,).
    """
    R, r = U.shape[-2], U.shape[-1]
    eps = _EPS if U.dtype == xp.float64 else float(np.finfo(np.float32).eps)
    H = W @ xp.matrix_transpose(W)
    H = 0.5 * (H + xp.matrix_transpose(H))
    lam, Y = xp.linalg.eigh(H)                                   # ascending
    zero = xp.zeros_like(sumsq)
    lam = xp.maximum(lam, 0.0 * lam)
    theta1 = lam[:, -1]
    res = Z @ Y - (U @ Y) * lam[:, None, :]                      # A v_i − θ_i v_i
    rho1 = xp.sqrt(xp.sum(res[:, :, -1] ** 2, axis=-1))
    slack = 8.0 * (R + r) * eps * sumsq                          # rounding in the differences below
    d = xp.maximum(sumsq - xp.sum(lam, axis=-1), zero) + slack
    rho1 = rho1 + slack
    if r > 1:
        rest = xp.sqrt(xp.sum(res[:, :, :-1] ** 2, axis=(-2, -1))) + slack
        d = _mu(xp, lam[:, -2], d, rest)
    return theta1, _mu(xp, theta1, d, rho1)


def certified_blocks(P, blocks, bases, sumsqs, *, tol=1e-10, max_iter=30, stats=None,
                     orthonormal=False):
    """σ_max of the blocks P[:, rows_b, cols_b] of a batch P (B, N, M), each certified to
    relative ``tol`` (upper bound ≤ (1 + tol)·value; at least 64 ε of the dtype) or computed by
    an SVD.

    Arguments:
        blocks: [(rows, cols)] slices; bases: [(B, rows, r_b) warm starts (orthonormal)];
        sumsqs: [(B,) ‖block‖_F²].
        stats: optional dict counting ``"exact"`` (SVD fallbacks), ``"iterations"``,
            ``"certified"``.
        orthonormal: the bases are orthonormal to working accuracy already (‖UᵀU − I‖ of order
            ε, as from a Householder QR); otherwise they are orthonormalised first.

    Returns:
        (sigmas, bases): a (B,) array per block (a lower bound within tol of σ_max, or the SVD
        value), and the updated bases for the next warm start.
    """
    xp = array_namespace(P)
    N, M = P.shape[1], P.shape[2]
    n_blk = len(blocks)
    sig: list[Any] = [None] * n_blk
    done: list[Any] = [None] * n_blk
    if not orthonormal:
        bases = [xp.linalg.qr(U)[0] for U in bases]
    # a tolerance below the dtype's own resolution cannot be certified (float32: ~1e-5)
    tol = max(tol, 64 * float(np.finfo(np.float32 if P.dtype == xp.float32 else np.float64).eps))
    lim = (1.0 + tol) ** 2
    last, finished = [None] * n_blk, [False] * n_blk
    gave_up = [np.zeros(P.shape[0], bool) for _ in range(n_blk)]
    for it in range(max_iter):
        active = [b for b in range(n_blk) if not finished[b]]
        if not active:
            break
        for b in active:
            rows, cols = blocks[b]
            Pb = P if (rows.start, rows.stop, cols.start, cols.stop) == (0, N, 0, M) else P[:, rows, cols]
            U, r = bases[b], bases[b].shape[-1]
            W = xp.matrix_transpose(U) @ Pb                               # one pass over the block
            Z = Pb @ xp.matrix_transpose(W)                               # one pass over the block
            theta1, up = upper_bound_sq(xp, U, W, Z, sumsqs[b])
            ok = (up <= lim * theta1) | (sumsqs[b] == 0)
            ritz = xp.sqrt(theta1)
            sig[b] = ritz if done[b] is None else xp.where(done[b], sig[b], ritz)
            done[b] = ok if done[b] is None else (done[b] | ok)
            # give up early (an SVD follows) where the excess of the bound over the Ritz value
            # does not shrink fast enough to reach tol within the iterations left
            with np.errstate(divide="ignore", invalid="ignore"):
                excess = np.log(np.maximum(_to_np(up / xp.where(theta1 > 0, theta1, 1.0 + 0 * theta1)) - 1, 1e-300))
            excess = np.nan_to_num(excess, nan=700.0, posinf=700.0)  # no bound yet: a huge excess
            if last[b] is not None:
                rate = np.minimum(excess - last[b], 0.0)      # log of the shrink factor per iteration
                need = np.log(2 * tol) - excess
                hopeless = (need < rate * (max_iter - it - 1)) if it >= 2 else np.zeros_like(excess, bool)
                hopeless |= rate > -0.05 if it >= 3 else False
                gave_up[b] = gave_up[b] | (hopeless & ~_to_np(done[b]))
            last[b] = excess
            if bool(np.all(_to_np(done[b]) | gave_up[b])):
                finished[b] = True
            if not finished[b] and r < U.shape[1]:
                Q, _ = xp.linalg.qr(Z)
                # a column of Z that vanished (rank-deficient block) leaves Q arbitrary but
                # orthonormal, which is all the bound needs
                bases[b] = Q
        if stats is not None:
            stats["iterations"] = stats.get("iterations", 0) + 1
    for b in range(n_blk):
        if stats is not None:
            stats["certified"] = stats.get("certified", 0) + int(xp.sum(xp.astype(done[b], xp.int64)))
        if not bool(xp.all(done[b])):
            rows, cols = blocks[b]
            exact = largest_singular_value(xp, P[:, rows, cols], sumsqs[b], tol)
            if stats is not None:
                stats["exact"] = stats.get("exact", 0) + int(xp.sum(xp.astype(~done[b], xp.int64)))
            sig[b] = xp.where(done[b], sig[b], exact)
    return sig, bases


def largest_singular_value(xp, P, sumsq, tol):
    """σ_max of each matrix of a batch P (B, R, C), not iterated: for NumPy from the largest
    eigenvalue of the Gram matrix G = PᵀP (or PPᵀ, the smaller), accepted where its a-priori error
    bound is within ``tol`` relative, an SVD otherwise.

    Forming G in floating point errs by at most γ_m ‖P‖_F² in 2-norm (m the inner dimension,
    γ_m = mε/(1 − mε)), and the symmetric eigensolver is backward stable (error ≤ c·s·ε‖G‖₂, s
    the order of G; c = 8 here); so |λ̂ − σ_max²| ≤ γ_m‖P‖_F² + 8sε·λ̂, and
    |σ̂ − σ_max|/σ_max ≤ that / λ̂ (a square root halves a relative error, which the bound does not
    use). A Gram matrix and one eigenvalue cost about half an SVD of the block.
    """
    if not isinstance(P, np.ndarray) or P.dtype != np.float64:
        return xp.linalg.svdvals(P)[:, 0]
    R, C = P.shape[-2], P.shape[-1]
    G = np.matrix_transpose(P) @ P if C <= R else P @ np.matrix_transpose(P)
    m, s = max(R, C), min(R, C)
    lam = np.linalg.eigvalsh(G)[:, -1]
    gamma = m * _EPS / (1 - m * _EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (gamma * np.asarray(sumsq, dtype=np.float64) + 8 * s * _EPS * np.abs(lam)) / lam
    out = np.sqrt(np.maximum(lam, 0.0))
    bad = ~(rel <= tol)  # NaN (λ̂ = 0) too
    if bad.any():
        out[bad] = np.linalg.svd(P[bad], compute_uv=False)[:, 0]
    return out


def diagonal_norm(xp, P, rows, cols):
    """σ_max of a block known to be diagonal: max_i |P_ii| (exact), (B,)."""
    return xp.max(xp.abs(xp.linalg.diagonal(P[:, rows, cols])), axis=-1)
