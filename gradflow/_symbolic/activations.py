"""Element-wise activations: forward and local derivative side by side.

Each activation φ is a primitive, like an operation in an autodiff engine: its scalar
definition (SymPy, used for expansion at concrete n and for the oracles), its derivative
written as Hadamard factors of either the pre-activation ``a`` or the output ``y = φ(a)``
(what the derived Jacobians print as diag(...)), and its array implementation (any
array-API namespace ``xp``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sympy as sp

from .nodes import ACTIVATIONS, Elementwise, get_activation, hadamard, one_minus

__all__ = ["ACTIVATIONS", "Activation", "get_activation", "relu", "sigmoid", "step", "sup_abs", "tanh"]


@dataclass(frozen=True)
class Activation:
    """An element-wise function φ and its local derivative.

    Attributes:
        name: registry key (``"tanh"``).
        latex: LaTeX of the function name (``r"\\tanh"``).
        scalar: ``x -> φ(x)`` as a SymPy expression.
        factors: ``(a, y) -> (v_1, ..., v_r)`` with φ'(a) = v_1 ⊙ … ⊙ v_r, where ``y = φ(a)``.
        numeric: ``(xp, a) -> φ(a)`` on arrays.
        stable: ``(xp, a) -> (u_1, ..., u_r)``: the value of each printed factor v_i, in the same
            order, evaluated stably from the pre-activation (e.g. 1 − y ⊙ y as sech²(a), which
            does not round to 0 when tanh(a) rounds to 1). The compiled Jacobians use these
            wherever the derived expression contains the printed factor.
        log_stable: ``(xp, a) -> (log u_1, ..., log u_r)`` (natural log, −inf for an exact 0),
            finite where the factors themselves underflow.
    """

    name: str
    latex: str
    scalar: Callable[[sp.Expr], sp.Expr]
    factors: Callable[[Any, Any], tuple]
    numeric: Callable[[Any, Any], Any]
    stable: Callable[[Any, Any], tuple] = None  # type: ignore[assignment]
    log_stable: Callable[[Any, Any], tuple] = None  # type: ignore[assignment]

    def derivative(self, xp, a):
        """φ′(a) on arrays, stably from the pre-activation (the product of :attr:`stable`)."""
        out = None
        for u in self.stable(xp, a):
            out = u if out is None else out * u
        return out

    def log_derivative(self, xp, a):
        """log φ′(a) (natural log; −inf where φ′(a) = 0), without underflow."""
        out = None
        for u in self.log_stable(xp, a):
            out = u if out is None else out + u
        return out

    def __call__(self, arg):
        return Elementwise(self.name, arg)


def _sigmoid_numeric(xp, a):
    e = xp.exp(-xp.abs(a))  # never overflows
    return xp.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _log_sigmoid(xp, a):
    """log σ(a) = −log(1 + e^{−a}), without overflow or underflow."""
    return xp.minimum(a, 0.0 * a) - xp.log1p(xp.exp(-xp.abs(a)))


# σ(a) = 1/(1 + e^{−a});  σ'(a) = σ(a)(1 − σ(a)) = y ⊙ (1 − y); stably 1 − σ(a) = σ(−a)
sigmoid = Activation(
    "sigmoid", r"\sigma", lambda x: 1 / (1 + sp.exp(-x)),
    lambda a, y: (y, one_minus(y)),
    _sigmoid_numeric,
    lambda xp, a: (_sigmoid_numeric(xp, a), _sigmoid_numeric(xp, -a)),
    lambda xp, a: (_log_sigmoid(xp, a), _log_sigmoid(xp, -a)),
)

# H(a): Heaviside step with H(0) = 0 (PyTorch's subgradient of relu at 0). Derivative 0 a.e.
step = Activation(
    "step", "H", lambda x: sp.Heaviside(x, 0),
    lambda a, y: (sp.ZeroMatrix(*y.shape),),
    lambda xp, a: xp.where(a > 0, xp.ones_like(a), xp.zeros_like(a)),
    lambda xp, a: (xp.zeros_like(a),),
    lambda xp, a: (-xp.inf * xp.ones_like(a),),
)

# relu(a) = max(0, a);  relu'(a) = H(a)  (needs the pre-activation: y = 0 does not tell a < 0 from a = 0)
relu = Activation(
    "relu", r"\operatorname{relu}", lambda x: sp.Max(0, x),
    lambda a, y: (step(a),),
    lambda xp, a: xp.maximum(a, 0.0),
    lambda xp, a: (step.numeric(xp, a),),
    lambda xp, a: (xp.where(a > 0, xp.zeros_like(a), -xp.inf * xp.ones_like(a)),),
)


def _hadamard_complement(y):
    """1 − y ⊙ y, the output form of tanh'."""
    return one_minus(hadamard(y, y))


def _log_sech2(xp, a):
    """log sech²(a) = log 4 − 2|a| − 2 log(1 + e^{−2|a|})."""
    m = xp.abs(a)
    return math.log(4.0) - 2.0 * m - 2.0 * xp.log1p(xp.exp(-2.0 * m))


def _sech2(xp, a):
    """sech²(a) = 4 e^{−2|a|} / (1 + e^{−2|a|})², never 0 before it underflows (|a| ≈ 354)."""
    e = xp.exp(-2.0 * xp.minimum(xp.abs(a), 400.0))  # e^{-800} is already 0: no overflow in −2|a|
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


# tanh'(a) = 1 − tanh(a)² = 1 − y ⊙ y; stably sech²(a)
tanh = Activation(
    "tanh", r"\tanh", sp.tanh,
    lambda a, y: (_hadamard_complement(y),),
    lambda xp, a: xp.tanh(a),
    lambda xp, a: (_sech2(xp, a),),
    lambda xp, a: (_log_sech2(xp, a),),
)

for _f in (tanh, sigmoid, relu, step):
    ACTIVATIONS[_f.name] = _f


def sup_abs(expr: sp.Expr, x: sp.Symbol) -> sp.Expr:
    """sup over real x of |expr(x)|, exactly (SymPy), Heaviside pieces included."""
    from sympy.calculus.util import maximum

    expr = expr.rewrite(sp.Piecewise) if expr.has(sp.Heaviside) else expr
    if not isinstance(expr, sp.Piecewise):
        return maximum(sp.Abs(expr), x, sp.S.Reals)
    best, covered = sp.S.NegativeInfinity, sp.S.EmptySet
    for piece, cond in expr.args:
        where = (sp.S.Reals if cond is sp.true else cond.as_set()).intersect(sp.S.Reals)
        where = sp.Complement(where, covered)
        covered = sp.Union(covered, where)
        if where is sp.S.EmptySet:
            continue
        best = sp.Max(best, maximum(sp.Abs(piece), x, where))
    return best
