"""The faster default ``flow`` run (issue 13) computes the same numbers.

What changed, and the independent oracle each part is checked against:

* J_t assembled from the derived terms with ``out=``, its vectors for all steps at once and the
  weight blocks Σ_g diag(v_g) W_g in one einsum pass (``JacobianOperator.precompute``/``fill``):
  PyTorch autograd of ``nn.LSTMCell`` (the Jacobian, and the product chain's norms from NumPy's
  SVD of the product of the autograd Jacobians);
* the 8 leading Lyapunov exponents by forward products through the derived blocks: the QR
  recurrence written out here on the autograd Jacobians, from the documented start;
* the certified spectral norm's direct fallback (the Gram matrix's largest eigenvalue within its
  a-priori bound): NumPy's SVD;
* ``.pt`` state_dicts read without torch: ``torch.load`` of the same file.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from _torch_oracle import torch_lstm_jacobians

import gradflow as gf
from gradflow._numeric.certified_norm import certified_blocks, largest_singular_value
from gradflow._numeric.loading import _read_pt_plain, read_pt
from gradflow._numeric.matrix_free import STEP, JacobianOperator


@pytest.fixture(scope="module")
def lstm_case():
    net = gf.network("lstm", 5, 3, seed=3)
    x = gf.random_inputs(25, 3, batch=2, seed=1)
    return net, x, torch_lstm_jacobians(net, x)


def test_fill_matches_autograd(lstm_case):
    net, x, Js = lstm_case
    traj = net.unroll(x)
    op = JacobianOperator(net)
    assert op.precompute(traj) and op._fused  # the batched vectors and the one-pass blocks are used
    N = net.state_size
    J = np.zeros((2, N, N))
    for t in range(1, traj.steps + 1):
        env = net.step_env(traj, t)
        env[STEP] = t
        op.fill(J, env)
        np.testing.assert_allclose(J[0], Js[t - 1], rtol=1e-12, atol=1e-14)


def test_fill_without_precompute_is_the_same_matrix(lstm_case):
    net, x, _ = lstm_case
    traj = net.unroll(x)
    fast, slow = JacobianOperator(net), JacobianOperator(net)
    fast.precompute(traj)
    assert not slow.precompute(traj, limit=1)  # over the memory limit: per-step evaluation
    N = net.state_size
    for t in (1, 7, 25):
        env = net.step_env(traj, t)
        env[STEP] = t
        a = fast.fill(np.zeros((2, N, N)), env)
        b = slow.fill(np.zeros((2, N, N)), net.step_env(traj, t))
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


def test_flow_curves_match_svd_of_autograd_products(lstm_case):
    net, x, Js = lstm_case
    flow = gf.gradient_flow(net, x[:, :1], lyapunov=False)
    n, T = net.hidden, Js.shape[0]
    P = np.eye(2 * n)
    for k in range(T - 1, -1, -1):
        P = P @ Js[k]
        s2, sc = np.linalg.svd(P, compute_uv=False)[0], np.linalg.svd(P[n:, n:], compute_uv=False)[0]
        assert abs(flow.full.log10_norm_2[0, k] - np.log10(s2)) < 1e-10
        assert abs(flow.full.log10_norm_fro[0, k] - np.log10(np.linalg.norm(P))) < 1e-12
        assert abs(flow.cell_state.log10_norm_2[0, k] - np.log10(sc)) < 1e-10


def test_leading_lyapunov_matches_qr_recurrence_on_autograd_jacobians(lstm_case):
    net, x, Js = lstm_case
    r = 4
    flow = gf.gradient_flow(net, x[:, :1], lyapunov=r)
    # λ_i = (1/T) Σ_t log|R_t,ii|, J_t Q_{t−1} = Q_t R_t, Q_0 from default_rng(0) (the documented start)
    Q = np.linalg.qr(np.random.default_rng(0).standard_normal((2 * net.hidden, r)))[0]
    acc = np.zeros(r)
    for J in Js:
        Q, R = np.linalg.qr(J @ Q)
        acc += np.log(np.abs(np.diag(R)))
    np.testing.assert_allclose(flow.lyapunov, np.sort(acc / len(Js))[::-1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("spectrum", ["flat", "graded", "rank-one"])
def test_largest_singular_value_against_svd(spectrum):
    rng = np.random.default_rng(5)
    U, _ = np.linalg.qr(rng.standard_normal((3, 40, 40)))
    V, _ = np.linalg.qr(rng.standard_normal((3, 30, 30)))
    s = {"flat": 1 + 0.01 * rng.random(30), "graded": 10.0 ** -np.arange(30),
         "rank-one": np.r_[1, np.zeros(29)]}[spectrum]
    P = (U[:, :, :30] * s) @ np.matrix_transpose(V) * 1e-120  # far below 1: no overflow in the Gram
    P[1] *= 1e240
    sumsq = np.sum(P * P, axis=(-2, -1))
    got = largest_singular_value(np, P, sumsq, 1e-10)
    want = np.linalg.svd(P, compute_uv=False)[:, 0]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_largest_singular_value_falls_back_to_svd_when_bound_too_loose():
    P = np.random.default_rng(1).standard_normal((2, 50, 50))
    got = largest_singular_value(np, P, np.sum(P * P, axis=(-2, -1)), 1e-18)  # no Gram bound is that tight
    np.testing.assert_allclose(got, np.linalg.svd(P, compute_uv=False)[:, 0], rtol=1e-14)


def test_certified_blocks_separate_passes_against_svd():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((2, 60, 60)) * 0.4 ** np.arange(60)  # decaying columns
    P = A @ rng.standard_normal((2, 60, 60))
    blocks = [(slice(0, 60), slice(0, 60)), (slice(30, 60), slice(30, 60))]
    bases = [np.linalg.qr(rng.standard_normal((2, 60, 16)))[0], np.linalg.qr(rng.standard_normal((2, 30, 16)))[0]]
    sumsqs = [np.sum(P[:, r, c] ** 2, axis=(-2, -1)) for r, c in blocks]
    sigs, _ = certified_blocks(P, blocks, bases, sumsqs, tol=1e-10)
    for (r, c), sig in zip(blocks, sigs, strict=True):
        true = np.linalg.svd(P[:, r, c], compute_uv=False)[:, 0]
        assert np.all(sig <= true * (1 + 1e-13)) and np.all(sig >= true / (1 + 1e-10))


def _save(obj, path):
    torch.save(obj, path)
    return str(path)


def test_plain_pt_read_without_torch_equals_torch_load(tmp_path):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(4, 3, num_layers=2)
    sd = lstm.state_dict()
    sd["weight_hh_l1"] = sd["weight_hh_l1"].t().contiguous().t()  # a transposed (strided) view
    half = {k: v.to(torch.float32) for k, v in sd.items()}
    for obj in (sd, half, {"model": sd, "epoch": 3, "names": ["a", "b"]}):
        path = _save(obj, tmp_path / "w.pt")
        got, want = _read_pt_plain(path, "w"), torch.load(path)
        assert got is not None
        state = got["model"] if "model" in want else got
        ref = want["model"] if "model" in want else want
        assert list(state) == list(ref)
        for k in ref:
            assert state[k].dtype == ref[k].numpy().dtype
            np.testing.assert_array_equal(state[k], ref[k].numpy())
        if "epoch" in want:
            assert got["epoch"] == 3 and got["names"] == ["a", "b"]


def test_pt_with_other_objects_goes_to_torch(tmp_path):
    path = _save({"w": torch.zeros(2), "meta": np.float64(1.5)}, tmp_path / "m.pt")
    assert _read_pt_plain(path, "m") is None  # a NumPy scalar is a global: torch's reader decides
    assert float(read_pt(path)["meta"]) == 1.5


def test_reading_plain_pt_does_not_import_torch(tmp_path):
    path = _save(torch.nn.LSTMCell(3, 2).double().state_dict(), tmp_path / "c.pt")
    code = ("import sys; from gradflow._numeric.loading import read_pt; "
            "print(read_pt(sys.argv[1])['weight_hh'].shape[1], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False"]
