"""Turn the symbolic expressions of a cell into array code, keeping their structure.

The numeric engine does not carry a second copy of any formula: it evaluates the very
expressions the symbolic core derived. Compilation walks the SymPy tree once and returns a
closure ``f(env) -> array``; ``env`` maps each ``MatrixSymbol`` to an array, the size symbols
to ints, and ``"xp"`` to the array namespace. Shapes: a column vector is ``(..., r)`` (batch
first), a weight ``(r, c)`` and a computed matrix ``(..., r, c)``; a bias is ``(r,)``.

Structure is used, never materialised: diag(v)·A is ``v[..., :, None] * A``, A·diag(v) is
``A * v[..., None, :]``, diag(u)·diag(v) is diag(u ⊙ v) — an n × n diagonal matrix is formed only
where a bare diag(v) is added to a dense block.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import sympy as sp
from sympy import (
    HadamardPower,
    HadamardProduct,
    Identity,
    KroneckerProduct,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    Transpose,
    ZeroMatrix,
)
from sympy.matrices.expressions.matexpr import MatrixExpr

from .._checks import GradflowError
from .._symbolic.nodes import Diag, Elementwise, MatrixExp

Fn = Callable[[dict], Any]


def scalar_coefficient(expr):
    """A scalar factor: a float, or ``env -> float`` when it holds a cell's named constants (ε, γ)."""
    if not expr.free_symbols:
        return float(expr)
    symbols = sorted(expr.free_symbols, key=str)
    fn = sp.lambdify(symbols, expr, modules="math")
    return lambda env: float(fn(*(env[s] for s in symbols)))

# tags for the operands of a product
_VEC, _DIAG, _MAT = "vector", "diag", "matrix"


def _matvec(A, v, xp):
    """A·v for a weight (2-D) or a batch of matrices (3-D); v is (..., c)."""
    if A.ndim == 2:
        return v @ xp.matrix_transpose(A)
    return (A @ v[..., None])[..., 0]


def dense_diag(v, env):
    xp = env["xp"]
    eye = xp.eye(v.shape[-1], dtype=v.dtype)
    return eye * v[..., None, :]


def _product(tags_fns: list[tuple[str, Fn]], coeff: float) -> Fn:
    """Left-to-right product of tagged operands, exploiting diagonal structure."""

    def f(env):
        xp = env["xp"]
        tag, val = tags_fns[0][0], tags_fns[0][1](env)
        for t, g in tags_fns[1:]:
            w = g(env)
            if tag == _DIAG:
                if t == _DIAG or t == _VEC:
                    val = val * w
                else:
                    val = val[..., :, None] * w
                tag = _DIAG if t == _DIAG else t
            elif tag == _MAT:
                if t == _DIAG:
                    val = val * w[..., None, :]
                elif t == _VEC:
                    val, tag = _matvec(val, w, xp), _VEC
                else:
                    val = val @ w
            else:
                raise GradflowError("a column vector can only end a product")
        if tag == _DIAG:
            val = dense_diag(val, env)
        c = coeff(env) if callable(coeff) else coeff
        return val if c == 1 else c * val

    return f


def _tagged(expr, subs=None, last: bool = True) -> tuple[str, Fn]:
    """The operand's tag and closure; a column r × 1 that does not end the product is an r × 1 matrix."""
    if isinstance(expr, Diag):
        return _DIAG, compile_expr(expr.vector, subs)
    if expr.shape[1] == 1 and not last:
        return _MAT, _as_matrix(expr, subs)
    if expr.shape[1] == 1:
        return _VEC, compile_expr(expr, subs)
    return _MAT, compile_expr(expr, subs)


def _dim(env, d) -> int:
    """A size expression (n, n², 1) at the environment's sizes."""
    d = sp.sympify(d)
    return int(d.xreplace({s: env[s] for s in d.free_symbols}))


def _as_matrix(expr, subs=None) -> Fn:
    """``expr`` as an array whose last two axes are its rows and columns (a column v: v[..., :, None])."""
    if isinstance(expr, OneMatrix):
        rows, cols = expr.shape
        return lambda env: env["xp"].ones((_dim(env, rows), _dim(env, cols)), dtype=env["dtype"])
    f = compile_expr(expr, subs)
    if expr.shape[1] == 1:
        return lambda env: f(env)[..., :, None]
    return f


def _kronecker(parts: list[Fn], column: bool) -> Fn:
    """A ⊗ B ⊗ … of matrices (last two axes rows, columns; leading axes the batch)."""

    def f(env):
        out = parts[0](env)
        for p in parts[1:]:
            b = p(env)
            prod = out[..., :, None, :, None] * b[..., None, :, None, :]
            r, c = out.shape[-2] * b.shape[-2], out.shape[-1] * b.shape[-1]
            out = env["xp"].reshape(prod, tuple(prod.shape[:-4]) + (r, c))
        return out[..., 0] if column else out

    return f


def compile_expr(expr, subs: dict | None = None) -> Fn:
    """A closure evaluating the matrix expression ``expr`` on arrays (see module docstring).

    ``subs`` maps sub-expressions to ready closures used in their place (the stable numeric
    form of an activation's printed derivative factors, see :func:`stable_substitutions`).
    """
    if subs and expr in subs:
        return subs[expr]
    if isinstance(expr, MatrixSymbol):
        return lambda env: env[expr]
    if isinstance(expr, OneMatrix):
        return lambda env: 1.0
    if isinstance(expr, ZeroMatrix):
        rows, cols = expr.shape
        if cols == 1:
            return lambda env: 0.0
        return lambda env: env["xp"].zeros((env[rows], env[cols]), dtype=env["dtype"])
    if isinstance(expr, Identity) and expr.shape == (1, 1):  # the 1 × 1 one: a scalar
        return lambda env: 1.0
    if isinstance(expr, Identity):
        rows = expr.shape[0]
        return lambda env: env["xp"].eye(_dim(env, rows), dtype=env["dtype"])
    if isinstance(expr, KroneckerProduct):
        return _kronecker([_as_matrix(a, subs) for a in expr.args], expr.shape[1] == 1)
    if isinstance(expr, Diag):
        v = compile_expr(expr.vector, subs)
        return lambda env: dense_diag(v(env), env)
    if isinstance(expr, MatrixExp):
        return _compile_expm(compile_expr(expr.arg, subs))
    if isinstance(expr, Transpose) and expr.arg.shape[1] == 1:  # vᵀ of a column: (..., 1, r)
        col = compile_expr(expr.arg, subs)
        return lambda env: col(env)[..., None, :]
    if isinstance(expr, Transpose):
        inner = compile_expr(expr.arg)
        return lambda env: env["xp"].matrix_transpose(inner(env))
    if isinstance(expr, MatAdd):
        parts = [compile_expr(a, subs) for a in expr.args]

        def add(env):
            total = parts[0](env)
            for p in parts[1:]:
                total = total + p(env)
            return total

        return add
    if isinstance(expr, HadamardProduct):
        parts = [compile_expr(a, subs) for a in expr.args]

        def had(env):
            total = parts[0](env)
            for p in parts[1:]:
                total = total * p(env)
            return total

        return had
    if isinstance(expr, HadamardPower):
        base, p = compile_expr(expr.base, subs), int(expr.exp)
        return lambda env: base(env) ** p
    if isinstance(expr, Elementwise):
        arg, fn = compile_expr(expr.arg, subs), expr.activation.numeric
        return lambda env: fn(env["xp"], arg(env))
    if isinstance(expr, MatMul):
        ops = []
        scalars = []
        last = max(i for i, a in enumerate(expr.args) if isinstance(a, MatrixExpr))
        for i, a in enumerate(expr.args):
            if isinstance(a, MatrixExpr):
                ops.append(_tagged(a, subs, last=i == last))
            else:
                scalars.append(a)
        coeff = scalar_coefficient(sp.Mul(*scalars))
        if len(ops) == 1 and ops[0][0] != _DIAG:
            g = ops[0][1]
            if callable(coeff):
                return lambda env: coeff(env) * g(env)
            return lambda env: coeff * g(env)
        return _product(ops, coeff)
    raise NotImplementedError(f"no array code for {type(expr).__name__}: {expr}")


def stable_substitutions(definitions, exprs) -> dict:
    """Closures for the printed derivative factors of every activation application, evaluated
    stably from the pre-activation (:attr:`gradflow.Activation.stable`).

    An application is a named quantity y := φ(a) of ``definitions`` or an unnamed φ(a) inside
    ``exprs``; its printed factors ``φ.factors(a, y)`` (other than y itself) are exactly the
    sub-expressions the chain rule wrote into the Jacobian, so they are found by equality.
    """
    from sympy import preorder_traversal

    apps = [(y, e) for y, e in definitions.items() if isinstance(e, Elementwise)]
    for e in exprs:
        apps.extend((node, node) for node in preorder_traversal(e) if isinstance(node, Elementwise))
    subs: dict = {}
    for y, e in apps:
        act, a = e.activation, e.arg
        if act.stable is None:
            continue
        fa = compile_expr(a)
        for i, fac in enumerate(act.factors(a, y)):
            if fac == y or fac in subs or not isinstance(fac, MatAdd):  # only the complements
                continue
            subs[fac] = _stable_factor(act.stable, fa, i, a)
    return subs


def _stable_factor(stable, fa, i, a) -> Fn:
    """Factor i of ``stable(a)``; the factors of one pre-activation are evaluated once per
    environment (each a matvec with a weight: many Jacobian terms share them)."""
    key = ("stable factors", stable, a)

    def f(env):
        if key not in env:
            env[key] = stable(env["xp"], fa(env))
        return env[key][i]

    return f


def expm(xp, S):
    """exp(S) for a square matrix S (2-D), by scaling and squaring a degree-18 Taylor polynomial.

    S is scaled by 2^{−s} to ‖S‖₁ ≤ 1/2, where the Taylor remainder is below 1e-22 relative; the
    s squarings then cost a relative error of about s·ε·cond. Any array-API namespace.
    """
    norm = float(xp.max(xp.sum(xp.abs(S), axis=0))) if S.shape[0] else 0.0
    s = max(0, int(math.ceil(math.log2(norm / 0.5))) if norm > 0.5 else 0)
    X = S / (2.0 ** s)
    eye = xp.eye(S.shape[0], dtype=S.dtype)
    out, term = eye, eye
    for k in range(1, 19):
        term = (term @ X) / k
        out = out + term
    for _ in range(s):
        out = out @ out
    return out


def _compile_expm(inner: Fn) -> Fn:
    """exp(S(env)), computed once per distinct S array (S holds parameters only)."""
    memo: list = []

    def f(env):
        S = inner(env)
        if (memo and type(memo[0][0]) is type(S) and memo[0][0].shape == S.shape
                and bool(env["xp"].all(memo[0][0] == S))):  # the same array type: NumPy, CuPy
            return memo[0][1]
        out = expm(env["xp"], S)
        memo[:] = [(S, out)]
        return out

    return f
