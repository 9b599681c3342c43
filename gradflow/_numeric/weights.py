"""Weights of one cell: initialisation schemes, PyTorch state_dicts, .npz files, validation.

Parameters are keyed by the symbols of the cell's one definition (``W_{f}``, ``U_{f}``,
``b_{f}``, ``b_{hn}`` …). The PyTorch layout is derived from the same definition: the stacked
``weight_ih`` / ``weight_hh`` / ``bias_ih`` / ``bias_hh`` hold one row block per gate, in the
order the definition first uses the gates (LSTM i, f, g, o; GRU r, z, n). A merged bias b_g is
``bias_ih[g] + bias_hh[g]``; a one-sided one (GRU's b_{in}, b_{hn}) comes from its own side.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from .._checks import GradflowError, finite_float, positive_int
from .._symbolic.cell import Cell
from .._symbolic.cells import get_cell
from .._vocabulary import INIT_SCHEMES, InitScheme
from .checkpoint import Selected, select_layer
from .keras_loading import is_keras_path, read_keras_layer
from .keras_stack import keras_layer_prefix, read_keras_config
from .layout import refuse_sized_states
from .loading import check_dtype, note, read_weights_file, real_array, trusting_torchscript
from .named_weights import holds_own_names, param_shape, read_named, uses_own_names
from .reference_init import SCHEME_CELLS, reference_arrays


@dataclass(frozen=True)
class Weights:
    """The parameter arrays of one cell.

    Attributes:
        cell: the cell.
        hidden: n.
        input: m.
        arrays: parameter label (``"W_{f}"``) → array: W (n, n), U (n, m), b (n,).
    """

    cell: Cell
    hidden: int
    input: int
    arrays: Mapping[str, Any]

    def __post_init__(self):
        validate(self.cell, self.hidden, self.input, self.arrays)

    def env(self) -> dict:
        """Symbol → array (and the sizes), the environment compiled expressions read."""
        from .._symbolic.cell import m, n

        out: dict = {n: self.hidden, m: self.input}
        for p in self.cell.recorded.params:
            out[p.symbol] = self.arrays[p.symbol.name]
        return out

    def to(self, xp, dtype=None) -> Weights:
        """The same weights as arrays of namespace ``xp`` (e.g. cupy), optionally cast."""
        arrs = {k: xp.asarray(to_numpy(v) if xp is np else v) for k, v in self.arrays.items()}
        if dtype is not None:
            arrs = {k: a.astype(dtype) for k, a in arrs.items()}
        return Weights(self.cell, self.hidden, self.input, arrs)


def validate(cell: Cell, n: int, m: int, arrays: Mapping[str, Any]) -> None:
    """Every parameter present, with the right shape, and finite; ``ValueError`` otherwise."""
    positive_int(n, "hidden size")
    positive_int(m, "input size")
    names = [p.symbol.name for p in cell.recorded.params]
    missing = [k for k in names if k not in arrays]
    if missing:
        raise GradflowError(f"{cell.name}: missing parameters {', '.join(missing)}")
    for p in cell.recorded.params:
        a = arrays[p.symbol.name]
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise GradflowError(f"{cell.name}: {p.symbol.name} is a {type(a).__name__}, not an array")
        check_dtype(a.dtype, f"{cell.name}: {p.symbol.name}")
        want = param_shape(p, n, m)
        if tuple(a.shape) != want:
            raise GradflowError(f"{cell.name}: {p.symbol.name} has shape {tuple(a.shape)}, expected {want} "
                             f"(hidden={n}, input={m})")
        if not bool(_all_finite(a)):
            raise GradflowError(f"{cell.name}: {p.symbol.name} contains NaN or inf")


def _all_finite(a) -> bool:
    from array_api_compat import array_namespace

    xp = array_namespace(a)
    return bool(xp.all(xp.isfinite(a)))


# -- initialisation -----------------------------------------------------------------------------
def _orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))[None, :]


def init_weights(cell: str | Cell, hidden: int, input: int, *, scheme: InitScheme | None = None,
                 seed: int = 0, gain: float = 1.0, forget_bias: float | None = None,
                 dtype: Any = np.float64, xp: Any = np) -> Weights:
    """Random weights for ``cell`` by an initialisation scheme.

    Arguments:
        cell: cell or its name.
        hidden, input: n and m.
        scheme: ``"pytorch"`` (PyTorch's default: every entry U(±1/√n); a merged bias, which
            PyTorch stores twice as b_ih + b_hh, is the sum of two such draws), ``"glorot"`` (uniform
            ±gain·√(6/(fan_in+fan_out)) per gate matrix, zero biases), ``"orthogonal"`` (W = gain·Q,
            Q orthogonal; U Glorot; zero biases), ``"identity"`` (W = gain·I, U ~ N(0, 0.001²),
            zero biases: the IRNN of Le et al. 2015), ``"gaussian"`` (entries N(0, gain²/fan_in),
            zero biases). Default: the cell's own (``identity`` for ``irnn``, else ``pytorch``).
            The state-space cells' reference inits (every parameter as the reference code draws
            it, rows shared; see :mod:`gradflow._numeric.reference_init`): ``"mamba"``
            (``mamba-zoh``/``mamba-euler``), ``"s4d-lin"``/``"s4d-real"`` (``s4d``), with
            channels d = m and state size N = n / m; ``"rg-lru"`` (Griffin, m = n);
            ``"lru-ring"`` (``lru``: |λ|² ~ U[0, 1], see :func:`~gradflow.lru_ring_init`). No ``gain``.
        seed: random seed (NumPy ``default_rng``).
        gain: scale of W (and of U for glorot/gaussian).
        forget_bias: set the forget-gate bias b_f (cells with a forget gate only).
        dtype: array dtype (float64 default).
        xp: array namespace of the result (numpy, cupy).

    Returns:
        :class:`Weights`.
    """
    cell = get_cell(cell)
    n, m = positive_int(hidden, "hidden size"), positive_int(input, "input size")
    scheme = cast(InitScheme, scheme or cell.default_init)
    if scheme not in INIT_SCHEMES:
        raise GradflowError(f"unknown init scheme {scheme!r}; known: {', '.join(INIT_SCHEMES)}")
    gain = finite_float(gain, "gain")
    if gain < 0:  # the scale of W, σ_max of each gate's W under the orthogonal init
        raise GradflowError(f"gain must be a non-negative number (the scale of W), got {gain!r}")
    seed = positive_int(seed, "seed", 0)
    if forget_bias is not None:
        forget_bias = finite_float(forget_bias, "forget bias")
    if scheme in SCHEME_CELLS:  # a state-space cell's reference init: every parameter drawn by it
        if gain != 1.0:
            raise GradflowError(f"gain does not apply to the {scheme} init (it draws every parameter "
                                "as the reference code does)")
        if forget_bias is not None:
            raise GradflowError(f"{cell.name} has no forget gate; a forget bias applies to the LSTM")
        ref = reference_arrays(scheme, cell.name, n, m, seed)
        w = Weights(cell, n, m, {k: v.astype(dtype) for k, v in ref.items()})
        return w if xp is np else w.to(xp)
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for p in cell.recorded.params:
        shape = param_shape(p, n, m)
        fan_in = shape[1] if len(shape) == 2 else n
        if scheme == "pytorch" and p.kind == "b" and p.bias == "merged" and cell.bias_copies.get("pytorch") == 2:
            # PyTorch draws bias_ih and bias_hh, each U(±1/√n); the cell sees their sum (variance 2/(3n))
            a = rng.uniform(-1 / math.sqrt(n), 1 / math.sqrt(n), (2, *shape)).sum(axis=0)
        elif scheme == "pytorch":  # gain scales W only (1: PyTorch's own default)
            a = rng.uniform(-1 / math.sqrt(n), 1 / math.sqrt(n), shape) * (gain if p.kind in "Ww" else 1.0)
        elif p.kind == "w":  # element-wise recurrent weight: gain·1 (identity), else U(±gain/√n)
            a = gain * (np.ones(shape) if scheme == "identity" else rng.uniform(-1, 1, shape) / math.sqrt(n))
        elif p.kind == "b":
            a = np.zeros(shape)
        elif scheme == "gaussian":
            a = rng.standard_normal(shape) * gain / math.sqrt(fan_in)
        elif scheme == "orthogonal" and p.kind == "W":
            a = gain * _orthogonal(rng, n)
        elif scheme == "identity" and p.kind == "W":
            a = gain * np.eye(n)
        elif scheme == "identity":
            a = rng.standard_normal(shape) * 0.001
        else:  # glorot, and U of orthogonal
            limit = gain * math.sqrt(6.0 / (shape[0] + shape[1]))
            a = rng.uniform(-limit, limit, shape)
        arrays[p.symbol.name] = a
    if forget_bias is not None:
        if not cell.has_forget_gate:
            raise GradflowError(f"{cell.name} has no forget gate; a forget bias applies to the LSTM")
        bias = next(p for p in cell.recorded.params if p.symbol.name == cell.FORGET_BIAS)
        arrays[cell.FORGET_BIAS] = np.full(param_shape(bias, n, m), float(forget_bias))
    w = Weights(cell, n, m, {k: v.astype(dtype) for k, v in arrays.items()})
    return w if xp is np else w.to(xp)


# -- PyTorch layout -----------------------------------------------------------------------------
def from_state_dict(cell: str | Cell, state: Mapping[str, Any], *, prefix: str | None = None,
                    layer: int | None = None, direction: str | None = None, dtype: Any = np.float64,
                    xp: Any = np) -> Weights:
    """Weights from a PyTorch ``state_dict`` (``nn.*Cell`` or one layer of ``nn.RNN/LSTM/GRU``).

    Arguments:
        cell: the cell the weights are for.
        state: mapping with ``weight_ih`` (G·n, m), ``weight_hh`` (G·n, n) and, unless the module
            had ``bias=False``, ``bias_ih`` and ``bias_hh`` (G·n,) — or the same names with ``_l0``,
            under any prefix (``rnn.weight_ih_l0`` in a whole model's state_dict), possibly nested
            in a checkpoint (``{'model': state_dict, 'optimizer': …}``). Values: tensors or arrays.
        prefix: which recurrent module, when the state holds several (e.g. ``"rnn"``).
        layer: which layer of a stacked module (refused without it when there are several).
        direction: ``"forward"`` for a bidirectional module (refused without it).
        dtype, xp: dtype and array namespace of the result.

    Returns:
        :class:`Weights` keyed by the cell's parameter symbols.
    """
    cell = get_cell(cell)
    _require_torch_layout(cell)
    sel = select_layer(cell, state, state, what=f"state_dict for {cell.name}", prefix=prefix,
                       layer=layer, direction=direction)
    return _from_plain(cell, sel.state, dtype, xp)


def _from_plain(cell: Cell, keys_state: Mapping[str, Any], dtype: Any, xp: Any) -> Weights:
    """Weights from the plain ``weight_ih``/``weight_hh``/``bias_ih``/``bias_hh`` of one layer."""
    state = keys_state
    keys = {k: k for k in state}
    missing = [k for k in ("weight_ih", "weight_hh") if k not in keys]
    if missing:
        raise GradflowError(f"state_dict for {cell.name} lacks {', '.join(missing)} "
                         f"(found: {', '.join(sorted(state)) or 'nothing'})")
    has_bias = [k in keys for k in ("bias_ih", "bias_hh")]
    if any(has_bias) and not all(has_bias):
        raise GradflowError(f"state_dict for {cell.name} has {'bias_ih' if has_bias[0] else 'bias_hh'} "
                         f"but not {'bias_hh' if has_bias[0] else 'bias_ih'}")
    half: list[str] = []
    arr = {k: real_array(state[v], f"{cell.name}: {v}", half).astype(dtype) for k, v in keys.items()}
    if half:
        note(f"{cell.name}: the weights are {'/'.join(sorted(set(half)))}; converted to {np.dtype(dtype).name}")
    gates = cell.recorded.gates
    G = len(gates)
    wih, whh = arr["weight_ih"], arr["weight_hh"]
    if wih.ndim != 2 or whh.ndim != 2 or wih.shape[0] % G or whh.shape[0] != wih.shape[0]:
        raise GradflowError(f"{cell.name}: weight_ih {wih.shape} and weight_hh {whh.shape} do not stack "
                         f"{G} gate(s) ({', '.join(str(g) for g in gates)})")
    n, m = wih.shape[0] // G, wih.shape[1]
    if whh.shape != (G * n, n):
        raise GradflowError(f"{cell.name}: weight_hh has shape {whh.shape}, expected {(G * n, n)}")
    for k in ("bias_ih", "bias_hh"):
        if k in arr and arr[k].shape != (G * n,):
            raise GradflowError(f"{cell.name}: {k} has shape {arr[k].shape}, expected {(G * n,)}")

    def chunk(name, g):
        i = gates.index(g)
        return arr[name][i * n:(i + 1) * n] if name in arr else np.zeros((n,) if "bias" in name else (n, n))

    out = {}
    for p in cell.recorded.params:
        if p.kind == "W":
            a = chunk("weight_hh", p.gate)
        elif p.kind == "U":
            a = chunk("weight_ih", p.gate)
        elif p.bias == "input":
            a = chunk("bias_ih", p.gate)
        elif p.bias == "hidden":
            a = chunk("bias_hh", p.gate)
        else:
            a = chunk("bias_ih", p.gate) + chunk("bias_hh", p.gate)
        out[p.symbol.name] = np.ascontiguousarray(a)
    w = Weights(cell, n, m, out)
    return w if xp is np else w.to(xp)


def _require_torch_layout(cell: Cell) -> None:
    """The stacked weight_ih/weight_hh layout holds W, U and b only; refuse other parameters."""
    other = [p.symbol.name for p in cell.recorded.params if p.kind not in ("W", "U", "b")]
    if other:
        raise GradflowError(f"{cell.name} has element-wise weights ({', '.join(other)}) that the PyTorch "
                            "weight_ih/weight_hh layout does not hold; build Weights(cell, n, m, arrays) "
                            "keyed by the parameter names instead")


def to_state_dict(weights: Weights) -> dict[str, np.ndarray]:
    """The PyTorch layout of ``weights`` (merged biases go to ``bias_ih``, ``bias_hh`` = 0)."""
    cell, n = weights.cell, weights.hidden
    refuse_sized_states(cell, "the PyTorch state_dict layout (weight_ih/weight_hh)",
                        "no framework module holds this cell; its arrays are Weights.arrays, by parameter name")
    _require_torch_layout(cell)
    gates = cell.recorded.gates
    G, m = len(gates), weights.input
    out = {"weight_ih": np.zeros((G * n, m)), "weight_hh": np.zeros((G * n, n)),
           "bias_ih": np.zeros(G * n), "bias_hh": np.zeros(G * n)}
    for p in cell.recorded.params:
        i = gates.index(p.gate)
        rows = slice(i * n, (i + 1) * n)
        a = to_numpy(weights.arrays[p.symbol.name])
        key = {"W": "weight_hh", "U": "weight_ih"}.get(p.kind) or (
            "bias_hh" if p.bias == "hidden" else "bias_ih")
        out[key][rows] = a
    return out


def to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    elif hasattr(a, "get"):  # cupy array
        a = a.get()
    return np.asarray(a)


def load_weights(cell: str | Cell, source: Any, *, prefix: str | None = None, layer: int | None = None,
                 direction: str | None = None, dtype: Any = np.float64, xp: Any = np,
                 trust_torchscript: bool = False) -> Weights:
    """Weights from a ``torch.nn`` module, a state_dict or checkpoint, or a ``.pt`` / ``.npz`` file.

    ``.pt`` files need torch (an optional dependency); ``.npz`` files hold the same keys as a
    PyTorch state_dict (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``, or ``*_l0``, under
    any prefix). The recurrent module is found under any prefix (a whole model, a checkpoint
    ``{'model': …}``); ``prefix``, ``layer`` and ``direction`` pick one when there is a choice
    (see :func:`from_state_dict`). A module is also checked against ``cell`` (an ``nn.GRU`` is
    gradflow's ``gru``, an ``nn.RNN(nonlinearity='relu')`` its ``relu-rnn``). A cell with weights
    that layout cannot hold (IndRNN's u, the LRU's ν, θ, γ_log, B_re, B_im), or a source keyed by
    the cell's own parameter names (``W_i`` or ``W_{i}``, ``nu``, ``A``), is read by those names
    (:mod:`gradflow._numeric.named_weights`).

    Keras 3 files (``.weights.h5``, ``.keras``; need h5py) are read too: LSTM → ``lstm``,
    GRU(reset_after=True) → ``gru``, GRU(reset_after=False) → ``gru-cho``, SimpleRNN → ``tanh-rnn``
    (``relu-rnn``, ``sigmoid-rnn`` by its activation); ``prefix`` names the layer (the user's name
    in a ``.keras`` file, Keras' saved name such as ``lstm_1`` in either).

    A TorchScript archive is refused unless ``trust_torchscript=True``: ``torch.jit.load`` can run
    the code an archive holds (it has no safe mode), so trust only files you would run.
    """
    with trusting_torchscript(trust_torchscript):
        return load_layer(cell, source, prefix=prefix, layer=layer, direction=direction, dtype=dtype,
                          xp=xp)[0]


def load_layer(cell: str | Cell, source: Any, *, prefix: str | None = None, layer: int | None = None,
               direction: str | None = None, dtype: Any = np.float64,
               xp: Any = np) -> tuple[Weights, Selected]:
    """:func:`load_weights` and what was selected (prefix, layer, the module's batch_first)."""
    cell = get_cell(cell)
    if uses_own_names(cell) or holds_own_names(cell, source, prefix):  # IndRNN's u, the LRU's ν, θ …
        if layer not in (None, 0) or direction not in (None, "forward"):
            raise GradflowError(f"{cell.name} weights are read by parameter name: no layer or direction")
        n, m, arrays = read_named(cell, source, prefix=prefix, dtype=dtype)
        w = Weights(cell, n, m, arrays)
        return (w if xp is np else w.to(xp)), Selected(arrays, prefix or "", 0, 1, None)
    refuse_sized_states(cell, "reading PyTorch or Keras weights (weight_ih/weight_hh)",
                        "no framework module holds this cell: give its weights by parameter name "
                        "(U_q, b_q, …, w_i, b_i, w_f, b_f in a mapping or .npz)")
    _require_torch_layout(cell)
    state: Mapping[str, Any]
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if is_keras_path(path):  # Keras 3 .weights.h5 / .keras: converted to the PyTorch layout
            if layer is not None and prefix is None and read_keras_config(path) is not None:
                prefix, layer = keras_layer_prefix(path, layer), None  # the K-th layer of a .keras stack
            sel = read_keras_layer(cell, path, prefix=prefix, layer=layer, direction=direction)
            return _from_plain(cell, sel.state, dtype, xp), sel
        state = read_weights_file(path)  # every bad file is one GradflowError
        what = f"weights file {path}"
    elif hasattr(source, "state_dict") and callable(source.state_dict):
        state = source.state_dict()
        what = f"module {type(source).__name__}"
    elif isinstance(source, Mapping):
        state = source
        what = f"state_dict for {cell.name}"
    else:
        raise GradflowError(f"cannot read weights from {type(source).__name__}")
    sel = select_layer(cell, source, state, what=what, prefix=prefix, layer=layer, direction=direction)
    return _from_plain(cell, sel.state, dtype, xp), sel
