"""Lyapunov exponents at float64's rounding floor are "not resolved", not printed as data.

The normalised sLSTM's (c, n) and the stabilised mLSTM's h give directions that J_t maps almost
into the span of the others: their growth factors |R_ii| are of the order of the rounding error,
and the exponents built from them change when the Jacobians change at the rounding level (on
a GPU they came out −8.10 where NumPy gave −8.29). Oracle: the QR recurrence written here,
run on Jacobians perturbed by relative 1e-15 (another rounding of the same data); an exponent
is data when it stays put under that perturbation and noise when it moves.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import gradflow as gf
from gradflow._numeric.flow import lyapunov_exponents

T, B, R = 6, 2, 8


def run(name, n=3):
    net = gf.network(name, weights=gf.init_weights(name, n, 2, seed=5))
    return net, net.unroll(gf.random_inputs(T, 2, batch=B, seed=7))


def plain_exponents(net, traj, r, noise=0.0, seed=0):
    """(1/T) Σ log|R_ii| of J_t Q = Q R with J_t from the dense step Jacobians, perturbed."""
    N = net.state_size
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((N, r)))[0] if r < N else np.eye(N)
    Q = np.broadcast_to(Q, (B, N, r))
    acc = np.zeros((B, r))
    for t in range(1, T + 1):
        J = np.asarray(net.step_jacobian(traj, t))
        J = J * (1 + noise * rng.standard_normal(J.shape))
        Q, Rm = np.linalg.qr(J @ Q)
        with np.errstate(divide="ignore"):
            acc += np.log(np.abs(np.diagonal(Rm, axis1=-2, axis2=-1)))
    return -np.sort(-acc / T, axis=1)


@pytest.mark.parametrize("name,n", [("slstm-normalised", 3), ("mlstm-stabilised", 2)])
def test_floor_exponents_are_not_resolved_and_really_are_noise(name, n):
    net, traj = run(name, n)
    ours = lyapunov_exponents(net, traj, R)
    unresolved = np.isnan(ours)
    assert unresolved.any(axis=1).all()           # each sequence has some
    assert not unresolved[:, 0].any()             # the leading ones are data
    runs = np.stack([plain_exponents(net, traj, R, noise=1e-15, seed=s) for s in range(6)])
    spread = runs.max(axis=0) - runs.min(axis=0)
    assert np.all(spread[unresolved] > 1e-4)      # noise: moves with the rounding
    assert np.all(spread[~unresolved] < 1e-9)     # data: stays
    np.testing.assert_allclose(ours[~unresolved], plain_exponents(net, traj, R)[~unresolved], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["lstm", "gru", "slstm", "tanh-rnn"])
def test_well_conditioned_cells_are_unchanged(name):
    net, traj = run(name)
    r = min(R, net.state_size)
    ours = lyapunov_exponents(net, traj, r)
    assert not np.isnan(ours).any()
    np.testing.assert_allclose(ours, plain_exponents(net, traj, r), rtol=0, atol=1e-12)


def test_exact_zeros_stay_minus_infinity():
    net, traj = run("mlstm", 2)  # h feeds nothing back: exact zero columns, exact zero factors
    ours = lyapunov_exponents(net, traj, R)
    assert np.isneginf(ours[:, -2:]).all() and not np.isnan(ours).any()


def test_json_and_text_say_not_resolved():
    flow = gf.gradient_flow(*run("slstm-normalised")[:1], gf.random_inputs(T, 2, batch=B, seed=7), lyapunov=R)
    rec = flow.to_json()
    assert rec["lyapunov"][-1] == "not resolved"
    assert all(isinstance(v, float) for v in rec["lyapunov"][:6])
    json.dumps(rec, allow_nan=False)
    out = subprocess.run([sys.executable, "-m", "gradflow", "flow", "slstm-normalised", "--hidden", "3",
                          "--steps", "6", "--lyapunov", "8"], capture_output=True, text=True, check=True).stdout
    assert "not resolved, not resolved" in out and "rounding floor" in out
    assert "nan" not in out.lower()


@pytest.mark.parametrize("name,n,gain", [("lstm", 32, 3.0), ("tanh-rnn", 128, 0.3)])
def test_full_spectrum_at_larger_n_is_not_flagged(name, n, gain, monkeypatch):
    """Larger N, saturated gates (gain 3) and strong contraction (gain 0.3, exponents to −6):
    the floor flags nothing, and every exponent is data (stays within 1e-10 under perturbation)."""
    monkeypatch.setattr(sys.modules[__name__], "T", 40)
    monkeypatch.setattr(sys.modules[__name__], "B", 1)
    net = gf.network(name, n, 4, seed=1, gain=gain)
    traj = net.unroll(gf.random_inputs(40, 4, batch=1, seed=2))
    ours = lyapunov_exponents(net, traj, None)
    assert not np.isnan(ours).any() and np.min(ours) < -5
    runs = np.stack([plain_exponents(net, traj, net.state_size, noise=1e-15, seed=s) for s in range(2)])
    assert np.max(np.abs(runs - ours)) < 1e-10
