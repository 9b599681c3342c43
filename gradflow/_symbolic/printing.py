"""Printing gradflow expressions: LaTeX in the order the summands were built, and plain text.

``latex(diag(1 - h_t ⊙ h_t)·W)`` and ``text(...)`` → ``diag(1 - h_t ⊙ h_t)·W``.

One notation everywhere (the guide's, docs/theory.md#notation): ``\\odot`` for the Hadamard
product and power (``h_{t}^{\\odot 2}``), ``I`` for the identity, and a positive integer power of
an activation applied entry by entry written as ``\\tanh^{2}\\left(c_{t}\\right)`` (never
``\\tanh(c_t)^{\\circ 2}``, which reads as a composition).
"""

from __future__ import annotations

import re

import sympy as sp
from sympy import MatAdd
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE, precedence_traditional
from sympy.printing.str import StrPrinter


class _LatexPrinter(LatexPrinter):
    """SymPy's LaTeX in gradflow's notation: ⊙ (not ∘) for Hadamard products, I (not 𝕀)."""

    def _print_HadamardProduct(self, expr):
        prec = precedence_traditional(expr)
        return r" \odot ".join(self.parenthesize(a, prec, False) for a in expr.args)

    def _print_HadamardPower(self, expr):
        base, exp = expr.base, expr.exp
        if getattr(base, "activation", None) is not None and exp.is_Integer and exp > 0:
            # tanh^2(c_t): the activation's power, entry by entry (no ^{∘2} after a bracket)
            return r"%s^{%s}\left(%s\right)" % (base.activation.latex, self._print(exp),
                                                 self._print(base.arg))
        e = self._print(exp)
        if precedence_traditional(exp) < PRECEDENCE["Mul"]:
            e = r"\left(%s\right)" % e
        return r"%s^{\odot %s}" % (self.parenthesize(base, PRECEDENCE["Pow"], strict=True), e)

    def _print_Identity(self, expr):
        return "1" if expr.shape == (1, 1) else "I"  # a 1 × 1 one (mLSTM's max(|nᵀq|, 1))

    def _print_MatAdd(self, expr):
        # a summand whose scalar is negative (coRNN's (−Δt γ) I, which SymPy does not see as
        # negative) is subtracted: "a - Δt γ I", never "a + - Δt γ I"; a nested sum that SymPy would
        # negate (the peephole LSTM's 1 − tanh²(c_t)) is added as built: "+ (1 - tanh²(c_t))",
        # never "- (tanh²(c_t) - 1)"
        nested: dict[str, str] = {}
        args = []
        for a in expr.args:
            if isinstance(a, MatAdd) and a.could_extract_minus_sign() and not self._print(a).startswith("-"):
                token = sp.MatrixSymbol("GFNESTED" + "abcdefghijklmnopqrstuvwxyz"[len(nested) % 26], *a.shape)
                nested[self._print(token)] = r"\left(%s\right)" % self._print(a)
                args.append(token)
            else:
                args.append(a)
        tex = self._print_Add(MatAdd(*args, evaluate=False) if nested else expr)
        for token_tex, inner in nested.items():
            tex = tex.replace(token_tex, inner)
        return tex.replace(" + - ", " - ")


def latex(expr, **settings) -> str:
    """LaTeX of a gradflow expression, summands in the order they were built (⊙, I: see above)."""
    settings.setdefault("order", "none")
    return _LatexPrinter(settings).doprint(expr)


class _TextPrinter(StrPrinter):
    """Plain-text printer: ⊙ for Hadamard products, · for matrix products, short names."""

    def _wrap(self, a):
        return "(%s)" % self._print(a) if isinstance(a, (MatAdd, sp.Add)) else self._print(a)

    def _print_HadamardProduct(self, expr):
        return " ⊙ ".join("(%s)" % self._print(a) if isinstance(a, MatAdd) else self._print(a)
                          for a in expr.args)

    def _print_HadamardPower(self, expr):
        base = expr.base
        if getattr(base, "activation", None) is not None and expr.exp.is_Integer and expr.exp > 0:
            return "%s^%s(%s)" % (base.activation.name, self._print(expr.exp), self._print(base.arg))
        return "%s^⊙%s" % (self.parenthesize(expr.base, PRECEDENCE["Pow"]), self._print(expr.exp))

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
        return "1" if expr.shape == (1, 1) else "I"

    def _print_KroneckerProduct(self, expr):
        return "(%s)" % " ⊗ ".join(self._wrap(a) for a in expr.args)

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
