"""A cell on real weights: the compiled recurrence, the forward unroll, the Jacobians J_t.

Indexing: s_0 is the initial state (zeros unless given), s_t = F(s_{t−1}, x_t) for t = 1…T,
and J_t = ∂s_t/∂s_{t−1} is evaluated from the closed forms the symbolic core derived
(:mod:`gradflow._numeric.compile`), never by autograd. Arrays may be of any array-API namespace
(NumPy, CuPy): the namespace of the weights is used throughout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from array_api_compat import array_namespace
from sympy import Identity, ZeroMatrix

from .._checks import GradflowError, positive_int
from .._symbolic.cell import Cell
from .._symbolic.cells import get_cell
from .._symbolic.nodes import Diag
from .._vocabulary import BlockKind, InitScheme
from .compile import compile_expr, dense_diag, stable_substitutions
from .layout import state_layout
from .loading import check_dtype, note, real_array, trusting_torchscript
from .weights import Weights, init_weights, load_layer, to_numpy


@dataclass(frozen=True)
class _Block:
    """One block ∂(s_t)_a/∂(s_{t−1})_b, its structure read off the derived expression."""

    a: int
    b: int
    kind: BlockKind              # "dense", "diag" (fn gives the diagonal) or "identity"
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


def _blocks(J, idx, subs=None) -> tuple:
    out = []
    for (a, b), e in J.blocks.items():
        if isinstance(e, ZeroMatrix):
            continue
        if isinstance(e, Identity):
            out.append(_Block(idx[a], idx[b], "identity", None))
        elif isinstance(e, Diag):
            out.append(_Block(idx[a], idx[b], "diag", compile_expr(e.vector, subs)))
        else:
            out.append(_Block(idx[a], idx[b], "dense", compile_expr(e, subs)))
    return tuple(out)


@cache
def kernels(cell: Cell) -> _Kernels:
    """Compile ``cell``'s recurrence and Jacobian blocks (cached per cell)."""
    from .._symbolic.many_steps import truncated_jacobian

    step = cell.recorded
    idx = {s: i for i, s in enumerate(cell.states)}
    J = cell.jacobian()
    Jc = truncated_jacobian(cell) if "c" in cell.states else None
    # the Jacobians evaluate derivative factors (1 − y ⊙ y, 1 − σ) stably from the pre-activation
    subs = stable_substitutions(step.definitions, list(J.blocks.values()) +
                                (list(Jc.blocks.values()) if Jc is not None else []))
    return _Kernels(
        prev=tuple(step.prev[s] for s in cell.states),
        new=tuple(step.new[s] for s in cell.states),
        x=step.x,
        forward=tuple((sym, compile_expr(e)) for sym, e in step.definitions.items()),
        blocks=_blocks(J, idx, subs),
        carousel=_blocks(Jc, idx, subs) if Jc is not None else (),
    )


@dataclass
class Trajectory:
    """States of an unrolled network: ``states[t]`` is s_t, shape (B, N), t = 0…T (the states laid
    out by :class:`~gradflow._numeric.layout.StateLayout`).

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

    Attributes:
        batch_first: True when the weights came from a module built with ``batch_first=True``
            (:func:`~gradflow.gradient_flow` then reads inputs as (batch, T, m) unless told).
    """

    batch_first: bool = False

    def __init__(self, weights: Weights):
        self.weights = weights
        self.cell = weights.cell
        self.hidden, self.input = weights.hidden, weights.input
        self.layout = state_layout(self.cell, self.hidden)  # where each state sits in s_t (N entries)
        arrays = list(weights.arrays.values())
        self.xp = array_namespace(*arrays)
        self.dtype = arrays[0].dtype
        self._k = kernels(self.cell)
        self._env0 = dict(weights.env(), xp=self.xp, dtype=self.dtype)
        self._env0.update(self.cell.recorded.constants)  # the cell's fixed scalars (ε, γ, Δt)

    def env0(self) -> dict:
        """The step-independent environment: weights, sizes, the cell's constants, ``xp``."""
        return dict(self._env0)

    @property
    def kernels(self) -> _Kernels:
        """The compiled cell: its forward step and Jacobian blocks (what :func:`products` multiplies)."""
        return self._k

    @property
    def state_size(self) -> int:
        """N = Σ of the state sizes ((number of states) · n when every state has n entries)."""
        return self.layout.total

    # -- forward ----------------------------------------------------------------------------
    def _env(self, s_prev, x, named: Mapping | None = None) -> dict:
        """Every named quantity of step t from s_{t−1} (B, N) and x_t (B, m) (or ``named``)."""
        env = dict(self._env0)
        for i, sym in enumerate(self._k.prev):
            env[sym] = s_prev[:, self.layout.slice(i)]
        env[self._k.x] = x
        if named is not None:
            env.update(named)
            return env
        for sym, fn in self._k.forward:
            env[sym] = fn(env)
        return env

    def step_env(self, traj: Trajectory, t: int) -> dict:
        """The environment of step t (1 ≤ t ≤ T) of a trajectory."""
        named = traj.named[t - 1] if traj.named else None
        return self._env(traj.states[t - 1], traj.inputs[t - 1], named)

    def _state(self, env):
        xp = self.xp
        parts = [env[s] for s in self._k.new]
        return parts[0] if len(parts) == 1 else xp.concat(parts, axis=-1)

    def unroll(self, inputs, initial: Mapping[str, Any] | None = None, *, finite: bool = True) -> Trajectory:
        """Run s_t = F(s_{t−1}, x_t) for t = 1…T.

        Arguments:
            inputs: (T, B, m) or (T, m) array of the network's namespace.
            initial: optional initial states by name (``{"h": (B, n) or (n,)}``); zeros otherwise.
            finite: refuse (``GradflowError``) a state that left the dtype's range (±inf, then
                NaN), whose Jacobians would mean nothing; ``False`` returns such states as computed.

        Returns:
            :class:`Trajectory` with T + 1 states of shape (B, N).
        """
        xp = self.xp
        inputs = self.check_inputs(inputs)
        T, B, _ = inputs.shape
        parts = []
        for s, size in zip(self.cell.states, self.layout.sizes, strict=True):
            v = (initial or {}).get(s)
            if v is None:
                v = xp.zeros((B, size), dtype=self.dtype)
            else:
                v = xp.asarray(v, dtype=self.dtype)
                if v.ndim == 1 and v.shape[0] == size:
                    v = xp.broadcast_to(v[None, :], (B, size))
                if tuple(v.shape) != (B, size):
                    raise GradflowError(f"initial state {s} has shape {tuple(v.shape)}, expected {(B, size)}")
                if not bool(xp.all(xp.isfinite(v))):
                    raise GradflowError(f"initial state {s} contains NaN or inf")
            parts.append(v)
        unknown = set(initial or {}) - set(self.cell.states)
        if unknown:
            raise GradflowError(f"{self.cell.name} has no state(s) {', '.join(sorted(unknown))}")
        s = parts[0] if len(parts) == 1 else xp.concat(parts, axis=-1)
        states, named = [s], []
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # reported below, once
            for t in range(T):
                env = self._env(s, inputs[t])
                named.append({sym: env[sym] for sym, _ in self._k.forward})
                s = self._state(env)
                states.append(s)
        if finite:
            check_finite_states(xp, states, self.cell.name)
        return Trajectory(inputs, states, named)

    def step(self, s_prev, x):
        """One step: (s_t (B, N), the named quantities of the step) from s_{t−1} (B, N), x_t (B, m)."""
        env = self._env(s_prev, x)
        return self._state(env), env

    def check_inputs(self, inputs):
        """(T, m) or (T, B, m) → (T, B, m) of the network's dtype; ``ValueError`` if malformed."""
        xp = self.xp
        if hasattr(inputs, "detach"):  # a torch tensor: its dtype is checked, not cast silently
            inputs = real_array(inputs, "inputs")
        elif not hasattr(inputs, "dtype"):
            inputs = real_array(inputs, "inputs")
        check_dtype(inputs.dtype, "inputs")
        inputs = xp.asarray(inputs)
        if inputs.ndim == 2:
            inputs = inputs[:, None, :]
        if inputs.ndim != 3:
            raise GradflowError(f"inputs must have shape (T, m) or (T, batch, m), got {tuple(inputs.shape)}")
        T, B, m = inputs.shape
        if T < 1:
            raise GradflowError("inputs have T = 0 steps; need T >= 1")
        if B < 1:
            raise GradflowError("inputs have an empty batch")
        if m != self.input:
            raise GradflowError(f"inputs have {m} features per step, the weights expect input size {self.input}")
        if not bool(xp.all(xp.isfinite(inputs))):
            raise GradflowError("inputs contain NaN or inf")
        return xp.astype(inputs, self.dtype)

    # -- Jacobians ----------------------------------------------------------------------------
    def step_jacobian(self, traj: Trajectory, t: int, *, truncated: bool = False):
        """J_t = ∂s_t/∂s_{t−1}, shape (B, N, N), for 1 ≤ t ≤ T (the 1997 truncation if asked)."""
        if not 1 <= t <= traj.steps:
            raise GradflowError(f"t must be in 1..{traj.steps}, got {t}")
        return self._assemble(self.step_env(traj, t), truncated)

    def _assemble(self, env, truncated=False):
        """The dense J_t (B, N, N) from its blocks."""
        B = env[self._k.prev[0]].shape[0]
        J = self.xp.zeros((B, self.state_size, self.state_size), dtype=self.dtype)
        return self.fill_jacobian(J, env, truncated)

    def fill_jacobian(self, J, env, truncated=False):
        """Write J_t's non-zero blocks into the buffer J (B, N, N), whose other entries are 0.

        Dense blocks are copied in; a diagonal block diag(v) writes only its n diagonal entries
        (through a strided view of the flattened buffer), so the zeros around it stay as they are
        and one buffer serves every step.
        """
        xp, lay, N = self.xp, self.layout, self.state_size
        B = J.shape[0]
        for blk in self._k.carousel if truncated else self._k.blocks:
            rows, cols = lay.slice(blk.a), lay.slice(blk.b)
            if blk.kind == "dense":
                J[:, rows, cols] = blk.fn(env)
                continue
            n = rows.stop - rows.start  # a diagonal block is square
            v = xp.ones((B, n), dtype=self.dtype) if blk.kind == "identity" else \
                xp.broadcast_to(blk.fn(env), (B, n))
            start = rows.start * N + cols.start
            diag = xp.reshape(J, (B, N * N))[:, start:start + (n - 1) * (N + 1) + 1:N + 1]
            diag[...] = v
            if n > 1 and bool(J[0, rows.start + 1, cols.start + 1] != v[0, 1]):  # reshape copied
                J[:, rows, cols] = dense_diag(v, env)
        return J


def check_finite_states(xp: Any, states: list, what: str) -> None:
    """One :class:`GradflowError` when a state s_t (t = 1…T) left float64's (float32's) range.

    A state that overflowed to ±inf, and the NaN that follows it (inf − inf), would give
    Jacobians of no meaning: a ReLU's H(NaN) is 0, so the products would read as an exact 0, a
    vanished gradient, where the true one explodes.
    """
    ok = xp.all(xp.isfinite(states[-1]))
    for s in states[1:-1]:
        ok = ok & xp.all(xp.isfinite(s))
    if bool(ok):
        return
    t = next(i for i, s in enumerate(states) if not bool(xp.all(xp.isfinite(s))))
    big = float(xp.max(xp.abs(states[t - 1]))) if t > 0 else float("nan")
    raise GradflowError(f"{what}: the state overflowed at step t = {t}: s_{t} holds ±inf or NaN, beyond the range "
                        f"of {xp.asarray(states[t]).dtype} (the largest |s_{t - 1}| was {big:.3g}); the forward "
                        "pass, and with it every Jacobian from that step on, is not representable; scale "
                        "the weights or inputs down, or use fewer steps")


def check_network(net: Any, what: str) -> Network:
    """``net`` when it is a :class:`Network`; one :class:`GradflowError` naming ``what`` otherwise."""
    if not isinstance(net, Network):
        raise GradflowError(f"{what} needs a Network (gradflow.network(...)), got {type(net).__name__}")
    return net


def random_inputs(steps: int, input: int, *, batch: int = 1, seed: int = 0, dtype=np.float64, xp=np):
    """Standard normal inputs of shape (T, B, m) from ``seed``."""
    T = positive_int(steps, "steps")
    m, B = positive_int(input, "input size"), positive_int(batch, "batch")
    seed = positive_int(seed, "seed", 0)
    from .size_guard import check_allocation

    check_allocation(2 * T * B * m * 8, f"random inputs of shape ({T}, {B}, {m})")  # float64, then cast
    x = np.random.default_rng(seed + 1_000_003).standard_normal((T, B, m)).astype(dtype)
    return x if xp is np else xp.asarray(x)


def network(cell: str | Cell, hidden: int | None = None, input: int | None = None, *,
            init: InitScheme | None = None, seed: int = 0, gain: float = 1.0,
            forget_bias: float | None = None, weights: Any = None, prefix: str | None = None,
            layer: int | None = None, direction: str | None = None, dtype=np.float64, xp=np,
            trust_torchscript: bool = False) -> Network:
    """A :class:`Network` from an init scheme, or from ``weights`` (module, state_dict, file).

    With ``weights`` the sizes come from the weights; if ``hidden``/``input`` are also given they
    must agree. ``prefix``, ``layer`` and ``direction`` pick one layer of one recurrent module in
    a whole model or checkpoint (see :func:`~gradflow.load_weights`). Layer ``l > 0`` reads the
    outputs of layer ``l - 1``: give those as the inputs of :func:`~gradflow.gradient_flow`.
    ``gradient_flow`` reads inputs as (T, batch, m), but as (batch, T, m) for a module built with
    ``batch_first=True`` (the network's ``batch_first`` records it; ``batch_first=`` overrides).
    ``trust_torchscript``: read ``weights`` that are a TorchScript archive (refused otherwise: loading
    one can run its code; see :func:`~gradflow.load_weights`).
    """
    cell = get_cell(cell)
    if weights is None and (prefix, layer, direction) != (None, None, None):
        raise GradflowError("prefix, layer and direction select loaded weights; give weights too")
    if weights is not None:
        batch_first = None
        if isinstance(weights, Weights):
            if (prefix, layer, direction) != (None, None, None):
                raise GradflowError("prefix, layer and direction select weights in a model or file, "
                                    "not in a Weights object")
            w = weights
        else:
            with trusting_torchscript(trust_torchscript):
                w, sel = load_layer(cell, weights, prefix=prefix, layer=layer, direction=direction,
                                    dtype=dtype, xp=xp)
            batch_first = sel.batch_first
            if sel.layer > 0:
                note(f"{cell.name}: layer {sel.layer} reads the outputs of layer {sel.layer - 1} "
                     f"({w.input} features): measure it on those outputs, not on random inputs")
            if batch_first:
                note(f"{cell.name}: the module was built with batch_first=True; gradient_flow reads "
                     "inputs as (batch, T, m) for it, as the module does (batch_first=False for (T, batch, m))")
        for name, want, got in (("hidden", hidden, w.hidden), ("input", input, w.input)):
            if want is not None and want != got:
                raise GradflowError(f"{name} size {want} does not match the weights' {name} size {got}")
        if forget_bias is not None:
            raise GradflowError("forget_bias applies to initialised weights, not loaded ones")
        net = Network(w)
        net.batch_first = bool(batch_first)
        return net
    if hidden is None or input is None:
        raise GradflowError("give hidden and input sizes (or weights)")
    from .size_guard import check_allocation, weight_entries

    c = get_cell(cell)
    n, m = positive_int(hidden, "hidden size"), positive_int(input, "input size")
    # a lower bound: the weights themselves in float64
    check_allocation(weight_entries(c, n, m) * 8, f"the weights of {c.name} with hidden size {n}, input size {m}")
    return Network(init_weights(cell, hidden, input, scheme=init, seed=seed, gain=gain,
                                forget_bias=forget_bias, dtype=dtype, xp=xp))


def to_host(a) -> np.ndarray:
    """Any backend's array as NumPy (for results and reporting)."""
    return to_numpy(a)
