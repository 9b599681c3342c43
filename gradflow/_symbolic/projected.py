"""A projected cell, derived by composing a cell with a projection of its output.

PyTorch's ``nn.LSTM(proj_size=p)`` keeps the cell state c_t of size n and projects the output:

    h_t = W_hr (o_t ⊙ tanh c_t),     W_hr of size p × n,

and the gates read the projected h_{t−1} (their recurrent weights are n × p). The projected cell
is not a second copy of the LSTM: its definition runs the cell's own recurrence with an h of size
p and names the unprojected output u_t before projecting it, so the Jacobians ∂s_t/∂s_{t−1} and
∂s_t/∂x_t follow from the same chain rule as every other cell's.
"""

from __future__ import annotations

from functools import cache

import sympy as sp
from sympy import MatMul, MatrixSymbol

from .._checks import GradflowError
from .cell import Cell, Param, Recurrence, n
from .cells import get_cell

#: the projection size p (PyTorch's proj_size)
p = sp.Symbol("p", integer=True, positive=True)
#: label of the projection matrix W_hr (p × n)
PROJECTION = "W_{hr}"


def projected(cell: str | Cell) -> Cell:
    """``cell`` with its output projected, h_t = W_hr u_t (u_t the cell's own h_t), h of size p.

    Only cells with a separate cell state c (so that h is an output, not the whole memory) can be
    projected, as in PyTorch, where only ``nn.LSTM`` takes ``proj_size``. One projected cell per
    cell (its kernels are compiled once).
    """
    return _projected(get_cell(cell))


@cache
def _projected(base: Cell) -> Cell:
    if set(base.states) != {"h", "c"}:
        raise GradflowError(f"{base.name} has no cell state c; only an LSTM-type cell (states h and c) "
                            "can be projected (PyTorch: nn.LSTM(proj_size=p))")

    def recurrence(r: Recurrence):
        out = dict(base.definition(r))
        u = r.let("u", out["h"])
        W = MatrixSymbol(PROJECTION, p, n)
        r.params.setdefault(PROJECTION, Param(W, "W", "hr"))
        return {"c": out["c"], "h": MatMul(W, u)}

    return Cell(f"{base.name}-proj", f"{base.title}, projected output (proj_size)", base.states,
                recurrence, bias_copies=base.bias_copies, torch_cell=base.torch_cell,
                torch_kwargs=base.torch_kwargs, reference=base.reference, sizes={"h": p})
