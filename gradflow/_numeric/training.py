"""Gradient flow during training: a recorder an ordinary PyTorch training loop calls.

Every ``every`` steps :meth:`Recorder.step` copies the recurrent module's current weights
(detached, float64), runs :func:`~gradflow.gradient_flow` on one fixed probe batch and appends
one JSON line to a file: ``{"step": …, "seconds": …, **flow.to_json()}``, i.e. the training
step, the wall time the recording took, and the ``gradflow flow --json`` object (``cell``,
``hidden`` = n, ``steps`` = T, ``batch``, ``curve``: log10 ‖∂s_T/∂s_k‖₂, ‖·‖_F, ‖∂L/∂s_k‖ for
k = 0…T−1, ``lyapunov``). The curves are those of gradflow's default loss L = Σ h_T on the probe
batch; the training loss is not involved, so recordings at different steps compare the network
alone.

Torch is imported only inside the functions that need it.

Overhead per recording (``benchmarks/bench_recorder.py``: an LSTM with m = 1, probe batch 16,
one BLAS thread, Lyapunov exponents off; CPU seconds of the process, on a shared 2-core machine
under a load of about 10, whose wall times were about 3× these): 0.09 s for n = 32, T = 8;
0.46 s for n = 32, T = 64; 1.3 s for n = 64, T = 64. It grows with T·B and with the state size
(the sweep over the 2n × 2n Jacobian of an LSTM).
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .._checks import GradflowError
from .flow import decay_rate, gradient_flow
from .loading import GradflowNote, note, real_array
from .network import network

#: the torch module types gradflow can read, and the cell each is (RNN: by its nonlinearity)
_TORCH_CELLS = {"LSTM": "lstm", "LSTMCell": "lstm", "GRU": "gru", "GRUCell": "gru"}


def recurrent_submodule(module: Any) -> Any:
    """The one ``torch.nn`` RNN/LSTM/GRU module or cell in ``module`` (itself, or a submodule of a
    whole model); ``GradflowError`` when there is none or several."""
    import torch

    kinds = (torch.nn.RNNBase, torch.nn.RNNCellBase)
    if not isinstance(module, torch.nn.Module):
        raise GradflowError(f"Recorder needs a torch.nn.Module, got {type(module).__name__}")
    found = [m for m in module.modules() if isinstance(m, kinds)]
    if not found:
        raise GradflowError(f"{type(module).__name__} holds no nn.RNN, nn.LSTM or nn.GRU (or their cells)")
    if len(found) > 1:
        raise GradflowError(f"{type(module).__name__} holds {len(found)} recurrent modules; pass the one to "
                            "record (e.g. Recorder(model.rnn, ...))")
    return found[0]


def torch_cell_name(module: Any) -> str:
    """gradflow's cell for a ``torch.nn`` LSTM/GRU/RNN module or cell (or the one such submodule
    of a model); ``GradflowError`` when there is none or several."""
    mod = recurrent_submodule(module)
    for klass in type(mod).__mro__:
        if klass.__name__ in _TORCH_CELLS:
            return _TORCH_CELLS[klass.__name__]
        if klass.__name__ in ("RNN", "RNNCell"):
            return "relu-rnn" if getattr(mod, "nonlinearity", "tanh") == "relu" else "tanh-rnn"
    raise GradflowError(f"{type(mod).__name__} is not an nn.RNN, nn.LSTM or nn.GRU")  # pragma: no cover


def _tensorboard_writer(target: Any) -> Any:
    """A SummaryWriter-like object (``add_scalar``) for ``target``: None, a writer, or a log
    directory (needs ``torch.utils.tensorboard``; without it, a note and None)."""
    if target is None or hasattr(target, "add_scalar"):
        return target
    if not isinstance(target, (str, os.PathLike)):
        raise GradflowError(f"tensorboard must be a log directory or a SummaryWriter, got {type(target).__name__}")
    if os.path.lexists(target) and not os.path.isdir(target):
        raise GradflowError(f"tensorboard log directory {os.fspath(target)} exists and is not a directory")
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        note("tensorboard is not installed, so no TensorBoard scalars are written (pip install tensorboard); "
             "the JSON lines are written as asked")
        return None
    return SummaryWriter(os.fspath(target))


class Recorder:
    """Record gradient-flow curves of a PyTorch recurrent module while it trains.

    >>> rec = Recorder(model.rnn, every=50, inputs=x_probe, path="flow.jsonl")
    >>> for step, (x, y) in enumerate(batches):
    ...     rec.step(step)             # records at steps 0, 50, 100, …
    ...     loss = ...; loss.backward(); opt.step()
    >>> rec.record(step)               # and once after the last step

    Arguments:
        module: the ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (or ``*Cell``) being trained, or a model
            holding exactly one of them (its ``batch_first`` is the recurrent layer's). A stacked,
            bidirectional or projected module is recorded whole (:func:`~gradflow.stacked_flow`:
            the recording is the ``flow --json`` object with ``layers``; ``curve`` is the whole
            stack's, ``[]`` when bidirectional) unless ``layer``/``direction`` pick one layer.
        every: record when ``step % every == 0``.
        inputs: the fixed probe batch, laid out as the module takes it: (T, B, m), or (B, T, m)
            for a module built with ``batch_first=True``, or (T, m); tensor or array. It is
            copied once (float64).
        path: the JSON-lines file (one recording per line); started afresh unless ``append``.
        tensorboard: None, a log directory (scalars via ``torch.utils.tensorboard``; a note and
            nothing else when tensorboard is not installed) or a ``SummaryWriter``.
        cell: gradflow's cell name (default: read from the module's type).
        lyapunov: also the leading Lyapunov exponents (as :func:`~gradflow.gradient_flow`);
            off by default to keep a recording cheap.
        spectral: ``"power"`` or ``"svd"``.
        layer, direction: which layer / direction of a stacked or bidirectional module.
        append: append to an existing ``path`` instead of starting it afresh.
        threads: BLAS threads of a recording (default 1: the training loop already keeps the
            cores busy, and competing BLAS threads made a recording many times slower in our
            measurements); None for gradflow's own choice.

    Attributes:
        records: the recordings so far (the dicts written as JSON lines).

    Scalars written to TensorBoard under ``gradflow/``: ``log10_norm_2_k0`` (log10 ‖∂s_T/∂s_0‖₂,
    the whole horizon), ``log10_grad_norm_k0``, ``decay_per_step`` (:func:`~gradflow.decay_rate`
    of the spectral curve, decades per step), ``seconds``, and ``lyapunov_max`` when computed. A
    module large enough to be recorded matrix-free (state size N > 1024) has no spectral curve:
    ``log10_norm_fro_k0`` and ``decay_per_step_fro`` (of the matrix-free ‖·‖_F estimate) instead.

    Overhead: one recording is one gradflow sweep: 0.46 CPU seconds for an LSTM with n = 32,
    T = 64, probe batch 16 (1.3 s for n = 64), measured by ``benchmarks/bench_recorder.py`` on a
    loaded shared CPU; record every few dozen steps, or use a smaller probe batch.
    """

    def __init__(self, module: Any, *, every: int = 50, inputs: Any, path: str | os.PathLike | None = None,
                 tensorboard: Any = None, cell: str | None = None, lyapunov: bool | int | str = False,
                 spectral: str = "power", layer: int | None = None, direction: str | None = None,
                 append: bool = False, threads: int | None = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise GradflowError(f"every must be an integer >= 1, got {every!r}")
        self.module = module
        self.cell = cell if cell is not None else torch_cell_name(module)
        self.every = every
        self.lyapunov, self.spectral = lyapunov, spectral
        self.layer, self.direction = layer, direction
        self.threads = threads
        x = real_array(inputs, "probe inputs").astype(np.float64)  # a copy: the probe stays fixed
        if x.ndim == 2:
            x = x[:, None, :]
        if x.ndim != 3:
            raise GradflowError(f"probe inputs must have shape (T, B, m), (B, T, m) with batch_first, or "
                                f"(T, m); got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise GradflowError("probe inputs contain NaN or inf")
        rnn = recurrent_submodule(module)  # a whole model's layout is its recurrent layer's
        self._batch_first = bool(getattr(rnn, "batch_first", False))
        # a stacked, bidirectional or projected module is recorded whole unless layer/direction pick one
        self.stacked = layer is None and direction is None and (
            int(getattr(rnn, "num_layers", 1)) > 1 or bool(getattr(rnn, "bidirectional", False))
            or int(getattr(rnn, "proj_size", 0) or 0) > 0)
        self.inputs = np.ascontiguousarray(x.transpose(1, 0, 2)) if self._batch_first else x
        self.path = os.fspath(path) if path is not None else None
        self.writer = _tensorboard_writer(tensorboard)
        self.records: list[dict] = []
        self._net(first=True)  # check module, cell and probe now, not at the first recording
        if self.path is not None:
            _check_log_path(self.path, append)
            if not append:
                with open(self.path, "w", encoding="utf-8"):
                    pass

    def _net(self, first: bool = False):
        with warnings.catch_warnings():
            if not first:  # what network() notes about the module was said at the first call
                warnings.simplefilter("ignore", GradflowNote)
            elif self._batch_first:
                warnings.filterwarnings("ignore", message=".*batch_first=True.*", category=GradflowNote)
            if self.stacked:
                from .stack import stacked_network

                net: Any = stacked_network(self.cell, weights=self.module, dtype=np.float64)
            else:
                net = network(self.cell, weights=self.module, layer=self.layer, direction=self.direction,
                              dtype=np.float64)
        if net.input != self.inputs.shape[2]:
            raise GradflowError(f"probe inputs have {self.inputs.shape[2]} features; the module takes {net.input}")
        return net

    def step(self, step: int) -> dict | None:
        """Record if ``step % every == 0``; return the recording (None otherwise)."""
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise GradflowError(f"step must be an integer >= 0, got {step!r}")
        return self.record(int(step)) if step % self.every == 0 else None

    def record(self, step: int) -> dict:
        """Record now, whatever ``every`` says (e.g. after the last training step)."""
        t0 = time.perf_counter()
        net = self._net()
        if self.stacked:  # every layer and direction (stack.stacked_flow), the probe as (T, B, m)
            from .flow import thread_limit
            from .stack import stacked_flow

            with thread_limit(self.threads):
                flow: Any = stacked_flow(net, self.inputs, lyapunov=self.lyapunov, batch_first=False,
                                         spectral=self.spectral)  # type: ignore[arg-type]
        else:
            flow = gradient_flow(net, self.inputs, lyapunov=self.lyapunov, spectral=self.spectral,  # type: ignore[arg-type]
                                 threads=self.threads, batch_first=False)  # the probe is kept as (T, B, m)
        rec = {"step": int(step), "seconds": 0.0, **flow.to_json()}
        rec["seconds"] = time.perf_counter() - t0
        self.records.append(rec)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, allow_nan=False) + "\n")
        if self.writer is not None:
            self._scalars(rec, flow)
        return rec

    def _scalars(self, rec: dict, flow) -> None:
        step = rec["step"]
        values = {"seconds": rec["seconds"]}
        if rec["curve"]:  # a bidirectional network has no whole-stack curve
            first = rec["curve"][0]
            values["log10_grad_norm_k0"] = first["log10_grad_norm"]
            if "log10_norm_2" in first:
                values["log10_norm_2_k0"] = first["log10_norm_2"]
                if flow.steps > 1:
                    values["decay_per_step"] = decay_rate(flow.full.mean().log10_norm_2)
            else:  # matrix-free (N > 1024): no ‖·‖₂ curve, the ‖·‖_F estimate under its own names
                values["log10_norm_fro_k0"] = first["log10_norm_fro"]
                if flow.steps > 1:
                    values["decay_per_step_fro"] = decay_rate(flow.full.mean().log10_norm_fro)
        for lay in rec.get("layers", []):  # stacked: each layer's ‖∂L/∂h^(l)_0‖ on its own clock
            values[f"layer{lay['layer']}_{lay['direction']}/log10_grad_norm_h_k0"] = \
                lay["curve"][0]["log10_grad_norm_h"]
        if rec["lyapunov"] and not isinstance(rec["lyapunov"][0], str):  # not "not resolved"
            values["lyapunov_max"] = rec["lyapunov"][0]
        for key, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(f"gradflow/{key}", float(v), step)
        if hasattr(self.writer, "flush"):
            self.writer.flush()


def _check_log_path(path: str, append: bool) -> None:
    """Refuse a recording path in a missing folder, a folder, a FIFO, or a non-empty file that is not
    a gradflow recording: starting afresh would empty a file gradflow did not write, appending
    would mix recordings into it."""
    if os.path.isdir(path):
        raise GradflowError(f"path {path} is a directory; give a file name such as flow.jsonl")
    if os.path.exists(path) and stat.S_ISFIFO(os.stat(path).st_mode):  # open() would wait for a reader
        raise GradflowError(f"path {path} is a named pipe (FIFO); give a file name such as flow.jsonl")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise GradflowError(f"path {path}: the folder {folder} does not exist")
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    try:
        with open(path, encoding="utf-8") as f:
            first = json.loads(f.readline())
        ours = isinstance(first, dict) and "step" in first and "curve" in first
    except (OSError, ValueError):
        ours = False
    if not ours:
        what = "appends only to" if append else "empties only"
        raise GradflowError(f"{path} exists and is not a gradflow recording; it was left as it was "
                            f"(gradflow {what} its own recordings): give another path")


def read_records(path: str | os.PathLike) -> list[dict]:
    """The recordings of a :class:`Recorder`'s JSON-lines file, in file order (blank lines skipped).

    Each is checked to hold ``step`` and a ``curve``; a bad line is one ``GradflowError`` naming it.
    """
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            lines = f.readlines()
    except FileNotFoundError:
        raise GradflowError(f"recordings file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GradflowError(f"cannot read recordings file {p}: {e}") from None
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise GradflowError(f"{p}, line {i}: not JSON ({e.msg})") from None
        check_record(rec, f"{p}, line {i}")
        out.append(rec)
    return out


def check_record(rec: Any, what: str) -> None:
    """A recording: a dict with an integer ``step`` and a ``curve`` of dicts with ``k`` (non-empty,
    except for a bidirectional network's, which has its per-layer ``layers`` instead)."""
    if not isinstance(rec, Mapping) or not isinstance(rec.get("step"), int) or not isinstance(rec.get("curve"), list) \
            or not (rec["curve"] or (rec.get("bidirectional") and isinstance(rec.get("layers"), list))) \
            or not all(isinstance(c, Mapping) and "k" in c for c in rec["curve"]):
        raise GradflowError(f"{what} is not a gradflow recording (a JSON object with step and curve)")


def curve_matrix(records: Iterable[Mapping[str, Any]], field: str = "log10_norm_2",
                 block: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(steps (R,), values (R, T)) of one curve field over the recordings; JSON null (log10 0)
    is −∞, ``"inf"`` is +∞. ``block``: ``"cell_state"`` or ``"carousel"`` for those curves."""
    steps, rows = [], []
    for i, rec in enumerate(records):
        check_record(rec, f"recording {i}")
        if not rec["curve"]:
            raise GradflowError(f"recording {i} (step {rec['step']}) is of a bidirectional network, which has "
                                "no whole-stack curve; its per-layer curves are in the recording's 'layers'")
        row = []
        for c in rec["curve"]:
            src = c.get(block) if block else c
            if not isinstance(src, Mapping) or field not in src:
                raise GradflowError(f"recording {i} (step {rec['step']}) has no {block + ' ' if block else ''}"
                                    f"{field} curve")
            v = src[field]
            if not (v is None or v == "inf" or (isinstance(v, (int, float)) and not isinstance(v, bool))):
                raise GradflowError(f"recording {i} (step {rec['step']}), k = {c['k']}: {field} is {v!r}, "
                                    "not a number (a gradflow recording holds numbers, null or \"inf\")")
            row.append(-math.inf if v is None else math.inf if v == "inf" else float(v))
        steps.append(rec["step"])
        rows.append(row)
    if not rows:
        raise GradflowError("no recordings to plot")
    if len({len(r) for r in rows}) > 1:
        raise GradflowError("the recordings have curves of different lengths (different T); plot them separately")
    return np.asarray(steps), np.asarray(rows, dtype=float)
