"""Element-wise functions the modern cells need beyond tanh, σ and relu (each defined in one place).

exp: xLSTM's exponential input gate, the LRU's modulus exp(−exp ν); cos, sin: the LRU's phase.
"""

from __future__ import annotations

import sympy as sp
from sympy import MatMul

from .activations import Activation
from .nodes import ACTIVATIONS, Elementwise

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
