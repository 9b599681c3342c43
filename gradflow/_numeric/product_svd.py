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

Each value comes with bounds on its relative error; it is reported only when one of them is at
most ``resolve`` (else NaN, "not resolved"):

* ρ, multiplicative, the same for every σ_i: ρ = 2Nε·(Σ_t κ(J_t) + Σ_t ‖g_t‖₂/σ_min(Y_t) + κ(Y_k))
  (κ the condition number, g_t the growths of a step's row combinations). The row term is
  rigorous: a row error Δ of Y is a right factor, diag(e^ℓ)(Y + Δ) = diag(e^ℓ) Y (I + Y⁻¹Δ), that
  the later steps (all on the left) never move, and σ_i(A(I + F)) is within (1 ± ‖F‖)σ_i
  (Eisenstat & Ipsen 1995). The κ(J_t) term reads a step's rounding as a relative perturbation
  (I + E_t) J_t of its own factor; inside a long product the later factors could amplify it,
  which the column-sorted (graded) QR keeps small in practice (Stewart 1997) but no cheap
  a-posteriori bound certifies: that part of ρ is checked against mpmath, not proven. Infinite
  when a J_t is singular.
* τ_i = c·(S_k + ‖M̂_k‖)/σ_i, additive (Weyl). Every step of the computation is exact for J_t + δJ_t
  (and rows of Y off by as much), ‖δJ_t‖ ≤ c‖J_t‖, c = 8N²ε; the computed product is then
  P̂ = ∏(J_t + δJ_t), and exactly (telescoping)

      P̂ − P = Σ_{t=k+1}^{T} (Ĵ_T ⋯ Ĵ_{t+1}) δJ_t (J_{t−1} ⋯ J_{k+1}),
      |σ̂_i − σ_i| ≤ ‖P̂ − P‖ ≤ c·S_k,   S_k = Σ_t ‖M̂_t‖ ‖J_t‖ a_t,

  with ‖M̂_t‖ the norm of the computed partial product (its factored form gives it) and
  a_t ≥ ‖J_{t−1} ⋯ J_{k+1}‖₂ from :class:`RightNorms`: the product formed in floating point, in
  blocks, with a rigorous bound on its own rounding error. (Bounding a_t by ∏‖J_j‖, as before,
  overstates S_k by orders of magnitude when the factors' norms exceed the product's decay:
  11 orders for sLSTM-normalised over 25 steps.) The final Jacobi SVD is backward stable:
  c‖M̂_k‖ more.
* Exact zeros: a structurally zero row or column (a unit switched off: ReLU, IRNN) is exactly 0
  in the floating-point J_t too, and rank P ≤ rank J_t for every t, and ≤ N − (the all-zero
  rows or columns of P's pattern, the boolean product of the J_t's patterns), and ≤ the number of
  indices i where column i of J_T ⋯ J_{t+1} and row i of J_t may both be non-zero (mLSTM-stabilised:
  a step whose m row is 0, ∂m_t/∂s_{t−1} = 0, after steps whose h columns are 0). The smallest
  N − rank values are then exactly 0: reported as −∞, resolved, whatever the rounding made of them.

* Zero columns: columns exactly 0 in every J_t (mLSTM's h, which no step reads) are left out of
  the product before any of this: |Z| exact zeros, and the rest from R · J_{T−1}[Z̄, Z̄] ⋯ J_{k+1}[Z̄, Z̄]
  with R from a QR of J_T[:, Z̄], its error bounded apart (:func:`product_singular_values`). The
  rows ∂h_t/∂(C, n)_{t−1}, which the product never reads, no longer enter S_k or Σ κ(J_t).

Checked against mpmath at (dynamic range + 80) digits (``tests/test_product_svd.py``,
``tests/test_product_svd_bounds.py``). Report defaults (n = 16, T = 100, k ∈ {0, 25, 50, 75, 99}),
values not resolved before → after: sLSTM-normalised 192 → 164 of 240, relu-rnn 72 → 11 of 80,
IRNN 42 → 0 of 80; mLSTM (k ∈ {0, 25, 50, 75}, 272 non-zero values each) 272, 272, 272, 256 → 0
(``tests/test_product_svd_mlstm.py``).
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
        self.log_abs = -np.inf              # ln S_k with ∏‖J_j‖ for the right factor (kept for reference)
        self.log_left: list[float] = []     # ln ‖J_t‖₂‖M̂_t‖ of every pushed step, last pushed first

    def log_norm(self) -> float:
        """ln of an upper bound of ‖M‖₂ (‖diag(e^ℓ) Y‖_F, Y's rows being unit)."""
        top = float(np.max(self.ell))
        if not math.isfinite(top):
            return top
        return top + 0.5 * math.log(float(np.sum(np.exp(2 * (self.ell - top)))))

    def push(self, J: np.ndarray, s: np.ndarray | None = None) -> None:
        """M ← Jᵀ M (J = J_{k+1}, one step further back; ``s`` its singular values if known)."""
        s = np.linalg.svd(J, compute_uv=False) if s is None else s
        self.kappa += math.inf if s[-1] == 0 else float(s[0] / s[-1])
        lnJ = math.log(float(s[0])) if s[0] > 0 else -math.inf
        prev = self.log_norm()                                     # ‖J_T ⋯ J_{k+2}‖
        self.log_abs = lnJ + float(np.logaddexp(prev, self.log_abs))
        self.log_left.append(lnJ + prev)
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
        # row i of Y is formed with error ≲ N ε g_i (its rows being unit): Ŷ = Y + Δ, ‖Δ‖₂ ≤ Nε‖g‖₂,
        # and diag(e^ℓ) Ŷ = diag(e^ℓ) Y (I + Y⁻¹Δ): a right factor, which later steps (all on the
        # left) never move, so σ_i changes by a relative ‖Y⁻¹Δ‖ ≤ Nε ‖g‖₂ / σ_min(Y)
        smin = float(np.linalg.svd(self.Y, compute_uv=False)[-1])
        self.growth += float(np.linalg.norm(g)) / smin if smin > 0 else math.inf

    def log10_singular_values(self, *, resolve: float = 2e-6, log_right: np.ndarray | None = None,
                              zeros: int = 0, log_extra: float = -math.inf, rho_extra: float = 0.0):
        """(log10 σ_i descending, bound on the relative error of each, resolved mask).

        ``log_right``: ln a_t (:class:`RightNorms`) for the pushed steps, in push order
        (t = T, T − 1, …, k + 1), for the additive bound; ``zeros``: how many σ_i are exactly 0 by
        the structural rank (:func:`structural_rank_deficit`): the smallest ``zeros`` values are
        −∞, resolved. ``log_extra``: ln of a further absolute error of the product, added to the
        additive bound; ``rho_extra``: a further relative one, added to ρ (both from the reduction
        to the columns that are not exactly 0, :func:`product_singular_values`)."""
        ln_sigma = jacobi_log_svd(self.Y.T, self.ell)
        c = 2.0 * self.N * _EPS
        rho = c * (self.kappa + self.growth + float(np.linalg.cond(self.Y))) + rho_extra
        log_s = self.log_abs
        if log_right is not None and self.log_left:
            terms = np.asarray(self.log_left) + np.asarray(log_right, dtype=np.float64)
            top = float(np.max(terms))
            tight = top if not math.isfinite(top) else top + math.log(float(np.sum(np.exp(terms - top))))
            log_s = min(log_s, tight)
        log_abs_err = math.log(_C_TAU * self.N ** 2 * _EPS) + float(np.logaddexp(log_s, self.log_norm()))
        log_abs_err = float(np.logaddexp(log_abs_err, log_extra))
        with np.errstate(over="ignore", invalid="ignore"):
            tau = np.exp(log_abs_err - ln_sigma)
        rel = np.minimum(rho, np.nan_to_num(tau, nan=np.inf))
        if zeros:
            ln_sigma[self.N - zeros:] = -np.inf
            rel[self.N - zeros:] = 0.0
        return ln_sigma / _LN10, rel, rel <= resolve


#: the additive bound's constant per step, in units of N²ε (see the module docstring)
_C_TAU = 8.0


def structural_rank_deficit(nonzero: np.ndarray) -> int:
    """N − (an upper bound of the rank) of a matrix whose entries outside the boolean pattern
    ``nonzero`` are exactly 0: its all-zero rows or columns."""
    return int(max(np.sum(~np.any(nonzero, axis=1)), np.sum(~np.any(nonzero, axis=0))))


class RightNorms:
    """Upper bounds a_t ≥ ‖J_{t−1} ⋯ J_{k+1}‖₂ (exact products of the given J's) for t = k + 1, k + 2, …

    The product is formed in floating point in blocks, B̂ ≈ J_{t−1} ⋯ J_s (kept at unit Frobenius
    norm, its log scale apart), with a rigorous bound e on ‖B − B̂‖_F from the error of each
    matrix product (|fl(J B̂) − J B̂| ≤ γ_N |J| |B̂|) and of each rescaling:

        e ← (‖J‖₂ e + γ_N ‖J‖_F ‖B̂‖_F) / ‖fl(J B̂)‖_F + ε,   γ_N = Nε / (1 − Nε),

    so ‖J_{t−1} ⋯ J_{k+1}‖₂ ≤ a_s · e^{scale} (1 + e), a_s the bound where the block began;
    a new block begins when e exceeds 1/4. a_t is also never above the old a_{t−1} ‖J_{t−1}‖₂.
    """

    def __init__(self, N: int):
        self.N = N
        self.log_a = 0.0                                      # ln a_{k+1} = ln ‖I‖ = 0
        self._restart()

    def _restart(self) -> None:
        self.log_start, self.B, self.log_scale, self.err = self.log_a, np.eye(self.N), 0.0, 0.0

    def push(self, J: np.ndarray, norm2: float) -> None:
        """a_{t+1} from a_t and J = J_t (``norm2`` its ‖·‖₂)."""
        N = self.N
        gamma = N * _EPS / (1.0 - N * _EPS)
        err = norm2 * self.err + gamma * float(np.linalg.norm(J)) * float(np.linalg.norm(self.B))
        P = J @ self.B
        f = float(np.linalg.norm(P))
        chain = self.log_a + (math.log(norm2) if norm2 > 0 else -math.inf)
        if f > 0 and math.isfinite(f):
            self.B, self.log_scale, self.err = P / f, self.log_scale + math.log(f), err / f + _EPS
            block = self.log_start + self.log_scale + math.log1p(self.err)  # ‖B̂‖₂ ≤ ‖B̂‖_F = 1
        else:  # the computed block is 0: the exact one is at most err (in the old scale)
            block = self.log_start + self.log_scale + (math.log(err) if err > 0 else -math.inf)
            self.err = math.inf
        self.log_a = min(chain, block)
        if self.err > 0.25:
            self._restart()


def product_singular_values(net, traj, ks, *, resolve: float = 2e-6):
    """log10 σ_i of ∂s_T/∂s_k for k in ``ks`` per sequence, with unresolved values as NaN.

    Columns Z that are exactly 0 in every J_t (t = k + 1, …, T; mLSTM: h, which no step reads) are
    exactly 0 in P = J_T ⋯ J_{k+1}, and the rest of P is J_T[:, Z̄] · J_{T−1}[Z̄, Z̄] ⋯ J_{k+1}[Z̄, Z̄]
    (a Z row of J_t meets only the Z columns of J_{t+1}). With J_T[:, Z̄] = U R (Householder QR, U
    with orthonormal columns) its singular values are those of R · J_{T−1}[Z̄, Z̄] ⋯ J_{k+1}[Z̄, Z̄]:
    |Z| exact zeros and the square, reduced product, whose factors leave out the rows that P
    never reads (mLSTM: ∂h_t/∂(C, n)_{t−1}, whose size against the decay of the memory made the
    additive bound hundreds of times the values). The computed R is exact for J_T[:, Z̄] + δ,
    ‖δ‖_F ≤ γ̃ ‖J_T[:, Z̄]‖_F, γ̃ = 8 N m ε / (1 − 8 N m ε) (Higham 2002, Thm 19.4, with room for its
    constant), and R + δ' = (I + δ' R⁻¹) R is a left factor: a relative error ‖δ'‖/σ_min(R) on every
    σ_i (added to ρ), and an absolute one ‖δ'‖ a_T (added to the additive bound).

    Returns:
        dict k → (B, N) NumPy array, each row descending; −inf an exact 0 (resolved), NaN a value
        whose error bound exceeds ``resolve`` (relative).
    """
    from .network import to_host

    T, N = traj.steps, net.state_size
    B = traj.states[0].shape[0]
    want = sorted(set(ks))
    first = want[0]
    kept: dict = {}  # the Jacobians, kept for the second pass when they are small
    keep = (T - first) * B * N * N * 8 <= KEEP_BYTES

    def jac(t: int) -> np.ndarray:
        if t in kept:
            return kept[t]
        J = np.asarray(to_host(net.step_jacobian(traj, t)), dtype=np.float64)
        if keep:
            kept[t] = J
        return J

    # the columns exactly 0 in every J_t, t = first + 1, …, T (then in every later range too)
    zero_cols = np.ones((B, N), dtype=bool)
    for t in range(first + 1, T + 1):
        zero_cols &= ~np.any(jac(t) != 0, axis=1)
    cols = [np.flatnonzero(~zero_cols[b]) for b in range(B)]
    size = [int(c.size) for c in cols]
    last: list = [None] * B      # R of J_T[:, Z̄], its QR's error ‖δ‖_F and ‖δ‖_F / σ_min(R)
    JT = jac(T)
    for b in range(B):
        m = size[b]
        if 0 < m < N:
            A = JT[b][:, cols[b]]
            R = np.triu(np.linalg.qr(A, mode="r"))
            g = 8.0 * N * m * _EPS
            err = g / (1.0 - g) * float(np.linalg.norm(A))
            sR = np.linalg.svd(R, compute_uv=False)
            last[b] = (R, sR, err, err / float(sR[-1]) if sR[-1] > 0 else math.inf)

    def factor(J: np.ndarray, t: int, b: int) -> np.ndarray:
        """J_t of sequence b, restricted to the columns that are not exactly 0 (and R at t = T)."""
        if size[b] == N:
            return J[b]
        if t == T:
            return last[b][0]
        return J[b][np.ix_(cols[b], cols[b])]

    # forward: a_t ≥ ‖J_{t−1} ⋯ J_{k+1}‖₂ for every wanted k (the right factors of the additive bound)
    right = {k: np.full((B, T + 1), -np.inf) for k in want}
    fwd = {k: [RightNorms(size[b]) for b in range(B)] for k in want}
    svals: dict = {}  # the singular values of each J_t, for the second pass too
    for t in range(first + 1, T + 1):
        live = [k for k in want if k + 1 <= t]
        for k in live:
            for b in range(B):
                right[k][b, t] = fwd[k][b].log_a
        if t < T:
            J = jac(t)
            Fs = [factor(J, t, b) for b in range(B)]
            svals[t] = [np.linalg.svd(F, compute_uv=False) if F.size else np.zeros(0) for F in Fs]
            for b in range(B):
                if not size[b]:
                    continue
                for k in live:
                    fwd[k][b].push(Fs[b], float(svals[t][b][0]) * (1 + 8 * N * _EPS))  # above the SVD's error
    # backward: the graded product, the structural zeros
    acc = [GradedProduct(max(size[b], 1)) for b in range(B)]
    deficit = [0] * B  # rank P ≤ rank of any factor, and ≤ that of P's own zero pattern
    pattern = [np.eye(size[b], dtype=bool) for b in range(B)]    # where J_T ⋯ J_{k+1} may be non-zero
    out: dict = {}
    for k in range(T - 1, first - 1, -1):
        J = jac(k + 1)
        for b in range(B):
            m = size[b]
            if not m:
                continue
            F = factor(J, k + 1, b)
            if m < N and k + 1 == T:
                sv, nz = last[b][1], np.triu(np.ones((m, m), dtype=bool))  # R's zeros: below the diagonal only
            else:
                sv, nz = (svals[k + 1][b] if k + 1 in svals else None), F != 0
            acc[b].push(F, sv)
            # P = A J with A = J_T ⋯ J_{k+2} is Σ_i A[:, i] J[i, :]: only an index whose column of A
            # and row of J may both be non-zero adds a rank (mLSTM: a zero row m of J, zero columns h of A)
            through = int(np.sum(np.any(pattern[b], axis=0) & np.any(nz, axis=1)))
            pattern[b] = (pattern[b].astype(np.float64) @ nz.astype(np.float64)) > 0
            deficit[b] = max(deficit[b], structural_rank_deficit(nz), structural_rank_deficit(pattern[b]),
                             m - through)
        if k in want:
            rows = []
            for b in range(B):
                m = size[b]
                if not m:  # every column exactly 0: P = 0
                    rows.append(np.full(N, -np.inf))
                    continue
                extra: dict = {}
                if m < N:
                    extra = {"log_extra": (math.log(last[b][2]) if last[b][2] > 0 else -math.inf)
                             + float(right[k][b, T]),
                             "rho_extra": last[b][3]}
                v, _, ok = acc[b].log10_singular_values(resolve=resolve, log_right=right[k][b, T:k:-1],
                                                        zeros=deficit[b], **extra)
                rows.append(np.concatenate([np.where(ok, v, np.nan), np.full(N - m, -np.inf)]))
            out[k] = np.array(rows)
    return out


#: Jacobians up to this many bytes are kept between the two passes (else evaluated twice)
KEEP_BYTES = 256 << 20
