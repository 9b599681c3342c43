"""The real loss (issue 10): cross-entropy of a head on the last or on every step, initial states,
batch-first inputs, ‖∂L/∂h_k‖ and ‖∂L/∂c_k‖ apart — against PyTorch autograd.

The oracle runs the real ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` one step at a time (sequence length
1, the state carried by hand), keeps every hidden state with ``retain_grad``, applies the real
``nn.Linear`` head and ``F.cross_entropy(reduction="sum")``, and calls ``backward()``: h_k.grad is
the total ∂L/∂h_k, collecting every later step's loss. Everything is float64; n ≤ 5, T ≤ 8.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from gradflow import GradflowError, gradient_flow, network
from gradflow._cli import main
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
    fin = np.isfinite(b)  # exact zeros (a ReLU unit off) are −inf in both
    assert np.array_equal(fin, np.isfinite(a)) and np.all(a[~fin] == b[~fin]) and fin.mean() > 0.5
    err = np.max(np.abs(a[fin] - b[fin])) * np.log(10)  # relative error of the norms
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
    torch.manual_seed(CASES.index((cell, loss)))
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
                             initial=initial, lyapunov=False, bound=False, spectral="svd")
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


# -- the command line -----------------------------------------------------------------------------
def _cli(capsys, *args):
    code = main(["flow", *map(str, args)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _files(tmp_path, model, x, y=None, initial=None, name="m.pt"):
    torch.save(model.state_dict(), tmp_path / name)
    np.save(tmp_path / "x.npy", x)
    if y is not None:
        np.save(tmp_path / "y.npy", y)
    if initial is not None:
        np.savez(tmp_path / "init.npz", **initial)
    return tmp_path / name, tmp_path / "x.npy", tmp_path / "y.npy", tmp_path / "init.npz"


def test_cli_every_loss_head_from_checkpoint_initial_states(tmp_path, capsys):
    """gradflow flow lstm --loss every --targets --initial (h0, c0): the JSON curves are the batch
    means of log10 ‖∂L/∂s_k‖, ‖∂L/∂h_k‖, ‖∂L/∂c_k‖ from torch; the head 'fc' is found (a note)."""
    torch.manual_seed(7)
    model = Model("lstm", head="fc").double()
    x, _, y, h0, c0 = _data(11, "lstm")
    w, xs, ys, init = _files(tmp_path, model, x, y, {"h0": h0, "c0": c0})
    code, out, err = _cli(capsys, "lstm", "--weights", w, "--prefix", "rnn", "--inputs", xs, "--loss", "every",
                          "--targets", ys, "--initial", init, "--json", "--no-lyapunov")
    assert code == 0, err
    assert "using the output Linear 'fc' as the head" in err
    rec = json.loads(out)
    ref = _torch_grads(model.rnn, model.fc, x, "every", y, h0, c0)
    assert rec["loss"] == "every"
    for key, part in (("log10_grad_norm", "full"), ("log10_grad_norm_h", "h"), ("log10_grad_norm_c", "c")):
        assert_log10([r[key] for r in rec["curve"]], ref[part].mean(axis=0))
    # the table shows the h and c gradients too
    code, out, _ = _cli(capsys, "lstm", "--weights", w, "--inputs", xs, "--loss", "every", "--targets", ys,
                        "--initial", init, "--no-lyapunov", "--spectral", "svd")
    assert code == 0 and "||dL/dh_k||" in out and "||dL/dc_k||" in out and "loss every" in out


def test_cli_last_loss_batch_first_head_prefix(tmp_path, capsys):
    """A GRU classifier with two Linear layers that could be the head: refused and listed without
    --head, measured with --head; batch-first inputs; h_0 as PyTorch's (1, B, n) .npy."""
    torch.manual_seed(8)
    model = Model("gru", batch_first=True).double()
    model.fc = nn.Linear(N, K).double()
    x, y, _, h0, _ = _data(12, "gru")
    w, xs, ys, _ = _files(tmp_path, model, x.transpose(1, 0, 2), y)
    np.save(tmp_path / "h0.npy", h0)
    args = ("gru", "--weights", w, "--prefix", "rnn", "--inputs", xs, "--batch-first", "--loss", "last",
            "--targets", ys, "--initial", tmp_path / "h0.npy", "--json", "--no-lyapunov")
    code, out, err = _cli(capsys, *args)
    assert code == 2 and out == "" and err.splitlines()[-1].startswith("gradflow: error: ")
    assert "2 Linear layers that could be the head: 'fc', 'head'" in err
    code, out, err = _cli(capsys, *args, "--head", "fc")
    assert code == 0, err
    ref = _torch_grads(model.rnn, model.fc, x, "last", y, h0)
    assert_log10([r["log10_grad_norm"] for r in json.loads(out)["curve"]], ref["full"].mean(axis=0))


def _error(capsys, *args) -> str:
    code, out, err = _cli(capsys, *args)
    assert code == 2 and out == "", (code, out, err)
    *notes, last = err.splitlines()
    assert last.startswith("gradflow: error: ") and all(x.startswith("gradflow: note: ") for x in notes), err
    return last


BAD = [  # (extra arguments, what the one-line error says); files made in the test
    (("--targets", "y_last"), "--targets needs --loss last"),
    (("--loss", "last"), "--loss last needs --targets"),
    (("--loss", "last", "--targets", "y_big"), "class indices in 0..4"),
    (("--loss", "last", "--targets", "y_every"), "targets must have shape (3,)"),
    (("--loss", "every", "--targets", "y_last"), "targets must have shape (6, 3)"),
    (("--loss", "last", "--targets", "y_float"), "integer class indices"),
    (("--loss", "sum", "--head", "head"), "--head has no effect with --loss sum"),
    (("--loss", "last", "--targets", "y_last", "--head", "nothere"), "no Linear layer under 'nothere'"),
    (("--initial", "h0_layers"), "for 2 layers/directions"),
    (("--initial", "h0_wrong"), "expected (1, 3, 4)"),
    (("--initial", "init_bad"), "unknown state 'q0'"),
    (("--batch-first", "--time-first"), "contradict each other"),
]


def test_cli_bad_loss_options_are_one_line_errors(tmp_path, capsys):
    torch.manual_seed(9)
    model = Model("lstm").double()
    x, y_last, y_every, _, _ = _data(13, "lstm")
    w, xs, _, _ = _files(tmp_path, model, x)
    arrays = {"y_last": y_last, "y_every": y_every, "y_big": y_last + K, "y_float": y_last + 0.5,
              "h0_layers": np.zeros((2, B, N)), "h0_wrong": np.zeros((B, N + 1))}
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
    np.savez(tmp_path / "init_bad.npz", h0=np.zeros((1, B, N)), q0=np.zeros((1, B, N)))
    files = {**{k: tmp_path / f"{k}.npy" for k in arrays}, "init_bad": tmp_path / "init_bad.npz"}
    for extra, message in BAD:
        args = [files.get(e, e) for e in extra]
        assert message in _error(capsys, "lstm", "--weights", w, "--inputs", xs, *args), extra


def test_square_inputs_need_their_layout(tmp_path, capsys):
    """(B, T, m) and (T, B, m) both fit when B = T: refused unless --time-first or --batch-first."""
    x = np.random.default_rng(0).standard_normal((4, 4, M))
    np.save(tmp_path / "sq.npy", x)
    args = ("tanh-rnn", "--hidden", N, "--inputs", tmp_path / "sq.npy", "--json", "--no-lyapunov")
    assert "both fit; say which with --time-first or --batch-first" in _error(capsys, *args)
    code, out, err = _cli(capsys, *args, "--time-first", "--steps", 4)
    assert code == 0 and json.loads(out)["batch"] == 4, err


# -- the cases the issue found silent ---------------------------------------------------------------
def test_relu_state_dict_read_as_tanh_is_said(tmp_path, capsys):
    """A bare state_dict cannot tell nn.RNN's relu from tanh: one note says which was read; a
    module that contradicts the cell is refused."""
    rnn = nn.RNN(M, N, nonlinearity="relu").double()
    torch.save(rnn.state_dict(), tmp_path / "r.pt")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((T, B, M)))
    code, _, err = _cli(capsys, "tanh-rnn", "--weights", tmp_path / "r.pt", "--inputs", tmp_path / "x.npy",
                        "--time-first", "--json", "--no-lyapunov")
    assert code == 0 and err.count("\n") == 1
    assert "does not record nn.RNN's nonlinearity: read with tanh as tanh-rnn; pass relu-rnn" in err
    with pytest.warns(GradflowNote, match="read with relu as relu-rnn; pass tanh-rnn"):
        network("relu-rnn", weights=rnn.state_dict())
    with pytest.raises(GradflowError, match=r"contradicts the module: .*relu.*pass relu-rnn"):
        network("tanh-rnn", weights=rnn)
    with pytest.warns(GradflowNote, match="read as Cho et al.'s gru-cho"):
        network("gru-cho", weights=nn.GRU(M, N).state_dict())
    with pytest.raises(GradflowError, match="contradicts the module"):
        network("gru-cho", weights=nn.GRU(M, N))


def test_api_refusals():
    torch.manual_seed(2)
    model = Model("lstm").double()
    net = network("lstm", weights=model.rnn)
    x, y, _, _, _ = _data(1, "lstm")
    for kw, msg in (({"loss": "last", "targets": y}, "needs a head"),
                    ({"loss": "mean"}, "loss must be one of sum, last, every"),
                    ({"targets": y}, "targets given without a loss"),
                    ({"loss": "sum", "head": model.head}, "takes no head"),
                    ({"loss": "last", "head": nn.Linear(N + 1, K), "targets": y}, r"must be \(K, 4\)"),
                    ({"output": (model.head.weight, model.head.bias, y), "loss": "every"}, "not both"),
                    ({"batch_first": "yes"}, "batch_first must be"),
                    ({"initial": {"z": np.zeros(N)}}, "unknown state 'z'")):
        with pytest.raises(GradflowError, match=msg):
            gradient_flow(net, x, lyapunov=False, **kw)


def test_several_states_have_their_own_gradient_keys(capsys):
    """coRNN (h, z): JSON keys log10_grad_norm_h and _z with ‖∂L/∂s_k‖² = ‖∂L/∂h_k‖² + ‖∂L/∂z_k‖²
    (batch 1); a one-state cell has none; an LSTM given h_0 alone starts c_0 at zero, said."""
    code, out, err = _cli(capsys, "cornn", "--hidden", 3, "--input", 2, "--steps", 4, "--json", "--no-lyapunov")
    assert code == 0, err
    for r in json.loads(out)["curve"]:
        full, h, z = (10.0 ** (2 * r[k]) for k in ("log10_grad_norm", "log10_grad_norm_h", "log10_grad_norm_z"))
        assert abs(full - h - z) <= 1e-12 * full and h > 0 and z > 0
    code, out, _ = _cli(capsys, "gru", "--hidden", 3, "--input", 2, "--steps", 4, "--json", "--no-lyapunov")
    assert code == 0 and not any(k.startswith("log10_grad_norm_") for k in json.loads(out)["curve"][0])
    net = network("lstm", 3, 2)
    with pytest.warns(GradflowNote, match="no c0 given; starting from zero"):
        gradient_flow(net, np.ones((4, 2)), initial=np.ones(3), lyapunov=False)
