"""Keras 3 weights (``.weights.h5`` from ``model.save_weights``, ``.keras`` from ``model.save``).

Keras 3 stores a recurrent layer's cell as three arrays under ``…/<layer>/cell/vars``: ``0`` the
kernel (m, G·n), ``1`` the recurrent kernel (n, G·n), ``2`` the bias, with the gates side by
side in Keras' order:

======================  ==========  =====================  ===========================================
Keras layer             gates       bias                   gradflow cell
======================  ==========  =====================  ===========================================
LSTM                    i, f, c, o  (4n,)                  ``lstm``
GRU(reset_after=True)   z, r, h     (2, 3n): input, rec.   ``gru`` (PyTorch's GRU)
GRU(reset_after=False)  z, r, h     (3n,)                  ``gru-cho``
SimpleRNN               —           (n,)                   ``tanh-rnn`` (``relu-rnn``, ``sigmoid-rnn``)
======================  ==========  =====================  ===========================================

They are converted into the PyTorch layout gradflow reads (``weight_ih`` = kernelᵀ with the gate
blocks in the cell's order, ``weight_hh`` = recurrent kernelᵀ, ``bias_ih``/``bias_hh``), so the
one converter of :mod:`gradflow._numeric.weights` maps them onto the cell's parameters.

The HDF5 groups are named by Keras after the layer's class (``lstm``, ``lstm_1``, ``gru`` …), not
by the user's layer names. A ``.keras`` file also holds ``config.json``: its layers are matched to
the groups, so a layer can be picked by its own name, and its activations, ``go_backwards`` and
class are checked against the cell. A ``.weights.h5`` holds no configuration: Keras' default
activations are assumed (tanh; sigmoid gates), which a note says. h5py is imported only here,
inside the functions.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .._checks import GradflowError
from .._symbolic.cell import Cell
from .checkpoint import Selected
from .loading import note, real_array
from .size_guard import MEMORY_SHARE, available_bytes, human

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"

#: Keras' gate order of each layer class, in gradflow's gate names
_KERAS_GATES = {"LSTM": ("i", "f", "g", "o"), "GRU": ("z", "r", "n"), "SimpleRNN": (None,)}
_CELL_CLASSES = {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "SimpleRNN"}
_ELMAN = {"tanh": "tanh-rnn", "relu": "relu-rnn", "sigmoid": "sigmoid-rnn"}


@dataclass
class KerasLayer:
    """One recurrent cell's arrays in a Keras file, and what its configuration says (if known)."""

    path: str                       # the HDF5 group of the layer, e.g. "layers/lstm"
    arrays: list[np.ndarray]
    name: str | None = None         # the user's layer name (``.keras`` only)
    config: Mapping[str, Any] = field(default_factory=dict)
    klass: str | None = None        # LSTM, GRU, SimpleRNN (``.keras`` only)

    @property
    def label(self) -> str:
        short = self.path.removeprefix("layers/").replace("/layers/", "/")
        return f"{self.name!r} ({short})" if self.name and self.name != short else repr(short)

    def keys(self) -> set[str]:
        short = self.path.removeprefix("layers/").replace("/layers/", "/")
        return {k for k in (self.path, short, self.name) if k}


def _snake(name: str) -> str:
    """Keras' name of a saved object from its class: ``SimpleRNN`` → ``simple_rnn``."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def _unique(name: str, used: dict[str, int]) -> str:
    if name not in used:
        used[name] = 0
        return name
    used[name] += 1
    return f"{name}_{used[name]}"


_F = TypeVar("_F", bound=Callable[..., Any])


def config_errors(fn: _F) -> _F:
    """``fn`` (which reads a ``config.json``; ``what`` or the file's path among its arguments)
    with a wrongly typed entry of a hand-made or damaged configuration (a list where Keras writes
    an object, …) turned into one ``GradflowError`` instead of a traceback."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (AttributeError, TypeError) as e:
            what = next((a for a in args if isinstance(a, str) and a.startswith("weights file")),
                        f"weights file {args[0]}" if args and isinstance(args[0], str) else "the weights file")
            raise GradflowError(f"{what}: its config.json is not a Keras model configuration "
                                f"({type(e).__name__}: {e}); save the model with "
                                "model.save('model.keras')") from None

    return wrapped  # type: ignore[return-value]


def _config_layers(cfg: Mapping[str, Any], path: str, out: dict[str, tuple[str, str, Mapping[str, Any]]]) -> None:
    """HDF5 group of every recurrent cell → (user name, Keras class, layer config), walking
    nested models, ``Bidirectional`` and ``RNN(cell)`` as Keras' saving does."""
    used: dict[str, int] = {}
    for layer in cfg.get("layers", []) or []:
        if not isinstance(layer, Mapping):
            continue
        klass = str(layer.get("class_name", ""))
        conf = layer.get("config") or {}
        here = f"{path}/{_unique(_snake(klass), used)}"
        name = str(conf.get("name", ""))
        if isinstance(conf.get("layers"), list):  # a nested Sequential / Functional model
            _config_layers(conf, f"{here}/layers", out)
        elif klass == "Bidirectional":
            for side, key in (("forward_layer", "layer"), ("backward_layer", "backward_layer")):
                sub = conf.get(key) or {}
                if isinstance(sub, Mapping) and sub.get("class_name") in _KERAS_GATES:
                    out[f"{here}/{side}"] = (f"{name}/{side}", sub["class_name"], sub.get("config") or {})
        elif klass in _KERAS_GATES:
            out[here] = (name, klass, conf)
        elif klass == "RNN":
            cell = conf.get("cell") or {}
            cklass = cell.get("class_name") if isinstance(cell, Mapping) else None
            if cklass in _CELL_CLASSES:
                merged = {**(cell.get("config") or {}), "go_backwards": conf.get("go_backwards", False)}
                out[here] = (name, _CELL_CLASSES[cklass], merged)
            else:
                out[here] = (name, f"RNN({cklass})", conf)


#: the largest config.json read (a real model's is kilobytes; a deflated one may inflate to any size)
CONFIG_LIMIT = 64 << 20


def read_config_json(z: zipfile.ZipFile, what: str) -> bytes:
    """The bytes of a ``.keras`` archive's ``config.json``, its inflated size checked first."""
    size = z.getinfo("config.json").file_size
    if size > CONFIG_LIMIT:
        raise GradflowError(f"{what}: its config.json inflates to {human(size)}, far more than a Keras "
                            f"model's configuration (at most {human(CONFIG_LIMIT)} is read)")
    return z.read("config.json")


def _open_h5(path: str):
    """(h5py.File, config dict or None) of a ``.weights.h5`` or ``.keras`` file."""
    try:
        import h5py
    except ImportError:
        raise GradflowError("reading Keras files needs h5py: pip install 'gradflow-rnn[keras]'") from None
    what = f"weights file {path}"
    if not os.path.exists(path):
        raise GradflowError(f"weights file not found: {path}")
    if os.path.isdir(path):
        raise GradflowError(f"{what} is a directory (a TensorFlow SavedModel?); save the model with "
                            "model.save('model.keras') or model.save_weights('model.weights.h5')")
    if not os.path.isfile(path):  # a pipe or a device: h5py and zipfile seek in the file
        raise GradflowError(f"{what} is not a regular file (a pipe or a device); save it to a file first")
    with open(path, "rb") as f:
        head = f.read(8)
    config = None
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                if "model.weights.h5" not in names:
                    raise GradflowError(f"{what} is a zip archive without model.weights.h5: not a Keras 3 "
                                        ".keras file")
                info = z.getinfo("model.weights.h5")
                if info.file_size > available_bytes() * MEMORY_SHARE:
                    raise GradflowError(f"{what}: model.weights.h5 inflates to {human(info.file_size)}, more "
                                        "than the memory available")
                data = z.read("model.weights.h5")
                if "config.json" in names:
                    config = json.loads(read_config_json(z, what))
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, ValueError, RuntimeError) as e:
            raise GradflowError(f"{what} is not a readable .keras archive ({e})") from None
        source: Any = io.BytesIO(data)
    elif head == _HDF5_MAGIC:
        source = path
    else:
        raise GradflowError(f"{what} is neither an HDF5 file (.weights.h5) nor a .keras archive")
    try:
        return h5py.File(source, "r"), config
    except OSError as e:
        raise GradflowError(f"{what} is not a readable HDF5 file ({e})") from None


def _check_dataset(ds: Any, label: str, f: Any, spent: list[int] | None = None) -> None:
    """Refuse an HDF5 dataset whose data lie outside the file ``f`` (reached by an external link,
    external raw files, a virtual dataset: a crafted file could make gradflow read any file of the
    machine, a device or a pipe as weights), one without a shape, or one whose declared size
    exceeds the memory available (with ``spent``, the datasets read before it counted too)."""
    if getattr(ds, "external", None) or getattr(ds, "is_virtual", False) or ds.file.filename != f.filename:
        raise GradflowError(f"{label} keeps its data outside the file (an HDF5 external link, external or "
                            "virtual dataset); Keras never writes one: refusing to read it")
    if ds.shape is None:
        raise GradflowError(f"{label} is an empty HDF5 dataset (no shape), not an array")
    nbytes = int(np.prod(ds.shape, dtype=np.int64)) * np.dtype(ds.dtype).itemsize
    if nbytes > available_bytes() * MEMORY_SHARE:
        raise GradflowError(f"{label} declares {human(nbytes)} of data, more than the memory available")
    if spent is not None:
        spent[0] += nbytes
        if spent[0] > available_bytes() * MEMORY_SHARE:
            raise GradflowError(f"{label}: the file's datasets read so far declare {human(spent[0])} of "
                                "data together, more than the memory available")


def read_keras_layers(path: str) -> list[KerasLayer]:
    """Every recurrent cell (``…/cell/vars`` with a kernel and a recurrent kernel) in a Keras file."""
    what = f"weights file {path}"
    f, config = _open_h5(path)
    found: list[KerasLayer] = []
    with f:
        if "layer_names" in f.attrs or "model_weights" in f:
            raise GradflowError(f"{what} is a Keras 2 (legacy .h5) file; gradflow reads Keras 3 files: load "
                                "the model in Keras 3 and save it with model.save('model.keras')")

        spent = [0]

        def visit(name: str, obj: Any) -> None:
            if not name.endswith("/cell/vars") or not hasattr(obj, "keys"):
                return
            arrays = []
            for i in range(3):
                if str(i) not in obj:
                    break
                ds = obj[str(i)]
                label = f"{what}: {name}/{i}"
                if not hasattr(ds, "shape") or not hasattr(ds, "dtype"):
                    raise GradflowError(f"{label} is not an array")
                _check_dataset(ds, label, f, spent)  # checked before anything is read
                arrays.append(real_array(ds[()], label))
            if len(arrays) >= 2 and arrays[0].ndim == 2 and arrays[1].ndim == 2:
                found.append(KerasLayer(name.removesuffix("/cell/vars"), arrays))

        try:
            f.visititems(visit)
        except (OSError, KeyError, RuntimeError) as e:
            raise GradflowError(f"{what} cannot be read ({e})") from None
    if config is not None:
        known: dict[str, tuple[str, str, Mapping[str, Any]]] = {}
        if isinstance(config, Mapping) and isinstance(config.get("config"), Mapping):
            try:
                _config_layers(config["config"], "layers", known)
            except (AttributeError, TypeError, ValueError) as e:  # a hand-made or damaged config.json
                raise GradflowError(f"{what}: its config.json is not a Keras model configuration "
                                    f"({type(e).__name__}: {e}); save the model with "
                                    "model.save('model.keras')") from None
        for layer in found:
            if layer.path in known:
                layer.name, layer.klass, layer.config = known[layer.path]
        if known:
            _check_config_matches(known, found, what)
    return found


def _weights_words(layer: KerasLayer) -> str:
    """What a layer's arrays are, read off their shapes: ``an LSTM's, 3 units`` (4 gates)."""
    rec = layer.arrays[1]
    n = rec.shape[0]
    G = rec.shape[1] // n if n and rec.shape[1] % n == 0 else 0
    kind = {1: "a SimpleRNN's", 3: "a GRU's", 4: "an LSTM's"}.get(G, f"recurrent kernel {rec.shape}")
    return f"{kind}, {n} units"


def _check_config_matches(known: Mapping[str, tuple[str, str, Mapping[str, Any]]], found: list[KerasLayer],
                          what: str) -> None:
    """A ``.keras`` file whose config.json and model.weights.h5 disagree (a hand-edited or mixed-up
    archive) is one GradflowError naming each disagreement: a recurrent layer of the config without
    its weights group, a weights group no layer of the config names, a class whose gate count or
    a ``units`` that the weights' shapes contradict."""
    paths = {x.path for x in found}
    short = {x.path: x.path.removeprefix("layers/").replace("/layers/", "/") for x in found}
    wrong = []
    for group, (name, klass, _conf) in known.items():
        if klass in _KERAS_GATES and group not in paths:
            wrong.append(f"the config's {klass} {name!r} has no weights (no group {group} in model.weights.h5)")
    for x in found:
        if x.path not in known:
            wrong.append(f"the weights' {short[x.path]} ({_weights_words(x)}) belong to no layer of the config")
            continue
        if x.klass not in _KERAS_GATES:
            continue
        rec, n = x.arrays[1], x.arrays[1].shape[0]
        G = len(_KERAS_GATES[x.klass])
        units = x.config.get("units")
        if rec.shape[1] != G * n or (isinstance(units, int) and units != n):
            said = f" with units={units}" if isinstance(units, int) else ""
            wrong.append(f"the config's {x.klass} {x.name!r}{said} has the weights {short[x.path]} "
                         f"({_weights_words(x)})")
    if wrong:
        held = ", ".join(f"{short[x.path]} ({_weights_words(x)})" for x in found) or "no recurrent weights"
        raise GradflowError(f"{what}: its config.json and model.weights.h5 do not match: {'; '.join(wrong)} "
                            f"(the weights hold {held}); save the model again with model.save('model.keras')")


def read_keras_vars(path: str, group: str) -> list[np.ndarray]:
    """The arrays ``0``, ``1`` … under ``<group>/vars`` of a Keras file (a Dense's kernel and bias)."""
    what = f"weights file {path}"
    f, _ = _open_h5(path)
    out = []
    with f:
        vars_ = f.get(f"{group}/vars")
        if vars_ is None or not hasattr(vars_, "keys"):
            raise GradflowError(f"{what} has no arrays under {group}/vars")
        for i in range(len(vars_.keys())):
            ds = vars_.get(str(i))
            if ds is None or not hasattr(ds, "shape"):
                break
            _check_dataset(ds, f"{what}: {group}/vars/{i}", f)
            out.append(real_array(ds[()], f"{what}: {group}/vars/{i}"))
    return out


def _choose(layers: list[KerasLayer], what: str, prefix: str | None, direction: str | None,
            backward: bool = False) -> KerasLayer:
    if not layers:
        raise GradflowError(f"{what} holds no recurrent layer (no …/cell/vars with a kernel and a "
                            "recurrent kernel)")
    if prefix is not None:
        want = prefix.strip().strip("/")
        chosen = [x for x in layers if want in x.keys()]
        if not chosen:
            bi = [x for x in layers if f"{want}/forward_layer" in x.keys()]
            if bi and direction is None:
                raise GradflowError(f"{what}: {prefix!r} is bidirectional; gradflow measures one direction: "
                                    "pass --direction forward (direction='forward' in Python) to measure "
                                    "the forward direction alone")
            if bi and direction == "forward":
                return bi[0]
            raise GradflowError(f"{what} has no recurrent layer {prefix!r}; it has: "
                                f"{', '.join(x.label for x in layers)}")
        layer = chosen[0]
    elif len(layers) == 1:
        layer = layers[0]
    else:
        forward = [x for x in layers if not x.path.endswith("/backward_layer")]
        if len(forward) == 1 and (direction == "forward" or forward[0].path.endswith("/forward_layer")):
            layer = forward[0]
        else:
            raise GradflowError(f"{what} holds {len(layers)} recurrent layers: "
                                f"{', '.join(x.label for x in layers)}; pick one with --prefix NAME "
                                "(prefix='NAME' in Python)")
    if backward:  # the stacked analysis reads a Bidirectional's backward layer on its own (reversed) clock
        if not layer.path.endswith("/backward_layer"):
            raise GradflowError(f"{what}: {layer.label} is not the backward layer of a Bidirectional layer")
        return layer
    if layer.path.endswith("/backward_layer"):
        raise GradflowError(f"{what}: {layer.label} is the backward direction of a Bidirectional layer; it "
                            "runs over reversed time, which gradflow does not measure")
    if layer.path.endswith("/forward_layer") and direction is None:
        raise GradflowError(f"{what}: {layer.label} is the forward direction of a Bidirectional layer; pass "
                            "--direction forward (direction='forward' in Python) to measure it alone, "
                            "knowing the curves then ignore the backward one")
    if layer.config.get("go_backwards"):
        raise GradflowError(f"{what}: {layer.label} has go_backwards=True: it runs over reversed time, "
                            "which gradflow does not measure")
    return layer


def _keras_class(layer: KerasLayer, what: str) -> tuple[str, bool]:
    """(Keras class, reset_after) from the configuration, else from the shapes."""
    kernel, rec = layer.arrays[0], layer.arrays[1]
    n = rec.shape[0]
    if n == 0 or rec.shape[1] % n or kernel.shape[1] != rec.shape[1]:
        raise GradflowError(f"{what}: {layer.label} has kernel {kernel.shape} and recurrent kernel {rec.shape}, "
                            "which do not stack gates of one hidden size")
    G = rec.shape[1] // n
    bias = layer.arrays[2] if len(layer.arrays) > 2 else None
    if layer.klass is not None:
        if layer.klass not in _KERAS_GATES:
            raise GradflowError(f"{what}: {layer.label} is a Keras {layer.klass}, which gradflow does not read "
                                "(it reads LSTM, GRU and SimpleRNN layers, also as RNN(LSTMCell/GRUCell/"
                                "SimpleRNNCell))")
        klass = layer.klass
        reset_after = bool(layer.config.get("reset_after", True))
    else:
        klass = {1: "SimpleRNN", 3: "GRU", 4: "LSTM"}.get(G, "")
        if not klass:
            raise GradflowError(f"{what}: {layer.label} stacks {G} gates (recurrent kernel {rec.shape}); "
                                "gradflow reads Keras LSTM (4), GRU (3) and SimpleRNN (1) layers")
        reset_after = bias is None or bias.ndim == 2
    if G != len(_KERAS_GATES[klass]):
        raise GradflowError(f"{what}: {layer.label} is a Keras {klass} but its recurrent kernel {rec.shape} "
                            f"stacks {G} gates")
    return klass, reset_after


def _gradflow_cells(klass: str, reset_after: bool, config: Mapping[str, Any]) -> tuple[str, ...]:
    if klass == "LSTM":
        return ("lstm",)
    if klass == "GRU":
        return ("gru",) if reset_after else ("gru-cho",)
    act = config.get("activation")
    if act is None:
        return tuple(_ELMAN.values()) + ("irnn",)
    return (_ELMAN[act], "irnn") if act == "relu" else ((_ELMAN[act],) if act in _ELMAN else ())


def read_keras_layer(cell: Cell, path: str, *, prefix: str | None = None, layer: int | None = None,
                     direction: str | None = None, backward: bool = False,
                     found: list[KerasLayer] | None = None) -> Selected:
    """One recurrent layer of a Keras file as PyTorch-layout arrays in ``cell``'s gate order.

    ``backward``: ``prefix`` names the backward layer of a Bidirectional layer, read (not refused)
    for :mod:`gradflow._numeric.keras_stack`, which runs it over reversed time; ``found``: the
    file's layers when already read (:func:`read_keras_layers`)."""
    what = f"weights file {path}"
    if direction is not None and direction not in ("forward", "reverse"):
        raise GradflowError(f"direction must be forward or reverse, got {direction!r}")
    if direction == "reverse":
        raise GradflowError("direction reverse is not supported: the reverse direction runs over "
                            "reversed time, which gradflow does not measure; pass forward")
    if layer not in (None, 0):
        raise GradflowError(f"{what}: a Keras file stacks recurrent layers as separate layers; pick one with "
                            "--prefix NAME (prefix='NAME' in Python), not --layer")
    layers = read_keras_layers(path) if found is None else found
    chosen = _choose(layers, what, prefix, direction, backward)
    klass, reset_after = _keras_class(chosen, what)
    fits = _gradflow_cells(klass, reset_after, chosen.config)
    desc = f"a Keras {klass}" + (f"(reset_after={reset_after})" if klass == "GRU" else "")
    if cell.name not in fits:
        extra = (" (reset_after=True is PyTorch's GRU: gradflow's gru; reset_after=False is Cho et al.'s: "
                 "gru-cho)") if klass == "GRU" else ""
        hint = f"; pass {' or '.join(fits)}" if fits else ""
        raise GradflowError(f"cell {cell.name} contradicts the weights: {chosen.label} in {path} is "
                            f"{desc}{extra}{hint}")
    cfg = chosen.config
    if cfg:
        want = {"activation": "relu" if cell.name in ("relu-rnn", "irnn") else
                "sigmoid" if cell.name == "sigmoid-rnn" else "tanh"}
        if klass != "SimpleRNN":
            want["recurrent_activation"] = "sigmoid"
        for key, val in want.items():
            if key in cfg and cfg[key] != val:
                raise GradflowError(f"{what}: {chosen.label} has {key}={cfg[key]!r}; {cell.name} computes with "
                                    f"{val}, so gradflow would measure another network")
    kernel, rec = chosen.arrays[0], chosen.arrays[1]
    n = rec.shape[0]
    gates = _KERAS_GATES[klass]
    order = [gates.index(g) for g in cell.recorded.gates]  # Keras block of each gradflow gate

    def reorder(a: np.ndarray) -> np.ndarray:  # columns in Keras gate order → rows in cell order
        return np.concatenate([a[..., j * n:(j + 1) * n] for j in order], axis=-1)

    state: dict[str, np.ndarray] = {"weight_ih": reorder(kernel).T.copy(), "weight_hh": reorder(rec).T.copy()}
    if len(chosen.arrays) > 2:
        bias = chosen.arrays[2]
        # a GRU's bias is (2, 3n) with reset_after and (3n,) without: the other shape is another GRU
        if bias.shape == (2, len(gates) * n) and klass == "GRU" and reset_after:
            state["bias_ih"], state["bias_hh"] = reorder(bias[0]), reorder(bias[1])
        elif bias.shape == (len(gates) * n,) and not (klass == "GRU" and reset_after):
            state["bias_ih"], state["bias_hh"] = reorder(bias), np.zeros_like(bias)
        else:
            raise GradflowError(f"{what}: {chosen.label} has a bias of shape {bias.shape}; {desc} with "
                                + (f"{n} units has (2, {len(gates) * n})" if klass == "GRU" and reset_after
                                   else f"{n} units has ({len(gates) * n},)"))
    told = []
    if len(layers) > 1 and prefix is None:
        told.append(f"using the recurrent layer {chosen.label}")
    if not cfg:
        told.append(f"the file holds no layer configuration; read as {desc} with Keras' default activations "
                    f"({'sigmoid gates, ' if klass != 'SimpleRNN' else ''}{_activation(cell.name)}): save the "
                    "model with model.save('model.keras') to have them checked")
    if told:
        note(f"{what}: {'; '.join(told)}")
    return Selected(state, chosen.path, 0, 1, None)


def _activation(cell: str) -> str:
    return {"relu-rnn": "relu", "irnn": "relu", "sigmoid-rnn": "sigmoid"}.get(cell, "tanh")


def is_keras_path(path: str) -> bool:
    """A path gradflow reads as a Keras file (by its name)."""
    return path.endswith(KERAS_SUFFIXES)
