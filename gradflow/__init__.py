"""gradflow: why gradients vanish in recurrent networks, in exact mathematics and real numbers.

Symbolic core (SymPy): every cell's recurrence written once (:data:`CELLS`), its Jacobian
blocks derived by gradflow's matrix chain rule (:meth:`Cell.jacobian`, :func:`jacobian`).
"""

from ._activations import ACTIVATIONS, Activation, relu, sigmoid, tanh
from ._cell import Cell, Param, Recurrence, StateJacobian, Step, m, n, t
from ._cells import CELLS, get_cell
from ._chain import jacobian, total_derivatives
from ._matexpr import Diag, Elementwise, hadamard, latex

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS", "Activation", "CELLS", "Cell", "Diag", "Elementwise", "Param", "Recurrence",
    "StateJacobian", "Step", "get_cell", "hadamard", "jacobian", "latex", "m", "n", "relu",
    "sigmoid", "t", "tanh", "total_derivatives", "__version__",
]
