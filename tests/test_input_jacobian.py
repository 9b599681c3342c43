"""The derived input Jacobian ∂s_t/∂x_t (what a stacked layer passes down) and the projected LSTM's
state Jacobian, against SymPy's element-wise ``Matrix.jacobian`` of the explicit recurrence
(same oracle and exact criterion as tests/test_jacobians_sympy.py)."""

from __future__ import annotations

import pytest
import sympy as sp
from _oracle import _heaviside_common, abstract_transcendentals, entries_of, explicit

from gradflow import CELLS, m, n
from gradflow._symbolic.projected import p, projected


def _explicit(cell, sizes):
    step = cell.recorded
    leaves = {q.symbol.name: entries_of(q.symbol, sizes) for q in step.params}
    leaves.update({s.name: entries_of(s, sizes) for s in step.prev.values()})
    leaves[step.x.name] = entries_of(step.x, sizes)
    for symbol, defn in step.definitions.items():
        leaves[symbol.name] = explicit(defn, leaves, sizes)
    return step, leaves


def _equal(G, R):
    assert G.shape == R.shape
    for a, b in zip(G, R, strict=True):
        a, b = _heaviside_common(a), _heaviside_common(b)
        assert sp.cancel(sp.together(abstract_transcendentals(a - b))) == 0, (a, b)


@pytest.mark.parametrize("name,N", [("tanh-rnn", 2), ("relu-rnn", 2), ("gru", 1), ("lstm", 1)])
def test_input_jacobian_equals_elementwise_jacobian(name, N):
    cell = CELLS[name]
    sizes = {n: N, m: 2}
    step, leaves = _explicit(cell, sizes)
    for s, block in cell.input_jacobian().items():
        oracle = leaves[step.new[s].name].jacobian(list(leaves[step.x.name]))
        _equal(explicit(block, leaves, sizes), oracle)


def test_projected_lstm_jacobians_equal_elementwise_jacobians():
    """n = 2 projected to p = 1: the blocks of ∂s_t/∂s_{t−1} of mixed sizes and ∂c_t/∂x_t. The two
    blocks of h_t (∂h_t/∂h_{t−1}, ∂h_t/∂x_t: ~5 s here) are checked numerically against torch in
    tests/test_stacked.py (whole-stack products of nn.LSTM(proj_size=2))."""
    cell = projected("lstm")
    sizes = {n: 2, m: 1, p: 1}
    step, leaves = _explicit(cell, sizes)
    block = cell.input_jacobian()["c"]
    _equal(explicit(block, leaves, sizes), leaves[step.new["c"].name].jacobian(list(leaves[step.x.name])))
    for (out, inp), block in cell.jacobian().blocks.items():
        if (out, inp) == ("h", "h"):
            continue
        oracle = leaves[step.new[out].name].jacobian(list(leaves[step.prev[inp].name]))
        _equal(explicit(block, leaves, sizes), oracle)
    assert cell.jacobian()[("h", "h")].shape == (p, p) and cell.jacobian()[("c", "h")].shape == (n, p)


def test_the_criterion_rejects_a_wrong_input_jacobian():
    cell = CELLS["tanh-rnn"]
    sizes = {n: 1, m: 1}
    step, leaves = _explicit(cell, sizes)
    G = explicit(cell.input_jacobian()["h"], leaves, sizes)
    R = leaves[step.new["h"].name].jacobian(list(leaves[step.x.name]))
    wrong = G.xreplace({sp.Symbol("U[0,0]", real=True): sp.Symbol("W[0,0]", real=True)})
    assert wrong != G
    with pytest.raises(AssertionError):
        _equal(wrong, R)
