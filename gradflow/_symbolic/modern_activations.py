"""Element-wise functions the modern cells need beyond tanh, σ and relu (each defined in one place).

exp: xLSTM's exponential input gate, the LRU's modulus exp(−exp ν); cos, sin: the LRU's phase;
logsigmoid: the sLSTM stabiliser's log f; abs, sign: expRNN's modReLU, sign(a) ⊙ relu(|a| + b).
"""

from __future__ import annotations

import sympy as sp
from sympy import MatMul

from .activations import Activation
from .nodes import ACTIVATIONS, Elementwise, one_minus

# exp(a);  exp'(a) = exp(a) = y
exp = Activation(
    "exp", r"\exp", sp.exp,
    lambda a, y: (y,),
    lambda xp, a: xp.exp(a),
)

# cos'(a) = −sin(a)
cos = Activation(
    "cos", r"\cos", sp.cos,
    lambda a, y: (MatMul(-1, Elementwise("sin", a)),),
    lambda xp, a: xp.cos(a),
)

# sin'(a) = cos(a)
sin = Activation(
    "sin", r"\sin", sp.sin,
    lambda a, y: (Elementwise("cos", a),),
    lambda xp, a: xp.sin(a),
)

for _f in (exp, cos, sin):
    ACTIVATIONS.setdefault(_f.name, _f)


# -- xLSTM's stabiliser and expRNN's modReLU ----------------------------------------------------
def _log_sigmoid_numeric(xp, a):
    """log σ(a) = min(a, 0) − log(1 + e^{−|a|}), without overflow."""
    return xp.minimum(a, 0.0 * a) - xp.log1p(xp.exp(-xp.abs(a)))


def _sigmoid_stable(xp, a):
    e = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


# log σ(a);  (log σ)'(a) = 1 − σ(a)  (stably σ(−a))
logsigmoid = Activation(
    "logsigmoid", r"\log\sigma", lambda x: -sp.log(1 + sp.exp(-x)),
    lambda a, y: (one_minus(Elementwise("sigmoid", a)),),
    _log_sigmoid_numeric,
    lambda xp, a: (_sigmoid_stable(xp, -a),),
    lambda xp, a: (_log_sigmoid_numeric(xp, -a),),
)

# sign(a) ∈ {−1, 0, 1};  sign'(a) = 0 for a ≠ 0 (the value PyTorch's autograd uses everywhere)
sign = Activation(
    "sign", r"\operatorname{sign}", sp.sign,
    lambda a, y: (sp.ZeroMatrix(*y.shape),),
    lambda xp, a: xp.sign(a),
    lambda xp, a: (xp.zeros_like(a),),
    lambda xp, a: (-xp.inf * xp.ones_like(a),),
)

# |a|;  |a|' = sign(a)  (0 at a = 0, PyTorch's subgradient)
absolute = Activation(
    "abs", r"\operatorname{abs}", sp.Abs,
    lambda a, y: (Elementwise("sign", a),),
    lambda xp, a: xp.abs(a),
)

for _f in (logsigmoid, sign, absolute):
    ACTIVATIONS.setdefault(_f.name, _f)
