"""The layout of inputs: (T, batch, m), or (batch, T, m) as a module built with ``batch_first=True``
takes them. One rule for every measurement that reads inputs (:func:`~gradflow.gradient_flow`,
:func:`~gradflow.stacked_flow`):

* ``batch_first=True``/``False`` given: that layout;
* ``batch_first=None`` (the default): the module's ``batch_first`` when the weights came from a
  module object (said in a note), else (T, batch, m).

Whatever is laid out along time and batch (the inputs, ``"every"`` targets (B, T) ↔ (T, B), a
stacked network's output cotangents (B, T, K) ↔ (T, B, K)) follows the same layout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import GradflowError
from .loading import note


def batch_first_of(batch_first: bool | None, module_batch_first: bool | None, name: str) -> bool:
    """Whether to read inputs batch first: ``batch_first`` when given, else the module's (with a note)."""
    if batch_first is not None and not isinstance(batch_first, bool):
        raise GradflowError(f"batch_first must be True, False or None, got {batch_first!r}")
    if batch_first is not None:
        return batch_first
    if module_batch_first:
        note(f"{name}: reading the inputs as (batch, T, m), as the module (batch_first=True) "
             "takes them; pass batch_first=False for (T, batch, m)")
        return True
    return False


def time_first(a: Any, ndim: int) -> Any:
    """``a`` with its first two axes swapped when it has ``ndim`` axes (batch first → time first)."""
    if a is None:
        return a
    if not hasattr(a, "swapaxes"):
        a = np.asarray(a)
    return a.swapaxes(0, 1) if len(a.shape) == ndim else a


def read_layout(inputs: Any, targets: Any, loss: str, batch_first: bool | None,
                module_batch_first: bool | None, name: str) -> tuple[Any, Any]:
    """Inputs (T, B, m) and ``"every"`` targets (T, B) from the layout :func:`batch_first_of` decides."""
    if not batch_first_of(batch_first, module_batch_first, name):
        return inputs, targets
    return time_first(inputs, 3), time_first(targets, 2) if loss == "every" else targets
