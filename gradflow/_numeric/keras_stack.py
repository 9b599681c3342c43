"""A Keras 3 stack of recurrent layers read as one :class:`~gradflow._numeric.checkpoint.Module`.

A ``.keras`` file holds the model's ``config.json``: a ``Sequential`` of recurrent layers
(LSTM, GRU, SimpleRNN, also as ``RNN(cell)``), each optionally wrapped in
``Bidirectional(merge_mode="concat")``, is the stack PyTorch's ``nn.LSTM(num_layers=L,
bidirectional=…)`` builds: layer l reads the sequence of layer l − 1, a Bidirectional layer
outputs [h^(f)_t ; h^(r)_t] with its backward layer run over reversed time and its outputs put
back in original time (Keras flips them, as PyTorch does). Each layer's arrays are converted by
:func:`gradflow._numeric.keras_loading.read_keras_layer` (Keras' gate order i, f, c, o / z, r, h,
GRU's ``reset_after``), so :func:`gradflow._numeric.stack.stacked_network` builds the same
network as from a PyTorch checkpoint.

What is read, and what is refused in one line each:

* before the first recurrent layer: any layers (an ``Embedding`` …): the stack's inputs are
  what the first recurrent layer reads (said in a note);
* between recurrent layers: only layers that are the identity in inference (``Dropout``,
  ``SpatialDropout1D``, ``GaussianNoise`` …, ignored as PyTorch's dropout between layers);
  anything else (a ``Dense``, a ``Masking``) is refused;
* after the last recurrent layer: a head (``Dense`` …), not part of the stack;
* refused: ``merge_mode`` other than concat, ``go_backwards=True`` outside a Bidirectional
  wrapper, ``return_sequences=False`` below the top layer, ``stateful=True``, layers of
  different classes, a stack that mixes Bidirectional and one-direction layers, a Functional
  model with more than one recurrent layer (its wiring is a graph: pick one with ``prefix``).

A top layer with ``return_sequences=False`` makes the model's output its last step on each
direction's own clock, [h^(f)_T ; h^(r)_1] for a Bidirectional one (``Module.last_only``): the
loss reads that (:func:`gradflow._numeric.stack.model_cotangents`). The ``Dense`` after the stack
is the head of ``--loss last/every`` (:func:`keras_head`).

A ``.weights.h5`` holds no configuration, hence no wiring: one recurrent layer is read as one
layer; several are refused with a request for the ``.keras`` file (or a ``prefix``).
Nothing here imports Keras or TensorFlow: the configuration is JSON, the weights HDF5 (h5py).
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._checks import GradflowError
from .._symbolic.cell import Cell
from .checkpoint import Module
from .keras_loading import (
    KerasLayer,
    config_errors,
    read_config_json,
    read_keras_layer,
    read_keras_layers,
    read_keras_vars,
)
from .loading import note

_RECURRENT = ("LSTM", "GRU", "SimpleRNN", "RNN")
#: layers that are the identity in inference: allowed between recurrent layers (ignored)
_INFERENCE_IDENTITY = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                       "ActivityRegularization", "Identity")
_FUNCTIONAL = ("Functional", "Model")


@dataclass(frozen=True)
class StackLayer:
    """One recurrent layer of a Keras stack: its user name, class, directions and configuration."""

    name: str
    klass: str                  # LSTM, GRU, SimpleRNN (an RNN(cell) by its cell's class)
    bidirectional: bool
    config: Mapping[str, Any]   # the recurrent layer's (the forward one of a Bidirectional)
    backward: Mapping[str, Any] | None = None


def read_keras_config(path: str) -> Mapping[str, Any] | None:
    """The ``config.json`` of a ``.keras`` archive; None for a ``.weights.h5`` (no configuration)."""
    try:
        if not zipfile.is_zipfile(path):
            return None
        with zipfile.ZipFile(path) as z:
            if "config.json" not in z.namelist():
                return None
            cfg = json.loads(read_config_json(z, f"weights file {path}"))
    except (OSError, ValueError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as e:
        raise GradflowError(f"weights file {path} is not a readable .keras archive ({e})") from None
    return cfg if isinstance(cfg, Mapping) else None


def _class(entry: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """(class, config) of a layer entry; an RNN(cell) by its cell's class, with the RNN's flags."""
    klass = str(entry.get("class_name", ""))
    conf = entry.get("config") or {}
    if klass == "RNN":
        cell = conf.get("cell") or {}
        cclass = str(cell.get("class_name", "")) if isinstance(cell, Mapping) else ""
        inner = {**((cell.get("config") or {}) if isinstance(cell, Mapping) else {}),
                 **{k: conf[k] for k in ("go_backwards", "stateful", "return_sequences") if k in conf}}
        return cclass.removesuffix("Cell") or "RNN", inner
    return klass, conf


def _recurrent(entry: Mapping[str, Any]) -> bool:
    klass = str(entry.get("class_name", ""))
    if klass == "Bidirectional":
        return True
    return klass in _RECURRENT


def _stack_layer(entry: Mapping[str, Any], what: str) -> StackLayer:
    klass = str(entry.get("class_name", ""))
    conf = entry.get("config") or {}
    name = str(conf.get("name", ""))
    if klass != "Bidirectional":
        k, c = _class(entry)
        return StackLayer(name, k, False, c)
    mode = conf.get("merge_mode", "concat")
    if mode != "concat":
        raise GradflowError(f"{what}: Bidirectional layer {name!r} has merge_mode={mode!r}; gradflow analyses "
                            "merge_mode='concat' (the next layer reads [h_forward ; h_backward], as PyTorch's)")
    fwd = conf.get("layer") or {}
    bwd = conf.get("backward_layer") or {}
    kf, cf = _class(fwd)
    kb, cb = _class(bwd) if bwd else (kf, {**cf, "go_backwards": not cf.get("go_backwards", False)})
    if cf.get("go_backwards"):
        raise GradflowError(f"{what}: Bidirectional layer {name!r} wraps a layer with go_backwards=True (its "
                            "'forward' direction runs over reversed time), which gradflow does not analyse")
    if kb != kf or not cb.get("go_backwards"):
        raise GradflowError(f"{what}: Bidirectional layer {name!r} has a backward layer ({kb}) that is not "
                            f"the {kf} run over reversed time; gradflow analyses a forward/backward pair of one cell")
    return StackLayer(name, kf, True, cf, cb)


@config_errors
def keras_stack(config: Mapping[str, Any], what: str,
                graph_ok: bool = False) -> tuple[list[StackLayer], list[str], list[str]]:
    """The recurrent layers of a Keras model's configuration, in order, and (layers before the
    stack, identity layers between its layers). Unsupported wiring is one ``GradflowError``;
    ``graph_ok``: a Functional model's recurrent layers are listed (for a pick by name), not refused."""
    top = str(config.get("class_name", ""))
    body = config.get("config") or {}
    entries = [e for e in (body.get("layers") or []) if isinstance(e, Mapping)]
    if top in _FUNCTIONAL or (top != "Sequential" and entries):
        rec = [e for e in entries if _recurrent(e)]
        if len(rec) > 1 and not graph_ok:
            names = ", ".join(repr((e.get("config") or {}).get("name", "?")) for e in rec)
            raise GradflowError(f"{what} is a Keras {top or 'model'} model with {len(rec)} recurrent layers ({names}); "
                                "gradflow reads the wiring of a Sequential stack of recurrent layers: pick one "
                                "with --prefix NAME (prefix='NAME' in Python)")
        return [_stack_layer(e, what) for e in rec], [], []
    stack: list[StackLayer] = []
    before: list[str] = []
    between: list[str] = []
    after: list[str] = []   # non-recurrent layers since the last recurrent one
    for e in entries:
        klass = str(e.get("class_name", ""))
        name = str((e.get("config") or {}).get("name", ""))
        if klass == "InputLayer":
            continue
        if isinstance((e.get("config") or {}).get("layers"), list) and any(
                _recurrent(x) for x in e["config"]["layers"] if isinstance(x, Mapping)):
            raise GradflowError(f"{what}: the recurrent layers sit in a nested model {name!r}; gradflow reads a "
                                "Sequential whose own layers are the recurrent ones: save that model alone, or "
                                "pick one layer with --prefix NAME")
        if not _recurrent(e):
            masks = klass == "Masking" or bool((e.get("config") or {}).get("mask_zero"))
            (after if stack else before).append(f"{klass} {name!r}" + (" (a mask)" if masks else ""))
            continue
        lay = _stack_layer(e, what)
        if stack:
            below = stack[-1]
            blocking = [a for a in after if a.split(" ", 1)[0] not in _INFERENCE_IDENTITY]
            if blocking:
                raise GradflowError(f"{what}: {', '.join(blocking)} sits between the recurrent layers "
                                    f"{below.name!r} and {lay.name!r}; gradflow analyses a stack whose layers "
                                    "read each other's sequences directly (dropout alone may sit between)")
            if not below.config.get("return_sequences", False):
                raise GradflowError(f"{what}: {below.name!r} has return_sequences=False but feeds the recurrent "
                                    f"layer {lay.name!r}; gradflow analyses stacks in which every layer below "
                                    "the top returns its whole sequence")
            between += after
        after = []
        stack.append(lay)
    return stack, before, between


def _refuse_flags(stack: list[StackLayer], what: str) -> None:
    for lay in stack:
        for conf in (lay.config, lay.backward or {}):
            if conf.get("stateful"):
                raise GradflowError(f"{what}: {lay.name!r} is stateful: it starts each batch from the last "
                                    "batch's final state, which the file does not hold; gradflow starts from "
                                    "zeros: rebuild the model with stateful=False to analyse it")
        if not lay.bidirectional and lay.config.get("go_backwards"):
            raise GradflowError(f"{what}: {lay.name!r} has go_backwards=True outside a Bidirectional layer (it "
                                "runs over reversed time and returns its outputs reversed), which gradflow "
                                "does not analyse")
    classes = sorted({lay.klass for lay in stack})
    if len(classes) > 1:
        raise GradflowError(f"{what} stacks layers of different classes ({', '.join(classes)}); gradflow "
                            "analyses a stack of one cell: pick one layer with --prefix NAME")
    kinds = {lay.bidirectional for lay in stack}
    if len(kinds) > 1:
        raise GradflowError(f"{what} mixes Bidirectional and one-direction recurrent layers; gradflow analyses "
                            "stacks that are bidirectional throughout or not at all: pick one layer with "
                            "--prefix NAME")


def _names(lay: StackLayer, found: list[KerasLayer]) -> set[str]:
    """The names a stack layer answers to: the user's, and Keras' saved group (``lstm_1``,
    ``bidirectional``, with or without ``layers/``)."""
    out = {lay.name}
    for x in found:
        if x.name is not None and (x.name == lay.name or x.name.startswith(f"{lay.name}/")):
            group = x.path.removesuffix("/forward_layer").removesuffix("/backward_layer")
            out |= {group, group.removeprefix("layers/")}
    return out


def _no_wiring(layers: list[KerasLayer], what: str, holds: str) -> GradflowError:
    return GradflowError(f"{what} holds {len(layers)} recurrent layers ({', '.join(x.label for x in layers)}) "
                         f"and {holds}, hence no wiring: give the model's .keras file of a Sequential "
                         "(model.save('model.keras')) to analyse the whole stack, or pick one layer with "
                         "--prefix NAME (prefix='NAME' in Python)")


def keras_module(cell: Cell, path: str, prefix: str | None = None) -> Module:
    """Every recurrent layer and direction of a Keras file, in PyTorch's layout, as a Module.

    ``prefix`` names one layer (the user's name, or Keras' saved name): that layer alone, both
    directions when it is Bidirectional. Without it, a ``.keras`` Sequential's whole stack.
    """
    what = f"weights file {path}"
    found = read_keras_layers(path)
    config = read_keras_config(path)
    if config is None:  # a .weights.h5: no wiring
        return _without_config(cell, path, found, prefix, what)
    stack, before, between = keras_stack(config, what, graph_ok=prefix is not None)
    if not stack:  # a configuration without its layers (a subclassed model): no wiring either
        return _without_config(cell, path, found, prefix, what, "a configuration without its layers")
    if prefix is not None:
        want = prefix.strip().strip("/")
        stack = [s for s in stack if want in _names(s, found)]
        if not stack:  # the one-layer reader names what the file has
            read_keras_layer(cell, path, prefix=prefix, found=found)
            raise GradflowError(f"{what} has no recurrent layer {prefix!r} in its Sequential stack")
        before, between = [], []
    _refuse_flags(stack, what)
    arrays: dict[tuple[int, str], Any] = {}
    for i, lay in enumerate(stack):
        if lay.bidirectional:
            arrays[(i, "forward")] = read_keras_layer(cell, path, prefix=f"{lay.name}/forward_layer",
                                                      direction="forward", found=found).state
            arrays[(i, "reverse")] = read_keras_layer(cell, path, prefix=f"{lay.name}/backward_layer",
                                                      backward=True, found=found).state
        else:
            arrays[(i, "forward")] = read_keras_layer(cell, path, prefix=lay.name, found=found).state
    told = []
    if before:
        told.append(f"the recurrent stack reads the output of {', '.join(before)}: its inputs are that "
                    "layer's outputs")
    if any(b.endswith("(a mask)") for b in before):
        told.append("gradflow updates the state at every step: masked steps (which Keras skips) are "
                    "analysed as if unmasked")
    drop = [f"{k}={c[k]}" for lay in stack for c in (lay.config,) for k in ("dropout", "recurrent_dropout")
            if c.get(k)]
    if between or drop:
        told.append(f"{', '.join(between + drop)} ignored (the model is analysed in inference)")
    if told:
        note(f"{what}: {'; '.join(told)}")
    last_only = not stack[-1].config.get("return_sequences", False)  # the loss reads [h_f_T ; h_r_1]
    return Module(arrays, stack[0].name if len(stack) == 1 else "", len(stack), stack[0].bidirectional, 0,
                  None, 0.0, last_only)


def _without_config(cell: Cell, path: str, found: list[KerasLayer], prefix: str | None, what: str,
                    holds: str = "no configuration") -> Module:
    """A ``.weights.h5`` (or a subclassed model's ``.keras``): one layer (chosen by ``prefix`` when
    there are several), never a stack."""
    if prefix is None:
        plain = [x for x in found if not x.path.endswith(("/forward_layer", "/backward_layer"))]
        if len(found) > 1 and not (len(found) == 2 and not plain):
            raise _no_wiring(found, what, holds)
    want = None if prefix is None else prefix.strip().strip("/")
    pair = [x for x in found if x.path.endswith("/forward_layer")
            and (want is None or f"{want}/forward_layer" in x.keys())]
    if pair:
        raise GradflowError(f"{what}: {pair[0].label} is a direction of a Bidirectional layer, and the file "
                            f"holds {holds} (its merge_mode is unknown): give the model's .keras file "
                            "to analyse both directions, or pass --direction forward to measure the forward "
                            "one alone")
    sel = read_keras_layer(cell, path, prefix=prefix, found=found)
    return Module({(0, "forward"): sel.state}, sel.prefix, 1, False, 0, None, 0.0)


def _saved_groups(entries: list[Mapping[str, Any]]) -> dict[int, str]:
    """Index of each top-level layer entry → the HDF5 group Keras saves it under: its class in
    snake case, numbered from the second of a class on (``dense``, ``dense_1`` …)."""
    used: dict[str, int] = {}
    out = {}
    for i, e in enumerate(entries):
        klass = str(e.get("class_name", ""))
        base = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", klass)).lower()
        k = used.get(base, -1) + 1
        used[base] = k
        out[i] = f"layers/{base}" if k == 0 else f"layers/{base}_{k}"
    return out


@config_errors
def keras_head(path: str, features: int, name: str | None = None) -> tuple[Any, Any]:
    """(V (K, n), c (K,)) of the ``Dense`` that reads the recurrent stack's output in a ``.keras``
    Sequential (the first one after the last recurrent layer, dropout between allowed; ``name``
    picks one by its name): logits = V y + c with V the Dense kernelᵀ. Its activation must be
    linear or softmax (the loss is the cross-entropy of softmax(logits))."""
    import numpy as np

    what = f"weights file {path}"
    config = read_keras_config(path)
    if config is None:
        raise GradflowError(f"{what} holds no configuration, hence no wiring: which Dense is the head is "
                            "unknown; give the model's .keras file, or the head as --head FILE (.pt/.npz)")
    entries = [e for e in ((config.get("config") or {}).get("layers") or []) if isinstance(e, Mapping)]
    if name is None and config.get("class_name") != "Sequential":
        raise GradflowError(f"{what} is a Keras {config.get('class_name')} model: its head is not found by its "
                            "place in a graph; name the Dense with --head NAME (head='NAME' in Python)")
    groups = _saved_groups(entries)
    last = max((i for i, e in enumerate(entries) if _recurrent(e)), default=-1)
    pick = None
    for i, e in enumerate(entries):
        klass, conf = str(e.get("class_name", "")), e.get("config") or {}
        if name is not None:
            if name in (conf.get("name"), groups[i], groups[i].removeprefix("layers/")):
                pick = i
                break
            continue
        if i <= last or klass in _INFERENCE_IDENTITY:
            continue
        if klass != "Dense":
            raise GradflowError(f"{what}: the recurrent stack's output feeds {klass} {conf.get('name')!r}, not a "
                                "Dense head; give the head as --head FILE (.pt/.npz)")
        pick = i
        break
    if pick is None:
        which = f"named {name!r}" if name else "after its recurrent layers"
        raise GradflowError(f"{what} has no Dense layer {which} to read as the head; give it as --head FILE "
                            "(.pt/.npz)")
    conf = entries[pick].get("config") or {}
    if entries[pick].get("class_name") != "Dense":
        raise GradflowError(f"{what}: {name!r} is a {entries[pick].get('class_name')}, not a Dense head")
    act = conf.get("activation", "linear")
    if act not in ("linear", "softmax", None):
        raise GradflowError(f"{what}: the head {conf.get('name')!r} has activation {act!r}; gradflow's loss is "
                            "the cross-entropy of softmax(V y + c): a linear or softmax Dense")
    arrays = read_keras_vars(path, groups[pick])
    kernel = arrays[0]
    if kernel.ndim != 2 or kernel.shape[0] != features:
        raise GradflowError(f"{what}: the head {conf.get('name')!r} has kernel {kernel.shape}; it must read the "
                            f"stack's {features} output features")
    bias = arrays[1] if len(arrays) > 1 else np.zeros(kernel.shape[1])
    return np.ascontiguousarray(kernel.T), np.asarray(bias)


def keras_layer_prefix(path: str, layer: int) -> str:
    """The user's name of the ``layer``-th recurrent layer (0-based) of a ``.keras`` Sequential stack
    (``--layer K`` on a Keras file)."""
    what = f"weights file {path}"
    config = read_keras_config(path)
    if config is None:
        raise GradflowError(f"{what} holds no configuration, hence no layer order: pick the layer with "
                            "--prefix NAME (prefix='NAME' in Python), or give the model's .keras file")
    stack, _, _ = keras_stack(config, what)
    if not 0 <= layer < len(stack):
        raise GradflowError(f"{what}: --layer {layer} is out of range: its stack has {len(stack)} recurrent "
                            f"layer(s) ({', '.join(repr(s.name) for s in stack)})")
    return stack[layer].name


__all__ = ["StackLayer", "keras_head", "keras_layer_prefix", "keras_module", "keras_stack", "read_keras_config"]
