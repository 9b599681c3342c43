"""stacked_flow follows a module's batch_first as gradient_flow does (one rule,
gradflow._numeric.input_layout). Oracle: PyTorch autograd through the REAL ``nn.LSTM(batch_first=True)``
on its own (batch, T, m) inputs: the gradient of the loss at the initial states h0/c0."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gradflow import GradflowError, gradient_flow, network  # noqa: E402
from gradflow._numeric.stack import stacked_flow, stacked_network  # noqa: E402

N, M, T, B, L, V = 3, 2, 5, 2, 2, 4  # B != T: a wrong layout reads another T


def lstm():
    torch.manual_seed(3)
    mod = torch.nn.LSTM(M, N, num_layers=L, batch_first=True).double()
    with torch.no_grad():
        for p in mod.parameters():
            p.mul_(2.0)
    return mod.requires_grad_(False)


def torch_grad_h0(mod, xb, loss):
    """log10 ‖∂L/∂h0[l, b]‖ per layer l and sequence b, from autograd of the module itself."""
    h0 = torch.zeros(L, B, N, dtype=torch.float64, requires_grad=True)
    c0 = torch.zeros(L, B, N, dtype=torch.float64, requires_grad=True)
    y, _ = mod(torch.from_numpy(xb), (h0, c0))  # y: (B, T, N), batch first
    (g,) = torch.autograd.grad(loss(y), (h0,))
    return np.log10(np.linalg.norm(g.numpy(), axis=-1))  # (L, B)


def ours(flow):
    return np.array([np.asarray(lf.log10_grad_h)[:, 0] for lf in flow.layers])  # (L, B), k = 0


def test_stacked_flow_reads_batch_first_inputs_of_a_batch_first_module():
    mod = lstm()
    xb = np.random.default_rng(4).standard_normal((B, T, M))
    with pytest.warns(UserWarning, match=r"batch_first=True"):
        net = stacked_network("lstm", weights=mod)
    with pytest.warns(UserWarning, match=r"reading the inputs as \(batch, T, m\)"):
        flow = stacked_flow(net, xb, lyapunov=False, spectral="svd")
    assert (flow.steps, flow.batch) == (T, B)
    want = torch_grad_h0(mod, xb, lambda y: y[:, -1].sum())
    np.testing.assert_allclose(ours(flow), want, atol=1e-10)
    with warnings.catch_warnings():  # batch_first=False: (T, B, m), as told, and no note
        warnings.simplefilter("error")
        again = stacked_flow(net, xb.transpose(1, 0, 2), lyapunov=False, spectral="svd", batch_first=False)
    np.testing.assert_allclose(ours(again), want, atol=1e-10)


def test_every_step_targets_and_cotangents_batch_first():
    mod = lstm()
    xb = np.random.default_rng(5).standard_normal((B, T, M))
    net = stacked_network("lstm", weights=mod)
    rng = np.random.default_rng(6)
    Vw, c = rng.standard_normal((V, N)), rng.standard_normal(V)
    yb = rng.integers(0, V, (B, T))  # (B, T) as the module's outputs are laid out

    def ce(y):
        z = y @ torch.from_numpy(Vw).T + torch.from_numpy(c)
        return torch.nn.functional.cross_entropy(z.reshape(-1, V), torch.from_numpy(yb).reshape(-1), reduction="sum")

    flow = stacked_flow(net, xb, loss="every", head=(Vw, c), targets=yb, lyapunov=False, batch_first=True)
    np.testing.assert_allclose(ours(flow), torch_grad_h0(mod, xb, ce), atol=1e-10)
    g = rng.standard_normal((B, T, N))  # ∂L/∂y in the module's layout: L = Σ g ⊙ y
    flow = stacked_flow(net, xb, cotangents=g, lyapunov=False, batch_first=True)
    np.testing.assert_allclose(ours(flow), torch_grad_h0(mod, xb, lambda y: (torch.from_numpy(g) * y).sum()),
                               atol=1e-10)


def test_same_check_and_message_as_gradient_flow():
    mod = lstm()
    xb = np.random.default_rng(7).standard_normal((B, T, M))
    net = stacked_network("lstm", weights=mod)
    one = network("lstm", weights=torch.nn.LSTM(M, N, batch_first=True).double())
    for f, n in ((stacked_flow, net), (gradient_flow, one)):
        with pytest.raises(GradflowError, match=r"^batch_first must be True, False or None, got 'yes'$"):
            f(n, xb, batch_first="yes", lyapunov=False)  # type: ignore[operator]
