"""The terms of a cell's derived one-step Jacobian, as the matrix-free operator applies them.

Each block (a, b) of J_t is a sum of terms coeff · [diag(v)] · M: a weight term (coeff·diag(v)·W
or coeff·W), a diagonal term (coeff·diag(v)), the identity, or a dense fallback. One
classification, read by :class:`gradflow._numeric.matrix_free.JacobianOperator` and by the size
guard (how many vectors v the chain precomputes for all steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sympy import Identity, MatAdd, MatMul, MatrixSymbol, ZeroMatrix
from sympy.matrices.expressions.matexpr import MatrixExpr

from .._symbolic.nodes import Diag
from .compile import compile_expr, scalar_coefficient, stable_substitutions


@dataclass(frozen=True)
class Term:
    """One term coeff · [diag(v)] · M of block (a, b) of J_t, or a fallback dense block."""

    a: int
    b: int
    kind: str            # "weight" (coeff·diag(v)·W or coeff·W), "diag", "identity", "dense"
    coeff: Any           # float or env -> float
    vfn: Any             # closure of v (or None)
    weight: Any          # the MatrixSymbol W of a "weight" term
    fn: Any              # closure of the whole dense term ("dense")


def block_terms(a: int, b: int, expr, subs) -> list[Term]:
    if isinstance(expr, ZeroMatrix):
        return []
    if isinstance(expr, MatAdd):
        return [t for arg in expr.args for t in block_terms(a, b, arg, subs)]
    if isinstance(expr, Identity):
        return [Term(a, b, "identity", 1.0, None, None, None)]
    if isinstance(expr, Diag):
        return [Term(a, b, "diag", 1.0, compile_expr(expr.vector, subs), None, None)]
    if isinstance(expr, MatrixSymbol):
        return [Term(a, b, "weight", 1.0, None, expr, None)]
    if isinstance(expr, MatMul):
        mats = [x for x in expr.args if isinstance(x, MatrixExpr)]
        scalars = [x for x in expr.args if not isinstance(x, MatrixExpr)]
        from sympy import Mul

        coeff = scalar_coefficient(Mul(*scalars))
        if len(mats) == 2 and isinstance(mats[0], Diag) and isinstance(mats[1], MatrixSymbol):
            return [Term(a, b, "weight", coeff, compile_expr(mats[0].vector, subs), mats[1], None)]
        if len(mats) == 1 and isinstance(mats[0], MatrixSymbol):
            return [Term(a, b, "weight", coeff, None, mats[0], None)]
        if len(mats) == 1 and isinstance(mats[0], Diag):
            return [Term(a, b, "diag", coeff, compile_expr(mats[0].vector, subs), None, None)]
    return [Term(a, b, "dense", 1.0, None, None, compile_expr(expr, subs))]


@cache
def vector_term_count(cell) -> int:
    """How many terms of ``cell``'s derived one-step Jacobian carry a vector v (diag(v), c·diag(v)
    or diag(v)·W): the terms :meth:`JacobianOperator.precompute` evaluates for all steps at once,
    classified by :func:`block_terms` as the operator classifies them. 0 for a cell with states of
    other sizes than n (its chain fills J_t from the compiled blocks and precomputes nothing)."""
    if any(s in cell.sizes for s in cell.states):
        return 0
    J = cell.jacobian()
    subs = stable_substitutions(cell.recorded.definitions, list(J.blocks.values()))
    return sum(t.vfn is not None for e in J.blocks.values() for t in block_terms(0, 0, e, subs))


