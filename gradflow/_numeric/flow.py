"""The gradient flow of an unrolled network: how ∂s_T/∂s_k decays, for every k at once.

One backward sweep over the Jacobians J_t of :class:`~gradflow._numeric.network.Network`

    P_T = I,   P_k = P_{k+1} · J_{k+1} = ∂s_T/∂s_k      (k = T−1, …, 0)

gives every k at O(T·N³) cost (N = number of states × n) and O(T·n + N²) memory: states are
kept, the Jacobians are rebuilt one at a time. P is carried with its log scale apart, so norms
far below 1e-300 neither underflow nor overflow. Also: the loss gradient, Lyapunov exponents,
singular values, the Pascanu bound beside the measured curve, decay rates.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp
from sympy import Identity

from .._checks import GradflowError, lyapunov_count, parse_int, positive_int
from .._vocabulary import (
    CHAIN_DTYPES,
    FLOW_MODES,
    LOSSES,
    SPECTRAL_METHODS,
    ChainDtype,
    FlowMode,
    Loss,
    SpectralMethod,
)
from .blocks import block_curves, is_block_structured
from .compile import compile_expr
from .diagonal import diagonal_curves, is_diagonal
from .layout import StateLayout, memory_states
from .loss import Reverse, backward_norms, cotangents, read_initial
from .network import Network, Trajectory, check_network, network, random_inputs, to_host
from .qr_growth import exponents, qr_growth
from .spectral import spectral_blocks, spectral_norm, start_basis

__all__ = ["Curves", "Flow", "Network", "Product", "Trajectory", "decay_rate", "gradient_flow", "loss_gradient",
           "lyapunov_exponents", "network", "products", "random_inputs", "singular_values", "spectral_norm"]

# -- results ------------------------------------------------------------------------------------
def json_number(x, what: str):
    """The one rule for non-finite numbers in every output: a finite value as is; −∞ (the log of
    an exact 0) as ``None`` (JSON null); +∞ (an overflow) as the string ``"inf"``; NaN is an
    error naming ``what``."""
    x = float(x)
    if math.isfinite(x):
        return x
    if x == -math.inf:
        return None
    if x == math.inf:
        return "inf"
    raise GradflowError(f"{what} is NaN")


#: the JSON value of a Lyapunov exponent that is not resolved (:mod:`gradflow._numeric.qr_growth`)
NOT_RESOLVED = "not resolved"


def json_exponents(values) -> list:
    """Lyapunov exponents for JSON: as :func:`json_number`, NaN as ``"not resolved"``."""
    if values is None:
        return []
    return [NOT_RESOLVED if math.isnan(float(v)) else json_number(v, f"Lyapunov exponent {i}")
            for i, v in enumerate(values)]



@dataclass
class Curves:
    """log10 norms of one family of products, per sequence: arrays of shape (B, T), index k."""

    log10_norm_2: Any
    log10_norm_fro: Any
    log10_grad_norm: Any

    FIELDS = ("log10_norm_2", "log10_norm_fro", "log10_grad_norm")

    def mean(self) -> Curves:
        """Batch means (NumPy arrays of shape (T,)) of the three curves; −inf where a product is 0."""
        return Curves(*(to_host(getattr(self, k)).mean(axis=0) for k in self.FIELDS))

    def __getitem__(self, field: str) -> Any:
        """``curves["log10_norm_2"]``: a curve by its field name (the JSON key)."""
        if field not in self.FIELDS:
            raise KeyError(field)
        return getattr(self, field)

    def items(self):
        """(field name, curve) pairs, in the order of :attr:`FIELDS`."""
        return ((k, getattr(self, k)) for k in self.FIELDS)


@dataclass
class Flow:
    """Gradient flow of an unrolled network.

    Attributes:
        cell: the cell's name.
        hidden, steps, batch: n, T, B.
        full: curves of ∂s_T/∂s_k (s = h, or (h, c)), k = 0…T−1.
        cell_state: curves of the c→c block ∂c_T/∂c_k (LSTM cells), of the memory block
            ∂(C_T, n_T)/∂(C_k, n_k) = ∏ f_j I (mLSTM), else None; its gradient curve is ‖∂L/∂c_k‖
            (‖∂L/∂(C_k, n_k)‖).
        carousel: curves of the carousel path alone, the 1997-truncated product's c→c block
            ∏ diag(f_j) (LSTM cells, when asked), else None; its gradient curve is the
            truncated (1997) ‖∂L/∂c_k‖.
        lyapunov: the r largest Lyapunov exponents (r,), batch mean, descending, when asked
            (r = min(N, 8) by default, N with ``lyapunov="full"``); NaN where not resolved in
            some sequence (a growth factor at float64's rounding floor:
            :mod:`gradflow._numeric.qr_growth`), −∞ for an exact 0.
        bound: log10 of the Pascanu bound (γ σ_max(W))^{T−k}, (T,), for Elman cells, else None.
        grad_parts: for a cell whose state has several parts (LSTM: h, c), log10 ‖∂L/∂h_k‖,
            ‖∂L/∂c_k‖ … by state name, each (B, T) (JSON ``log10_grad_norm_h`` …), else None.
        loss: the loss followed back (``"sum"``, ``"last"`` or ``"every"``).
        mode: ``"exact"`` or ``"matrix-free"``: how the curves were measured. Matrix-free, the
            Frobenius curves are estimates, ``log10_norm_2`` is NaN (not measured) and
            ``sketch`` holds, per block (``"full"``, ``"cell_state"``, ``"carousel"``), the
            :class:`~gradflow._numeric.matrix_free.SketchCurves`: standard errors and the band
            of the spectral norm.
        dtype: the dtype of the backward products.
        probes: the number of probe vectors (matrix-free), else None.
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
    grad_parts: dict[str, np.ndarray] | None = None
    loss: str = "sum"
    mode: str = "exact"
    dtype: str = "float64"
    sketch: dict | None = None
    probes: int | None = None

    @property
    def k(self) -> np.ndarray:
        return np.arange(self.steps)

    def check_curve(self, field: str) -> None:
        """``GradflowError`` when the curve ``field`` was not measured (‖·‖₂ of a matrix-free flow)."""
        if self.sketch is not None and field == "log10_norm_2":
            raise GradflowError("a matrix-free flow has no spectral-norm curve, only a band "
                                "(flow.sketch): use norm='fro', or mode='exact'")

    def to_json(self) -> dict:
        """The ``gradflow flow --json`` object (see the README for the schema)."""

        full = self.full.mean()
        cs = self.cell_state.mean() if self.cell_state is not None else None
        car = self.carousel.mean() if self.carousel is not None else None
        parts = {name: to_host(v).mean(axis=0) for name, v in (self.grad_parts or {}).items()}
        skip = ("log10_norm_2",) if self.sketch is not None else ()
        sk = {name: _sketch_mean(c) for name, c in self.sketch.items()} if self.sketch is not None else {}

        def entries(curves, name, k, what):
            rec = {key: json_number(v[k], f"{what}{key} at k = {k}") for key, v in curves.items() if key not in skip}
            rec.update({key: bool(v[k]) if v.dtype == bool else json_number(v[k], f"{what}{key} at k = {k}")
                        for key, v in sk.get(name, {}).items()})
            return rec

        curve = []
        for k in range(self.steps):
            rec = {"k": k, **entries(full, "full", k, "")}
            if cs is not None:
                rec["cell_state"] = entries(cs, "cell_state", k, "cell_state ")
            if car is not None:
                rec["carousel"] = entries(car, "carousel", k, "carousel ")
            if self.bound is not None:
                rec["log10_bound"] = json_number(self.bound[k], f"log10_bound at k = {k}")
            for name, v in parts.items():
                key = f"log10_grad_norm_{name}"
                rec[key] = json_number(v[k], f"{key} at k = {k}")
            curve.append(rec)
        extra = {"probes": self.probes} if self.sketch is not None else {}
        return {
            "cell": self.cell, "hidden": self.hidden, "steps": self.steps, "batch": self.batch,
            "mode": self.mode, "dtype": self.dtype, **extra,
            "curve": curve,
            "lyapunov": json_exponents(self.lyapunov),
            "loss": self.loss,
        }


def _sketch_mean(c) -> dict:
    """Batch means of a SketchCurves' extra curves; the standard error is the batch mean's, from
    the probe blocks (the probes are shared by the batch: not se/√B, see ``batch_mean_se``)."""
    from .matrix_free import batch_mean_se

    extra = {} if c.fro_exact is None else {"log10_norm_fro_low": c.log10_norm_fro_low.mean(axis=0),
                                            "log10_norm_fro_exact": np.asarray(c.fro_exact, dtype=bool)}
    return {"log10_norm_fro_se": batch_mean_se(c),
            "log10_norm_2_low": c.log10_norm_2_low.mean(axis=0),
            "log10_norm_2_high": c.log10_norm_2_high.mean(axis=0), **extra}


# -- the backward sweep -------------------------------------------------------------------------
def _sumsq(xp, X):
    """Σ of squares over the last two axes, per batch element (B,)."""
    B = X.shape[0]
    flat = xp.reshape(X, (B, -1))
    return xp.vecdot(flat, flat, axis=-1)

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
            # 16 columns: P_k = P_{k+1} J_{k+1} has its leading left direction within the top 16 of
            # P_{k+1} to about σ_17/σ_1, so one iteration certifies most k (LSTM n = 256, T = 500:
            # 767 iterations instead of 1016 with 8; benchmarks/README.md)
            self.bases[name] = start_basis(xp, B, R, max(1, min(16, R, C)), dtype)
        self.rng = np.random.default_rng(2024)
        self.stats: dict = {}

    def record(self, k, P, L, gP, sumsq_full, diagonal=()):
        """P (B, N, N): the product, true value 10^L · P; gP: 10^−L · ∂L/∂s_k (B, N), or None
        (the gradient curves come from elsewhere: a reverse accumulation).

        ``diagonal``: names of blocks that are diagonal by structure (their norm is max|P_ii|).
        """
        from .certified_norm import diagonal_norm

        xp, N = self.xp, P.shape[-1]
        names = list(self.blocks)
        sumsqs = []
        for name in names:
            rows, cols = self.blocks[name]
            full = rows == slice(0, N) and cols == slice(0, N)
            blk = P[:, rows, cols]
            if full:
                sumsqs.append(sumsq_full)
            elif isinstance(blk, np.ndarray):  # no B × R × C temporary (half the time)
                sumsqs.append(np.einsum("bij,bij->b", blk, blk))
            else:
                sumsqs.append(xp.sum(blk * blk, axis=(-2, -1)))
        exact = {name: diagonal_norm(xp, P, *self.blocks[name]) for name in names if name in diagonal}
        dense = [name for name in names if name not in exact]
        if self.spectral == "svd":
            sigs = [xp.linalg.svdvals(P[:, r, c])[:, 0] for r, c in self.blocks.values()]
        elif not dense:
            sigs = [exact[name] for name in names]
        else:
            bases = []
            orthonormal = True
            for name in dense:  # refresh the least important direction: catches rising ones
                U = self.bases[name]
                R, r = U.shape[1], U.shape[2]
                if 1 < r < R:  # Gram–Schmidt twice against the kept (orthonormal) columns
                    keep = U[..., :-1]
                    v = xp.asarray(self.rng.standard_normal((U.shape[0], R, 1)), dtype=U.dtype)
                    for _ in range(2):  # twice is enough: v ⊥ keep to O(ε)
                        v = v - keep @ (xp.matrix_transpose(keep) @ v)
                    v = v / xp.sqrt(xp.sum(v * v, axis=(-2, -1), keepdims=True))
                    # checked, so the certified iteration can skip its QR of the start basis
                    eps = float(xp.finfo(U.dtype).eps)
                    orthonormal &= bool(xp.all(xp.abs(xp.matrix_transpose(keep) @ v) <= 4 * eps))
                    U = xp.concat([keep, v], axis=-1)
                bases.append(U)
            dsigs, bases = spectral_blocks(P, [self.blocks[nm] for nm in dense], bases,
                                            [sumsqs[names.index(nm)] for nm in dense], tol=self.tol,
                                            stats=self.stats, orthonormal=orthonormal)
            self.bases.update(zip(dense, bases, strict=True))
            exact.update(zip(dense, dsigs, strict=True))
            sigs = [exact[name] for name in names]
        Ln = to_host(L)
        with np.errstate(divide="ignore", invalid="ignore"):
            for name, sq, sig in zip(names, sumsqs, sigs, strict=True):
                cols = self.blocks[name][1]
                c = self.curves_np[name]
                c["fro"][:, k] = Ln + 0.5 * np.log10(to_host(sq))
                c["norm2"][:, k] = Ln + np.log10(to_host(sig))
                if gP is not None:
                    g = gP[:, cols]
                    c["grad"][:, k] = Ln + np.log10(to_host(xp.sqrt(xp.sum(g * g, axis=-1))))

    def curves(self) -> dict:
        return {name: Curves(c["norm2"], c["fro"], c["grad"]) for name, c in self.curves_np.items()}


def _pattern_product(A, B):
    """Block structure of a product from the factors' (0 zero, 1 diagonal, 2 dense)."""
    S = A.shape[0]
    out = np.zeros_like(A)
    for i in range(S):
        for j in range(S):
            terms = [max(A[i, l], B[l, j]) for l in range(S) if A[i, l] and B[l, j]]
            out[i, j] = max(terms) if terms else 0
    return out


def _is_diagonal(pattern, rows, cols, layout: StateLayout) -> bool:
    """Whether the block (rows, cols) of a product with block structure ``pattern`` is diagonal."""
    idx = layout.covered(rows)
    if rows != cols or idx is None:
        return False
    return all(pattern[a, b] == 0 if a != b else pattern[a, b] <= 1 for a in idx for b in idx)


@dataclass(frozen=True)
class Product:
    """One product of the backward sweep: ∂s_T/∂s_k = 10^log10_scale · P.

    Attributes:
        k: the earlier step (T−1, …, 0 in the order they come).
        P: (B, N, N) scaled product, ‖P‖_F kept within [tiny^¼, max^¼] of the dtype.
        log10_scale: (B,) log10 of the scale factor (−inf where the product is exactly 0).
        pattern: (S, S) block structure of the product over the S states (0 zero, 1 diagonal,
            2 dense), derived from the cell's Jacobian blocks.
        sumsq: (B,) ‖P‖_F².
        jacobian: J_{k+1} (B, N, N), unscaled: a buffer, valid until the next product comes.
        jacobian_max: (B,) max |(J_{k+1})_ij|, the scale the chain checked J_{k+1} against.
    """

    k: int
    P: Any
    log10_scale: Any
    pattern: np.ndarray
    sumsq: Any
    jacobian: Any = None
    jacobian_max: Any = None


def _column_kinds(blocks, S: int) -> list[bool]:
    """For each column block b of J: True when every non-zero block in it is diagonal (or none
    is), so that P's new columns are Σ_a P[:, a] ⊙ v_ab, no matmul."""
    return [all(blk.kind != "dense" for blk in blocks if blk.b == b) for b in range(S)]


def _times_jacobian(xp, P, J, blocks, diagonal_columns: list[bool], layout: StateLayout, out=None,
                    scratch=None):
    """P · J for a J whose column blocks ``diagonal_columns`` hold diagonal blocks only: the dense
    columns by matmul, the diagonal ones by scaling P's column blocks (the LSTM's c column:
    diag(o ⊙ tanh′(c) ⊙ f) and diag(f)): half the FLOPs of the dense product for an LSTM."""
    B, N = P.shape[0], P.shape[-1]
    if out is None:
        out = xp.empty((B, N, J.shape[-1]), dtype=J.dtype)
    if isinstance(P, np.ndarray) and isinstance(J, np.ndarray):
        return _times_jacobian_np(P, J, blocks, diagonal_columns, layout, out, scratch)
    for b, diagonal in enumerate(diagonal_columns):
        cols = layout.slice(b)
        if not diagonal:
            out[:, :, cols] = P @ J[:, :, cols]
            continue
        acc = None
        for blk in blocks:
            if blk.b == b:
                rows = layout.slice(blk.a)
                term = P[:, :, rows] * xp.linalg.diagonal(J[:, rows, cols])[:, None, :]
                acc = term if acc is None else acc + term
        out[:, :, cols] = 0.0 if acc is None else acc
    return out


def _times_jacobian_np(P, J, blocks, diagonal_columns: list[bool], layout: StateLayout, out, scratch=None):
    """:func:`_times_jacobian` for NumPy arrays, written into ``out`` with ``out=``: one GEMM per
    dense column block (BLAS reads the strided column block of J in place), the diagonal column
    blocks as column scalings into ``out`` (one n-column scratch block)."""
    for b, diagonal in enumerate(diagonal_columns):
        cols = layout.slice(b)
        if not diagonal:
            np.matmul(P, J[:, :, cols], out=out[:, :, cols])
            continue
        if _scaled_sum(P, J, blocks, b, layout, out[:, :, cols]):
            continue
        first = True
        for blk in blocks:
            if blk.b != b:
                continue
            rows = layout.slice(blk.a)
            # a contiguous copy of the diagonal: broadcast over N rows, a strided view of J costs
            # a cache line per entry per row
            d = np.ascontiguousarray(np.diagonal(J[:, rows, cols], axis1=-2, axis2=-1))[:, None, :]
            if first:
                np.multiply(P[:, :, rows], d, out=out[:, :, cols])
                first = False
            else:
                if scratch is None or scratch.shape != out[:, :, cols].shape:  # a state of another size
                    scratch = np.empty(out[:, :, cols].shape, dtype=out.dtype)
                np.multiply(P[:, :, rows], d, out=scratch)
                np.add(out[:, :, cols], scratch, out=out[:, :, cols])
        if first:
            out[:, :, cols] = 0.0
    return out


def _scaled_sum(P, J, blocks, b: int, layout: StateLayout, target) -> bool:
    """Σ_a P[:, a] · diag(J[a, b]) over the diagonal blocks (a, b), in one pass into ``target``
    (``einsum`` over P's consecutive row blocks viewed as (B, N, span, n)): half the memory
    traffic of a scaling, a scaling and an addition. False (nothing written) unless the blocks
    a have the size of b (states of one size n), as for the LSTM's c column."""
    rows = sorted({blk.a for blk in blocks if blk.b == b})
    n = layout.sizes[b]
    if len(rows) < 2 or any(layout.sizes[a] != n for a in range(rows[0], rows[-1] + 1)):
        return False
    lo, span = rows[0], rows[-1] - rows[0] + 1
    B, N = P.shape[0], P.shape[1]
    D = np.zeros((B, span, n), dtype=J.dtype)
    cols = layout.slice(b)
    for blk in blocks:
        if blk.b == b:
            D[:, blk.a - lo] += np.diagonal(J[:, layout.slice(blk.a), cols], axis1=-2, axis2=-1)
    start = layout.offsets[lo]
    Pv = P[:, :, start:start + span * n].reshape(B, N, span, n)  # a view: P's rows are contiguous
    np.einsum("bisj,bsj->bij", Pv, D, out=target)
    return True


def _jacobian_filler(net: Network, traj: Trajectory, truncated: bool):
    """``fill(J, t)``: J_t written into the buffer J; for NumPy by the derived terms with ``out=``
    and their vectors computed for all steps at once
    (:meth:`~gradflow._numeric.matrix_free.JacobianOperator.fill`), by the compiled blocks otherwise."""
    if isinstance(net, Network) and net.xp.__name__.split(".")[-1] == "numpy":  # not a stack's chain
        from .matrix_free import STEP, JacobianOperator

        try:
            op = JacobianOperator(net, truncated)
        except GradflowError:  # no truncated form (a cell without c): the compiled blocks
            return lambda J, t: net.fill_jacobian(J, net.step_env(traj, t), truncated)
        op.precompute(traj)

        def fill(J, t):
            env = net.step_env(traj, t)
            env[STEP] = t
            return op.fill(J, env)
        return fill
    return lambda J, t: net.fill_jacobian(J, net.step_env(traj, t), truncated)


def products(net: Network, traj: Trajectory, *, truncated: bool = False,
             dense: bool = False, reuse: bool = False) -> Iterator[Product]:
    """The products ∂s_T/∂s_k = J_T J_{T−1} ⋯ J_{k+1} for k = T−1, …, 0, one backward pass.

    J_t is written into one (B, N, N) buffer, block by block from the derived expressions, and
    multiplied in (see ``dense``). The product is carried as 10^L · P; whenever ‖P‖_F leaves
    [tiny^¼, max^¼] of the dtype (1e±77 in float64), P is rescaled by it (folded into the next
    J), so it never under- or overflows; a J_t with entries beyond that range is scaled apart too.

    Arguments:
        net, traj: the network and its unrolled trajectory (:meth:`Network.unroll`).
        truncated: use the 1997-truncated Jacobians (the carousel path of an LSTM).
        dense: always multiply the whole N × N J_t (the reference path); by default column
            blocks of J_t made of diagonal blocks only (the LSTM's c column) scale P's columns
            instead of entering the matmul.
        reuse: write the products into two alternating preallocated buffers (NumPy): each ``P``
            is then valid only until the next product comes (for callers that keep none).

    Yields:
        :class:`Product` for each k, latest first. Each ``P`` is a new array (unless ``reuse``).
    """
    from .size_guard import check_square_buffers

    xp, T, N = net.xp, traj.steps, net.state_size
    B = traj.states[0].shape[0]
    cell = getattr(net, "cell", None)  # a stack's chain has none
    check_square_buffers(B, N, np.dtype(net.dtype).itemsize,
                         "the products ∂s_T/∂s_k" + (f" of {cell.name}" if cell is not None else ""))
    P = xp.broadcast_to(xp.eye(N, dtype=net.dtype)[None], (B, N, N))
    L = xp.zeros((B,), dtype=net.dtype)
    f = xp.full((B,), math.sqrt(N), dtype=net.dtype)  # ‖P‖_F
    fi = xp.finfo(net.dtype)
    lo, hi = float(fi.smallest_normal) ** 0.25, float(fi.max) ** 0.25
    J = xp.zeros((B, N, N), dtype=net.dtype)  # one buffer: the zero blocks never change
    # block structure of the product (0 zero, 1 diagonal, 2 dense), from the derived blocks
    S = len(net.layout.sizes)
    pattern = np.eye(S, dtype=int)
    jpat = np.zeros((S, S), dtype=int)
    jblocks = net.kernels.carousel if truncated else net.kernels.blocks
    for blk in jblocks:
        jpat[blk.a, blk.b] = 2 if blk.kind == "dense" else 1
    diagonal_columns = _column_kinds(jblocks, S)
    structured = not dense and any(diagonal_columns)

    fill = _jacobian_filler(net, traj, truncated)

    bufs = [np.empty((B, N, N), dtype=net.dtype) for _ in range(2)] if reuse and isinstance(J, np.ndarray) else None
    scratch = np.empty((B, N, net.hidden), dtype=net.dtype) if isinstance(J, np.ndarray) else None

    def times(P, Jm):
        out = None
        if bufs is not None:  # the buffer the previous product is not in
            out = bufs[1] if P is bufs[0] else bufs[0]
        if not structured:
            return P @ Jm if out is None else np.matmul(P, Jm, out=out)
        return _times_jacobian(xp, P, Jm, jblocks, diagonal_columns, net.layout, out, scratch)
    for k in range(T - 1, -1, -1):
        fill(J, k + 1)
        Jm = J
        jmax = xp.max(xp.abs(xp.reshape(J, (B, -1))), axis=-1)
        if not bool(xp.all(jmax < hi)):  # huge entries (σ_max(W) near overflow): scale J apart
            if not bool(xp.all(xp.isfinite(jmax))):
                raise GradflowError(f"the Jacobian J_{k + 1} contains NaN or inf")
            Jm = J / jmax[:, None, None]
            L = L + xp.log10(jmax)
        rescale = not bool(xp.all((f > lo) & (f < hi)))
        if rescale:
            P = times(P / xp.where(f > 0, f, xp.ones_like(f))[:, None, None], Jm)
            with np.errstate(divide="ignore"):
                L = L + xp.where(f > 0, xp.log10(xp.where(f > 0, f, xp.ones_like(f))),
                                 -xp.inf * xp.ones_like(f))
        else:
            P = times(P, Jm)
        pattern = _pattern_product(pattern, jpat)
        sumsq = _sumsq(xp, P)
        f = xp.sqrt(sumsq)
        yield Product(k, P, L, pattern, sumsq, J, jmax)


def sweep(net: Network, traj: Trajectory, g_T, *, truncated=False, spectral: SpectralMethod = "power", tol=1e-10,
           blocks: Mapping[str, tuple] | None = None, progress=None, each=None, reverse=None):
    """One backward sweep over :func:`products`; records log10 norms of the named sub-blocks.

    ``blocks``: name → (rows, cols) of ∂s_T/∂s_k to measure; the gradient figure of a block is
    ‖∂L/∂(its columns of s_k)‖, e.g. ‖∂L/∂c_k‖ for the c→c block. ``each(k, P, L)`` is called
    with the true product ∂s_T/∂s_k = 10^L · P. ``reverse`` (a :class:`~gradflow._numeric.loss.Reverse`)
    is fed every J_{k+1}: the loss gradient of any loss, from the same Jacobians.
    """
    tracker = _Tracker(net.xp, blocks or {}, traj.steps, traj.states[0].shape[0], net.dtype, spectral, tol)
    g = g_T[:, None, :] if blocks else None
    for i, pr in enumerate(products(net, traj, truncated=truncated, reuse=each is None)):
        if each is not None:
            each(pr.k, pr.P, pr.log10_scale)
        if reverse is not None:
            reverse.step(pr.k, pr.jacobian, scale=pr.jacobian_max)
        if blocks:
            # 10^−L · ∂L/∂s_k of a last-step loss; with ``reverse`` its curves replace these
            gP = None if reverse is not None else (g @ pr.P)[:, 0, :]
            diagonal = [name for name, (r, c) in blocks.items() if _is_diagonal(pr.pattern, r, c, net.layout)]
            tracker.record(pr.k, pr.P, pr.log10_scale, gP, pr.sumsq, diagonal)
        if progress is not None:
            progress(i + 1, traj.steps)
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
            raise GradflowError(f"output weight V must be (K, {n}) and bias (K,), "
                                f"got {tuple(V.shape)}, {tuple(c.shape)}")
        if not (bool(xp.all(xp.isfinite(V))) and bool(xp.all(xp.isfinite(c)))):
            raise GradflowError("output weight V or bias c contains NaN or inf")
        y = np.asarray(to_host(y)).astype(int).reshape(-1)
        if y.shape != (B,) or (y < 0).any() or (y >= V.shape[0]).any():
            raise GradflowError(f"targets must be {B} class indices in 0..{V.shape[0] - 1}")
        logits = h_T @ xp.matrix_transpose(V) + c
        logits = logits - xp.max(logits, axis=-1, keepdims=True)
        p = xp.exp(logits)
        p = p / xp.sum(p, axis=-1, keepdims=True)
        onehot = xp.asarray(np.eye(V.shape[0])[y], dtype=net.dtype)
        gh = (p - onehot) @ V
    if N == n:
        return gh
    return xp.concat([gh, xp.zeros((B, N - n), dtype=net.dtype)], axis=-1)


def lyapunov_exponents(net: Network, traj: Trajectory, count: int | None = None, *, start=None):
    """The leading Lyapunov exponents of the unrolled map, by repeated QR (natural log per step).

        J_t Q_{t−1} = Q_t R_t  (Q_t: N × r orthonormal),   λ_i = (1/T) Σ_t log|(R_t)_ii|

    With r < N only an N × r block is carried (O(N²r) per step): its column span converges to
    the r most expanding directions and the λ_i to the r largest exponents. The start Q_0 is
    the identity for the full spectrum, else ``start``, by default the orthonormal factor of a
    standard normal N × r matrix drawn with ``numpy.random.default_rng(0)`` (a generic
    subspace: a block of the identity may miss the leading directions, e.g. of a triangular W).

    Arguments:
        net, traj: the network and its unrolled trajectory (:meth:`Network.unroll`).
        count: r, how many exponents (the r largest); ``None`` for all N.
        start: an N × r matrix with orthonormal columns, the start Q_0 (r from its columns).

    Returns:
        (B, r) array, each row sorted in descending order; NaN ("not resolved") for an exponent
        whose growth factor fell to the rounding floor at some step
        (:mod:`gradflow._numeric.qr_growth`), −∞ for an exact 0.
    """
    xp, N, T = net.xp, net.state_size, traj.steps
    B = traj.states[0].shape[0]
    if start is not None:
        Q0 = np.asarray(to_host(start), dtype=np.float64)
        if Q0.ndim != 2 or Q0.shape[0] != N or not 1 <= Q0.shape[1] <= N:
            raise GradflowError(f"start must be an {N} × r matrix (1 ≤ r ≤ {N}), got shape {Q0.shape}")
        if count is not None and positive_int(count, "count") != Q0.shape[1]:
            raise GradflowError(f"count {count} does not match the {Q0.shape[1]} columns of start")
        if not np.allclose(Q0.T @ Q0, np.eye(Q0.shape[1]), rtol=0, atol=1e-10):
            raise GradflowError("start must have orthonormal columns")
    else:
        r = N if count is None else min(positive_int(count, "count"), N)
        Q0 = np.eye(N) if r == N else np.linalg.qr(np.random.default_rng(0).standard_normal((N, r)))[0]
    Q = xp.broadcast_to(xp.asarray(Q0, dtype=net.dtype)[None], (B,) + Q0.shape)
    J = xp.zeros((B, N, N), dtype=net.dtype)  # one buffer: the zero blocks never change
    acc = np.zeros((B, Q0.shape[1]))
    unresolved = np.zeros((B, Q0.shape[1]), dtype=bool)
    for t in range(1, T + 1):
        Q, logd, floor = qr_growth(xp, net.fill_jacobian(J, net.step_env(traj, t)) @ Q)
        acc += logd
        unresolved |= floor
    return exponents(acc, unresolved, T)


def _lyapunov(net: Network, traj: Trajectory, r: int):
    """:func:`lyapunov_exponents` (same start, same QR steps) with J_t Q taken through the derived
    blocks (:func:`~gradflow._numeric.matrix_free.matrix_free_lyapunov`): J_t is never assembled."""
    from .matrix_free import matrix_free_lyapunov

    if not net.layout.uniform:  # states of other sizes (mLSTM): J_t assembled, as before
        return lyapunov_exponents(net, traj, r)
    return matrix_free_lyapunov(net, traj, r, precompute=True)


# BLAS threads: below this N²·B a sweep runs on one thread (measured in benchmarks/README.md: on a
# loaded 2-core machine more threads made small runs 10–30× slower; above it they pay)
ONE_THREAD_BELOW = 2**17


def blas_threads(threads: int | None, work: int) -> int | None:
    """BLAS threads for a sweep of ``work`` = N²·B: ``threads`` if given, else the environment
    variable ``GRADFLOW_THREADS`` if set, else 1 below :data:`ONE_THREAD_BELOW` and ``None`` (the
    BLAS default, untouched) above."""
    if threads is not None:
        return positive_int(threads, "threads")
    env = os.environ.get("GRADFLOW_THREADS", "").strip()
    if env:
        return parse_int(env, "GRADFLOW_THREADS")
    return 1 if work < ONE_THREAD_BELOW else None


@contextmanager
def thread_limit(threads: int | None):
    """BLAS limited to ``threads`` threads inside the block (``None``: nothing changed)."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits  # only here: `import gradflow` stays light

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def _pascanu_log10(net: Network, T: int):
    """log10 (rate)^{T−k} for k = 0…T−1, rate from :func:`gradflow.pascanu_bound`."""
    from .._symbolic.many_steps import pascanu_bound, sigma_max
    from .._symbolic.nodes import Diag

    try:
        b = pascanu_bound(net.cell)
    except ValueError:
        return None
    logs = []  # log10 of each term sup·σ_max(M), computed without overflow
    constants = net.cell.recorded.constants
    for sup, M in b.terms:
        ls = 0.0  # log10 σ_max(M); 0 for the identity
        W = None
        if isinstance(M, Identity) or sigma_max(M).is_Number:  # derived exactly (exp(A − Aᵀ): 1)
            ls = 0.0 if isinstance(M, Identity) else math.log10(float(sigma_max(M)))
        elif hasattr(M, "name") and M.name in net.weights.arrays:
            W = to_host(net.weights.arrays[M.name]).astype(np.float64)
        elif isinstance(M, Diag):  # σ_max(diag(v)) = max_i |v_i|: no n × n matrix, no SVD (IndRNN)
            try:
                v = np.abs(np.asarray(to_host(compile_expr(M.vector)(net.env0())), dtype=np.float64))
            except KeyError:  # it depends on the step (no single bound)
                return None
            top_v = float(np.max(v)) if v.size else 0.0
            ls = -math.inf if top_v == 0 else math.log10(top_v)
        elif not isinstance(M, Identity):  # a structured matrix (W − Wᵀ − γI): evaluate it
            try:
                W = np.asarray(to_host(compile_expr(M)(net.env0())), dtype=np.float64)
            except KeyError:  # it depends on the step (no single bound)
                return None
        if W is not None:
            scale = float(np.max(np.abs(W))) if W.size else 0.0
            ls = -math.inf if scale == 0 else \
                math.log10(scale) + math.log10(float(np.linalg.norm(W / scale, 2)))
        with np.errstate(divide="ignore"):
            logs.append(float(np.log10(float(sp.sympify(sup).subs(constants)))) + ls)
    top = max(logs)
    log_rate = top if not math.isfinite(top) else top + math.log10(sum(10 ** (v - top) for v in logs))
    with np.errstate(invalid="ignore"):
        return (T - np.arange(T)) * log_rate


def gradient_flow(net: Network, inputs, *, initial: Any = None,
                  output: tuple | None = None, loss: Loss | None = None, head: Any = None,
                  targets: Any = None, batch_first: bool | None = None,
                  spectral: SpectralMethod = "power", tol: float = 1e-10,
                  lyapunov: bool | int | str = True, carousel: bool = False, bound: bool = True,
                  progress: Callable[[int, int], None] | None = None, structure: str = "auto",
                  threads: int | None = None, mode: FlowMode = "auto", dtype: ChainDtype | None = None,
                  probes: int = 32, probe_blocks: int = 8, trust_torchscript: bool = False) -> Flow:
    """Measure ‖∂s_T/∂s_k‖₂, ‖∂s_T/∂s_k‖_F and ‖∂L/∂s_k‖ for every k in one backward sweep.

    ∂L/∂s_k = Σ_{t≥k} (∂L/∂s_t)(∂s_t/∂s_k) is accumulated in reverse, one vector–Jacobian product
    per step (:func:`gradflow._numeric.loss.backward_norms`); for a last-step loss it is
    (∂L/∂s_T)(∂s_T/∂s_k).

    Arguments:
        net: the :class:`Network`.
        inputs: (T, B, m) or (T, m) inputs; (B, T, m) with ``batch_first``.
        initial: initial states: PyTorch's h_0 ((1, B, n), (B, n) or (n,)), an (h_0, c_0) pair, or
            a mapping by state name (``{"h": …, "c": …}`` or ``{"h0": …, "c0": …}``); zeros otherwise.
        output: ``(V, c, targets)``: the same as ``loss="last", head=(V, c), targets=targets``.
        loss: ``"sum"`` (L = Σ_i (h_T)_i, the default without targets), ``"last"`` (softmax
            cross-entropy of the head on h_T, targets (B,)) or ``"every"`` (summed over every
            step, targets (T, B), or (B, T) with ``batch_first``); the batch is summed.
        head: the output layer for a cross-entropy loss: an ``nn.Linear``, a ``(V, c)`` pair of
            any array type, or a state_dict/model holding it (``head``, ``fc``, ``linear``,
            ``classifier``, ``out`` …); detached, never changed.
        targets: integer classes for the cross-entropy (see ``loss``).
        batch_first: inputs (and ``"every"`` targets) batch first; default: the module's
            ``batch_first`` when the weights came from a module (said in a note), else False.
        spectral: ``"power"`` (warm-started subspace iteration to relative ``tol``, see
            :func:`spectral_norm`) or ``"svd"`` (an SVD at every k, ~10× the cost of the chain).
        lyapunov: also the Lyapunov exponents (a forward QR pass): ``True`` the r = min(N, 8)
            largest (an N × r QR per step, O(N²r)), an integer r the r largest, ``"full"`` all N
            (an N × N QR per step, O(N³): as costly as the sweep), ``False`` none.
        carousel: for LSTM cells, also sweep the 1997-truncated Jacobian: its c→c block is the
            carousel path ∏ diag(f_j).
        bound: the Pascanu bound beside the curve (Elman cells).
        progress: ``callback(done, total)``.
        structure: ``"auto"`` uses the O(T·n) diagonal path (:mod:`gradflow._numeric.diagonal`,
            exact norms, no n × n matrix) when the derived state Jacobian is diagonal, the
            O(T·n·S²) per-unit block path (:mod:`gradflow._numeric.blocks`: LRU) when its blocks are
            all diagonal, the dense sweep otherwise; ``"dense"`` always sweeps dense Jacobians.
        threads: BLAS threads for the run; default: the environment variable
            ``GRADFLOW_THREADS`` if set, else one thread for small runs (N²·B below
            :data:`ONE_THREAD_BELOW`, where more threads only wait on each other) and the BLAS
            default for larger ones.
        mode: ``"exact"`` the backward sweep of N × N products (O(T·N³)); ``"matrix-free"``
            row vectors carried backward through the derived blocks (O(T·R·n²), R = 1 + r per
            measured block, :mod:`gradflow._numeric.matrix_free`): ‖∂L/∂s_k‖ exact, ‖·‖_F
            estimated from ``probes`` probe vectors with a standard error (from
            ``probe_blocks`` independent blocks), ‖·‖₂ as a band, Lyapunov exponents exact;
            ``"auto"`` (default) exact up to N = ``MATRIX_FREE_ABOVE`` (1024) when it fits in
            memory, matrix-free above. :attr:`Flow.mode` says which ran.
        dtype: the dtype of the backward products, ``"float64"`` or ``"float32"`` (default: the
            network's). float32 doubles the GEMM rate; the products are rescaled every step
            (matrix-free) or whenever ‖P‖_F leaves [1e−9.5, 1e9.5] (exact), their log10 scale
            carried apart, so nothing underflows at any T. Accuracy against float64, measured
            (``benchmarks/bench_matrix_free.py --float32-check``, LSTM n = 64, T = 10⁴, norms down
            to 1e−860): log10 norms within 1e−5 (matrix-free) and 2.4e−4 (exact; median 2e−5).

        trust_torchscript: read a ``head`` file that is a TorchScript archive (refused otherwise:
            ``torch.jit.load`` can run the code it holds).

    Returns:
        :class:`Flow`.

    Raises:
        GradflowError: before anything is allocated, when the run's estimated memory (the CLI's
            estimate, :mod:`gradflow._numeric.size_guard`) exceeds 80% of the memory available; the
            message names the bytes and what fits (``mode="matrix-free"``, n, T, batch;
            ``GRADFLOW_MEMORY_LIMIT`` overrides the memory seen).
    """
    from .loading import trusting_torchscript
    from .size_guard import check_api_flow_size, choose_mode
    from .structure import keeps_no_trajectory, structured_path

    check_network(net, "gradient_flow")
    r = lyapunov_count(lyapunov, net.state_size)
    loss_name, head, targets = _loss_spec(output, loss, head, targets)
    inputs, targets = _layout(net, inputs, targets, loss_name, batch_first)
    shape = getattr(inputs, "shape", None) or np.shape(inputs)
    if len(shape) not in (2, 3):  # None, a string, a number: no steps to read (checked in full later)
        raise GradflowError(f"inputs must be an array of shape (T, m) or (T, batch, m), got "
                            f"{type(inputs).__name__} of shape {tuple(shape)}")
    B = int(shape[1]) if len(shape) == 3 else 1
    if mode not in FLOW_MODES:
        raise GradflowError(f"mode must be one of {', '.join(FLOW_MODES)}; got {mode!r}")
    if dtype is not None and dtype not in CHAIN_DTYPES:
        raise GradflowError(f"dtype must be one of {', '.join(CHAIN_DTYPES)}; got {dtype!r}")
    chain = np.dtype(dtype) if dtype is not None else np.dtype(net.dtype)
    T = int(shape[0])
    structured = structure == "auto" and structured_path(net.cell) is not None
    # the O(T·n) diagonal or O(T·n·S²) per-unit block path: exact at any size
    mode = choose_mode(net.cell, net.hidden, net.input, T, B, chain.itemsize, mode,  # type: ignore[assignment]
                       structured=structured, device=net.xp)
    # the diagonal path without a per-step loss keeps no trajectory (two forward passes)
    streaming = structured and keeps_no_trajectory(net.cell, loss_name)
    # before the trajectory and the sweep's buffers
    check_api_flow_size(net.cell, net.hidden, net.input, T, B, chain.itemsize, mode=mode, probes=probes,
                        structured=structured, streaming=streaming, device=net.xp)
    with thread_limit(blas_threads(threads, net.state_size ** 2 * B)), trusting_torchscript(trust_torchscript):
        if initial is not None:
            initial = read_initial(initial, net.cell.states, B, net.hidden,
                                   sizes=dict(zip(net.cell.states, net.layout.sizes, strict=True)))
        spec = (loss_name, head, targets)
        if mode == "matrix-free":
            return _matrix_free_flow(net, inputs, initial, spec, r, carousel, bound, progress,
                                     chain, probes, probe_blocks)
        if chain != np.dtype(net.dtype):  # the exact sweep in another dtype: a cast copy of the network
            return _cast_flow(net, inputs, initial, spec, spectral, tol, r, carousel, bound, progress,
                              structure, chain)
        return _gradient_flow(net, inputs, initial, spec, spectral, tol, r, carousel, bound, progress,
                              structure)


def _loss_spec(output, loss, head, targets) -> tuple[str, Any, Any]:
    """(loss, head, targets) from the arguments of :func:`gradient_flow` (``output`` is the older
    spelling of a last-step cross-entropy)."""
    if output is not None:
        if loss not in (None, "last") or head is not None or targets is not None:
            raise GradflowError("give either output=(V, c, targets) or loss=, head=, targets=, not both")
        if not isinstance(output, (tuple, list)) or len(output) != 3:
            raise GradflowError("output must be a tuple (V, c, targets)")
        return "last", (output[0], output[1]), output[2]
    if loss is None:
        if targets is None:
            loss = "sum"
        else:
            raise GradflowError("targets given without a loss: pass loss='last' (targets (B,)) or "
                                "loss='every' (targets (T, B))")
    if loss not in LOSSES:
        raise GradflowError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    return loss, head, targets


def _layout(net: Network, inputs, targets, loss: str, batch_first: bool | None):
    """Inputs (T, B, m) (and ``"every"`` targets (T, B)): :func:`gradflow._numeric.input_layout.read_layout`."""
    from .input_layout import read_layout

    return read_layout(inputs, targets, loss, batch_first, getattr(net, "batch_first", False), net.cell.name)


def _cotangents(net: Network, traj: Trajectory, spec):
    """∂L/∂h_t (T, B, n) of the loss ``spec`` = (loss, head, targets) along a trajectory."""
    h = net.layout.slice("h")
    return cotangents(net.xp.stack([s[:, h] for s in traj.states[1:]]), *spec)


def _cast_flow(net, inputs, initial, spec, spectral, tol, r, carousel, bound, progress, structure, chain) -> Flow:
    """The exact sweep on float64 states with the products in ``chain``: the trajectory is
    unrolled by ``net`` and cast, then swept by a cast copy of the network."""
    xp = net.xp
    traj = net.unroll(inputs, initial)
    low = Network(net.weights.to(xp, chain))
    cast = Trajectory(xp.astype(traj.inputs, chain), [xp.astype(s, chain) for s in traj.states],
                      [{k: xp.astype(v, chain) if hasattr(v, "dtype") else v for k, v in d.items()}
                       for d in traj.named])
    flow = _gradient_flow(low, cast.inputs, initial, spec, spectral, tol, r, carousel, bound, progress,
                          structure, traj=cast)
    flow.dtype = str(chain)
    return flow


def _matrix_free_flow(net, inputs, initial, spec, r, carousel, bound, progress, chain, probes,
                      probe_blocks) -> Flow:
    from .matrix_free import matrix_free_lyapunov, sketch_sweep

    traj = net.unroll(inputs, initial)
    T, B = traj.steps, traj.states[0].shape[0]
    n, N = net.hidden, net.state_size
    cot = _cotangents(net, traj, spec)
    g = _padded(net, cot[-1])
    blocks = {"full": (slice(0, N), slice(0, N))}
    has_c = "c" in net.cell.states
    if has_c:
        ci = net.cell.states.index("c")
        blocks["cell_state"] = (slice(ci * n, (ci + 1) * n), slice(ci * n, (ci + 1) * n))
    several = len(net.cell.states) > 1
    if several:  # ‖∂L/∂(state)_k‖ from the gradient row's columns: the rows (and probes) of "full"
        blocks.update({f"part {st}": (slice(0, N), net.layout.slice(st)) for st in net.cell.states})
    kw = {"probes": probes, "probe_blocks": probe_blocks, "dtype": chain}
    res = sketch_sweep(net, traj, g, blocks, progress=progress, **kw)
    sketch = dict(res)
    parts = {st: sketch.pop(f"part {st}").log10_grad_norm for st in net.cell.states} if several else None
    if carousel and has_c:
        sketch["carousel"] = sketch_sweep(net, traj, g, {"cell_state": blocks["cell_state"]}, truncated=True,
                                          **kw)["cell_state"]

    if spec[0] == "every":  # per-step losses: ∂L/∂s_k by reverse accumulation (one VJP chain)
        every = backward_norms(net, traj, cot)
        sketch["full"].log10_grad_norm = every["full"]
        if has_c:
            sketch["cell_state"].log10_grad_norm = every["c"]
        if parts is not None:
            parts = {st: every[st] for st in net.cell.states}

    def curves(c):
        return Curves(np.full_like(c.log10_norm_fro, np.nan), c.log10_norm_fro, c.log10_grad_norm)

    lyap = matrix_free_lyapunov(net, traj, r, dtype=chain).mean(axis=0) if r else None
    return Flow(net.cell.name, n, T, B, curves(sketch["full"]),
                curves(sketch["cell_state"]) if has_c else None,
                curves(sketch["carousel"]) if "carousel" in sketch else None, lyap,
                _pascanu_log10(net, T) if bound else None, parts, spec[0], mode="matrix-free", dtype=str(chain),
                sketch=sketch, probes=probes)


def _joint_log10(parts: Mapping[str, np.ndarray], names) -> np.ndarray:
    """log10 ‖(g_a; g_b; …)‖ from the log10 norms of the parts: ½ log10 Σ 10^(2·part) (one part: itself)."""
    if len(names) == 1:
        return parts[names[0]]
    with np.errstate(divide="ignore", invalid="ignore"):
        ln = np.logaddexp.reduce([2 * math.log(10) * parts[name] for name in names], axis=0)
        return ln / (2 * math.log(10))


def _padded(net: Network, g):
    """∂L/∂h (B, n) as ∂L/∂s (B, N): zeros for the other states."""
    g = net.xp.asarray(g, dtype=net.dtype)
    if net.state_size > net.hidden:
        g = net.xp.concat([g, net.xp.zeros((g.shape[0], net.state_size - net.hidden), dtype=net.dtype)], axis=-1)
    return g


def _gradient_flow(net, inputs, initial, spec, spectral, tol, r, carousel, bound, progress, structure,
                   traj=None) -> Flow:
    loss = spec[0]
    if spectral not in SPECTRAL_METHODS:
        raise GradflowError(f"spectral must be 'power' or 'svd', got {spectral!r}")
    if structure not in ("auto", "dense"):
        raise GradflowError(f"structure must be 'auto' or 'dense', got {structure!r}")
    def last(traj):  # ∂L/∂s_T of a last-step loss from the final state alone
        return _padded(net, cotangents(traj.states[-1][None, :, net.layout.slice("h")], *spec)[-1])

    # the structured paths (no N × N matrix): a diagonal state Jacobian, or per-unit blocks (LRU)
    c, lyap = None, None
    if structure == "auto" and "c" not in net.cell.states and net.layout.uniform:
        if is_diagonal(net.cell):
            c = diagonal_curves(net, inputs, initial, last if loss != "every" else None,
                                loss_reads_state=loss != "sum")
            lyap = c["lyapunov"].mean(axis=0)[:r] if r else None
        elif is_block_structured(net.cell):
            c = block_curves(net, inputs, initial, last if loss != "every" else None, lyapunov=r or 0)
            lyap = c.get("lyapunov")
    if c is not None:
        T, B = c["log10_norm_2"].shape[1], c["log10_norm_2"].shape[0]
        if loss == "every":  # the per-step losses: reverse accumulation over the trajectory
            traj = net.unroll(inputs, initial)
            grad = backward_norms(net, traj, _cotangents(net, traj, spec))["full"]
        else:
            grad = c["log10_grad_norm"]
        full = Curves(c["log10_norm_2"], c["log10_norm_fro"], grad)
        return Flow(net.cell.name, net.hidden, T, B, full, None, None, lyap,
                    _pascanu_log10(net, T) if bound else None, None, loss, dtype=str(np.dtype(net.dtype)))
    traj = net.unroll(inputs, initial) if traj is None else traj
    cot = _cotangents(net, traj, spec)
    T, B = traj.steps, traj.states[0].shape[0]
    n, N = net.hidden, net.state_size
    g = _padded(net, cot[-1])
    blocks = {"full": (slice(0, N), slice(0, N))}
    memory = memory_states(net.cell)
    has_c = "c" in net.cell.states
    if memory:  # the cell state c, or mLSTM's (C, n)
        span = net.layout.span(memory)
        blocks["cell_state"] = (span, span)
    # the gradient curves: Σ_{t≥k} (∂L/∂s_t)(∂s_t/∂s_k) by reverse accumulation (any loss), fed
    # the sweep's own Jacobians
    rev = Reverse(net, cot)
    res = sweep(net, traj, g, spectral=spectral, tol=tol, blocks=blocks, progress=progress, reverse=rev)
    parts = rev.norms
    res["full"].log10_grad_norm = parts["full"]
    if memory:
        res["cell_state"].log10_grad_norm = _joint_log10(parts, memory)
    car = None
    if carousel and has_c:
        rev_car = Reverse(net, cot)
        car = sweep(net, traj, g, truncated=True, spectral=spectral, tol=tol,
                     blocks={"cell_state": blocks["cell_state"]}, reverse=rev_car)["cell_state"]
        car.log10_grad_norm = rev_car.norms["c"]
    lyap = _lyapunov(net, traj, r).mean(axis=0) if r else None
    several = {name: parts[name] for name in net.cell.states} if len(net.cell.states) > 1 else None
    return Flow(net.cell.name, n, T, B, res["full"], res.get("cell_state"), car, lyap,
                _pascanu_log10(net, T) if bound else None, several, loss, dtype=str(np.dtype(net.dtype)))

def singular_values(net: Network, inputs, ks, *, initial: Mapping[str, Any] | None = None,
                    resolve: float = 2e-6) -> dict:
    """Singular values of ∂s_T/∂s_k at the chosen k (0 ≤ k < T), as log10, batch mean.

    The product is carried in factored form with its graded scale apart and its singular values
    are taken with high relative accuracy (:mod:`gradflow._numeric.product_svd`), so values hundreds of
    orders below the largest are right; each has an error bound, and a value whose relative
    error bound exceeds ``resolve`` (2e-6: 1e-6 in log10) is NaN, "not resolved".

    Returns:
        dict k → (N,) NumPy array of log10 σ_i, descending (−inf for exact zeros, NaN where not
        resolved in some sequence of the batch).

    Raises:
        GradflowError: before the unroll, when the estimated memory exceeds what is available (as
            :func:`gradient_flow`).
    """
    from .product_svd import KEEP_BYTES, product_singular_values
    from .size_guard import check_api_flow_size, state_entries

    check_network(net, "singular_values")
    shape = getattr(inputs, "shape", None) or np.shape(inputs)
    if len(shape) in (2, 3):  # other shapes: the unroll says what is wrong
        B = int(shape[1]) if len(shape) == 3 else 1
        # the trajectory and a run's N × N buffers; beside them the Jacobians kept between the two
        # passes and, per k and sequence, the right-factor and graded products (a few N × N each)
        T, N = int(shape[0]), state_entries(net.cell, net.hidden)[0]
        nk = len(ks) if hasattr(ks, "__len__") else 1
        extra = min(KEEP_BYTES, T * B * N * N * 8) + 4 * nk * B * N * N * 8
        check_api_flow_size(net.cell, net.hidden, net.input, T, B, 8, what="singular_values", extra=extra,
                            modes=False)
    traj = net.unroll(inputs, initial)
    T = traj.steps
    if isinstance(ks, (int, np.integer)):
        ks = [ks]
    try:
        ks = sorted({positive_int(k, "k", 0) for k in ks})  # 2.7 or True is not silently k = 2 or 1
    except TypeError:
        raise GradflowError(f"ks must be integers k in 0..{T - 1}, got {ks!r}") from None
    if not ks or ks[0] < 0 or ks[-1] >= T:
        raise GradflowError(f"k must be in 0..{T - 1}, got {ks}")
    per_seq = product_singular_values(net, traj, ks, resolve=resolve)
    return {k: v.mean(axis=0) for k, v in per_seq.items()}


def decay_rate(curve, *, skip: int = 0) -> float:
    """Least-squares slope of a log10 curve against T − k: log10 decay per step (< 0 vanishes).

    ``curve`` is indexed by k = 0…T−1; the last ``skip`` entries (smallest T − k) are left out.
    A batch of curves (B, T), as :class:`Curves` holds them, gives the slope of the batch mean,
    which is the mean of the B slopes (least squares is linear in the data).
    A curve that reaches −∞ (the product is exactly 0 from some lag on, e.g. a ReLU network whose
    units all switched off) decays without bound: the rate is −∞, not the slope of the rest;
    one that reaches +∞ (overflow) grows without bound: +∞. A slope needs two points: fewer than
    two after ``skip``, NaN entries, or both −∞ and +∞ are each a :class:`GradflowError`.
    """
    try:
        raw = np.asarray(to_host(curve))
    except (TypeError, ValueError):
        raw = np.asarray(None)
    if raw.dtype.kind not in "iuf":  # text, complex, booleans, objects: not log10 norms
        raise GradflowError(f"the curve must be log10 norms (real numbers) indexed by k, "
                            f"got {type(curve).__name__} of {raw.dtype}")
    y = raw.astype(float)
    if y.ndim not in (1, 2) or 0 in y.shape:
        raise GradflowError(f"the curve must be log10 norms indexed by k, shape (T,) or (batch, T), "
                            f"got shape {y.shape}")
    T = y.shape[-1]
    skip = positive_int(skip, "skip", 0)
    if skip >= T:
        raise GradflowError(f"skip must be in 0..{T - 1}, got {skip}")
    y = y[..., : T - skip]
    if y.shape[-1] < 2:
        raise GradflowError(f"a decay rate needs at least 2 points of the curve, got {y.shape[-1]} "
                            f"(T = {T}, skip = {skip})")
    if np.isnan(y).any():  # checked per curve of a batch, before their mean
        raise GradflowError("the curve contains NaN")
    if np.isneginf(y).any() and np.isposinf(y).any():
        raise GradflowError("the curve contains both -inf (an exact zero) and +inf (overflow): "
                            "no decay rate")
    if y.ndim == 2:
        y = y.mean(axis=0)
    if np.isneginf(y).any():
        return float("-inf")
    if np.isposinf(y).any():
        return float("inf")
    return float(np.polyfit(T - np.arange(y.shape[-1]), y, 1)[0])
