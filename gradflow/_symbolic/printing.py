"""Printing gradflow expressions: LaTeX in the order the summands were built, and plain text.

``latex(diag(1 - h_t ⊙ h_t)·W)`` and ``text(...)`` → ``diag(1 - h_t ⊙ h_t)·W``.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy import MatAdd
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter


def latex(expr, **settings) -> str:
    """LaTeX of a gradflow expression, summands in the order they were built."""
    settings.setdefault("order", "none")
    return sp.latex(expr, **settings)


class _TextPrinter(StrPrinter):
    """Plain-text printer: ⊙ for Hadamard products, · for matrix products, short names."""

    def _wrap(self, a):
        return "(%s)" % self._print(a) if isinstance(a, (MatAdd, sp.Add)) else self._print(a)

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
        name = expr.name.replace(r"\tilde{h}", "h~").replace(" ", "").replace("\\", "")  # \rho_t -> rho_t
        return re.sub(r"_\{(\w+)\}", r"_\1", name)  # h_{t} -> h_t, h_{t-1} stays

    def _print_Symbol(self, expr):
        return expr.name.replace("\\Delta ", "Δ")  # a cell constant named in LaTeX: \Delta t -> Δt

    def _print_OneMatrix(self, expr):
        return "1"

    def _print_Identity(self, expr):
        return "I"

    def _print_ZeroMatrix(self, expr):
        return "0"


def text(expr) -> str:
    """Readable plain text of a gradflow expression: diag(1 - h_t ⊙ h_t)·W."""
    return _TextPrinter({"order": "none"}).doprint(expr)


class DisplaysLatex:
    """Mixin: Jupyter shows the object as display math, ``$\\displaystyle <self.latex()>$``."""

    def latex(self) -> str:  # pragma: no cover - every user defines it
        raise NotImplementedError

    def _repr_latex_(self) -> str:
        return "$\\displaystyle %s$" % self.latex()
