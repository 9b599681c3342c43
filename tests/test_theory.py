"""Many-step results of the symbolic core, against independent oracles.

* ∂s_t/∂s_k written out for concrete t, k and n equals SymPy's element-wise ``Matrix.jacobian``
  of the composed recurrence s_t(s_k) (checked at random exact rational points, evaluated to 30 digits).
* γ = sup|φ'| against the published values (Pascanu, Mikolov & Bengio 2013): 1 for tanh and
  ReLU, 1/4 for the logistic sigmoid.
* The carousel: ∂c_t/∂c_{t−1} = diag(f_t) for the LSTM, the identity for the 1997 cell.
"""

from __future__ import annotations

import random

import pytest
import sympy as sp
from sympy import Identity, ZeroMatrix
from sympy.matrices.expressions.matexpr import MatrixElement

import gradflow as gf
from gradflow._matexpr import Diag
from gradflow._theory import TimeHadamardProduct, sigma_max

N, M = 2, 1


def _expand(expr, steps):
    """Write named quantities of the given recorded steps out (latest step first)."""
    for st in steps:
        for name in reversed(list(st.definitions)):
            expr = expr.xreplace({name: st.definitions[name]})
    return expr


def _explicit(expr):
    return expr.subs({gf.n: N, gf.m: M}).as_explicit()


@pytest.mark.parametrize("name", ["tanh-rnn", "relu-rnn", "lstm", "gru", "residual-rnn"])
def test_product_equals_elementwise_jacobian_of_composition(name):
    cell = gf.get_cell(name)
    t_val, k_val = 3, 1
    steps = [cell.step(sp.Integer(s)) for s in range(t_val, k_val, -1)]  # steps 3, 2
    prod = gf.state_product(cell).explicit(t_val, k_val)
    last = steps[0]
    new = (sp.BlockMatrix([[last.new[s]] for s in cell.states]) if len(cell.states) > 1
           else last.new["h"])
    composed = _explicit(_expand(new, steps))
    wrt = sp.Matrix.vstack(*[_explicit(steps[-1].prev[s]) for s in cell.states])
    mine = _explicit(_expand(prod, steps))
    # a random exact point for the weights and inputs first (the oracle then differentiates a
    # function of s_k alone), then for s_k
    rng = random.Random(7)
    state_syms = set(wrt)
    others = (composed.atoms(MatrixElement) | mine.atoms(MatrixElement)) - state_syms
    at = {s: sp.Rational(rng.randint(-90, 90), 100) for s in sorted(others, key=str)}
    at_state = {s: sp.Rational(rng.randint(-90, 90), 100) for s in sorted(state_syms, key=str)}
    oracle = composed.xreplace(at).jacobian(wrt).xreplace(at_state)
    mine = mine.xreplace(at).xreplace(at_state)
    assert mine.shape == oracle.shape == (len(cell.states) * N,) * 2
    for a, b in zip(mine, oracle):
        va, vb = sp.N(a, 30), sp.N(b, 30)
        assert abs(va - vb) <= sp.Float("1e-25", 30) * (1 + abs(vb)), (a, b)


@pytest.mark.parametrize("name, gamma", [("tanh-rnn", 1), ("relu-rnn", 1), ("irnn", 1),
                                         ("sigmoid-rnn", sp.Rational(1, 4))])
def test_pascanu_gamma_matches_published_values(name, gamma):
    b = gf.pascanu_bound(name)
    assert b.gamma == gamma
    W = sigma_max(sp.MatrixSymbol("W", gf.n, gf.n))
    t, k = sp.Symbol("t", integer=True), sp.Symbol("k", integer=True)
    assert sp.simplify(b.expr - (gamma * W) ** (t - k)) == 0


def test_residual_bound_and_unbounded_cells():
    b = gf.pascanu_bound("residual-rnn")
    W = sigma_max(sp.MatrixSymbol("W", gf.n, gf.n))
    assert sp.simplify(b.rate - (1 + W)) == 0          # I + diag(φ')W: no vanishing guarantee
    with pytest.raises(ValueError, match="unbounded"):
        gf.pascanu_bound("gru")                          # h_{t-1} − h~ appears: not bounded a priori
    with pytest.raises(ValueError, match="single-state"):
        gf.pascanu_bound("lstm")


def test_carousel_is_product_of_forget_gates_and_identity_in_1997():
    c = gf.carousel("lstm")
    assert isinstance(c.step, Diag) and c.step.vector.name == "f_{j}"
    assert isinstance(c.expr, Diag) and isinstance(c.expr.vector, TimeHadamardProduct)
    assert not c.constant
    c97 = gf.carousel("lstm-1997")
    assert c97.constant and isinstance(c97.expr, Identity)
    assert r"\mathbb{I}" in c97.latex()
    with pytest.raises(ValueError, match="no cell state"):
        gf.carousel("tanh-rnn")


def test_truncated_jacobian_cuts_every_path_through_h():
    full = gf.get_cell("lstm").jacobian()
    tr = gf.truncated_jacobian("lstm")
    for (a, b), blk in tr.blocks.items():
        if b == "h":
            assert isinstance(blk, ZeroMatrix)
        else:
            assert blk == full[a, b]
    assert isinstance(gf.truncated_jacobian("lstm-1997")["c", "c"], Identity)
    with pytest.raises(ValueError):
        gf.truncated_jacobian("gru")


def test_product_prints():
    p = gf.state_product("tanh-rnn")
    assert r"\prod_{j=" in p.latex() and r"W" in p.latex()
    assert p._repr_latex_().startswith("$")
    with pytest.raises(ValueError):
        p.explicit(2, 2)
