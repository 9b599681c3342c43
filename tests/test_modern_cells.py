"""The modern cells (issue 11) against independent oracles.

* PyTorch: every cell's step written HERE from the paper's equations (not from gradflow), in
  float64; ``torch.func.jacrev`` of it against gradflow's compiled Jacobian J_t (what
  ``gradient_flow`` multiplies), and the unrolled states against gradflow's forward, n ∈ {1, 2, 3}.
* Parameter counts against torch modules built the way the reference implementations build them.
* Exact identities from the reference notes (IndRNN bound, minGRU/minLSTM diagonal products,
  AntisymmetricRNN eigenvalues at the origin, the coRNN IMEX/explicit difference).

The SymPy element-wise oracle (``Matrix.jacobian`` at n ∈ {1, 2, 3}) runs on every cell of
``CELLS``, these included, in test_jacobians_sympy.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _torch_oracle import worst_step_errors
from sympy import MatrixSymbol
from torch import nn

import gradflow as gf

M = 2
SIZES = [1, 2, 3]
MODERN = ["peephole-lstm", "cifg", "slstm", "slstm-normalised", "lru", "indrnn", "mingru", "minlstm",
          "antisymmetric-rnn", "lipschitz-rnn", "cornn", "cornn-imex"]


# --------------------------------------------------------------------------------------------
# independent step functions, from the papers (s = concatenated state, as gradflow orders it)
# --------------------------------------------------------------------------------------------
def _t(a):
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def step_fn(name: str, P: dict, n: int):
    """s_t = F(s_{t−1}, x_t) for one sequence; P: parameter name → tensor."""
    sig, th = torch.sigmoid, torch.tanh

    def lin(g, h, x):  # W_g h + U_g x + b_g
        return P[f"W_{{{g}}}"] @ h + P[f"U_{{{g}}}"] @ x + P[f"b_{{{g}}}"]

    if name == "peephole-lstm":  # TF LSTMCell(use_peepholes=True), forget_bias folded into b_f
        def F(s, x):
            h, c = s[:n], s[n:]
            i = sig(lin("i", h, x) + P["w_{i}"] * c)
            f = sig(lin("f", h, x) + P["w_{f}"] * c)
            c2 = f * c + i * th(lin("g", h, x))
            o = sig(lin("o", h, x) + P["w_{o}"] * c2)
            return torch.cat([o * th(c2), c2])
    elif name == "cifg":  # Greff et al.: f = 1 − i
        def F(s, x):
            h, c = s[:n], s[n:]
            i = sig(lin("i", h, x))
            c2 = (1 - i) * c + i * th(lin("g", h, x))
            return torch.cat([sig(lin("o", h, x)) * th(c2), c2])
    elif name == "slstm":  # xLSTM sLSTM, one head, no stabiliser: state (h, c, n)
        def F(s, x):
            h, c, nn_ = s[:n], s[n:2 * n], s[2 * n:]
            i, f = torch.exp(lin("i", h, x)), sig(lin("f", h, x))
            c2 = f * c + i * th(lin("z", h, x))
            n2 = f * nn_ + i
            return torch.cat([sig(lin("o", h, x)) * c2 / n2, c2, n2])
    elif name == "slstm-normalised":  # the reference's u-recursion: u = (1 − κ) u + κ tanh z̃, κ = i/n
        def F(s, x):
            h, u, nn_ = s[:n], s[n:2 * n], s[2 * n:]
            i, f = torch.exp(lin("i", h, x)), sig(lin("f", h, x))
            n2 = f * nn_ + i
            kappa = i / n2
            u2 = (1 - kappa) * u + kappa * th(lin("z", h, x))
            return torch.cat([sig(lin("o", h, x)) * u2, u2, n2])
    elif name == "lru":  # Orvieto et al. 2023, complex arithmetic: x = λ x + γ (B u)
        lam = torch.exp(-torch.exp(P[r"\nu"]) + 1j * torch.exp(P[r"\theta"]))
        gam = torch.exp(P[r"\gamma_{\log}"])
        B = P["B_{re}"] + 1j * P["B_{im}"]

        def F(s, x):
            z = torch.complex(s[:n], s[n:])
            z2 = lam * z + gam * (B @ x.to(torch.complex128))
            return torch.cat([z2.real, z2.imag])
    elif name == "indrnn":  # Li et al. 2018
        def F(s, x):
            return torch.relu(P["U"] @ x + P["u"] * s + P["b"])
    elif name == "mingru":  # Feng et al. 2024: z weights the candidate
        def F(s, x):
            z = sig(P["U_{z}"] @ x + P["b_{z}"])
            return (1 - z) * s + z * (P["U_{h}"] @ x + P["b_{h}"])
    elif name == "minlstm":
        def F(s, x):
            f = sig(P["U_{f}"] @ x + P["b_{f}"])
            i = sig(P["U_{i}"] @ x + P["b_{i}"])
            return f / (f + i) * s + i / (f + i) * (P["U_{h}"] @ x + P["b_{h}"])
    elif name == "antisymmetric-rnn":  # Chang et al. 2019, γ = ε = 0.01
        def F(s, x):
            W = P["W"]
            A = W - W.T - 0.01 * torch.eye(n, dtype=torch.float64)
            return s + 0.01 * th(A @ s + P["U"] @ x + P["b"])
    elif name == "lipschitz-rnn":  # Erichson et al. 2021, β = 0.8, γ = ε = 0.01, α = 1
        def F(s, x):
            eye = torch.eye(n, dtype=torch.float64)

            def beta_mat(Mx):
                return 0.2 * (Mx + Mx.T) + 0.8 * (Mx - Mx.T) - 0.01 * eye
            A, W = beta_mat(P["M_{A}"]), beta_mat(P["M_{W}"])
            return s + 0.01 * (A @ s) + 0.01 * th(W @ s + P["U"] @ x + P["b"])
    elif name in ("cornn", "cornn-imex"):  # Rusch & Mishra 2021, Δt = 0.042, γ = 2.7, ε = 4.7
        dt, gam, eps = 0.042, 2.7, 4.7

        def F(s, x):
            y, z = s[:n], s[n:]
            force = th(P["W"] @ y + P["W_{z}"] @ z + P["U"] @ x + P["b"])
            if name == "cornn":  # official code: explicit damping
                z2 = z + dt * (force - gam * y - eps * z)
            else:  # paper: z_n = z_{n-1} + Δt(force − γ y_{n−1} − ε z_n)
                z2 = (z + dt * (force - gam * y)) / (1 + dt * eps)
            return torch.cat([y + dt * z2, z2])
    else:
        raise KeyError(name)
    return F


def _setup(name, N, seed, scheme=None):
    net = gf.network(name, N, M, seed=seed, init=scheme)
    P = {k: _t(v) for k, v in net.weights.arrays.items()}
    return net, P, step_fn(name, P, N)


# --------------------------------------------------------------------------------------------
# Jacobians and forward pass against PyTorch autograd
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N", SIZES)
@pytest.mark.parametrize("name", MODERN)
def test_jacobian_and_forward_match_torch(name, N):
    net, P, F = _setup(name, N, seed=7 + N)
    T = 6
    x = gf.random_inputs(T, M, seed=N)
    S = net.state_size
    s0 = np.random.default_rng(N).standard_normal(S) * 0.5
    worst_J, worst_s = worst_step_errors(net, F, x, s0)
    assert worst_J < 1e-12, worst_J
    assert worst_s < 1e-12, worst_s


def test_the_torch_comparison_can_fail():
    """A gate convention swapped in the oracle (PyTorch's GRU z on h_{t−1}) is caught."""
    net, P, _ = _setup("mingru", 3, seed=1)
    x = gf.random_inputs(2, M)
    traj = net.unroll(x)

    def wrong(s, xx):
        z = torch.sigmoid(P["U_{z}"] @ xx + P["b_{z}"])
        return z * s + (1 - z) * (P["U_{h}"] @ xx + P["b_{h}"])

    J_ref = torch.func.jacrev(wrong)(_t(traj.states[0][0]), _t(x[0, 0])).numpy()
    assert np.abs(np.asarray(net.step_jacobian(traj, 1))[0] - J_ref).max() > 1e-3


# --------------------------------------------------------------------------------------------
# parameter counts: the reference implementations' modules
# --------------------------------------------------------------------------------------------
def _reference_module(name, n, m) -> nn.Module:
    mod = nn.Module()
    if name == "peephole-lstm":  # TF LSTMCell: kernel (m + n, 4n), bias 4n, three peephole vectors
        mod.kernel = nn.Linear(m + n, 4 * n)
        mod.peep = nn.ParameterList([nn.Parameter(torch.zeros(n)) for _ in range(3)])
    elif name == "cifg":
        mod.kernel = nn.Linear(m + n, 3 * n)
    elif name in ("slstm", "slstm-normalised"):  # one head: input projection (no bias), kernel R, bias
        mod.W = nn.Linear(m, 4 * n, bias=False)
        mod.R = nn.Parameter(torch.zeros(4 * n, n))
        mod.b = nn.Parameter(torch.zeros(4 * n))
    elif name == "lru":  # minimal-LRU: nu_log, theta_log, gamma_log (n), B_re, B_im (n × m); C, D are the read-out
        mod.vec = nn.ParameterList([nn.Parameter(torch.zeros(n)) for _ in range(3)])
        mod.B_re, mod.B_im = nn.Parameter(torch.zeros(n, m)), nn.Parameter(torch.zeros(n, m))
    elif name == "indrnn":  # weight_ih, bias_ih, weight_hh (a vector)
        mod.ih = nn.Linear(m, n)
        mod.weight_hh = nn.Parameter(torch.zeros(n))
    elif name == "mingru":  # linear_z, linear_h
        mod.z, mod.h = nn.Linear(m, n), nn.Linear(m, n)
    elif name == "minlstm":
        mod.f, mod.i, mod.h = nn.Linear(m, n), nn.Linear(m, n), nn.Linear(m, n)
    elif name == "antisymmetric-rnn":
        mod.W = nn.Parameter(torch.zeros(n, n))
        mod.V = nn.Linear(m, n)
    elif name == "lipschitz-rnn":
        mod.B, mod.C = nn.Parameter(torch.zeros(n, n)), nn.Parameter(torch.zeros(n, n))
        mod.U = nn.Linear(m, n)
    elif name in ("cornn", "cornn-imex"):  # i2h = nn.Linear(n_inp + n_hid + n_hid, n_hid)
        mod.i2h = nn.Linear(m + 2 * n, n)
    return mod


@pytest.mark.parametrize("name", MODERN)
def test_param_counts_match_reference_modules(name):
    for n, m in ((1, 1), (7, 3), (64, 10)):
        want = sum(p.numel() for p in _reference_module(name, n, m).parameters())
        for convention in ("pytorch", "keras"):
            assert gf.count_params(name, n, m, convention=convention).total == want


# --------------------------------------------------------------------------------------------
# exact identities
# --------------------------------------------------------------------------------------------
def _products(net, traj):
    """∂s_T/∂s_k for k = 0..T−1, by multiplying gradflow's J_t (dense, small n)."""
    T = traj.steps
    P = np.eye(net.state_size)
    out = [None] * T
    for k in range(T - 1, -1, -1):
        P = P @ np.asarray(net.step_jacobian(traj, k + 1))[0]
        out[k] = P
    return out


def test_indrnn_recurrent_max_bound():
    """|u_j| ≤ 2^{1/T}, relu' ≤ 1: ‖∂h_T/∂h_k‖₂ = max_j ∏|u_j H(a)| ≤ 2^{(T−k)/T}."""
    T, N = 40, 6
    net = gf.network("indrnn", N, M, seed=3)
    u = np.array([2 ** (1 / T), -(2 ** (1 / T)), 1.0, 0.5, 2 ** (1 / T), 0.9])
    arrays = dict(net.weights.arrays, u=u, b=np.full(N, 2.0))  # b > 0 keeps most units active
    net = gf.Network(gf.Weights(net.cell, N, M, arrays))
    x = gf.random_inputs(T, M, seed=5) * 0.1
    traj = net.unroll(x)
    flow = gf.gradient_flow(net, x, lyapunov=False)
    measured = 10 ** np.asarray(flow.full.mean()["log10_norm_2"])
    a_t = next(iter(net.cell.recorded.definitions))  # the first named quantity, a_t
    a = np.stack([np.asarray(traj.named[t][a_t])[0] for t in range(T)])  # (T, N)
    active = (a > 0).astype(float)
    for k in range(T):
        exact = np.max(np.prod(np.abs(u)[None, :] * active[k:], axis=0))
        assert measured[k] == pytest.approx(exact, rel=1e-9)
        assert measured[k] <= 2 ** ((T - k) / T) * (1 + 1e-12)
    assert measured[0] == pytest.approx(2.0, rel=1e-9)  # the bound is attained by the active units


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_diagonal_products_are_products_of_gates(name):
    """‖P_k‖₂ = max_j ∏ a_{s,j}, ‖P_k‖_F² = Σ_j ∏ a_{s,j}², with a = 1 − z (minGRU), f/(f+i) (minLSTM)."""
    T, N = 30, 5
    net, P, _ = _setup(name, N, seed=11)
    x = gf.random_inputs(T, M, seed=2)
    X = _t(x[:, 0])
    if name == "mingru":
        a = 1 - torch.sigmoid(X @ P["U_{z}"].T + P["b_{z}"])
    else:
        f, i = torch.sigmoid(X @ P["U_{f}"].T + P["b_{f}"]), torch.sigmoid(X @ P["U_{i}"].T + P["b_{i}"])
        a = f / (f + i)
    a = a.numpy()
    flow = gf.gradient_flow(net, x, lyapunov=False).full.mean()
    for k in range(T):
        prod = np.prod(a[k:], axis=0)
        assert 10 ** flow["log10_norm_2"][k] == pytest.approx(prod.max(), rel=1e-9)
        assert 10 ** (2 * flow["log10_norm_fro"][k]) == pytest.approx(np.sum(prod ** 2), rel=1e-9)


def test_antisymmetric_eigenvalues_at_the_origin():
    """At a_t = 0, J = I + ε(W − Wᵀ − γI): eigenvalues 1 + ε(iω − γ), iω those of W − Wᵀ."""
    N, eps, gamma = 6, 0.01, 0.01
    net = gf.network("antisymmetric-rnn", N, M, seed=4, init="gaussian", gain=3.0)
    arrays = dict(net.weights.arrays, b=np.zeros(N))
    net = gf.Network(gf.Weights(net.cell, N, M, arrays))
    traj = net.unroll(np.zeros((1, 1, M)))
    J = np.asarray(net.step_jacobian(traj, 1))[0]
    W = np.asarray(arrays["W"])
    omega = np.linalg.eigvals(W - W.T)
    got = np.linalg.eigvals(J)
    assert np.allclose(got.real, 1 - eps * gamma, atol=1e-12)
    assert np.allclose(np.sort(got.imag), np.sort(eps * omega.imag), atol=1e-12)
    # |1 + ε(iω − γ)| ≤ 1 iff ω² ≤ 2γ/ε − γ²
    mod = np.abs(np.linalg.eigvals(J))
    inside = omega.imag ** 2 <= 2 * gamma / eps - gamma ** 2
    assert 0 < sum(inside) < N  # gain 3: some modes inside the unit disc, some outside
    assert sum(mod <= 1 + 1e-15) == sum(inside)


def test_antisymmetric_bound_uses_the_structured_matrix():
    """The Pascanu-type bound of J = I + ε diag(tanh')(W − Wᵀ − γI) is 1 + ε σ_max(W − Wᵀ − γI)."""
    N, T = 5, 12
    net = gf.network("antisymmetric-rnn", N, M, seed=2, init="gaussian", gain=2.0)
    x = gf.random_inputs(T, M)
    flow = gf.gradient_flow(net, x, lyapunov=False)
    W = np.asarray(net.weights.arrays["W"])
    rate = 1 + 0.01 * np.linalg.norm(W - W.T - 0.01 * np.eye(N), 2)
    assert np.allclose(flow.bound, (T - np.arange(T)) * math.log10(rate), rtol=1e-12)
    assert np.all(flow.full.mean()["log10_norm_2"] <= flow.bound + 1e-12)


def test_cornn_imex_and_explicit_differ_only_by_the_damping():
    """Same weights, same state: z^{explicit}_t − z^{IMEX}_t = Δt ε (z^{IMEX}_t − z_{t−1}) exactly."""
    N = 3
    ex = gf.network("cornn", N, M, seed=9)
    im = gf.Network(gf.Weights(gf.get_cell("cornn-imex"), N, M, dict(ex.weights.arrays)))
    s0 = np.random.default_rng(0).standard_normal(2 * N)
    init = {"h": s0[:N], "z": s0[N:]}
    x = gf.random_inputs(1, M)
    z_ex = np.asarray(ex.unroll(x, initial=init).states[1][0])[N:]
    z_im = np.asarray(im.unroll(x, initial=init).states[1][0])[N:]
    dt, eps = 0.042, 4.7
    assert np.allclose(z_ex - z_im, dt * eps * (z_im - s0[N:]), atol=1e-14)
    assert np.abs(z_ex - z_im).max() > 1e-6


# --------------------------------------------------------------------------------------------
# sLSTM: the official stabilised step gives the same h; the normalised cell u = c/n
# --------------------------------------------------------------------------------------------
def test_slstm_stabilised_official_step_gives_the_same_h():
    """NX-AI/xlstm vanilla step: m_t = max(log σ(f̃) + m_{t−1}, ĩ), i = e^{ĩ−m_t}, f = e^{log σ(f̃)+m_{t−1}−m_t}."""
    N, T = 3, 200
    net, P, _ = _setup("slstm", N, seed=5)
    arrays = dict(net.weights.arrays, **{"b_{i}": np.full(N, 3.0)})  # large ĩ: e^{ĩ} matters
    net = gf.Network(gf.Weights(net.cell, N, M, arrays))
    P = {k: _t(v) for k, v in arrays.items()}
    x = gf.random_inputs(T, M, seed=8)
    traj = net.unroll(x)
    h = torch.zeros(N, dtype=torch.float64)
    c, nn_, m = torch.zeros_like(h), torch.zeros_like(h), torch.zeros_like(h)
    worst = 0.0
    for t in range(T):
        xt = _t(x[t, 0])
        raw = {g: P[f"W_{{{g}}}"] @ h + P[f"U_{{{g}}}"] @ xt + P[f"b_{{{g}}}"] for g in "ifzo"}
        logf = torch.nn.functional.logsigmoid(raw["f"])
        m_new = raw["i"] if t == 0 else torch.maximum(logf + m, raw["i"])
        i, f = torch.exp(raw["i"] - m_new), torch.exp(logf + m - m_new)
        c, nn_ = f * c + i * torch.tanh(raw["z"]), f * nn_ + i
        h, m = torch.sigmoid(raw["o"]) * c / nn_, m_new
        worst = max(worst, np.abs(np.asarray(traj.states[t + 1][0, :N]) - h.numpy()).max())
    assert worst < 1e-12, worst


def test_slstm_normalised_cell_is_a_convex_recursion():
    """u_t = c_t/n_t obeys u_t = (1 − κ_t) u_{t−1} + κ_t tanh z̃_t, κ_t = i_t/n_t ∈ (0, 1]; |u| ≤ 1."""
    N, T = 4, 60
    net = gf.network("slstm", N, M, seed=2)
    traj = net.unroll(gf.random_inputs(T, M, seed=3))
    defs = {s.name: s for s in net.cell.recorded.definitions}
    u_prev = None
    for t in range(1, T + 1):
        s = np.asarray(traj.states[t][0])
        c, n_ = s[N:2 * N], s[2 * N:]
        named = traj.named[t - 1]
        i, z = (np.asarray(named[defs[k]])[0] for k in ("i_{t}", "z_{t}"))
        u, kappa = c / n_, i / n_
        assert np.all((kappa > 0) & (kappa <= 1 + 1e-15)) and np.all(np.abs(u) <= 1 + 1e-12)
        if u_prev is not None:
            assert np.allclose(u, (1 - kappa) * u_prev + kappa * z, rtol=1e-12, atol=1e-14)
        else:
            assert np.allclose(kappa, 1.0) and np.allclose(u, z)  # n_0 = 0: u_1 = tanh z̃_1
        u_prev = u


# --------------------------------------------------------------------------------------------
# LRU: exact norms of the product, ring initialisation
# --------------------------------------------------------------------------------------------
def test_lru_product_norms_are_powers_of_the_moduli():
    """‖∂x_T/∂x_k‖₂ = max_j |λ_j|^{T−k}; as a real 2n map ‖·‖_F² = 2 Σ_j |λ_j|^{2(T−k)} (each mode a
    scaled rotation, Frobenius² 2|λ|^{2(T−k)}; the complex n × n Frobenius² is half of it)."""
    N, T = 6, 40
    net = gf.Network(gf.lru_ring_init(gf.init_weights("lru", N, M), r_min=0.5, r_max=0.99, seed=1))
    flow = gf.gradient_flow(net, gf.random_inputs(T, M), lyapunov=False, spectral="svd").full.mean()
    modulus = np.exp(-np.exp(np.asarray(net.weights.arrays[r"\nu"])))
    lag = T - np.arange(T)
    assert np.allclose(flow["log10_norm_2"], lag * np.log10(modulus.max()), rtol=0, atol=1e-10)
    fro2 = 2 * np.sum(modulus[None, :] ** (2 * lag[:, None]), axis=1)
    assert np.allclose(2 * flow["log10_norm_fro"], np.log10(fro2), rtol=0, atol=1e-10)


def test_lru_ring_init_and_normalisation():
    """|λ|² ~ U[r_min², r_max²] and γ² Σ_i |λ|^{2i} = γ²/(1 − |λ|²) = 1 (variance preserved)."""
    w = gf.lru_ring_init(gf.init_weights("lru", 2000, 3), r_min=0.4, r_max=0.9, max_phase=3.0, seed=0)
    mod2 = np.exp(-2 * np.exp(np.asarray(w.arrays[r"\nu"])))
    assert 0.16 <= mod2.min() and mod2.max() <= 0.81
    assert abs(np.mean(mod2) - (0.16 + 0.81) / 2) < 0.02  # uniform in |λ|²
    phase = np.exp(np.asarray(w.arrays[r"\theta"]))
    assert 0 < phase.min() and phase.max() <= 3.0
    gamma2 = np.exp(2 * np.asarray(w.arrays[r"\gamma_{\log}"]))
    assert np.allclose(gamma2 / (1 - mod2), 1.0, rtol=1e-12)


def test_comparison_example(tmp_path):
    """examples/modern_cells.py: one figure, a decay table and the direct paths read off the Jacobians."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "examples" / "modern_cells.py"), "--quick", "--out",
                           str(tmp_path)], capture_output=True, text=True, cwd=root,
                          env=dict(os.environ, MPLBACKEND="Agg"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    rates = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()
             if line.split() and line.split()[0] in ("lstm", "gru", "lru", "mingru", "minlstm", "slstm")
             and len(line.split()) == 3}
    assert set(rates) == {"lstm", "gru", "lru", "mingru", "minlstm", "slstm"}
    assert rates["lru"] > rates["mingru"]  # ring init: moduli up to ~1
    for want in ("lstm     ∂c_t/∂c_{t-1} = diag(f_t)", "mingru   ∂h_t/∂h_{t-1} = diag(1 - z_t)",
                 "lru      ∂h_t/∂q_{t-1} = -diag(rho_t ⊙ sin(omega_t))", "gru      ∂h_t/∂h_{t-1} = diag(z_t)"):
        assert want in out, want
    assert (tmp_path / "modern_cells.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_slstm_normalised_has_the_same_h_and_a_contracting_carousel():
    """Same weights: h of the normalised form equals h of the unstabilised sLSTM; its carousel
    ∂c_t/∂c_{t−1} = diag(1 − κ_t) is derived as such and measured ≤ 1 at every lag."""
    N, T = 4, 50
    a = gf.network("slstm", N, M, seed=3)
    b = gf.Network(gf.Weights(gf.get_cell("slstm-normalised"), N, M, dict(a.weights.arrays)))
    x = gf.random_inputs(T, M, seed=4)
    ta, tb = a.unroll(x), b.unroll(x)
    assert max(np.abs(np.asarray(ta.states[t][0, :N]) - np.asarray(tb.states[t][0, :N])).max()
               for t in range(T + 1)) < 1e-13
    step = gf.carousel("slstm-normalised").step
    kappa_j = MatrixSymbol(r"\kappa_{j}", gf.n, 1)
    assert step == gf.Diag(gf.one_minus(kappa_j))
    car = gf.gradient_flow(b, x, carousel=True, lyapunov=False).carousel.mean()["log10_norm_2"]
    assert np.all(car <= 1e-12) and car[0] < car[-1]
