"""mLSTM's singular values (gradflow._numeric.product_svd): no step reads h, so the h columns of
every J_t are exactly 0 and the product reduces to the memory's columns. The additive bound on the
full product carried the rows ∂h_t/∂(C, n)_{t−1} of every step; at the report's size (n = 16, T = 100)
it left all 272 non-zero values NaN at k = 0, 25, 50. Oracle: the product of the same float64 step
Jacobians in mpmath at 60 digits, its singular values by mpmath's SVD."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np

import gradflow as gf


def _mp_log10_svals(P):
    s = mp.svd_r(P, compute_uv=False)
    return np.array(sorted((float(mp.log10(v)) if v > 0 else -math.inf for v in s), reverse=True))


def test_mlstm_values_resolved_to_a_tight_bound_against_mpmath():
    """At resolve = 1e-10 the old bound left every non-zero value NaN (12 of 15 at k = 0 and 30);
    each claimed value must be within its certified 1e-10 (relative) of mpmath's."""
    n, T = 3, 60
    net = gf.network("mlstm", n, 3, seed=0)
    x = gf.random_inputs(T, 3, seed=0)
    ks = [0, 30, T - 1]
    resolve = 1e-10
    got = gf.singular_values(net, x, ks, resolve=resolve)
    traj = net.unroll(x)
    N = net.state_size
    assert N == n + n * n + n
    with mp.workdps(60):
        P = None
        for t in range(T, 0, -1):  # P ← P · J_t, so after t = k + 1 it is J_T ⋯ J_{k+1}
            Jm = mp.matrix(np.asarray(net.step_jacobian(traj, t))[0].tolist())
            P = Jm if P is None else P * Jm
            if t - 1 in ks:
                k = t - 1
                ref = _mp_log10_svals(P)
                zero = ref < ref[0] - 40           # exactly 0 (rounding at 60 digits)
                assert zero.sum() == n, (k, ref)   # the h columns
                g = got[k]
                assert not np.isnan(g).any(), (k, g)
                np.testing.assert_array_equal(np.isneginf(g), zero)
                np.testing.assert_allclose(g[~zero], ref[~zero], rtol=0, atol=resolve / math.log(10) * 1.01)
                assert ref[~zero].max() - ref[~zero].min() < 1.0  # near-equal values: d·(something)


def test_mlstm_values_agree_with_the_default_resolve():
    """Same oracle at the default resolve, a larger state (n = 4) and a second seed."""
    n, T = 4, 40
    net = gf.network("mlstm", n, 2, seed=1)
    x = gf.random_inputs(T, 2, seed=1)
    got = gf.singular_values(net, x, [0])
    traj = net.unroll(x)
    with mp.workdps(60):
        P = None
        for t in range(T, 0, -1):
            Jm = mp.matrix(np.asarray(net.step_jacobian(traj, t))[0].tolist())
            P = Jm if P is None else P * Jm
        ref = _mp_log10_svals(P)
    zero = ref < ref[0] - 40
    g = got[0]
    assert not np.isnan(g).any(), g
    np.testing.assert_array_equal(np.isneginf(g), zero)
    np.testing.assert_allclose(g[~zero], ref[~zero], rtol=0, atol=1e-6)
