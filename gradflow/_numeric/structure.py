"""Which exact path a cell's products take: the one rule for the engine, the size guard and the CLI.

``"diagonal"``: the derived state Jacobian is diagonal (:mod:`gradflow._numeric.diagonal`, O(T·n));
``"blocks"``: it is made of per-unit S × S blocks (:mod:`gradflow._numeric.blocks`, the LRU,
O(T·n·S²)); None: the dense N × N sweep. Cells with a cell state c (the LSTM family) always sweep
densely (their carousel and path figures read the N × N products).
"""

from __future__ import annotations

from .blocks import is_block_structured
from .diagonal import is_diagonal


def structured_path(cell) -> str | None:
    """``"diagonal"``, ``"blocks"`` or None for ``cell`` (see the module docstring)."""
    if "c" in cell.states:
        return None
    if is_diagonal(cell):
        return "diagonal"
    return "blocks" if is_block_structured(cell) else None


def keeps_no_trajectory(cell, loss: str) -> bool:
    """True when the exact run of ``cell`` under ``loss`` keeps no trajectory: the diagonal path
    with a loss read at the last step only (``"sum"``, ``"last"``) runs two forward passes, O(B·n)
    memory whatever T; a per-step loss (``"every"``) or states of other sizes keep the states."""
    return (structured_path(cell) == "diagonal" and loss != "every"
            and not any(s in cell.sizes for s in cell.states))
