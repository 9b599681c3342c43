"""The matrix chain rule gradflow needs, built on SymPy matrix expressions.

SymPy 1.14's own ``MatrixExpr.diff`` raises ``ValueError: index is larger than expression
shape`` on d(σ(W h + b) ⊙ c)/dh. This module differentiates the forms a recurrent cell is
written in — sums, products by constant matrices, Hadamard products, element-wise φ — and
keeps every Jacobian in the canonical form

    J = Σ_k c_k · diag(v_k) · M_k

(numerator layout: ∂y/∂x has shape (len y) × (len x)), where v_k is a Hadamard product of
named vectors and M_k a product of weight matrices (empty: the identity). Rules:

    ∂(A v)/∂x        = A · ∂v/∂x                  (A constant)
    ∂(u ⊙ v)/∂x      = diag(v) ∂u/∂x + diag(u) ∂v/∂x
    ∂φ(a)/∂x         = diag(φ'(a)) · ∂a/∂x
    diag(u) diag(v)  = diag(u ⊙ v)

Terms with the same M_k are collected, with their common Hadamard factors pulled out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import sympy as sp
from sympy import HadamardPower, HadamardProduct, Identity, MatAdd, MatMul, MatrixSymbol, ZeroMatrix
from sympy.matrices.expressions.matexpr import MatrixExpr

from .._checks import GradflowError
from .nodes import Diag, Elementwise, hadamard


@dataclass(frozen=True)
class _Term:
    """c · diag(left_1 ⊙ … ⊙ left_r) · tail_1 · … · tail_s (empty left or tail: identity)."""

    coeff: sp.Expr
    left: tuple
    tail: tuple


def _scale(factors: tuple, coeff, terms: list[_Term]) -> list[_Term]:
    """diag(⊙ factors) · coeff · J."""
    return [_Term(coeff * t.coeff, tuple(factors) + t.left, t.tail) for t in terms]


def _lmul(matrix, terms: list[_Term]) -> list[_Term]:
    """matrix · J, the term's leading diag moving behind the matrix."""
    return [
        _Term(t.coeff, (), (matrix,) + ((Diag(hadamard(*t.left)),) if t.left else ()) + t.tail)
        for t in terms
    ]


def _vector_sum(parts: list[tuple], rows) -> MatrixExpr:
    """Σ c_i · (⊙ factors_i) as a vector expression (no factors: the ones vector)."""
    summands = []
    for fs, c in sorted(parts, key=lambda p: sp.sympify(p[1]).could_extract_minus_sign()):  # + first
        v = hadamard(*fs) if fs else sp.OneMatrix(rows, 1)
        summands.append(v if c == 1 else MatMul(c, v))
    return summands[0] if len(summands) == 1 else MatAdd(*summands)


def _collect(terms: list[_Term]) -> list[_Term]:
    """Merge terms with the same tail; pull out the Hadamard factors they share."""
    groups: dict[tuple, list[_Term]] = {}
    for t in terms:
        groups.setdefault(t.tail, []).append(t)
    out = []
    for tail, group in groups.items():
        if len(group) == 1:
            out.append(group[0])
            continue
        common = Counter(group[0].left)
        for t in group[1:]:
            common &= Counter(t.left)
        shared = tuple(f for f in dict.fromkeys(group[0].left) for _ in range(common[f]))
        rests: dict[tuple, sp.Expr] = {}
        for t in group:
            rest = Counter(t.left) - common
            key = tuple(f for f in dict.fromkeys(t.left) for _ in range(rest[f]))
            rests[key] = rests.get(key, 0) + t.coeff
        rests = {k: c for k, c in rests.items() if c != 0}
        if not rests:
            continue
        if len(rests) == 1:
            (only, c), = rests.items()
            out.append(_Term(c, shared + only, tail))
        else:
            rows = next(f.shape[0] for t in group for f in t.left + t.tail)
            out.append(_Term(sp.S.One, shared + (_vector_sum(list(rests.items()), rows),), tail))
    return out


def _derive(expr, D: Mapping, out=None) -> list[_Term]:
    """Total derivative of ``expr``; D maps each varying symbol to its own derivative terms.

    ``out``: a symbol naming ``expr`` (used to print φ'(a) through φ's output, e.g. 1 − h ⊙ h).
    """
    # constant: no symbol in it varies (a named quantity with no derivative terms is constant too)
    if not any(D.get(s) for s in expr.free_symbols if isinstance(s, MatrixSymbol)):
        return []
    if isinstance(expr, MatrixSymbol):
        return list(D[expr])
    if isinstance(expr, MatAdd):
        return _collect([t for a in expr.args for t in _derive(a, D)])
    if isinstance(expr, MatMul):
        coeff = sp.Mul(*[a for a in expr.args if not isinstance(a, MatrixExpr)])
        mats = [a for a in expr.args if isinstance(a, MatrixExpr)]
        *consts, last = mats
        if any(_derive(a, D) for a in consts):
            raise NotImplementedError(
                f"the variable appears in a matrix factor of {expr}; gradflow differentiates "
                "products A·v with constant A only"
            )
        terms = _scale((), coeff, _derive(last, D))
        for a in reversed(consts):
            terms = _lmul(a, terms)
        return terms
    if isinstance(expr, HadamardProduct):
        terms = []
        for i, a in enumerate(expr.args):
            others = expr.args[:i] + expr.args[i + 1:]
            terms += _scale(others, sp.S.One, _derive(a, D))
        return _collect(terms)
    if isinstance(expr, HadamardPower) and expr.exp.is_Integer and expr.exp > 0:
        return _derive(HadamardProduct(*[expr.base] * int(expr.exp)), D)
    if isinstance(expr, HadamardPower):  # ∂(v^∘p) = diag(p · v^∘(p−1)) ∂v  (p = −1: division)
        return _scale((HadamardPower(expr.base, expr.exp - 1),), expr.exp, _derive(expr.base, D))
    if isinstance(expr, Elementwise):
        factors = expr.activation.factors(expr.arg, out if out is not None else expr)
        if any(isinstance(f, ZeroMatrix) for f in factors):  # φ' = 0 a.e. (sign, step)
            return []
        return _scale(factors, sp.S.One, _derive(expr.arg, D))
    raise NotImplementedError(f"gradflow's chain rule has no rule for {type(expr).__name__}: {expr}")


def _to_expr(terms: list[_Term], rows, cols) -> MatrixExpr:
    """Σ c · diag(⊙ left) · tail as a SymPy matrix expression (ZeroMatrix when empty)."""
    summands = []
    for t in terms:
        factors = ([Diag(hadamard(*t.left))] if t.left else []) + list(t.tail)
        if not factors:
            factors = [Identity(rows)]
        body = factors[0] if len(factors) == 1 else MatMul(*factors)
        summands.append(body if t.coeff == 1 else MatMul(t.coeff, *factors))
    if not summands:
        return ZeroMatrix(rows, cols)
    return summands[0] if len(summands) == 1 else MatAdd(*summands)


def _sweep(definitions: Mapping, wrt) -> dict:
    """Derivative terms of every named quantity, in definition order."""
    D: dict = {wrt: [_Term(sp.S.One, (), ())]}
    for name, expr in definitions.items():
        D[name] = _collect(_derive(expr, D, out=name))
    return D


def total_derivatives(definitions: Mapping, wrt) -> dict:
    """d q/d ``wrt`` for every named quantity q = expr in ``definitions`` (in order).

    Arguments:
        definitions: ordered mapping symbol → expression; an expression may use earlier symbols.
        wrt: the column-vector ``MatrixSymbol`` to differentiate with respect to.

    Returns:
        dict symbol → Jacobian (numerator layout), in the canonical form above.
    """
    D = _sweep(definitions, wrt)
    return {name: _to_expr(D[name], name.shape[0], wrt.shape[0]) for name in definitions}


def jacobian(expr, wrt, definitions: Mapping | None = None) -> MatrixExpr:
    """∂expr/∂wrt in numerator layout, as a SymPy matrix expression.

    Arguments:
        expr: a column-vector matrix expression (sums, A·v, ⊙, element-wise φ).
        wrt: a column-vector ``MatrixSymbol``.
        definitions: optional ordered named intermediates (symbol → expression) that
            ``expr`` may use; their dependence on ``wrt`` is followed.

    Returns:
        The Jacobian, e.g. ``diag(1 − tanh(W x) ⊙ tanh(W x))·W`` for tanh(W x).
    """
    if expr.shape[1] != 1 or wrt.shape[1] != 1:
        raise GradflowError("jacobian: expr and wrt must be column vectors (shape (r, 1))")
    D = _sweep(dict(definitions or {}), wrt)
    return _to_expr(_collect(_derive(expr, D)), expr.shape[0], wrt.shape[0])
