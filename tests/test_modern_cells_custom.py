"""The public "your own cell" API: a cell gradflow does not ship, defined in a few lines.

The minimalRNN (Chen 2017) of docs/your-cell.md: derive → count → flow, each against an
independent oracle (SymPy element-wise Jacobian, torch autograd of a step written here, a
count by hand), and name registration.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch
from _oracle import abstract_transcendentals, entries_of, explicit
from sympy import MatAdd, MatMul

import gradflow as gf


def _minimal_rnn(r):
    h = r.prev["h"]
    z = r.let("z", gf.tanh(MatAdd(MatMul(r.U("z"), r.x), r.b("z"))))
    u = r.let("u", gf.sigmoid(MatAdd(MatMul(r.W("u"), h), MatMul(r.W("z", label="V_{u}"), z), r.b("u"))))
    return {"h": MatAdd(gf.hadamard(u, h), gf.hadamard(gf.one_minus(u), z))}


@pytest.fixture(scope="module")
def cell():
    c = gf.make_cell("minimal-rnn-test", _minimal_rnn, title="minimalRNN (Chen 2017)")
    assert "minimal-rnn-test" not in gf.CELLS  # not registered unless asked
    return c


@pytest.mark.parametrize("N", [1, 2])
def test_derived_block_equals_sympy_elementwise_jacobian(cell, N):
    step = cell.recorded
    sizes = {gf.n: N, gf.m: 2}
    leaves = {p.symbol.name: entries_of(p.symbol, sizes) for p in step.params}
    leaves.update({s.name: entries_of(s, sizes) for s in step.prev.values()})
    leaves[step.x.name] = entries_of(step.x, sizes)
    for symbol, defn in step.definitions.items():
        leaves[symbol.name] = explicit(defn, leaves, sizes)
    ours = explicit(cell.jacobian()["h", "h"], leaves, sizes)
    oracle = leaves[step.new["h"].name].jacobian(list(leaves[step.prev["h"].name]))
    for a, b in zip(ours, oracle, strict=True):
        assert sp.cancel(sp.together(abstract_transcendentals(a - b))) == 0


def test_flow_and_jacobian_match_torch(cell):
    N, M, T = 4, 3, 8
    net = gf.network(cell, N, M, seed=2)
    P = {k: torch.as_tensor(np.asarray(v)) for k, v in net.weights.arrays.items()}

    def F(h, x):  # Chen (2017): z = tanh(U_z x + b_z), u = σ(W_u h + V_u z + b_u)
        z = torch.tanh(P["U_{z}"] @ x + P["b_{z}"])
        u = torch.sigmoid(P["W_{u}"] @ h + P["V_{u}"] @ z + P["b_{u}"])
        return u * h + (1 - u) * z

    x = gf.random_inputs(T, M, seed=3)
    traj = net.unroll(x)
    h = torch.zeros(N, dtype=torch.float64)
    prod = torch.eye(N, dtype=torch.float64)
    for t in range(1, T + 1):
        xt = torch.as_tensor(x[t - 1, 0])
        J = torch.func.jacrev(F)(h, xt)
        assert np.abs(np.asarray(net.step_jacobian(traj, t))[0] - J.numpy()).max() < 1e-12
        h, prod = F(h, xt), J @ prod
    flow = gf.gradient_flow(net, x, lyapunov=False)
    assert 10 ** flow.full.mean()["log10_norm_2"][0] == pytest.approx(
        torch.linalg.matrix_norm(prod, ord=2).item(), rel=1e-9)


def test_count_by_hand(cell):
    n, m = 128, 28  # U_z (n×m), b_z, W_u (n×n), V_u (n×n), b_u
    assert gf.count_params(cell, n, m).total == n * m + n + 2 * n * n + n


def test_register_and_refusals(cell):
    registered = gf.make_cell("minimal-rnn-reg", _minimal_rnn, register=True)
    try:
        assert gf.get_cell("minimal-rnn-reg") is registered
        with pytest.raises(gf.GradflowError):
            gf.register_cell(registered)  # the name is taken
    finally:
        gf.CELLS.pop("minimal-rnn-reg", None)
    with pytest.raises(gf.GradflowError):
        gf.make_cell("two words", _minimal_rnn)

    def outer(r):  # h_{t−1} inside a matrix factor: no rule, refused (not guessed)
        h = r.prev["h"]
        return {"h": MatMul(h, h.T, r.b())}

    with pytest.raises(gf.GradflowError):
        gf.make_cell("outer", outer)


def test_decorator_with_constants():
    @gf.define_cell("leaky-test")
    def leaky(r):
        lam = r.const("lambda", 0.9)
        return {"h": MatAdd(MatMul(lam, r.prev["h"]), MatMul(1 - lam, gf.tanh(r.let("a", r.affine()))))}

    net = gf.network(leaky, 3, 2, seed=0)
    traj = net.unroll(gf.random_inputs(1, 2))
    J = np.asarray(net.step_jacobian(traj, 1))[0]
    a = np.asarray(traj.named[0][next(iter(leaky.recorded.definitions))])[0]
    W = np.asarray(net.weights.arrays["W"])
    assert np.allclose(J, 0.9 * np.eye(3) + 0.1 * (1 - np.tanh(a) ** 2)[:, None] * W, atol=1e-15)


@pytest.mark.parametrize("fname", ["exp", "cos", "sin"])
def test_new_activations_chain_rule(fname):
    """The element-wise exp, cos, sin the modern cells add: d φ(W h)/dh against SymPy, n = 2."""
    from sympy import MatrixSymbol

    from gradflow import Elementwise

    h, W = MatrixSymbol("h", gf.n, 1), MatrixSymbol("W", gf.n, gf.n)
    expr = Elementwise(fname, MatMul(W, h))
    sizes = {gf.n: 2}
    leaves = {"h": entries_of(h, sizes), "W": entries_of(W, sizes)}
    ours = explicit(gf.jacobian(expr, h), leaves, sizes)
    fn = {"exp": sp.exp, "cos": sp.cos, "sin": sp.sin}[fname]
    oracle = (leaves["W"] * leaves["h"]).applyfunc(fn).jacobian(list(leaves["h"]))
    assert all(sp.simplify(a - b) == 0 for a, b in zip(ours, oracle, strict=True))
