"""Weights stored under the cell's own parameter names (cells the PyTorch layout cannot hold).

IndRNN's recurrent weight is a vector u, the LRU's parameters are ν, θ, γ_log, B_re, B_im, expRNN's
A: none fits ``weight_ih``/``weight_hh``. Such a cell's weights are read from a mapping (or an
``.npz``) keyed by its parameter names: the printed label (``W_{i}``, ``\\nu``) or the same without
backslashes and braces (``W_i``, ``nu``, ``gamma_log``, ``B_re``, ``u``), optionally under a
``prefix.``. The sizes n and m are read off the arrays; a missing name, an unknown one, a wrong
shape, or a non-finite entry is one ``GradflowError`` naming it.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._checks import GradflowError
from .._symbolic.cell import Cell
from .layout import param_shape
from .loading import note, read_npz, real_array


def plain_name(label: str) -> str:
    """``W_{i}`` → ``W_i``, ``\\gamma_{\\log}`` → ``gamma_log``: the label without \\, { and }."""
    return label.replace("\\", "").replace("{", "").replace("}", "")


def uses_own_names(cell: Cell) -> bool:
    """True when the cell has element-wise weights (w-kind) that the stacked PyTorch layout cannot hold."""
    return any(p.kind not in ("W", "U", "b") for p in cell.recorded.params)


def holds_own_names(cell: Cell, source: Any, prefix: str | None = None) -> bool:
    """True when ``source`` (a mapping or an .npz path) has the cell's own parameter names and no
    PyTorch-layout ``weight_hh``: it is then read by name (expRNN's A, U, b; the LRU's …)."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not path.endswith(".npz"):
            return False
        try:
            with zipfile.ZipFile(path) as z:
                keys = [k[:-4] if k.endswith(".npy") else k for k in z.namelist()]
        except (OSError, zipfile.BadZipFile):
            return False  # the PyTorch-layout reader reports the bad file
    elif isinstance(source, Mapping):
        keys = [str(k) for k in source]
    else:
        return False
    if any(k.rpartition(".")[2].startswith("weight_hh") for k in keys):
        return False
    names = {plain_name(p.symbol.name) for p in cell.recorded.params} | {p.symbol.name for p in cell.recorded.params}
    pre = prefix + "." if prefix else ""
    return any(k.startswith(pre) and k[len(pre):] in names for k in keys)


def _key(names: Mapping[str, str], k: str, prefix: str) -> str | None:
    if prefix:
        if not k.startswith(prefix + "."):
            return None
        k = k[len(prefix) + 1:]
    return names.get(k)


def read_named(cell: Cell, source: Any, *, prefix: str | None = None, dtype: Any = np.float64):
    """(n, m, arrays) of ``cell`` from a mapping or an ``.npz`` file keyed by its parameter names."""
    names: dict[str, str] = {}
    for p in cell.recorded.params:
        names[p.symbol.name] = p.symbol.name
        names[plain_name(p.symbol.name)] = p.symbol.name
    pre = prefix or ""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not path.endswith(".npz"):
            keys = ", ".join(plain_name(p.symbol.name) + "=…" for p in cell.recorded.params)
            raise GradflowError(f"{cell.name} weights are read by parameter name from an .npz file "
                                f"(np.savez(path, {keys})); got {path!r}")
        state: Mapping[str, Any] = read_npz(path, lambda k: True)
        what = f"weights file {path}"
    elif isinstance(source, Mapping):
        state, what = source, f"weights for {cell.name}"
    elif hasattr(source, "state_dict") and callable(source.state_dict):
        state, what = source.state_dict(), f"module {type(source).__name__}"
    else:
        raise GradflowError(f"cannot read weights from {type(source).__name__}")
    found: dict[str, Any] = {}
    for k, v in state.items():
        label = _key(names, str(k), pre)
        if label is None:
            continue
        if label in found:
            raise GradflowError(f"{what}: {label} given twice (as {plain_name(label)} and {label})")
        found[label] = v
    missing = [plain_name(p.symbol.name) for p in cell.recorded.params if p.symbol.name not in found]
    if missing:
        prefixes = sorted({str(k).rpartition(".")[0] for k in state if "." in str(k)
                           and _key(names, str(k).rpartition(".")[2], "") is not None})
        hint = f"; give the prefix ({', '.join(prefixes)})" if prefixes and not pre else ""
        raise GradflowError(f"{what} lacks {cell.name}'s parameter(s) {', '.join(missing)} "
                            f"(found: {', '.join(sorted(map(str, state))) or 'nothing'}){hint}")
    half: list[str] = []
    arrays = {k: real_array(v, f"{cell.name}: {plain_name(k)}", half).astype(dtype) for k, v in found.items()}
    if half:
        note(f"{cell.name}: the weights are {'/'.join(sorted(set(half)))}; converted to {np.dtype(dtype).name}")
    n = m = None
    for p in cell.recorded.params:  # n and m from the first array that shows them
        a = arrays[p.symbol.name]
        if a.ndim >= 1 and n is None and p.symbol.shape[0] != 1:  # not a scalar gate's row (mLSTM)
            n = int(a.shape[0])
        if p.kind == "U" and a.ndim == 2 and m is None:
            m = int(a.shape[1])
    if n is None or m is None:
        raise GradflowError(f"{what}: cannot tell the sizes of {cell.name} from its arrays")
    for p in cell.recorded.params:
        want = param_shape(p, n, m)
        got = tuple(arrays[p.symbol.name].shape)
        if got != want:
            raise GradflowError(f"{what}: {cell.name} parameter {plain_name(p.symbol.name)} has shape {got}, "
                                f"expected {want} (hidden={n}, input={m})")
    return n, m, arrays
