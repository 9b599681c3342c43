"""Every claim the report's sentences make, checked against numbers recomputed here.

Oracles: PyTorch autograd (torch 2.x CPU) for one-step Jacobians, closed forms written out in
the test, the analytic variance of a sum of uniforms, NumPy products of one-step Jacobians.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from gradflow._numeric.gru_bound import gru_step_bound
from gradflow._numeric.weights import from_state_dict, init_weights

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small autograd problems: one thread (on a shared machine more threads only wait)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# -- the "pytorch" initialisation: a merged bias is b_ih + b_hh ----------------------------------
@pytest.mark.parametrize("name", ["lstm", "tanh-rnn"])
def test_pytorch_merged_bias_is_the_sum_of_two_uniform_draws(name):
    n = 64
    b = np.concatenate([init_weights(name, n, 3, scheme="pytorch", seed=s).arrays[
        "b_{f}" if name == "lstm" else "b"] for s in range(40)])
    # U(±a) has variance a²/3; the sum of two independent draws 2a²/3 = 2/(3n) with a = 1/√n
    var = 2 / (3 * n)
    assert abs(b.var() - var) < 0.06 * var  # 2560 draws: the sample variance is within ~3 %
    assert np.abs(b).max() > 1 / math.sqrt(n)  # it leaves the one-draw range ±1/√n
    # PyTorch itself: bias_ih + bias_hh of a fresh cell has the same variance
    torch.manual_seed(0)
    s = [torch.nn.LSTMCell(3, n).state_dict() for _ in range(10)]
    tb = np.concatenate([(d["bias_ih"] + d["bias_hh"]).numpy() for d in s])
    assert abs(tb.var() - var) < 0.08 * var


def test_gru_one_sided_biases_are_one_draw():
    n = 64
    w = [init_weights("gru", n, 3, scheme="pytorch", seed=s).arrays for s in range(20)]
    for key in ("b_{hn}", "b_{in}"):
        v = np.concatenate([a[key] for a in w])
        assert np.abs(v).max() <= 1 / math.sqrt(n)
        assert abs(v.var() - 1 / (3 * n)) < 0.1 / (3 * n)


# -- the GRU has a finite one-step bound while |h| < 1 -------------------------------------------
def _bound_written_out(sd, n, variant):
    """The bound of the report, from the PyTorch tensors (W_r, W_z, W_n = rows of weight_hh)."""
    Whh = sd["weight_hh"].double().numpy()
    Wr, Wz, Wn = Whh[:n], Whh[n:2 * n], Whh[2 * n:]
    s = [np.linalg.svd(M, compute_uv=False)[0] for M in (Wr, Wz, Wn)]
    if variant == "gru":
        rho = np.max(np.abs(Wn).sum(axis=1) + np.abs(sd["bias_hh"].double().numpy()[2 * n:]))
        return 1 + s[1] / 2 + s[2] + rho * s[0] / 4
    return 1 + s[1] / 2 + s[2] * (1 + s[0] / 4)


def _gru_cho_step(sd, n):
    """Cho et al. (2014): ñ = tanh(W_n (r ⊙ h) + U_n x + b_n), written out for torch autograd."""
    Wih, Whh = sd["weight_ih"].double(), sd["weight_hh"].double()
    b = sd["bias_ih"].double() + sd["bias_hh"].double()

    def step(h, x):
        r = torch.sigmoid(Wih[:n] @ x + Whh[:n] @ h + b[:n])
        z = torch.sigmoid(Wih[n:2 * n] @ x + Whh[n:2 * n] @ h + b[n:2 * n])
        cand = torch.tanh(Wih[2 * n:] @ x + Whh[2 * n:] @ (r * h) + b[2 * n:])
        return (1 - z) * cand + z * h

    return step


@functools.cache
def _trained_gru(n, m, seed):
    """A GRUCell after 12 normalised gradient steps on a random regression (weights moved far from
    the initialisation; plain tensors, as torch.optim takes seconds to import)."""
    torch.manual_seed(seed)
    cell = torch.nn.GRUCell(m, n).double()
    head = torch.nn.Linear(n, 1).double()
    params = [*cell.parameters(), *head.parameters()]
    x, y = torch.randn(6, 8, m, dtype=torch.double), torch.randn(8, 1, dtype=torch.double) * 3
    for _ in range(12):
        h = torch.zeros(8, n, dtype=torch.double)
        for t in range(6):
            h = cell(x[t], h)
        loss = ((head(h) - y) ** 2).mean()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p -= 0.3 * g / (g.norm() + 1e-12)
    return cell


@pytest.mark.parametrize("variant", ["gru", "gru-cho"])
@pytest.mark.parametrize("kind", ["random", "random-x4", "trained"])
def test_gru_one_step_norms_never_exceed_the_bound(variant, kind):
    n, m, T = 6, 3, 15
    if kind == "trained":
        sd = {k: v.detach() for k, v in _trained_gru(n, m, 1).state_dict().items()}
        torch.manual_seed(1)
        init = torch.nn.GRUCell(m, n).double().state_dict()["weight_hh"]
        assert float((sd["weight_hh"] - init).norm()) > 1.0  # training moved the recurrent weights
    else:
        torch.manual_seed(2)
        sd = {k: v.detach().double() for k, v in torch.nn.GRUCell(m, n).state_dict().items()}
        if kind == "random-x4":
            sd = {k: v * 4 for k, v in sd.items()}
    bound = _bound_written_out(sd, n, variant)
    w = from_state_dict(variant if variant == "gru" else "gru-cho", sd) if variant == "gru" else None
    if w is not None:
        assert gru_step_bound(w) == pytest.approx(bound, rel=1e-12)
    if variant == "gru":
        cell = torch.nn.GRUCell(m, n).double()
        cell.load_state_dict(sd)
        step = lambda h, x: cell(x[None], h[None])[0]  # noqa: E731
    else:
        step = _gru_cho_step(sd, n)
    g = torch.Generator().manual_seed(5)
    worst = 0.0
    for _seq in range(3):
        h = torch.rand(n, generator=g, dtype=torch.double) * 1.98 - 0.99  # |h_0| < 1
        for _t in range(T):
            x = torch.randn(m, generator=g, dtype=torch.double) * 3
            J = torch.autograd.functional.jacobian(lambda hh, x=x: step(hh, x), h)
            worst = max(worst, float(torch.linalg.matrix_norm(J, 2)))
            h = step(h, x).detach()
            assert float(h.abs().max()) < 1  # the state stays in (−1, 1)
    assert 0 < worst <= bound


def test_gru_cho_bound_from_gradflow_weights_matches_the_written_out_one():
    w = init_weights("gru-cho", 5, 2, seed=3)
    a = w.arrays
    s = [np.linalg.svd(a[k], compute_uv=False)[0] for k in ("W_{r}", "W_{z}", "W_{n}")]
    assert gru_step_bound(w) == pytest.approx(1 + s[1] / 2 + s[2] * (1 + s[0] / 4), rel=1e-12)


# -- the LSTM's cell-state gradient split by path ----------------------------------------------------
def _torch_lstm_jacobians(weights, inputs):
    """One-step Jacobians ∂(h_t, c_t)/∂(h_{t−1}, c_{t−1}) by torch autograd, and the forget gates."""
    from gradflow._numeric.weights import to_state_dict

    n, m = weights.hidden, weights.input
    sd = {k: torch.as_tensor(np.asarray(v), dtype=torch.double) for k, v in to_state_dict(weights).items()}
    cell = torch.nn.LSTMCell(m, n).double()
    cell.load_state_dict(sd)

    def step(s, x):
        h, c = cell(x[None], (s[None, :n], s[None, n:]))
        return torch.cat([h[0], c[0]])

    s = torch.zeros(2 * n, dtype=torch.double)
    Js, fs = [], []
    b = sd["bias_ih"] + sd["bias_hh"]
    for x in torch.as_tensor(np.asarray(inputs)[:, 0], dtype=torch.double):
        Js.append(torch.autograd.functional.jacobian(lambda ss, x=x: step(ss, x), s, vectorize=True).numpy())
        f = torch.sigmoid(sd["weight_ih"][n:2 * n] @ x + sd["weight_hh"][n:2 * n] @ s[:n] + b[n:2 * n])
        fs.append(f.numpy())  # gate order i, f, g, o: the forget gate is the second row block
        s = step(s, x).detach()
    return Js, np.array(fs)


def _paths_oracle(Js, fs, n):
    T = len(Js)
    P_ = np.eye(2 * n)
    D = np.ones(n)
    out = np.empty((3, T))
    for k in range(T - 1, -1, -1):
        P_ = P_ @ Js[k]
        D = D * fs[k]
        block = P_[n:, n:]
        with np.errstate(divide="ignore"):
            out[:, k] = np.log10([np.linalg.norm(block, 2), np.max(D), np.linalg.norm(block - np.diag(D), 2)])
    return out


def test_cell_state_paths_match_torch_autograd():
    from gradflow._numeric.paths import cell_state_paths

    n, m, T = 3, 2, 8
    net = gf_network("lstm", n, m, seed=4)
    x = gf_inputs(T, m, seed=4)
    Js, fs = _torch_lstm_jacobians(net.weights, x)
    want = _paths_oracle(Js, fs, n)
    got = cell_state_paths(net, x)
    np.testing.assert_allclose(got.block[0], want[0], atol=1e-10)
    np.testing.assert_allclose(got.carousel[0], want[1], atol=1e-10)
    assert got.through_h[0, -1] == -np.inf  # lag 1: the one-step block is diag(f_T) exactly
    np.testing.assert_allclose(got.through_h[0, :-1], want[2, :-1], atol=1e-8)


@pytest.mark.parametrize("forget_bias", [None, 1.0])
def test_why_the_full_block_beats_the_carousel_at_the_report_defaults(forget_bias):
    """The report's sentence (n = 16, T = 100, seed 0): carousel rate < block rate ≤ the rate of
    ∏_j max_i f_{j,i}, and the carousel is the best single unit, max_i ∏_j f_{j,i}."""
    from gradflow._numeric.flow import decay_rate

    n, T = 16, 100
    net = gf_network("lstm", n, n, seed=0, forget_bias=forget_bias)
    Js, fs = _torch_lstm_jacobians(net.weights, gf_inputs(T, n, seed=0))
    blk, car, thr = _paths_oracle(Js, fs, n)
    r_blk, r_car = decay_rate(blk), decay_rate(car)
    best_step = np.log10(fs.max(axis=1)).mean()
    assert r_car < r_blk <= best_step
    assert car[0] == pytest.approx(np.log10(fs).sum(axis=0).max())  # max_i ∏_j f_{j,i} at lag T
    assert thr[0] > car[0] + 3  # at lag T the paths through h carry > 1000× the carousel


# -- drift: the 1997 LSTM's cell state, the residual RNN's state --------------------------------------
def _forward(name, w, x):
    """The cells' forward passes written out here (NumPy), states (T+1, n) from zero."""
    a = {k: np.asarray(v) for k, v in w.arrays.items()}
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    n = w.hidden
    h, c = np.zeros(n), np.zeros(n)
    hs, cs = [h], [c]
    for xt in np.asarray(x)[:, 0]:
        if name == "lstm-1997":
            aff = {g: a[f"W_{{{g}}}"] @ h + a[f"U_{{{g}}}"] @ xt + a[f"b_{{{g}}}"].ravel() for g in "igo"}
            c = c + sig(aff["i"]) * np.tanh(aff["g"])
            h = sig(aff["o"]) * np.tanh(c)
        else:  # residual-rnn
            h = h + np.tanh(a["W"] @ h + a["U"] @ xt + a["b"].ravel())
        hs.append(h)
        cs.append(c)
    return np.array(hs), np.array(cs)


def test_lstm_1997_cell_state_drifts_and_saturates():
    from gradflow._numeric.paths import state_drift

    n, T = 16, 100
    net = gf_network("lstm-1997", n, n, seed=0)
    x = gf_inputs(T, n, seed=0)
    _, cs = _forward("lstm-1997", net.weights, x)
    top = np.abs(cs).max(axis=1)
    d = state_drift(net, x)
    np.testing.assert_allclose(d.max_abs["c"][0], top, rtol=1e-10)
    assert top[T] > 3 * top[T // 10] and top[T] > 3  # the sentence's "drifts"
    tp = 1 - np.tanh(cs[T]) ** 2
    np.testing.assert_allclose(d.tanh_prime_c_T[0], tp, rtol=1e-10)
    assert np.mean(tp < 0.01) > 0.5  # most units saturated at t = T


def test_lstm_1997_full_gradient_grows():
    from gradflow._numeric.flow import decay_rate

    n, T = 6, 100
    net = gf_network("lstm-1997", n, n, seed=0)
    flow = gf_flow(net, gf_inputs(T, n, seed=0))
    assert decay_rate(flow.full.mean().log10_norm_2) > 0


def test_residual_rnn_state_drifts():
    from gradflow._numeric.paths import state_drift

    n, T = 16, 100
    net = gf_network("residual-rnn", n, n, seed=0)
    x = gf_inputs(T, n, seed=0)
    hs, _ = _forward("residual-rnn", net.weights, x)
    top = np.abs(hs).max(axis=1)
    np.testing.assert_allclose(state_drift(net, x).max_abs["h"][0], top, rtol=1e-10)
    assert top[T] > 3 * top[T // 10] > 3  # |h| grows with T: the caveat the report prints


# -- the IRNN: constant, then exactly zero (not "a decay rate of −∞") -------------------------------------
def test_irnn_sentence_states_constant_then_zero():
    from gradflow._views.evidence import _zero_sentence

    n, m, T = 16, 16, 100
    net = gf_network("irnn", n, m, seed=0)
    x = gf_inputs(T, m, seed=0)
    a = {k: np.asarray(v) for k, v in net.weights.arrays.items()}
    h, on = np.zeros(n), []
    for xt in np.asarray(x)[:, 0]:  # W = I: J_t = diag(H(a_t)), so ∂h_T/∂h_k = diag(∏_j H(a_j))
        pre = a["W"] @ h + a["U"] @ xt + a["b"].ravel()
        on.append(pre > 0)
        h = np.maximum(pre, 0)
    on = np.array(on)
    curve = np.array([0.0 if on[k:].all(axis=0).any() else -np.inf for k in range(T)])
    flow = gf_flow(net, x)
    np.testing.assert_array_equal(flow.full.mean().log10_norm_2 == -np.inf, curve == -np.inf)
    first = T - int(np.nonzero(np.isinf(curve))[0].max())
    text = _zero_sentence(curve, T)
    assert f"for lags 1 to {first - 1} the norm is constant" in text
    assert f"from lag {first} on the product is exactly zero" in text


def gf_network(*a, **k):
    from gradflow import network

    return network(*a, **k)


def gf_inputs(T, m, seed):
    from gradflow import random_inputs

    return random_inputs(T, m, seed=seed)


def gf_flow(net, x):
    from gradflow import gradient_flow

    return gradient_flow(net, x, lyapunov=False)


# -- the worked example: index form → matrix form, and the one-unit walk-through ---------------------
def test_worked_example_index_form_is_the_matrix_form():
    """The claim "(1 − h_{t,i}²) W_ij is diag(1 − h_t²) W": SymPy element-wise at n = 3, and the
    matrix form printed is the one the core derives."""
    import sympy as sp

    from gradflow import get_cell, latex
    from gradflow._views.bibtex import bibliography
    from gradflow._views.document import Doc
    from gradflow._views.teaching import teach

    n = 3
    W = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"W{i}{j}"))
    hp = sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"p{i}"))
    a = W * hp + sp.Matrix(n, 1, lambda i, j: sp.Symbol(f"c{i}"))  # U x + b folded into c
    h = a.applyfunc(sp.tanh)
    J = h.jacobian(hp)
    for i in range(n):
        for j in range(n):
            assert sp.simplify(J[i, j] - (1 - sp.tanh(a[i]) ** 2) * W[i, j]) == 0
    doc = Doc(bibliography())
    teach(doc, [get_cell("lstm")])
    md = doc.markdown()
    assert latex(get_cell("tanh-rnn").jacobian()["h", "h"]) in md
    assert latex(get_cell("lstm").jacobian()["c", "c"]) in md and "f_{t,i}" in md
    assert "WARNING" not in md


@pytest.mark.parametrize("w,h0", [(0.9, 0.5), (1.5, 0.5), (1.5, 0.0), (3.0, 0.5)])
def test_one_unit_walk_through(w, h0):
    from gradflow._views.teaching import WALK_STEPS, walk_through

    T = WALK_STEPS
    h = [h0]
    for _ in range(T):  # h_t = tanh(w h_{t−1}), written out
        h.append(np.tanh(w * h[-1]))
    h = np.array(h)
    fac = w * (1 - h[1:] ** 2)  # ∂h_t/∂h_{t−1}, t = 1…T
    curve = np.array([np.log10(abs(np.prod(fac[k:]))) for k in range(T)])  # ∂h_T/∂h_k
    slope = np.polyfit(T - np.arange(T), curve, 1)[0]
    r = walk_through(w, h0)
    assert r["h_T"] == pytest.approx(h[-1], abs=1e-12)
    assert r["factor"] == pytest.approx(fac[-1], rel=1e-10)
    assert r["rate"] == pytest.approx(slope, abs=1e-9)
    assert r["log10_total"] == pytest.approx(curve[0], abs=1e-9)
    # the table's claim: growth only from the unstable fixed point h_0 = 0 with w > 1
    assert (r["rate"] > 0) == (h0 == 0.0 and w > 1)
