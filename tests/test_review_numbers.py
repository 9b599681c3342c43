"""A researcher's review of the numbers gradflow prints: each test pins one defect found by
using the library as a reader who cites the numbers, against an oracle independent of the code
(PyTorch autograd, numpy.linalg on products chained in the test, equations written here).
"""

from __future__ import annotations

import numpy as np
import pytest

import gradflow as gf
from gradflow._numeric.flow import Flow
from gradflow._numeric.matrix_free import sketch_sweep

torch = pytest.importorskip("torch")


@pytest.fixture
def small_threshold(monkeypatch):
    """gradient_flow's auto mode goes matrix-free above N = 8 instead of 1024: the same code path
    as a real-size model, at sizes a test can afford."""
    from gradflow._numeric import size_guard

    monkeypatch.setattr(size_guard, "MATRIX_FREE_ABOVE", 8)


def _torch_rnn_products(net, x):
    """log10 ‖∂h_T/∂h_k‖_F (B, T) of a tanh ``nn.RNNCell`` holding ``net``'s weights, the Jacobians
    by PyTorch autograd and chained here."""
    n, m = net.hidden, net.input
    mod = torch.nn.RNNCell(m, n).double()
    mod.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in gf.to_state_dict(net.weights).items()})
    mod.requires_grad_(False)
    X = torch.from_numpy(np.asarray(x))
    T, B = X.shape[0], X.shape[1]
    out = np.zeros((B, T))
    for b in range(B):
        h, Js = torch.zeros(n, dtype=torch.float64), []
        for t in range(T):
            Js.append(torch.autograd.functional.jacobian(lambda v, t=t, b=b: mod(X[t, b][None], v[None])[0], h).numpy())
            h = mod(X[t, b][None], h[None])[0]
        P = np.eye(n)
        for k in range(T - 1, -1, -1):  # P_k = P_{k+1} J_{k+1}
            P = P @ Js[k]
            out[b, k] = np.log10(np.linalg.norm(P))
    return out


# -- defect 1: the matrix-free ±se of a batch mean was se/√B although the probes are shared -----

def test_matrix_free_se_of_identical_sequences_does_not_shrink_with_the_batch():
    """B copies of one sequence give B identical estimates (the probes are the same for every
    sequence): their mean is exactly as uncertain as one estimate. gradflow printed se/√B.
    n = 24 rows against 16 probes: a true estimate (16 probes would span 6 rows: exact, se = 0)."""
    net = gf.network("tanh-rnn", 24, 3, seed=2)
    x1 = gf.random_inputs(5, 3, batch=1, seed=2)
    one = gf.gradient_flow(net, x1, mode="matrix-free", lyapunov=False, probes=16).to_json()
    many = gf.gradient_flow(net, np.repeat(x1, 16, axis=1), mode="matrix-free", lyapunov=False,
                            probes=16).to_json()
    for a, b in zip(one["curve"], many["curve"], strict=True):
        assert b["log10_norm_fro"] == pytest.approx(a["log10_norm_fro"], abs=1e-12)
        assert a["log10_norm_fro_se"] > 0
        assert b["log10_norm_fro_se"] == pytest.approx(a["log10_norm_fro_se"], rel=1e-9)


def test_matrix_free_batch_mean_se_is_honest_against_autograd():
    """Over independent probe draws the batch-mean estimate of log10 ‖∂h_T/∂h_k‖_F misses the
    exact batch mean (PyTorch autograd) by about one standard error (rms z ≈ 1.18 for Student's t
    with 7 degrees of freedom); with se/√B, B = 12, it missed by about 3 standard errors.
    n = 24 rows against 16 probes: a true estimate (16 probes would span 6 rows: exact, se = 0)."""
    net = gf.network("tanh-rnn", 24, 3, seed=4)
    x = gf.random_inputs(4, 3, batch=12, seed=4)
    exact = _torch_rnn_products(net, x).mean(axis=0)
    traj = net.unroll(x)
    N = net.state_size
    z = []
    for s in range(40):
        c = sketch_sweep(net, traj, np.ones((12, N)), {"full": (slice(0, N), slice(0, N))},
                         probes=16, seed=7919 * s)["full"]
        flow = Flow("tanh-rnn", 24, 4, 12, gf.Curves(c.log10_norm_fro, c.log10_norm_fro, c.log10_grad_norm),
                    sketch={"full": c}, mode="matrix-free")
        rec = flow.to_json()["curve"]
        z.append([(r["log10_norm_fro"] - e) / r["log10_norm_fro_se"] for r, e in zip(rec, exact, strict=True)])
    rms = float(np.sqrt(np.mean(np.square(z))))
    assert 0.6 < rms < 1.8, rms


# -- defect 2: decay_rate of the per-sequence curves a Flow holds (B, T) was a TypeError -------

def test_decay_rate_of_a_batch_of_curves_is_the_mean_slope():
    """Curves written here as exact lines y_b(k) = a_b (T − k) + c_b: the rate of the batch is
    the mean of the a_b, also when B = T (where a column-wise fit would give T numbers)."""
    T = 5
    lag = T - np.arange(T)
    a, c = np.array([-0.5, -0.1, -0.3, 0.2, -0.4]), np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    curves = a[:, None] * lag + c[:, None]  # (B = T = 5, T)
    assert gf.decay_rate(curves) == pytest.approx(a.mean(), abs=1e-12)
    assert gf.decay_rate(curves[:2]) == pytest.approx(a[:2].mean(), abs=1e-12)
    net = gf.network("tanh-rnn", 3, 2, seed=0)
    flow = gf.gradient_flow(net, gf.random_inputs(4, 2, batch=4, seed=0), lyapunov=False)
    per_seq = [gf.decay_rate(row) for row in flow.full.log10_norm_2]
    assert gf.decay_rate(flow.full.log10_norm_2) == pytest.approx(np.mean(per_seq), abs=1e-12)
    for bad in ([], np.zeros((1, 1, 3))):
        with pytest.raises(gf.GradflowError, match="shape"):
            gf.decay_rate(bad)


# -- defect 3: a sweep point above N = 1024 (run matrix-free) failed: "the curve contains NaN" --

def test_sweep_point_run_matrix_free_reports_what_it_measured(small_threshold):
    """A tanh-RNN point with n = 12 > 8 (auto mode runs it matrix-free, as it runs n > 1024): the
    row has no ‖·‖₂ rate (None, not a failure); its exact gradient rate and estimated Frobenius
    rate match the products written out here, h_t = tanh(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh),
    J_t = diag(1 − h_t²) W_hh."""
    n, T = 12, 4
    (point,) = gf.grid_points(["tanh-rnn"], gains=[1.0], hidden=[n], steps=[T], seeds=[0], input=1, batch=1)
    row = gf.measure_point(point)
    assert row["rate"] is None and row["log10_norm_k0"] is None and row["rate_cell_state"] is None
    net = gf.network("tanh-rnn", n, 1, init=point.init, seed=0, gain=1.0)
    fro, grad = _tanh_products(net, gf.random_inputs(T, 1, batch=1, seed=0)[:, 0], "fro", grad=True)
    lag = T - np.arange(T)
    assert row["rate_grad"] == pytest.approx(np.polyfit(lag, grad, 1)[0], abs=1e-9)
    assert row["rate_fro"] == pytest.approx(np.polyfit(lag, fro, 1)[0], abs=0.03)


# -- defect 4: flow_spread (the report's decay band) above N = 1024 failed: "curves contain NaN" --

def _tanh_products(net, x, norm=2, grad=False):
    """log10 ‖∂h_T/∂h_k‖ (T,) of one sequence x (T, m) (``norm`` 2 or "fro"; with ``grad`` also
    log10 ‖1ᵀ ∂h_T/∂h_k‖), the tanh RNN's products written out here."""
    sd = {k: np.asarray(v) for k, v in gf.to_state_dict(net.weights).items()}
    n, T = sd["weight_hh"].shape[0], x.shape[0]
    h, Js = np.zeros(n), []
    for t in range(T):
        h = np.tanh(sd["weight_ih"] @ x[t] + sd["bias_ih"] + sd["weight_hh"] @ h + sd["bias_hh"])
        Js.append((1 - h * h)[:, None] * sd["weight_hh"])
    P, out, g = np.eye(n), np.zeros(T), np.zeros(T)
    for k in range(T - 1, -1, -1):
        P = P @ Js[k]
        out[k] = np.log10(np.linalg.norm(P, 2 if norm == 2 else None))
        g[k] = np.log10(np.linalg.norm(np.ones(n) @ P))
    return (out, g) if grad else out


def test_flow_spread_measures_the_spectral_norm_above_the_matrix_free_threshold(small_threshold):
    """tanh RNN above the threshold (where gradient_flow's auto mode goes matrix-free and has no
    ‖·‖₂): the spread's curve is ‖∂h_T/∂h_k‖₂ of the products written out here."""
    sp = gf.flow_spread("tanh-rnn", 12, 2, 5, seeds=1, batch=1)
    net = gf.network("tanh-rnn", 12, 2, seed=0)
    ref = _tanh_products(net, gf.random_inputs(5, 2, batch=1, seed=0)[:, 0])
    np.testing.assert_allclose(sp.median, ref, atol=1e-9)


# -- defect 5: singular_values read k = 2.7 as k = 2 and k = True as k = 1, silently -----------

@pytest.mark.parametrize("ks", [[2.7], [True], [0.5, 3]])
def test_singular_values_refuses_a_k_that_is_not_an_integer(ks):
    net = gf.network("tanh-rnn", 3, 2, seed=0)
    with pytest.raises(gf.GradflowError, match="integer"):
        gf.singular_values(net, gf.random_inputs(4, 2, seed=0), ks)


def test_singular_values_of_one_k_given_as_an_int():
    """σ_i of ∂h_T/∂h_2 = J_4 J_3 for one k given as a plain int (was a TypeError), against the
    products written out here (largest singular value: ‖·‖₂)."""
    net = gf.network("tanh-rnn", 3, 2, seed=0)
    x = gf.random_inputs(4, 2, seed=0)
    sv = gf.singular_values(net, x, 2)
    assert list(sv) == [2]
    assert sv[2][0] == pytest.approx(_tanh_products(net, x[:, 0])[2], abs=1e-9)


# -- defect 6: `flow --carousel --mode matrix-free` printed no carousel column -----------------

def test_matrix_free_table_prints_the_carousel_asked_for(capsys):
    """The carousel ∂c_T/∂c_k = diag(f_{k+1} ⊙ ⋯ ⊙ f_T): its ‖·‖_F from the forget gates of an
    ``nn.LSTMCell`` holding the weights, f_t = σ(W_if x_t + b_if + W_hf h_{t−1} + b_hf) written
    here (Rademacher probes make the estimate of a diagonal block exact)."""
    from gradflow._cli import main

    n, m, T = 2, 2, 3
    assert main(["flow", "lstm", "--hidden", str(n), "--steps", str(T), "--carousel", "--mode",
                 "matrix-free", "--no-lyapunov"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, s in enumerate(lines) if s.split()[:2] == ["k", "T-k"])
    assert "carousel_F" in lines[head]
    col = lines[head].split().index("carousel_F") - 2  # "||.||_2 low" is two words
    printed = [float(s.split()[col]) for s in lines[head + 1:head + 1 + T]]
    net = gf.network("lstm", n, m, seed=0)
    sd = {k: torch.tensor(np.asarray(v)) for k, v in gf.to_state_dict(net.weights).items()}
    mod = torch.nn.LSTMCell(m, n).double()
    mod.load_state_dict(sd)
    X = torch.tensor(gf.random_inputs(T, m, seed=0)[:, 0])
    h = c = torch.zeros(1, n, dtype=torch.float64)
    fs = []
    with torch.no_grad():
        for t in range(T):
            f = torch.sigmoid(X[t] @ sd["weight_ih"][n:2 * n].T + sd["bias_ih"][n:2 * n]
                              + h @ sd["weight_hh"][n:2 * n].T + sd["bias_hh"][n:2 * n])
            fs.append(f[0].numpy())
            h, c = mod(X[t][None], (h, c))
    for k in range(T):
        d = np.prod(fs[k:], axis=0)
        assert printed[k] == pytest.approx(np.log10(np.linalg.norm(d)), abs=1e-4)


# -- defect 7: `flow --loss sum --targets FILE` ignored the targets silently (the API refuses) --

def test_cli_loss_sum_refuses_targets(tmp_path, capsys):
    from gradflow._cli import main

    np.save(tmp_path / "t.npy", np.array([1]))
    code = main(["flow", "tanh-rnn", "--hidden", "3", "--steps", "3", "--loss", "sum",
                 "--targets", str(tmp_path / "t.npy"), "--no-lyapunov"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("gradflow: error: --targets has no effect with --loss sum")
    with pytest.raises(gf.GradflowError, match="no head and no targets"):  # as the API says
        gf.gradient_flow(gf.network("tanh-rnn", 3, 3), gf.random_inputs(3, 3), loss="sum",
                         targets=np.array([1]))


# -- defect 8: the training Recorder's TensorBoard scalars crashed (KeyError 'log10_norm_2') on
#    a module recorded matrix-free (nn.LSTM with hidden ≥ 513: N > 1024) ---------------------------

def test_recorder_scalars_of_a_matrix_free_recording(small_threshold):
    """The scalars are written under the names of what was measured; log10 ‖∂L/∂s_0‖ for
    L = Σ h_T equals PyTorch autograd's gradient at the initial state (h_0, c_0)."""
    from gradflow._numeric.training import Recorder

    class Writer:
        def __init__(self):
            self.scalars = {}

        def add_scalar(self, tag, value, step):
            self.scalars[tag] = value

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(1, 6).double()  # N = 12 > 8
    x = torch.randn(3, 1, 1, dtype=torch.float64)
    w = Writer()
    rec = Recorder(lstm, every=1, inputs=x, tensorboard=w).record(0)
    assert rec["mode"] == "matrix-free"
    assert {"gradflow/log10_norm_fro_k0", "gradflow/decay_per_step_fro"} <= set(w.scalars)
    assert "gradflow/log10_norm_2_k0" not in w.scalars and "gradflow/decay_per_step" not in w.scalars
    h0 = torch.zeros(1, 1, 6, dtype=torch.float64, requires_grad=True)
    c0 = torch.zeros(1, 1, 6, dtype=torch.float64, requires_grad=True)
    y, _ = lstm(x, (h0, c0))
    y[-1].sum().backward()
    ref = 0.5 * np.log10(float((h0.grad ** 2).sum() + (c0.grad ** 2).sum()))
    assert w.scalars["gradflow/log10_grad_norm_k0"] == pytest.approx(ref, abs=1e-9)


def test_phase_grid_measures_the_spectral_norm_above_the_matrix_free_threshold(small_threshold):
    """phase_grid reads ‖·‖₂; above the threshold auto mode went matrix-free and the grid failed
    ("the curve contains NaN"). The rate is the least-squares slope of log10 ‖∂h_T/∂h_k‖₂ of the
    products written out here against T − k."""
    g = gf.phase_grid("tanh-rnn", hidden=12, input=2, steps=5, scales=[1.0], batch=1)
    net = gf.network("tanh-rnn", 12, 2, init="orthogonal", seed=0, gain=1.0)
    ref = _tanh_products(net, gf.random_inputs(5, 2, batch=1, seed=0)[:, 0])
    assert g.rates[0, 0] == pytest.approx(np.polyfit(5 - np.arange(5), ref, 1)[0], abs=1e-9)


# -- defect 9: cell_state_paths (the report's path figure and its rates) underflowed to −∞ -----

def test_cell_state_paths_far_below_float64s_smallest_number(monkeypatch):
    """LSTM n = 2, forget bias −2, T = 500: ‖∂c_T/∂c_0‖₂ ≈ 1e−347 and the carousel ∏ f ≈ 1e−459
    (below 4.9e−324: they read as an exact 0, −∞, and the report printed a rate of −∞). Oracle:
    PyTorch autograd Jacobians of nn.LSTMCell chained in mpmath at 30 digits."""
    mpmath = pytest.importorskip("mpmath")
    from _torch_oracle import torch_lstm_jacobians

    monkeypatch.setattr(mpmath.mp, "dps", 30)  # restored after the test (others read mp.dps)
    n, T = 2, 500
    net = gf.network("lstm", n, 2, seed=1, forget_bias=-2.0)
    x = gf.random_inputs(T, 2, seed=1)
    paths = gf.cell_state_paths(net, x)
    Js = torch_lstm_jacobians(net, x)
    P = mpmath.eye(2 * n)
    ks = {0, 1, T // 2}
    for k in range(T - 1, -1, -1):
        P = P * mpmath.matrix(Js[k].tolist())
        if k in ks:
            blk = P[n:, n:]
            fro2 = sum(blk[i, j] ** 2 for i in range(n) for j in range(n))
            det = blk[0, 0] * blk[1, 1] - blk[0, 1] * blk[1, 0]
            s2 = (fro2 + mpmath.sqrt(fro2 ** 2 - 4 * det ** 2)) / 2  # σ_max² of a 2 × 2 matrix
            assert paths.block[0, k] == pytest.approx(float(mpmath.log10(s2) / 2), abs=1e-8)
            car = max(mpmath.fprod(mpmath.mpf(float(Js[t][n + i, n + i])) for t in range(k, T)) for i in range(n))
            assert paths.carousel[0, k] == pytest.approx(float(mpmath.log10(car)), abs=1e-8)
    assert paths.block[0, 0] < -330 and paths.carousel[0, 0] < -330
    assert np.all(np.isfinite(paths.through_h[0, :-1])) and paths.through_h[0, -1] == -np.inf  # lag 1: diag(f_T)


# -- defect 10: stacked_flow's ‖∂L/∂s_k‖ (whole stack and per layer) underflowed to −∞ (JSON null,
#    "an exact 0") where the products ‖∂s_T/∂s_k‖ beside them were kept at 1e−400 ----------------

def test_stacked_gradients_far_below_float64s_smallest_number(monkeypatch):
    """nn.RNN (tanh, 2 layers, n = 3, recurrent weights scaled by 0.12), T = 400, L = Σ y_T:
    ∂L/∂s_0 = 1ᵀ J_T ⋯ J_1 with the whole-stack J_t by torch.func.jacrev of the step written
    here, chained in mpmath; its layer blocks are ∂L/∂h^(l)_0 (no layer above reads s_0)."""
    mpmath = pytest.importorskip("mpmath")
    monkeypatch.setattr(mpmath.mp, "dps", 30)  # restored after the test (others read mp.dps)
    torch.manual_seed(3)
    mod = torch.nn.RNN(3, 3, num_layers=2).double()
    with torch.no_grad():
        mod.weight_hh_l0.mul_(0.12)
        mod.weight_hh_l1.mul_(0.12)
    T = 400
    x = torch.randn(T, 1, 3, dtype=torch.float64)
    p = {k: v.detach() for k, v in mod.state_dict().items()}

    def step(s, xt):
        h0 = torch.tanh(xt @ p["weight_ih_l0"].T + p["bias_ih_l0"] + s[:3] @ p["weight_hh_l0"].T + p["bias_hh_l0"])
        h1 = torch.tanh(h0 @ p["weight_ih_l1"].T + p["bias_ih_l1"] + s[3:] @ p["weight_hh_l1"].T + p["bias_hh_l1"])
        return torch.cat([h0, h1])

    s, Js = torch.zeros(6, dtype=torch.float64), []
    for t in range(T):
        Js.append(torch.func.jacrev(step)(s, x[t, 0]).numpy())
        s = step(s, x[t, 0])
    g = mpmath.matrix([[0, 0, 0, 1, 1, 1]])
    for J in reversed(Js):
        g = g * mpmath.matrix(J.tolist())

    def log10_norm(v):
        return float(mpmath.log10(mpmath.sqrt(sum(v[0, i] ** 2 for i in range(v.cols)))))

    net = gf.stacked_network("tanh-rnn", weights=mod)
    flow = gf.stacked_flow(net, x.numpy(), lyapunov=False)
    ref = log10_norm(g)
    assert ref < -330
    assert flow.full.log10_grad_norm[0, 0] == pytest.approx(ref, abs=1e-8)
    for lf in flow.layers:
        part = mpmath.matrix([[g[0, 3 * lf.layer + i] for i in range(3)]])
        assert lf.log10_grad_h[0, 0] == pytest.approx(log10_norm(part), abs=1e-8)


def test_cli_spectral_svd_is_refused_where_it_has_no_effect(capsys):
    """Matrix-free, ‖·‖₂ is a band, not computed: --spectral svd was accepted and ignored."""
    from gradflow._cli import main

    code = main(["flow", "lstm", "--hidden", "3", "--steps", "3", "--mode", "matrix-free",
                 "--spectral", "svd", "--no-lyapunov"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "--spectral svd has no effect" in err


# -- defect 11: auto mode ran the LRU (per-unit 2 × 2 blocks) matrix-free above N = 1024, an
#    estimate and a band, although its exact block path is O(T·n) and faster --------------------

def test_auto_mode_runs_block_structured_cells_exactly_at_any_size(small_threshold):
    """LRU, n = 6 (N = 12 above the lowered threshold): each unit's Jacobian is ρ_i times a
    rotation (ρ_i = exp(−exp ν_i), from the recurrence as printed by ``gradflow derive lru``), so
    ‖∂s_T/∂s_k‖₂ = max_i ρ_i^{T−k} and ‖·‖_F² = 2 Σ_i ρ_i^{2(T−k)}."""
    net = gf.network("lru", 6, 2, seed=0)
    T = 5
    flow = gf.gradient_flow(net, gf.random_inputs(T, 2, seed=0), lyapunov=False)
    assert flow.mode == "exact"
    rho = np.exp(-np.exp(np.asarray(net.weights.arrays["\\nu"])))
    lag = T - np.arange(T)
    np.testing.assert_allclose(flow.full.log10_norm_2[0], lag * np.log10(rho.max()), atol=1e-12)
    np.testing.assert_allclose(flow.full.log10_norm_fro[0],
                               0.5 * np.log10(2 * (rho[None, :] ** (2 * lag[:, None])).sum(axis=1)), atol=1e-12)


# -- defect 12: a matrix-free flow had no ‖∂L/∂h_k‖, ‖∂L/∂c_k‖ (JSON log10_grad_norm_h/_c, the
#    table's columns): the exact mode has them, and the schema lists them for such cells --------

@pytest.mark.parametrize("loss", ["last", "every"])
def test_matrix_free_gradient_parts_against_autograd(loss):
    """‖∂L/∂h_k‖ and ‖∂L/∂c_k‖ (c_k with h_k held fixed: c + 0 after the cell) of a cross-entropy
    loss on an nn.LSTMCell holding the weights, by PyTorch autograd."""
    n, m, T, B, K = 3, 2, 4, 2, 3
    net = gf.network("lstm", n, m, seed=2)
    x = gf.random_inputs(T, m, batch=B, seed=2)
    rng = np.random.default_rng(2)
    V, c0 = rng.standard_normal((K, n)), rng.standard_normal(K)
    targets = rng.integers(0, K, (T, B)) if loss == "every" else rng.integers(0, K, B)
    flow = gf.gradient_flow(net, x, mode="matrix-free", loss=loss, head=(V, c0), targets=targets, lyapunov=False)
    assert flow.mode == "matrix-free"
    rec = flow.to_json()["curve"]
    mod = torch.nn.LSTMCell(m, n).double()
    mod.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in gf.to_state_dict(net.weights).items()})
    X, Vt, ct = torch.tensor(x), torch.tensor(V), torch.tensor(c0)
    h = torch.zeros(B, n, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(B, n, dtype=torch.float64, requires_grad=True)
    hs, cs, L = [h], [c], 0
    for t in range(T):
        h, c = mod(X[t], (h, c))
        c = c + 0  # ∂L/∂c_k with h_k held fixed, as gradflow's state (h, c)
        h.retain_grad()
        c.retain_grad()
        hs.append(h)
        cs.append(c)
        if loss == "every":
            L = L + torch.nn.functional.cross_entropy(h @ Vt.T + ct, torch.tensor(targets[t]), reduction="sum")
    if loss == "last":
        L = torch.nn.functional.cross_entropy(h @ Vt.T + ct, torch.tensor(targets), reduction="sum")
    L.backward()
    for k in range(T):
        want_h = np.log10(hs[k].grad.norm(dim=1).numpy()).mean()
        want_c = np.log10(cs[k].grad.norm(dim=1).numpy()).mean()
        assert rec[k]["log10_grad_norm_h"] == pytest.approx(want_h, abs=1e-10)
        assert rec[k]["log10_grad_norm_c"] == pytest.approx(want_c, abs=1e-10)


def test_cli_probes_refused_for_a_cell_measured_exactly_at_any_size(capsys):
    """`flow lru --hidden 600 --probes 16`: N = 1200 > 1024, yet the LRU runs its exact block path;
    --probes was accepted and ignored."""
    from gradflow._cli import main

    code = main(["flow", "lru", "--hidden", "600", "--input", "4", "--steps", "3", "--probes", "16",
                 "--no-lyapunov"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "--probes has no effect: lru" in err
