"""Finding the one recurrent layer a user means in a model, a checkpoint or a module.

A trained model rarely arrives as a bare ``nn.LSTM`` state_dict: it is a classifier's
``state_dict()`` (``rnn.weight_ih_l0``, ``head.weight`` …), a checkpoint
(``{'model': state_dict, 'optimizer': …}``, ``{'state_dict': …}``), or the module object itself.
:func:`select_layer` finds the recurrent layers under any prefix and picks one layer of one
direction, refusing whatever it would otherwise have to cut or guess:

* several recurrent layers (prefixes) and no ``prefix``: refused, the prefixes listed;
* several stacked layers (``*_l1`` …) and no ``layer``: refused (gradflow measures one layer);
* a bidirectional layer (``*_reverse``) and no ``direction``: refused; ``reverse`` is refused too
  (it runs over reversed time, which gradflow does not measure);
* ``proj_size > 0`` (``weight_hr_l0``): refused (a projected LSTM is another recurrence);
* a cell that contradicts the weights: the gate count read from ``weight_hh`` (4n rows LSTM, 3n
  GRU, n Elman RNN) and, for a module, its type and ``nonlinearity``.

What it picked without being told is said in one note (``gradflow: note: …`` on the CLI).
:func:`select_module` returns every layer and direction of the module instead, refusing none of
the three (for :mod:`gradflow._numeric.stack`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._checks import GradflowError
from .._symbolic.cell import Cell
from .._symbolic.cells import CELLS, get_cell
from .loading import TORCH_KEYS, check_state, note, torchscript_modules

#: the last component of a recurrent parameter's name in PyTorch's layout
LAYER_KEY = re.compile(r"^(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)"
                       r"(?:_l(?P<layer>\d+))?(?P<rev>_reverse)?$")

DIRECTIONS = ("forward", "reverse")

#: what a stacked gate count means in PyTorch's layout
_GATE_KINDS = {1: "an Elman RNN (nn.RNN / nn.RNNCell: gradflow's tanh-rnn or relu-rnn)",
               3: "a GRU (nn.GRU / nn.GRUCell: gradflow's gru)",
               4: "an LSTM (nn.LSTM / nn.LSTMCell: gradflow's lstm)"}


@dataclass(frozen=True)
class Selected:
    """One layer, one direction of one recurrent module, in the plain ``weight_ih`` … layout.

    Attributes:
        state: ``weight_ih``, ``weight_hh`` and (if present) ``bias_ih``, ``bias_hh``.
        prefix: where the module was found (``""`` at the top, else e.g. ``"model.rnn"``).
        layer: the layer measured; layers: how many the module stacks.
        batch_first: the module's ``batch_first`` when a module object was given, else None.
    """

    state: Mapping[str, Any]
    prefix: str
    layer: int
    layers: int
    batch_first: bool | None


@dataclass
class _Group:
    prefix: str
    flat: Mapping[str, Any]
    keys: dict[tuple[str, int | None, bool], str]  # (kind, layer, reverse) → full key

    def layers(self) -> list[int]:
        return sorted({lay or 0 for (k, lay, _r) in self.keys if k == "weight_ih"})

    def reverse(self) -> bool:
        return any(r for (_k, _l, r) in self.keys)

    def gates(self) -> int | None:
        """The stacked gate count read from weight_hh (rows / columns), None if unreadable."""
        for (k, lay, r), key in self.keys.items():
            if k == "weight_hh" and not r and (lay or 0) == 0:
                return self._gates_of(key)
        return None

    def whh_shape(self) -> tuple[int, ...]:
        key = self.keys.get(("weight_hh", 0, False)) or self.keys.get(("weight_hh", None, False))
        return tuple(int(x) for x in getattr(self.flat.get(key or ""), "shape", ()))

    def _gates_of(self, key: str) -> int | None:
        shape = getattr(self.flat.get(key), "shape", None)
        if shape is None or len(shape) != 2 or shape[1] == 0 or shape[0] % shape[1]:
            return None
        return int(shape[0]) // int(shape[1])


def flat_state(state: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """Nested mappings with string keys, flattened to dotted names (other keys skipped; at most 8
    levels deep): a checkpoint's ``{'model': {'rnn.weight_ih_l0': …}}`` → ``{'model.rnn.weight_ih_l0': …}``."""
    out: dict[str, Any] = {}
    for k, v in state.items():
        if not isinstance(k, str):
            continue
        name = f"{prefix}.{k}" if prefix else k
        if isinstance(v, Mapping):
            if depth < 8:
                out.update(flat_state(v, name, depth + 1))
        else:
            out[name] = v
    return out


def _pick_group(groups: list[_Group], prefix: str | None, what: str, found: str | None = None,
                example: bool = False) -> _Group:
    """The one recurrent module: the one there is, or the one under ``prefix``; several without a
    prefix are refused, listed. ``found`` (keys seen) and ``example`` (a prefix to try) enrich the
    messages."""
    if not groups:
        seen = f" (found: {found or 'nothing'})" if found is not None else ""
        raise GradflowError(f"{what} holds no recurrent layer (no weight_ih/weight_hh, weight_ih_l0/…, "
                            f"under any prefix){seen}")
    if prefix is not None:
        chosen = [g for g in groups if g.prefix == prefix.strip().rstrip(".")]
        if not chosen:
            raise GradflowError(f"{what} has no recurrent module under prefix {prefix!r}; it has: "
                                f"{', '.join(_label(g.prefix) for g in groups)}")
        return chosen[0]
    if len(groups) == 1:
        return groups[0]
    ordered = sorted(groups, key=lambda x: x.prefix)
    listed = ", ".join(_label(x.prefix) for x in ordered)
    hint = f", e.g. --prefix {ordered[0].prefix or 'rnn'}" if example else ""
    raise GradflowError(f"{what} holds {len(groups)} recurrent modules: {listed}; pick one with "
                        f"--prefix NAME (prefix='NAME' in Python){hint}")


def _groups(flat: Mapping[str, Any], source: str) -> list[_Group]:
    by_prefix: dict[str, _Group] = {}
    for name in flat:
        prefix, _, last = name.rpartition(".")
        m = LAYER_KEY.match(last)
        if m is None:
            continue
        g = by_prefix.setdefault(prefix, _Group(prefix, flat, {}))
        layer = None if m["layer"] is None else int(m["layer"])
        g.keys[(m["kind"], layer, bool(m["rev"]))] = name
    out = []
    for g in by_prefix.values():
        if not any(k == "weight_ih" for (k, _l, _r) in g.keys):
            continue
        for kind in TORCH_KEYS:
            if (kind, None, False) in g.keys and (kind, 0, False) in g.keys:
                where = f" under {g.prefix!r}" if g.prefix else ""
                raise GradflowError(f"{source} has both {kind} and {kind}_l0{where}; keep one (gradflow "
                                    "would have to guess which is meant)")
        out.append(g)
    return out


def _label(prefix: str) -> str:
    return repr(prefix) if prefix else "(top level)"


def _torch_modules(module: Any) -> dict[str, Any]:
    """The recurrent submodules (nn.RNN/LSTM/GRU and their cells) of a torch module, by name."""
    try:
        import torch
    except ImportError:  # pragma: no cover - a torch module without torch
        return {}
    kinds = (torch.nn.RNNBase, torch.nn.RNNCellBase)
    named = getattr(module, "named_modules", None)
    if named is None:
        return {}
    return {name: mod for name, mod in named() if isinstance(mod, kinds)}


def _module_kind(mod: Any) -> tuple[str, str | None, str]:
    """(torch cell class, nonlinearity, description) of a recurrent torch module."""
    mode = getattr(mod, "mode", None)
    if mode is not None:  # nn.RNNBase
        torch_cell, nl = {"LSTM": ("LSTMCell", None), "GRU": ("GRUCell", None),
                          "RNN_TANH": ("RNNCell", "tanh"), "RNN_RELU": ("RNNCell", "relu")}.get(
                              mode, (str(mode), None))
        desc = {"LSTMCell": "nn.LSTM", "GRUCell": "nn.GRU"}.get(
            torch_cell, f"nn.RNN(nonlinearity={nl!r})")
        return torch_cell, nl, desc
    name = type(mod).__name__
    for base in ("LSTMCell", "GRUCell", "RNNCell"):
        if any(c.__name__ == base for c in type(mod).__mro__):
            nl = getattr(mod, "nonlinearity", None) if base == "RNNCell" else None
            return base, nl, f"nn.RNNCell(nonlinearity={nl!r})" if nl else f"nn.{base}"
    return name, None, name


def _matching_cells(torch_cell: str, nl: str | None) -> list[str]:
    return [name for name, c in CELLS.items()
            if c.torch_cell == torch_cell and c.torch_kwargs.get("nonlinearity") == nl]


def _check_module(cell: Cell, mod: Any, prefix: str, source: str) -> None:
    torch_cell, nl, desc = _module_kind(mod)
    if cell.torch_cell == torch_cell and cell.torch_kwargs.get("nonlinearity") == nl:
        return
    where = f"{source}: {prefix}" if prefix else source
    fits = _matching_cells(torch_cell, nl)
    hint = f"; pass {' or '.join(fits)}" if fits else ""
    extra = (" (PyTorch's GRU applies the reset gate after the recurrent product: gradflow's gru; "
             "gru-cho is Cho et al.'s original)") if torch_cell == "GRUCell" else ""
    raise GradflowError(f"cell {cell.name} contradicts the module: {where} is {desc}{extra}{hint}")


def _check_gates(cell: Cell, g: _Group, source: str) -> None:
    G = g.gates()
    want = len(cell.recorded.gates)
    if G is None or G == want:
        return
    kind = _GATE_KINDS.get(G, f"{G} stacked gates")
    where = f" under {g.prefix!r}" if g.prefix else ""
    raise GradflowError(f"cell {cell.name} contradicts the weights{where} in {source}: they do not stack "
                        f"{want} gate(s) ({', '.join(str(x) for x in cell.recorded.gates)}) as "
                        f"{cell.name} needs; weight_hh has shape {g.whh_shape()}, {G} stacked gates (rows = "
                        f"{G} x columns): {kind}")


def _identity_notes(cell: Cell, mod: Any) -> list[str]:
    """What a state_dict (no module object) cannot say about the cell, said in notes."""
    out: list[str] = []
    if mod is None and cell.torch_cell is None:  # a state_dict cannot tell such a cell apart
        if cell.name == "gru-cho":
            out.append("PyTorch's nn.GRU/nn.GRUCell is gradflow's gru (reset gate after the recurrent "
                       "product); these weights are read as Cho et al.'s gru-cho")
        else:
            out.append(f"no PyTorch module computes {cell.name}; these weights are read as its "
                       "parameters (a state_dict of nn.LSTM is gradflow's lstm, of nn.GRU its gru, of "
                       "nn.RNN its tanh-rnn or relu-rnn)")
    if mod is None and cell.torch_cell == "RNNCell":  # nn.RNN's nonlinearity is not in its state_dict
        nl = cell.torch_kwargs.get("nonlinearity")
        other = "relu-rnn" if nl == "tanh" else "tanh-rnn"
        out.append(f"a state_dict does not record nn.RNN's nonlinearity: read with {nl} as {cell.name}; "
                   f"pass {other} if the module was built with nonlinearity="
                   f"{'relu' if nl == 'tanh' else 'tanh'!r}")
    return out


def select_layer(cell: str | Cell, source: Any, state: Mapping[str, Any], *, what: str,
                 prefix: str | None = None, layer: int | None = None,
                 direction: str | None = None) -> Selected:
    """Find the recurrent module in ``state`` and pick one layer of one direction.

    Arguments:
        cell: the cell the user named.
        source: the object the state came from (a torch module is checked for its type).
        state: its state_dict, possibly a nested checkpoint.
        what: how to name the source in messages (``"weights file m.pt"``).
        prefix: which recurrent module (its name in the model, e.g. ``"rnn"`` or ``"model.rnn"``).
        layer: which stacked layer (required when there are several).
        direction: ``"forward"`` (required for a bidirectional module); ``"reverse"`` is refused.
    """
    cell = get_cell(cell)
    if direction is not None and direction not in DIRECTIONS:
        raise GradflowError(f"direction must be forward or reverse, got {direction!r}")
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 0):
        raise GradflowError(f"layer must be an integer >= 0, got {layer!r}")
    check_state(state, what)
    flat = flat_state(state)
    groups = _groups(flat, what)
    # a module object, or a TorchScript archive (which keeps its modules' types): checked against the cell
    modules = _torch_modules(source) if hasattr(source, "state_dict") else torchscript_modules(source)
    found = ", ".join(sorted(flat)[:8]) + (" …" if len(flat) > 8 else "")
    g = _pick_group(groups, prefix, what, found=found, example=True)
    mod = modules.get(g.prefix)
    if mod is not None:
        _check_module(cell, mod, g.prefix, what)
    proj = [key for (k, _l, _r), key in g.keys.items() if k == "weight_hr"]
    projected = bool(getattr(mod, "proj_size", 0)) if mod is not None else False
    if proj or projected:
        raise GradflowError(f"{what}: the LSTM{' ' + repr(g.prefix) if g.prefix else ''} has proj_size > 0 "
                            f"({', '.join(sorted(proj)) or 'proj_size'}): its output is projected, "
                            "h_t = W_hr (o_t * tanh c_t), a recurrence gradflow's lstm does not have; "
                            "gradflow.stacked_network measures it (its projected lstm)")
    _check_gates(cell, g, what)

    layers = g.layers()
    bidir = g.reverse()
    at = f" (under {g.prefix!r})" if g.prefix else ""
    if layer is None:
        if len(layers) > 1:
            ex = g.keys.get(("weight_ih", layers[1], False), f"weight_ih_l{layers[1]}")
            raise GradflowError(f"{cell.name}: {what}{at} holds {len(layers)} layers ({ex.rpartition('.')[2]} …); "
                                f"gradflow measures one layer: pass --layer 0 (layer=0 in Python) to measure layer 0 "
                                "alone, knowing the curves then ignore the layers above (gradflow.stacked_network "
                                "measures every layer)")
        layer = layers[0]
    elif layer not in layers:
        raise GradflowError(f"{what}{at} has no layer {layer}: its layers are {', '.join(map(str, layers))}")
    if bidir and direction is None:
        raise GradflowError(f"{cell.name}: {what}{at} is bidirectional (…_reverse keys); gradflow measures one "
                            "direction: pass --direction forward (direction='forward' in Python) to "
                            "measure the forward direction alone, knowing the curves then ignore the "
                            "reverse one (gradflow.stacked_network measures both)")
    if direction == "reverse":
        raise GradflowError("direction reverse is not supported: the reverse direction runs over "
                            "reversed time, which gradflow does not measure; pass forward")
    keys = {}
    for kind in TORCH_KEYS:
        for lay in ((None, 0) if layer == 0 else (layer,)):
            key = g.keys.get((kind, lay, False))
            if key is not None:
                keys[kind] = key
                break
    out = {kind: flat[key] for kind, key in keys.items()}
    batch_first = None
    if mod is not None and hasattr(mod, "batch_first") and hasattr(source, "state_dict"):
        batch_first = bool(mod.batch_first)  # an archive's layout is the CLI's to apply
    told = []
    if g.prefix and prefix is None:
        told.append(f"using the recurrent layer under {g.prefix!r}"
                    + (f" ({_module_kind(mod)[2]})" if mod is not None else ""))
    if len(layers) > 1:
        told.append(f"measuring layer {layer} of {len(layers)}: the curves ignore the other layers")
    if bidir:
        told.append("measuring the forward direction: the curves ignore the reverse one")
    told += _identity_notes(cell, mod)
    if told:
        note(f"{what}: {'; '.join(told)}")
    return Selected(out, g.prefix, layer, len(layers), batch_first)



@dataclass(frozen=True)
class Module:
    """Every layer and direction of one recurrent module (for :mod:`gradflow._numeric.stack`).

    Attributes:
        arrays: ``(layer, direction)`` → ``{weight_ih, weight_hh[, bias_ih, bias_hh][, weight_hr]}``.
        prefix: where the module was found; layers: how many it stacks; bidirectional: whether
            it has ``…_reverse`` keys; proj_size: rows of ``weight_hr`` (0 without projection).
        batch_first, dropout: the module's, when a module object was given (else None, 0.0).
    """

    arrays: Mapping[tuple[int, str], Mapping[str, Any]]
    prefix: str
    layers: int
    bidirectional: bool
    proj_size: int
    batch_first: bool | None
    dropout: float
    last_only: bool = False  # the model outputs the top layer's last step alone (Keras return_sequences=False)


def select_module(cell: str | Cell, source: Any, state: Mapping[str, Any], *, what: str,
                  prefix: str | None = None) -> Module:
    """Find the recurrent module in ``state`` and return all its layers and directions.

    The module is chosen as by :func:`select_layer` (``prefix`` when there are several) and
    checked against ``cell`` (a module's type; the gate count of ``weight_hh``, of a projected
    LSTM counted against ``weight_hr``'s columns). Nothing is refused for being stacked,
    bidirectional or projected.
    """
    cell = get_cell(cell)
    check_state(state, what)
    flat = flat_state(state)
    groups = _groups(flat, what)
    # a module object, or a TorchScript archive (which keeps its modules' types): checked against the cell
    modules = _torch_modules(source) if hasattr(source, "state_dict") else torchscript_modules(source)
    g = _pick_group(groups, prefix, what)
    mod = modules.get(g.prefix)
    if mod is not None:
        _check_module(cell, mod, g.prefix, what)
    hr = g.keys.get(("weight_hr", 0, False)) or g.keys.get(("weight_hr", None, False))
    proj = 0
    if hr is None:
        _check_gates(cell, g, what)
    else:
        hr_shape = tuple(int(x) for x in getattr(flat[hr], "shape", ()))
        hh_shape = g.whh_shape()
        if len(hr_shape) != 2 or len(hh_shape) != 2 or hh_shape[0] % hr_shape[1]:
            raise GradflowError(f"{what}: weight_hr {hr_shape} and weight_hh {hh_shape} are not an "
                                "LSTM with proj_size (weight_hh (4n, p), weight_hr (p, n))")
        G, want = hh_shape[0] // hr_shape[1], len(cell.recorded.gates)
        if G != want or "c" not in cell.states:
            raise GradflowError(f"cell {cell.name} contradicts the weights in {what}: a projection "
                                f"(weight_hr) over {G} stacked gates is nn.LSTM(proj_size=...): gradflow's lstm")
        proj = hr_shape[0]
    layers = g.layers()
    if layers != list(range(len(layers))):
        raise GradflowError(f"{what}: the layers are {layers}, not 0..{len(layers) - 1}")
    dirs = DIRECTIONS if g.reverse() else DIRECTIONS[:1]
    arrays: dict[tuple[int, str], dict[str, Any]] = {}
    for lay in layers:
        for d in dirs:
            out = {}
            for kind in TORCH_KEYS + ("weight_hr",):
                for key_layer in ((None, 0) if lay == 0 else (lay,)):
                    key = g.keys.get((kind, key_layer, d == "reverse"))
                    if key is not None:
                        out[kind] = flat[key]
                        break
            if "weight_ih" not in out or "weight_hh" not in out or ("weight_hr" in out) != bool(proj):
                raise GradflowError(f"{what}: layer {lay} ({d}) lacks weight_ih, weight_hh or weight_hr")
            arrays[(lay, d)] = out
    batch_first = bool(mod.batch_first) if mod is not None and hasattr(mod, "batch_first") \
        and hasattr(source, "state_dict") else None  # an archive's layout is the CLI's to apply
    dropout = float(getattr(mod, "dropout", 0.0) or 0.0) if mod is not None else 0.0
    told = [f"using the recurrent layer under {g.prefix!r}"] if g.prefix and prefix is None else []
    told += _identity_notes(cell, mod)
    if told:
        note(f"{what}: {'; '.join(told)}")
    return Module(arrays, g.prefix, len(layers), len(dirs) == 2, proj, batch_first, dropout)
