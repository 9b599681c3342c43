"""Singular values of long products, every one, against mpmath (issue 8).

Oracle: the step Jacobians (checked against PyTorch elsewhere) converted exactly to mpmath
numbers, multiplied and decomposed (mp.svd_r) at a working precision of 80 digits plus the
product's dynamic range, so the tail 50–300+ orders below the top is computed exactly; then
every printed σ_i must be within 1e-6 of it in log10.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

import gradflow as gf
from gradflow._numeric.product_svd import jacobi_log_svd


def _mp_log10_svals(mats, dps=80):
    """log10 σ_i of the product, at a precision raised until it exceeds the dynamic range by
    80 digits (below that, mp.svd_r's own round-off would be the tail)."""
    while True:
        ref = _mp_log10_svals_at(mats, dps)
        finite = ref[np.isfinite(ref)]
        need = 80 + int(finite[0] - finite[-1]) + 10
        if dps >= need:
            return ref
        dps = need + 40


def _mp_log10_svals_at(mats, dps):
    with mp.workdps(dps):
        P = None
        for J in mats:
            Jm = mp.matrix([[mp.mpf(float(v)) for v in row] for row in J])
            P = Jm if P is None else P * Jm
        s = mp.svd_r(P, compute_uv=False)
        return np.array(sorted((float(mp.log10(v)) if v > 0 else -math.inf for v in s), reverse=True))


@pytest.mark.parametrize("cell,n,T,k,span", [
    ("tanh-rnn", 6, 150, 0, 50),
    ("lstm", 3, 100, 0, 100),
    ("lstm", 3, 100, 40, 50),
    ("lstm-1997", 3, 150, 0, 150),
    ("gru", 4, 150, 0, 30),
])
def test_every_singular_value_against_mpmath(cell, n, T, k, span):
    net = gf.network(cell, n, 3, seed=0, forget_bias=1.0 if cell == "lstm" else None, gain=1.0)
    x = gf.random_inputs(T, 3, seed=0)
    got = gf.singular_values(net, x, [k])[k]
    traj = net.unroll(x)
    mats = [np.asarray(net.step_jacobian(traj, t))[0] for t in range(T, k, -1)]
    ref = _mp_log10_svals(mats)
    assert ref[0] - ref[-1] > span            # the tail is far below the top
    assert not np.isnan(got).any()            # every value resolved here
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    # the float64 SVD of the product cannot see this tail
    P = np.linalg.multi_dot(mats) if len(mats) > 1 else mats[0]
    with np.errstate(divide="ignore"):
        plain = np.log10(np.linalg.svd(P, compute_uv=False))
    assert np.max(np.abs(plain - ref)) > 1


def test_beyond_1e_minus_300():
    """A longer LSTM product whose smallest singular value is below 10^-300."""
    net = gf.network("lstm", 2, 2, seed=3, forget_bias=1.0)
    T = 160
    x = gf.random_inputs(T, 2, seed=3)
    got = gf.singular_values(net, x, [0])[0]
    traj = net.unroll(x)
    mats = [np.asarray(net.step_jacobian(traj, t))[0] for t in range(T, 0, -1)]
    ref = _mp_log10_svals(mats)
    assert ref[-1] < -300
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_log_scaled_jacobi_on_graded_matrix():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((7, 5))
    ell = np.array([3.0, -200.0, -900.0, -901.0, -2000.0])     # natural-log column scales
    got = jacobi_log_svd(A, ell) / math.log(10)
    with mp.workdps(1100):
        G = mp.matrix(7, 5)
        for i in range(7):
            for j in range(5):
                G[i, j] = mp.mpf(float(A[i, j])) * mp.e ** int(ell[j])
        ref = sorted((float(mp.log10(v)) for v in mp.svd_r(G, compute_uv=False)), reverse=True)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


def test_unresolved_values_are_nan_and_not_drawn():
    """A ReLU network whose units all switch off: its product is exactly 0, which the structural
    rank certifies (every J_t is 0): −∞, resolved. A value whose bound exceeds ``resolve`` is NaN;
    neither is plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = {"weight_ih_l0": np.zeros((3, 1)), "weight_hh_l0": np.eye(3) * 0.5,
         "bias_ih_l0": -np.ones(3), "bias_hh_l0": np.zeros(3)}
    net = gf.network("relu-rnn", weights=w)
    s = gf.singular_values(net, np.zeros((10, 1)), [0, 9])
    assert np.isneginf(s[0]).all() and np.isneginf(s[9]).all()
    tanh = gf.network("tanh-rnn", 3, 1, seed=0)
    u = gf.singular_values(tanh, gf.random_inputs(10, 1, seed=0), [0, 9], resolve=1e-300)
    assert np.isnan(u[0]).all()
    for spectra in (s, u):
        fig, ax = plt.subplots()
        gf.plot_spectrum(spectra, ax=ax)
        for line in ax.get_lines():
            assert not np.isfinite(np.asarray(line.get_ydata(), float)).any()
        plt.close(fig)
