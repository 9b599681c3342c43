"""The numeric engine against finite differences and known physics.

Oracles: central finite differences of the forward map (NumPy, ``Network.unroll`` forward only),
closed-form spectra of linear recurrences, the Pascanu bound computed here from σ_max(W) with
NumPy, the constant error carousel of the 1997 LSTM, forget-gate products computed here from the
weights, and float64 as the reference for float32. Never a value the engine produced itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sympy import MatMul

from gradflow import Cell
from gradflow._numeric.flow import Network, gradient_flow, loss_gradient, network, random_inputs, sweep
from gradflow._numeric.weights import Weights

# a linear RNN h_t = W h_{t−1}, defined here with the public builder
LINEAR = Cell("linear", "linear RNN", ("h",), lambda r: {"h": MatMul(r.W(), r.prev["h"])})


def linear_net(W) -> Network:
    W = np.asarray(W, dtype=np.float64)
    return Network(Weights(LINEAR, W.shape[0], 1, {"W": W}))


def split(net: Network, s):
    n = net.hidden
    return {name: s[:, i * n:(i + 1) * n] for i, name in enumerate(net.cell.states)}


def forward(net: Network, s, xs):
    """s_T of the network run on xs (T', B, m) from s (B, N): the forward map only."""
    return net.unroll(xs, split(net, s)).states[-1]


def fd_jacobian(net: Network, s, xs, step: float = 1e-6):
    """Central differences ∂forward/∂s, (B, N, N), one column per state coordinate."""
    B, N = s.shape
    J = np.zeros((B, N, N))
    for j in range(N):
        e = np.zeros(N)
        e[j] = step
        J[:, :, j] = (forward(net, s + e, xs) - forward(net, s - e, xs)) / (2 * step)
    return J


def rel_err(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def products(net: Network, traj) -> dict[int, np.ndarray]:
    out = {}

    def each(k, P, logscale):
        out[k] = np.array(P) * (10.0 ** np.asarray(logscale))[:, None, None]

    sweep(net, traj, loss_gradient(net, traj), blocks={}, each=each)
    return out


# -- finite differences -----------------------------------------------------------------------
FD_CELLS = ["tanh-rnn", "sigmoid-rnn", "residual-rnn", "lstm", "lstm-1997", "gru", "gru-cho"]


@pytest.mark.parametrize("name", FD_CELLS)
def test_step_jacobian_and_products_match_finite_differences(name):
    n, m, T, B = 3, 2, 6, 2
    net = network(name, n, m, init="gaussian", gain=1.5, seed=7)
    x = random_inputs(T, m, batch=B, seed=3)
    N = net.state_size
    s0 = np.random.default_rng(1).standard_normal((B, N)) * 0.5
    traj = net.unroll(x, split(net, s0))
    for t in range(1, T + 1):
        fd = fd_jacobian(net, traj.states[t - 1], x[t - 1:t])
        assert rel_err(net.step_jacobian(traj, t), fd) <= 1e-6, (name, t)
    P = products(net, traj)
    for k in (0, 2, T - 1):  # ∂s_T/∂s_k over T − k steps
        fd = fd_jacobian(net, traj.states[k], x[k:])
        assert rel_err(P[k], fd) <= 1e-6, (name, k)


def test_relu_step_jacobian_matches_finite_differences_away_from_kinks():
    net = network("relu-rnn", 4, 2, init="gaussian", gain=1.2, seed=2)
    x = random_inputs(5, 2, batch=2, seed=4)
    traj = net.unroll(x, {"h": np.full(4, 0.4)})
    W, U, b = (net.weights.arrays[k] for k in ("W", "U", "b"))
    for t in range(1, 6):
        a = traj.states[t - 1] @ W.T + x[t - 1] @ U.T + b
        assert np.min(np.abs(a)) > 1e-4  # a 1e-6 step never crosses a kink
        fd = fd_jacobian(net, traj.states[t - 1], x[t - 1:t])
        np.testing.assert_allclose(net.step_jacobian(traj, t), fd, rtol=0, atol=1e-8)


# -- Lyapunov exponents of a linear recurrence ------------------------------------------------------
LAMBDAS = np.array([1.3, -0.9, 0.6, -0.35, 0.15])  # distinct moduli, signs mixed


def test_lyapunov_exponents_of_triangular_linear_rnn_are_exact():
    """For an upper-triangular W the QR recursion J Q = Q R keeps Q = I (up to signs) and
    R_ii = |W_ii| at every step: the exponents are log|W_ii| exactly, at any T."""
    diag = [0.5, -1.2, 0.9, 2.0, -0.1]
    W = np.triu(np.random.default_rng(5).standard_normal((5, 5)))
    np.fill_diagonal(W, diag)
    flow = gradient_flow(linear_net(W), np.zeros((7, 1)))
    np.testing.assert_allclose(flow.lyapunov, np.sort(np.log(np.abs(diag)))[::-1], rtol=0, atol=1e-12)


def test_lyapunov_exponents_of_symmetric_linear_rnn():
    """W = Q Λ Qᵀ. From Q_0 = I the finite-T exponents are
        λ_i(T) = log|Λ_i| + c_i / T + O(ρ^T),
    c_i = log of a ratio of minors of the eigenvector matrix (independent of T), ρ the largest
    ratio of consecutive |Λ| (0.69 here): so |λ_i(400) − log|Λ_i|| ≲ max|c_i| / 400 (≈ 0.01;
    the c_i of this Q are below 4), and Richardson extrapolation 2 λ(400) − λ(200) removes the
    1/T term, leaving ρ^400 ~ 1e-65: it must equal log|Λ_i| to rounding."""
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((5, 5)))
    W = Q @ np.diag(LAMBDAS) @ Q.T
    exact = np.sort(np.log(np.abs(LAMBDAS)))[::-1]
    net = linear_net(W)
    l200 = gradient_flow(net, np.zeros((200, 1)), bound=False).lyapunov
    l400 = gradient_flow(net, np.zeros((400, 1)), bound=False).lyapunov
    assert np.all(np.diff(l400) <= 0)  # descending
    np.testing.assert_allclose(l400, exact, rtol=0, atol=1e-2)
    np.testing.assert_allclose(2 * l400 - l200, exact, rtol=0, atol=1e-9)
    # and the 1/T term is really there (the extrapolation test is not vacuous)
    assert np.max(np.abs(l400 - exact)) > 1e-4


def test_linear_normal_rnn_norm_is_sigma_max_power():
    """For a normal W, ‖W^{T−k}‖₂ = σ_max(W)^{T−k} exactly; the bound is then attained."""
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((5, 5)))
    W = Q @ np.diag(LAMBDAS) @ Q.T
    T = 40
    flow = gradient_flow(linear_net(W), np.zeros((T, 1)), lyapunov=False)
    want = (T - np.arange(T)) * np.log10(1.3)
    np.testing.assert_allclose(flow.full.log10_norm_2[0], want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(flow.bound, want, rtol=0, atol=1e-9)


# -- decay and the Pascanu bound --------------------------------------------------------------------
@pytest.mark.parametrize("spectral", ["power", "svd"])
def test_orthogonal_half_gain_tanh_decays_at_least_as_half_power(spectral):
    T = 12
    net = network("tanh-rnn", 5, 3, init="orthogonal", gain=0.5, seed=1)
    W = net.weights.arrays["W"]
    np.testing.assert_allclose(np.linalg.svd(W, compute_uv=False), 0.5, rtol=0, atol=1e-12)
    flow = gradient_flow(net, random_inputs(T, 3, batch=3, seed=2), spectral=spectral, lyapunov=False)
    limit = (T - np.arange(T)) * math.log10(0.5)
    assert np.all(flow.full.log10_norm_2 <= limit + 1e-12)
    # tanh' < 1 on non-zero pre-activations: strictly faster than 0.5^(T−k) after the first step
    assert np.all(flow.full.log10_norm_2[:, :-1] < limit[:-1])


@pytest.mark.parametrize("gain", [0.5, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("name,gamma", [("tanh-rnn", 1.0), ("sigmoid-rnn", 0.25), ("relu-rnn", 1.0)])
def test_curve_never_exceeds_pascanu_bound(name, gamma, gain):
    T, n = 12, 5
    net = network(name, n, 3, init="gaussian", gain=gain, seed=4)
    flow = gradient_flow(net, random_inputs(T, 3, batch=3, seed=5), spectral="svd", lyapunov=False)
    sigma = np.linalg.norm(net.weights.arrays["W"], 2)
    want = (T - np.arange(T)) * np.log10(gamma * sigma)
    np.testing.assert_allclose(flow.bound, want, rtol=1e-12, atol=1e-12)
    if gain >= 2.0:
        assert sigma > 1
    finite = np.isfinite(flow.full.log10_norm_2)
    assert finite[:, -1].all()
    assert np.all(flow.full.log10_norm_2[finite] <= np.broadcast_to(want, (3, T))[finite] + 1e-12)


def test_residual_rnn_bound_is_one_plus_sigma_max():
    T = 10
    net = network("residual-rnn", 4, 2, init="gaussian", gain=1.0, seed=3)
    flow = gradient_flow(net, random_inputs(T, 2, batch=2, seed=1), spectral="svd", lyapunov=False)
    want = (T - np.arange(T)) * np.log10(1 + np.linalg.norm(net.weights.arrays["W"], 2))
    np.testing.assert_allclose(flow.bound, want, rtol=1e-12, atol=1e-12)
    assert np.all(flow.full.log10_norm_2 <= want + 1e-12)


# -- the LSTM's cell state ---------------------------------------------------------------------------
def test_lstm1997_carousel_is_exactly_the_identity():
    n, T, B = 4, 9, 3
    net = network("lstm-1997", n, 2, init="gaussian", gain=1.5, seed=8)
    x = random_inputs(T, 2, batch=B, seed=9)
    traj = net.unroll(x)
    I = np.eye(n)
    Wo, Uo, bo = (net.weights.arrays[k] for k in ("W_{o}", "U_{o}", "b_{o}"))
    for t in range(1, T + 1):
        J = net.step_jacobian(traj, t, truncated=True)
        assert np.array_equal(J[:, n:, n:], np.broadcast_to(I, (B, n, n)))  # c → c
        assert np.all(J[:, :, :n] == 0)  # every path through h_{t−1} is cut
        # h ← c: ∂h_t/∂c_{t−1} = diag(o_t ⊙ tanh'(c_t)), c_t = c_{t−1} + i ⊙ g (no forget gate)
        h_prev = traj.states[t - 1][:, :n]
        o = 1 / (1 + np.exp(-(h_prev @ Wo.T + x[t - 1] @ Uo.T + bo)))
        c = traj.states[t][:, n:]
        want = o * (1 - np.tanh(c) ** 2)
        np.testing.assert_allclose(np.diagonal(J[:, :n, n:], axis1=1, axis2=2), want, rtol=1e-13, atol=1e-15)
        assert np.count_nonzero(J[:, :n, n:] - np.eye(n) * J[:, :n, n:]) == 0  # diagonal
    flow = gradient_flow(net, x, carousel=True, lyapunov=False)
    assert flow.carousel.log10_norm_2.shape == (B, T)
    np.testing.assert_allclose(flow.carousel.log10_norm_2, 0.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(flow.carousel.log10_norm_fro, math.log10(math.sqrt(n)), rtol=0, atol=1e-12)
    # the full c → c block, with the gates' feedback, is not the identity
    assert np.max(np.abs(flow.cell_state.log10_norm_2)) > 1e-3


@pytest.mark.parametrize("spectral", ["svd", "power"])
def test_lstm_carousel_is_product_of_forget_gates(spectral):
    """∂c_T/∂c_k along the carousel = diag(∏_{j=k+1}^T f_j), f from the weights (NumPy here):
    ‖·‖₂ = max_i ∏ f, ‖·‖_F = √(Σ_i (∏ f)²). The diagonal products' largest entry changes
    hands along k (here between k = 5 and k = 4 of the second sequence)."""
    n, T, B = 4, 10, 2
    net = network("lstm", n, 3, seed=6, forget_bias=1.0)
    x = random_inputs(T, 3, batch=B, seed=2)
    traj = net.unroll(x)
    Wf, Uf, bf = (net.weights.arrays[k] for k in ("W_{f}", "U_{f}", "b_{f}"))
    f = np.stack([1 / (1 + np.exp(-(traj.states[t - 1][:, :n] @ Wf.T + x[t - 1] @ Uf.T + bf)))
                  for t in range(1, T + 1)])  # f[t−1] = f_t, (T, B, n)
    flow = gradient_flow(net, x, carousel=True, lyapunov=False, spectral=spectral)
    for k in range(T):
        prod = np.prod(f[k:], axis=0)  # ∏_{j=k+1}^{T} f_j
        np.testing.assert_allclose(flow.carousel.log10_norm_2[:, k], np.log10(prod.max(axis=1)),
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(flow.carousel.log10_norm_fro[:, k],
                                   np.log10(np.sqrt((prod ** 2).sum(axis=1))), rtol=0, atol=1e-12)


def test_forget_bias_keeps_cell_state_gradient_alive():
    """Same n = 4, T = 50, PyTorch-default init: the LSTM with b_f = 5 (f ≈ σ(5) ≈ 0.993, so
    ∏ f ≈ 0.72 over 50 steps) keeps ‖∂c_T/∂c_0‖₂ of order 1 (measured 10^0.007…10^0.84),
    the tanh RNN's ‖∂h_T/∂h_0‖₂ is 10^−14…10^−29 (σ_max(W) ≈ 0.6–0.8 times tanh' < 1 per step).
    Measured gap: at least 13.4 orders of magnitude over seeds 0–2 × 4 sequences; we ask ≥ 10."""
    n, T, m = 4, 50, 3
    for seed in range(3):
        x = random_inputs(T, m, batch=4, seed=seed)
        lstm = gradient_flow(network("lstm", n, m, seed=seed, forget_bias=5.0), x, lyapunov=False)
        rnn = gradient_flow(network("tanh-rnn", n, m, seed=seed), x, lyapunov=False)
        c0 = lstm.cell_state.log10_norm_2[:, 0]
        h0 = rnn.full.log10_norm_2[:, 0]
        assert np.all(c0 > -1), c0
        assert np.all(h0 < -10), h0
        assert np.all(c0 - h0 >= 10), (seed, c0 - h0)


def test_spectral_norm_matches_svd():
    from gradflow._numeric.spectral import spectral_norm

    P = np.random.default_rng(0).standard_normal((4, 5, 5))
    sigma, _ = spectral_norm(P)
    np.testing.assert_allclose(sigma, np.linalg.svd(P, compute_uv=False)[:, 0], rtol=1e-10)


def test_spectral_norm_warm_start_nearly_orthogonal_to_top_singular_vector():
    """The backward sweep warm-starts power iteration with the previous k's vector. When the
    top singular direction changes hands (diagonal blocks such as the LSTM carousel ∏ diag(f_j):
    the largest entry moves to another unit) that start is almost orthogonal to the new top
    singular vector. The result must still be σ_max (the docstring promises σ_max, with an SVD
    fallback). Oracle: the matrix diag(1, 2), whose σ_max is 2."""
    from gradflow._numeric.spectral import spectral_norm

    P = np.diag([1.0, 2.0])[None]  # symmetric: its left and right singular vectors agree
    sigma, _ = spectral_norm(P, np.array([[1.0, 1e-20]]))
    np.testing.assert_allclose(sigma, [2.0], rtol=1e-10)


# -- tiny norms ---------------------------------------------------------------------------------------
def test_linear_half_identity_norms_are_exact_over_2000_steps():
    n, T = 4, 2000
    net = linear_net(0.5 * np.eye(n))
    flow = gradient_flow(net, np.zeros((T, 1)), lyapunov=False)
    exact = (T - np.arange(T)) * math.log10(0.5)  # ‖(0.5 I)^{T−k}‖₂ = 0.5^{T−k}
    assert exact[0] < -600
    np.testing.assert_allclose(flow.full.log10_norm_2[0], exact, rtol=0, atol=1e-9)
    root_n = math.log10(math.sqrt(n))
    np.testing.assert_allclose(flow.full.log10_norm_fro[0], exact + root_n, rtol=0, atol=1e-9)
    # L = Σ h_T: ∂L/∂h_k = 1ᵀ (0.5 I)^{T−k}, norm √n · 0.5^{T−k}
    np.testing.assert_allclose(flow.full.log10_grad_norm[0], exact + root_n, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tanh_rnn_tiny_norms_stay_finite(dtype):
    """T = 2000, σ(W) = 0.3: the true norms are below 10^−1000, far under the smallest double."""
    T = 2000
    net = network("tanh-rnn", 4, 3, init="orthogonal", gain=0.3, seed=0, dtype=dtype)
    flow = gradient_flow(net, random_inputs(T, 3, seed=0), lyapunov=False)
    for curve in (flow.full.log10_norm_2, flow.full.log10_norm_fro, flow.full.log10_grad_norm):
        assert np.all(np.isfinite(curve))
        assert curve[0, 0] < -300
        assert np.all(np.diff(curve[0]) > 0)  # every step back multiplies by a factor < 1
    limit = (T - np.arange(T)) * math.log10(0.3)
    tol = 1e-9 if dtype == np.float64 else 1e-3
    assert np.all(flow.full.log10_norm_2[0] <= limit + tol)


# -- float32 on request ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tanh-rnn", "lstm", "gru"])
def test_float32_runs_and_agrees_with_float64(name):
    T, B = 10, 3
    x = random_inputs(T, 3, batch=B, seed=1)
    n64 = network(name, 4, 3, seed=2)
    n32 = network(name, 4, 3, seed=2, dtype=np.float32)
    assert all(a.dtype == np.float32 for a in n32.weights.arrays.values())
    traj = n32.unroll(x)
    assert traj.states[-1].dtype == np.float32
    assert n32.step_jacobian(traj, T).dtype == np.float32
    f64, f32 = gradient_flow(n64, x), gradient_flow(n32, x)
    for key in ("log10_norm_2", "log10_norm_fro", "log10_grad_norm"):
        a, b = getattr(f64.full, key), getattr(f32.full, key)
        assert np.all(np.isfinite(b))
        assert np.max(np.abs(10 ** (b - a) - 1)) <= 1e-4, key
    np.testing.assert_allclose(f32.lyapunov, f64.lyapunov, rtol=0, atol=1e-4)
