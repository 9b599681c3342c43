"""Where each state of a cell sits in the engine's state vector: the one home of the layout.

The engine keeps s_t as one (B, N) array, the cell's states one after another in
``cell.states`` order. State i has ``sizes[i]`` entries: n unless the cell says otherwise
(:attr:`gradflow._symbolic.cell.Cell.sizes`: mLSTM's vec C has n², its stabiliser m one, a
projected LSTM's h has p). It occupies [offsets[i], offsets[i] + sizes[i]) and

    N = Σ_i sizes[i],   offsets[i] = Σ_{j<i} sizes[j].

The network, the backward sweep, the loss, the size guard and the stacked layers read every
position from a :class:`StateLayout`; the modes that still assume n entries per state refuse a
cell whose states are not all of size n (:func:`refuse_sized_states`).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import sympy as sp

from .._checks import GradflowError
from .._symbolic.cell import Cell, Param, n


@dataclass(frozen=True)
class StateLayout:
    """The states of a cell laid out in one vector: names, sizes, offsets, N.

    Attributes:
        states: the state names, in the cell's order (``("h", "C", "n")``).
        sizes: the size of each state, in the same order (``(3, 9, 3)``).
    """

    states: tuple[str, ...]
    sizes: tuple[int, ...]

    def __post_init__(self):
        if len(self.states) != len(self.sizes) or not all(int(s) >= 1 for s in self.sizes):
            raise GradflowError(f"a state layout needs one positive size per state; got {self.states}, {self.sizes}")

    @property
    def offsets(self) -> tuple[int, ...]:
        """Where each state starts: offsets[i] = Σ_{j<i} sizes[j]."""
        out, at = [], 0
        for s in self.sizes:
            out.append(at)
            at += s
        return tuple(out)

    @property
    def total(self) -> int:
        """N, the length of the state vector."""
        return sum(self.sizes)

    @property
    def uniform(self) -> bool:
        """True when every state has the same size (n entries each)."""
        return len(set(self.sizes)) == 1

    def index(self, state: str | int) -> int:
        """The position of ``state`` (a name or an index) in the cell's states."""
        if isinstance(state, int):
            if not 0 <= state < len(self.states):
                raise GradflowError(f"state index {state} is out of range 0..{len(self.states) - 1}")
            return state
        if state not in self.states:
            raise GradflowError(f"no state {state!r}; the states are {', '.join(self.states)}")
        return self.states.index(state)

    def size(self, state: str | int) -> int:
        """The number of entries of ``state``."""
        return self.sizes[self.index(state)]

    def slice(self, state: str | int) -> builtins.slice:
        """Where ``state`` sits in the state vector."""
        i = self.index(state)
        start = self.offsets[i]
        return builtins.slice(start, start + self.sizes[i])

    def span(self, states: Sequence[str]) -> builtins.slice:
        """The slice covering ``states``, which must be consecutive in the layout (C and n of mLSTM)."""
        idx = sorted(self.index(s) for s in states)
        if not idx or idx != list(range(idx[0], idx[-1] + 1)):
            raise GradflowError(f"states {', '.join(states)} are not consecutive in {', '.join(self.states)}")
        return builtins.slice(self.offsets[idx[0]], self.offsets[idx[-1]] + self.sizes[idx[-1]])

    def covered(self, rows: builtins.slice) -> range | None:
        """The state indices whose entries ``rows`` covers exactly, or None when it cuts a state."""
        starts = {o: i for i, o in enumerate(self.offsets)}
        ends = {o + s: i for i, (o, s) in enumerate(zip(self.offsets, self.sizes, strict=True))}
        if rows.start not in starts or rows.stop not in ends:
            return None
        return range(starts[rows.start], ends[rows.stop] + 1)


@cache
def _layout(cell: Cell, hidden: int) -> StateLayout:
    sizes = []
    for s in cell.states:
        v = sp.sympify(cell.size(s)).subs(n, hidden)
        if not v.is_Integer:
            raise GradflowError(f"{cell.name}: the size of state {s} ({cell.size(s)}) is not fixed by the "
                                "hidden size alone")
        sizes.append(int(v))
    return StateLayout(tuple(cell.states), tuple(sizes))


def state_layout(cell: Cell, hidden: int) -> StateLayout:
    """The layout of ``cell``'s states at hidden size n = ``hidden`` (n² for mLSTM's vec C)."""
    return _layout(cell, int(hidden))


def memory_states(cell: Cell) -> tuple[str, ...]:
    """The states whose block the sweep measures as the cell's memory (``Flow.cell_state``): the
    LSTM family's c; mLSTM's matrix memory and normaliser (C, n), whose one-step block is f_t I."""
    if "c" in cell.states:
        return ("c",)
    if "C" in cell.states and "n" in cell.states:
        return ("C", "n")
    return ()


def refuse_sized_states(cell: Cell, what: str, reason: str | None = None) -> None:
    """``GradflowError`` naming ``cell`` when one of its states is not of size n (mLSTM's vec C,
    n²): ``what`` (a mode, a loader) does not take it, for ``reason`` (default: ``what`` still lays
    every state out as n entries)."""
    odd = {s: cell.size(s) for s in cell.states if s in cell.sizes}
    if odd:
        sizes = ", ".join(f"{s}: {v}" for s, v in odd.items())
        why = reason or f"it lays every state out as n entries, and {cell.name} has states of other sizes ({sizes})"
        raise GradflowError(f"{cell.name}: {what} does not take this cell yet: {why}")


def param_shape(p: Param, n: int, m: int) -> tuple[int, ...]:
    """The array shape of parameter ``p`` at sizes n, m: W (n, n), U (n, m), b and w (n,); a per-head
    scalar gate's row w_g (1, m) and bias b_g (1,) (mLSTM)."""
    if p.symbol.shape[0] == 1:
        return (1, m) if p.kind == "U" else (1,)
    return {"W": (n, n), "U": (n, m), "b": (n,), "w": (n,)}[p.kind]
