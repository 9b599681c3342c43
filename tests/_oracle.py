"""The tests' own explicit evaluator: the oracle's forward pass at concrete sizes.

Every ``MatrixSymbol`` becomes a matrix of real scalar symbols and an expression is written out
entry by entry with the textbook scalar functions (tanh, 1/(1 + e^{−x}), max(0, x)), never
through gradflow's chain rule or its ``_entry`` code; SymPy then differentiates the explicit
entries (``Matrix.jacobian``). Shared by test_chain.py and test_jacobians_sympy.py.
"""

from __future__ import annotations

import sympy as sp
from sympy import (
    HadamardPower,
    HadamardProduct,
    Identity,
    ImmutableMatrix,
    KroneckerProduct,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    Transpose,
    ZeroMatrix,
)
from sympy.matrices import MatrixBase
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions.matexpr import MatrixExpr

from gradflow import Diag, Elementwise
from gradflow._symbolic.nodes import MatrixExp

#: textbook scalar definitions, written here independently of gradflow._symbolic.activations
SCALAR = {
    "tanh": sp.tanh,
    "sigmoid": lambda u: 1 / (1 + sp.exp(-u)),
    "relu": lambda u: sp.Max(0, u),
    "step": lambda u: sp.Heaviside(u, 0),
    "exp": sp.exp,
    "cos": sp.cos,
    "sin": sp.sin,
    "softplus": lambda u: sp.log(1 + sp.exp(u)),
    "sqrt": sp.sqrt,
    "logsigmoid": lambda u: -sp.log(1 + sp.exp(-u)),
    "abs": sp.Abs,
    "sign": sp.sign,
}


def _dim(d, sizes) -> int:
    return int(sp.sympify(d).subs(sizes))


def entries_of(symbol: MatrixSymbol, sizes) -> ImmutableMatrix:
    """The explicit matrix of real scalar symbols standing for ``symbol`` at concrete size."""
    rows, cols = (_dim(d, sizes) for d in symbol.shape)
    return ImmutableMatrix(rows, cols, lambda i, j: sp.Symbol(f"{symbol.name}[{i},{j}]", real=True))


def _matmul(a: ImmutableMatrix, b: ImmutableMatrix) -> ImmutableMatrix:
    assert a.cols == b.rows
    return ImmutableMatrix(a.rows, b.cols, lambda i, j: sp.Add(*[a[i, k] * b[k, j] for k in range(a.cols)]))


def explicit(expr, leaves: dict, sizes) -> ImmutableMatrix:
    """``expr`` entry by entry; ``leaves`` maps a MatrixSymbol's name to its explicit matrix."""
    if isinstance(expr, MatrixBase):
        return ImmutableMatrix(expr)
    if isinstance(expr, MatrixSymbol):
        return leaves[expr.name]
    if isinstance(expr, MatAdd):
        parts = [explicit(a, leaves, sizes) for a in expr.args]
        out = parts[0]
        for p in parts[1:]:
            out = out + p
        return ImmutableMatrix(out)
    if isinstance(expr, MatMul):
        coeff = sp.Mul(*[a for a in expr.args if not isinstance(a, MatrixExpr)])
        mats = [explicit(a, leaves, sizes) for a in expr.args if isinstance(a, MatrixExpr)]
        out = mats[0]
        for b in mats[1:]:
            out = _matmul(out, b)
        return ImmutableMatrix(out.applyfunc(lambda e: coeff * e))
    if isinstance(expr, HadamardProduct):
        parts = [explicit(a, leaves, sizes) for a in expr.args]
        out = parts[0]
        for p in parts[1:]:
            out = out.multiply_elementwise(p)
        return ImmutableMatrix(out)
    if isinstance(expr, HadamardPower):
        return explicit(expr.base, leaves, sizes).applyfunc(lambda e: e ** expr.exp)
    if isinstance(expr, Elementwise):
        return explicit(expr.arg, leaves, sizes).applyfunc(SCALAR[expr.args[0].name])
    if isinstance(expr, ElementwiseApplyFunction):
        return explicit(expr.expr, leaves, sizes).applyfunc(expr.function)
    if isinstance(expr, MatrixExp):  # a constant of the recurrence: opaque entries of the parameters
        S = explicit(expr.arg, leaves, sizes)
        return ImmutableMatrix(S.rows, S.cols, lambda i, j: sp.Function(f"expm_{i}{j}", real=True)(*S))
    if isinstance(expr, Diag):
        v = explicit(expr.vector, leaves, sizes)
        return ImmutableMatrix(sp.diag(*list(v)))
    if isinstance(expr, Transpose):
        return explicit(expr.arg, leaves, sizes).T
    if isinstance(expr, ZeroMatrix):
        return ImmutableMatrix.zeros(*(_dim(d, sizes) for d in expr.shape))
    if isinstance(expr, OneMatrix):
        return ImmutableMatrix.ones(*(_dim(d, sizes) for d in expr.shape))
    if isinstance(expr, Identity):
        return ImmutableMatrix.eye(_dim(expr.shape[0], sizes))
    if isinstance(expr, KroneckerProduct):  # (A ⊗ B)[i·rB + k, j·cB + l] = A[i, j] B[k, l]
        out = explicit(expr.args[0], leaves, sizes)
        for b in expr.args[1:]:
            B = explicit(b, leaves, sizes)
            A = out
            out = ImmutableMatrix(A.rows * B.rows, A.cols * B.cols,
                                  lambda r, c, A=A, B=B: A[r // B.rows, c // B.cols] * B[r % B.rows, c % B.cols])
        return ImmutableMatrix(out)
    raise TypeError(f"the test evaluator has no rule for {type(expr).__name__}")


def _heaviside_common(e):
    """Heaviside(u, H0) → Heaviside(u), DiracDelta(u) → 0 (sign' a.e.): compares away from u = 0."""
    e = e.replace(lambda a: isinstance(a, sp.DiracDelta), lambda a: sp.S.Zero)
    return e.replace(lambda a: isinstance(a, sp.Heaviside), lambda a: sp.Heaviside(a.args[0]))


def abstract_transcendentals(e):
    """Replace every tanh(·), exp(·) and Heaviside(·) sub-expression by a fresh symbol.

    Sound for proving a − b = 0: if the abstracted difference is the zero rational function
    of independent symbols, substituting the real functions back gives zero as well (the
    converse need not hold, so this can only fail spuriously, never pass wrongly).
    """
    atoms = sorted(e.atoms(sp.tanh, sp.exp, sp.Heaviside), key=sp.default_sort_key)
    return e.xreplace({f: sp.Dummy(f"F{k}") for k, f in enumerate(atoms)})
