"""The real loss (issue 10): cross-entropy of a head on the last or on every step, initial states,
batch-first inputs, ‖∂L/∂h_k‖ and ‖∂L/∂c_k‖ apart — against PyTorch autograd.

The oracle runs the real ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` one step at a time (sequence length
1, the state carried by hand), keeps every hidden state with ``retain_grad``, applies the real
``nn.Linear`` head and ``F.cross_entropy(reduction="sum")``, and calls ``backward()``: h_k.grad is
the total ∂L/∂h_k, collecting every later step's loss. Everything is float64; n ≤ 5, T ≤ 8.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from gradflow import gradient_flow, network
from gradflow._numeric.loading import GradflowNote
from gradflow._numeric.loss import cotangents

N, M, T, B, K = 4, 3, 6, 3, 5

KINDS = {  # gradflow cell → the PyTorch module that computes it
    "lstm": lambda **kw: nn.LSTM(M, N, **kw),
    "gru": lambda **kw: nn.GRU(M, N, **kw),
    "tanh-rnn": lambda **kw: nn.RNN(M, N, **kw),
    "relu-rnn": lambda **kw: nn.RNN(M, N, nonlinearity="relu", **kw),
}


class Model(nn.Module):
    def __init__(self, cell: str, batch_first: bool = False, head: str = "head"):
        super().__init__()
        self.rnn = KINDS[cell](batch_first=batch_first)
        setattr(self, head, nn.Linear(N, K))


def _torch_grads(rnn, head, x, loss, y, h0=None, c0=None):
    """log10 ‖∂L/∂s_k‖, ‖∂L/∂h_k‖, ‖∂L/∂c_k‖ (B, T) from backward() through the real module.

    ``x`` (T, B, m) time first (fed one step at a time in the module's own layout)."""
    lstm = isinstance(rnn, nn.LSTM)
    X = torch.from_numpy(x)
    h = torch.zeros(1, B, N, dtype=torch.float64) if h0 is None else torch.tensor(h0).reshape(1, B, N)
    c = torch.zeros(1, B, N, dtype=torch.float64) if c0 is None else torch.tensor(c0).reshape(1, B, N)
    h.requires_grad_(True)
    c.requires_grad_(True)
    hs, cs, L = [h], [c], 0.0
    for t in range(T):
        xt = X[t:t + 1].transpose(0, 1) if rnn.batch_first else X[t:t + 1]
        _, st = rnn(xt, (h, c)) if lstm else rnn(xt, h)
        h, c = st if lstm else (st, c)
        h.retain_grad()
        c.retain_grad()
        hs.append(h)
        cs.append(c)
        if loss == "every":
            L = L + F.cross_entropy(head(h[0]), torch.from_numpy(y[t]), reduction="sum")
    if loss == "last":
        L = F.cross_entropy(head(h[0]), torch.from_numpy(y), reduction="sum")
    elif loss == "sum":
        L = h.sum()
    L.backward()
    gh = np.stack([v.grad[0].numpy() for v in hs[:T]], axis=1)  # (B, T, n), k = 0…T−1
    gc = np.stack([v.grad[0].numpy() if v.grad is not None else np.zeros((B, N)) for v in cs[:T]], axis=1)
    with np.errstate(divide="ignore"):
        nh, nc = np.linalg.norm(gh, axis=-1), np.linalg.norm(gc, axis=-1)
        return {"full": np.log10(np.hypot(nh, nc)), "h": np.log10(nh), "c": np.log10(nc)}


def assert_log10(a, b, tol=1e-10):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape
    assert np.all(np.isfinite(b))
    err = np.max(np.abs(a - b)) * np.log(10)  # relative error of the norms
    assert err <= tol, err


def _data(seed, cell):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, M))
    y_last, y_every = rng.integers(0, K, B), rng.integers(0, K, (T, B))
    h0 = 0.5 * rng.standard_normal((1, B, N))
    c0 = 0.5 * rng.standard_normal((1, B, N)) if cell == "lstm" else None
    return x, y_last, y_every, h0, c0


CASES = [(cell, loss) for cell in KINDS for loss in ("sum", "last", "every")]


@pytest.mark.parametrize("cell, loss", CASES)
def test_loss_gradient_matches_autograd(cell, loss):
    """Every loss, with initial states; batch-first modules for the GRU and the ReLU RNN."""
    torch.manual_seed(hash((cell, loss)) % 1000)
    bf = cell in ("gru", "relu-rnn")
    model = Model(cell, batch_first=bf).double()
    x, y_last, y_every, h0, c0 = _data(len(cell) + len(loss), cell)
    y = {"sum": None, "last": y_last, "every": y_every}[loss]
    ref = _torch_grads(model.rnn, model.head, x, loss, y, h0, c0)
    with pytest.warns(GradflowNote) if bf else _nothing():
        net = network(cell, weights=model.rnn)
    # the head as the user has it: the nn.Linear itself (weights require grad)
    xin = x.transpose(1, 0, 2) if bf else x  # a batch-first module takes (B, T, m)
    yin = y_every.T if (bf and loss == "every") else y
    initial = (torch.tensor(h0, requires_grad=True), torch.tensor(c0)) if cell == "lstm" else torch.tensor(h0)
    with pytest.warns(GradflowNote, match="batch_first=True") if bf else _nothing():
        flow = gradient_flow(net, xin, loss=loss, head=model.head if loss != "sum" else None, targets=yin,
                             initial=initial, lyapunov=False, bound=False)
    assert flow.loss == loss
    assert_log10(flow.full.log10_grad_norm, ref["full"])
    if cell == "lstm":
        assert_log10(flow.grad_parts["h"], ref["h"])
        assert_log10(flow.grad_parts["c"], ref["c"])
        assert_log10(flow.cell_state.log10_grad_norm, ref["c"])
    else:
        assert flow.grad_parts is None


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_every_differs_from_last_and_heads_of_any_type():
    """The per-step loss adds its own terms (k = T−1 sees both); the head as tensors that require
    grad, as NumPy arrays, as a state_dict: one answer; the (V, c, targets) spelling still works."""
    torch.manual_seed(1)
    model = Model("lstm").double()
    x, y_last, y_every, _, _ = _data(9, "lstm")
    net = network("lstm", weights=model.rnn)
    V, c = model.head.weight, model.head.bias  # require grad: detached for the user
    assert V.requires_grad
    every = gradient_flow(net, x, loss="every", head=(V, c), targets=y_every, lyapunov=False)
    last = gradient_flow(net, x, loss="last", head=(V.detach().numpy(), c.detach().numpy()), targets=y_last,
                         lyapunov=False)
    old = gradient_flow(net, x, output=(V, c, y_last), lyapunov=False)
    sd = gradient_flow(net, x, loss="last", head=model.state_dict(), targets=y_last, lyapunov=False)
    ref = _torch_grads(model.rnn, model.head, x, "last", y_last)
    for f in (last, old, sd):
        assert_log10(f.full.log10_grad_norm, ref["full"])
    assert np.max(np.abs(every.full.log10_grad_norm - last.full.log10_grad_norm)) > 1e-3
    assert_log10(every.full.log10_grad_norm, _torch_grads(model.rnn, model.head, x, "every", y_every)["full"])


def test_cotangents_are_the_direct_partials():
    """cotangents() row t−1 is ∂L/∂h_t with h_t a leaf (no path through later steps)."""
    rng = np.random.default_rng(2)
    hs = rng.standard_normal((T, B, N))
    V, c, y = rng.standard_normal((K, N)), rng.standard_normal(K), rng.integers(0, K, (T, B))
    H = torch.tensor(hs, requires_grad=True)
    sum(F.cross_entropy(H[t] @ torch.tensor(V).T + torch.tensor(c), torch.tensor(y[t]), reduction="sum")
        for t in range(T)).backward()
    np.testing.assert_allclose(cotangents(hs, "every", (V, c), y), H.grad.numpy(), rtol=1e-12, atol=1e-14)
    last = cotangents(hs, "last", (V, c), y[-1])
    assert np.all(last[:-1] == 0)
    np.testing.assert_allclose(last[-1], H.grad.numpy()[-1], rtol=1e-12, atol=1e-14)
    assert np.all(cotangents(hs, "sum")[-1] == 1) and np.all(cotangents(hs, "sum")[:-1] == 0)


def test_diagonal_cell_every_loss_by_finite_differences():
    """A diagonal cell (IndRNN, the O(T·n) path) with loss='every': ∂L/∂h_k by central differences
    of the loss written out here, the recurrence h_t = relu(w ⊙ h_{t−1} + U x_t + b) stepped by hand."""
    net = network("indrnn", 3, 2, seed=4)
    x = np.random.default_rng(3).standard_normal((5, 1, 2))
    rng = np.random.default_rng(5)
    V, c, y = rng.standard_normal((4, 3)), rng.standard_normal(4), rng.integers(0, 4, (5, 1))
    flow = gradient_flow(net, x, loss="every", head=(V, c), targets=y, lyapunov=False)
    traj = net.unroll(x)

    def ce(h, label):
        z = h @ V.T + c
        return float(np.log(np.exp(z).sum()) - z[0, label])

    def total(k, hk):  # L with h_k replaced: its own term and the later steps re-run from it
        h, L = hk, ce(hk, y[k - 1, 0])
        for t in range(k + 1, 6):
            h = net.step(h, x[t - 1])[0]
            L += ce(h, y[t - 1, 0])
        return L

    for k in range(1, 5):  # k = 0: h_0 has no loss term of its own
        hk, grad = traj.states[k], np.zeros(3)
        for i in range(3):
            e = np.zeros((1, 3))
            e[0, i] = 1e-6
            grad[i] = (total(k, hk + e) - total(k, hk - e)) / 2e-6
        assert abs(flow.full.log10_grad_norm[0, k] - np.log10(np.linalg.norm(grad))) < 1e-6
