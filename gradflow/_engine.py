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
    """States of an unrolled network: ``states[t]`` is s_t, shape (B, S·n), t = 0…T."""

    inputs: Any                  # (T, B, m)
    states: list = field(repr=False)

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
    def _env(self, s_prev, x) -> dict:
        """Evaluate every named quantity of step t from s_{t−1} (B, N) and x_t (B, m)."""
        n, env = self.hidden, dict(self._env0)
        for i, sym in enumerate(self._k.prev):
            env[sym] = s_prev[:, i * n:(i + 1) * n]
        env[self._k.x] = x
        for sym, fn in self._k.forward:
            env[sym] = fn(env)
        return env

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
        states = [s]
        for t in range(T):
            s = self._state(self._env(s, inputs[t]))
            states.append(s)
        return Trajectory(inputs, states)

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
        return self._assemble(self._env(traj.states[t - 1], traj.inputs[t - 1]), truncated)

    def _assemble(self, env, truncated=False):
        """The dense J_t (B, N, N) from its blocks."""
        xp, n, N = self.xp, self.hidden, self.state_size
        B = env[self._k.prev[0]].shape[0]
        J = xp.zeros((B, N, N), dtype=self.dtype)
        for blk in self._k.carousel if truncated else self._k.blocks:
            rows, cols = slice(blk.a * n, (blk.a + 1) * n), slice(blk.b * n, (blk.b + 1) * n)
            if blk.kind == "identity":
                J[:, rows, cols] = xp.eye(n, dtype=self.dtype)
            elif blk.kind == "diag":
                J[:, rows, cols] = _dense_diag(xp.broadcast_to(blk.fn(env), (B, n)), env)
            else:
                J[:, rows, cols] = blk.fn(env)
        return J

    def _times_jacobian(self, P, env, scale, truncated=False):
        """P · J_t / scale without forming J_t: dense blocks of a column in one matmul,
        diagonal blocks as column scalings, identity blocks as copies.

        P: (B, R, N); scale: (B,) (P's Frobenius norm, so the result stays near unit size).
        """
        xp, n, S = self.xp, self.hidden, len(self.cell.states)
        B = P.shape[0]
        inv = 1.0 / xp.where(scale > 0, scale, xp.ones_like(scale))
        blocks = self._k.carousel if truncated else self._k.blocks
        cols = []
        for b in range(S):
            mine = [blk for blk in blocks if blk.b == b]
            dense = [blk for blk in mine if blk.kind == "dense"]
            out = None
            if dense:
                Jcol = [xp.broadcast_to(blk.fn(env), (B, n, n)) for blk in dense]
                Jcol = (Jcol[0] if len(Jcol) == 1 else xp.concat(Jcol, axis=-2)) * inv[:, None, None]
                rows = [blk.a for blk in dense]
                if rows == list(range(S)):
                    Prow = P
                else:
                    Prow = xp.concat([P[..., a * n:(a + 1) * n] for a in rows], axis=-1)
                out = Prow @ Jcol
            for blk in mine:
                if blk.kind == "dense":
                    continue
                Pa = P[..., blk.a * n:(blk.a + 1) * n]
                if blk.kind == "diag":
                    term = Pa * (xp.broadcast_to(blk.fn(env), (B, n)) * inv[:, None])[:, None, :]
                else:
                    term = Pa * inv[:, None, None]
                out = term if out is None else out + term
            if out is None:
                out = xp.zeros((B, P.shape[1], n), dtype=self.dtype)
            cols.append(out)
        return cols[0] if S == 1 else xp.concat(cols, axis=-1)


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
    return (flat[:, None, :] @ flat[:, :, None])[:, 0, 0]


def _start_basis(xp, B, R, r, dtype):
    """A fixed, generic orthonormal start basis (B, R, r)."""
    q, _ = np.linalg.qr(np.random.default_rng(12345).standard_normal((R, r)))
    return xp.broadcast_to(xp.asarray(q, dtype=dtype)[None], (B, R, r))


def spectral_norm(P, U=None, *, rank: int = 8, tol: float = 1e-9, max_iter: int = 4, first=None,
                  sumsq=None, stats: dict | None = None):
    """σ_max of each matrix in the batch P (B, R, C), certified to relative ``tol``.

    Subspace iteration on the left singular space with ``rank`` vectors, warm-started from the
    basis ``U`` (B, R, r) of a previous call: the left singular vectors of ∂s_T/∂s_k live in the
    space of s_T for every k, so they move little from one k to the next. With W = UᵀP and
    m = ‖P‖_F² − ‖W‖_F² (the mass outside the subspace), the Ritz value σ̃₁ = σ_max(W) satisfies

        σ̃₁ ≤ σ_max(P) ≤ √(σ̃₁² + m),

    so σ̃₁ is accepted once √(σ̃₁² + m) ≤ (1 + tol)·σ̃₁. Batch elements not certified after
    ``max_iter`` iterations (e.g. a flat spectrum) get the exact value from an SVD.

    Arguments:
        U: warm start, a basis (B, R, r) or a single vector (B, R); completed to ``rank``
            columns with a fixed generic basis.
        first: optional precomputed UᵀP (B, r, C) for the first iteration.
        sumsq: optional precomputed ‖P‖_F² (B,).
        stats: optional dict; ``stats["exact"]`` counts the batch elements that needed the SVD.

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
        first = None
    if sumsq is None:
        sumsq = xp.sum(P * P, axis=(-2, -1))
    Ut = xp.matrix_transpose(U)
    for it in range(max_iter):
        W = first if (it == 0 and first is not None) else Ut @ P          # (B, r, C)
        ritz = xp.linalg.svdvals(W)[:, 0]
        outside = xp.maximum(sumsq - xp.sum(W * W, axis=(-2, -1)), xp.zeros_like(sumsq))
        ok = (ritz * ritz + outside <= (1 + tol) ** 2 * ritz * ritz) | (sumsq == 0)
        U, _ = xp.linalg.qr(P @ xp.matrix_transpose(W))                # track the top subspace
        Ut = xp.matrix_transpose(U)
        if bool(xp.all(ok)):
            return ritz, U
    exact = xp.linalg.svdvals(P)[:, 0]
    if stats is not None:
        stats["exact"] = stats.get("exact", 0) + int(xp.sum(xp.astype(~ok, xp.int64)))
    return xp.where(ok, ritz, exact), U


@dataclass
class _Acc:
    """Log10 norms of one family of products, filled backwards over k."""

    T: int
    B: int
    norm2: np.ndarray = None
    fro: np.ndarray = None
    grad: np.ndarray = None
    U: Any = None
    stats: dict = field(default_factory=dict)

    def __post_init__(self):
        self.norm2 = np.full((self.B, self.T), np.nan)
        self.fro = np.full((self.B, self.T), np.nan)
        self.grad = np.full((self.B, self.T), np.nan)

    def record(self, xp, k, P, L, gP, spectral, tol, sumsq=None):
        """P: a block (B, r, c) of the product whose true value is 10^L · P; gP: the matching
        columns of (∂L/∂s_T)·P (B, c), i.e. 10^−L · ∂L/∂(block's columns of s_k)."""
        if sumsq is None:
            sumsq = xp.sum(P * P, axis=(-2, -1))
        B, R, C = P.shape
        r = max(1, min(8, R, C))
        if spectral == "svd":
            sig = xp.linalg.svdvals(P)[:, 0]
        else:
            if self.U is None:
                self.U = _start_basis(xp, B, R, r, P.dtype)
            sig, self.U = spectral_norm(P, self.U, rank=r, tol=tol, sumsq=sumsq, stats=self.stats)
        Ln = _np(L)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.fro[:, k] = Ln + 0.5 * np.log10(_np(sumsq))
            self.norm2[:, k] = Ln + np.log10(_np(sig))
            self.grad[:, k] = Ln + np.log10(_np(xp.sqrt(xp.sum(gP * gP, axis=-1))))

    def curves(self) -> Curves:
        return Curves(self.norm2, self.fro, self.grad)


def _sweep(net: Network, traj: Trajectory, g_T, *, truncated=False, spectral="power", tol=1e-9,
           blocks: Mapping[str, tuple] | None = None, progress=None, each=None):
    """One backward sweep P_k = P_{k+1} J_{k+1}; records log10 norms of the named sub-blocks.

    ``blocks``: name → (rows, cols) of ∂s_T/∂s_k to measure; the gradient figure of a block is
    ‖∂L/∂(its columns of s_k)‖, e.g. ‖∂L/∂c_k‖ for the c→c block.

    The product is carried as 10^L · P with P rescaled by its Frobenius norm at every step
    (folded into J, which is cheaper than rescaling P), so it never under- or overflows.
    ``each(k, P, L)`` is called with the true product ∂s_T/∂s_k = 10^L · P.
    """
    xp, T, N = net.xp, traj.steps, net.state_size
    B = traj.states[0].shape[0]
    P = xp.broadcast_to(xp.eye(N, dtype=net.dtype)[None], (B, N, N))
    L = xp.zeros((B,), dtype=net.dtype)
    f = xp.full((B,), math.sqrt(N), dtype=net.dtype)
    accs = {name: _Acc(T, B) for name in blocks}
    for i, k in enumerate(range(T - 1, -1, -1)):
        env = net._env(traj.states[k], traj.inputs[k])
        P = net._times_jacobian(P, env, f, truncated)
        with np.errstate(divide="ignore"):
            L = L + xp.log10(f)
        sumsq = _sumsq(xp, P)
        f = xp.sqrt(sumsq)
        if each is not None:
            each(k, P, L)
        gP = (g_T[:, None, :] @ P)[:, 0, :] if blocks else None  # 10^−L · ∂L/∂s_k
        for name, (rows, cols) in blocks.items():
            full = rows == slice(0, N) and cols == slice(0, N)
            accs[name].record(xp, k, P[:, rows, cols], L, gP[:, cols], spectral, tol,
                              sumsq if full else None)
        if progress is not None:
            progress(i + 1, T)
    return {name: a.curves() for name, a in accs.items()}


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
                  output: tuple | None = None, spectral: str = "power", tol: float = 1e-9,
                  lyapunov: bool = True, carousel: bool = False, bound: bool = True,
                  progress: Callable[[int, int], None] | None = None) -> Flow:
    """Measure ‖∂s_T/∂s_k‖₂, ‖∂s_T/∂s_k‖_F and ‖∂L/∂s_k‖ for every k in one backward sweep.

    Arguments:
        net: the :class:`Network`.
        inputs: (T, B, m) or (T, m) inputs.
        initial: initial states by name (zeros otherwise).
        output: ``(V, c, targets)`` for a softmax cross-entropy loss; default L = Σ h_T.
        spectral: ``"power"`` (warm-started subspace iteration, certified to relative ``tol``;
            an SVD where it cannot certify) or ``"svd"`` (an SVD at every k, ~10× the cost).
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
