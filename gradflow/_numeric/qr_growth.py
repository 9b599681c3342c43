"""The QR step of the Lyapunov exponents, with the rounding floor of its growth factors.

Each step factors Z = J_t Q_{t−1} = Q_t R_t and adds log|(R_t)_ii| to exponent i. In floating
point the computed R is exact for Z + ΔZ with ‖ΔZ‖_F of order Nε‖Z‖_F (Householder QR; the
product J_t Q errs as much), and a column i that J_t maps (almost) into the span of the columns
before it has a true |R_ii| of that order or less: its computed value is then rounding, not data
(the stabilised mLSTM's h and the normalised sLSTM's scale-free (c, n) give such columns: the
same run on two BLAS libraries gave −8.29 and −8.10). So a factor with
0 < |R_ii| ≤ 8·N·ε·‖Z‖_F makes exponent i **not resolved** (NaN); an exact 0 stays −∞.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .network import to_host

#: the rounding floor of |R_ii| in units of N·ε·‖Z‖_F (Householder QR and the product J_t Q)
FLOOR = 8.0


def qr_growth(xp: Any, Z: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    """Q, log|diag R| (host float64, shape Z.shape[:-2] + (r,)) and where |R_ii| is above 0 but
    not above the rounding floor (same shape, bool) for a batch of N × r blocks Z."""
    Q, R = xp.linalg.qr(Z)
    d = np.abs(np.diagonal(to_host(R), axis1=-2, axis2=-1)).astype(np.float64)  # r × r: small
    fro = np.sqrt(to_host(xp.sum(Z * Z, axis=(-2, -1)))).astype(np.float64)
    floor = FLOOR * Z.shape[-2] * float(np.finfo(np.dtype(str(Z.dtype))).eps) * fro
    with np.errstate(divide="ignore"):
        return Q, np.log(d), (d > 0) & (d <= floor[..., None])


def exponents(log_sums: np.ndarray, unresolved: np.ndarray, T: int) -> np.ndarray:
    """(1/T)·Σ_t log|R_ii| per exponent, NaN where not resolved, each row descending (the
    finite ones, then −∞, then NaN)."""
    lam = np.where(unresolved, np.nan, log_sums / T)
    return -np.sort(-lam, axis=-1)
