"""The error bounds of the factored singular values (issue 8, gradflow._numeric.product_svd):
exact zeros certified by the structural rank, the additive bound with rigorous right-factor norms.
Oracle: mpmath at (dynamic range + 80) digits on the same step Jacobians; a value below the
working precision's floor is a true 0."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

import gradflow as gf
from gradflow._numeric.product_svd import RightNorms
from gradflow._numeric.reference_init import REFERENCE_INIT


def _mp_product(mats, dps):
    P = None
    for J in mats:
        Jm = mp.matrix([[mp.mpf(float(v)) for v in row] for row in J])
        P = Jm if P is None else P * Jm
    return P


def mp_log10_svals(mats, lowest):
    """log10 σ_i of J_T ⋯ J_{k+1}, −inf for the values below the precision's floor (true zeros);
    the precision covers ``lowest`` (the smallest value claimed) with 80 digits to spare."""
    dps = 60
    while True:
        with mp.workdps(dps):
            s = mp.svd_r(_mp_product(mats, dps), compute_uv=False)
            ref = np.array(sorted((float(mp.log10(v)) if v > 0 else -math.inf for v in s), reverse=True))
        finite = ref[np.isfinite(ref)]
        if finite.size == 0:
            return ref
        need = int(finite[0] - min(lowest, finite[0])) + 80
        if dps >= need:
            return np.where(ref < finite[0] - dps + 20, -math.inf, ref)
        dps = need + 20


@pytest.mark.parametrize("cell,n,T,ks,most_nan", [
    ("irnn", 6, 30, [0, 10], 0),               # before: 6 and 3 NaN (the exact zeros)
    ("relu-rnn", 6, 40, [0, 20], 0),           # before: 6 and 5 NaN
    ("slstm-normalised", 3, 40, [0], 3),       # before: 9 NaN
])
def test_resolved_values_against_mpmath(cell, n, T, ks, most_nan):
    c = gf.get_cell(cell)
    net = gf.network(c, n, 3, seed=0, init=REFERENCE_INIT.get(c.name, c.default_init))
    x = gf.random_inputs(T, 3, seed=0)
    got = gf.singular_values(net, x, ks)
    traj = net.unroll(x)
    for k in ks:
        g = got[k]
        assert np.isnan(g).sum() <= most_nan, (k, g)
        fin = g[np.isfinite(g)]
        ref = mp_log10_svals([np.asarray(net.step_jacobian(traj, t))[0] for t in range(T, k, -1)],
                             fin.min() if fin.size else 0.0)
        ok = ~np.isnan(g)
        assert (np.isneginf(g[ok]) == np.isneginf(ref[ok])).all(), (k, g, ref)  # claimed zeros are zeros
        fin = ok & np.isfinite(ref)
        np.testing.assert_allclose(g[fin], ref[fin], rtol=0, atol=1e-6)
        if cell != "slstm-normalised":
            assert np.isneginf(g).any()  # the exact zeros are there, and resolved


def test_right_norms_are_upper_bounds_and_tight():
    """Factors of norm 4 whose product grows far slower: ∏‖J‖ overstates the product's norm by
    many orders; RightNorms stays above the exact norm (mpmath) and within a small factor of it."""
    rng = np.random.default_rng(5)
    N, T = 4, 60
    mats = []
    for _ in range(T):
        Q, _ = np.linalg.qr(rng.standard_normal((N, N)))
        mats.append(Q @ np.diag([4.0, 0.3, 0.2, 0.1]) @ Q.T @ np.linalg.qr(rng.standard_normal((N, N)))[0])
    r = RightNorms(N)
    bounds, chain = [], 0.0
    for J in mats:
        r.push(J, float(np.linalg.norm(J, 2)))
        chain += math.log(float(np.linalg.norm(J, 2)))
        bounds.append(r.log_a)
    with mp.workdps(60):
        P = mp.eye(N)
        for t, J in enumerate(mats):
            P = mp.matrix(J.tolist()) * P          # J_t ⋯ J_1
            exact = float(mp.log(mp.svd_r(P, compute_uv=False)[0]))
            assert bounds[t] >= exact - 1e-12
            assert bounds[t] <= exact + math.log(100.0)
    assert chain - exact > math.log(1e6)           # the old bound ∏‖J‖: far above
