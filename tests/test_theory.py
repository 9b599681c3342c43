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

import gradflow as gf
from gradflow._symbolic.many_steps import TimeHadamardProduct, sigma_max
from gradflow._symbolic.nodes import Diag

M = 1
#: hidden size per cell (two-step expansions of gated cells grow fast: keep n small)
SIZES = {"tanh-rnn": 2, "relu-rnn": 2, "residual-rnn": 2, "lstm": 2, "gru": 2}


def _explicit(expr, N):
    return expr.subs({gf.n: N, gf.m: M}).as_explicit()


def _forward(steps, N, values):
    """Entry values of every named quantity of ``steps`` (earliest first), written out entry by
    entry from the definitions; ``values`` maps the entries of the weights, inputs and s_k."""
    values = dict(values)
    for st in steps:
        for name, expr in st.definitions.items():
            E = _explicit(expr, N).xreplace(values)
            values.update(dict(zip(_explicit(name, N), E, strict=True)))
    return values


@pytest.mark.parametrize("name", ["tanh-rnn", "relu-rnn", "lstm", "gru", "residual-rnn"])
def test_product_equals_elementwise_jacobian_of_composition(name):
    cell, N = gf.get_cell(name), SIZES[name]
    t_val, k_val = 3, 1
    steps = [cell.step(sp.Integer(s)) for s in range(k_val + 1, t_val + 1)]  # steps 2, 3
    prod = _explicit(gf.state_product(cell).explicit(t_val, k_val), N)
    s_k = sp.Matrix.vstack(*[_explicit(steps[0].prev[s], N) for s in cell.states])
    s_t = sp.Matrix.vstack(*[_explicit(steps[-1].new[s], N) for s in cell.states])
    rng = random.Random(7)
    params = set()
    for st in steps:
        for p in st.params:
            params |= set(_explicit(p.symbol, N))
        params |= set(_explicit(st.x, N))
    point = {e: sp.Float(sp.Rational(rng.randint(-90, 90), 100), 30) for e in sorted(params, key=str)}
    at_state = {e: sp.Rational(rng.randint(-90, 90), 100) for e in s_k}
    # oracle: s_t as an explicit function of s_k (weights and inputs fixed at the point),
    # differentiated entry by entry by SymPy w.r.t. plain symbols standing for s_k (SymPy's
    # derivative w.r.t. matrix elements is very slow), then evaluated at s_k
    xs = sp.symbols("x0:%d" % len(s_k), real=True)
    symbolic = _forward(steps, N, {**point, **dict(zip(s_k, xs, strict=True))})
    oracle = s_t.xreplace(symbolic).jacobian(sp.Matrix(xs))
    oracle = oracle.xreplace({x: at_state[e] for x, e in zip(xs, s_k, strict=True)})
    # gradflow: the derived product, its named quantities evaluated at the same point
    numeric = _forward(steps, N, {**point, **at_state})
    mine = prod.xreplace(numeric)
    assert mine.shape == oracle.shape == (len(cell.states) * N,) * 2
    for a, b in zip(mine, oracle, strict=True):
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
    assert c97.latex().endswith("= I") and r"\mathbb{I}" not in c97.latex()
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
