"""Singular values of long products ∂s_T/∂s_k = J_T ⋯ J_{k+1}, right in their tails.

An SVD of the float64 product resolves only singular values within ~16 orders of the largest.
Here the product is never formed. Its transpose M_k = J_{k+1}ᵀ ⋯ J_Tᵀ is carried as

    M_k = Q_k · diag(e^{ℓ_k}) · Y_k

with Q_k orthogonal, the graded scale ℓ_k (natural logs, any range, −∞ for an exact 0) kept
apart, and Y_k with unit rows. One step (the QR accumulation of the Lyapunov exponents, with
the triangular factor's scale kept apart): X = J_{k+1}ᵀ Q_{k+1} with its columns ordered by
decreasing ℓ, X = Q R, and row i of R · diag(e^{ℓ}) · Y is e^{ℓ_i} Σ_{l ≥ i} R_il e^{ℓ_l − ℓ_i} y_l,
whose weights never overflow. The singular values of M_k are those of Y_kᵀ diag(e^{ℓ_k}), a
matrix with graded columns, taken by one-sided (Hestenes) Jacobi with the column scales held as
logarithms, which computes them to high *relative* accuracy (Demmel & Veselić 1992).

Each value comes with a bound on its relative error: a multiplicative one,
ρ = 2Nε·(Σ_t κ(J_t) + Σ_t g_t κ(Y_t) + κ(Y_k)) (κ the condition number, g_t the growth of a
step's row combination), valid for every σ_i when the factors are well conditioned, and an additive one
from first-order perturbation of the product, τ = 2Nε·Σ_t ‖J_T⋯J_{t+1}‖‖J_t‖‖J_{t−1}⋯J_{k+1}‖,
giving τ/σ_i. A value whose bound exceeds ``resolve`` is reported as not resolved.
"""

from __future__ import annotations

import math

import numpy as np

_EPS = float(np.finfo(np.float64).eps)
_LN10 = math.log(10.0)


def _pairs(m: int):
    """Round-robin schedule: m − 1 rounds (m even) of m/2 disjoint pairs."""
    idx = list(range(m))
    rounds = []
    for _ in range(m - 1):
        rounds.append((np.array(idx[: m // 2]), np.array(idx[m // 2:][::-1])))
        idx = [idx[0], idx[-1], *idx[1:-1]]
    return rounds


def jacobi_log_svd(Bcols: np.ndarray, ell: np.ndarray, *, max_sweeps: int = 80) -> np.ndarray:
    """Natural logs of the singular values of G = B · diag(e^ℓ), descending.

    ``Bcols`` (N, m): columns (any norms); ``ell`` (m,): their log scales (−∞: a zero column).
    One-sided Jacobi on the columns of G, every column kept as (unit vector, log norm), so no
    scale over- or underflows; rotations are computed from the ratio r = e^{ℓ_j − ℓ_i} ≤ 1.
    """
    B = np.array(Bcols, dtype=np.float64, copy=True)
    ell = np.array(ell, dtype=np.float64, copy=True)
    N, m = B.shape
    with np.errstate(divide="ignore"):
        nrm = np.linalg.norm(B, axis=0)
        ell = ell + np.log(nrm)
    B = np.divide(B, nrm, out=np.zeros_like(B), where=nrm > 0)
    if m % 2:
        B = np.concatenate([B, np.zeros((N, 1))], axis=1)
        ell = np.append(ell, -np.inf)
    M = B.shape[1]
    tol = max(N, 2) * _EPS
    rounds = _pairs(M)
    for _ in range(max_sweeps):
        rotated = False
        for I0, J0 in rounds:
            sw = ell[J0] > ell[I0]
            I, J = np.where(sw, J0, I0), np.where(sw, I0, J0)   # ℓ_I ≥ ℓ_J
            bi, bj = B[:, I], B[:, J]
            p = np.einsum("ij,ij->j", bi, bj)
            act = (np.abs(p) > tol) & np.isfinite(ell[J])
            if not act.any():
                continue
            rotated = True
            I, J, bi, bj, p = I[act], J[act], bi[:, act], bj[:, act], p[act]
            r = np.exp(ell[J] - ell[I])
            small = r < 0.5
            tt = np.empty_like(r)                                 # t / r
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                q = 2.0 * p / (r * r - 1.0)
                w = q * r
                t_small = q / (1.0 + np.sqrt(1.0 + w * w))
                zeta = (r * r - 1.0) / (2.0 * r * p)
                sgn = np.where(zeta >= 0, 1.0, -1.0)
                t_big = sgn / (np.abs(zeta) + np.sqrt(1.0 + zeta * zeta)) / r
            tt[small], tt[~small] = t_small[small], t_big[~small]
            c = 1.0 / np.sqrt(1.0 + (tt * r) ** 2)
            st = c * tt                                           # s / r
            ni = c * bi - (st * r * r) * bj
            nj = st * bi + c * bj
            li, lj = np.linalg.norm(ni, axis=0), np.linalg.norm(nj, axis=0)
            with np.errstate(divide="ignore"):
                ell[I] = ell[I] + np.log(li)
                ell[J] = ell[J] + np.log(lj)
            B[:, I] = np.divide(ni, li, out=np.zeros_like(ni), where=li > 0)
            B[:, J] = np.divide(nj, lj, out=np.zeros_like(nj), where=lj > 0)
        if not rotated:
            break
    return -np.sort(-ell[:m])


class GradedProduct:
    """M = Jᵀ ⋯ carried as Q · diag(e^ℓ) · Y for one sequence (see the module docstring)."""

    def __init__(self, N: int):
        self.Q = np.eye(N)
        self.ell = np.zeros(N)
        self.Y = np.eye(N)
        self.N = N
        self.growth = 0.0                   # Σ_t g_t
        self.kappa = 0.0                    # Σ_t κ(J_t)
        self.log_abs = -np.inf              # ln S_k, the additive error sum (without c·ε)

    def log_norm(self) -> float:
        """ln of an upper bound of ‖M‖₂ (‖diag(e^ℓ) Y‖_F, Y's rows being unit)."""
        top = float(np.max(self.ell))
        if not math.isfinite(top):
            return top
        return top + 0.5 * math.log(float(np.sum(np.exp(2 * (self.ell - top)))))

    def push(self, J: np.ndarray) -> None:
        """M ← Jᵀ M (J = J_{k+1}, one step further back)."""
        s = np.linalg.svd(J, compute_uv=False)
        self.kappa += math.inf if s[-1] == 0 else float(s[0] / s[-1])
        lnJ = math.log(float(s[0])) if s[0] > 0 else -math.inf
        prev = self.log_norm()                                     # ‖J_T ⋯ J_{k+2}‖
        self.log_abs = lnJ + float(np.logaddexp(prev, self.log_abs))
        X = J.T @ self.Q
        perm = np.argsort(-self.ell, kind="stable")
        X, ell, Y = X[:, perm], self.ell[perm], self.Y[perm]
        Q, R = np.linalg.qr(X)
        tri = np.triu(np.ones((self.N, self.N), dtype=bool))
        with np.errstate(invalid="ignore"):
            diff = np.where(tri, ell[None, :] - ell[:, None], -np.inf)
        E = np.exp(np.nan_to_num(diff, nan=-np.inf))
        C = R * E
        Yn = C @ Y
        nu = np.linalg.norm(Yn, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.ell = ell + np.log(nu)
            g = np.where(nu > 0, np.sum(np.abs(C), axis=1) / nu, 0.0)
        self.Y = np.where(nu[:, None] > 0, Yn / np.where(nu > 0, nu, 1.0)[:, None], Y)
        self.Q = Q
        # row i of Y is formed with relative error ≲ N ε g_i; as a multiplicative error of
        # diag(e^ℓ) Y it is amplified by at most κ(Y)
        self.growth += float(np.max(g)) * float(np.linalg.cond(self.Y))

    def log10_singular_values(self, *, resolve: float = 2e-6):
        """(log10 σ_i descending, bound on the relative error of each, resolved mask)."""
        ln_sigma = jacobi_log_svd(self.Y.T, self.ell)
        c = 2.0 * self.N * _EPS
        rho = c * (self.kappa + self.growth + float(np.linalg.cond(self.Y)))
        with np.errstate(over="ignore", invalid="ignore"):
            tau = c * np.exp(self.log_abs - ln_sigma)
        rel = np.minimum(rho, np.nan_to_num(tau, nan=np.inf))
        return ln_sigma / _LN10, rel, rel <= resolve


def product_singular_values(net, traj, ks, *, resolve: float = 2e-6):
    """log10 σ_i of ∂s_T/∂s_k for k in ``ks`` per sequence, with unresolved values as NaN.

    Returns:
        dict k → (B, N) NumPy array, each row descending; −inf an exact 0 (resolved), NaN a value
        whose error bound exceeds ``resolve`` (relative).
    """
    from .network import to_host

    T, N = traj.steps, net.state_size
    B = traj.states[0].shape[0]
    want = set(ks)
    acc = [GradedProduct(N) for _ in range(B)]
    out: dict = {}
    for k in range(T - 1, min(want) - 1, -1):
        J = np.asarray(to_host(net.step_jacobian(traj, k + 1)), dtype=np.float64)
        for b in range(B):
            acc[b].push(J[b])
        if k in want:
            rows = []
            for b in range(B):
                v, _, ok = acc[b].log10_singular_values(resolve=resolve)
                rows.append(np.where(ok, v, np.nan))
            out[k] = np.array(rows)
    return out
