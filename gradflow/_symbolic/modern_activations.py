"""Element-wise functions the modern cells need beyond tanh, σ and relu (each defined in one place).

exp: xLSTM's exponential input gate (and later the diagonal SSMs' exp(Δ a)).
"""

from __future__ import annotations

import sympy as sp

from .activations import Activation
from .nodes import ACTIVATIONS

# exp(a);  exp'(a) = exp(a) = y
exp = Activation(
    "exp", r"\exp", sp.exp,
    lambda a, y: (y,),
    lambda xp, a: xp.exp(a),
)

for _f in (exp,):
    ACTIVATIONS.setdefault(_f.name, _f)
