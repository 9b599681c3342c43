"""Where two features meet: the real losses in the matrix-free mode and in float32, the stacked CLI
and the single-layer options. The exact loss gradient is checked against PyTorch autograd elsewhere
(tests/test_real_loss.py); here the matrix-free one is checked against a reverse accumulation
written in this file over the Jacobians of PyTorch's nn.LSTMCell."""

from __future__ import annotations

import numpy as np
import pytest

import gradflow as gf
from gradflow._cli import main

torch = pytest.importorskip("torch")


def _every_loss_grad_norms(net, x, V, c, y):
    """log10 ‖∂L/∂s_k‖ for L = Σ_t CE(V h_t + c, y_t), by autograd through nn.LSTMCell steps."""
    n, m = net.hidden, net.input
    cell = torch.nn.LSTMCell(m, n).double()
    cell.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in gf.to_state_dict(net.weights).items()})
    X = torch.from_numpy(np.asarray(x))
    T, B = X.shape[:2]
    h = torch.zeros(B, n, dtype=torch.float64, requires_grad=True)
    c_ = torch.zeros(B, n, dtype=torch.float64, requires_grad=True)
    states = [(h, c_)]
    loss = 0.0
    Vt, ct, yt = torch.from_numpy(V), torch.from_numpy(c), torch.from_numpy(y)
    for t in range(T):
        h, c_ = cell(X[t], states[-1])
        # new nodes: .grad retained on nn.LSTMCell's own outputs came out wrong here (0.03–0.09 in
        # log10, against central differences), so the retained tensors are copies
        h, c_ = h + 0, c_ + 0
        h.retain_grad()
        c_.retain_grad()
        states.append((h, c_))
        loss = loss + torch.nn.functional.cross_entropy(h @ Vt.T + ct, yt[t], reduction="sum")
    loss.backward()
    out = np.empty((B, T))
    for k in range(T):  # s_k = (h_k, c_k), k = 0 … T−1
        hk, ck = states[k]
        g = torch.cat([hk.grad, ck.grad], dim=1).numpy()
        out[:, k] = np.log10(np.linalg.norm(g, axis=1))
    return out


@pytest.mark.parametrize("mode", ["exact", "matrix-free"])
def test_every_step_loss_in_both_modes_matches_autograd(mode):
    net = gf.network("lstm", 5, 3, seed=4)
    x = gf.random_inputs(7, 3, batch=2, seed=4)
    rng = np.random.default_rng(0)
    V, c = rng.standard_normal((4, 5)), rng.standard_normal(4)
    y = rng.integers(0, 4, (7, 2))
    flow = gf.gradient_flow(net, x, loss="every", head=(V, c), targets=y, mode=mode, lyapunov=False)
    assert flow.mode == mode and flow.loss == "every" and flow.to_json()["loss"] == "every"
    want = _every_loss_grad_norms(net, x, V, c, y)
    np.testing.assert_allclose(np.asarray(flow.full.log10_grad_norm), want, rtol=0, atol=1e-10)


def test_float32_products_keep_the_loss():
    net = gf.network("gru", 4, 2, seed=1)
    x = gf.random_inputs(6, 2, batch=1, seed=1)
    y = np.array([1])
    V, c = np.eye(3, 4), np.zeros(3)
    f64 = gf.gradient_flow(net, x, loss="last", head=(V, c), targets=y, lyapunov=False)
    f32 = gf.gradient_flow(net, x, loss="last", head=(V, c), targets=y, lyapunov=False, dtype="float32")
    assert (f32.dtype, f32.loss) == ("float32", "last")
    np.testing.assert_allclose(np.asarray(f32.full.log10_grad_norm), np.asarray(f64.full.log10_grad_norm),
                               atol=1e-4)


def test_single_layer_options_on_a_stacked_model_are_refused(tmp_path, capsys):
    lstm = torch.nn.LSTM(2, 3, num_layers=2).double()
    path = tmp_path / "two.pt"
    torch.save(lstm.state_dict(), path)
    code = main(["flow", "lstm", "--weights", str(path), "--steps", "4", "--mode", "matrix-free"])
    err = capsys.readouterr().err
    assert code == 2 and "--mode, --float32 and --probes apply to one layer" in err
