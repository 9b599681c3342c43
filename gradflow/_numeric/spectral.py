"""σ_max of the products ∂s_T/∂s_k for every k, cheaper than an SVD at every k.

Warm-started subspace iteration in the left singular space (the space of s_T, shared by every
k), with a certificate where the spectrum allows one, a Temple-type residual test or a
stagnation test otherwise, and an SVD where none of them is met (see :func:`spectral_norm`).
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace


def start_basis(xp, B, R, r, dtype):
    """A fixed, generic orthonormal start basis (B, R, r)."""
    q, _ = np.linalg.qr(np.random.default_rng(12345).standard_normal((R, r)))
    return xp.broadcast_to(xp.asarray(q, dtype=dtype)[None], (B, R, r))


def _orthonormal(xp, Z):
    """An orthonormal basis of the columns of Z (B, R, r): Cholesky QR, QR where that fails."""
    G = xp.matrix_transpose(Z) @ Z
    try:
        L = xp.linalg.cholesky(G)
        U = Z @ xp.matrix_transpose(xp.linalg.inv(L))
        if bool(xp.all(xp.isfinite(U))):
            return U
    except Exception:  # noqa: BLE001 - singular Gram matrix (rank-deficient Z): use QR
        pass
    Q, _ = xp.linalg.qr(Z)
    return Q


def _embed(xp, parts, N, axis_len):
    """Stack blocks (B, len(slice), r_b) into one (B, N, Σ r_b) array, zeros outside each slice."""
    cols = []
    for sl, X in parts:
        B, _, r = X.shape
        pad = [xp.zeros((B, sl.start, r), dtype=X.dtype), X,
               xp.zeros((B, N - sl.stop, r), dtype=X.dtype)]
        cols.append(xp.concat([p for p in pad if p.shape[1]], axis=1))
    return cols[0] if len(cols) == 1 else xp.concat(cols, axis=-1)


def spectral_blocks(P, blocks, bases, sumsqs, *, tol=1e-10, max_iter=30, stats=None):
    """σ_max of several blocks P[:, rows_b, cols_b] of one batch of matrices P (B, N, M), by
    warm-started subspace iteration in their left singular spaces, all blocks sharing the same
    two passes over P per iteration (see :func:`spectral_norm` for the acceptance rules).

    Arguments:
        blocks: [(rows, cols)] slices; bases: [(B, rows, r_b) orthonormal warm starts];
        sumsqs: [(B,) ‖block‖_F²].

    Returns:
        (sigmas, bases): a (B,) array per block, and the updated bases.
    """
    xp = array_namespace(P)
    N, M = P.shape[1], P.shape[2]
    n_blk = len(blocks)
    sig = [None] * n_blk
    done = [None] * n_blk
    prev = [None] * n_blk
    bases = list(bases)
    for _ in range(max_iter):
        active = [b for b in range(n_blk) if done[b] is None or not bool(xp.all(done[b]))]
        if not active:
            break
        E = _embed(xp, [(blocks[b][0], bases[b]) for b in active], N, N)
        Wall = xp.matrix_transpose(E) @ P                                 # one pass over P
        offs, Ws = 0, {}
        for b in active:
            r = bases[b].shape[-1]
            Ws[b] = Wall[:, offs:offs + r, blocks[b][1]]
            offs += r
        F = _embed(xp, [(blocks[b][1], xp.matrix_transpose(Ws[b])) for b in active], M, M)
        Zall = P @ F                                                      # one pass over P
        offs = 0
        for b in active:
            rows, _ = blocks[b]
            U, W, r = bases[b], Ws[b], bases[b].shape[-1]
            Z = Zall[:, rows, offs:offs + r]
            offs += r
            zero = xp.zeros_like(sumsqs[b])
            lam, Y = xp.linalg.eigh(W @ xp.matrix_transpose(W))          # Ritz values² (ascending)
            theta = xp.maximum(lam[:, -1], zero)
            ritz = xp.sqrt(theta)
            outside = xp.maximum(sumsqs[b] - xp.sum(lam, axis=-1), zero)
            ok = (theta + outside <= (1 + tol) ** 2 * theta) | (sumsqs[b] == 0)   # certified
            if r > 1:  # Temple: the top Ritz value of P Pᵀ is off by about ρ² / (θ₁ − θ₂)
                y = Y[:, :, -1]
                res = (Z @ y[..., None])[..., 0] - theta[:, None] * (U @ y[..., None])[..., 0]
                gap = xp.maximum(theta - lam[:, -2], 1e-300 * xp.ones_like(theta))
                ok = ok | (xp.sum(res * res, axis=-1) <= 2 * tol * gap * theta)
            if prev[b] is not None:
                ok = ok | (xp.abs(ritz - prev[b]) <= tol * ritz)
            # keep the values already accepted; update the others
            sig[b] = ritz if done[b] is None else xp.where(done[b], sig[b], ritz)
            done[b] = ok if done[b] is None else (done[b] | ok)
            prev[b] = ritz
            if not bool(xp.all(done[b])) and r < U.shape[1]:
                bases[b] = _orthonormal(xp, Z)                            # track the top subspace
        if stats is not None:
            stats["iterations"] = stats.get("iterations", 0) + 1
    for b in range(n_blk):
        if not bool(xp.all(done[b])):
            rows, cols = blocks[b]
            exact = xp.linalg.svdvals(P[:, rows, cols])[:, 0]
            if stats is not None:
                stats["exact"] = stats.get("exact", 0) + int(xp.sum(xp.astype(~done[b], xp.int64)))
            sig[b] = xp.where(done[b], sig[b], exact)
    return sig, bases


def spectral_norm(P, U=None, *, rank: int = 8, tol: float = 1e-10, max_iter: int = 30, sumsq=None,
                  stats: dict | None = None):
    """σ_max of each matrix in the batch P (B, R, C) by warm-started subspace iteration.

    Subspace iteration on the left singular space with ``rank`` vectors, warm-started from the
    basis ``U`` (B, R, r) of a previous call: the left singular vectors of ∂s_T/∂s_k live in the
    space of s_T for every k, so they move little from one k to the next. The Ritz value
    σ̃₁ = σ_max(UᵀP) never exceeds σ_max(P) and rises with every iteration. It is accepted

    * certified, when the mass outside the subspace, m = ‖P‖_F² − ‖UᵀP‖_F², is so small that
      σ_max(P) ≤ √(σ̃₁² + m) ≤ (1 + tol)·σ̃₁; or
    * converged, when the residual ρ of the top Ritz pair of P Pᵀ puts the Temple estimate of
      its relative error, ρ²/((θ₁ − θ₂)·θ₁) with θ_i = σ̃_i², below 2·tol, or when an iteration
      changes σ̃₁ by at most ``tol`` (relative).

    Elements that reach neither within ``max_iter`` iterations get the exact value from an SVD.
    With ``rank`` ≥ min(R, C) the subspace is the whole space and the value is exact.

    Arguments:
        U: warm start, a basis (B, R, r) or a single vector (B, R); completed to ``rank``
            columns with a fixed generic basis.
        sumsq: optional precomputed ‖P‖_F² (B,).
        stats: optional dict counting ``"exact"`` (SVD fallbacks) and ``"iterations"``.

    Returns:
        (sigma (B,), U (B, R, r)) — U the tracked basis, for the next warm start.
    """
    xp = array_namespace(P)
    B, R, C = P.shape
    r = max(1, min(rank, R, C))
    if U is None:
        U = start_basis(xp, B, R, r, P.dtype)
    elif U.ndim == 2 or U.shape[-1] != r:
        U = xp.asarray(U, dtype=P.dtype)
        U = U[..., None] if U.ndim == 2 else U
        extra = start_basis(xp, B, R, r, P.dtype)[..., : r - U.shape[-1]] if U.shape[-1] < r else None
        U = U[..., :r] if extra is None else xp.concat([U, extra], axis=-1)
        U, _ = xp.linalg.qr(U)
    if sumsq is None:
        sumsq = xp.sum(P * P, axis=(-2, -1))
    (sig,), (U,) = spectral_blocks(P, [(slice(0, R), slice(0, C))], [U], [sumsq], tol=tol,
                                    max_iter=max_iter, stats=stats)
    return sig, U
