"""The certified spectral norms after the issue-13 work on their cost (no QR of the start basis,
the c→c block's ‖·‖_F without a temporary).

Oracle: the products P_k = J_T ⋯ J_{k+1}, multiplied here in NumPy from the step Jacobians
(themselves checked against PyTorch autograd in test_jacobians_torch.py), and numpy.linalg.svd /
numpy.linalg.norm of each dense product and of its c→c block at every k. The certified tolerance is
1e-10 relative, 4.3e-11 in log10; the checks allow 1e-9 in log10.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradflow as gf

ATOL = 1e-9  # log10


def _dense_curves(net, x):
    """log10 (σ_max, ‖·‖_F) of ∂s_T/∂s_k and of its c→c block (if any), every k, by SVD."""
    traj = net.unroll(x)
    T, n, N = traj.steps, net.hidden, net.state_size
    P, scale = np.eye(N), 0.0
    out = {key: np.full(T, np.nan) for key in ("full2", "fullF", "cc2", "ccF")}
    for k in range(T - 1, -1, -1):
        P = P @ np.asarray(net.step_jacobian(traj, k + 1))[0]
        f = np.linalg.norm(P)
        P, scale = P / f, scale + np.log10(f)
        out["full2"][k] = scale + np.log10(np.linalg.svd(P, compute_uv=False)[0])
        out["fullF"][k] = scale + np.log10(np.linalg.norm(P))
        if N > n:
            c = P[n:, n:]
            out["cc2"][k] = scale + np.log10(np.linalg.svd(c, compute_uv=False)[0])
            out["ccF"][k] = scale + np.log10(np.linalg.norm(c))
    return out


@pytest.mark.parametrize("cell,n,T,init,seed", [
    # N > 16 (the basis' columns): the subspace is not the whole space, so both the certified
    # iteration and the direct σ_max of flat first k are exercised
    ("lstm", 24, 25, None, 0),
    ("gru", 24, 25, None, 1),
    ("tanh-rnn", 24, 25, None, 2),
    # near-flat spectrum: an orthogonal W at a small input, tanh′ ≈ 1, so every σ_i(P_k) ≈ 1 and no
    # trace bound certifies: the direct σ_max path at every k
    ("tanh-rnn", 40, 15, "orthogonal", 3),
])
def test_norms_match_svd_of_dense_products_every_k(cell, n, T, init, seed):
    net = gf.network(cell, n, 3, seed=seed, init=init)
    x = gf.random_inputs(T, 3, seed=seed) * (1e-3 if init == "orthogonal" else 1.0)
    flow = gf.gradient_flow(net, x, lyapunov=False, bound=False)
    want = _dense_curves(net, x)
    full = flow.full.mean()
    np.testing.assert_allclose(full["log10_norm_2"], want["full2"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(full["log10_norm_fro"], want["fullF"], rtol=0, atol=1e-12)
    if flow.cell_state is not None:
        cs = flow.cell_state.mean()
        np.testing.assert_allclose(cs["log10_norm_2"], want["cc2"], rtol=0, atol=ATOL)
        np.testing.assert_allclose(cs["log10_norm_fro"], want["ccF"], rtol=0, atol=1e-12)


def test_near_flat_case_is_flat():
    """The near-flat case above is what it claims: σ_2/σ_1 of P_k above 0.99 at every k."""
    net = gf.network("tanh-rnn", 40, 3, seed=3, init="orthogonal")
    traj = net.unroll(gf.random_inputs(15, 3, seed=3) * 1e-3)
    P = np.eye(40)
    for k in range(14, -1, -1):
        P = P @ np.asarray(net.step_jacobian(traj, k + 1))[0]
        s = np.linalg.svd(P, compute_uv=False)
        assert s[1] / s[0] > 0.99


def test_sweep_hands_orthonormal_bases_and_skips_the_qr(monkeypatch):
    """The certified iteration skips its QR of the start basis when told the bases are orthonormal:
    the sweep must say so at every k (its refreshed column by Gram–Schmidt twice, checked), and
    the bases it hands over must then be orthonormal to working accuracy."""
    from gradflow._numeric import flow

    calls = []
    real = flow.spectral_blocks

    def spy(P, blocks, bases, sumsqs, **kw):
        calls.append(([np.array(U) for U in bases], kw.get("orthonormal", False)))
        return real(P, blocks, bases, sumsqs, **kw)

    monkeypatch.setattr(flow, "spectral_blocks", spy)
    net = gf.network("lstm", 12, 3, seed=4)  # N = 24 > 16 columns
    gf.gradient_flow(net, gf.random_inputs(30, 3, seed=4), lyapunov=False, bound=False)
    assert len(calls) >= 25
    eps = np.finfo(np.float64).eps
    for bases, orthonormal in calls:
        assert orthonormal
        for U in bases:
            r = U.shape[-1]
            assert np.abs(np.matrix_transpose(U) @ U - np.eye(r)).max() <= 32 * eps
