"""Saturated units: derivative factors from the pre-activation, against mpmath at 80 digits.

The oracle writes each cell's recurrence (PyTorch's equations) in mpmath at 80 digits and
differentiates it with mpmath itself (mp.diff), so it never uses 1 − y², σ(1 − σ) or gradflow.
On main the compiled factors used the rounded output: once tanh(a) rounded to 1 they were 0.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
import torch
from torch import nn

import gradflow as gf


@pytest.fixture(autouse=True)
def _eighty_digits():
    """The oracle's precision, set for each test (conftest restores it after)."""
    mp.mp.dps = 80


PRE = (13.0, 17.0, 19.0, 40.0)


def _sig(a):
    return 1 / (1 + mp.exp(-a))


def _mp_step(cell, w, s, x):
    """One step of ``cell`` (hidden 1) in mpmath; s = [h] or [h, c]; w: scalar weights."""
    h = s[0]
    if cell == "tanh-rnn":
        return [mp.tanh(w["W"] * h + w["U"] * x + w["b"])]
    if cell == "sigmoid-rnn":
        return [_sig(w["W"] * h + w["U"] * x + w["b"])]
    if cell == "gru":
        r = _sig(w["W_r"] * h + w["U_r"] * x + w["b_r"])
        z = _sig(w["W_z"] * h + w["U_z"] * x + w["b_z"])
        n = mp.tanh(w["U_n"] * x + w["b_in"] + r * (w["W_n"] * h + w["b_hn"]))
        return [(1 - z) * n + z * h]
    if cell == "lstm":
        c = s[1]
        g = {k: w[f"W_{k}"] * h + w[f"U_{k}"] * x + w[f"b_{k}"] for k in "ifgo"}
        c2 = _sig(g["f"]) * c + _sig(g["i"]) * mp.tanh(g["g"])
        return [_sig(g["o"]) * mp.tanh(c2), c2]
    raise AssertionError(cell)


def _mp_jacobians(cell, w, xs):
    """J_t (as mpmath matrices) along the trajectory from the zero state."""
    S = 2 if cell == "lstm" else 1
    s = [mp.mpf(0)] * S
    Js = []
    for x in xs:
        J = mp.matrix(S, S)
        for b in range(S):
            def f(v, b=b, s=s, x=x):
                s2 = list(s)
                s2[b] = v
                return _mp_step(cell, w, s2, x)
            for a in range(S):
                J[a, b] = mp.diff(lambda v, a=a, f=f: f(v)[a], s[b])
        Js.append(J)
        s = _mp_step(cell, w, s, x)
    return Js


def _torch_module(cell, params):
    """A one-unit PyTorch module with the given scalar parameters (gradflow loads it)."""
    m = {"tanh-rnn": lambda: nn.RNN(1, 1), "sigmoid-rnn": None, "gru": lambda: nn.GRU(1, 1),
         "lstm": lambda: nn.LSTM(1, 1)}[cell]().double()
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(torch.tensor(params[name], dtype=torch.float64).reshape(p.shape))
    return m


def _case(cell, a0):
    """Weights putting the pre-activations near a0 (saturated), with inputs x_t = 0.1."""
    if cell == "tanh-rnn":
        w = {"W": 1.0, "U": 1.0, "b": a0 - 1.1}
        mod = {"weight_ih_l0": [1.0], "weight_hh_l0": [1.0], "bias_ih_l0": [a0 - 1.1], "bias_hh_l0": [0.0]}
        return w, mod
    if cell == "sigmoid-rnn":
        w = {"W": 1.0, "U": 1.0, "b": a0 - 1.1}
        mod = {"weight_ih_l0": [1.0], "weight_hh_l0": [1.0], "bias_ih_l0": [a0 - 1.1], "bias_hh_l0": [0.0]}
        return w, mod
    if cell == "gru":   # r, z saturated at 1, candidate n saturated: pre-activations ≈ a0
        w = {"W_r": 1.0, "U_r": 1.0, "b_r": a0 - 1.1, "W_z": 1.0, "U_z": 1.0, "b_z": a0 - 1.1,
             "W_n": 1.0, "U_n": 1.0, "b_in": a0 - 2.1, "b_hn": 0.0}
        mod = {"weight_ih_l0": [1.0, 1.0, 1.0], "weight_hh_l0": [1.0, 1.0, 1.0],
               "bias_ih_l0": [a0 - 1.1, a0 - 1.1, a0 - 2.1], "bias_hh_l0": [0.0, 0.0, 0.0]}
        return w, mod
    if cell == "lstm":  # every gate saturated at 1 and the candidate at 1: c grows, tanh(c) → 1
        w = {}
        for k in "ifgo":
            w.update({f"W_{k}": 1.0, f"U_{k}": 1.0, f"b_{k}": a0 - 1.1})
        mod = {"weight_ih_l0": [1.0] * 4, "weight_hh_l0": [1.0] * 4,
               "bias_ih_l0": [a0 - 1.1] * 4, "bias_hh_l0": [0.0] * 4}
        return w, mod
    raise AssertionError(cell)


def _rel(a, b):
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("a0", PRE)
@pytest.mark.parametrize("cell", ["tanh-rnn", "sigmoid-rnn", "gru", "lstm"])
def test_step_jacobian_entries_saturated(cell, a0):
    """Every entry of every J_t against mp.diff of the 80-digit recurrence: relative ≤ 1e-10."""
    T = 6
    w, mod = _case(cell, a0)
    if cell == "sigmoid-rnn":  # no PyTorch module: the same state_dict layout as nn.RNN
        net = gf.network(cell, weights={k: np.array(v).reshape((1, 1) if k.startswith("weight") else (1,))
                                        for k, v in mod.items()})
    else:
        net = gf.network(cell, weights=_torch_module(cell, mod))
    xs = [0.1] * T
    traj = net.unroll(np.full((T, 1), 0.1))
    Js = _mp_jacobians(cell, {k: mp.mpf(v) for k, v in w.items()}, [mp.mpf(x) for x in xs])
    S = 2 if cell == "lstm" else 1
    for t in range(1, T + 1):
        J = np.asarray(net.step_jacobian(traj, t))[0]
        for a in range(S):
            for b in range(S):
                ref = Js[t - 1][a, b]
                if ref == 0:
                    assert J[a, b] == 0
                    continue
                assert J[a, b] != 0, (t, a, b, ref)
                assert _rel(mp.mpf(float(J[a, b])), ref) < 1e-10, (t, a, b, J[a, b], ref)


@pytest.mark.parametrize("cell,W,b,lag1", [
    ("tanh-rnn", 5.0, 15.0, -16.0707),     # log10(5 sech²(20))
    ("sigmoid-rnn", 10.0, 40.0, -20.7),    # ≈ log10(10 σ′(50))
])
def test_issue_examples_are_not_null(cell, W, b, lag1):
    """One unit, zero inputs: on main every value was null (an 'exact zero')."""
    T = 20
    if cell == "tanh-rnn":
        net = gf.network(cell, weights=_torch_module(cell, {"weight_ih_l0": [0.0], "weight_hh_l0": [W],
                                                            "bias_ih_l0": [b], "bias_hh_l0": [0.0]}))
    else:
        net = gf.network(cell, weights={"weight_ih_l0": np.array([[0.0]]), "weight_hh_l0": np.array([[W]]),
                                        "bias_ih_l0": np.array([b]), "bias_hh_l0": np.array([0.0])})
    flow = gf.gradient_flow(net, np.zeros((T, 1)), lyapunov=False)
    got = flow.full.mean()["log10_norm_2"]
    # oracle: the scalar chain in mpmath, derivative by mp.diff of the activation itself
    act = mp.tanh if cell == "tanh-rnn" else _sig
    h, logs = mp.mpf(0), []
    for _ in range(T):
        a = W * h + b
        logs.append(mp.log10(abs(W * mp.diff(act, a))))
        h = act(a)
    for k in range(T):
        ref = mp.fsum(logs[k:])
        assert _rel(mp.mpf(float(got[k])), ref) < 1e-10, (k, got[k], ref)
    assert abs(got[T - 1] - lag1) < 0.1
    rec = flow.to_json()["curve"]
    assert all(r["log10_norm_2"] is not None for r in rec)


def test_torch_oracle_with_derivative_from_preactivation():
    """J = diag(sech²(a)) W with a = W h + U x + b computed by PyTorch: entrywise ≤ 1e-10."""
    torch.manual_seed(0)
    n = 8
    rnn = nn.RNN(3, n).double()
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(6.0)
        rnn.bias_ih_l0.copy_(torch.linspace(-20, 20, n))
    net = gf.network("tanh-rnn", weights=rnn)
    x = gf.random_inputs(10, 3, seed=2)
    traj = net.unroll(x)
    h = torch.zeros(n, dtype=torch.float64)
    worst_output_form = 0.0
    for t in range(10):
        a = rnn.weight_hh_l0 @ h + rnn.weight_ih_l0 @ torch.tensor(x[t, 0]) + rnn.bias_ih_l0 + rnn.bias_hh_l0
        ref = (1 / torch.cosh(a) ** 2)[:, None] * rnn.weight_hh_l0
        J = np.asarray(net.step_jacobian(traj, t + 1))[0]
        ref = ref.detach().numpy()
        nz = ref != 0
        np.testing.assert_allclose(J[nz], ref[nz], rtol=1e-10)
        h = torch.tanh(a).detach()
        out_form = ((1 - h * h)[:, None] * rnn.weight_hh_l0).detach().numpy()
        worst_output_form = max(worst_output_form, float(np.max(np.abs(out_form[nz] - ref[nz]) / np.abs(ref[nz]))))
    assert worst_output_form > 1e-3  # the oracle sees the difference the issue describes


def test_stable_derivative_beside_printed_factors():
    """Each activation's stable numeric factors equal its printed ones where those are exact,
    and its derivative / log-derivative match mpmath far into saturation."""
    from gradflow._symbolic.activations import sigmoid, tanh

    a = np.array([-40.0, -19.0, -3.0, 0.0, 0.5, 13.0, 17.0, 19.0, 40.0, 400.0])
    textbook = (lambda u: 1 / mp.cosh(u) ** 2, lambda u: mp.exp(-u) / (1 + mp.exp(-u)) ** 2)
    for act, f in zip((tanh, sigmoid), textbook, strict=True):
        d = act.derivative(np, a)
        ld = act.log_derivative(np, a)
        for ai, di, li in zip(a, d, ld, strict=True):
            ref = f(mp.mpf(ai))
            assert abs(mp.mpf(float(li)) - mp.log(ref)) < 1e-12 * max(1, abs(mp.log(ref)))
            if ref > mp.mpf("1e-300"):
                assert _rel(mp.mpf(float(di)), ref) < 1e-12
