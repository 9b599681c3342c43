"""stacked_gradients / stacked_state_gradient far below float64's smallest number.

Oracle: nn.RNN (tanh, 2 layers, n = 3, recurrent weights × 0.12), T = 400, L = Σ y_T. The
whole-stack Jacobians J_t are written out here (h0' = tanh(a0), h1' = tanh(a1):
J = [[D0 W0, 0], [D1 V1 D0 W0, D1 W1]], D = diag(1 − h'²)) and chained in mpmath (30 digits):
∂L/∂s_0 = 1ᵀ J_T ⋯ J_1, about 1e−400. At k = 0 the layers' node adjoints are its blocks (no layer
above reads s_0). Plain values there would be exact zeros: they are refused; scaled=True returns
them as mantissa · 10^scale, checked entry by entry.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradflow as gf
from gradflow._numeric.stack import stacked_state_gradient

torch = pytest.importorskip("torch")
mpmath = pytest.importorskip("mpmath")

T = 400


@pytest.fixture(scope="module")
def case():
    torch.manual_seed(3)
    mod = torch.nn.RNN(3, 3, num_layers=2).double()
    with torch.no_grad():
        mod.weight_hh_l0.mul_(0.12)
        mod.weight_hh_l1.mul_(0.12)
    x = torch.randn(T, 1, 3, dtype=torch.float64).numpy()
    p = {k: v.detach().numpy() for k, v in mod.state_dict().items()}
    W0, W1, V1 = p["weight_hh_l0"], p["weight_hh_l1"], p["weight_ih_l1"]
    s0, s1, Js = np.zeros(3), np.zeros(3), []
    for t in range(T):
        h0 = np.tanh(p["weight_ih_l0"] @ x[t, 0] + p["bias_ih_l0"] + W0 @ s0 + p["bias_hh_l0"])
        h1 = np.tanh(V1 @ h0 + p["bias_ih_l1"] + W1 @ s1 + p["bias_hh_l1"])
        D0, D1 = np.diag(1 - h0 ** 2), np.diag(1 - h1 ** 2)
        J = np.zeros((6, 6))
        J[:3, :3] = D0 @ W0
        J[3:, :3] = D1 @ V1 @ D0 @ W0
        J[3:, 3:] = D1 @ W1
        Js.append(J)
        s0, s1 = h0, h1
    with mpmath.workdps(30):
        g = mpmath.matrix([[0, 0, 0, 1, 1, 1]])
        for J in reversed(Js):
            g = g * mpmath.matrix(J.tolist())
        ref = [(int(mpmath.sign(g[0, i])), float(mpmath.log10(abs(g[0, i])))) for i in range(6)]
    net = gf.stacked_network("tanh-rnn", weights=mod)
    return net, net.unroll(x), ref


def _check(mantissa, scale, ref):
    for i, (sign, log10_abs) in enumerate(ref):
        assert np.sign(mantissa[i]) == sign
        assert np.log10(abs(mantissa[i])) + scale == pytest.approx(log10_abs, abs=1e-8)


def test_plain_values_that_would_underflow_are_refused(case):
    net, traj, ref = case
    assert max(v for _, v in ref) < -330  # the oracle itself is far below float64's range
    with pytest.raises(gf.GradflowError, match=r"k = 0 .*smallest normal number.*scaled=True"):
        gf.stacked_gradients(net, traj)
    with pytest.raises(gf.GradflowError, match=r"stacked_state_gradient.*scaled=True"):
        stacked_state_gradient(net, traj)


def test_scaled_values_match_mpmath_entry_by_entry(case):
    net, traj, ref = case
    got = gf.stacked_gradients(net, traj, scaled=True)
    for lay in (0, 1):
        A, E = got[(lay, "forward")]
        assert A.shape == (T + 1, 1, 3) and E.shape == (T + 1, 1)
        _check(A[0, 0], E[0, 0], ref[3 * lay: 3 * lay + 3])
    A, E = stacked_state_gradient(net, traj, scaled=True)
    _check(A[0, 0], E[0, 0], ref)
