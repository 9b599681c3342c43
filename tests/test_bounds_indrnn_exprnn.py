"""The one-step bound derived for IndRNN (an element-wise recurrent weight) and expRNN (exp(A − Aᵀ)).

Oracles, written out here from the papers' equations:
* IndRNN (Li et al. 2018): h_t = relu(U x_t + u ⊙ h_{t−1} + b), so J_t = diag(H(a_t) ⊙ u); the
  product J_T ⋯ J_{k+1} is formed densely in NumPy and its 2-norm taken by SVD.
* expRNN (Lezcano-Casado & Martínez-Rubio 2019): h_t = modReLU(exp(A − Aᵀ) h_{t−1} + U x_t),
  modReLU(z) = sign(z) relu(|z| + b); ∂h_T/∂h_k by PyTorch autograd (torch.linalg.matrix_exp).
* The bounds themselves: max_i |u_i|^{T−k} (relu: γ = 1) and 1, and issue 11's identity
  |u_i| ≤ 2^{1/T} ⇒ ‖∂h_T/∂h_k‖₂ ≤ 2^{(T−k)/T} ≤ 2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

import gradflow as gf
from gradflow._symbolic.many_steps import SigmaMax, sigma_max
from gradflow._symbolic.nodes import Diag

N, M, T = 5, 3, 12


def _net(name, **arrays):
    net = gf.network(name, N, M, seed=2)
    return gf.Network(gf.Weights(net.cell, N, M, dict(net.weights.arrays, **arrays)))


def test_bounds_are_derived_from_the_jacobian():
    ind = gf.pascanu_bound("indrnn")
    u = gf.get_cell("indrnn").recorded.params[1].symbol
    assert ind.rate == SigmaMax(Diag(u)) and ind.terms == ((1, Diag(u)),)
    assert r"\max_i |u_i|" in ind.latex()
    exp = gf.pascanu_bound("exprnn")
    assert exp.rate == 1 and len(exp.terms) == 1 and exp.terms[0][0] == 1
    A = sp.MatrixSymbol("A", 3, 3)
    from gradflow._symbolic.nodes import MatrixExp
    assert sigma_max(MatrixExp(A - A.T)) == 1  # skew-symmetric exponent: orthogonal
    assert isinstance(sigma_max(MatrixExp(A + A.T)), SigmaMax)  # symmetric: no claim


def _indrnn_products(arrays, x):
    """log10 ‖J_T ⋯ J_{k+1}‖₂ for k = 0…T−1, batch entry 0, from the paper's equations."""
    U, u, b = (np.asarray(arrays[k], dtype=np.float64) for k in ("U", "u", "b"))
    h, J = np.zeros(N), []
    for t in range(x.shape[0]):
        a = U @ x[t, 0] + u * h + b
        h = np.maximum(a, 0.0)
        J.append(np.diag((a > 0) * u))
    out, P = [], np.eye(N)
    for k in range(x.shape[0] - 1, -1, -1):
        P = P @ J[k]
        s = np.linalg.svd(P, compute_uv=False)[0]
        out.append(-math.inf if s == 0 else math.log10(s))
    return np.array(out[::-1])


@pytest.mark.parametrize("u, b, scale", [
    (np.linspace(-1.3, 1.3, N), np.zeros(N), 1.0),          # units switch on and off, some |u| > 1
    (np.full(N, 3.0) * np.array([1, -1, 1, -1, 1]), np.full(N, 40.0), 30.0),  # saturated: every unit on
])
def test_indrnn_measured_norm_never_exceeds_the_bound(u, b, scale):
    net = _net("indrnn", u=u, b=b)
    x = gf.random_inputs(T, M, seed=5) * scale
    flow = gf.gradient_flow(net, x, lyapunov=False)
    want = _indrnn_products(net.weights.arrays, np.asarray(x)[:, None, :] if np.ndim(x) == 2 else x)
    got = np.asarray(flow.full.log10_norm_2)[0]
    fin = np.isfinite(want)
    assert fin.any() and np.array_equal(fin, np.isfinite(got))
    assert np.abs(got[fin] - want[fin]).max() < 1e-10
    bound = (T - np.arange(T)) * np.log10(np.abs(u).max())  # (γ max_i |u_i|)^{T−k}, γ = 1
    np.testing.assert_allclose(flow.bound, bound, rtol=0, atol=1e-12)
    assert np.all(want[fin] <= bound[fin] + 1e-12)
    if scale > 1:  # every unit on: the bound is attained, the product is diag(u)^{T−k}
        np.testing.assert_allclose(want, bound, rtol=0, atol=1e-10)


def test_indrnn_issue_11_identity():
    """|u_i| ≤ 2^{1/T}: ‖∂h_T/∂h_k‖₂ ≤ 2^{(T−k)/T}, at most 2 however long the sequence."""
    u = 2.0 ** (1 / T) * np.array([1.0, -1.0, 0.9, -0.5, 1.0])
    net = _net("indrnn", u=u, b=np.full(N, 60.0))  # every unit on: the bound is reached at k = 0
    x = gf.random_inputs(T, M, seed=1)
    flow = gf.gradient_flow(net, x, lyapunov=False)
    identity = (T - np.arange(T)) / T * math.log10(2.0)
    assert np.all(np.asarray(flow.bound) <= identity + 1e-12)
    got = np.asarray(flow.full.log10_norm_2)[0]
    assert np.all(got <= identity + 1e-12) and abs(got[0] - math.log10(2.0)) < 1e-12


def _exprnn_torch(arrays, x, bias):
    """log10 ‖∂h_T/∂h_k‖₂ for k = 0…T−1 by autograd through the written-out recurrence."""
    import torch

    A = torch.tensor(np.asarray(arrays["A"]), dtype=torch.float64)
    U = torch.tensor(np.asarray(arrays["U"]), dtype=torch.float64)
    b = torch.tensor(bias, dtype=torch.float64)
    W = torch.linalg.matrix_exp(A - A.T)
    X = torch.tensor(np.asarray(x).reshape(T, M), dtype=torch.float64)

    def run(h, start):
        for t in range(start, T):
            z = W @ h + U @ X[t]
            h = torch.sign(z) * torch.relu(torch.abs(z) + b)
        return h

    hs = [torch.zeros(N, dtype=torch.float64)]
    for t in range(T):  # h_0 … h_{T−1}: the points the Jacobians are taken at
        z = W @ hs[-1] + U @ X[t]
        hs.append(torch.sign(z) * torch.relu(torch.abs(z) + b))
    out = []
    for k in range(T):
        J = torch.autograd.functional.jacobian(lambda h, k=k: run(h, k), hs[k])
        s = float(torch.linalg.matrix_norm(J, ord=2))
        out.append(-math.inf if s == 0 else math.log10(s))
    return np.array(out)


@pytest.mark.parametrize("a_scale, x_scale", [(1.0, 1.0), (20.0, 50.0)])  # random; large A and saturated inputs
def test_exprnn_bias_nonpositive_norm_at_most_one(a_scale, x_scale):
    rng = np.random.default_rng(7)
    bias = -np.abs(rng.standard_normal(N)) * 0.3
    bias[0] = 0.0  # b = 0 included: modReLU is then the identity on that unit
    net0 = gf.network("exprnn", N, M, seed=3)
    net = gf.Network(gf.Weights(net0.cell, N, M, dict(net0.weights.arrays, b=bias,
                                                      A=np.asarray(net0.weights.arrays["A"]) * a_scale)))
    x = gf.random_inputs(T, M, seed=4) * x_scale
    flow = gf.gradient_flow(net, x, lyapunov=False)
    assert np.array_equal(np.asarray(flow.bound), np.zeros(T))  # 1^{T−k}, exactly: log10 1 = 0
    want = _exprnn_torch(net.weights.arrays, x, bias)
    got = np.asarray(flow.full.log10_norm_2)[0]
    fin = np.isfinite(want)
    assert fin.any() and np.abs(got[fin] - want[fin]).max() < 1e-9
    assert np.all(want[fin] <= 1e-12) and np.all(got[np.isfinite(got)] <= 1e-12)


def test_a_flat_rate_is_not_called_growth_on_the_slides():
    """expRNN with b = 0: ‖W^{T−k}‖₂ = 1, its fitted rate +1e-16 is rounding, not growth."""
    from types import SimpleNamespace

    from gradflow._views.slides import _ranking

    cells = [SimpleNamespace(name=n) for n in ("exprnn", "tanh-rnn", "irnn")]
    runs = {"exprnn": SimpleNamespace(rate_full=2.2e-16), "tanh-rnn": SimpleNamespace(rate_full=-0.3),
            "irnn": SimpleNamespace(rate_full=0.02)}
    text = _ranking(SimpleNamespace(cells=cells, runs=runs))
    assert "Growing, not decaying: \\texttt{irnn}." in text and "exprnn" not in text
