"""The matrix-free mode (issue 13) against independent oracles.

* the Jacobian operator yᵀ ↦ yᵀJ_t, x ↦ J_t x: PyTorch autograd Jacobians of ``nn.LSTMCell``, and
  central finite differences of one step for the GRU and the tanh RNN;
* the curves: the products P_k = J_T ⋯ J_{k+1} chained in this test from PyTorch's Jacobians,
  their norms by ``numpy.linalg`` (SVD, Frobenius) and ∂L/∂s_k = g_Tᵀ P_k written out here;
* float32: the float64 run, and the log10 norms far below float32's smallest number.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import gradflow as gf
from gradflow._numeric.matrix_free import JacobianOperator, matrix_free_lyapunov, sketch_sweep
from gradflow._numeric.size_guard import MATRIX_FREE_ABOVE, choose_mode

torch = pytest.importorskip("torch")
from _torch_oracle import torch_lstm_jacobians  # noqa: E402


@pytest.fixture(scope="module")
def lstm_case():
    """LSTM n = 8 (N = 16), T = 40, one sequence; P_k from PyTorch's Jacobians, chained here."""
    net = gf.network("lstm", 8, 4, seed=3, forget_bias=1.0)
    x = gf.random_inputs(40, 4, seed=5)
    Js = torch_lstm_jacobians(net, x)
    T, N, n = Js.shape[0], Js.shape[1], 8
    P, prods = np.eye(N), [None] * T
    for k in range(T - 1, -1, -1):  # P_k = P_{k+1} J_{k+1}; Js[t − 1] is J_t
        P = P @ Js[k]
        prods[k] = P.copy()
    g = np.concatenate([np.ones(n), np.zeros(n)])  # L = Σ h_T
    exact = {
        "fro": np.array([np.log10(np.linalg.norm(p)) for p in prods]),
        "two": np.array([np.log10(np.linalg.norm(p, 2)) for p in prods]),
        "grad": np.array([np.log10(np.linalg.norm(g @ p)) for p in prods]),
        "c_fro": np.array([np.log10(np.linalg.norm(p[n:, n:])) for p in prods]),
        "c_two": np.array([np.log10(np.linalg.norm(p[n:, n:], 2)) for p in prods]),
        "c_grad": np.array([np.log10(np.linalg.norm((g @ p)[n:])) for p in prods]),
    }
    return net, x, Js, exact


def test_operator_matches_pytorch_jacobians(lstm_case):
    net, x, Js, _ = lstm_case
    traj = net.unroll(x)
    op = JacobianOperator(net)
    Y = np.random.default_rng(0).standard_normal((1, 5, net.state_size))
    for t in (1, 17, 40):
        env = net.step_env(traj, t)
        J = Js[t - 1]
        np.testing.assert_allclose(op.vjp(Y, env)[0], Y[0] @ J, rtol=0, atol=1e-13)
        np.testing.assert_allclose(op.jvp(Y, env)[0], (J @ Y[0].T).T, rtol=0, atol=1e-13)


@pytest.mark.parametrize("cell", ["gru", "tanh-rnn"])
def test_operator_matches_finite_differences(cell):
    net = gf.network(cell, 5, 3, seed=2)
    x = gf.random_inputs(4, 3, seed=1)
    traj = net.unroll(x)
    t, h = 3, 1e-6
    s, xt = traj.states[t - 1], traj.inputs[t - 1]
    N = net.state_size
    J = np.empty((N, N))
    for j in range(N):  # column j of J_t by central differences of one step
        e = np.zeros((1, N))
        e[0, j] = h
        J[:, j] = (net.step(s + e, xt)[0] - net.step(s - e, xt)[0])[0] / (2 * h)
    op = JacobianOperator(net)
    Y = np.random.default_rng(1).standard_normal((1, 3, N))
    env = net.step_env(traj, t)
    np.testing.assert_allclose(op.vjp(Y, env)[0], Y[0] @ J, rtol=0, atol=1e-8)
    np.testing.assert_allclose(op.jvp(Y, env)[0], (J @ Y[0].T).T, rtol=0, atol=1e-8)


def test_gradient_chain_is_exact(lstm_case):
    net, x, _, exact = lstm_case
    f = gf.gradient_flow(net, x, mode="matrix-free", lyapunov=False)
    assert f.mode == "matrix-free"
    np.testing.assert_allclose(f.full.log10_grad_norm[0], exact["grad"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(f.cell_state.log10_grad_norm[0], exact["c_grad"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_error_bars_cover_the_exact_frobenius_curve(lstm_case, probe):
    """With b = 8 probe blocks, (estimate − exact)/se is roughly Student-t with 7 degrees of
    freedom, whose two-sided 0.1 % quantile is 5.41: at most 5.5 standard errors at every k
    (the k are strongly correlated: the same probes carry through all of them). The standard
    errors must also be small, or the covering would say nothing. r = 8 probes on the 16 rows of
    the whole product: a true sketch (with r ≥ the rows the estimate is exact, see
    test_matrix_free_exact_part.py); on the 8 rows of the c block they may span them: exact."""
    net, x, _, exact = lstm_case
    traj = net.unroll(x)
    N, n = net.state_size, net.hidden
    g = gf.loss_gradient(net, traj)
    blocks = {"full": (slice(0, N), slice(0, N)), "c": (slice(n, N), slice(n, N))}
    res = sketch_sweep(net, traj, g, blocks, probes=8, probe_blocks=8, probe=probe, seed=11)
    for name, key in (("full", "fro"), ("c", "c_fro")):
        est, se = res[name].log10_norm_fro[0], res[name].log10_norm_fro_se[0]
        err = np.abs(est - exact[key])
        said = res[name].fro_exact
        assert np.all(se[said] == 0) and np.all(err[said] < 1e-12)
        assert np.all(err[~said] <= 5.5 * se[~said]), (name, np.max(err[~said] / se[~said]))
        assert np.all(est >= res[name].log10_norm_fro_low[0])
    est, se = res["full"].log10_norm_fro[0], res["full"].log10_norm_fro_se[0]
    err = np.abs(est - exact["fro"])
    assert not res["full"].fro_exact.any() and np.all(se > 0)
    assert np.median(se) < 0.1 and np.max(err) < 0.3
    assert np.max(err / se) > 0.05  # the bars are not absurdly wide
    # the c→c block of P_{T−1} is diag(f_T): Rademacher probes measure a diagonal exactly
    if probe == "rademacher":
        assert res["c"].log10_norm_fro_se[0, -1] == 0 and res["c"].fro_exact[-1]
        assert abs(res["c"].log10_norm_fro[0, -1] - exact["c_fro"][-1]) < 1e-12


def test_band_contains_the_exact_spectral_norm(lstm_case):
    net, x, _, exact = lstm_case
    traj = net.unroll(x)
    N, n = net.state_size, net.hidden
    g = gf.loss_gradient(net, traj)
    blocks = {"full": (slice(0, N), slice(0, N)), "c": (slice(n, N), slice(n, N))}
    res = sketch_sweep(net, traj, g, blocks, probes=8, probe_blocks=2, seed=4)  # r = 8 < N: a true sketch
    for name, key in (("full", "two"), ("c", "c_two")):
        c = res[name]
        assert np.all(c.log10_norm_2_sketch[0] <= exact[key] + 1e-12)  # certified: σ_max(QᵀP) ≤ ‖P‖₂
        assert np.all(c.log10_norm_2_low[0] <= exact[key] + 1e-12)
        assert np.all(exact[key] <= c.log10_norm_2_high[0] + 1e-12)  # where the probes span the rows: equal
        if name == "full":  # 8 probes on 16 rows: a band of some width
            assert np.all(c.log10_norm_2_low[0] < c.log10_norm_2_high[0])
        else:  # 8 probes span the c→c block's 8 rows: the band is the spectral norm itself
            np.testing.assert_allclose(c.log10_norm_2_high[0], exact[key], rtol=0, atol=1e-12)
            np.testing.assert_array_equal(c.log10_norm_2_low[0], c.log10_norm_2_high[0])
    # with at least N probes Q spans everything: the sketch bound is the spectral norm itself
    full = sketch_sweep(net, traj, g, {"full": blocks["full"]}, probes=32, seed=4)["full"]
    np.testing.assert_allclose(full.log10_norm_2_sketch[0], exact["two"], rtol=0, atol=1e-10)


def test_lyapunov_matches_qr_of_pytorch_jacobians(lstm_case):
    net, x, Js, _ = lstm_case
    traj = net.unroll(x)
    N, r = net.state_size, 3
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((N, r)))[0]  # the documented start
    acc = np.zeros(r)
    for J in Js:
        Q, R = np.linalg.qr(J @ Q)
        acc += np.log(np.abs(np.diag(R)))
    want = np.sort(acc / len(Js))[::-1]
    np.testing.assert_allclose(matrix_free_lyapunov(net, traj, r)[0], want, rtol=0, atol=1e-10)


def test_float32_against_float64_without_underflow():
    """A tanh RNN with small weights: ‖∂L/∂s_0‖ ~ 1e−150 at T = 400, far below float32's 1e−45.
    Rescaled every step, the float32 chain agrees with float64 to float32's accuracy."""
    net = gf.network("tanh-rnn", 6, 3, seed=0, gain=0.3)
    x = gf.random_inputs(400, 3, seed=0)
    f64 = gf.gradient_flow(net, x, mode="matrix-free", lyapunov=2, bound=False)
    f32 = gf.gradient_flow(net, x, mode="matrix-free", dtype="float32", lyapunov=2, bound=False)
    assert f32.dtype == "float32" and f64.dtype == "float64"
    g64, g32 = f64.full.log10_grad_norm[0], f32.full.log10_grad_norm[0]
    assert g64[0] < -100 and np.all(np.isfinite(g32))
    assert np.max(np.abs(g32 - g64)) < 1e-4
    assert np.max(np.abs(f32.lyapunov - f64.lyapunov)) < 1e-5
    # the exact sweep in float32 (rescaled when ‖P‖_F leaves [1e−9.5, 1e9.5])
    e64 = gf.gradient_flow(net, x[:200], lyapunov=False, bound=False)
    e32 = gf.gradient_flow(net, x[:200], dtype="float32", lyapunov=False, bound=False)
    assert e32.dtype == "float32" and e64.full.log10_norm_2[0, 0] < -45
    for key in ("log10_norm_2", "log10_norm_fro", "log10_grad_norm"):
        assert np.max(np.abs(e32.full[key] - e64.full[key])) < 1e-4


def test_mode_is_chosen_by_size_and_said():
    lstm = gf.get_cell("lstm")
    assert choose_mode(lstm, 8, 8, 10) == "exact"
    assert choose_mode(lstm, MATRIX_FREE_ABOVE // 2 + 1, 8, 10) == "matrix-free"
    assert choose_mode(lstm, 4096, 8, 10, mode="exact") == "exact"
    net = gf.network("lstm", 4, 2, seed=0)
    x = gf.random_inputs(3, 2, seed=0)
    rec = gf.gradient_flow(net, x).to_json()
    assert rec["mode"] == "exact" and "log10_norm_2" in rec["curve"][0]
    rec = gf.gradient_flow(net, x, mode="matrix-free", probes=16).to_json()
    assert rec["mode"] == "matrix-free" and rec["probes"] == 16
    c0 = rec["curve"][0]
    assert "log10_norm_2" not in c0 and {"log10_norm_fro_se", "log10_norm_2_low", "log10_norm_2_high"} <= set(c0)
    json.dumps(rec, allow_nan=False)


@pytest.mark.parametrize("kwargs, words", [
    ({"mode": "sketch"}, "mode must be one of"),
    ({"dtype": "float16"}, "dtype must be one of"),
    ({"mode": "matrix-free", "probes": 12}, "multiple of probe_blocks"),
    ({"mode": "matrix-free", "probes": 1}, "probes must be"),
])
def test_bad_arguments(kwargs, words):
    net = gf.network("lstm", 4, 2, seed=0)
    with pytest.raises(gf.GradflowError, match=words):
        gf.gradient_flow(net, gf.random_inputs(3, 2, seed=0), **kwargs)


def _cli(capsys, *args):
    from gradflow._cli import main

    code = main(["flow", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_mode_and_float32(capsys):
    base = ["lstm", "--hidden", "4", "--input", "2", "--steps", "3"]
    code, out, err = _cli(capsys, *base, "--mode", "matrix-free", "--probes", "16", "--float32")
    assert code == 0, err
    assert "mode: matrix-free (float32; 16 probe vectors)" in out
    code, out, _ = _cli(capsys, *base, "--json")
    assert json.loads(out)["mode"] == "exact"
    code, out, err = _cli(capsys, *base, "--mode", "exact", "--probes", "16")
    assert code == 2 and err.startswith("gradflow: error: --probes has no effect")
    code, out, err = _cli(capsys, *base, "--probes", "16")  # auto: exact at this size
    assert code == 2 and err.startswith("gradflow: error: --probes has no effect: --mode auto")


def test_memory_estimate_lets_matrix_free_runs_through():
    from gradflow._numeric.size_guard import flow_bytes, matrix_free_bytes

    lstm = gf.get_cell("lstm")
    exact, free = flow_bytes(lstm, 4096, 4096, 1000), matrix_free_bytes(lstm, 4096, 4096, 1000)
    assert exact - free > 4 * 8192**2 * 8  # no (N, N) buffers: at least 4 of the 8 counted are saved
    # the peak RSS measured by benchmarks/bench_matrix_free.py (README there): 2691 MiB at
    # n = m = 4096, T = 100, and 306 MiB at n = m = 1024, T = 1000 (~80 MiB of it the interpreter)
    assert 0.8 * 2691 <= matrix_free_bytes(lstm, 4096, 4096, 100) / 2**20 <= 1.5 * 2691
    assert 0.6 * 306 <= matrix_free_bytes(lstm, 1024, 1024, 1000) / 2**20 <= 1.5 * 306


def test_views_refuse_the_unmeasured_spectral_curve():
    net = gf.network("lstm", 4, 2, seed=0)
    f = gf.gradient_flow(net, gf.random_inputs(5, 2, seed=0), mode="matrix-free", probes=16, carousel=True)
    for call in (lambda: gf.decay_table(f), lambda: gf.plot_decay(f), lambda: gf.plot_carousel(f)):
        with pytest.raises(gf.GradflowError, match="no spectral-norm curve"):
            call()
    assert np.isfinite(gf.decay_table(f, norm="fro")[0]["rate"])
