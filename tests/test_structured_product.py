"""The product chain with diagonal column blocks (issue 13): P · J_t with the LSTM's c column
(diag(o ⊙ tanh′(c) ⊙ f), diag(f)) applied as column scalings equals the dense N × N matmul.

Oracles: the dense path of the same chain (``products(..., dense=True)``, itself tested against
PyTorch autograd in ``test_engine_torch.py``) and, independently, the NumPy product of the
explicitly multiplied Jacobians from PyTorch autograd of ``nn.LSTMCell``.
"""

from __future__ import annotations

import numpy as np
import pytest
from _torch_oracle import torch_lstm_jacobians

import gradflow as gf


def _true(pr):
    """The product as (log10 scale per sequence, scaled array) in NumPy."""
    return np.asarray(pr.log10_scale), np.asarray(pr.P)


def _assert_same(a, b, tol=1e-12):
    La, Pa = _true(a)
    Lb, Pb = _true(b)
    assert a.k == b.k
    for i in range(Pa.shape[0]):
        if not np.isfinite(Lb[i]) or not np.any(Pb[i]):  # an exact 0 (a unit switched off for good)
            assert not np.isfinite(La[i]) or not np.any(Pa[i]), a.k
            continue
        scaled = Pa[i] * 10.0 ** (La[i] - Lb[i])
        err = np.linalg.norm(scaled - Pb[i]) / np.linalg.norm(Pb[i])
        assert err <= tol, (a.k, err)


@pytest.mark.parametrize("name", ["lstm", "lstm-1997", "peephole-lstm", "cifg", "slstm", "slstm-normalised",
                                  "lru", "mingru", "gru", "cornn"])
@pytest.mark.parametrize("truncated", [False, True])
def test_structured_chain_equals_dense_chain(name, truncated):
    net = gf.network(name, 7, 3, seed=2)
    traj = net.unroll(gf.random_inputs(40, 3, batch=2, seed=4))
    fast = list(gf.products(net, traj, truncated=truncated))
    ref = list(gf.products(net, traj, truncated=truncated, dense=True))
    assert len(fast) == len(ref) == 40
    for a, b in zip(fast, ref, strict=True):
        np.testing.assert_array_equal(a.pattern, b.pattern)
        _assert_same(a, b)


def test_structured_chain_through_rescaling():
    """Forget bias −6: the product falls below 1e-77 and is rescaled many times over T = 400."""
    net = gf.network("lstm", 6, 2, seed=1, forget_bias=-6.0)
    traj = net.unroll(gf.random_inputs(400, 2, seed=0))
    fast = list(gf.products(net, traj))
    ref = list(gf.products(net, traj, dense=True))
    assert np.asarray(fast[-1].log10_scale)[0] < -150  # it did rescale
    for a, b in zip(fast, ref, strict=True):
        _assert_same(a, b)


def test_structured_chain_equals_torch_jacobians_multiplied():
    n, m, T = 5, 3, 12
    net = gf.network("lstm", n, m, seed=3, forget_bias=1.0)
    x = gf.random_inputs(T, m, seed=6)
    Js = torch_lstm_jacobians(net, x)
    P = np.eye(2 * n)
    want = {}
    for k in range(T - 1, -1, -1):  # ∂s_T/∂s_k = J_T ⋯ J_{k+1}
        P = P @ Js[k]
        want[k] = P.copy()
    for pr in gf.products(net, net.unroll(x)):
        got = np.asarray(pr.P)[0] * 10.0 ** np.asarray(pr.log10_scale)[0]
        np.testing.assert_allclose(got, want[pr.k], rtol=0, atol=1e-12 * np.abs(want[pr.k]).max())
