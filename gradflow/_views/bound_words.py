"""How the report names a single-state cell's one-step bound, read off the derived Jacobian.

A bare identity summand in ∂h_t/∂h_{t−1} (``h_t = h_{t−1} + …``) is a residual path: it passes the
gradient unchanged and makes the state a running sum. A diagonal term diag(v) whose sup|v| happens to
be 1 (minGRU's diag(1 − z_t)) is not: it never exceeds 1 and never passes the gradient unchanged.
"""

from __future__ import annotations

import sympy as sp
from sympy import Identity, MatAdd, MatMul

from .._symbolic.cell import Cell
from .._symbolic.many_steps import pascanu_bound
from .._symbolic.printing import latex


def identity_summand(cell: Cell) -> bool:
    """True when ∂h_t/∂h_{t−1} holds the identity itself as a summand (a residual path)."""
    if cell.states != ("h",):
        return False
    block = cell.jacobian()["h", "h"]
    for term in block.args if isinstance(block, MatAdd) else (block,):
        if isinstance(term, Identity):
            return True
        if isinstance(term, MatMul) and len(term.args) == 2 and isinstance(term.args[1], Identity) \
                and term.args[0] == 1:
            return True
    return False


def bound_formula(cell: Cell, lag: str = "T-k") -> str:
    """LaTeX of the derived bound's right-hand side, (rate)^{lag}, printed from the symbolic rate."""
    rate = pascanu_bound(cell).rate
    atomic = isinstance(rate, (sp.Number, sp.Symbol, sp.Function)) and not latex(rate).startswith(r"\max")
    base = latex(rate) if atomic else r"\left(%s\right)" % latex(rate)  # (max_i |u_i|)^{T-k}
    return f"{base}^{{{lag}}}"


def cc_block_words(cells: list[Cell]) -> str:
    """Each cell's one-step c → c block at t = T, printed from its derivation ("diag(f_T) for
    `lstm`; diag(1 − i_T) for `cifg`; I for `lstm-1997`"); cells whose block is not diagonal are left out."""
    from .._symbolic.nodes import Diag

    blocks = [(c, c.jacobian(sp.Symbol("T"))["c", "c"]) for c in cells]
    return _each([(c, latex(b)) for c, b in blocks if isinstance(b, (Diag, sp.Identity))],
                 lambda c: f"its block in [#eq:{c.name}-jacobian]")


def carousel_words(cells: list[Cell]) -> str:
    """Each cell's carousel ∂c_T/∂c_k|_carousel, printed from its derived form: "I for `lstm-1997`"."""
    from .._symbolic.cell import t
    from .._symbolic.many_steps import carousel

    return _each([(c, latex(carousel(c).expr.subs(t, sp.Symbol("T")))) for c in cells],
                 lambda c: f"the product [#eq:{c.name}-carousel]")


#: a formula wider than this (visible characters) is named by its equation in a caption: the
#: peephole LSTM's carousel ran 75 pt off a two-column page
CAPTION_WIDTH = 40.0


def _each(pairs: list[tuple[Cell, str]], long=None) -> str:
    """"$F$ for `a` and `b`; $G$ for `c`": each printed formula once, with every cell that has it;
    a formula too wide for a caption line is ``long(cell)`` instead (its equation, by number)."""
    from .document import visible_width

    names: dict[str, list[str]] = {}
    for c, tex in pairs:
        words = f"${tex}$" if long is None or visible_width(tex) <= CAPTION_WIDTH else long(c)
        names.setdefault(words, []).append(f"`{c.name}`")
    return "; ".join(f"{words} for " + (", ".join(ns[:-1]) + " and " + ns[-1] if len(ns) > 1 else ns[0])
                     for words, ns in names.items())
