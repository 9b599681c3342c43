"""The numeric engine: unroll a cell on real weights and measure how ∂s_T/∂s_k decays.

Indexing: s_0 is the initial state (zeros unless given), s_t = F(s_{t−1}, x_t) for t = 1…T,
and J_t = ∂s_t/∂s_{t−1} is evaluated from the closed forms the symbolic core derived
(:mod:`gradflow._compile`), never by autograd. One backward sweep

    P_T = I,   P_k = P_{k+1} · J_{k+1} = ∂s_T/∂s_k      (k = T−1, …, 0)

gives every k at O(T·N³) cost (N = number of states × n) and O(T·n + N²) memory: states are
kept, the Jacobians are rebuilt one at a time. P is kept normalised (‖P̂‖_F = 1) with its log
scale carried apart, so norms far below 1e-300 neither underflow nor overflow. Arrays may be
of any array-API namespace (NumPy, CuPy): the namespace of the weights is used throughout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from sympy import Identity, ZeroMatrix

from ._cell import Cell
from ._cells import get_cell
from ._compile import _dense_diag, compile_expr
from ._matexpr import Diag
from ._weights import Weights, _check_size, init_weights, load_weights

_LN10 = math.log(10.0)


@dataclass(frozen=True)
class _Block:
    """One block ∂(s_t)_a/∂(s_{t−1})_b, its structure read off the derived expression."""

    a: int
    b: int
    kind: str                    # "dense", "diag" (fn gives the diagonal) or "identity"
    fn: Any


@dataclass(frozen=True)
class _Kernels:
    """Array code compiled from one cell's definition and derived Jacobian."""

    prev: tuple                  # s_{t−1} symbols, in state order
    new: tuple                   # s_t symbols
    x: Any
    forward: tuple               # ((symbol, fn), ...) in definition order
    blocks: tuple                # _Block, zero blocks left out
    carousel: tuple              # the same for the truncated (1997) Jacobian


def _blocks(J, idx) -> tuple:
    out = []
    for (a, b), e in J.blocks.items():
        if isinstance(e, ZeroMatrix):
            continue
        if isinstance(e, Identity):
            out.append(_Block(idx[a], idx[b], "identity", None))
        elif isinstance(e, Diag):
            out.append(_Block(idx[a], idx[b], "diag", compile_expr(e.vector)))
        else:
            out.append(_Block(idx[a], idx[b], "dense", compile_expr(e)))
    return tuple(out)


@cache
def kernels(cell: Cell) -> _Kernels:
    """Compile ``cell``'s recurrence and Jacobian blocks (cached per cell)."""
    from ._theory import truncated_jacobian

    step = cell.recorded
    idx = {s: i for i, s in enumerate(cell.states)}
    return _Kernels(
        prev=tuple(step.prev[s] for s in cell.states),
        new=tuple(step.new[s] for s in cell.states),
        x=step.x,
        forward=tuple((sym, compile_expr(e)) for sym, e in step.definitions.items()),
        blocks=_blocks(cell.jacobian(), idx),
        carousel=_blocks(truncated_jacobian(cell), idx) if "c" in cell.states else (),
    )


@dataclass
class Trajectory:
    """States of an unrolled network: ``states[t]`` is s_t, shape (B, S·n), t = 0…T.

    ``named[t − 1]`` keeps the named quantities of step t (gates, pre-activations: O(n) each),
    so the backward sweep does not recompute them.
    """

    inputs: Any                  # (T, B, m)
    states: list = field(repr=False)
    named: list = field(default_factory=list, repr=False)

    @property
    def steps(self) -> int:
        return len(self.states) - 1


class Network:
    """A cell with weights: forward unroll and the Jacobians J_t of the unrolled map.

    Arguments:
        weights: :class:`~gradflow.Weights` (their array namespace is the network's).
    """

    def __init__(self, weights: Weights):
        self.weights = weights
        self.cell = weights.cell
        self.hidden, self.input = weights.hidden, weights.input
        arrays = list(weights.arrays.values())
        self.xp = array_namespace(*arrays)
        self.dtype = arrays[0].dtype
        self._k = kernels(self.cell)
        self._env0 = dict(weights.env(), xp=self.xp, dtype=self.dtype)

    @property
    def state_size(self) -> int:
        """N = (number of states) · n."""
        return len(self.cell.states) * self.hidden

    # -- forward ----------------------------------------------------------------------------
    def _env(self, s_prev, x, named: Mapping | None = None) -> dict:
        """Every named quantity of step t from s_{t−1} (B, N) and x_t (B, m) (or ``named``)."""
        n, env = self.hidden, dict(self._env0)
        for i, sym in enumerate(self._k.prev):
            env[sym] = s_prev[:, i * n:(i + 1) * n]
        env[self._k.x] = x
        if named is not None:
            env.update(named)
            return env
        for sym, fn in self._k.forward:
            env[sym] = fn(env)
        return env

    def _step_env(self, traj: Trajectory, t: int) -> dict:
        """The environment of step t (1 ≤ t ≤ T) of a trajectory."""
        named = traj.named[t - 1] if traj.named else None
        return self._env(traj.states[t - 1], traj.inputs[t - 1], named)

    def _state(self, env):
        xp = self.xp
        parts = [env[s] for s in self._k.new]
        return parts[0] if len(parts) == 1 else xp.concat(parts, axis=-1)

    def unroll(self, inputs, initial: Mapping[str, Any] | None = None) -> Trajectory:
        """Run s_t = F(s_{t−1}, x_t) for t = 1…T.

        Arguments:
            inputs: (T, B, m) or (T, m) array of the network's namespace.
            initial: optional initial states by name (``{"h": (B, n) or (n,)}``); zeros otherwise.

        Returns:
            :class:`Trajectory` with T + 1 states of shape (B, N).
        """
        xp = self.xp
        inputs = self.check_inputs(inputs)
        T, B, _ = inputs.shape
        parts = []
        for s in self.cell.states:
            v = (initial or {}).get(s)
            if v is None:
                v = xp.zeros((B, self.hidden), dtype=self.dtype)
            else:
                v = xp.asarray(v, dtype=self.dtype)
                if v.ndim == 1 and v.shape[0] == self.hidden:
                    v = xp.broadcast_to(v[None, :], (B, self.hidden))
                if tuple(v.shape) != (B, self.hidden):
                    raise ValueError(f"initial state {s} has shape {tuple(v.shape)}, expected {(B, self.hidden)}")
                if not bool(xp.all(xp.isfinite(v))):
                    raise ValueError(f"initial state {s} contains NaN or inf")
            parts.append(v)
        unknown = set(initial or {}) - set(self.cell.states)
        if unknown:
            raise ValueError(f"{self.cell.name} has no state(s) {', '.join(sorted(unknown))}")
        s = parts[0] if len(parts) == 1 else xp.concat(parts, axis=-1)
        states, named = [s], []
        for t in range(T):
            env = self._env(s, inputs[t])
            named.append({sym: env[sym] for sym, _ in self._k.forward})
            s = self._state(env)
            states.append(s)
        return Trajectory(inputs, states, named)

    def check_inputs(self, inputs):
        """(T, m) or (T, B, m) → (T, B, m) of the network's dtype; ``ValueError`` if malformed."""
        xp = self.xp
        inputs = xp.asarray(inputs)
        if inputs.ndim == 2:
            inputs = inputs[:, None, :]
        if inputs.ndim != 3:
            raise ValueError(f"inputs must have shape (T, m) or (T, batch, m), got {tuple(inputs.shape)}")
        T, B, m = inputs.shape
        if T < 1:
            raise ValueError("inputs have T = 0 steps; need T >= 1")
        if B < 1:
            raise ValueError("inputs have an empty batch")
        if m != self.input:
            raise ValueError(f"inputs have {m} features per step, the weights expect input size {self.input}")
        if not bool(xp.all(xp.isfinite(inputs))):
            raise ValueError("inputs contain NaN or inf")
        return xp.astype(inputs, self.dtype)

    # -- Jacobians ----------------------------------------------------------------------------
    def step_jacobian(self, traj: Trajectory, t: int, *, truncated: bool = False):
        """J_t = ∂s_t/∂s_{t−1}, shape (B, N, N), for 1 ≤ t ≤ T (the 1997 truncation if asked)."""
        if not 1 <= t <= traj.steps:
            raise ValueError(f"t must be in 1..{traj.steps}, got {t}")
        return self._assemble(self._step_env(traj, t), truncated)

    def _assemble(self, env, truncated=False):
        """The dense J_t (B, N, N) from its blocks."""
        B = env[self._k.prev[0]].shape[0]
        J = self.xp.zeros((B, self.state_size, self.state_size), dtype=self.dtype)
        return self._fill(J, env, truncated)

    def _fill(self, J, env, truncated=False):
        """Write J_t's non-zero blocks into the buffer J (B, N, N), whose other entries are 0.

        Dense blocks are copied in; a diagonal block diag(v) writes only its n diagonal entries
        (through a strided view of the flattened buffer), so the zeros around it stay as they are
        and one buffer serves every step.
        """
        xp, n, N = self.xp, self.hidden, self.state_size
        B = J.shape[0]
        for blk in self._k.carousel if truncated else self._k.blocks:
            rows, cols = slice(blk.a * n, (blk.a + 1) * n), slice(blk.b * n, (blk.b + 1) * n)
            if blk.kind == "dense":
                J[:, rows, cols] = blk.fn(env)
                continue
            v = xp.ones((B, n), dtype=self.dtype) if blk.kind == "identity" else \
                xp.broadcast_to(blk.fn(env), (B, n))
            start = blk.a * n * N + blk.b * n
            diag = xp.reshape(J, (B, N * N))[:, start:start + (n - 1) * (N + 1) + 1:N + 1]
            diag[...] = v
            if n > 1 and bool(J[0, blk.a * n + 1, blk.b * n + 1] != v[0, 1]):  # reshape copied
                J[:, rows, cols] = _dense_diag(v, env)
        return J


# -- results ------------------------------------------------------------------------------------
@dataclass
class Curves:
    """log10 norms of one family of products, per sequence: arrays of shape (B, T), index k."""

    log10_norm_2: Any
    log10_norm_fro: Any
    log10_grad_norm: Any

    def mean(self) -> dict[str, np.ndarray]:
        """Batch means (NumPy) of the three curves; −inf where a product is exactly 0."""
        return {k: _np(getattr(self, k)).mean(axis=0) for k in
                ("log10_norm_2", "log10_norm_fro", "log10_grad_norm")}


@dataclass
class Flow:
    """Gradient flow of an unrolled network.

    Attributes:
        cell: the cell's name.
        hidden, steps, batch: n, T, B.
        full: curves of ∂s_T/∂s_k (s = h, or (h, c)), k = 0…T−1.
        cell_state: curves of the c→c block ∂c_T/∂c_k (LSTM cells), else None; its gradient
            curve is ‖∂L/∂c_k‖.
        carousel: curves of the carousel path alone, the 1997-truncated product's c→c block
            ∏ diag(f_j) (LSTM cells, when asked), else None; its gradient curve is the
            truncated (1997) ‖∂L/∂c_k‖.
        lyapunov: Lyapunov exponents (N,), batch mean, descending, when asked.
        bound: log10 of the Pascanu bound (γ σ_max(W))^{T−k}, (T,), for Elman cells, else None.
    """

    cell: str
    hidden: int
    steps: int
    batch: int
    full: Curves
    cell_state: Curves | None = None
    carousel: Curves | None = None
    lyapunov: np.ndarray | None = None
    bound: np.ndarray | None = None

    @property
    def k(self) -> np.ndarray:
        return np.arange(self.steps)

    def to_json(self) -> dict:
        """The ``gradflow flow --json`` object (see the README for the schema)."""

        def num(x):
            x = float(x)
            return x if math.isfinite(x) else None  # log10 of an exact 0: null

        full = self.full.mean()
        cs = self.cell_state.mean() if self.cell_state is not None else None
        curve = []
        for k in range(self.steps):
            rec = {key: num(full[key][k]) for key in full}
            rec = {"k": k, **rec}
            if cs is not None:
                rec["cell_state"] = {key: num(cs[key][k]) for key in cs}
            if self.carousel is not None:
                rec["carousel"] = {key: num(v[k]) for key, v in self.carousel.mean().items()}
            if self.bound is not None:
                rec["log10_bound"] = num(self.bound[k])
            curve.append(rec)
        return {
            "cell": self.cell, "hidden": self.hidden, "steps": self.steps, "batch": self.batch,
            "curve": curve,
            "lyapunov": [num(v) for v in self.lyapunov] if self.lyapunov is not None else [],
        }


def _np(a) -> np.ndarray:
    from ._weights import _to_numpy

    return _to_numpy(a)


# -- the backward sweep -------------------------------------------------------------------------
def _sumsq(xp, X):
    """Σ of squares over the last two axes, per batch element (B,)."""
    B = X.shape[0]
    flat = xp.reshape(X, (B, -1))
    return xp.vecdot(flat, flat, axis=-1)


def _start_basis(xp, B, R, r, dtype):
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


def _spectral_blocks(P, blocks, bases, sumsqs, *, tol=1e-10, max_iter=30, stats=None):
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
        U = _start_basis(xp, B, R, r, P.dtype)
    elif U.ndim == 2 or U.shape[-1] != r:
        U = xp.asarray(U, dtype=P.dtype)
        U = U[..., None] if U.ndim == 2 else U
        extra = _start_basis(xp, B, R, r, P.dtype)[..., : r - U.shape[-1]] if U.shape[-1] < r else None
        U = U[..., :r] if extra is None else xp.concat([U, extra], axis=-1)
        U, _ = xp.linalg.qr(U)
    if sumsq is None:
        sumsq = xp.sum(P * P, axis=(-2, -1))
    (sig,), (U,) = _spectral_blocks(P, [(slice(0, R), slice(0, C))], [U], [sumsq], tol=tol,
                                    max_iter=max_iter, stats=stats)
    return sig, U


class _Tracker:
    """Log10 norms of named blocks of ∂s_T/∂s_k (spectral, Frobenius, gradient), filled
    backwards over k; the spectral norms of all blocks share their passes over the product."""

    def __init__(self, xp, blocks: Mapping[str, tuple], T: int, B: int, dtype, spectral: str,
                 tol: float):
        self.xp, self.blocks, self.spectral, self.tol = xp, dict(blocks), spectral, tol
        self.curves_np = {name: {key: np.full((B, T), np.nan) for key in ("norm2", "fro", "grad")}
                          for name in self.blocks}
        self.bases = {}
        for name, (rows, cols) in self.blocks.items():
            R, C = rows.stop - rows.start, cols.stop - cols.start
            self.bases[name] = _start_basis(xp, B, R, max(1, min(8, R, C)), dtype)
        self.rng = np.random.default_rng(2024)
        self.stats: dict = {}

    def record(self, k, P, L, gP, sumsq_full):
        """P (B, N, N): the product, true value 10^L · P; gP: 10^−L · ∂L/∂s_k (B, N)."""
        xp, N = self.xp, P.shape[-1]
        names = list(self.blocks)
        sumsqs = []
        for name in names:
            rows, cols = self.blocks[name]
            full = rows == slice(0, N) and cols == slice(0, N)
            blk = P[:, rows, cols]
            sumsqs.append(sumsq_full if full else xp.sum(blk * blk, axis=(-2, -1)))
        if self.spectral == "svd":
            sigs = [xp.linalg.svdvals(P[:, r, c])[:, 0] for r, c in self.blocks.values()]
        else:
            bases = []
            for name in names:  # refresh the least important direction: catches rising ones
                U = self.bases[name]
                R, r = U.shape[1], U.shape[2]
                if 1 < r < R:
                    fresh = xp.asarray(self.rng.standard_normal((U.shape[0], R, 1)), dtype=U.dtype)
                    U = _orthonormal(xp, xp.concat([U[..., :-1], fresh], axis=-1))
                bases.append(U)
            sigs, bases = _spectral_blocks(P, list(self.blocks.values()), bases, sumsqs, tol=self.tol,
                                           stats=self.stats)
            self.bases = dict(zip(names, bases, strict=True))
        Ln = _np(L)
        with np.errstate(divide="ignore", invalid="ignore"):
            for name, sq, sig in zip(names, sumsqs, sigs, strict=True):
                cols = self.blocks[name][1]
                g = gP[:, cols]
                c = self.curves_np[name]
                c["fro"][:, k] = Ln + 0.5 * np.log10(_np(sq))
                c["norm2"][:, k] = Ln + np.log10(_np(sig))
                c["grad"][:, k] = Ln + np.log10(_np(xp.sqrt(xp.sum(g * g, axis=-1))))

    def curves(self) -> dict:
        return {name: Curves(c["norm2"], c["fro"], c["grad"]) for name, c in self.curves_np.items()}


def _sweep(net: Network, traj: Trajectory, g_T, *, truncated=False, spectral="power", tol=1e-10,
           blocks: Mapping[str, tuple] | None = None, progress=None, each=None):
    """One backward sweep P_k = P_{k+1} J_{k+1}; records log10 norms of the named sub-blocks.

    ``blocks``: name → (rows, cols) of ∂s_T/∂s_k to measure; the gradient figure of a block is
    ‖∂L/∂(its columns of s_k)‖, e.g. ‖∂L/∂c_k‖ for the c→c block.

    J_t is written into one (B, N, N) buffer, block by block from the derived expressions, and
    multiplied in one matmul. The product is carried as 10^L · P; whenever ‖P‖_F leaves
    [tiny^¼, max^¼] of the dtype (1e±77 in float64), P is rescaled by it (folded into the next
    J), so it never under- or overflows. ``each(k, P, L)`` is called with the true product
    ∂s_T/∂s_k = 10^L · P.
    """
    xp, T, N = net.xp, traj.steps, net.state_size
    B = traj.states[0].shape[0]
    P = xp.broadcast_to(xp.eye(N, dtype=net.dtype)[None], (B, N, N))
    L = xp.zeros((B,), dtype=net.dtype)
    f = xp.full((B,), math.sqrt(N), dtype=net.dtype)  # ‖P‖_F
    fi = xp.finfo(net.dtype)
    lo, hi = float(fi.smallest_normal) ** 0.25, float(fi.max) ** 0.25
    tracker = _Tracker(xp, blocks or {}, T, B, net.dtype, spectral, tol)
    J = xp.zeros((B, N, N), dtype=net.dtype)  # one buffer: the zero blocks never change
    for i, k in enumerate(range(T - 1, -1, -1)):
        env = net._step_env(traj, k + 1)
        net._fill(J, env, truncated)
        rescale = not bool(xp.all((f > lo) & (f < hi)))
        if rescale:
            P = P @ (J / xp.where(f > 0, f, xp.ones_like(f))[:, None, None])
            with np.errstate(divide="ignore"):
                L = L + xp.where(f > 0, xp.log10(xp.where(f > 0, f, xp.ones_like(f))),
                                 -xp.inf * xp.ones_like(f))
        else:
            P = P @ J
        sumsq = _sumsq(xp, P)
        f = xp.sqrt(sumsq)
        if each is not None:
            each(k, P, L)
        if blocks:
            gP = (g_T[:, None, :] @ P)[:, 0, :]  # 10^−L · ∂L/∂s_k
            tracker.record(k, P, L, gP, sumsq)
        if progress is not None:
            progress(i + 1, T)
    return tracker.curves()


def loss_gradient(net: Network, traj: Trajectory, output: tuple | None = None):
    """∂L/∂s_T, shape (B, N).

    L = Σ_i (h_T)_i by default; with ``output = (V, c, targets)`` the softmax cross-entropy of the
    logits V h_T + c (V (K, n), c (K,), targets (B,) integer classes).
    """
    xp, n, N = net.xp, net.hidden, net.state_size
    h_T = traj.states[-1][:, :n]
    B = h_T.shape[0]
    if output is None:
        gh = xp.ones_like(h_T)
    else:
        V, c, y = output
        V, c = xp.asarray(V, dtype=net.dtype), xp.asarray(c, dtype=net.dtype)
        if V.ndim != 2 or V.shape[1] != n or tuple(c.shape) != (V.shape[0],):
            raise ValueError(f"output weight V must be (K, {n}) and bias (K,), got {tuple(V.shape)}, {tuple(c.shape)}")
        y = np.asarray(_np(y)).astype(int).reshape(-1)
        if y.shape != (B,) or (y < 0).any() or (y >= V.shape[0]).any():
            raise ValueError(f"targets must be {B} class indices in 0..{V.shape[0] - 1}")
        logits = h_T @ xp.matrix_transpose(V) + c
        logits = logits - xp.max(logits, axis=-1, keepdims=True)
        p = xp.exp(logits)
        p = p / xp.sum(p, axis=-1, keepdims=True)
        onehot = xp.asarray(np.eye(V.shape[0])[y], dtype=net.dtype)
        gh = (p - onehot) @ V
    if N == n:
        return gh
    return xp.concat([gh, xp.zeros((B, N - n), dtype=net.dtype)], axis=-1)


def lyapunov_exponents(net: Network, traj: Trajectory):
    """Lyapunov exponents of the unrolled map, by repeated QR (natural log per step).

        Q_0 = I,  J_t Q_{t−1} = Q_t R_t,  λ_i = (1/T) Σ_t log|(R_t)_ii|

    Returns:
        (B, N) array, each row sorted in descending order.
    """
    xp, N, T = net.xp, net.state_size, traj.steps
    B = traj.states[0].shape[0]
    Q = xp.broadcast_to(xp.eye(N, dtype=net.dtype)[None], (B, N, N))
    acc = np.zeros((B, N))
    for t in range(1, T + 1):
        Z = net.step_jacobian(traj, t) @ Q
        Q, R = xp.linalg.qr(Z)
        d = xp.abs(xp.linalg.diagonal(R))
        with np.errstate(divide="ignore"):
            acc += np.log(_np(d))
    return -np.sort(-(acc / T), axis=1)


def _pascanu_log10(net: Network, T: int):
    """log10 (rate)^{T−k} for k = 0…T−1, rate from :func:`gradflow.pascanu_bound`."""
    from ._theory import pascanu_bound

    try:
        b = pascanu_bound(net.cell)
    except ValueError:
        return None
    rate = 0.0
    for sup, M in b.terms:
        s = 1.0
        if hasattr(M, "name") and M.name in net.weights.arrays:
            s = float(np.linalg.norm(_np(net.weights.arrays[M.name]), 2))
        rate += float(sup) * s
    with np.errstate(divide="ignore"):
        return (T - np.arange(T)) * np.log10(rate)


def gradient_flow(net: Network, inputs, *, initial: Mapping[str, Any] | None = None,
                  output: tuple | None = None, spectral: str = "power", tol: float = 1e-10,
                  lyapunov: bool = True, carousel: bool = False, bound: bool = True,
                  progress: Callable[[int, int], None] | None = None) -> Flow:
    """Measure ‖∂s_T/∂s_k‖₂, ‖∂s_T/∂s_k‖_F and ‖∂L/∂s_k‖ for every k in one backward sweep.

    Arguments:
        net: the :class:`Network`.
        inputs: (T, B, m) or (T, m) inputs.
        initial: initial states by name (zeros otherwise).
        output: ``(V, c, targets)`` for a softmax cross-entropy loss; default L = Σ h_T.
        spectral: ``"power"`` (warm-started subspace iteration to relative ``tol``, see
            :func:`spectral_norm`) or ``"svd"`` (an SVD at every k, ~10× the cost of the chain).
        lyapunov: also compute the Lyapunov spectrum (a forward QR pass, same order of cost).
        carousel: for LSTM cells, also sweep the 1997-truncated Jacobian: its c→c block is the
            carousel path ∏ diag(f_j).
        bound: the Pascanu bound beside the curve (Elman cells).
        progress: ``callback(done, total)``.

    Returns:
        :class:`Flow`.
    """
    if spectral not in ("power", "svd"):
        raise ValueError(f"spectral must be 'power' or 'svd', got {spectral!r}")
    traj = net.unroll(inputs, initial)
    T, B = traj.steps, traj.states[0].shape[0]
    n, N = net.hidden, net.state_size
    g = loss_gradient(net, traj, output)
    blocks = {"full": (slice(0, N), slice(0, N))}
    has_c = "c" in net.cell.states
    if has_c:
        ci = net.cell.states.index("c")
        blocks["cell_state"] = (slice(ci * n, (ci + 1) * n), slice(ci * n, (ci + 1) * n))
    res = _sweep(net, traj, g, spectral=spectral, tol=tol, blocks=blocks, progress=progress)
    car = None
    if carousel and has_c:
        car = _sweep(net, traj, g, truncated=True, spectral=spectral, tol=tol,
                     blocks={"cell_state": blocks["cell_state"]})["cell_state"]
    lyap = lyapunov_exponents(net, traj).mean(axis=0) if lyapunov else None
    return Flow(net.cell.name, n, T, B, res["full"], res.get("cell_state"), car, lyap,
                _pascanu_log10(net, T) if bound else None)


def random_inputs(steps: int, input: int, *, batch: int = 1, seed: int = 0, dtype=np.float64, xp=np):
    """Standard normal inputs of shape (T, B, m) from ``seed``."""
    T = _check_size("steps", steps)
    m, B = _check_size("input size", input), _check_size("batch", batch)
    x = np.random.default_rng(seed + 1_000_003).standard_normal((T, B, m)).astype(dtype)
    return x if xp is np else xp.asarray(x)


def network(cell: str | Cell, hidden: int | None = None, input: int | None = None, *,
            init: str | None = None, seed: int = 0, gain: float = 1.0,
            forget_bias: float | None = None, weights: Any = None, dtype=np.float64, xp=np) -> Network:
    """A :class:`Network` from an init scheme, or from ``weights`` (module, state_dict, file).

    With ``weights`` the sizes come from the weights; if ``hidden``/``input`` are also given they
    must agree.
    """
    cell = get_cell(cell)
    if weights is not None:
        if isinstance(weights, Weights):
            w = weights
        else:
            w = load_weights(cell, weights, dtype=dtype, xp=xp)
        for name, want, got in (("hidden", hidden, w.hidden), ("input", input, w.input)):
            if want is not None and want != got:
                raise ValueError(f"{name} size {want} does not match the weights' {name} size {got}")
        if forget_bias is not None:
            raise ValueError("forget_bias applies to initialised weights, not loaded ones")
        return Network(w)
    if hidden is None or input is None:
        raise ValueError("give hidden and input sizes (or weights)")
    return Network(init_weights(cell, hidden, input, scheme=init, seed=seed, gain=gain,
                                forget_bias=forget_bias, dtype=dtype, xp=xp))


def singular_values(net: Network, inputs, ks, *, initial: Mapping[str, Any] | None = None) -> dict:
    """Singular values of ∂s_T/∂s_k at the chosen k (0 ≤ k < T), as log10, batch mean.

    Returns:
        dict k → (N,) NumPy array of log10 σ_i, descending (−inf for exact zeros).
    """
    traj = net.unroll(inputs, initial)
    T = traj.steps
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 0 or ks[-1] >= T:
        raise ValueError(f"k must be in 0..{T - 1}, got {ks}")
    out: dict = {}
    xp, N = net.xp, net.state_size

    def each(k, P, logscale):
        if k in ks:
            with np.errstate(divide="ignore"):
                out[k] = (_np(logscale)[:, None] + np.log10(_np(xp.linalg.svdvals(P)))).mean(axis=0)

    g = xp.zeros((traj.states[0].shape[0], N), dtype=net.dtype)
    _sweep(net, traj, g, blocks={}, each=each)
    return out


def decay_rate(curve, *, skip: int = 0) -> float:
    """Least-squares slope of a log10 curve against T − k: log10 decay per step (< 0 vanishes).

    ``curve`` is indexed by k = 0…T−1; the last ``skip`` entries (smallest T − k) are left out.
    """
    y = np.asarray(curve, dtype=float)
    T = y.shape[-1]
    if not 0 <= skip < T:
        raise ValueError(f"skip must be in 0..{T - 1}, got {skip}")
    x = T - np.arange(T)
    keep = np.isfinite(y)
    if skip:
        keep[T - skip:] = False
    if keep.sum() < 2:
        return float("-inf") if np.isneginf(y).any() else float("nan")
    return float(np.polyfit(x[keep], y[keep], 1)[0])
