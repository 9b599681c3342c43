"""Matrix-expression nodes SymPy lacks in printable form: element-wise φ(v) and diag(v).

Both are SymPy ``MatrixExpr`` subclasses: they keep a symbolic shape (n × 1, n × n), expand
to explicit entries at concrete n (``_entry``), and print themselves as LaTeX (``_latex``).
"""

from __future__ import annotations

from typing import Any

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, OneMatrix
from sympy.core.symbol import Str
from sympy.matrices.expressions.matexpr import MatrixExpr

from .._checks import GradflowError

#: name -> Activation; filled by :mod:`gradflow._symbolic.activations` (a primitive and its rules side by side)
ACTIVATIONS: dict[str, Any] = {}


def get_activation(name: str) -> Any:
    """Look up an activation by name; ``GradflowError`` for an unknown one."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise GradflowError(f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}") from None


def one_minus(v):
    """1 − v, kept in this order (SymPy's ``-`` would reorder it to −v + 1)."""
    return MatAdd(OneMatrix(v.shape[0], 1), MatMul(-1, v))


class Elementwise(MatrixExpr):
    """φ(v): the activation ``name`` applied entry by entry to the column vector v."""

    def __new__(cls, name, arg):
        name = Str(name) if isinstance(name, str) else name
        get_activation(name.name)
        return super().__new__(cls, name, sp.sympify(arg))

    @property
    def activation(self):
        return get_activation(self.args[0].name)

    @property
    def arg(self):
        return self.args[1]

    @property
    def shape(self):
        return self.args[1].shape

    def _entry(self, i, j, **kwargs):
        return self.activation.scalar(self.arg._entry(i, j, **kwargs))


    def _latex(self, printer):
        return r"%s\left(%s\right)" % (self.activation.latex, printer._print(self.arg))

    def _sympystr(self, printer):
        return "%s(%s)" % (self.activation.name, printer._print(self.arg))


class Diag(MatrixExpr):
    """diag(v): the square matrix with the column vector v on its diagonal."""

    def __new__(cls, v):
        return super().__new__(cls, sp.sympify(v))

    @property
    def vector(self):
        return self.args[0]

    @property
    def shape(self):
        return (self.args[0].shape[0], self.args[0].shape[0])

    def _entry(self, i, j, **kwargs):
        return sp.KroneckerDelta(i, j) * self.vector._entry(i, 0, **kwargs)

    def _eval_transpose(self):
        return self

    def _latex(self, printer):
        return r"\operatorname{diag}\left(%s\right)" % printer._print(self.vector)

    def _sympystr(self, printer):
        return "diag(%s)" % printer._print(self.vector)


def hadamard(*vectors):
    """v_1 ⊙ … ⊙ v_r without SymPy's canonical reordering (1 factor: itself)."""
    flat: list = []
    for v in vectors:
        flat.extend(v.args if isinstance(v, HadamardProduct) else (v,))
    flat = [v for v in flat if not isinstance(v, OneMatrix)]
    if not flat:
        return OneMatrix(vectors[0].shape[0], 1)
    return flat[0] if len(flat) == 1 else HadamardProduct(*flat)


def _refuse_sympy_derivative(expr, x):
    raise NotImplementedError(
        "SymPy's own matrix derivative does not know gradflow's element-wise and diag nodes; "
        "use gradflow.jacobian(expr, wrt)")


def _register_with_sympy() -> None:
    """Make SymPy's ``.diff`` stop with a clear message on these nodes (instead of recursing)."""
    from sympy.tensor.array.expressions.arrayexpr_derivatives import array_derive

    for cls in (Elementwise, Diag):
        array_derive.register(cls)(_refuse_sympy_derivative)


_register_with_sympy()


class MatrixExp(MatrixExpr):
    """exp(S): the matrix exponential of the square matrix expression S (expRNN's W = exp(A − Aᵀ)).

    A constant of the recurrence (it holds parameters only); explicit entries at concrete n are
    left as the opaque entries exp(S)_{ij}.
    """

    def __new__(cls, arg):
        arg = sp.sympify(arg)
        if arg.shape[0] != arg.shape[1]:
            raise GradflowError("the matrix exponential needs a square matrix")
        return super().__new__(cls, arg)

    @property
    def arg(self):
        return self.args[0]

    @property
    def shape(self):
        return self.args[0].shape

    def _entry(self, i, j, **kwargs):
        return sp.Function("expm")(sp.Symbol(str(self.arg)), i, j)

    def _latex(self, printer):
        return r"\exp\left(%s\right)" % printer._print(self.arg)

    def _sympystr(self, printer):
        return "expm(%s)" % printer._print(self.arg)
