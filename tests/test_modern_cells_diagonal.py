"""The O(T·n) diagonal path of gradient_flow against the dense engine and against closed forms.

For cells whose derived state Jacobian is diagonal (IndRNN, minGRU, minLSTM) ``gradient_flow``
multiplies no matrix. Oracles: the dense sweep with an SVD at every k (``structure="dense"``,
``spectral="svd"``) on small n, and products of the gates computed here in torch from the papers'
equations (minGRU: a_t = 1 − σ(U_z x_t + b_z)).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradflow as gf
from gradflow._numeric.diagonal import is_diagonal

DIAGONAL = ["indrnn", "mingru", "minlstm"]


def test_structure_is_read_off_the_derived_jacobian():
    assert all(is_diagonal(gf.get_cell(c)) for c in DIAGONAL)
    assert not any(is_diagonal(gf.get_cell(c)) for c in ("tanh-rnn", "lstm", "gru", "cornn",
                                                          "antisymmetric-rnn", "cifg"))


@pytest.mark.parametrize("name", DIAGONAL)
def test_diagonal_path_equals_dense_svd_sweep(name):
    net = gf.network(name, 6, 3, seed=4)
    if name == "indrnn":  # positive biases: most units stay on, the products are not all 0
        arrays = dict(net.weights.arrays, b=np.full(6, 1.5), u=np.linspace(-1.2, 1.2, 6))
        net = gf.Network(gf.Weights(net.cell, 6, 3, arrays))
    x = gf.random_inputs(25, 3, batch=2, seed=1)
    V = np.random.default_rng(0).standard_normal((4, 6))
    for output in (None, (V, np.zeros(4), np.array([1, 3]))):
        fast = gf.gradient_flow(net, x, output=output)
        dense = gf.gradient_flow(net, x, output=output, structure="dense", spectral="svd")
        for key in fast.full.FIELDS:
            a, b = np.asarray(fast.full[key]), np.asarray(dense.full[key])
            assert np.array_equal(np.isneginf(a), np.isneginf(b)), key
            fin = np.isfinite(b)
            assert np.abs(a[fin] - b[fin]).max() < 1e-11, key
        fin = np.isfinite(dense.lyapunov)
        assert fin.any() and np.array_equal(fin, np.isfinite(fast.lyapunov))
        assert np.abs(fast.lyapunov[fin] - dense.lyapunov[fin]).max() < 1e-11


def test_indrnn_units_switched_off_give_exact_zeros():
    net = gf.network("indrnn", 4, 2, seed=0)
    arrays = dict(net.weights.arrays, b=np.array([-50.0, 1.0, 1.0, 1.0]))  # unit 0 always off
    net = gf.Network(gf.Weights(net.cell, 4, 2, arrays))
    x = gf.random_inputs(10, 2) * 0.01
    fast = gf.gradient_flow(net, x)
    u = np.abs(np.asarray(arrays["u"]))
    want = [np.log10(np.max(u[1:] ** (10 - k))) for k in range(10)]
    assert np.allclose(fast.full.mean()["log10_norm_2"], want, rtol=1e-12)
    assert np.isneginf(fast.lyapunov[-1])


def test_long_horizon_against_gate_products():
    """T = 2000 (products far below the float range): log10 ‖P_k‖₂ = max_j Σ log10(1 − z)."""
    T, N, M = 2000, 8, 3
    net = gf.network("mingru", N, M, seed=5)
    x = gf.random_inputs(T, M, seed=6)
    U, b = (torch.as_tensor(np.asarray(net.weights.arrays[k])) for k in ("U_{z}", "b_{z}"))
    log_a = torch.log10(1 - torch.sigmoid(torch.as_tensor(x[:, 0]) @ U.T + b)).numpy()  # (T, N)
    suffix = np.cumsum(log_a[::-1], axis=0)[::-1]  # Σ_{s ≥ k+1} for k = 0..T−1
    fast = gf.gradient_flow(net, x, lyapunov=False).full.mean()["log10_norm_2"]
    assert fast[0] < -300  # far below float64's range: only log form can hold it
    assert np.allclose(fast, suffix.max(axis=1), rtol=0, atol=1e-9)


# --------------------------------------------------------------------------------------------
# chrono initialisation (Tallec & Ollivier 2018)
# --------------------------------------------------------------------------------------------
def test_chrono_init_sets_the_forget_time_scales():
    T_max, N = 100.0, 64
    w = gf.chrono_init(gf.init_weights("lstm", N, 2, seed=1), T_max, seed=3)
    b_f, b_i = np.asarray(w.arrays["b_{f}"]), np.asarray(w.arrays["b_{i}"])
    tau = 1 + np.exp(b_f)  # = 1 / (1 − σ(b_f))
    assert np.allclose(tau, 1 / (1 - 1 / (1 + np.exp(-b_f))), rtol=1e-12)
    assert tau.min() >= 2 and tau.max() <= T_max and np.ptp(tau) > T_max / 2
    assert np.array_equal(b_i, -b_f)
    with pytest.raises(gf.GradflowError):
        gf.chrono_init(gf.init_weights("cifg", 4, 2), T_max)  # no b_f
    # mLSTM's forget gate is one scalar per head: said so, not a shape error about b_i
    with pytest.raises(gf.GradflowError, match="one forget bias per hidden unit"):
        gf.chrono_init(gf.init_weights("mlstm", 3, 2), T_max)


def test_chrono_carousel_decays_at_the_slowest_time_scale():
    """With the gates' weights at 0, the carousel ∏ diag(f) = diag(σ(b_f))^{T−k}: its norm is max_j σ(b_f,j)^{T−k}."""
    T, N = 50, 6
    w = gf.chrono_init(gf.init_weights("lstm", N, 2, seed=0), 200.0, seed=1)
    arrays = {k: (np.zeros_like(v) if k in ("W_{f}", "U_{f}") else v) for k, v in w.arrays.items()}
    net = gf.Network(gf.Weights(w.cell, N, 2, arrays))
    flow = gf.gradient_flow(net, gf.random_inputs(T, 2), carousel=True, lyapunov=False)
    f = 1 / (1 + np.exp(-np.asarray(arrays["b_{f}"])))
    want = (T - np.arange(T)) * np.log10(f.max())
    assert np.allclose(flow.carousel.mean()["log10_norm_2"], want, rtol=1e-10)
