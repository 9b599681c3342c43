"""Every claim the report's sentences make, checked against numbers recomputed here.

Oracles: PyTorch autograd (torch 2.x CPU) for one-step Jacobians, closed forms written out in
the test, the analytic variance of a sum of uniforms, NumPy products of one-step Jacobians.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from gradflow._numeric.gru_bound import gru_step_bound
from gradflow._numeric.weights import from_state_dict, init_weights

torch = pytest.importorskip("torch")


# -- the "pytorch" initialisation: a merged bias is b_ih + b_hh ----------------------------------
@pytest.mark.parametrize("name", ["lstm", "tanh-rnn"])
def test_pytorch_merged_bias_is_the_sum_of_two_uniform_draws(name):
    n = 64
    b = np.concatenate([init_weights(name, n, 3, scheme="pytorch", seed=s).arrays[
        "b_{f}" if name == "lstm" else "b"] for s in range(40)])
    # U(±a) has variance a²/3; the sum of two independent draws 2a²/3 = 2/(3n) with a = 1/√n
    var = 2 / (3 * n)
    assert abs(b.var() - var) < 0.06 * var  # 2560 draws: the sample variance is within ~3 %
    assert np.abs(b).max() > 1 / math.sqrt(n)  # it leaves the one-draw range ±1/√n
    # PyTorch itself: bias_ih + bias_hh of a fresh cell has the same variance
    torch.manual_seed(0)
    s = [torch.nn.LSTMCell(3, n).state_dict() for _ in range(10)]
    tb = np.concatenate([(d["bias_ih"] + d["bias_hh"]).numpy() for d in s])
    assert abs(tb.var() - var) < 0.08 * var


def test_gru_one_sided_biases_are_one_draw():
    n = 64
    w = [init_weights("gru", n, 3, scheme="pytorch", seed=s).arrays for s in range(20)]
    for key in ("b_{hn}", "b_{in}"):
        v = np.concatenate([a[key] for a in w])
        assert np.abs(v).max() <= 1 / math.sqrt(n)
        assert abs(v.var() - 1 / (3 * n)) < 0.1 / (3 * n)


# -- the GRU has a finite one-step bound while |h| < 1 -------------------------------------------
def _bound_written_out(sd, n, variant):
    """The bound of the report, from the PyTorch tensors (W_r, W_z, W_n = rows of weight_hh)."""
    Whh = sd["weight_hh"].double().numpy()
    Wr, Wz, Wn = Whh[:n], Whh[n:2 * n], Whh[2 * n:]
    s = [np.linalg.svd(M, compute_uv=False)[0] for M in (Wr, Wz, Wn)]
    if variant == "gru":
        rho = np.max(np.abs(Wn).sum(axis=1) + np.abs(sd["bias_hh"].double().numpy()[2 * n:]))
        return 1 + s[1] / 2 + s[2] + rho * s[0] / 4
    return 1 + s[1] / 2 + s[2] * (1 + s[0] / 4)


def _gru_cho_step(sd, n):
    """Cho et al. (2014): ñ = tanh(W_n (r ⊙ h) + U_n x + b_n), written out for torch autograd."""
    Wih, Whh = sd["weight_ih"].double(), sd["weight_hh"].double()
    b = sd["bias_ih"].double() + sd["bias_hh"].double()

    def step(h, x):
        r = torch.sigmoid(Wih[:n] @ x + Whh[:n] @ h + b[:n])
        z = torch.sigmoid(Wih[n:2 * n] @ x + Whh[n:2 * n] @ h + b[n:2 * n])
        cand = torch.tanh(Wih[2 * n:] @ x + Whh[2 * n:] @ (r * h) + b[2 * n:])
        return (1 - z) * cand + z * h

    return step


@functools.cache
def _trained_gru(n, m, seed):
    """A GRUCell after 30 Adam steps on a random regression (weights far from the initialisation)."""
    torch.manual_seed(seed)
    cell = torch.nn.GRUCell(m, n).double()
    head = torch.nn.Linear(n, 1).double()
    opt = torch.optim.Adam([*cell.parameters(), *head.parameters()], lr=0.05)
    x, y = torch.randn(8, 8, m, dtype=torch.double), torch.randn(8, 1, dtype=torch.double) * 3
    for _ in range(30):
        h = torch.zeros(8, n, dtype=torch.double)
        for t in range(8):
            h = cell(x[t], h)
        loss = ((head(h) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return cell


@pytest.mark.parametrize("variant", ["gru", "gru-cho"])
@pytest.mark.parametrize("kind", ["random", "random-x4", "trained"])
def test_gru_one_step_norms_never_exceed_the_bound(variant, kind):
    n, m, T = 6, 3, 30
    if kind == "trained":
        sd = {k: v.detach() for k, v in _trained_gru(n, m, 1).state_dict().items()}
    else:
        torch.manual_seed(2)
        sd = {k: v.detach().double() for k, v in torch.nn.GRUCell(m, n).state_dict().items()}
        if kind == "random-x4":
            sd = {k: v * 4 for k, v in sd.items()}
    bound = _bound_written_out(sd, n, variant)
    w = from_state_dict(variant if variant == "gru" else "gru-cho", sd) if variant == "gru" else None
    if w is not None:
        assert gru_step_bound(w) == pytest.approx(bound, rel=1e-12)
    if variant == "gru":
        cell = torch.nn.GRUCell(m, n).double()
        cell.load_state_dict(sd)
        step = lambda h, x: cell(x[None], h[None])[0]  # noqa: E731
    else:
        step = _gru_cho_step(sd, n)
    g = torch.Generator().manual_seed(5)
    worst = 0.0
    for _seq in range(4):
        h = torch.rand(n, generator=g, dtype=torch.double) * 1.98 - 0.99  # |h_0| < 1
        for _t in range(T):
            x = torch.randn(m, generator=g, dtype=torch.double) * 3
            J = torch.autograd.functional.jacobian(lambda hh, x=x: step(hh, x), h)
            worst = max(worst, float(torch.linalg.matrix_norm(J, 2)))
            h = step(h, x).detach()
            assert float(h.abs().max()) < 1  # the state stays in (−1, 1)
    assert 0 < worst <= bound


def test_gru_cho_bound_from_gradflow_weights_matches_the_written_out_one():
    w = init_weights("gru-cho", 5, 2, seed=3)
    a = w.arrays
    s = [np.linalg.svd(a[k], compute_uv=False)[0] for k in ("W_{r}", "W_{z}", "W_{n}")]
    assert gru_step_bound(w) == pytest.approx(1 + s[1] / 2 + s[2] * (1 + s[0] / 4), rel=1e-12)
