"""σ_max of the products ∂s_T/∂s_k for every k, cheaper than an SVD at every k.

Warm-started subspace iteration in the left singular space (the space of s_T, shared by every
k); a value is accepted only with a checked a-posteriori upper bound within the tolerance, an
SVD otherwise (:mod:`gradflow._numeric.certified_norm`).
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace


def start_basis(xp, B, R, r, dtype):
    """A fixed, generic orthonormal start basis (B, R, r)."""
    q, _ = np.linalg.qr(np.random.default_rng(12345).standard_normal((R, r)))
    return xp.broadcast_to(xp.asarray(q, dtype=dtype)[None], (B, R, r))


def spectral_blocks(P, blocks, bases, sumsqs, *, tol=1e-10, max_iter=30, stats=None, orthonormal=False):
    """σ_max of several blocks of P, each certified or from an SVD: see
    :func:`gradflow._numeric.certified_norm.certified_blocks`."""
    from .certified_norm import certified_blocks

    return certified_blocks(P, blocks, bases, sumsqs, tol=tol, max_iter=max_iter, stats=stats,
                            orthonormal=orthonormal)


def spectral_norm(P, U=None, *, rank: int = 8, tol: float = 1e-10, max_iter: int = 30, sumsq=None,
                  stats: dict | None = None):
    """σ_max of each matrix in the batch P (B, R, C) by warm-started subspace iteration.

    Subspace iteration on the left singular space with ``rank`` vectors, warm-started from the
    basis ``U`` (B, R, r) of a previous call: the left singular vectors of ∂s_T/∂s_k live in the
    space of s_T for every k, so they move little from one k to the next. The Ritz value
    σ̃₁ = σ_max(UᵀP) never exceeds σ_max(P). It is accepted only when a rigorous upper bound
    built from the Ritz residuals and the Frobenius mass outside the subspace (see
    :mod:`gradflow._numeric.certified_norm`) is at most (1 + tol)·σ̃₁; elements not certified within
    ``max_iter`` iterations get the value from an SVD.
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
