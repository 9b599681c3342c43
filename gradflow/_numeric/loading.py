"""Reading user files (weights, inputs) so that every bad file is one clear ``GradflowError``.

Nothing here runs pickled Python: ``.pt`` files go through ``torch.load(weights_only=True)``;
``.npy``/``.npz`` files through NumPy's format readers with pickles refused. TorchScript archives
are refused unless the caller trusts them (``trust_torchscript=True``, ``--trust-torchscript``):
``torch.jit.load`` has no safe mode (PyTorch's documentation: malicious pickle data can execute
arbitrary code during it; its SECURITY.md: treat a TorchScript model as code from its provider).
A ``.pt`` that is not a zip archive reaches ``torch.load`` only when its first pickle is torch's
magic number (parsed by :mod:`pickletools`, which runs nothing): a plain pickle or random bytes
are refused before. torch's advice to retry with ``weights_only=False`` (which runs pickled
code) is never passed on.
Files are recognised by their first bytes, not by their names, so a ``.npy`` renamed ``.npz`` is
named for what it is.

Of an ``.npz`` only the members gradflow uses are read, each after its header has been checked:
a real numeric dtype, a declared size that fits in memory, and a stored size that agrees with the
declared shape (a member that inflates to far more than its shape needs is refused unread).

Arrays are accepted only with real numeric dtypes: complex, bool, string, object, datetime and
structured arrays are refused (they would otherwise be cast silently). Half-precision weights
(float16, bfloat16) are converted to the requested dtype, with a note on stderr.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from .._checks import GradflowError, one_line

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
#: a stored .npy member may exceed its declared data by its header (at most 64 KiB) and no more
_HEADER_SLACK = 1 << 16

_SAVE_STATE_DICT = "save the weights with torch.save(module.state_dict(), PATH)"


class GradflowNote(UserWarning):
    """Something gradflow did for you that you should know (printed as ``gradflow: note: …``)."""


def note(message: str) -> None:
    warnings.warn(message, GradflowNote, stacklevel=3)


@contextlib.contextmanager
def notes_to_stderr() -> Iterator[None]:
    """Show :class:`GradflowNote` warnings as one line ``gradflow: note: …`` on stderr (each
    distinct note once: a file read twice is noted once)."""
    import sys

    old = warnings.showwarning
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, GradflowNote):
            if str(message) not in shown:
                shown.add(str(message))
                print(f"gradflow: note: {one_line(str(message))}", file=sys.stderr)
        else:
            old(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", GradflowNote)
        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = old


# ================================================================================================
# dtypes
# ================================================================================================

_KIND_NAMES = {"c": "complex numbers", "b": "booleans", "U": "strings", "S": "bytes strings",
               "O": "Python objects", "M": "dates", "m": "time spans", "V": "structured records"}


def check_dtype(dtype: Any, what: str) -> None:
    """Refuse a dtype that is not a real number (NumPy, CuPy or torch dtype)."""
    if hasattr(dtype, "is_complex"):  # torch.dtype
        if dtype.is_complex:
            raise GradflowError(f"{what} holds complex numbers ({dtype}); gradflow needs real weights "
                                "and inputs (take .real or .abs() explicitly if that is what you mean)")
        if str(dtype) == "torch.bool":
            raise GradflowError(f"{what} holds booleans ({dtype}); gradflow needs real numbers")
        return
    kind = np.dtype(dtype).kind
    if kind in "fiu":
        return
    extra = " (take .real or abs() explicitly if that is what you mean)" if kind == "c" else ""
    raise GradflowError(f"{what} holds {_KIND_NAMES.get(kind, 'non-numeric values')} (dtype "
                        f"{np.dtype(dtype)}); gradflow needs real numbers{extra}")


def real_array(value: Any, what: str, half: list[str] | None = None) -> np.ndarray:
    """``value`` (torch tensor, NumPy/CuPy array, nested list) as a real NumPy array.

    Half-precision values are widened; their dtype is appended to ``half`` when given (the caller
    says so once), else a note is shown at once.
    """
    if hasattr(value, "detach"):  # torch tensor
        import torch

        check_dtype(value.dtype, what)
        if value.dtype in (torch.bfloat16, torch.float16):
            kind = str(value.dtype).removeprefix("torch.")
            if half is None:
                note(f"{what} is {kind}; converted to float64")
            else:
                half.append(kind)
            value = value.detach().to(torch.float64)
        return value.detach().cpu().numpy()
    if hasattr(value, "get") and hasattr(value, "dtype") and not isinstance(value, Mapping):
        value = value.get()  # cupy
    if isinstance(value, Mapping):
        raise GradflowError(f"{what} is a dict, not an array (a nested state_dict or checkpoint?); "
                            f"{_SAVE_STATE_DICT}")
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise GradflowError(f"{what} is not an array: {e}") from None
    check_dtype(a.dtype, what)
    if a.dtype == np.float16:
        if half is None:
            note(f"{what} is float16; converted to float64")
        else:
            half.append("float16")
    return a


# ================================================================================================
# state_dicts
# ================================================================================================

def check_state(state: Any, source: str) -> Mapping[str, Any]:
    """A mapping with string keys and no doubled key (``weight_ih`` beside ``weight_ih_l0``)."""
    if not isinstance(state, Mapping):
        what = type(state).__name__
        if hasattr(state, "shape"):
            what = f"a single tensor of shape {tuple(state.shape)}"
        elif isinstance(state, (list, tuple)):
            what = f"a {type(state).__name__} of {len(state)} items"
        raise GradflowError(f"{source} holds {what}, not a state_dict (a dict of named tensors); "
                            f"{_SAVE_STATE_DICT}")
    bad = [k for k in state if not isinstance(k, str)]
    if bad:
        raise GradflowError(f"{source} is a dict whose keys are not all parameter names (e.g. {bad[0]!r}); "
                            f"{_SAVE_STATE_DICT}")
    for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        if key in state and key + "_l0" in state:
            raise GradflowError(f"{source} has both {key} and {key}_l0; keep one (gradflow would have "
                                "to guess which is meant)")
    # what the arrays will take once materialised: a broadcast view (stride 0) stores one entry
    # but declares many, so the sizes are checked before any copy
    # nested too: a checkpoint's {'model': {...}} is searched for its layers (checkpoint.flat_state)
    _guard(sum(math.prod(int(d) for d in v.shape) * int(getattr(v, "itemsize", 8) or 8)
               for v in _arrays_in(state, source)), source)
    return state


#: the most entries gradflow walks in a nested checkpoint (a pickle's memo can make a 4 KB file a
#: tree of 50⁸ entries: one dict referred to 50 times at each of 8 levels)
MAX_ENTRIES = 1_000_000


def _arrays_in(value: Any, source: str) -> Iterator[Any]:
    """The arrays (anything with a shape) in nested mappings, lists and tuples, 8 levels deep,
    at most :data:`MAX_ENTRIES` entries walked (each time an entry is reached)."""
    stack, seen = [(value, 0)], 0
    while stack:
        v, depth = stack.pop()
        seen += 1
        if seen > MAX_ENTRIES:
            raise GradflowError(f"{source} holds more than {MAX_ENTRIES:,} nested entries (counting each "
                                f"shared one every time it is reached); {_SAVE_STATE_DICT}")
        if hasattr(v, "shape"):
            yield v
        elif depth <= 8 and isinstance(v, (Mapping, list, tuple)):
            stack.extend((w, depth + 1) for w in (v.values() if isinstance(v, Mapping) else v))


# ================================================================================================
# files
# ================================================================================================

def _open_file(path: str, what: str) -> bytes:
    """The first bytes of a readable, non-empty regular file."""
    if not os.path.lexists(path):
        raise GradflowError(f"{what} file not found: {path}")
    if not os.path.exists(path):
        raise GradflowError(f"{what} file {path} is a symbolic link to {os.readlink(path)}, which does "
                            "not exist")
    if os.path.isdir(path):
        raise GradflowError(f"{what} file {path} is a directory")
    if not os.path.isfile(path):  # a pipe (<(…)), a device: read more than once, or never ending
        raise GradflowError(f"{what} file {path} is not a regular file (a pipe or a device); gradflow "
                            "reads a file more than once: save it to a file first")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise GradflowError(f"cannot read {what} file {path}: {e.strerror or e}") from None
    if not head:
        raise GradflowError(f"{what} file {path} is empty")
    return head


def _declared_bytes(shape, dtype) -> int:
    return math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize


def _guard(nbytes: int, what: str) -> None:
    from .size_guard import MEMORY_SHARE, available_bytes, human

    avail = available_bytes()
    if nbytes > avail * MEMORY_SHARE:
        raise GradflowError(f"{what} declares {human(nbytes)} of data, more than the {human(avail)} "
                            "of memory available")


def _read_header(f, what: str):
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except (zipfile.BadZipFile, zlib.error, NotImplementedError) as e:  # a damaged or odd zip member
        raise GradflowError(f"{what} is corrupt ({e})") from None
    except (ValueError, EOFError, OSError) as e:
        raise GradflowError(f"{what} is not a valid .npy array ({e})") from None
    if dtype.hasobject:
        raise GradflowError(f"{what} holds Python objects (dtype {dtype}); gradflow reads only "
                            "numeric arrays and never unpickles")
    check_dtype(dtype, what)
    return shape, fortran, dtype


def _read_data(f, shape, fortran, dtype, what: str) -> np.ndarray:
    nbytes = _declared_bytes(shape, dtype)
    try:
        data = f.read(nbytes)
        f.read(1)  # reach the end of the member, so that a zip member's CRC is checked
    except (zipfile.BadZipFile, zlib.error, NotImplementedError) as e:
        raise GradflowError(f"{what} is corrupt ({e})") from None
    except (OSError, EOFError) as e:
        raise GradflowError(f"{what} cannot be read ({e})") from None
    if len(data) != nbytes:
        raise GradflowError(f"{what} is truncated: its header declares shape {tuple(shape)} "
                            f"({nbytes} bytes) but only {len(data)} bytes follow")
    a = np.frombuffer(data, dtype=dtype)
    return a.reshape(shape[::-1]).T if fortran else a.reshape(shape)


def read_npy(path: str, what: str = "inputs") -> np.ndarray:
    """One array saved with ``np.save``; ``.npz`` and ``.pt`` files are named for what they are."""
    head = _open_file(path, what)
    if head.startswith(ZIP_MAGIC):
        kind = "a PyTorch file" if _is_torch_zip(path) else "an .npz archive"
        raise GradflowError(f"{what} file {path} is {kind}; {what} must be one array saved with "
                            "np.save (.npy)")
    if not head.startswith(NPY_MAGIC):
        raise GradflowError(f"{what} file {path} is not a .npy array (save it with np.save)")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        shape, fortran, dtype = _read_header(f, f"{what} file {path}")
        nbytes = _declared_bytes(shape, dtype)
        if size - f.tell() < nbytes:
            raise GradflowError(f"{what} file {path} is truncated: it declares shape {tuple(shape)} "
                                f"({nbytes} bytes) but holds {size - f.tell()} bytes of data")
        _guard(nbytes, f"{what} file {path}")
        a = _read_data(f, shape, fortran, dtype, f"{what} file {path}")
    if a.dtype == np.float16:
        note(f"{what} file {path} is float16; converted to float64")
    return a


def _is_torch_zip(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith(("/data.pkl", "/constants.pkl", "/version")) for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_npz(path: str, wanted: tuple[str, ...] | Callable[[str], bool],
             kind: str = "weights") -> dict[str, np.ndarray]:
    """The members ``wanted`` (names without ``.npy``, or a test of the name) of an ``.npz``; the
    others are not read. ``kind`` names the file in messages (``weights``, ``head``, ``initial``)."""
    what = f"{kind} file {path}"
    head = _open_file(path, kind)
    example = {"weights": "weight_ih=..., weight_hh=..., ...", "head": "weight=..., bias=...",
               "initial": "h0=..., c0=..."}.get(kind, "NAME=...")
    if head.startswith(NPY_MAGIC):
        raise GradflowError(f"{what} is a single .npy array, not an .npz archive of named arrays; save "
                            f"the {'initial state' if kind == 'initial' else kind} with np.savez(PATH, {example})")
    if not head.startswith(ZIP_MAGIC):
        raise GradflowError(f"{what} is not an .npz archive (save it with np.savez)")
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise GradflowError(f"{what} is not a readable .npz archive (truncated or corrupt: {e})") from None
    out: dict[str, np.ndarray] = {}
    total = 0
    with z:
        members = {i.filename.removesuffix(".npy"): i for i in z.infolist()}
        names = [k for k in members if wanted(k)] if callable(wanted) else wanted
        for name in names:
            info = members.get(name)
            if info is None:
                continue
            label = f"{what}: member {name}"
            try:
                f = z.open(info)
            except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as e:
                raise GradflowError(f"{label} cannot be read ({e})") from None
            with f:
                shape, fortran, dtype = _read_header(f, label)
                nbytes = _declared_bytes(shape, dtype)
                if info.file_size > nbytes + _HEADER_SLACK:
                    raise GradflowError(f"{label} declares shape {tuple(shape)} ({nbytes} bytes) but "
                                        f"inflates to {info.file_size} bytes; refusing it unread")
                _guard(nbytes, label)
                total += nbytes  # the members together, before each is read
                _guard(total, f"{what} (its members read so far)")
                out[name] = _read_data(f, shape, fortran, dtype, label)
        if not out:
            wants = ("weight_ih, weight_hh, bias_ih, bias_hh (or *_l0, under any prefix)"
                     if kind == "weights" else f"the arrays it needs ({example.replace('=...', '')})")
            raise GradflowError(f"{what} has none of {wants} "
                                f"(found: {', '.join(sorted(members)) or 'nothing'})")
    return out


class _NotPlain(Exception):
    """A .pt file that is more than tensors in dicts: read by torch instead."""


#: the storage classes of a plain ``torch.save`` archive and their little-endian NumPy dtypes
_PT_STORAGES = {"DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "LongStorage": "i8",
                "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
                "BoolStorage": "?"}


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None,
                    *, spend: Callable[[int], None] | None = None):
    """A tensor of a plain archive as a NumPy array (a copy), its view checked against its storage;
    ``spend`` is told the bytes of the copy before it is made (the running total of the file)."""
    if hooks or not isinstance(storage, np.ndarray):
        raise _NotPlain
    size, stride = tuple(int(v) for v in size), tuple(int(v) for v in stride)
    if len(size) != len(stride) or min(size + stride + (int(offset),), default=0) < 0:
        raise _NotPlain
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    if math.prod(size) > storage.shape[0]:  # a broadcast view (stride 0): more entries than stored
        raise _NotPlain
    last = int(offset) + sum((n - 1) * st for n, st in zip(size, stride, strict=True))
    if last >= storage.shape[0]:
        raise _NotPlain
    if spend is not None:
        spend(math.prod(size) * storage.itemsize)
    view = np.lib.stride_tricks.as_strided(storage[int(offset):], shape=size,
                                           strides=tuple(st * storage.itemsize for st in stride), writeable=False)
    return np.array(view)


#: a state_dict's pickle takes a few hundred bytes per tensor; each byte of a crafted one can make
#: an object of up to ~216 bytes (an empty set), so its size is bounded before it is unpickled
_PICKLE_LIMIT = 64 << 20
_PICKLE_GROWTH = 256


def _read_pt_plain(path: str, what: str) -> Mapping[str, Any] | None:
    """The state_dict of a plain ``torch.save`` zip archive (tensors in dicts, lists, numbers and
    strings) read without torch, as NumPy arrays: a pickle whose only globals are
    ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the storage classes,
    everything else refused. None when the file is anything more (torch then reads it, with
    its own checks and messages)."""
    import collections
    import pickle

    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return None
    with z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1 or any("/code/" in n or n.endswith("/constants.pkl") for n in names):
            return None
        prefix = pkl[0][:-len("/data.pkl")]
        pkl_size = z.getinfo(pkl[0]).file_size
        if pkl_size > _PICKLE_LIMIT:
            raise GradflowError(f"{what}: its pickle (data.pkl) inflates to {pkl_size} bytes, far more than "
                                f"a state_dict's; refusing it unread")
        _guard(pkl_size * _PICKLE_GROWTH, f"{what} (its pickle, data.pkl, may build up to "
                                          f"{_PICKLE_GROWTH}x its {pkl_size} bytes of objects)")
        # every byte materialised (storages read, tensors copied) counts against one budget:
        # a crafted pickle may refer to one storage from many tensors
        spent = [0]
        storages: dict[tuple[str, str], np.ndarray] = {}

        def spend(nbytes: int) -> None:
            from .size_guard import MEMORY_SHARE, available_bytes, human

            spent[0] += nbytes
            avail = available_bytes()
            if spent[0] > avail * MEMORY_SHARE:
                raise GradflowError(f"{what}: its tensors need more than {human(spent[0])} of memory "
                                    f"(storages read and tensors copied so far), more than "
                                    f"{MEMORY_SHARE:.0%} of the {human(avail)} available")

        def rebuild(*args: Any) -> np.ndarray:  # a pickle's REDUCE passes positional arguments only
            if len(args) > 7:
                raise _NotPlain
            return _rebuild_tensor(*args, spend=spend)
        order = "<"
        if f"{prefix}/byteorder" in names:
            word = z.read(f"{prefix}/byteorder").strip()
            if word not in (b"little", b"big"):
                return None
            order = "<" if word == b"little" else ">"

        class _Storage(str):
            pass

        class Reader(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) == ("collections", "OrderedDict"):
                    return collections.OrderedDict
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return rebuild
                if module == "torch" and name in _PT_STORAGES:
                    return _Storage(name)
                raise _NotPlain

            def persistent_load(self, pid):
                if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                        and isinstance(pid[1], _Storage) and isinstance(pid[2], str)):
                    raise _NotPlain
                member = f"{prefix}/data/{pid[2]}"
                if member not in names:
                    raise _NotPlain
                dtype = np.dtype(_PT_STORAGES[pid[1]]).newbyteorder("<" if order == "<" else ">")
                key = (member, dtype.str)
                if key not in storages:  # a storage referred to again is read once
                    size = z.getinfo(member).file_size
                    spend(2 * size)  # the bytes read and their array, while both exist
                    spent[0] -= size  # the bytes are dropped once the array is made
                    data = z.read(member)
                    if len(data) % dtype.itemsize:
                        raise _NotPlain
                    storages[key] = np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="))
                if storages[key].shape[0] < int(pid[4]):
                    raise _NotPlain
                return storages[key]

        try:
            with z.open(pkl[0]) as f:
                return Reader(f).load()
        except GradflowError:  # too large: refused here, never handed to torch
            raise
        except (_NotPlain, pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
                AttributeError, IndexError, zipfile.BadZipFile, zlib.error, NotImplementedError, OSError):
            return None


#: whether the current call trusts TorchScript archives (set by :func:`trusting_torchscript`)
_TRUST_TORCHSCRIPT: contextvars.ContextVar[bool] = contextvars.ContextVar("trust_torchscript", default=False)


@contextlib.contextmanager
def trusting_torchscript(trust: object = True) -> Iterator[None]:
    """Within the block TorchScript archives are loaded (``torch.jit.load``, which can run the code
    an archive holds) when ``trust`` is True; False changes nothing (an outer trust stays)."""
    if not isinstance(trust, bool):
        raise GradflowError(f"trust_torchscript must be True or False, got {trust!r}")
    token = _TRUST_TORCHSCRIPT.set(trust or _TRUST_TORCHSCRIPT.get())
    try:
        yield
    finally:
        _TRUST_TORCHSCRIPT.reset(token)


def is_torchscript(names: list[str]) -> bool:
    """Whether a zip archive with these member names is a TorchScript archive: it has a
    ``constants.pkl``, torch's own test (``torch.load`` hands such an archive to ``torch.jit.load``),
    with or without its ``code/``."""
    return any(n.endswith("/constants.pkl") and n.count("/") == 1 for n in names)


def load_torchscript(path: str, what: str) -> Any:
    """``torch.jit.load`` of a TorchScript archive, only when trusted (:func:`trusting_torchscript`);
    otherwise one GradflowError saying why and how to opt in (torch.jit.load is never reached)."""
    if not _TRUST_TORCHSCRIPT.get():
        raise GradflowError(f"{what} is a TorchScript archive, which gradflow does not load unless you "
                            "trust it: loading one can run the code it holds (torch.jit.load has no safe "
                            "mode); if you trust the file, pass trust_torchscript=True (load_weights, network, "
                            "stacked_network; gradient_flow, stacked_flow for a head file; "
                            "--trust-torchscript on the command line), "
                            f"or {_SAVE_STATE_DICT}")
    import torch

    with warnings.catch_warnings():  # its deprecation notice is not the user's concern
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(path, map_location="cpu")


def read_pt(path: str, kind: str = "weights") -> Mapping[str, Any]:
    """A state_dict from a ``.pt`` file (or the state_dict of a TorchScript archive); ``kind`` names
    the file in messages. A plain archive of tensors is read without importing torch
    (:func:`_read_pt_plain`, as NumPy arrays); anything else by ``torch.load(weights_only=True)``."""
    what = f"{kind} file {path}"
    head = _open_file(path, kind)
    if head.startswith(ZIP_MAGIC):
        plain = _read_pt_plain(path, what)
        if plain is not None:
            return check_state(plain, what)
    try:
        import torch
    except ImportError:
        raise GradflowError("reading .pt files needs torch: pip install 'gradflow[torch]'") from None
    if head.startswith(NPY_MAGIC):
        raise GradflowError(f"{what} is a .npy array, not a PyTorch file; {_SAVE_STATE_DICT}")
    if head.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                bad = z.testzip()
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, OSError) as e:
            raise GradflowError(f"{what} is not a readable PyTorch file (truncated or corrupt: {e})") from None
        if bad is not None:
            raise GradflowError(f"{what} is corrupt: member {bad} fails its CRC check")
        if is_torchscript(names):
            try:
                module = load_torchscript(path, what)
            except GradflowError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure of a foreign file is bad input
                said = [line.strip() for line in str(e).splitlines() if line.strip()]
                raise GradflowError(f"{what} is a TorchScript archive that cannot be loaded: "
                                    f"{said[0] if said else type(e).__name__}") from None
            note(f"{what} is a TorchScript archive; its state_dict was read")
            return check_state(dict(module.state_dict()), what)
        if not any(n.endswith("/data.pkl") for n in names):
            raise GradflowError(f"{what} is a zip archive but not a PyTorch file")
    elif not _legacy_torch_file(path):  # nothing torch.load reads: never handed to it
        raise GradflowError(f"{what} is not a readable PyTorch file: neither the zip archive nor the older "
                            f"format that torch.save writes (a plain pickle, another format, or a "
                            f"damaged file); {_SAVE_STATE_DICT}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as first:  # noqa: BLE001 - NumPy data in a checkpoint is data, not code
                allowed = _numpy_globals(path, torch) if "Unsupported global" in str(first) else None
                if allowed is None:
                    raise
                try:
                    with torch.serialization.safe_globals(allowed):
                        state = torch.load(path, map_location="cpu", weights_only=True)
                except Exception:  # noqa: BLE001 - e.g. an object array: Python objects after all
                    raise GradflowError(f"{what} holds pickled Python objects beyond tensors and NumPy "
                                        "numbers (a NumPy array of objects?); gradflow does not unpickle "
                                        f"code; {_SAVE_STATE_DICT}") from None
    except Exception as e:  # noqa: BLE001 - classify, never show a traceback
        import pickle

        text = str(e)
        if isinstance(e, pickle.UnpicklingError) and "Unsupported global" in text:
            glob = text[text.index("Unsupported global"):].split("\n")[0].split(" was not")[0]
            glob = glob.removeprefix("Unsupported global: ").removeprefix("GLOBAL ").strip()
            code = [g for g in _unsafe_globals(path, torch) if not _NUMPY_DATA.match(g)]
            glob = code[0] if code else glob
            raise GradflowError(f"{what} holds pickled Python objects (such as {glob}), "
                                "probably a whole module saved with torch.save(module); gradflow does "
                                f"not unpickle code; {_SAVE_STATE_DICT}") from None
        if isinstance(e, (EOFError, pickle.UnpicklingError, RuntimeError)):
            raise GradflowError(f"{what} is not a readable PyTorch file (truncated or corrupt: "
                                f"{_torch_reason(e)})") from None
        raise GradflowError(f"{what} cannot be read: {_torch_reason(e)}") from None
    if hasattr(state, "state_dict") and callable(state.state_dict):
        state = state.state_dict()
    return check_state(state, what)


#: the first pickle of a file in torch.save's older (non-zip) format: torch's magic number
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _legacy_torch_file(path: str) -> bool:
    """Whether ``path`` opens as torch.save's older format: a pickle of the magic number alone
    (read with :mod:`pickletools`, which parses opcodes and runs nothing), or an old tar archive."""
    import pickletools
    import tarfile

    try:
        with open(path, "rb") as f:
            args = []
            for op, arg, _ in pickletools.genops(f):  # stops at the first STOP
                if op.name not in ("PROTO", "FRAME", "STOP"):
                    args.append(arg)
                if len(args) > 1:
                    return False
        if args == [_LEGACY_MAGIC]:
            return True
    except Exception:  # noqa: BLE001 - not a pickle: perhaps torch's oldest (tar) format
        pass
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _torch_reason(e: BaseException) -> str:
    """What torch said went wrong, without its advice to load with ``weights_only=False`` (which
    runs pickled code): the unpickler's own reason when it gives one, else the exception's type."""
    text = str(e)
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    line = found.group(1).strip() if found else (text.strip().splitlines() or [""])[0].strip()
    if not line or re.search(r"weights_only|arbitrary code|trust", line, re.IGNORECASE):
        return type(e).__name__
    return line


#: the pickled NumPy globals of plain arrays, scalars and dtypes (a checkpoint's metrics, say):
#: data, not code, so a checkpoint holding them is read (weights_only, with these allowed)
_NUMPY_DATA = re.compile(r"^numpy(?:\._core|\.core)?\.multiarray\.(?:_reconstruct|scalar)$|^numpy\.(?:ndarray|dtype)$"
                         r"|^numpy\.dtypes\.\w+DType$")


def _unsafe_globals(path: str, torch: Any) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - an older torch, or an unreadable file: nothing to add
        return []


def _numpy_globals(path: str, torch: Any) -> list[Any] | None:
    """The objects of a checkpoint's pickled globals when every one is NumPy data (else None)."""
    import importlib

    names = _unsafe_globals(path, torch)
    if not names or not all(_NUMPY_DATA.match(g) for g in names):
        return None
    out = []
    for g in names:
        mod, _, attr = g.rpartition(".")
        try:
            out.append(getattr(importlib.import_module(mod), attr))
        except (ImportError, AttributeError):
            return None
    try:  # an array's or scalar's dtype is pickled as its class (numpy >= 1.25)
        import numpy.dtypes as np_dtypes

        out += [getattr(np_dtypes, n) for n in dir(np_dtypes) if n.endswith("DType") and n != "ObjectDType"]
    except ImportError:  # pragma: no cover - an older numpy pickles dtypes as numpy.dtype
        pass
    return out


#: the per-layer tensor names of PyTorch's nn.RNN/LSTM/GRU (layer 0 adds the suffix ``_l0``)
TORCH_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
#: the last component of a recurrent parameter's name (any layer, either direction, projections)
_RECURRENT_NAME = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)(_l\d+)?(_reverse)?$")


def read_weights_file(path: str) -> Mapping[str, Any]:
    """A state_dict-like mapping from a ``.npz``, ``.pt`` or ``.pth`` file."""
    if path.endswith(".npz"):
        def recurrent(name: str) -> bool:  # any prefix, layer, direction; projections too
            return _RECURRENT_NAME.match(name.rpartition(".")[2]) is not None

        return check_state(read_npz(path, recurrent), f"weights file {path}")
    if path.endswith((".pt", ".pth")):
        return read_pt(path)
    _open_file(path, "weights")
    raise GradflowError(f"unknown weights file type {path!r}: use .pt, .pth or .npz (PyTorch), or "
                        ".weights.h5 or .keras (Keras 3)")



def torchscript_modules(path: Any) -> dict[str, Any]:
    """The recurrent submodules (``nn.RNN``/``LSTM``/``GRU`` and their cells), by name, of the
    TorchScript archive at ``path``, which keeps their type, ``nonlinearity``, ``batch_first`` …;
    ``{}`` for any other file or an archive that does not load (:func:`read_pt` then says why)."""
    if not isinstance(path, (str, os.PathLike)):
        return {}
    path = os.fspath(path)
    if not path.endswith((".pt", ".pth")) or not os.path.isfile(path):
        return {}
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return {}
    if not is_torchscript(names) or not _TRUST_TORCHSCRIPT.get():  # untrusted: read_pt refuses it
        return {}
    try:
        module = load_torchscript(path, f"weights file {path}")
        kinds = ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")
        return {name: mod for name, mod in module.named_modules()
                if getattr(mod, "original_name", None) in kinds}
    except Exception:  # noqa: BLE001 - read_pt reports what is wrong with the file
        return {}


def torchscript_batch_first(path: str, prefix: str | None = None) -> bool | None:
    """The ``batch_first`` of the recurrent module (under ``prefix`` when given) of a TorchScript
    archive; None for any other file, for none or several such modules that disagree."""
    want = None if prefix is None else prefix.strip().rstrip(".")
    found = {bool(mod.batch_first) for name, mod in torchscript_modules(path).items()
             if (want is None or name == want) and hasattr(mod, "batch_first")}
    return found.pop() if len(found) == 1 else None
