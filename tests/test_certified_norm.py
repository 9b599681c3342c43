"""The default spectral norm against numpy.linalg.svd at every k (issue 8).

Oracle: the products P_k = J_T ⋯ J_{k+1} are multiplied here, with NumPy, from the step
Jacobians (themselves checked against PyTorch autograd in test_jacobians_torch.py), and
numpy.linalg.svd gives σ_max of each block; the default path must agree to its stated tolerance
(relative 1e-10, i.e. ~4.3e-11 in log10; we allow 1e-9) at every k, every block.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradflow as gf
from gradflow._numeric.spectral import spectral_norm

TOL = 1e-9  # in log10


def _oracle(net, x, carousel=False):
    """log10 σ_max (full, cell_state) of ∂s_T/∂s_k for every k, from explicit products."""
    traj = net.unroll(x)
    T, n, N = traj.steps, net.hidden, net.state_size
    P = np.eye(N)[None]
    scale = 0.0
    full, cs = np.empty(T), np.empty(T)
    for k in range(T - 1, -1, -1):
        J = np.asarray(net.step_jacobian(traj, k + 1, truncated=carousel))
        P = P @ J
        f = np.linalg.norm(P)
        P, scale = P / f, scale + np.log10(f)
        full[k] = scale + np.log10(np.linalg.svd(P[0], compute_uv=False)[0])
        if N > n:
            c = P[0, n:, n:]
            cs[k] = scale + np.log10(np.linalg.svd(c, compute_uv=False)[0])
    return full, cs


def _check(net, x):
    flow = gf.gradient_flow(net, x, lyapunov=False, bound=False)
    full, cs = _oracle(net, x)
    np.testing.assert_allclose(flow.full.mean()["log10_norm_2"], full, rtol=0, atol=TOL)
    if flow.cell_state is not None:
        np.testing.assert_allclose(flow.cell_state.mean()["log10_norm_2"], cs, rtol=0, atol=TOL)


@pytest.mark.parametrize("cell,n,T,seed", [
    ("tanh-rnn", 9, 30, 0), ("tanh-rnn", 16, 30, 1), ("tanh-rnn", 32, 20, 2), ("tanh-rnn", 256, 3, 3),
    ("lstm", 9, 25, 4), ("lstm", 16, 20, 5), ("lstm", 32, 12, 6), ("lstm", 64, 4, 7),
    ("gru", 9, 25, 8), ("gru", 32, 12, 9), ("lstm-1997", 16, 20, 10), ("relu-rnn", 16, 20, 11),
    ("sigmoid-rnn", 9, 20, 12), ("residual-rnn", 16, 20, 13), ("gru-cho", 16, 15, 14), ("irnn", 9, 20, 15),
])
def test_default_norm_matches_svd_every_k(cell, n, T, seed):
    net = gf.network(cell, n, 4, seed=seed, forget_bias=1.0 if cell == "lstm" else None)
    _check(net, gf.random_inputs(T, 4, seed=seed))


@pytest.mark.parametrize("n,T", [(9, 40), (32, 40)])
def test_carousel_is_max_abs_of_the_forget_product(n, T):
    """The carousel ∏ diag(f_j): its norm is max_i |∏_j f_j,i|, f recomputed here in NumPy."""
    net = gf.network("lstm", n, 4, seed=n, forget_bias=1.0)
    x = gf.random_inputs(T, 4, seed=n)
    flow = gf.gradient_flow(net, x, carousel=True, lyapunov=False)
    w = {k: np.asarray(v) for k, v in net.weights.arrays.items()}
    h, c = np.zeros(n), np.zeros(n)
    logf = []
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    for t in range(T):
        xt = np.asarray(x)[t, 0]
        pre = {g: w[f"W_{{{g}}}"] @ h + w[f"U_{{{g}}}"] @ xt + w[f"b_{{{g}}}"] for g in "ifgo"}
        i, f, g, o = sig(pre["i"]), sig(pre["f"]), np.tanh(pre["g"]), sig(pre["o"])
        c = f * c + i * g
        h = o * np.tanh(c)
        logf.append(np.log10(f))
    logf = np.array(logf)
    want = [np.max(logf[k:].sum(axis=0)) for k in range(T)]
    np.testing.assert_allclose(flow.carousel.mean()["log10_norm_2"], want, rtol=0, atol=1e-10)


def test_readme_carousel_example_default_agrees_with_svd():
    """`gradflow flow lstm --hidden 64 --input 8 --steps 200 --forget-bias 1 --carousel`: default
    and `--spectral svd` agree to 1e-9 at every k (on main they differed by up to 0.6 decades)."""
    net = gf.network("lstm", 64, 8, forget_bias=1.0, seed=0)
    x = gf.random_inputs(200, 8, seed=0)
    traj = net.unroll(x)
    from gradflow._numeric.flow import sweep

    n = 64
    g = np.zeros((1, 128))
    blocks = {"cell_state": (slice(n, 2 * n), slice(n, 2 * n))}
    a = sweep(net, traj, g, truncated=True, blocks=blocks)["cell_state"].log10_norm_2[0]
    b = sweep(net, traj, g, truncated=True, blocks=blocks, spectral="svd")["cell_state"].log10_norm_2[0]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


def test_nearly_diagonal_lstm_product():
    """An LSTM with recurrent weights scaled by 1e-6: the product is nearly diagonal."""
    torch.manual_seed(0)
    m = nn.LSTM(4, 16).double()
    with torch.no_grad():
        m.weight_hh_l0.mul_(1e-6)
    net = gf.network("lstm", weights=m)
    _check(net, gf.random_inputs(30, 4, seed=3))


def _with_spectrum(s, seed):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((len(s), len(s))))
    V, _ = np.linalg.qr(rng.standard_normal((len(s), len(s))))
    return (U * np.asarray(s)) @ V.T


@pytest.mark.parametrize("s", [
    [1.0] * 5 + [0.5] * 27,                                  # repeated top value
    [1.0, 1 - 1e-8, 1 - 2e-8] + list(np.linspace(0.9, 0.1, 29)),  # clustered top values
    [1.0] * 32,                                              # all equal (orthogonal)
    list(np.linspace(1, 0.95, 64)),                          # flat spectrum
    [3.0, 3.0 * (1 - 1e-12)] + [1e-3] * 30,                  # a gap far below tol
])
def test_clustered_and_repeated_top_values(s):
    P = np.stack([_with_spectrum(s, 0), _with_spectrum(s, 1)])
    sig, _ = spectral_norm(P)
    ref = np.array([np.linalg.svd(p, compute_uv=False)[0] for p in P])
    np.testing.assert_allclose(sig, ref, rtol=2e-10)
    # a start orthogonal to the top singular vectors: the bound must refuse, the SVD decides
    Ut = np.linalg.svd(P[0])[0]
    sig, _ = spectral_norm(P[:1], Ut[None, :, -8:], rank=8)
    np.testing.assert_allclose(sig, ref[:1], rtol=2e-10)


def test_trained_on_digits():
    """Weights of an LSTM trained here on scikit-learn's digits (rows of the 8×8 image as steps)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X[:150] / 16.0).reshape(-1, 8, 8).transpose(0, 1).double()  # (T=8, B, 8)
    y = torch.tensor(y[:150])
    torch.manual_seed(0)
    lstm, head = nn.LSTM(8, 16).double(), nn.Linear(16, 10).double()
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=0.05)
    for _ in range(12):
        opt.zero_grad()
        out, _ = lstm(X)
        loss = nn.functional.cross_entropy(head(out[-1]), y)
        loss.backward()
        opt.step()
    assert loss.item() < 2.0  # it learned something (2.3 at the start)
    net = gf.network("lstm", weights=lstm)
    for b in range(3):
        _check(net, X[:, b, :].numpy())
    # longer sequences: the digits repeated
    _check(net, np.concatenate([X[:, 5, :].numpy()] * 4))
