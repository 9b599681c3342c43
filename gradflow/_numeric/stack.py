"""Stacked and bidirectional recurrent networks: every layer, both directions, one gradient.

A network of L layers (``nn.LSTM(num_layers=L)``) runs, at every time step t, layer 1 on the
input x_t and layer l on the output of layer l − 1 at the same step: x^(l)_t = h^(l−1)_t. Its
state s_t = (s^(1)_t, …, s^(L)_t) stacks every layer's state, and the one-step Jacobian

    J_t = ∂s_t/∂s_{t−1},   block (l, l) = J^(l)_t = ∂s^(l)_t/∂s^(l)_{t−1},
                           block (l, l') = K^(l)_t · E · [∂s^(l−1)_t/∂s_{t−1}]_{l'}   (l' < l),

is lower block-triangular: K^(l)_t = ∂s^(l)_t/∂x^(l)_t is the cell's input Jacobian and E picks
the h rows of s^(l−1). Both J^(l)_t and K^(l)_t are derived by the symbolic core from the cell's
one recurrence (:meth:`gradflow._symbolic.cell.Cell.jacobian`, :meth:`~gradflow._symbolic.cell.Cell.input_jacobian`).

A bidirectional layer holds two copies of the cell: the forward one over t = 1…T, the reverse
one over reversed time, s^(r)_t = F(s^(r)_{t+1}, x_t) from s^(r)_{T+1} = 0; the layer's output
(and the next layer's input) is [h^(f)_t ; h^(r)_t]. Each direction is measured on its own
clock: step k of the reverse direction is original time t = T + 1 − k (k = 0 is its initial
state), so its ``∂s_T/∂s_k`` is ∂s^(r)_1/∂s^(r)_{T+1−k}. A stacked bidirectional network has no
one state that moves forward in time, so it has no whole-stack product: only per-layer ones.

The loss gradient comes from reverse accumulation through the whole network: L depends on the
top layer's outputs through a cotangent ∂L/∂y_t for every t (default: L = Σ y_T, ones at
t = T); ∂L/∂s^(l,d)_k is the total derivative at the node s^(l,d)_k, through both of its
consumers, the layer's own next step and the layer above at the same step.

Dropout between layers acts only in training: it is ignored here (the network in eval mode).
``proj_size`` > 0 is the projected LSTM of :mod:`gradflow._symbolic.projected`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from sympy import ZeroMatrix

from .._checks import GradflowError, lyapunov_count, positive_int
from .._symbolic.cell import Cell, m, n
from .._symbolic.cells import get_cell
from .._symbolic.projected import PROJECTION, p, projected
from .._vocabulary import Loss, SpectralMethod
from .checkpoint import Module, select_module
from .compile import compile_expr, dense_diag, stable_substitutions
from .flow import Curves, blas_threads, json_exponents, json_number, lyapunov_exponents, sweep, thread_limit
from .input_layout import batch_first_of, time_first
from .keras_loading import is_keras_path
from .keras_stack import keras_module
from .layout import StateLayout, refuse_sized_states
from .loading import check_dtype, note, read_weights_file, real_array, trusting_torchscript
from .loss import cotangents as loss_cotangents
from .network import check_finite_states, kernels, to_host
from .weights import init_weights, to_state_dict

DIRECTIONS = ("forward", "reverse")


# -- one layer, one direction ---------------------------------------------------------------------
@dataclass(frozen=True)
class _InputKernels:
    blocks: tuple                 # ((state index, fn), ...): ∂s_a/∂x, zero blocks left out


@cache
def input_kernels(cell: Cell) -> _InputKernels:
    """Compile ``cell``'s derived input Jacobian ∂s_t/∂x_t (cached per cell)."""
    step = cell.recorded
    K = cell.input_jacobian()
    subs = stable_substitutions(step.definitions, list(K.values()))
    return _InputKernels(tuple((i, compile_expr(K[s], subs)) for i, s in enumerate(cell.states)
                               if not isinstance(K[s], ZeroMatrix)))


@dataclass
class Layer:
    """One layer of one direction: its cell (projected if ``proj_size``), sizes and parameters.

    Attributes:
        cell: the cell this layer runs (``lstm-proj`` for a projected LSTM).
        layer, direction: its place in the network.
        hidden: n; input: m (the network's input for layer 0, else the output of the layer below);
        sizes: the size of each state, in ``cell.states`` order (h: p when projected).
        arrays: parameter label → array.
    """

    cell: Cell
    layer: int
    direction: str
    hidden: int
    input: int
    sizes: tuple[int, ...]
    arrays: Mapping[str, Any]
    xp: Any = field(repr=False, default=np)

    def __post_init__(self):
        self.dtype = next(iter(self.arrays.values())).dtype
        env: dict = {n: self.hidden, m: self.input, "xp": self.xp, "dtype": self.dtype}
        if "h" in self.cell.states:
            env[p] = self.sizes[self.cell.states.index("h")]
        for par in self.cell.recorded.params:
            env[par.symbol] = self.arrays[par.symbol.name]
        env.update(self.cell.recorded.constants)
        self._env0 = env
        self._k = kernels(self.cell)
        self._ki = input_kernels(self.cell)
        self.layout = StateLayout(tuple(self.cell.states), tuple(self.sizes))
        self.offsets = self.layout.offsets

    @property
    def state_size(self) -> int:
        return self.layout.total

    @property
    def output(self) -> slice:
        """Where h sits in the layer's state s = (…): the layer's output."""
        return self.layout.slice("h")

    def state_slice(self, i: int) -> slice:
        """Where state ``cell.states[i]`` sits in the layer's state vector."""
        return self.layout.slice(i)

    _slice = state_slice

    def env(self, s_prev, x) -> dict:
        """Every named quantity of one step from s_{t−1} (B, N) and x_t (B, m)."""
        env = dict(self._env0)
        for i, sym in enumerate(self._k.prev):
            env[sym] = s_prev[:, self._slice(i)]
        env[self._k.x] = x
        for sym, fn in self._k.forward:
            env[sym] = fn(env)
        return env

    def state(self, env):
        parts = [env[s] for s in self._k.new]
        return parts[0] if len(parts) == 1 else self.xp.concat(parts, axis=-1)

    def _dense(self, kind, fn, env, B, rows, cols):
        xp = self.xp
        if kind == "identity":
            return xp.broadcast_to(xp.eye(rows, dtype=self.dtype)[None], (B, rows, cols))
        if kind == "diag":
            v = xp.broadcast_to(xp.asarray(fn(env), dtype=self.dtype), (B, rows))
            return dense_diag(v, env)
        return xp.broadcast_to(fn(env), (B, rows, cols))

    def jacobian(self, env):
        """J_t = ∂s_t/∂s_{t−1} (B, N, N) from the derived blocks."""
        xp, N = self.xp, self.state_size
        B = env[self._k.x].shape[0]
        J = xp.zeros((B, N, N), dtype=self.dtype)
        for blk in self._k.blocks:
            r, c = self._slice(blk.a), self._slice(blk.b)
            J[:, r, c] = self._dense(blk.kind, blk.fn, env, B, r.stop - r.start, c.stop - c.start)
        return J

    def input_jacobian(self, env):
        """K_t = ∂s_t/∂x_t (B, N, m) from the derived blocks."""
        xp = self.xp
        B = env[self._k.x].shape[0]
        K = xp.zeros((B, self.state_size, self.input), dtype=self.dtype)
        for a, fn in self._ki.blocks:
            r = self._slice(a)
            K[:, r, :] = xp.broadcast_to(fn(env), (B, r.stop - r.start, self.input))
        return K


def _layer_arrays(cell: Cell, plain: Mapping[str, Any], what: str, dtype) -> tuple[dict, int, int]:
    """Parameter arrays of one layer from PyTorch's stacked layout (gate blocks in the order the
    recurrence first uses them, a merged bias b_g = b_ih[g] + b_hh[g]); returns (arrays, n, m)."""
    gates = [g for g in cell.recorded.gates]
    G = len(gates)
    arr = {k: real_array(v, f"{what}: {k}").astype(dtype) for k, v in plain.items()}
    wih, whh = arr["weight_ih"], arr["weight_hh"]
    if wih.ndim != 2 or whh.ndim != 2 or wih.shape[0] % G or whh.shape[0] != wih.shape[0]:
        raise GradflowError(f"{what}: weight_ih {wih.shape} and weight_hh {whh.shape} do not stack "
                            f"{G} gate(s) ({', '.join(str(g) for g in gates)})")
    H, M = wih.shape[0] // G, wih.shape[1]
    cols = arr["weight_hr"].shape[0] if "weight_hr" in arr else H
    if whh.shape[1] != cols or ("weight_hr" in arr and arr["weight_hr"].shape != (cols, H)):
        raise GradflowError(f"{what}: weight_hh {whh.shape} and weight_hr "
                            f"{arr['weight_hr'].shape if 'weight_hr' in arr else None} do not fit n = {H}")
    for k in ("bias_ih", "bias_hh"):
        if k in arr and arr[k].shape != (G * H,):
            raise GradflowError(f"{what}: {k} has shape {arr[k].shape}, expected {(G * H,)}")
    if ("bias_ih" in arr) != ("bias_hh" in arr):
        raise GradflowError(f"{what}: bias_ih and bias_hh come together")

    def chunk(name, g):
        if name not in arr:
            return np.zeros(H, dtype=dtype)
        i = gates.index(g)
        return arr[name][i * H:(i + 1) * H]

    out = {}
    for par in cell.recorded.params:
        if par.symbol.name == PROJECTION:
            a = arr["weight_hr"]
        elif par.kind == "W":
            a = chunk("weight_hh", par.gate)
        elif par.kind == "U":
            a = chunk("weight_ih", par.gate)
        elif par.kind == "b" and par.bias in ("input", "hidden"):
            a = chunk("bias_ih" if par.bias == "input" else "bias_hh", par.gate)
        elif par.kind == "b":
            a = chunk("bias_ih", par.gate) + chunk("bias_hh", par.gate)
        else:
            raise GradflowError(f"{cell.name}: parameter {par.symbol.name} has no place in PyTorch's layout")
        if not np.all(np.isfinite(a)):
            raise GradflowError(f"{what}: {par.symbol.name} contains NaN or inf")
        out[par.symbol.name] = np.ascontiguousarray(a)
    return out, H, M


# -- the network ----------------------------------------------------------------------------------
@dataclass
class StackTrajectory:
    """An unrolled stacked network.

    Attributes:
        inputs: (T, B, m), original time.
        states: ``(layer, direction)`` → list of T + 1 states (B, N_l) on the direction's own
            clock (reverse: ``states[k]`` is s^(r)_{T+1−k}).
        envs: ``(layer, direction)`` → list of T step environments (named quantities), own clock.
        outputs: per layer, (T, B, D·p) in original time: [h^(f)_t ; h^(r)_t].
    """

    inputs: Any
    states: dict = field(repr=False)
    envs: dict = field(repr=False)
    outputs: list = field(repr=False)

    @property
    def steps(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def batch(self) -> int:
        return int(self.inputs.shape[1])


class StackedNetwork:
    """``num_layers`` layers of a cell, optionally bidirectional and projected (``proj_size``).

    Attributes:
        cell: the cell (unprojected), layers: ``layers[l][d]`` the :class:`Layer` of layer l,
        direction d (0 forward, 1 reverse); hidden, input, proj_size, bidirectional;
        batch_first: the module's: :func:`stacked_flow` reads inputs as (batch, T, m) when it is
            True, as :func:`~gradflow.gradient_flow` does (``batch_first=False`` overrides).
    """

    def __init__(self, cell: Cell, layers: list[tuple[Layer, ...]], *, proj_size: int = 0,
                 batch_first: bool = False, last_only: bool = False):
        self.cell, self.layers, self.proj_size = cell, layers, proj_size
        self.batch_first = batch_first
        # the model's output is the top layer's last step on each direction's own clock (a Keras top
        # layer with return_sequences=False): [h^(f)_T ; h^(r)_1] when bidirectional (model_cotangents)
        self.last_only = last_only
        self.bidirectional = len(layers[0]) == 2
        first = layers[0][0]
        self.hidden, self.input, self.xp, self.dtype = first.hidden, first.input, first.xp, first.dtype

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def directions(self) -> tuple[str, ...]:
        return DIRECTIONS[:len(self.layers[0])]

    def output_size_of(self, layer: int) -> int:
        """Size of layer ``layer``'s output [h^(f)_t ; h^(r)_t]: D · (p or n)."""
        return sum(lay.output.stop - lay.output.start for lay in self.layers[layer])

    @property
    def output_size(self) -> int:
        """Size of the top layer's output y_t (what PyTorch's module returns at each t)."""
        return self.output_size_of(self.num_layers - 1)

    @property
    def state_size(self) -> int:
        """Size of the whole stacked state (all layers, all directions)."""
        return sum(lay.state_size for row in self.layers for lay in row)

    def all_layers(self) -> list[Layer]:
        return [lay for row in self.layers for lay in row]

    def check_inputs(self, inputs):
        """(T, m) or (T, B, m) → (T, B, m) of the network's dtype; ``GradflowError`` if malformed."""
        xp = self.xp
        if not hasattr(inputs, "dtype") or hasattr(inputs, "detach"):
            inputs = real_array(inputs, "inputs")
        check_dtype(inputs.dtype, "inputs")
        inputs = xp.asarray(inputs)
        if inputs.ndim == 2:
            inputs = inputs[:, None, :]
        if inputs.ndim != 3 or inputs.shape[0] < 1 or inputs.shape[1] < 1:
            raise GradflowError(f"inputs must have shape (T, m) or (T, batch, m) with T, batch >= 1, "
                                f"got {tuple(inputs.shape)}")
        if inputs.shape[2] != self.input:
            raise GradflowError(f"inputs have {inputs.shape[2]} features per step, the network's input "
                                f"size is {self.input}")
        if not bool(xp.all(xp.isfinite(inputs))):
            raise GradflowError("inputs contain NaN or inf")
        return xp.astype(inputs, self.dtype)

    def initial_states(self, initial: Any, B: int) -> list:
        """Initial states (B, N_l) per layer and direction (``all_layers`` order) from PyTorch's
        layout: ``{"h": h0, "c": c0}`` (or ``h0``/``c0`` keys, an ``(h0, c0)`` pair, or h0 alone),
        each (L·D, B, size) or (L·D, size); zeros where not given."""
        xp, lays = self.xp, self.all_layers()
        if initial is None:
            initial = {}
        elif not isinstance(initial, Mapping):  # h0, or the pair (h0, c0)
            seq = initial if isinstance(initial, (tuple, list)) else (initial,)
            if len(seq) > len(self.cell.states):
                raise GradflowError(f"{len(seq)} initial states given, {self.cell.name} has {len(self.cell.states)}")
            initial = dict(zip(self.cell.states, seq, strict=False))
        initial = {(str(k)[:-1] if str(k).endswith("0") and str(k)[:-1] in self.cell.states else str(k)): v
                   for k, v in initial.items()}  # PyTorch's names h0, c0
        unknown = set(initial) - set(self.cell.states)
        if unknown:
            raise GradflowError(f"{self.cell.name} has no state(s) {', '.join(sorted(unknown))}")
        if initial and len({lay.sizes for lay in lays}) > 1:  # a Keras stack of different widths
            raise GradflowError("initial states in PyTorch's (layers x directions, batch, size) layout need "
                                "layers of one size; this network's layers have sizes "
                                f"{', '.join(str(lay.state_size) for lay in lays)}")
        given = {}
        for name, v in initial.items():
            if hasattr(v, "detach") or not hasattr(v, "dtype"):
                v = real_array(v, f"initial state {name}")
            check_dtype(v.dtype, f"initial state {name}")
            v = xp.asarray(v, dtype=self.dtype)
            i = self.cell.states.index(name)
            size = lays[0].sizes[i]
            if v.ndim == 2:
                v = xp.broadcast_to(v[:, None, :], (v.shape[0], B, v.shape[-1]))
            if tuple(v.shape) != (len(lays), B, size):
                raise GradflowError(f"initial state {name} must have shape (layers x directions, batch, "
                                    f"{size}) = {(len(lays), B, size)} as PyTorch's, got {tuple(v.shape)}")
            if not bool(xp.all(xp.isfinite(v))):
                raise GradflowError(f"initial state {name} contains NaN or inf")
            given[i] = v
        out = []
        for j, lay in enumerate(lays):
            parts = [given[i][j] if i in given else xp.zeros((B, lay.sizes[i]), dtype=self.dtype)
                     for i in range(len(lay.sizes))]
            out.append(parts[0] if len(parts) == 1 else xp.concat(parts, axis=-1))
        return out

    def unroll(self, inputs, initial: Any = None) -> StackTrajectory:
        """Run every layer and direction, from ``initial`` states in PyTorch's layout
        (``{"h": h0, "c": c0}``, (L·D, B, size)) or zeros (as PyTorch without h0/c0)."""
        xp = self.xp
        x = x0 = self.check_inputs(inputs)
        T, B = x.shape[0], x.shape[1]
        starts = self.initial_states(initial, B)
        states, envs, outputs = {}, {}, []
        for l, row in enumerate(self.layers):
            outs = []
            for d, lay in enumerate(row):
                xs = x if d == 0 else xp.flip(x, axis=0)
                s = starts[l * len(row) + d]
                ss, es = [s], []
                for k in range(T):
                    env = lay.env(s, xs[k])
                    s = lay.state(env)
                    ss.append(s)
                    es.append(env)
                check_finite_states(xp, ss, f"layer {l} {DIRECTIONS[d]}")
                states[(l, DIRECTIONS[d])], envs[(l, DIRECTIONS[d])] = ss, es
                h = xp.stack([st[:, lay.output] for st in ss[1:]], axis=0)  # own clock
                outs.append(h if d == 0 else xp.flip(h, axis=0))
            x = outs[0] if len(outs) == 1 else xp.concat(outs, axis=-1)
            outputs.append(x)
        return StackTrajectory(x0, states, envs, outputs)

    # -- Jacobians --------------------------------------------------------------------------------
    def stacked_jacobian(self, traj: StackTrajectory, t: int):
        """J_t = ∂s_t/∂s_{t−1} of the whole stack (B, N, N), 1 ≤ t ≤ T, unidirectional networks.

        State order: layer 0's states (in ``cell.states`` order), then layer 1's, …
        """
        if self.bidirectional:
            raise GradflowError("a bidirectional network has no whole-stack one-step Jacobian (its "
                                "reverse direction runs over reversed time): use the per-layer ones")
        if not 1 <= t <= traj.steps:
            raise GradflowError(f"t must be in 1..{traj.steps}, got {t}")
        xp, N = self.xp, self.state_size
        B = traj.batch
        J = xp.zeros((B, N, N), dtype=self.dtype)
        off, below = 0, None
        for l, (lay,) in enumerate(self.layers):
            env = traj.envs[(l, "forward")][t - 1]
            rows = slice(off, off + lay.state_size)
            if below is not None:  # the path through the layer below at the same step
                prev_lay, prev_rows = below
                h = slice(prev_rows.start + prev_lay.output.start, prev_rows.start + prev_lay.output.stop)
                J[:, rows, :] = lay.input_jacobian(env) @ J[:, h, :]
            J[:, rows, rows] = lay.jacobian(env)
            below = (lay, rows)
            off += lay.state_size
        return J


def stacked_network(cell: str | Cell, hidden: int | None = None, input: int | None = None, *,
                    layers: int = 1, bidirectional: bool = False, proj_size: int = 0,
                    weights: Any = None, prefix: str | None = None, init: Any = None, seed: int = 0,
                    gain: float = 1.0, dtype: Any = np.float64, trust_torchscript: bool = False) -> StackedNetwork:
    """A :class:`StackedNetwork`: from an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` module, its state_dict,
    a checkpoint or a ``.pt``/``.npz`` file (``weight_ih_l{k}``, ``…_reverse``, ``weight_hr_l{k}``:
    every layer and direction is read; sizes, layers, directions and proj_size come from the
    weights), a Keras 3 ``.keras`` Sequential of recurrent layers, Bidirectional ones included
    (:mod:`gradflow._numeric.keras_stack`: the wiring from its configuration), or initialised
    (``init`` as :func:`~gradflow.init_weights`, layer l direction d seeded ``seed + 2l + d``; a
    projected LSTM is initialised as PyTorch does, U(±1/√n)). ``trust_torchscript``: read
    ``weights`` that are a TorchScript archive (refused otherwise: loading one can run its code).
    """
    base = get_cell(cell)
    refuse_sized_states(base, "a stacked or bidirectional network (it needs the input Jacobian ∂s_t/∂x_t, "
                              "which the chain rule does not give for this cell)")
    check_dtype(np.dtype(dtype), "dtype")
    if weights is not None:
        with trusting_torchscript(trust_torchscript):
            return _from_weights(base, weights, hidden, input, layers, bidirectional, proj_size, prefix, dtype)
    if hidden is None or input is None:
        raise GradflowError("give hidden and input sizes (or weights)")
    H, M = positive_int(hidden, "hidden size"), positive_int(input, "input size")
    L = positive_int(layers, "layers")
    P = positive_int(proj_size, "proj_size", minimum=0)
    if P and P >= H:
        raise GradflowError(f"proj_size must be smaller than hidden ({H}), got {P} (as in PyTorch)")
    D = 2 if bidirectional else 1
    rows = []
    for lay in range(L):
        m_l = M if lay == 0 else D * (P or H)
        row = []
        for d in range(D):
            if P:
                if init not in (None, "pytorch") or gain != 1.0:
                    raise GradflowError("a projected LSTM is initialised as PyTorch does: no init/gain")
                rng = np.random.default_rng(seed + 2 * lay + d)
                G, k = len(base.recorded.gates), 1 / math.sqrt(H)
                plain = {"weight_ih": rng.uniform(-k, k, (G * H, m_l)), "weight_hh": rng.uniform(-k, k, (G * H, P)),
                         "bias_ih": rng.uniform(-k, k, G * H), "bias_hh": rng.uniform(-k, k, G * H),
                         "weight_hr": rng.uniform(-k, k, (P, H))}
            else:
                plain = to_state_dict(init_weights(base, H, m_l, scheme=init, seed=seed + 2 * lay + d, gain=gain))
            row.append(_layer(base, plain, lay, DIRECTIONS[d], P, dtype, "initialised weights"))
        rows.append(tuple(row))
    return StackedNetwork(base, rows, proj_size=P)


def _layer(base: Cell, plain: Mapping[str, Any], lay: int, d: str, P: int, dtype, what: str) -> Layer:
    c = projected(base) if P else base
    arrays, H, M = _layer_arrays(c, plain, f"{what}, layer {lay} ({d})", dtype)
    sizes = tuple((P if (P and s == "h") else H) for s in c.states)
    return Layer(c, lay, d, H, M, sizes, arrays)


def inspect_module(cell: str | Cell, weights: Any, prefix: str | None = None) -> tuple[Module, str]:
    """The recurrent module in ``weights`` (module, state_dict, checkpoint, ``.pt``/``.npz`` path)
    with all its layers and directions, and how to name the source in messages."""
    import os

    base = get_cell(cell)
    if isinstance(weights, (str, os.PathLike)) and is_keras_path(os.fspath(weights)):  # a Keras 3 stack
        return keras_module(base, os.fspath(weights), prefix), f"weights file {os.fspath(weights)}"
    if isinstance(weights, (str, os.PathLike)):
        state, what = read_weights_file(os.fspath(weights)), f"weights file {os.fspath(weights)}"
    elif hasattr(weights, "state_dict") and callable(weights.state_dict):
        state, what = weights.state_dict(), f"module {type(weights).__name__}"
    elif isinstance(weights, Mapping):
        state, what = weights, f"state_dict for {base.name}"
    else:
        raise GradflowError(f"cannot read weights from {type(weights).__name__}")
    return select_module(base, weights, state, what=what, prefix=prefix), what


def _from_weights(base, weights, hidden, input, layers, bidirectional, proj_size, prefix, dtype):
    mod, what = inspect_module(base, weights, prefix)
    rows = []
    for lay in range(mod.layers):
        rows.append(tuple(_layer(base, mod.arrays[(lay, d)], lay, d, mod.proj_size, dtype, what)
                          for d in DIRECTIONS[:2 if mod.bidirectional else 1]))
    net = StackedNetwork(base, rows, proj_size=mod.proj_size, batch_first=bool(mod.batch_first),
                         last_only=mod.last_only)
    for name, want, got in (("hidden", hidden, net.hidden), ("input", input, net.input)):
        if want is not None and want != got:
            raise GradflowError(f"{name} size {want} does not match the weights' {name} size {got}")
    for lay in range(1, mod.layers):
        for L_ in rows[lay]:
            if L_.input != net.output_size_of(lay - 1):
                raise GradflowError(f"{what}: layer {lay} reads {L_.input} features, layer {lay - 1} "
                                    f"gives {net.output_size_of(lay - 1)}")
    given = (("layers", layers not in (1, mod.layers)),
             ("bidirectional", bidirectional and not mod.bidirectional),
             ("proj_size", proj_size not in (0, mod.proj_size)))
    for name, bad in given:
        if bad:
            raise GradflowError(f"{name} contradicts the weights in {what} ({mod.layers} layer(s), "
                                f"{'bidirectional' if mod.bidirectional else 'one direction'}, "
                                f"proj_size {mod.proj_size})")
    if mod.dropout:
        note(f"{what}: dropout {mod.dropout} between layers is ignored (the network is analysed in eval mode)")
    if mod.batch_first:
        note(f"{what}: the module was built with batch_first=True; stacked_flow reads inputs as "
             "(batch, T, m) for it, as the module does (batch_first=False for (T, batch, m))")
    return net


# -- the loss gradient: reverse accumulation through the whole network ----------------------------
def _own(d: int, k: int, T: int) -> int:
    """Index (0-based, original time t − 1) of own-clock step k (1 ≤ k ≤ T) of direction d."""
    return k - 1 if d == 0 else T - k


def top_cotangents(net: StackedNetwork, traj: StackTrajectory, cotangents=None):
    """∂L/∂y_t (T, B, n_top) for the top output y_t; default L = Σ y_T: ones at t = T, else 0
    (L = Σ ŷ of the model's last output when ``net.last_only``, :func:`model_cotangents`)."""
    xp, T, B, K = net.xp, traj.steps, traj.batch, net.output_size
    if cotangents is None and net.last_only:
        return xp.asarray(model_cotangents(net, traj), dtype=net.dtype)
    if cotangents is None:
        g = np.zeros((T, B, K))
        g[-1] = 1.0
        return xp.asarray(g, dtype=net.dtype)
    if hasattr(cotangents, "detach") or not hasattr(cotangents, "dtype"):
        cotangents = real_array(cotangents, "cotangents")
    check_dtype(cotangents.dtype, "cotangents")
    g = xp.asarray(cotangents)
    if tuple(g.shape) != (T, B, K):
        raise GradflowError(f"cotangents must have shape (T, batch, n_top) = {(T, B, K)}, "
                            f"got {tuple(g.shape)}")
    if not bool(xp.all(xp.isfinite(g))):
        raise GradflowError("cotangents contain NaN or inf")
    return xp.astype(g, net.dtype)


def model_cotangents(net: StackedNetwork, traj: StackTrajectory, loss: Loss = "sum", head: Any = None,
                     targets: Any = None) -> np.ndarray:
    """∂L/∂y_t (T, B, n_top) of a loss on the model's output (:func:`gradflow._numeric.loss.cotangents`).

    The output is the top layer's sequence y_t = [h^(f)_t ; h^(r)_t], or, when ``net.last_only``
    (a Keras top layer with return_sequences=False), its last step on each direction's own
    clock, ŷ = [h^(f)_T ; h^(r)_1]: the loss then reads ŷ, and its gradient goes to y_T's forward
    half and y_1's reverse half (L = Σ ŷ by default; ``"every"`` has no sequence to read)."""
    Y = to_host(traj.outputs[-1])
    if not net.last_only:
        return loss_cotangents(Y, loss, head, targets)
    if loss == "every":
        raise GradflowError("the model's top recurrent layer returns its last step alone (return_sequences="
                            "False): the loss 'every' has no output at every step to read; pass 'last' or 'sum'")
    top = net.layers[-1]
    fw = top[0].output.stop - top[0].output.start
    last = np.array(Y[-1:], dtype=np.float64)
    last[0, :, fw:] = Y[0, :, fw:]                     # the reverse direction's last step is t = 1
    g1 = loss_cotangents(last, loss, head, targets)[0]
    g = np.zeros(Y.shape)
    g[-1, :, :fw] = g1[:, :fw]
    g[0, :, fw:] += g1[:, fw:]
    return g


def _combine(xp, X, ex, Y, ey):
    """X·10^ex + Y·10^ey as (mantissa, scale): scales (B,) on the host; a zero term (its scale
    −∞, or its mantissa all zeros) does not set the scale, so the other is not flushed to 0."""
    axes = tuple(range(1, X.ndim))
    ex = np.where(to_host(xp.any(X != 0, axis=axes)), ex, -np.inf)
    ey = np.where(to_host(xp.any(Y != 0, axis=axes)), ey, -np.inf)
    e = np.maximum(ex, ey)
    e = np.where(np.isfinite(e), e, 0.0)
    shape = (-1,) + (1,) * (X.ndim - 1)
    with np.errstate(under="ignore"):
        fx, fy = 10.0 ** (ex - e), 10.0 ** (ey - e)
    return (X * xp.asarray(fx.reshape(shape), dtype=X.dtype)
            + Y * xp.asarray(fy.reshape(shape), dtype=Y.dtype)), e


def _renormalise(xp, a, e):
    """a (B, N) scaled to max |a_i| = 1, its log10 scale moved into e; −∞ for a zero row."""
    big = to_host(xp.max(xp.abs(a), axis=-1)).astype(np.float64)
    live = big > 0
    a = a / xp.asarray(np.where(live, big, 1.0)[:, None], dtype=a.dtype)
    with np.errstate(divide="ignore"):
        return a, np.where(live, e + np.log10(np.where(live, big, 1.0)), -np.inf)


def _scaled_gradients(net: StackedNetwork, traj: StackTrajectory, cotangents=None) -> dict:
    """:func:`stacked_gradients` carried scaled: ``(layer, direction)`` → (Â, E) with
    ∂L/∂s_k = Â[k]·10^E[k], Â (T + 1, B, N_l), E (T + 1, B) (NumPy; −∞ for an exact zero), so that
    gradients far below float64's smallest number keep their value."""
    xp, T, B = net.xp, traj.steps, traj.batch
    above = top_cotangents(net, traj, cotangents)  # ∂L/∂(output of the current layer), original time
    F = np.zeros((T, B))  # its log10 scale per step
    out: dict = {}
    for l in range(net.num_layers - 1, -1, -1):
        row = net.layers[l]
        down = xp.zeros((T, B, row[0].input), dtype=net.dtype)
        DF = np.full((T, B), -np.inf)
        col = 0
        for d, lay in enumerate(row):
            key = (l, DIRECTIONS[d])
            h = lay.output
            width = h.stop - h.start
            envs = traj.envs[key]
            A = xp.zeros((T + 1, B, lay.state_size), dtype=net.dtype)
            E = np.full((T + 1, B), -np.inf)
            a = xp.zeros((B, lay.state_size), dtype=net.dtype)
            e = np.full(B, -np.inf)
            for k in range(T, -1, -1):
                if k < T:
                    a = (xp.matrix_transpose(lay.jacobian(envs[k])) @ a[..., None])[..., 0]
                if k >= 1:
                    t = _own(d, k, T)
                    g = xp.zeros((B, lay.state_size), dtype=net.dtype)
                    g[:, h] = above[t, :, col:col + width]
                    a, e = _combine(xp, a, e, g, F[t])
                a, e = _renormalise(xp, a, e)
                A[k], E[k] = a, e
            for k in range(1, T + 1):
                K = lay.input_jacobian(envs[k - 1])
                t = _own(d, k, T)
                down[t], DF[t] = _combine(xp, down[t], DF[t], (xp.matrix_transpose(K) @ A[k][..., None])[..., 0], E[k])
            out[key] = (A, E)
            col += width
        above, F = down, DF
    return out


def _unscaled(xp, A, E):
    with np.errstate(under="ignore", over="ignore"):
        return A * xp.asarray(10.0 ** np.where(np.isfinite(E), E, -np.inf)[..., None], dtype=A.dtype)


def _plain(xp, A, E, what: str):
    """A·10^E as plain values, refused when a non-zero row would not survive: its largest entry
    (|Â| = 1 after :func:`_renormalise`, so 10^E) below the dtype's smallest normal number (read as
    0 or with digits lost) or above its largest (inf). Exact zeros (E = −∞) are plain zeros."""
    info = np.finfo(np.dtype(A.dtype))
    lo, hi = math.log10(float(info.tiny)), math.log10(float(info.max))
    live = np.isfinite(E)
    bad = live & ((E < lo) | (E > hi))
    if bad.any():
        k, b = (int(i) for i in np.argwhere(bad)[0])
        side = (f"below {info.dtype}'s smallest normal number ({float(info.tiny):.3g}): as plain values it "
                f"would read as 0") if E[k, b] < lo else \
            f"above {info.dtype}'s largest number ({float(info.max):.3g}): as plain values it would be inf"
        raise GradflowError(f"{what} at k = {k} (batch {b}) is about 1e{E[k, b]:.1f} in its largest entry, "
                            f"{side} ({int(bad.sum())} such rows); pass scaled=True for (mantissa, log10 scale) "
                            f"pairs, ∂L/∂s_k = A[k]·10^E[k], or read stacked_flow's log10 norms")
    return _unscaled(xp, A, E)


def _log10_scaled_norms(xp, A, E, rows=slice(None)) -> np.ndarray:
    """log10 ‖A[k][rows]‖·10^E[k] per batch element, (B, K) from A (K, B, N), E (K, B)."""
    return _log10_norms(xp, A[..., rows]) + E.T


def stacked_gradients(net: StackedNetwork, traj: StackTrajectory, cotangents=None, *,
                      scaled: bool = False) -> dict:
    """∂L/∂s^(l,d)_k for every layer, direction and own-clock step k = 0…T (reverse accumulation).

    The adjoint of a state node collects both of its consumers:

        ā^(l)_k = ḡ^(l)_k + J^(l)ᵀ_{k+1} ā^(l)_{k+1},     ḡ^(l)_k = E (∂L/∂x^(l+1)_k)  (its h rows),
        ∂L/∂x^(l)_t = Σ_d K^(l,d)ᵀ_t ā^(l,d)_t,

    layer by layer from the top, where the top layer's ḡ is the cotangent ∂L/∂y_t
    (:func:`top_cotangents`). The reverse direction accumulates over its own (reversed) clock.
    The recursion is carried scaled (every vector with its log10 scale apart), so values far
    below float64's smallest number (long T) keep their digits.

    Arguments:
        scaled: return each gradient as a pair (Â, E) with ∂L/∂s_k = Â[k]·10^E[k] (Â (T + 1, B, N_l),
            largest |entry| 1 per row; E (T + 1, B) log10 scales on the host, −∞ for an exact 0),
            as :func:`stacked_flow` keeps its norms; default: the plain values.

    Returns:
        ``(layer, direction)`` → (T + 1, B, N_l) array (or the pair (Â, E)), index k on the
        direction's own clock.

    Raises:
        GradflowError: plain values asked for, and some ∂L/∂s_k, not exactly 0, is below the
            dtype's smallest normal number (it would read as 0) or above its largest: pass
            ``scaled=True``.
    """
    got = _scaled_gradients(net, traj, cotangents)
    if scaled:
        return got
    return {key: _plain(net.xp, A, E, f"stacked_gradients: ∂L/∂s of layer {key[0]} {key[1]}")
            for key, (A, E) in got.items()}


def _scaled_state_gradient(net: StackedNetwork, traj: StackTrajectory, cotangents=None):
    """:func:`stacked_state_gradient` carried scaled: (Â (T+1, B, N), E (T+1, B)), A = Â·10^E."""
    xp, T, B = net.xp, traj.steps, traj.batch
    g = top_cotangents(net, traj, cotangents)
    top = net.layers[-1][0]
    off = net.state_size - top.state_size
    h = slice(off + top.output.start, off + top.output.stop)
    A = xp.zeros((T + 1, B, net.state_size), dtype=net.dtype)
    E = np.full((T + 1, B), -np.inf)
    a = xp.zeros((B, net.state_size), dtype=net.dtype)
    e = np.full(B, -np.inf)
    for k in range(T, -1, -1):
        if k < T:
            a = (xp.matrix_transpose(net.stacked_jacobian(traj, k + 1)) @ a[..., None])[..., 0]
        if k >= 1:
            gk = xp.zeros((B, net.state_size), dtype=net.dtype)
            gk[:, h] = g[k - 1]
            a, e = _combine(xp, a, e, gk, np.zeros(B))
        a, e = _renormalise(xp, a, e)
        A[k], E[k] = a, e
    return A, E


def stacked_state_gradient(net: StackedNetwork, traj: StackTrajectory, cotangents=None, *, scaled: bool = False):
    """∂L/∂s_k for the whole stacked state s_k (unidirectional networks), k = 0…T, (T+1, B, N).

    Here s_k is the state the stack carries from step k to step k + 1: the recursion is
    a_k = g_k + J_{k+1}ᵀ a_{k+1} with J the whole-stack Jacobian and g_k the cotangent in the top
    layer's h rows. A lower layer's part differs from its node adjoint of
    :func:`stacked_gradients` by the path into the layer above at the same step, which a change of
    the carried state s_k does not take. Carried scaled: ``scaled=True`` returns (Â, E) with
    ∂L/∂s_k = Â[k]·10^E[k] (see :func:`stacked_gradients`); plain values that would underflow
    below the dtype's smallest normal number (or overflow) are a :class:`GradflowError`.
    """
    A, E = _scaled_state_gradient(net, traj, cotangents)
    return (A, E) if scaled else _plain(net.xp, A, E, "stacked_state_gradient: ∂L/∂s")


# -- products and curves --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Block:
    a: int
    b: int
    kind: str
    fn: Any


@dataclass(frozen=True)
class _ChainKernels:
    blocks: tuple
    carousel: tuple = ()


class _Chain:
    """What :func:`gradflow._numeric.flow.products` needs of a network, for a Jacobian given as a
    function of the step: one dense N × N block."""

    def __init__(self, xp, dtype, N: int, jac: Callable[[int], Any]):
        self.xp, self.dtype, self.hidden, self.state_size = xp, dtype, N, N
        self.layout = StateLayout(("s",), (N,))  # the whole state as one block
        self.kernels = _ChainKernels((_Block(0, 0, "dense", None),))
        self._jac = jac

    def step_env(self, traj, t: int) -> int:
        return t

    def fill_jacobian(self, J, env, truncated: bool = False):
        J[...] = self._jac(env)
        return J


@dataclass
class _ChainTrajectory:
    steps: int
    states: list


def _log10_norms(xp, A) -> np.ndarray:
    """log10 ‖A[k]‖ per batch element, (B, K) from (K, B, N)."""
    sq = to_host(xp.sum(A * A, axis=-1))
    with np.errstate(divide="ignore"):
        return 0.5 * np.log10(sq).T


@dataclass
class LayerFlow:
    """Curves of one layer, one direction (arrays (B, ·), batch first).

    Attributes:
        layer, direction: which; state_size: N_l; hidden: the layer's width n_l.
        curves: ``log10_norm_2``/``log10_norm_fro`` of the layer's own product
            ∂s^(l,d)_T/∂s^(l,d)_k = J^(l)_T ⋯ J^(l)_{k+1} (its inputs held fixed; on its own clock),
            and ``log10_grad_norm`` = log10 ‖∂L/∂s^(l,d)_k‖ (the node adjoint), k = 0…T−1.
        log10_grad_h: log10 ‖∂L/∂h^(l,d)_k‖ (the layer's output rows of the adjoint), k = 0…T.
        log10_grad_states: the same for every state of the cell (``{"h": …, "c": …}``).
    """

    layer: int
    direction: str
    state_size: int
    curves: Curves
    log10_grad_h: Any
    log10_grad_states: dict = field(default_factory=dict)
    hidden: int = 0  # the layer's own width n_l (a Keras stack may change it from layer to layer)

    def time(self, k) -> Any:
        """Original time t of own-clock step k (reverse: t = T + 1 − k)."""
        T = self.log10_grad_h.shape[-1] - 1
        return k if self.direction == "forward" else T + 1 - np.asarray(k)


@dataclass
class StackedFlow:
    """Gradient flow of a stacked (and/or bidirectional) network.

    Attributes:
        cell, hidden, steps, batch, num_layers, bidirectional, proj_size: what was measured.
        full: whole-stack curves of ∂s_T/∂s_k (all layers' states) and ‖∂L/∂s_k‖ (the carried
            stacked state, :func:`stacked_state_gradient`); None for a bidirectional network.
        layers: one :class:`LayerFlow` per layer and direction (layer 0 first, forward first).
        lyapunov: leading Lyapunov exponents of the whole stack (unidirectional), batch mean.
    """

    cell: str
    hidden: int
    steps: int
    batch: int
    num_layers: int
    bidirectional: bool
    proj_size: int
    full: Curves | None
    layers: list[LayerFlow]
    lyapunov: np.ndarray | None = None
    loss: str = "sum"
    dtype: str = "float64"  # of the products (always exact N x N products: mode "exact")

    def grad_map(self) -> tuple[list[str], np.ndarray]:
        """Rows (top layer first) × original time t = 0…T (…T+1 with a reverse direction) of the
        batch-mean log10 ‖∂L/∂h^(l,d)_t‖: NaN where a direction has no state at t."""
        T = self.steps
        width = T + 2 if self.bidirectional else T + 1
        labels, rows = [], []
        for lf in sorted(self.layers, key=lambda x: (-x.layer, x.direction)):
            row = np.full(width, np.nan)
            g = to_host(lf.log10_grad_h).mean(axis=0)
            row[lf.time(np.arange(T + 1))] = g
            rows.append(row)
            labels.append(f"layer {lf.layer}" + (f" {lf.direction}" if self.bidirectional else ""))
        return labels, np.array(rows)

    def to_json(self) -> dict:
        """The ``gradflow flow --json`` object of a stacked network (schema in the README)."""

        def rec(curves: Curves, k: int, what: str) -> dict:
            mean = curves.mean()
            return {key: json_number(v[k], f"{what} {key} at k = {k}") for key, v in mean.items()}

        curve = [{"k": k, **rec(self.full, k, "whole stack")} for k in range(self.steps)] \
            if self.full is not None else []
        layers = []
        for lf in self.layers:
            gh = to_host(lf.log10_grad_h).mean(axis=0)
            pts = []
            for k in range(self.steps + 1):
                r: dict = {"k": k, "t": int(lf.time(k))}
                if k < self.steps:
                    r.update(rec(lf.curves, k, f"layer {lf.layer} {lf.direction}"))
                r["log10_grad_norm_h"] = json_number(gh[k], f"layer {lf.layer} log10_grad_norm_h at k = {k}")
                for st, g in lf.log10_grad_states.items():
                    if st != "h":
                        r[f"log10_grad_norm_{st}"] = json_number(to_host(g).mean(axis=0)[k],
                                                                 f"layer {lf.layer} log10_grad_norm_{st} at k = {k}")
                pts.append(r)
            layers.append({"layer": lf.layer, "direction": lf.direction,
                           "clock": "forward" if lf.direction == "forward" else "reversed",
                           "hidden": lf.hidden, "state_size": lf.state_size, "curve": pts})
        return {"cell": self.cell, "hidden": self.hidden, "steps": self.steps, "batch": self.batch,
                "mode": "exact", "dtype": self.dtype, "curve": curve,
                "lyapunov": json_exponents(self.lyapunov),
                "num_layers": self.num_layers, "bidirectional": self.bidirectional,
                "proj_size": self.proj_size, "loss": self.loss, "layers": layers}


def _product_curves(net: StackedNetwork, N: int, jac, T: int, B: int, blocks, spectral, tol) -> dict:
    chain = _Chain(net.xp, net.dtype, N, jac)
    traj = _ChainTrajectory(T, [net.xp.zeros((B, N), dtype=net.dtype)])
    g = net.xp.zeros((B, N), dtype=net.dtype)
    return sweep(chain, traj, g, spectral=spectral, tol=tol, blocks=blocks)  # type: ignore[arg-type]


def stacked_flow(net: StackedNetwork, inputs, *, initial: Any = None, cotangents=None,
                 loss: Loss | None = None, head: Any = None, targets: Any = None,
                 batch_first: bool | None = None,
                 spectral: SpectralMethod = "power", tol: float = 1e-10,
                 lyapunov: bool | int | str = True, trust_torchscript: bool = False) -> StackedFlow:
    """Measure every layer and direction of ``net`` on ``inputs`` (T, B, m), or (B, T, m) batch first.

    Per layer l and direction d: ‖∂s^(l,d)_T/∂s^(l,d)_k‖ (2 and F) of the layer's own recurrence
    on its own clock (the reverse direction's ∂s_1/∂s_{T+1−k}), ‖∂L/∂s^(l,d)_k‖ and
    ‖∂L/∂h^(l,d)_k‖ by reverse accumulation through the whole network. For a unidirectional
    network also the whole-stack curves ‖∂s_T/∂s_k‖ of the stacked state (lower block-triangular
    J_t, see :class:`StackedNetwork`), ‖∂L/∂s_k‖ and its Lyapunov exponents.

    Arguments:
        initial: initial states in PyTorch's layout, ``{"h": h0, "c": c0}`` of shape (L·D, B, size)
            (:meth:`StackedNetwork.unroll`); zeros otherwise.
        loss, head, targets: a loss on the top output y_t, as :func:`~gradflow.gradient_flow`'s
            (``"sum"`` L = Σ y_T, the default; ``"last"``/``"every"``: cross-entropy of the head, whose
            in-features are the top output's size, D·n or D·p): its cotangents
            (:func:`gradflow._numeric.loss.cotangents`).
        cotangents: instead of a loss, ∂L/∂y_t of the top layer's output for every t, (T, B, n_top) (e.g. from a
            loss on every step); default L = Σ_i (y_T)_i.
        batch_first: inputs, ``"every"`` targets and ``cotangents`` batch first ((B, T, m),
            (B, T), (B, T, n_top), as the module's outputs); default: the module's
            ``batch_first`` when the weights came from a module (said in a note), else False; the
            rule of :func:`~gradflow.gradient_flow` (:mod:`gradflow._numeric.input_layout`).
        spectral, tol, lyapunov: as :func:`~gradflow.gradient_flow`.
        trust_torchscript: read a ``head`` file that is a TorchScript archive (refused otherwise).

    Raises:
        GradflowError: before the unroll, when a layer's or the whole stack's estimated memory
            exceeds what is available (the CLI's check).
    """
    if not isinstance(net, StackedNetwork):
        raise GradflowError(f"stacked_flow needs a StackedNetwork (gradflow.stacked_network(...)), "
                            f"got {type(net).__name__}")
    bf = batch_first_of(batch_first, net.batch_first, net.cell.name)
    if bf:
        inputs, cotangents = time_first(inputs, 3), time_first(cotangents, 3)
        targets = time_first(targets, 2) if loss == "every" else targets
    shape = getattr(inputs, "shape", None) or np.shape(inputs)
    if len(shape) == 3:  # other shapes: the unroll says what is wrong
        from .size_guard import check_stacked_size

        check_stacked_size(net, int(shape[0]), int(shape[1]), np.dtype(net.dtype).itemsize, api=True)
    traj = net.unroll(inputs, initial)
    T, B = traj.steps, traj.batch
    given = cotangents is not None
    if loss is not None or head is not None or targets is not None:
        if cotangents is not None:
            raise GradflowError("give a loss (loss, head, targets) or cotangents, not both")
        with trusting_torchscript(trust_torchscript):
            cotangents = model_cotangents(net, traj, loss or "sum", head, targets)
    elif cotangents is None and net.last_only:
        cotangents = model_cotangents(net, traj, "sum")
    r = lyapunov_count(lyapunov, net.state_size)
    N = net.state_size
    with thread_limit(blas_threads(None, N * N * B)):
        grads = _scaled_gradients(net, traj, cotangents)
        own: dict = {}
        full, lyap = None, None
        if not net.bidirectional:
            # one sweep: the whole product and its diagonal blocks, which (J_t being lower
            # block-triangular) are the layers' own products J^(l)_T ⋯ J^(l)_{k+1}
            blocks, off = {"full": (slice(0, N), slice(0, N))}, 0
            for lay in net.all_layers():
                blocks[f"{lay.layer} {lay.direction}"] = (slice(off, off + lay.state_size),) * 2
                off += lay.state_size
            res = _product_curves(net, N, lambda t: net.stacked_jacobian(traj, t), T, B, blocks, spectral, tol)
            own = {key: c for key, c in res.items() if key != "full"}
            A, E = _scaled_state_gradient(net, traj, cotangents)
            full = Curves(res["full"].log10_norm_2, res["full"].log10_norm_fro,
                          _log10_scaled_norms(net.xp, A[:T], E[:T]))
            if r:
                chain = _Chain(net.xp, net.dtype, N, lambda t: net.stacked_jacobian(traj, t))
                lyap = lyapunov_exponents(chain, _ChainTrajectory(T, [net.xp.zeros((B, N), dtype=net.dtype)]),  # type: ignore[arg-type]
                                          r).mean(axis=0)
        layers = []
        for lay in net.all_layers():
            key = (lay.layer, lay.direction)
            c = own.get(f"{lay.layer} {lay.direction}")
            if c is None:
                envs = traj.envs[key]
                Nl = lay.state_size
                c = _product_curves(net, Nl, lambda t, lay=lay, envs=envs: lay.jacobian(envs[t - 1]),
                                    T, B, {"own": (slice(0, Nl), slice(0, Nl))}, spectral, tol)["own"]
            A, E = grads[key]
            c = Curves(c.log10_norm_2, c.log10_norm_fro, _log10_scaled_norms(net.xp, A[:T], E[:T]))
            per_state = {st: _log10_scaled_norms(net.xp, A, E, lay.state_slice(i))
                         for i, st in enumerate(lay.cell.states)}
            layers.append(LayerFlow(lay.layer, lay.direction, lay.state_size, c, per_state["h"], per_state,
                                    lay.hidden))
    return StackedFlow(net.cell.name, net.hidden, T, B, net.num_layers, net.bidirectional,
                       net.proj_size, full, layers, lyap,
                       "cotangents" if given and loss is None else (loss or "sum"), np.dtype(net.dtype).name)


def stacked_products(net: StackedNetwork, inputs, initial: Any = None):
    """The whole-stack products ∂s_T/∂s_k (B, N, N) for k = T−1, …, 0 (unidirectional; unscaled,
    for checks on short sequences)."""
    traj = net.unroll(inputs, initial)
    xp, N = net.xp, net.state_size
    P = xp.broadcast_to(xp.eye(N, dtype=net.dtype)[None], (traj.batch, N, N))
    out = {}
    for k in range(traj.steps - 1, -1, -1):
        P = P @ net.stacked_jacobian(traj, k + 1)
        out[k] = P
    return out


__all__ = ["Layer", "LayerFlow", "StackTrajectory", "StackedFlow", "StackedNetwork", "stacked_flow",
           "stacked_gradients", "stacked_network", "stacked_products", "stacked_state_gradient",
           "top_cotangents", "inspect_module", "model_cotangents"]
