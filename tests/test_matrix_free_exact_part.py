"""The matrix-free Frobenius estimate: exact on the probes' span, never below its certified bound.

Oracles, independent of the code under test:

* the products P_k = ∂s_T/∂s_k from :func:`gradflow.products` (the exact N × N sweep, itself
  checked against PyTorch in test_flow / test_matrix_free), their norms by ``numpy.linalg.norm``;
* the probes drawn here by the documented rule (``numpy.random.default_rng(seed + i)``, ±1
  entries, r × rows), their orthonormal basis by ``numpy.linalg.qr`` (not the SVD the code uses),
  so the certified lower bound ‖QᵀP_k‖_F ≤ ‖P_k‖_F is computed in the test;
* the statistics of the estimate over many probe seeds: its mean against ‖P_k‖_F² (unbiased),
  ±2 se against the exact value (coverage).
"""

from __future__ import annotations

import numpy as np
import pytest

import gradflow as gf
from gradflow._numeric.matrix_free import batch_mean_se, sketch_sweep


def _exact(net, traj, rows=None, truncated=False):
    """log10 ‖P_k‖_F (T,) of the block rows × rows (default all) and the unscaled P_k, from products()."""
    rows = slice(0, net.state_size) if rows is None else rows
    out, mats = np.zeros(traj.steps), [None] * traj.steps
    for pr in gf.products(net, traj, truncated=truncated):
        P = pr.P[0][rows, rows] * 10.0 ** pr.log10_scale[0]
        out[pr.k], mats[pr.k] = np.log10(np.linalg.norm(P)), P
    return out, mats


def _rademacher(rows, r, seed):
    return np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), size=(r, rows))


def _certified(Om, P):
    """log10 ‖QᵀP‖_F, Q an orthonormal basis of the probes' span (numpy.linalg.qr, rank-revealing by
    the diagonal of R)."""
    Q, R = np.linalg.qr(Om.T)
    d = np.abs(np.diag(R))
    Q = Q[:, d > d.max() * 1e-8]
    return np.log10(np.linalg.norm(Q.T @ P))


@pytest.mark.parametrize("n", [3, 5, 8, 24])
def test_estimate_never_below_its_certified_lower_bound(n):
    """gradient_flow(mode="matrix-free") with its defaults (32 Rademacher probes, seed 0 on the whole
    product, seed 1 on the c block): log10 ‖·‖_F is never below log10 ‖QᵀP_k‖_F, which no draw of
    the probes can exceed ‖P_k‖_F. Hutchinson's plain mean (before 2026-11-26) was below it in
    58 % of 432 entries at n = 3…8 (r = 32 ≥ N: Q spans the rows, the bound is ‖P_k‖_F itself)
    and in 27 of the 30 c-block entries at n = 24; this test counted 23, 30, 18 and 27 of its 60
    entries for n = 3, 5, 8, 24."""
    below = 0
    for seed in range(3):
        net = gf.network("lstm", n, 3, seed=seed)
        x = gf.random_inputs(10, 3, seed=seed)
        traj = net.unroll(x)
        N = net.state_size
        f = gf.gradient_flow(net, x, mode="matrix-free", lyapunov=False, bound=False)
        for rows, probe_seed, est in ((slice(0, N), 0, f.full.log10_norm_fro[0]),
                                      (slice(n, N), 1, f.cell_state.log10_norm_fro[0])):
            _, mats = _exact(net, traj, rows)
            Om = _rademacher(rows.stop - rows.start, 32, probe_seed)
            bound = np.array([_certified(Om, P) for P in mats])
            below += int(np.sum(est < bound - 1e-12))
    assert below == 0


def test_exact_when_the_probes_span_the_rows(capsys):
    """r = 32 probes on the 16 rows of an LSTM n = 8 (and on the 8 rows of its c block, and on the
    carousel): Q spans the rows, ‖QᵀP‖_F = ‖P‖_F, so the estimate is ‖P_k‖_F itself (to rounding),
    its standard error 0, and the JSON and the table say "exact"."""
    n = 8
    net = gf.network("lstm", n, 3, seed=2, forget_bias=1.0)
    x = gf.random_inputs(12, 3, batch=2, seed=3)
    N = net.state_size
    f = gf.gradient_flow(net, x, mode="matrix-free", carousel=True, lyapunov=False, bound=False)
    for b in range(2):
        tb = net.unroll(x[:, b:b + 1])
        for curves, sk, rows, trunc in ((f.full, "full", slice(0, N), False),
                                        (f.cell_state, "cell_state", slice(n, N), False),
                                        (f.carousel, "carousel", slice(n, N), True)):
            want, _ = _exact(net, tb, rows, trunc)
            np.testing.assert_allclose(curves.log10_norm_fro[b], want, rtol=0, atol=1e-10)
            c = f.sketch[sk]
            assert np.all(c.log10_norm_fro_se == 0) and c.fro_exact.all()
            np.testing.assert_allclose(c.log10_norm_fro_low[b], want, rtol=0, atol=1e-10)
            assert np.all(batch_mean_se(c) == 0)
    rec = f.to_json()["curve"]
    for r in rec:
        for blk in (r, r["cell_state"], r["carousel"]):
            assert blk["log10_norm_fro_exact"] is True and blk["log10_norm_fro_se"] == 0
    # the table: "exact" in every +-se column
    from gradflow._cli import main

    assert main(["flow", "lstm", "--hidden", "8", "--input", "3", "--steps", "4", "--mode", "matrix-free",
                 "--carousel"]) == 0
    out = capsys.readouterr().out
    rows_out = [line.split() for line in out.splitlines() if line.split() and line.split()[0].isdigit()]
    assert len(rows_out) == 4 and all(r.count("exact") == 3 for r in rows_out)


def test_diagonal_carousel_is_exact_under_rademacher_probes():
    """The carousel ∏ diag(f_j) of an LSTM n = 40 (40 rows > 32 probes: Q does not span them) is
    structurally diagonal: every Rademacher probe measures it exactly, ‖ωᵀP‖² = Σ p_ii², and the
    estimate is ‖P‖_F with se 0; Gaussian probes estimate it (se > 0), never below the bound."""
    n = 40
    net = gf.network("lstm", n, 2, seed=0)
    x = gf.random_inputs(5, 2, seed=0)
    traj = net.unroll(x)
    rows = slice(n, 2 * n)
    want, mats = _exact(net, traj, rows, truncated=True)
    assert all(np.count_nonzero(P - np.diag(np.diag(P))) == 0 for P in mats)  # diagonal, as said
    g = gf.loss_gradient(net, traj)
    rad = sketch_sweep(net, traj, g, {"c": (rows, rows)}, truncated=True)["c"]
    np.testing.assert_allclose(rad.log10_norm_fro[0], want, rtol=0, atol=1e-12)
    assert rad.fro_exact.all() and np.all(rad.log10_norm_fro_se == 0)
    gau = sketch_sweep(net, traj, g, {"c": (rows, rows)}, truncated=True, probe="gaussian")["c"]
    assert not gau.fro_exact.any() and np.all(gau.log10_norm_fro_se > 0)
    assert np.all(gau.log10_norm_fro[0] >= gau.log10_norm_fro_low[0])
    assert np.all(np.abs(gau.log10_norm_fro[0] - want) <= 5.5 * gau.log10_norm_fro_se[0])


@pytest.fixture(scope="module")
def many_draws():
    """LSTM n = 16 (32 rows), T = 6, r = 16 probes in 8 blocks (fewer probes than rows: a true
    estimate), 120 probe seeds for each probe kind."""
    net = gf.network("lstm", 16, 3, seed=1)
    x = gf.random_inputs(6, 3, seed=2)
    traj = net.unroll(x)
    N = net.state_size
    want, _ = _exact(net, traj)
    g = gf.loss_gradient(net, traj)
    draws = {}
    for probe in ("rademacher", "gaussian"):
        est, se, low = [], [], []
        for s in range(120):
            c = sketch_sweep(net, traj, g, {"full": (slice(0, N), slice(0, N))}, probes=16, probe_blocks=8,
                             probe=probe, seed=1000 + 7 * s)["full"]
            assert not c.fro_exact.any()
            est.append(c.log10_norm_fro[0])
            se.append(c.log10_norm_fro_se[0])
            low.append(c.log10_norm_fro_low[0])
        draws[probe] = np.array(est), np.array(se), np.array(low)
    return want, draws


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_standard_error_covers_the_exact_value(many_draws, probe):
    """±2 se covers log10 ‖P_k‖_F in 80–99 % of the draws (Student's t with 7 degrees of freedom:
    91 %), ±1 se in 55–85 % (t₇: 65 %); the rms of (estimate − exact)/se is near t₇'s 1.18."""
    want, draws = many_draws
    est, se, low = draws[probe]
    assert np.all(se > 0) and np.all(est >= low)
    z = (est - want) / se
    cover2, cover1 = np.mean(np.abs(z) <= 2), np.mean(np.abs(z) <= 1)
    rms = float(np.sqrt(np.mean(z ** 2)))
    assert 0.80 <= cover2 <= 0.99, cover2
    assert 0.55 <= cover1 <= 0.85, cover1
    assert 0.8 < rms < 1.6, rms


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_squared_estimate_is_unbiased(many_draws, probe):
    """The mean over the draws of the estimate of ‖P_k‖_F² is ‖P_k‖_F² within 3.5 of its standard
    errors at every k (the estimate without the factor m/q, ‖QᵀP‖_F², is half of it here: biased
    by −50 %, tens of standard errors)."""
    want, draws = many_draws
    est, _, low = draws[probe]
    F, exact = 10.0 ** (2 * est), 10.0 ** (2 * want)
    z = (F.mean(axis=0) - exact) / (F.std(axis=0, ddof=1) / np.sqrt(len(F)))
    assert np.all(np.abs(z) < 3.5), z
    Fl = 10.0 ** (2 * low)
    zl = (Fl.mean(axis=0) - exact) / (Fl.std(axis=0, ddof=1) / np.sqrt(len(Fl)))
    assert np.all(zl < -10)  # the certified bound alone is biased: the test can tell
