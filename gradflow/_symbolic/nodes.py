"""Matrix-expression nodes SymPy lacks in printable form: element-wise φ(v) and diag(v).

Both are SymPy ``MatrixExpr`` subclasses: they keep a symbolic shape (n × 1, n × n), expand
to explicit entries at concrete n (``_entry``), and print themselves as LaTeX (``_latex``).
"""

from __future__ import annotations

import re

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, OneMatrix
from sympy.core.symbol import Str
from sympy.matrices.expressions.matexpr import MatrixExpr
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from .activations import get_activation


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
    flat = []
    for v in vectors:
        flat.extend(v.args if isinstance(v, HadamardProduct) else (v,))
    flat = [v for v in flat if not isinstance(v, OneMatrix)]
    if not flat:
        return OneMatrix(vectors[0].shape[0], 1)
    return flat[0] if len(flat) == 1 else HadamardProduct(*flat)


def is_vector(expr) -> bool:
    """True for an (r × 1) column vector expression."""
    return expr.shape[1] == 1


def vector_terms(expr):
    """Split a vector expression into (coefficient, vector) summands."""
    out = []
    for term in expr.args if isinstance(expr, MatAdd) else (expr,):
        coeff, rest = sp.S.One, term
        if isinstance(term, MatMul) and term.args and not isinstance(term.args[0], MatrixExpr):
            coeff, rest = term.args[0], MatMul(*term.args[1:]) if len(term.args) > 2 else term.args[1]
        out.append((coeff, rest))
    return out


def latex(expr, **settings) -> str:
    """LaTeX of a gradflow expression, summands in the order they were built."""
    settings.setdefault("order", "none")
    return sp.latex(expr, **settings)


class _TextPrinter(StrPrinter):
    """Plain-text printer: ⊙ for Hadamard products, · for matrix products, short names."""

    def _wrap(self, a):
        return "(%s)" % self._print(a) if isinstance(a, MatAdd) else self._print(a)

    def _print_HadamardProduct(self, expr):
        return " ⊙ ".join("(%s)" % self._print(a) if isinstance(a, MatAdd) else self._print(a)
                          for a in expr.args)

    def _print_HadamardPower(self, expr):
        return "%s^∘%s" % (self.parenthesize(expr.base, PRECEDENCE["Pow"]), self._print(expr.exp))

    def _print_MatMul(self, expr):
        args = list(expr.args)
        sign = ""
        if args and args[0] == -1:
            sign, args = "-", args[1:]
        return sign + "·".join(self._wrap(a) for a in args)

    def _print_MatrixSymbol(self, expr):
        name = expr.name.replace(r"\tilde{h}", "h~").replace(" ", "")
        return re.sub(r"_\{(\w+)\}", r"_\1", name)  # h_{t} -> h_t, h_{t-1} stays

    def _print_OneMatrix(self, expr):
        return "1"

    def _print_Identity(self, expr):
        return "I"

    def _print_ZeroMatrix(self, expr):
        return "0"


def text(expr) -> str:
    """Readable plain text of a gradflow expression: diag(1 - h_t ⊙ h_t)·W."""
    return _TextPrinter({"order": "none"}).doprint(expr)


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
