"""The loss whose gradient gradflow follows back in time, and the reverse sweep that follows it.

A loss is one of :data:`~gradflow._vocabulary.LOSSES` (per sequence b of the batch):

* ``"sum"``:   L = Σ_i (h_T)_i;
* ``"last"``:  L = CE(V h_T + c, y) (softmax cross-entropy of a linear head on the last state,
  integer targets y (B,): classification);
* ``"every"``: L = Σ_{t=1}^{T} CE(V h_t + c, y_t) (targets (T, B): sequence labelling).

CE(z, y) = −z_y + log Σ_j e^{z_j}, so ∂CE/∂h = Vᵀ(softmax(z) − e_y). The batch is summed
(PyTorch's ``reduction="sum"``; its default ``"mean"`` divides every gradient by B, or T·B for
``"every"``: the log10 curves then shift by a constant).

:func:`cotangents` gives the direct partials ∂L/∂h_t (T, B, n) (row t − 1 is step t), and
:func:`backward_norms` the total gradient with respect to every earlier state by reverse
accumulation, one vector–Jacobian product per step:

    ḡ_T = ∂L/∂s_T,   ḡ_k = ∂L/∂s_k|direct + ḡ_{k+1} J_{k+1}   ⇒   ḡ_k = Σ_{t ≥ k} (∂L/∂s_t)(∂s_t/∂s_k),

so for a last-step loss ḡ_k = (∂L/∂s_T)(∂s_T/∂s_k), and for ``"every"`` each step's loss adds
its own term. ḡ is carried as 10^ℓ · g with ‖g‖ kept near 1, so it neither under- nor overflows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._checks import GradflowError, one_of
from .._vocabulary import LOSSES, Loss
from .checkpoint import flat_state
from .diagonal import is_diagonal, jacobian_diagonal
from .keras_loading import is_keras_path
from .keras_stack import keras_head
from .loading import note, read_npz, read_pt, real_array
from .network import Network, Trajectory, to_host

__all__ = ["HEAD_NAMES", "Reverse", "backward_norms", "cotangents", "find_head", "read_head", "read_initial",
           "resolve_head"]

#: module names under which a checkpoint's output Linear is found without being told
HEAD_NAMES = ("head", "fc", "linear", "classifier", "out", "output", "decoder")


# -- the head -----------------------------------------------------------------------------------
def find_head(state: Mapping[str, Any], hidden: int, prefix: str | None = None,
              what: str = "the weights") -> tuple[np.ndarray, np.ndarray, str]:
    """The output Linear (V (K, n), c (K,), its prefix) in a state_dict or checkpoint.

    Without ``prefix``: a Linear (``NAME.weight`` of shape (K, ``hidden``), ``NAME.bias`` optional)
    whose last name component is one of :data:`HEAD_NAMES`, or a bare Linear's ``weight``/``bias``
    at the top; several candidates are refused and listed. With ``prefix``: the Linear there.
    """
    flat = flat_state(state)
    weights = {name.rpartition(".")[0]: v for name, v in flat.items()
               if name.rpartition(".")[2] == "weight" and len(getattr(v, "shape", ())) == 2}
    if prefix is not None:
        want = prefix.strip().rstrip(".")
        want = "" if want in (".", "") else want
        if want not in weights:
            listed = ", ".join(repr(p) for p in sorted(weights)) or "none"
            raise GradflowError(f"{what} has no Linear layer under {prefix!r} (a 2-D {prefix}.weight); "
                                f"2-D weights under: {listed}")
        chosen = want
    else:
        cands = [p for p, v in weights.items() if int(v.shape[1]) == hidden
                 and (p.rpartition(".")[2] in HEAD_NAMES or p == "")]
        wrong = [f"{p or '(top level)'!r} is ({int(v.shape[0])}, {int(v.shape[1])})" for p, v in sorted(weights.items())
                 if int(v.shape[1]) != hidden and (p.rpartition(".")[2] in HEAD_NAMES or p == "")]
        if not cands and wrong:
            both = any(int(v.shape[1]) == 2 * hidden for p, v in weights.items() if p.rpartition(".")[2] in HEAD_NAMES)
            hint = (f"; in-features {2 * hidden} = 2 x {hidden} is a head on both directions of a bidirectional "
                    "model: analyse the whole model (no --layer/--direction; gradflow.stacked_flow)") if both else ""
            raise GradflowError(f"{what}: the head's weight must be (K, {hidden}) (in-features = the hidden "
                                f"size {hidden}), but {', '.join(wrong)}{hint}")
        if not cands:
            raise GradflowError(f"{what} holds no output Linear with in-features {hidden} under any of "
                                f"the names {', '.join(HEAD_NAMES)}; name it with --head PREFIX, or "
                                "pass the head itself in Python (head=model.fc, or its (V, c))")
        if len(cands) > 1:
            raise GradflowError(f"{what} holds {len(cands)} Linear layers that could be the head: "
                                f"{', '.join(repr(p) for p in sorted(cands))}; pick one with --head PREFIX "
                                "(in Python, pass that nn.Linear as head=)")
        chosen = cands[0]
        note(f"{what}: using the output Linear {chosen or '(top level)'!r} as the head")
    V = real_array(weights[chosen], f"head weight {chosen}.weight")
    bias = flat.get(f"{chosen}.bias" if chosen else "bias")
    c = np.zeros(V.shape[0]) if bias is None else real_array(bias, f"head bias {chosen}.bias")
    return V, c, chosen


def read_head(path: str, hidden: int, prefix: str | None = None,
              what: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The head from a file: a ``.pt``/``.npz`` holding a Linear's ``weight`` (and ``bias``), or a
    whole model's state_dict (searched as :func:`find_head`)."""
    kind = "head" if what is None else "weights"  # the file's name in read errors
    if path.endswith(".npz"):
        state: Mapping[str, Any] = read_npz(path, lambda name: name.rpartition(".")[2] in ("weight", "bias"),
                                            kind)
    elif path.endswith((".pt", ".pth")):
        state = read_pt(path, kind)
    elif is_keras_path(path):  # a .keras Sequential: the Dense after its recurrent layers
        return keras_head(path, hidden, prefix)
    else:
        raise GradflowError(f"unknown head file type {path!r}: use .pt, .pth or .npz")
    V, c, _ = find_head(state, hidden, prefix, what=what or f"head file {path}")
    return V, c


def resolve_head(head: Any, hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """(V (K, n), c (K,)) as NumPy float64 from an ``nn.Linear``, a ``(V, c)`` pair of any array
    type (torch tensors that require grad, CuPy, NumPy; ``c`` may be None), a state_dict holding
    the head, or a file path; detached and checked (shapes, finite)."""
    if head is None:
        raise GradflowError("this loss needs a head: an nn.Linear, (V, c) arrays or a state_dict holding one")
    if isinstance(head, (str, os.PathLike)):
        V, c = read_head(os.fspath(head), hidden)
    elif hasattr(head, "weight") and hasattr(head, "in_features"):  # nn.Linear (or alike)
        V = real_array(head.weight, "head weight")
        c = np.zeros(V.shape[0]) if getattr(head, "bias", None) is None else real_array(head.bias, "head bias")
    elif isinstance(head, Mapping):
        V, c, _ = find_head(head, hidden, what="the head's state_dict")
    elif hasattr(head, "state_dict") and callable(head.state_dict):
        V, c, _ = find_head(head.state_dict(), hidden, what=f"module {type(head).__name__}")
    elif isinstance(head, (tuple, list)) and len(head) in (1, 2):
        V = real_array(head[0], "head weight V")
        c = np.zeros(V.shape[0] if V.ndim else 0) if len(head) == 1 or head[1] is None \
            else real_array(head[1], "head bias c")
    else:
        raise GradflowError(f"head must be an nn.Linear, a (V, c) pair or a state_dict, got {type(head).__name__}")
    V, c = np.asarray(V, dtype=np.float64), np.asarray(c, dtype=np.float64)
    if V.ndim != 2 or V.shape[1] != hidden or c.shape != (V.shape[0],):
        raise GradflowError(f"the head's output weight V must be (K, {hidden}) and its bias c (K,), "
                            f"got {tuple(V.shape)}, {tuple(c.shape)}")
    if V.shape[0] == 0:
        raise GradflowError("the head has no outputs (V is (0, n)): a cross-entropy needs at least one class")
    if not (np.isfinite(V).all() and np.isfinite(c).all()):
        raise GradflowError("the head's output weight V or bias c contains NaN or inf")
    return V, c


# -- the cotangents -----------------------------------------------------------------------------
def _targets(targets: Any, shape: tuple[int, ...], K: int, what: str) -> np.ndarray:
    if targets is None:
        raise GradflowError(f"this loss needs targets of shape {shape}")
    y = real_array(targets, "targets")
    if y.shape != shape:
        raise GradflowError(f"targets must have shape {shape} ({what}), got {tuple(y.shape)}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise GradflowError("targets must be integer class indices")
    yi = y.astype(np.int64)
    if (yi < 0).any() or (yi >= K).any():
        raise GradflowError(f"targets must be class indices in 0..{K - 1} (the head has {K} outputs), "
                            f"got values {int(yi.min())}..{int(yi.max())}")
    return yi


def _ce_grad(h: np.ndarray, V: np.ndarray, c: np.ndarray, y: np.ndarray) -> np.ndarray:
    """∂/∂h Σ_b CE(V h_b + c, y_b) = (softmax(z) − onehot(y)) V, rows b."""
    z = h @ V.T + c
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    p[np.arange(h.shape[0]), y] -= 1.0
    return p @ V


def cotangents(hs: Any, loss: Loss = "sum", head: Any = None, targets: Any = None) -> np.ndarray:
    """The direct partials ∂L/∂h_t of a loss, array (T, B, n) (row t − 1 is step t = 1…T).

    Arguments:
        hs: the hidden states h_1 … h_T, (T, B, n) (any array type).
        loss: ``"sum"``, ``"last"`` or ``"every"`` (module docstring).
        head: for ``"last"``/``"every"``: anything :func:`resolve_head` reads.
        targets: integer classes, (B,) for ``"last"``, (T, B) for ``"every"``.

    The result is NumPy float64 (the caller moves it to its namespace).
    """
    one_of(loss, "loss", LOSSES)
    H = np.asarray(to_host(hs), dtype=np.float64)
    T, B, n = H.shape
    out = np.zeros((T, B, n))
    if loss == "sum":
        if head is not None or targets is not None:
            raise GradflowError("the loss 'sum' (L = Σ h_T) takes no head and no targets; "
                                "pass loss='last' or loss='every'")
        out[-1] = 1.0
        return out
    V, c = resolve_head(head, n)
    if loss == "last":
        y = _targets(targets, (B,), V.shape[0], "one class per sequence")
        out[-1] = _ce_grad(H[-1], V, c, y)
        return out
    y = _targets(targets, (T, B), V.shape[0], "one class per step and sequence, time first")
    for t in range(T):
        out[t] = _ce_grad(H[t], V, c, y[t])
    return out


# -- the reverse sweep --------------------------------------------------------------------------
def _plus(g: np.ndarray, ell: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """10^ell' · g' = 10^ell · g + d with ‖g'‖ = 1 (or g' = 0): no term under- or overflows."""
    with np.errstate(divide="ignore"):
        dn = np.sqrt((d * d).sum(axis=-1))
        gn = np.sqrt((g * g).sum(axis=-1))
        m = np.maximum(ell + np.log10(gn), np.log10(dn))   # log10 of the larger term
    live = np.isfinite(m)
    m = np.where(live, m, ell)
    gd, dd = np.where(gn > 0, gn, 1.0), np.where(dn > 0, dn, 1.0)
    with np.errstate(under="ignore"):
        gs = np.where(gn > 0, 10.0 ** np.minimum(ell + np.log10(gd) - m, 0.0), 0.0)
        ds = np.where(dn > 0, 10.0 ** np.minimum(np.log10(dd) - m, 0.0), 0.0)
        new = g / gd[:, None] * gs[:, None] + d / dd[:, None] * ds[:, None]
    nn = np.sqrt((new * new).sum(axis=-1))
    ok = live & (nn > 0)
    new = np.where(ok[:, None], new / np.where(ok, nn, 1.0)[:, None], new)
    return new, np.where(ok, m + np.log10(np.where(ok, nn, 1.0)), m)


class Reverse:
    """Reverse accumulation of ∂L/∂s_k, k = T−1 … 0, fed one Jacobian at a time (latest first).

    ``cot`` (T, B, n): the direct partials ∂L/∂h_t (:func:`cotangents`); the other state parts have
    no direct partial. :meth:`step` takes J_{k+1} (B, N, N), or its diagonal (B, N) for a diagonal
    cell, and records the log10 norms at k; :attr:`norms` has ``"full"`` and one key per state,
    each (B, T).
    """

    def __init__(self, net: Network, cot: Any):
        self.xp, self.n, self.N, self.dtype = net.xp, net.hidden, net.state_size, net.dtype
        self.states, self.layout = net.cell.states, net.layout
        cot = np.asarray(to_host(cot), dtype=np.float64)
        T, B = cot.shape[0], cot.shape[1] if cot.ndim == 3 else 0
        if cot.ndim != 3 or cot.shape[2] != self.n:
            raise GradflowError(f"cotangents must have shape (T, B, {self.n}), got {cot.shape}")
        self.direct = np.zeros((T, B, self.N))
        self.direct[:, :, self.layout.slice("h")] = cot
        self.norms = {key: np.full((B, T), -math.inf) for key in ("full", *self.states)}
        self.g, self.ell = _plus(np.zeros((B, self.N)), np.zeros(B), self.direct[T - 1])  # ḡ_T = 10^ell · g

    def step(self, k: int, J: Any = None, diagonal: Any = None, scale: Any = None) -> None:
        """ḡ_k = ḡ_{k+1} J_{k+1} + (the direct partial of s_k, k ≥ 1); J is scaled apart first,
        by max |J_ij| (``scale`` (B,) when the caller has it already)."""
        xp, B = self.xp, self.g.shape[0]
        if diagonal is not None:
            a = np.asarray(to_host(diagonal), dtype=np.float64)
            scale = np.max(np.abs(a), axis=-1)
        elif scale is not None:
            scale = np.asarray(to_host(scale), dtype=np.float64)
        else:
            scale = np.asarray(to_host(xp.max(xp.abs(xp.reshape(J, (B, -1))), axis=-1)), dtype=np.float64)
        if not np.isfinite(scale).all():
            raise GradflowError(f"the Jacobian J_{k + 1} contains NaN or inf")
        scale = np.where(scale > 0, scale, 1.0)  # J / scale: entries ≤ 1, so ḡ J cannot overflow
        if diagonal is not None:
            g = self.g * (a / scale[:, None])
        else:
            gs = xp.asarray(self.g / scale[:, None], dtype=self.dtype)[:, None, :]
            g = np.asarray(to_host(gs @ J)[:, 0, :], dtype=np.float64)
        g, ell = _plus(g, self.ell + np.log10(scale), self.direct[k - 1] if k >= 1 else np.zeros_like(g))
        self.g, self.ell = g, ell
        with np.errstate(divide="ignore"):
            self.norms["full"][:, k] = ell + np.log10(np.sqrt((g * g).sum(axis=-1)))
            for name in self.states:
                part = g[:, self.layout.slice(name)]
                self.norms[name][:, k] = ell + np.log10(np.sqrt((part * part).sum(axis=-1)))


def backward_norms(net: Network, traj: Trajectory, cot: Any, *, truncated: bool = False) -> dict[str, np.ndarray]:
    """log10 ‖∂L/∂s_k‖ and of each state's part ‖∂L/∂(s_k)_part‖ (h_k, c_k …), each (B, T), k = 0…T−1.

    :class:`Reverse` over the Jacobians J_t rebuilt from the derived blocks (the 1997-truncated
    ones if ``truncated``; only the diagonal for a diagonal cell). Keys: ``"full"`` and the state names.
    """
    T, B = traj.steps, traj.states[0].shape[0]
    cot = np.asarray(to_host(cot), dtype=np.float64)
    if cot.shape != (T, B, net.hidden):
        raise GradflowError(f"cotangents must have shape {(T, B, net.hidden)}, got {cot.shape}")
    rev = Reverse(net, cot)
    diagonal = not truncated and is_diagonal(net.cell)  # J_t = diag(a_t): no N × N matrix
    J = None if diagonal else net.xp.zeros((B, net.state_size, net.state_size), dtype=net.dtype)
    for k in range(T - 1, -1, -1):
        env = net.step_env(traj, k + 1)
        if diagonal:
            rev.step(k, diagonal=jacobian_diagonal(net, env, B))
        else:
            rev.step(k, net.fill_jacobian(J, env, truncated))
    return rev.norms


# -- initial states -----------------------------------------------------------------------------
def read_initial(value: Any, states: tuple[str, ...], batch: int, hidden: int, what: str = "initial",
                 sizes: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Initial states by name from PyTorch's h_0 (1, B, n), (B, n) or (n,), an (h_0, c_0) pair, or a
    mapping with keys ``h0``/``c0``/… (or ``h``/``c``/…). States left out start at zero (said in a note).
    ``sizes``: state name → its size where it is not ``hidden`` (mLSTM's vec C: n²)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        items = {}
        for k, v in value.items():
            name = str(k)
            name = name[:-1] if name.endswith("0") and name[:-1] in states else name
            if name not in states:
                raise GradflowError(f"{what}: unknown state {k!r}; this cell's states are "
                                    f"{', '.join(s + '0' for s in states)}")
            items[name] = v
    elif isinstance(value, (tuple, list)):
        if len(value) > len(states):
            raise GradflowError(f"{what}: {len(value)} initial states given, the cell has {len(states)} "
                                f"({', '.join(states)})")
        items = dict(zip(states, value, strict=False))
    else:
        items = {states[0]: value}
    out = {}
    for name, v in items.items():
        a = real_array(v, f"{what} state {name}0")
        if a.ndim == 3:
            if a.shape[0] != 1:
                raise GradflowError(f"{what} state {name}0 has shape {a.shape}: PyTorch's (layers·directions, "
                                    f"batch, n) for {a.shape[0]} layers/directions; save the slice of the "
                                    "layer measured, e.g. h0[0:1]")
            a = a[0]
        if a.ndim == 1:
            a = np.broadcast_to(a[None], (batch, a.shape[0]))
        size = (sizes or {}).get(name, hidden)
        if a.shape != (batch, size):
            raise GradflowError(f"{what} state {name}0 has shape {a.shape}, expected (1, {batch}, {size}), "
                                f"({batch}, {size}) or ({size},)")
        if not np.isfinite(a).all():
            raise GradflowError(f"{what} state {name}0 contains NaN or inf")
        out[name] = a
    missing = [s for s in states if s not in out]
    if missing and len(states) > 1:
        note(f"{what}: no {', '.join(s + '0' for s in missing)} given; starting from zero")
    return out
