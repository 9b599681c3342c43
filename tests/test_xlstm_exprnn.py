"""The stabilised sLSTM and expRNN (issue 11) against independent oracles.

* PyTorch: each cell's step written HERE from the papers' equations (torch.maximum for the
  stabiliser, torch.linalg.matrix_exp for W = exp(A − Aᵀ)), float64; ``torch.func.jacrev`` of it
  against gradflow's compiled J_t, and the unrolled states, n ∈ {1, 2, 3}.
* The unstabilised recurrence in mpmath (50 digits) where float64 overflows.
* Identities: stabilised and unstabilised h agree, c = c̃ e^{−m}; u = c/n obeys
  u_t = (1 − κ_t) u_{t−1} + κ_t tanh z̃_t with κ_t = exp(ĩ_t)/ñ_t; the normalised cell's carousel is
  ∏(1 − κ); expRNN: W orthogonal, ‖∂h_T/∂h_k‖₂ ≤ 1 for b ≤ 0, every singular value 1 for b = 0.

The SymPy element-wise oracle (``Matrix.jacobian`` at n ∈ {1, 2, 3}) runs on these cells too, in
test_jacobians_sympy.py (every cell of ``CELLS``).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from _torch_oracle import worst_step_errors
from torch import nn

import gradflow as gf

M = 2
SIZES = [1, 2, 3]


def _t(a):
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def step_fn(name: str, P: dict, n: int):
    """s_t = F(s_{t−1}, x_t) for one sequence, from the papers; P: parameter name → tensor."""
    sig, th = torch.sigmoid, torch.tanh

    def lin(g, h, x):
        return P[f"W_{{{g}}}"] @ h + P[f"U_{{{g}}}"] @ x + P[f"b_{{{g}}}"]

    if name == "slstm-stabilised":  # xLSTM official vanilla step: state (h, c, n, m)
        def F(s, x):
            h, c, nn_, m = s[:n], s[n:2 * n], s[2 * n:3 * n], s[3 * n:]
            i_pre, log_f = lin("i", h, x), torch.nn.functional.logsigmoid(lin("f", h, x))
            m2 = torch.maximum(log_f + m, i_pre)
            i, f = torch.exp(i_pre - m2), torch.exp(log_f + m - m2)
            c2 = f * c + i * th(lin("z", h, x))
            n2 = f * nn_ + i
            return torch.cat([sig(lin("o", h, x)) * c2 / n2, c2, n2, m2])
    elif name == "exprnn":  # Lezcano-Casado & Martínez-Rubio 2019, real modReLU
        W = torch.linalg.matrix_exp(P["A"] - P["A"].T)

        def F(s, x):
            a = W @ s + P["U"] @ x
            return torch.sign(a) * torch.relu(torch.abs(a) + P["b"])
    else:
        raise KeyError(name)
    return F


def _initial(name, N, rng):
    s0 = rng.standard_normal(4 * N if name == "slstm-stabilised" else N) * 0.5
    if name == "slstm-stabilised":
        s0[2 * N:3 * N] = np.abs(s0[2 * N:3 * N]) + 0.5  # a normaliser n > 0
    return s0


@pytest.mark.parametrize("N", SIZES)
@pytest.mark.parametrize("name", ["slstm-stabilised", "exprnn"])
def test_jacobian_and_forward_match_torch(name, N):
    net = gf.network(name, N, M, seed=7 + N)
    P = {k: _t(v) for k, v in net.weights.arrays.items()}
    F = step_fn(name, P, N)
    T = 6
    x = gf.random_inputs(T, M, seed=N)
    s0 = _initial(name, N, np.random.default_rng(N))
    worst_J, worst_s = worst_step_errors(net, F, x, s0)
    assert worst_J < 1e-12, worst_J
    assert worst_s < 1e-12, worst_s


def test_the_torch_comparison_can_fail():
    """The stabiliser without m_{t−1} in f' (a plausible slip) is caught."""
    N = 2
    net = gf.network("slstm-stabilised", N, M, seed=3)
    P = {k: _t(v) for k, v in net.weights.arrays.items()}
    x = gf.random_inputs(3, M)
    s0 = _initial("slstm-stabilised", N, np.random.default_rng(0))
    s0[3 * N:] = 1.5
    traj = net.unroll(x, initial={st: s0[i * N:(i + 1) * N] for i, st in enumerate(net.cell.states)})

    def wrong(s, xx):
        h, c, nn_, m = s[:N], s[N:2 * N], s[2 * N:3 * N], s[3 * N:]
        lin = {g: P[f"W_{{{g}}}"] @ h + P[f"U_{{{g}}}"] @ xx + P[f"b_{{{g}}}"] for g in "ifzo"}
        log_f = torch.nn.functional.logsigmoid(lin["f"])
        m2 = torch.maximum(log_f + m, lin["i"])
        i, f = torch.exp(lin["i"] - m2), torch.exp(log_f - m2)
        c2, n2 = f * c + i * torch.tanh(lin["z"]), f * nn_ + i
        return torch.cat([torch.sigmoid(lin["o"]) * c2 / n2, c2, n2, m2])

    J_ref = torch.func.jacrev(wrong)(_t(s0), _t(x[0, 0])).numpy()
    assert np.abs(np.asarray(net.step_jacobian(traj, 1))[0] - J_ref).max() > 1e-3


# --------------------------------------------------------------------------------------------
# sLSTM: the stabiliser changes the coordinates, not h
# --------------------------------------------------------------------------------------------
def _pair(N, seed, bias_i=None):
    raw = gf.network("slstm", N, M, seed=seed)
    arrays = dict(raw.weights.arrays)
    if bias_i is not None:
        arrays["b_{i}"] = np.full(N, float(bias_i))
        raw = gf.Network(gf.Weights(raw.cell, N, M, arrays))
    stab = gf.Network(gf.Weights(gf.get_cell("slstm-stabilised"), N, M, arrays))
    return raw, stab, arrays


def _split(states, N, k):
    return [np.asarray(s)[0, k * N:(k + 1) * N] for s in states]


def test_stabilised_and_unstabilised_h_agree_and_c_is_rescaled():
    N, T = 3, 60
    raw, stab, _ = _pair(N, seed=4)
    x = gf.random_inputs(T, M, seed=9) * 2.0
    tr, ts = raw.unroll(x), stab.unroll(x)
    h_raw, h_stab = np.array(_split(tr.states, N, 0)), np.array(_split(ts.states, N, 0))
    assert np.max(np.abs(h_raw - h_stab)) < 1e-13
    m = np.array(_split(ts.states, N, 3))
    for k, name in ((1, "c"), (2, "n")):  # c = c̃ e^{−m}, n = ñ e^{−m}
        raw_k, stab_k = np.array(_split(tr.states, N, k)), np.array(_split(ts.states, N, k))
        assert np.allclose(stab_k[1:], raw_k[1:] * np.exp(-m[1:]), rtol=1e-12, atol=0), name
    assert np.all(np.array(_split(ts.states, N, 2))[1:] >= 1.0 - 1e-15)  # n_t ≥ i'_t = 1 or f'_t n … ≥ 1


def _mp_unstabilised_h(arrays, x, N):
    """The unstabilised sLSTM (c̃, ñ) in 50-digit mpmath: the paper's equations, no stabiliser."""
    mpmath.mp.dps = 50
    mat = {k: mpmath.matrix(np.atleast_2d(v).T.tolist() if np.ndim(v) == 1 else v.tolist())
           for k, v in arrays.items()}
    h = mpmath.matrix(N, 1)
    c = mpmath.matrix(N, 1)
    nn_ = mpmath.matrix(N, 1)
    out = []
    for t in range(x.shape[0]):
        xt = mpmath.matrix(x[t, 0].tolist())
        pre = {g: mat[f"W_{{{g}}}"] * h + mat[f"U_{{{g}}}"] * xt + mat[f"b_{{{g}}}"] for g in "ifzo"}
        for j in range(N):
            i = mpmath.exp(pre["i"][j])
            f = 1 / (1 + mpmath.exp(-pre["f"][j]))
            c[j] = f * c[j] + i * mpmath.tanh(pre["z"][j])
            nn_[j] = f * nn_[j] + i
        h = mpmath.matrix([1 / (1 + mpmath.exp(-pre["o"][j])) * c[j] / nn_[j] for j in range(N)])
        out.append([float(h[j]) for j in range(N)])
    return np.array(out)


def test_stabilised_is_finite_where_the_unstabilised_overflows():
    """b_i = 750: exp(ĩ) overflows float64; the stabilised h equals the 50-digit unstabilised h."""
    N, T = 2, 8
    raw, stab, arrays = _pair(N, seed=5, bias_i=750.0)
    x = gf.random_inputs(T, M, seed=3)
    with np.errstate(all="ignore"):
        h_raw = np.array(_split(raw.unroll(x, finite=False).states, N, 0))[1:]
    assert not np.all(np.isfinite(h_raw))
    ts = stab.unroll(x)
    h_stab = np.array(_split(ts.states, N, 0))[1:]
    assert np.all(np.isfinite(np.asarray(ts.states[-1])))
    ref = _mp_unstabilised_h(arrays, x, N)
    assert np.max(np.abs(h_stab - ref)) < 1e-13


def test_normalised_cell_u_recursion_and_kappa():
    """u = c/n obeys u_t = (1 − κ_t) u_{t−1} + κ_t tanh z̃_t, κ_t = exp(ĩ_t)/ñ_t ∈ (0, 1].

    κ from the unstabilised run (ñ) and u from the stabilised one (c/n): two coordinate systems,
    one recursion, with z̃_t = W_z h_{t−1} + U_z x_t + b_z computed here.
    """
    N, T = 3, 40
    raw, stab, A = _pair(N, seed=6)
    x = gf.random_inputs(T, M, seed=2)
    tr, ts = raw.unroll(x), stab.unroll(x)
    h = np.array(_split(ts.states, N, 0))
    u = np.array(_split(ts.states, N, 1)) / np.where(np.arange(T + 1)[:, None] == 0, 1.0,
                                                      np.array(_split(ts.states, N, 2)))
    n_raw = np.array(_split(tr.states, N, 2))
    norm = gf.network("slstm-normalised", N, M, weights=gf.Weights(gf.get_cell("slstm-normalised"), N, M, A))
    c_norm = np.array(_split(norm.unroll(x).states, N, 1))
    for t in range(1, T + 1):
        i_pre = A["W_{i}"] @ h[t - 1] + A["U_{i}"] @ x[t - 1, 0] + A["b_{i}"]
        z = np.tanh(A["W_{z}"] @ h[t - 1] + A["U_{z}"] @ x[t - 1, 0] + A["b_{z}"])
        kappa = np.exp(i_pre) / n_raw[t]
        assert np.all((kappa > 0) & (kappa <= 1 + 1e-15))
        assert np.allclose(u[t], (1 - kappa) * u[t - 1] + kappa * z, rtol=0, atol=1e-13)
        assert np.allclose(c_norm[t], u[t], rtol=0, atol=1e-13)  # the normalised cell's c is u


def test_normalised_carousel_is_the_product_of_one_minus_kappa():
    """The normalised cell's carousel (1997 truncation, c→c block) is ∏_{s>k} diag(1 − κ_s)."""
    N, T = 3, 25
    raw = gf.network("slstm", N, M, seed=8)
    A = dict(raw.weights.arrays)
    net = gf.Network(gf.Weights(gf.get_cell("slstm-normalised"), N, M, A))
    x = gf.random_inputs(T, M, seed=4)
    flow = gf.gradient_flow(net, x, carousel=True, lyapunov=False)
    car = np.asarray(flow.carousel.mean()["log10_norm_2"])
    tr = raw.unroll(x)
    h, n_raw = np.array(_split(tr.states, N, 0)), np.array(_split(tr.states, N, 2))
    kappa = np.array([np.exp(A["W_{i}"] @ h[t - 1] + A["U_{i}"] @ x[t - 1, 0] + A["b_{i}"]) / n_raw[t]
                      for t in range(1, T + 1)])  # (T, N), κ_t at row t − 1
    for k in range(T):
        exact = np.max(np.prod(1 - kappa[k:], axis=0))
        if k == 0:  # n_0 = 0: κ_1 = i_1/n_1 = 1 exactly, the carousel from k = 0 is exactly 0
            assert exact == 0 and car[k] == -math.inf
        else:
            assert car[k] == pytest.approx(math.log10(exact), abs=1e-10)


# --------------------------------------------------------------------------------------------
# expRNN
# --------------------------------------------------------------------------------------------
def _exprnn(N, seed, b):
    net = gf.network("exprnn", N, M, seed=seed)
    arrays = dict(net.weights.arrays, b=np.asarray(b, dtype=float) * np.ones(N))
    return gf.Network(gf.Weights(net.cell, N, M, arrays))


def test_expm_matches_torch_and_is_orthogonal_on_skew_matrices():
    from gradflow._numeric.compile import expm

    rng = np.random.default_rng(0)
    for N, scale in ((1, 1.0), (4, 0.1), (7, 3.0), (12, 40.0)):
        A = rng.standard_normal((N, N)) * scale
        ref = torch.linalg.matrix_exp(_t(A)).numpy()
        assert np.allclose(expm(np, A), ref, rtol=1e-11, atol=1e-11 * np.abs(ref).max())
        S = A - A.T
        W = expm(np, S)
        assert np.abs(W @ W.T - np.eye(N)).max() < 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exprnn_products_never_exceed_one_when_b_le_0(seed):
    """‖∂h_T/∂h_k‖₂ ≤ 1 for every k when the modReLU bias b ≤ 0 (W orthogonal, modReLU' ∈ {0, 1})."""
    N, T = 5, 30
    rng = np.random.default_rng(seed)
    net = _exprnn(N, seed, -np.abs(rng.uniform(0, 0.5, N)))
    x = gf.random_inputs(T, M, batch=3, seed=seed) * 2.0
    flow = gf.gradient_flow(net, x, lyapunov=False, spectral="svd")
    norms = np.asarray(flow.full.log10_norm_2)
    assert np.all(norms <= 1e-12), norms.max()
    assert norms.min() < -0.01  # some units switched off: the bound is not an identity


def test_exprnn_with_zero_bias_is_orthogonal_for_every_k():
    """b = 0: modReLU is the identity, ∂h_T/∂h_k = W^{T−k}: every singular value is 1."""
    N, T = 4, 20
    net = _exprnn(N, 3, 0.0)
    x = gf.random_inputs(T, M, seed=1)
    sv = gf.singular_values(net, x, [0, 7, 19])
    for k, v in sv.items():
        assert np.allclose(v, 0.0, atol=1e-12), (k, v)


def test_exprnn_inits_give_orthogonal_w():
    N = 6
    base = gf.network("exprnn", N, M, seed=0).weights
    for scheme in ("henaff", "cayley", "random", "orthogonal"):
        w = gf.exprnn_init(base, scheme=scheme, seed=1)
        A = np.asarray(w.arrays["A"])
        S = A - A.T
        W = torch.linalg.matrix_exp(_t(S)).numpy()
        assert np.abs(W @ W.T - np.eye(N)).max() < 1e-12
        if scheme in ("henaff", "cayley"):  # 2 × 2 rotation blocks: S has only (2j, 2j+1) entries
            mask = np.zeros((N, N), bool)
            for j in range(0, N - 1, 2):
                mask[j, j + 1] = mask[j + 1, j] = True
            assert np.all(S[~mask] == 0) and np.any(S[mask] != 0)
    # "orthogonal": the Henaff angles in a random basis: the same eigenvalues e^{±iθ}, a dense W
    Ao, Ah = (np.asarray(gf.exprnn_init(base, scheme=s, seed=1).arrays["A"]) for s in ("orthogonal", "henaff"))
    Wo, Wh = (torch.linalg.matrix_exp(_t(a - a.T)).numpy() for a in (Ao, Ah))
    assert np.allclose(np.sort(np.angle(np.linalg.eigvals(Wo))), np.sort(np.angle(np.linalg.eigvals(Wh))),
                       atol=1e-10)
    assert np.linalg.det(Wo) == pytest.approx(1.0) and np.count_nonzero(np.abs(Wo - np.eye(N)) > 1e-6) > 2 * N
    henaff = np.asarray(gf.exprnn_init(base, scheme="henaff", seed=1).arrays["A"])
    assert np.all(np.abs(henaff) <= math.pi)
    with pytest.raises(gf.GradflowError, match="exprnn"):
        gf.exprnn_init(gf.network("tanh-rnn", 3, 2).weights)
    with pytest.raises(gf.GradflowError, match="scheme"):
        gf.exprnn_init(base, scheme="nope")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["slstm-stabilised", "exprnn"])
def test_param_counts_match_reference_modules(name):
    for n, m in ((1, 1), (7, 3)):
        mod = nn.Module()
        if name == "slstm-stabilised":  # the stabiliser m is a state, not a parameter
            mod.W, mod.R, mod.b = nn.Linear(m, 4 * n, bias=False), nn.Parameter(torch.zeros(4 * n, n)), \
                nn.Parameter(torch.zeros(4 * n))
        else:  # expRNN: input_kernel (no bias), the n × n log-orthogonal A, modReLU's b
            mod.U, mod.A, mod.b = nn.Linear(m, n, bias=False), nn.Parameter(torch.zeros(n, n)), \
                nn.Parameter(torch.zeros(n))
        want = sum(p.numel() for p in mod.parameters())
        assert gf.count_params(name, n, m).total == want


# --------------------------------------------------------------------------------------------
# the per-unit block path (LRU: 2 × 2 rotation–scaling blocks)
# --------------------------------------------------------------------------------------------
def _lru(N, seed, r_min=0.5, r_max=0.99):
    net = gf.network("lru", N, M, seed=seed)
    return gf.Network(gf.lru_ring_init(net.weights, r_min=r_min, r_max=r_max, seed=seed))


@pytest.mark.parametrize("N", SIZES)
def test_lru_block_path_agrees_with_dense_engine_and_closed_form(N):
    """Block path = dense sweep (SVD) to 1e-12 in log10; both = the closed forms
    ‖P_k‖₂ = max_j |λ_j|^{T−k}, ‖P_k‖_F² = 2 Σ_j |λ_j|^{2(T−k)}, Lyapunov exponents log|λ_j| (twice)."""
    from gradflow._numeric.blocks import is_block_structured

    assert is_block_structured(gf.get_cell("lru"))
    T = 25
    net = _lru(N, seed=N)
    x = gf.random_inputs(T, M, batch=2, seed=1)
    fast = gf.gradient_flow(net, x, lyapunov="full")
    dense = gf.gradient_flow(net, x, structure="dense", spectral="svd", lyapunov="full")
    for f in ("log10_norm_2", "log10_norm_fro", "log10_grad_norm"):
        assert np.abs(np.asarray(fast.full[f]) - np.asarray(dense.full[f])).max() < 1e-12, f
    mod = np.exp(-np.exp(np.asarray(net.weights.arrays[r"\nu"])))  # |λ_j|, from the paper's formula
    lags = T - np.arange(T)
    two = np.log10(mod.max()) * lags
    fro = 0.5 * np.log10(2 * np.sum(mod[None, :] ** (2 * lags[:, None]), axis=1))
    assert np.allclose(fast.full.mean()["log10_norm_2"], two, atol=1e-12)
    assert np.allclose(fast.full.mean()["log10_norm_fro"], fro, atol=1e-12)
    assert np.allclose(np.sort(fast.lyapunov), np.sort(np.repeat(np.log(mod), 2)), atol=1e-12)


def test_block_path_keeps_tiny_products_and_refuses_dense_blocks():
    """|λ| = 0.05 over T = 400: ‖P_0‖₂ = 10^{400·log10 0.05} ≈ 1e-520, below float64, still exact in log."""
    from gradflow._numeric.blocks import block_curves

    N, T = 2, 400
    net = _lru(N, seed=0, r_min=0.05, r_max=0.0500001)
    x = gf.random_inputs(T, M, seed=2)
    c = block_curves(net, x)
    mod = np.exp(-np.exp(np.asarray(net.weights.arrays[r"\nu"])))
    assert c["log10_norm_2"][0, 0] == pytest.approx(T * np.log10(mod.max()), abs=1e-9)
    assert c["log10_norm_2"][0, 0] < -500
    with pytest.raises(gf.GradflowError, match="dense"):
        block_curves(gf.network("cornn", 2, M), x)


def test_two_by_two_sigma_max_closed_form_against_numpy_svd():
    from gradflow._numeric.blocks import _log_sigma_max

    rng = np.random.default_rng(0)
    G = rng.standard_normal((500, 2, 2)) * np.exp(rng.uniform(-30, 30, (500, 1, 1)))
    G[0] = [[3.0, -4.0], [4.0, 3.0]]  # a rotation–scaling: σ_max = σ_min = 5
    ref = np.log(np.linalg.svd(G, compute_uv=False)[:, 0])
    assert np.abs(_log_sigma_max(G) - ref).max() < 1e-13
    assert _log_sigma_max(G[:1])[0] == pytest.approx(math.log(5.0), abs=1e-15)


# --------------------------------------------------------------------------------------------
# weights of element-wise-weight cells, by the cell's own parameter names
# --------------------------------------------------------------------------------------------
def test_named_weights_round_trip_through_npz_and_cli(tmp_path, capsys):
    from gradflow._cli import main

    w = gf.lru_ring_init(gf.network("lru", 4, 3).weights, r_min=0.5, r_max=0.9, seed=2)
    plain = {"nu": w.arrays[r"\nu"], "theta": w.arrays[r"\theta"], "gamma_log": w.arrays[r"\gamma_{\log}"],
             "B_re": w.arrays["B_{re}"], "B_im": w.arrays["B_{im}"]}
    path = tmp_path / "lru.npz"
    np.savez(path, **plain)
    loaded = gf.load_weights("lru", str(path))
    assert (loaded.hidden, loaded.input) == (4, 3)
    for k, v in w.arrays.items():
        assert np.array_equal(np.asarray(loaded.arrays[k]), np.asarray(v)), k
    ind = gf.network("indrnn", 5, 2, seed=1).weights
    net = gf.network("indrnn", weights={"rnn.U": ind.arrays["U"], "rnn.u": ind.arrays["u"],
                                        "rnn.b": ind.arrays["b"]}, prefix="rnn")
    assert np.array_equal(np.asarray(net.weights.arrays["u"]), np.asarray(ind.arrays["u"]))
    ex = gf.exprnn_init(gf.network("exprnn", 3, 2).weights)  # no w-kind: read by name when keyed so
    assert np.array_equal(np.asarray(gf.load_weights("exprnn", dict(ex.arrays)).arrays["A"]),
                          np.asarray(ex.arrays["A"]))
    assert main(["flow", "lru", "--weights", str(path), "--steps", "4"]) == 0
    assert "Lyapunov" in capsys.readouterr().out


@pytest.mark.parametrize("arrays, message", [
    ({"nu": np.zeros(4), "theta": np.zeros(3), "gamma_log": np.zeros(4), "B_re": np.zeros((4, 3)),
      "B_im": np.zeros((4, 3))}, r"theta has shape \(3,\), expected \(4,\)"),
    ({"nu": np.zeros(4)}, "lacks lru's parameter"),
    ({"nu": np.full(4, np.nan), "theta": np.zeros(4), "gamma_log": np.zeros(4), "B_re": np.zeros((4, 3)),
      "B_im": np.zeros((4, 3))}, "NaN or inf"),
])
def test_named_weights_errors_are_one_line(tmp_path, capsys, arrays, message):
    from gradflow._cli import main

    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(gf.GradflowError, match=message):
        gf.load_weights("lru", str(path))
    assert main(["flow", "lru", "--weights", str(path), "--steps", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradflow: error:") and err.count("\n") == 1 and "Traceback" not in err


def test_lru_block_path_takes_the_every_step_loss():
    """loss="every" through the per-unit block path (it once raised a shape error): the gradient
    curve equals the dense sweep's reverse accumulation with the same head and targets."""
    T, K = 6, 3
    net = _lru(2, seed=3)
    x = gf.random_inputs(T, M, batch=2, seed=2)
    rng = np.random.default_rng(0)
    V, c = rng.standard_normal((K, 2)), rng.standard_normal(K)
    y = rng.integers(0, K, size=(T, 2))
    fast = gf.gradient_flow(net, x, loss="every", head=(V, c), targets=y, lyapunov=False)
    dense = gf.gradient_flow(net, x, loss="every", head=(V, c), targets=y, structure="dense",
                             spectral="svd", lyapunov=False)
    assert np.abs(np.asarray(fast.full["log10_grad_norm"]) - np.asarray(dense.full["log10_grad_norm"])).max() < 1e-12
