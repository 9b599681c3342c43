"""Matrix-free gradient flow for large n: vector–Jacobian products carried backward.

The product P_k = ∂s_T/∂s_k (N × N) is never formed. Row vectors are carried backward through
the one-step Jacobians, y_kᵀ = y_{k+1}ᵀ J_{k+1}, at O(R·n²) per step for R rows instead of the
O(N³) of the exact sweep (:func:`gradflow._numeric.flow.products`):

* the loss gradient: y_T = ∂L/∂s_T gives ∂L/∂s_k = y_kᵀ exactly at every k (backpropagation);
* r probe vectors ω on the m rows of a block (Rademacher or standard normal) span a subspace
  S = span(Ω) of rank q, orthonormal basis Q; QᵀP_k = R⁻ᵀ ΩᵀP_k is read off the carried rows.
  ‖P_k‖_F² is split into the part the probes measure exactly and the part they do not,
  ‖P‖_F² = ‖QᵀP‖_F² + ‖(I − QQᵀ)P‖_F², and the second part is estimated from the first:
  E[QQᵀ] = (q/m) I (S is a uniformly random q-dimensional subspace for Gaussian probes; for
  Rademacher ones the law of S is invariant under signed permutations, so E[QQᵀ | q] commutes with
  them and is (q/m) I), hence E‖(I − QQᵀ)P‖_F² = ((m − q)/m)‖P‖_F² and the estimate

      F = ‖QᵀP‖_F² + ((m − q)/q) ‖QᵀP‖_F² = (m/q) ‖QᵀP‖_F²

  is unbiased, never below the certified lower bound ‖QᵀP‖_F² ≤ ‖P‖_F², and exact (se = 0) when
  the probes span the rows (q = m). Its standard error comes from the b = ``probe_blocks``
  independent blocks of probes: each block j alone gives the unbiased E_j = (m/q_j)‖Q_jᵀP‖_F²,
  and for a uniformly random subspace Var(F) = 2(m − q)/(q (m − 1)(m + 2)) · (m‖PPᵀ‖_F² − ‖P‖_F⁴),
  so Var(F) = c² Var(mean_j E_j) with c² = ((m − q)/q) / (Σ_j (m − q_j)/q_j / b²)
  (= (m − q)/(m − q/b) for equal blocks; exact for Gaussian probes): se = c · std_j(E_j)/√b
  (in log10: se/(2 ln10 · F)). For Gaussian probes F is the conditional mean of mean_j E_j
  given S (Rao–Blackwell): never noisier than it. Rademacher subspaces are not uniform, and c
  does not hold for them: where P Pᵀ is nearly diagonal (S4D's and the LRU's 2 × 2 blocks) F
  varies about √((r − 1)/(r/b − 1)) times more than c · std_j(E_j)/√b says (a 99.9 % band
  missed in a fifth of the draws). For Rademacher probes the se is therefore the jackknife over
  the b blocks: F_(−j) the same estimate from the probes of every block but j, and
  se² = ((b − 1)/b) Σ_j (F_(−j) − mean F_(−·))², which for any symmetric function of b
  independent blocks is conservative in expectation (Efron–Stein): about right for m ≫ r,
  up to ~30 % too large in se at q = m/2. When
  r ≥ m the probes span the rows (Rademacher ones unless rank-deficient, which q says), and F is
  ‖P‖_F² itself. The cost on top of the carried rows is O(r²·C) per step and block (C columns:
  the same order as QᵀP for σ_max below; no N × N work). A block whose product is structurally
  diagonal (the derived blocks' zero pattern says so: the LSTM's c→c block of J_T, the carousel
  ∏ diag(f_j)) is measured exactly by any Rademacher probe, ‖ωᵀP‖² = Σ p_ii²: there Hutchinson's
  mean is used, exact, se = 0;
* the spectral norm is bracketed, not computed: σ_max(QᵀP_k) ≤ ‖P_k‖₂ ≤ ‖P_k‖_F, Q the
  orthonormal basis of the probes (a certified lower bound: QᵀP_k = R⁻ᵀ ΩᵀP_k for Ω = QR), and
  ‖P_k‖_F/√N ≤ ‖P_k‖₂; the bounds through ‖P_k‖_F carry that estimate's uncertainty.

J_tᵀ y is applied block by block from the derived expressions, never assembled: a block
Σ_g diag(v_g) W_g gives Σ_g (y ⊙ v_g)ᵀ W_g, and all the weight terms of one column block of J_t
are one GEMM of the scaled rows against the stacked weights [W_1; …; W_G]; diagonal and identity
blocks are scalings. The forward product J_t X (for the Lyapunov exponents) is applied the same
way with the transposed stack. Each row carries its log10 scale apart and is renormalised every
step, so nothing under- or overflows at any T, in float64 or float32 (``dtype``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import GradflowError, one_of, positive_int
from .compile import compile_expr, stable_substitutions
from .jacobian_terms import Term, block_terms
from .layout import refuse_sized_states
from .network import Network, Trajectory, to_host
from .qr_growth import exponents, qr_growth

__all__ = ["JacobianOperator", "SketchCurves", "batch_mean_se", "matrix_free_lyapunov", "sketch_sweep"]

PROBE_KINDS = ("rademacher", "gaussian")
#: two-sided 99.9 % quantiles of Student's t by degrees of freedom (probe blocks − 1): the F-based
#: ends of the spectral band are the estimate ∓ this many standard errors, so that a band from few
#: probe blocks is as wide as its uncertainty (3.29 is the normal quantile, for many blocks)
_T999 = {1: 636.62, 2: 31.60, 3: 12.92, 4: 8.610, 5: 6.869, 6: 5.959, 7: 5.408, 8: 5.041, 9: 4.781,
         10: 4.587, 12: 4.318, 15: 4.073, 20: 3.850, 30: 3.646, 60: 3.460}


def band_z(blocks: int) -> float:
    """Standard errors on each side of the F-based band ends for ``blocks`` probe blocks."""
    dof = blocks - 1
    known = [d for d in _T999 if d <= dof]
    return _T999[max(known)] if known else _T999[1]
_LN10 = math.log(10.0)
#: the key of an environment's step t (1…T): lets :class:`JacobianOperator` use precomputed vectors
STEP = "gradflow step"


def _value(c, env) -> float:
    return c(env) if callable(c) else c


class JacobianOperator:
    """y ↦ yᵀJ_t and x ↦ J_t x for a network's one-step Jacobians, from the derived blocks.

    Arguments:
        net: the network.
        truncated: the 1997-truncated Jacobian (the LSTM's carousel path).
        dtype: the dtype of the products (``None``: the network's); the gates are cast to it.

    Rows are (B, R, N) arrays; a weight appearing in several terms of one column block enters
    one stacked GEMM once.
    """

    def __init__(self, net: Network, truncated: bool = False, dtype=None):
        from .._symbolic.many_steps import truncated_jacobian

        refuse_sized_states(net.cell, "the matrix-free mode (mode='matrix-free'; use mode='exact')")
        self.net, self.xp, self.n = net, net.xp, net.hidden
        self.dtype = net.dtype if dtype is None else dtype
        cell = net.cell
        idx = {s: i for i, s in enumerate(cell.states)}
        J = truncated_jacobian(cell) if truncated else cell.jacobian()
        subs = stable_substitutions(cell.recorded.definitions, list(J.blocks.values()))
        env0 = net.env0()
        terms: list[Term] = []
        for (sa, sb), e in J.blocks.items():
            ts = block_terms(idx[sa], idx[sb], e, subs)
            if any(t.kind == "weight" and getattr(env0.get(t.weight), "ndim", 0) != 2 for t in ts):
                # a matrix that is not one of the network's weights: the block is evaluated densely
                ts = [Term(idx[sa], idx[sb], "dense", 1.0, None, None, compile_expr(e, subs))]
            terms.extend(ts)
        self.terms = terms
        self.S = len(cell.states)
        xp = self.xp
        # per column block b (VJP) and per source block b (JVP): the distinct weights, stacked
        self.weights: dict[int, list] = {}
        self.stack: dict[int, Any] = {}
        for b in range(self.S):
            ws = []
            for t in terms:
                if t.kind == "weight" and t.b == b and t.weight not in ws:
                    ws.append(t.weight)
            self.weights[b] = ws
            if ws:
                self.stack[b] = xp.astype(xp.concat([env0[w] for w in ws], axis=0), self.dtype)

    def precompute(self, traj: Trajectory, limit: int = 2**27) -> bool:
        """Evaluate every term's vector v for all T steps at once (one environment whose batch is
        the T·B rows of the trajectory: one GEMM per pre-activation instead of one matvec per step),
        kept for :meth:`fill`, :meth:`vjp` and :meth:`jvp` of environments that carry their step
        (``env[STEP] = t``). Skipped (False) when the vectors and the blocks' coefficient arrays
        (twice T·B·n per term) would pass ``limit`` bytes, or when a named quantity has no batch
        axis; the per-step evaluation is then used, with the same values."""
        xp = self.xp
        T, B = traj.steps, traj.states[0].shape[0]
        nv = sum(1 for t in self.terms if t.vfn is not None)
        self._pre, self._fused = None, {}
        if not nv or 2 * T * B * self.n * nv * np.dtype(self.dtype).itemsize > limit or not traj.named:
            return False
        named = {}
        for sym in traj.named[0]:
            vals = [d[sym] for d in traj.named]
            if not all(getattr(v, "ndim", 0) >= 1 and v.shape[0] == B for v in vals):
                return False
            named[sym] = xp.concat(vals, axis=0)
        flat = Trajectory(xp.reshape(traj.inputs, (1, T * B, traj.inputs.shape[-1])),
                          [xp.concat(traj.states[:-1], axis=0)], [named])
        env = self.net.step_env(flat, 1)
        pre = {}
        for t in self.terms:
            if t.vfn is None:
                continue
            v = self._v(t, env)
            if getattr(v, "ndim", 0) != 2 or v.shape[0] != T * B:
                continue  # a vector without the batch axis: evaluated per step
            pre[id(t)] = xp.reshape(v, (T, B, v.shape[-1]))
        self._pre = pre
        if xp.__name__.split(".")[-1] != "numpy":  # the fused blocks serve :meth:`fill` (NumPy) only
            return True
        # blocks made of weight terms only: Σ_g diag(v_g) W_g in one pass, rows i of the block
        # being Σ_g v_g[i] W_g[i, :] (coefficients (T, B, n, G) against the stack (G, n, n))
        env0 = self.net.env0()
        fused: dict = {}
        groups: dict = {}
        for t in self.terms:
            groups.setdefault((t.a, t.b), []).append(t)
        for ab, ts in groups.items():
            full = [t for t in ts if t.kind in ("weight", "dense")]
            if not full or any(t.kind != "weight" or (t.vfn is not None and id(t) not in pre) for t in full):
                continue
            ws: list = []
            for t in full:
                if t.weight not in ws:
                    ws.append(t.weight)
            C = np.zeros((T, B, self.n, len(ws)), dtype=self.dtype)
            for t in full:
                g = ws.index(t.weight)
                C[..., g] += pre[id(t)] if t.vfn is not None else _value(t.coeff, env)
            W = np.stack([np.asarray(env0[w], dtype=self.dtype) for w in ws])  # (G, n, n)
            # rows i of the block as one batched matmul, C[i] (1 × G) @ [W_1[i]; …; W_G[i]] (G × n)
            fused[ab] = (C, np.ascontiguousarray(np.moveaxis(W, 0, 1)))  # (n, G, n)
        self._fused = fused
        return True

    def _v(self, t: Term, env):
        xp = self.xp
        pre = getattr(self, "_pre", None)
        if pre and STEP in env and id(t) in pre:
            return pre[id(t)][env[STEP] - 1]
        c = _value(t.coeff, env)
        if t.vfn is None:
            return c
        v = xp.astype(xp.asarray(t.vfn(env)), self.dtype)
        return v if c == 1 else c * v

    def vjp(self, Y, env):
        """Y J_t for rows Y (B, R, N) (each row yᵀ ↦ yᵀJ_t)."""
        xp, n = self.xp, self.n
        B, R, N = Y.shape
        out = []
        for b in range(self.S):
            acc = None
            ws = self.weights[b]
            if ws:
                Z = [None] * len(ws)
                for t in self.terms:
                    if t.kind != "weight" or t.b != b:
                        continue
                    v = self._v(t, env)
                    Ya = Y[:, :, t.a * n:(t.a + 1) * n]
                    z = Ya * (v[:, None, :] if hasattr(v, "ndim") and v.ndim == 2 else v)
                    i = ws.index(t.weight)
                    Z[i] = z if Z[i] is None else Z[i] + z
                Zs = xp.concat(Z, axis=-1) if len(Z) > 1 else Z[0]
                acc = xp.reshape(xp.reshape(Zs, (B * R, len(ws) * n)) @ self.stack[b], (B, R, n))
            for t in self.terms:
                if t.b != b or t.kind == "weight":
                    continue
                Ya = Y[:, :, t.a * n:(t.a + 1) * n]
                if t.kind == "identity":
                    term = Ya
                elif t.kind == "diag":
                    v = self._v(t, env)
                    term = Ya * (v[:, None, :] if hasattr(v, "ndim") and v.ndim == 2 else v)
                else:
                    term = Ya @ xp.astype(xp.asarray(t.fn(env)), self.dtype)
                acc = term if acc is None else acc + term
            out.append(xp.zeros((B, R, n), dtype=Y.dtype) if acc is None else acc)
        return out[0] if self.S == 1 else xp.concat(out, axis=-1)

    def jvp(self, X, env):
        """(J_t xᵀ)ᵀ for rows X (B, R, N): each row x ↦ J_t x, kept as a row."""
        xp, n = self.xp, self.n
        B, R, N = X.shape
        out: list[Any] = [None] * self.S
        for b in range(self.S):
            ws = self.weights[b]
            if not ws:
                continue
            Xb = xp.reshape(X[:, :, b * n:(b + 1) * n], (B * R, n))
            U = xp.reshape(Xb @ xp.matrix_transpose(self.stack[b]), (B, R, len(ws) * n))  # x W_gᵀ for every g
            for t in self.terms:
                if t.kind != "weight" or t.b != b:
                    continue
                i = ws.index(t.weight)
                v = self._v(t, env)
                term = U[:, :, i * n:(i + 1) * n] * (v[:, None, :] if hasattr(v, "ndim") and v.ndim == 2 else v)
                out[t.a] = term if out[t.a] is None else out[t.a] + term
        for t in self.terms:
            if t.kind == "weight":
                continue
            Xb = X[:, :, t.b * n:(t.b + 1) * n]
            if t.kind == "identity":
                term = Xb
            elif t.kind == "diag":
                v = self._v(t, env)
                term = Xb * (v[:, None, :] if hasattr(v, "ndim") and v.ndim == 2 else v)
            else:
                term = Xb @ xp.matrix_transpose(xp.astype(xp.asarray(t.fn(env)), self.dtype))
            out[t.a] = term if out[t.a] is None else out[t.a] + term
        parts = [xp.zeros((B, R, n), dtype=X.dtype) if o is None else o for o in out]
        return parts[0] if self.S == 1 else xp.concat(parts, axis=-1)

    def fill(self, J, env):
        """Write J_t into the buffer J (B, N, N) (NumPy), whose entries outside the non-zero
        blocks are 0 and stay 0: the same matrix as :meth:`Network.fill_jacobian`, assembled
        from the terms coeff · diag(v) · W with ``out=`` (no temporaries beyond one n × n
        scratch block), each v evaluated once; a block of diagonal terms writes its diagonal only.
        """
        n = self.n
        B = J.shape[0]
        if not hasattr(self, "_groups"):
            groups: dict = {}
            for t in self.terms:
                groups.setdefault((t.a, t.b), []).append(t)
            self._groups = groups
            self._scratch = np.empty((B, n, n), dtype=J.dtype)
        if self._scratch.shape[0] != B or self._scratch.dtype != J.dtype:
            self._scratch = np.empty((B, n, n), dtype=J.dtype)
        env0 = self.net.env0()
        idx = np.arange(n)
        for (a, b), ts in self._groups.items():
            view = J[:, a * n:(a + 1) * n, b * n:(b + 1) * n]
            full = [t for t in ts if t.kind in ("weight", "dense")]
            first = True
            fused = getattr(self, "_fused", {}).get((a, b)) if STEP in env else None
            if fused is not None and fused[0].shape[1] == B:
                np.matmul(fused[0][env[STEP] - 1][:, :, None, :], fused[1], out=view[:, :, None, :])
                full, first = [], False
            for t in full:
                if t.kind == "dense":
                    M = np.asarray(t.fn(env), dtype=J.dtype)
                    if first:
                        view[...] = M
                    else:
                        np.add(view, M, out=view)
                else:
                    W = env0[t.weight]
                    v = self._v(t, env)
                    target = view if first else self._scratch
                    if hasattr(v, "ndim") and v.ndim >= 1:
                        np.multiply(np.reshape(v, (-1, n))[:, :, None], W, out=target)
                    else:
                        np.multiply(v, W, out=target)
                    if not first:
                        np.add(view, target, out=view)
                first = False
            diag = [t for t in ts if t.kind in ("diag", "identity")]
            if not diag:
                continue
            acc = None
            for t in diag:
                v = 1.0 if t.kind == "identity" else self._v(t, env)
                acc = v if acc is None else acc + v
            if first:  # diagonal terms only: the off-diagonal entries stay 0
                view[:, idx, idx] = acc
            else:
                view[:, idx, idx] += acc
        return J

    def flops(self, R: int, B: int = 1) -> int:
        """The multiply–add FLOPs one :meth:`vjp` of R rows must do in its GEMMs (2·R·K·n each)."""
        return sum(2 * B * R * len(ws) * self.n * self.n for ws in self.weights.values())


@dataclass
class SketchCurves:
    """log10 curves of one block of ∂s_T/∂s_k from the matrix-free sweep, each (B, T).

    Attributes:
        log10_norm_fro: the estimate of log10 ‖·‖_F: log10 of √((m/q)·‖QᵀP‖_F²) (module
            docstring), never below ``log10_norm_fro_low``; exact where ``fro_exact``.
        log10_norm_fro_se: its standard error, in log10 units (from the probe blocks); 0 where exact;
            +inf where the probes give none (q < m and every probe block repeats the others'
            directions): the band of ‖·‖₂ is then [the certified σ_max(QᵀP), +inf).
        log10_norm_fro_low: the certified lower bound log10 ‖QᵀP‖_F ≤ log10 ‖P‖_F (Q the
            probes' orthonormal basis); equal to the estimate where ``fro_exact``.
        log10_norm_2_low: the lower end of the band of log10 ‖·‖₂: the larger of the certified
            sketch bound σ_max(QᵀP) and ‖P‖_F/√C (C = columns of the block) at the estimate's
            lower confidence limit (:func:`band_z` standard errors below: the two-sided 99.9 %
            Student-t quantile for the probe blocks).
        log10_norm_2_high: the upper end: ‖P‖_F at the estimate's upper confidence limit
            (:func:`band_z` standard errors above). Where the probes span the block's rows (Q
            square orthogonal) both ends are σ_max(QᵀP) = ‖P‖₂ itself.
        log10_norm_2_sketch: the certified lower bound log10 σ_max(QᵀP) alone.
        log10_grad_norm: log10 ‖∂L/∂(the block's columns of s_k)‖, exact.
        log10_norm_fro_dev: (B, b, T): each probe block's linearised deviation of the log10
            estimate scaled to the estimate's variance, c·(E_j − mean_j E_j)/(2 ln 10 · F) for
            Gaussian probes, the jackknife pseudo-values' −(b − 1)(F_(−j) − mean F_(−·))/(2 ln 10 · F)
            for Rademacher ones (module docstring); the standard error is their spread over the
            b blocks, std_j/√b. The
            probes are the same for every sequence of the batch, so the errors of the B estimates
            are correlated: the standard error of their batch mean is the spread over j of the batch-mean deviations
            (:func:`batch_mean_se`), not se/√B.
        log10_norm_fro_low: see above, (B, T).
        fro_exact: (T,) bool: the Frobenius estimate is ‖P‖_F itself at this k (the probes span
            the block's rows, or the block is structurally diagonal under Rademacher probes).
    """

    log10_norm_fro: np.ndarray
    log10_norm_fro_se: np.ndarray
    log10_norm_2_low: np.ndarray
    log10_norm_2_high: np.ndarray
    log10_norm_2_sketch: np.ndarray
    log10_grad_norm: np.ndarray
    log10_norm_fro_dev: np.ndarray | None = None
    log10_norm_fro_low: np.ndarray | None = None
    fro_exact: np.ndarray | None = None


def batch_mean_se(c: SketchCurves) -> np.ndarray:
    """The standard error (T,) of the batch mean of ``c.log10_norm_fro``, in log10 units.

    Every sequence is probed with the same vectors, so the B estimates share their errors; the
    mean's error is read off the probe blocks, std_j(mean_b dev_bj)/√b, which is se for B
    identical sequences and shrinks towards se/√B only as far as the sequences' errors are
    independent. Without the block deviations: √(mean_b se_b²), the bound for fully correlated
    errors.
    """
    if c.log10_norm_fro_dev is None:
        return np.sqrt(np.mean(c.log10_norm_fro_se ** 2, axis=0))
    dev = c.log10_norm_fro_dev.mean(axis=0)  # (b, T)
    se = dev.std(axis=0, ddof=1) / math.sqrt(dev.shape[0])
    return np.where(np.isinf(c.log10_norm_fro_se).any(axis=0), math.inf, se)  # no estimate (_frobenius)


def _probes(kind: str, rows: int, r: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=(r, rows))
    return rng.standard_normal((r, rows))


@dataclass(frozen=True)
class _ProbeBasis:
    """What the estimate needs of one rows slice's r probes Ω (r × m): Qᵀ = Σ⁻¹VᵀΩ for all of them
    (``qt``, q × r, so that QᵀP = ``qt`` ΩP) and, block-diagonal, for each probe block alone
    (``blocks``, Σ q_j × r), the blocks' row ``starts`` in it, the ranks, and the factor c."""

    m: int
    q: int
    qt: np.ndarray
    blocks: np.ndarray
    starts: np.ndarray
    q_j: np.ndarray
    c: float
    #: Rademacher probes only: (b, r, r) Gram matrices T_jᵀT_j of the leave-one-block-out bases
    #: (T_j = Q_{−j}ᵀ Ω⁻ on the other blocks' probes, zero on block j's) and their ranks q_{−j}
    loo: np.ndarray | None = None
    q_loo: np.ndarray | None = None


def _orthonormal_rows(Om: np.ndarray) -> np.ndarray:
    """Qᵀ = Σ⁻¹Vᵀ (rank × r) for Ωᵀ = UΣVᵀ (Ω = Om, r × m): Q = U = ΩᵀVΣ⁻¹ spans the probes."""
    _, sv, Vt = np.linalg.svd(Om.T, full_matrices=False)
    keep = sv > sv[0] * 1e-8
    return Vt[keep] / sv[keep, None]


def _probe_basis(Om: np.ndarray, nb: int, jackknife: bool = False) -> _ProbeBasis:
    r, m = Om.shape
    s = r // nb
    qt = _orthonormal_rows(Om)
    parts = [_orthonormal_rows(Om[j * s:(j + 1) * s]) for j in range(nb)]
    q_j = np.array([p.shape[0] for p in parts])
    D = np.zeros((int(q_j.sum()), r))
    starts = np.concatenate([[0], np.cumsum(q_j)[:-1]]).astype(int)
    for j, p in enumerate(parts):
        D[starts[j]:starts[j] + q_j[j], j * s:(j + 1) * s] = p
    q = qt.shape[0]
    # Var(F) / Var(mean_j E_j) = ((m − q)/q) / (Σ_j (m − q_j)/q_j / b²) (module docstring)
    den = float(np.sum((m - q_j) / q_j)) / nb ** 2
    c = math.sqrt((m - q) / q / den) if q < m and den > 0 else 0.0
    if not jackknife:
        return _ProbeBasis(m, q, qt, D, starts, q_j, c)
    loo, q_loo = np.zeros((nb, r, r)), np.zeros(nb)
    for j in range(nb):
        keep = np.r_[0:j * s, (j + 1) * s:r]
        t = _orthonormal_rows(Om[keep])
        loo[j][np.ix_(keep, keep)] = t.T @ t
        q_loo[j] = t.shape[0]
    return _ProbeBasis(m, q, qt, D, starts, q_j, c, loo, q_loo)


def _diagonal_blocks(op: JacobianOperator, net: Network, blocks: dict, T: int) -> dict[str, np.ndarray]:
    """name → (T,) bool: whether the block (rows, cols) of P_k = J_T ⋯ J_{k+1} is structurally
    diagonal, from the zero pattern of the derived blocks of J_t (diagonal/identity terms only:
    diagonal; any weight or dense term: dense), multiplied as booleans along the chain."""
    S = op.S
    nz = np.zeros((S, S), dtype=bool)    # block (a, b) of J_t not zero
    full = np.zeros((S, S), dtype=bool)  # … and not diagonal
    for t in op.terms:
        nz[t.a, t.b] = True
        full[t.a, t.b] |= t.kind in ("weight", "dense")
    want: dict[str, list[int]] = {}
    for name, (rows, cols) in blocks.items():
        cover = net.layout.covered(rows)
        if rows == cols and cover is not None:
            want[name] = list(cover)
    out = {name: np.zeros(T, dtype=bool) for name in want}
    if not want:
        return out
    pz, pf = np.eye(S, dtype=bool), np.zeros((S, S), dtype=bool)  # P_T = I
    for k in range(T - 1, -1, -1):  # P_k = P_{k+1} J_{k+1}: (a, b) is dense if some path has a dense factor
        pz2 = (pz.astype(int) @ nz.astype(int)) > 0
        pf = ((pf.astype(int) @ nz.astype(int)) + (pz.astype(int) @ full.astype(int))) > 0
        pz = pz2
        for name, idx in want.items():
            sub_z, sub_f = pz[np.ix_(idx, idx)], pf[np.ix_(idx, idx)]
            off = np.eye(len(idx)) == 0
            out[name][k] = not np.any(sub_f) and not np.any(sub_z & off)
    return out


def _frobenius(Yb: np.ndarray, Lr: np.ndarray, basis: _ProbeBasis, nb: int, diagonal: bool):
    """The Frobenius estimate of one block at one k from the carried probe rows ΩP = 10^Lr · Yb
    (B, r, C): log10 F, its se and block deviations in log10, the certified log10 ‖QᵀP‖_F and
    log10 σ_max(QᵀP), and whether F is exact (module docstring)."""
    B = Yb.shape[0]
    ref = np.max(Lr, axis=-1, keepdims=True)
    ref = np.where(np.isfinite(ref), ref, 0.0)
    Z = Yb * 10.0 ** (Lr - ref)[:, :, None]                 # ΩP / 10^ref
    M = basis.qt @ Z                                        # QᵀP / 10^ref
    e = np.sum(M * M, axis=(-1, -2))                        # ‖QᵀP‖_F² / 10^(2 ref)
    lam = np.linalg.eigvalsh(M @ np.swapaxes(M, -1, -2))[:, -1]
    sk = ref[:, 0] + 0.5 * np.log10(np.maximum(lam, 0.0))
    low = ref[:, 0] + 0.5 * np.log10(e)
    zero = np.zeros((B, nb))
    if diagonal:  # a structurally diagonal block under Rademacher probes: every ‖ωᵀP‖² is ‖P‖_F²
        est = np.mean(np.sum(Z * Z, axis=-1), axis=-1)
        fro = np.maximum(ref[:, 0] + 0.5 * np.log10(est), low)  # equal up to rounding
        return fro, np.zeros(B), zero, low, sk, True
    if basis.q == basis.m:  # Q spans the rows: ‖QᵀP‖_F = ‖P‖_F
        return low, np.zeros(B), zero, low, sk, True
    F = (basis.m / basis.q) * e
    pos = F > 0
    Fs = np.where(pos, F, 1.0)
    if basis.loo is not None and basis.q_loo is not None:  # Rademacher: the jackknife (module docstring)
        K = Z @ np.swapaxes(Z, -1, -2)                                          # ΩP(ΩP)ᵀ, (B, r, r)
        F_loo = (basis.m / basis.q_loo) * np.einsum("jab,zab->zj", basis.loo, K)  # (B, b)
        dev = -(nb - 1) * (F_loo - F_loo.mean(axis=-1, keepdims=True))      # pseudo-values − their mean
        dev = np.where(pos[:, None], dev / (2 * _LN10 * Fs[:, None]), 0.0)
        se_log = dev.std(axis=-1, ddof=1) / math.sqrt(nb)
        if np.all(basis.q_loo == basis.q):  # q < m, yet every block repeats the others' directions:
            se_log = np.where(pos, math.inf, 0.0)  # F_loo = F whatever P, so no error estimate
        return ref[:, 0] + 0.5 * np.log10(F), se_log, dev, low, sk, False
    Mj = basis.blocks @ Z
    E = (basis.m / basis.q_j) * np.add.reduceat(np.sum(Mj * Mj, axis=-1), basis.starts, axis=1)  # (B, b)
    se_log = np.where(pos, basis.c * E.std(axis=-1, ddof=1) / math.sqrt(nb) / (2 * _LN10 * Fs), 0.0)
    dev = np.where(pos[:, None], basis.c * (E - E.mean(axis=-1, keepdims=True)) / (2 * _LN10 * Fs[:, None]), 0.0)
    fro = ref[:, 0] + 0.5 * np.log10(F)
    return fro, se_log, dev, low, sk, False


def sketch_sweep(net: Network, traj: Trajectory, g_T, blocks: dict, *, probes: int = 32,
                 probe_blocks: int = 8, probe: str = "rademacher", seed: int = 0, dtype=None,
                 truncated: bool = False, progress=None) -> dict[str, SketchCurves]:
    """The matrix-free backward sweep (see the module docstring) for named blocks of ∂s_T/∂s_k.

    Arguments:
        net, traj: the network and its unrolled trajectory.
        g_T: ∂L/∂s_T, (B, N).
        blocks: name → (rows, cols) slices of ∂s_T/∂s_k; r probes are drawn on each distinct
            rows slice (``numpy.random.default_rng(seed + i)`` for the i-th), the same for
            every sequence of the batch.
        probes: r, probe vectors per rows slice (a multiple of ``probe_blocks``).
        probe_blocks: b ≥ 2 independent blocks of r/b probes, for the standard error.
        probe: ``"rademacher"`` (±1 entries) or ``"gaussian"``.
        dtype: dtype of the carried rows and products (``None``: the network's).

    Returns:
        name → :class:`SketchCurves`.
    """
    xp, T, N = net.xp, traj.steps, net.state_size
    r = positive_int(probes, "probes", 2)
    nb = positive_int(probe_blocks, "probe_blocks", 2)
    one_of(probe, "probe", PROBE_KINDS)
    if r % nb:
        raise GradflowError(f"probes ({r}) must be a multiple of probe_blocks ({nb})")
    dt = net.dtype if dtype is None else dtype
    op = JacobianOperator(net, truncated, dt)
    B = traj.states[0].shape[0]
    row_slices: list[tuple[int, int]] = []
    for rows, _ in blocks.values():
        key = (rows.start, rows.stop)
        if key not in row_slices:
            row_slices.append(key)
    # rows of Y: the gradient, then r probes per rows slice
    Y0 = np.zeros((B, 1 + r * len(row_slices), N))
    Y0[:, 0, :] = to_host(g_T)
    bases: dict[tuple[int, int], _ProbeBasis] = {}
    for i, (lo, hi) in enumerate(row_slices):
        Om = _probes(probe, hi - lo, r, seed + i)
        Y0[:, 1 + i * r:1 + (i + 1) * r, lo:hi] = Om
        bases[(lo, hi)] = _probe_basis(Om, nb, jackknife=probe == "rademacher")
    diagonal = _diagonal_blocks(op, net, blocks, T) if probe == "rademacher" else {}
    Y = xp.asarray(Y0, dtype=dt)
    L = np.zeros((B, Y0.shape[1]))  # log10 scale of each row
    out = {name: {f: np.full((B, T), np.nan) for f in SketchCurves.__dataclass_fields__} for name in blocks}
    for o in out.values():
        o["log10_norm_fro_dev"] = np.zeros((B, nb, T))
        o["fro_exact"] = np.zeros(T, dtype=bool)
    for k in range(T - 1, -1, -1):
        Y = op.vjp(Y, net.step_env(traj, k + 1))
        sq = to_host(xp.sum(Y * Y, axis=-1)).astype(np.float64)  # (B, R)
        if not np.all(np.isfinite(sq)):
            raise GradflowError(f"the matrix-free sweep met NaN or inf at k = {k}")
        Yh = to_host(Y).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            for name, (rows, cols) in blocks.items():
                o = out[name]
                C = cols.stop - cols.start
                g = Yh[:, 0, cols]
                o["log10_grad_norm"][:, k] = L[:, 0] + 0.5 * np.log10(np.sum(g * g, axis=-1))
                i = row_slices.index((rows.start, rows.stop))
                sl = slice(1 + i * r, 1 + (i + 1) * r)
                Yb = Yh[:, sl, cols]
                basis = bases[(rows.start, rows.stop)]
                fr = _frobenius(Yb, L[:, sl], basis, nb, diagonal.get(name, np.zeros(T, bool))[k])
                fro, se_log, dev, low, sk, exact = fr
                o["log10_norm_fro"][:, k] = fro
                o["log10_norm_fro_se"][:, k] = se_log
                o["log10_norm_fro_dev"][:, :, k] = dev
                o["log10_norm_fro_low"][:, k] = low
                o["fro_exact"][k] = exact
                o["log10_norm_2_sketch"][:, k] = sk
                z = band_z(nb)
                if basis.q == basis.m:  # Q is square orthogonal: σ_max(QᵀP) = ‖P‖₂, no band
                    o["log10_norm_2_low"][:, k] = o["log10_norm_2_high"][:, k] = sk
                else:
                    o["log10_norm_2_low"][:, k] = np.maximum(sk, fro - z * se_log - 0.5 * math.log10(C))
                    o["log10_norm_2_high"][:, k] = fro + z * se_log
        # renormalise every row (its scale goes to L): no under- or overflow at any T
        nrm = np.sqrt(sq)
        safe = np.where(nrm > 0, nrm, 1.0)
        Y = Y / xp.asarray(safe[:, :, None], dtype=dt)
        with np.errstate(divide="ignore"):
            L = L + np.where(nrm > 0, np.log10(safe), -np.inf)
        if progress is not None:
            progress(T - k, T)
    return {name: SketchCurves(**o) for name, o in out.items()}


def matrix_free_lyapunov(net: Network, traj: Trajectory, count: int, *, dtype=None,
                         precompute: bool = False) -> np.ndarray:
    """The ``count`` leading Lyapunov exponents, (B, count) descending, by QR of J_t Q carried
    as forward products J_t x through the derived blocks (no N × N matrix), started from the
    same basis as :func:`gradflow.lyapunov_exponents` (``numpy.random.default_rng(0)``).
    ``precompute``: the blocks' vectors for all steps at once (:meth:`JacobianOperator.precompute`)."""
    xp, N, T = net.xp, net.state_size, traj.steps
    r = min(positive_int(count, "count"), N)
    B = traj.states[0].shape[0]
    dt = net.dtype if dtype is None else dtype
    op = JacobianOperator(net, False, dt)
    if precompute:
        op.precompute(traj)
    Q0 = np.eye(N) if r == N else np.linalg.qr(np.random.default_rng(0).standard_normal((N, r)))[0]
    X = xp.asarray(np.broadcast_to(Q0.T[None], (B, r, N)).copy(), dtype=dt)
    acc = np.zeros((B, r))
    unresolved = np.zeros((B, r), dtype=bool)
    for t in range(1, T + 1):
        env = net.step_env(traj, t)
        env[STEP] = t
        Q, logd, floor = qr_growth(xp, xp.matrix_transpose(op.jvp(X, env)))
        X = xp.matrix_transpose(Q)
        acc += logd
        unresolved |= floor
    return exponents(acc, unresolved, T)
