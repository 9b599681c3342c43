"""gradflow.torch.Recorder: what it writes during training equals PyTorch autograd on the module.

The oracle never goes through gradflow: the trained ``nn.LSTM`` / ``nn.GRU`` itself (a float64
copy of it at the recorded step) is stepped one time step at a time, its Jacobians
∂s_t/∂s_{t−1} taken by ``torch.autograd.functional.jacobian``, multiplied out, and the norms
written out here: log10 ‖∂s_T/∂s_k‖₂, ‖·‖_F, and ‖∂L/∂s_k‖ with L = Σ h_T, batch means.
"""

from __future__ import annotations

import copy
import importlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gradflow.torch as gft  # noqa: E402
from gradflow import GradflowError  # noqa: E402


def oracle_curves(module, x_tbm: np.ndarray) -> dict[str, np.ndarray]:
    """Batch-mean log10 curves of ``module`` (one layer, time-first inputs (T, B, m)) by autograd."""
    mod = copy.deepcopy(module).double().requires_grad_(False)
    lstm = isinstance(mod, torch.nn.LSTM)
    n = mod.hidden_size
    N = 2 * n if lstm else n
    T, B, _ = x_tbm.shape

    def F(s, xt):  # one step of the module itself: (h, c) or h
        if lstm:
            _, (h, c) = mod(xt[None, None], (s[None, None, :n], s[None, None, n:]))
            return torch.cat([h[0, 0], c[0, 0]])
        _, h = mod(xt[None, None], s[None, None])
        return h[0, 0]

    out = {"log10_norm_2": np.zeros(T), "log10_norm_fro": np.zeros(T), "log10_grad_norm": np.zeros(T)}
    for b in range(B):
        X = torch.from_numpy(x_tbm[:, b, :])
        s = torch.zeros(N, dtype=torch.float64)
        Js = []
        for t in range(T):
            Js.append(torch.autograd.functional.jacobian(lambda v, xt=X[t]: F(v, xt), s).numpy())
            s = F(s, X[t])
        g_T = np.r_[np.ones(n), np.zeros(N - n)]  # ∂(Σ h_T)/∂s_T
        P = np.eye(N)
        for k in range(T - 1, -1, -1):  # ∂s_T/∂s_k = J_T ⋯ J_{k+1}
            P = P @ Js[k]
            out["log10_norm_2"][k] += np.log10(np.linalg.norm(P, 2)) / B
            out["log10_norm_fro"][k] += np.log10(np.linalg.norm(P, "fro")) / B
            out["log10_grad_norm"][k] += np.log10(np.linalg.norm(g_T @ P)) / B
    return out


class Model(torch.nn.Module):
    def __init__(self, kind=torch.nn.LSTM, m=2, n=3):
        super().__init__()
        self.rnn = kind(m, n, batch_first=True)
        self.head = torch.nn.Linear(n, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def _train(model, rec, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    snapshots = {}
    for step in range(steps):
        if rec.step(step) is not None:
            snapshots[step] = copy.deepcopy(model.rnn)
        x = torch.randn(8, 6, 2, generator=g)
        y = (x[:, :, 0].sum(1) > 0).long()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return snapshots


@pytest.mark.parametrize("kind, cell", [(torch.nn.LSTM, "lstm"), (torch.nn.GRU, "gru")])
def test_recordings_equal_autograd_on_the_module(tmp_path, kind, cell):
    torch.manual_seed(0)
    model = Model(kind)
    probe = torch.randn(2, 6, 2)  # (B, T, m): the module is batch_first
    path = tmp_path / "flow.jsonl"
    rec = gft.Recorder(model.rnn, every=3, inputs=probe, path=path)
    snapshots = _train(model, rec, 4)
    assert sorted(snapshots) == [0, 3]

    lines = path.read_text().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert records == gft.read_records(path) == json.loads(json.dumps(rec.records))
    x_tbm = probe.double().numpy().transpose(1, 0, 2)
    for r, step in zip(records, (0, 3), strict=True):
        assert (r["step"], r["cell"], r["hidden"], r["steps"], r["batch"]) == (step, cell, 3, 6, 2)
        assert r["seconds"] > 0
        want = oracle_curves(snapshots[step], x_tbm)
        for field, curve in want.items():
            got = np.array([c[field] for c in r["curve"]])
            np.testing.assert_allclose(got, curve, rtol=0, atol=1e-10, err_msg=f"{field} at step {step}")
    # training changed the weights, so the two recordings differ (the test can see a change)
    a, b = (np.array([c["log10_norm_2"] for c in r["curve"]]) for r in records)
    assert np.abs(a - b).max() > 1e-3


def test_recorder_copies_the_weights_and_the_probe():
    torch.manual_seed(1)
    model = Model()
    probe = torch.randn(2, 5, 2)
    rec = gft.Recorder(model.rnn, every=1, inputs=probe)
    first = rec.record(0)
    probe.mul_(10.0)  # changing the caller's tensor afterwards changes nothing recorded
    assert rec.record(1)["curve"] == first["curve"]
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(3.0)
    assert rec.record(2)["curve"] != first["curve"]


def test_tensorboard_scalars_and_missing_tensorboard(tmp_path):
    torch.manual_seed(2)
    model = Model()

    class Writer:  # the SummaryWriter interface the Recorder calls
        def __init__(self):
            self.calls = []

        def add_scalar(self, tag, value, step):
            self.calls.append((tag, value, step))

    w = Writer()
    rec = gft.Recorder(model.rnn, every=2, inputs=torch.randn(1, 4, 2), tensorboard=w)
    r = rec.step(4)
    tags = {t: (v, s) for t, v, s in w.calls}
    assert tags["gradflow/log10_norm_2_k0"] == (r["curve"][0]["log10_norm_2"], 4)
    assert {"gradflow/log10_grad_norm_k0", "gradflow/decay_per_step", "gradflow/seconds"} <= set(tags)
    try:
        importlib.import_module("torch.utils.tensorboard")
    except ImportError:
        with pytest.warns(UserWarning, match="tensorboard is not installed"):
            rec = gft.Recorder(model.rnn, inputs=torch.randn(1, 4, 2), tensorboard=tmp_path / "tb")
        assert rec.writer is None and rec.record(0)["step"] == 0


def test_bad_arguments_are_one_gradflow_error(tmp_path):
    model = Model()
    x = torch.randn(1, 4, 2)
    with pytest.raises(GradflowError, match="every must be"):
        gft.Recorder(model.rnn, every=0, inputs=x)
    with pytest.raises(GradflowError, match="probe inputs have 3 features"):
        gft.Recorder(model.rnn, inputs=torch.randn(1, 4, 3))
    with pytest.raises(GradflowError, match="NaN"):
        gft.Recorder(model.rnn, inputs=x * float("nan"))
    with pytest.raises(GradflowError, match="holds no nn.RNN"):
        gft.Recorder(model.head, inputs=x)
    with pytest.raises(GradflowError, match="contradicts"):
        gft.Recorder(model.rnn, cell="gru", inputs=x)
    with pytest.raises(GradflowError, match="step must be"):
        gft.Recorder(model.rnn, inputs=x).step(-1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 0, "curve": [{"k": 0}]}\nnot json\n')
    with pytest.raises(GradflowError, match="line 2: not JSON"):
        gft.read_records(bad)
    with pytest.raises(GradflowError, match="not found"):
        gft.read_records(tmp_path / "missing.jsonl")


def test_plot_training_curves(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.manual_seed(3)
    model = Model()
    path = tmp_path / "flow.jsonl"
    rec = gft.Recorder(model.rnn, every=1, inputs=torch.randn(2, 5, 2), path=path)
    _train(model, rec, 3)
    fig, ax = plt.subplots()
    assert gft.plot_training_curves(path, ax=ax) is ax
    assert len(ax.lines) == 3
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [5, 4, 3, 2, 1])  # T − k
    np.testing.assert_allclose(ax.lines[2].get_ydata(), [c["log10_norm_2"] for c in rec.records[2]["curve"]])
    assert any(a.get_ylabel() == "training step" for a in fig.axes if a is not ax)
    ax2 = gft.plot_training_curves(rec.records, block="cell_state", norm="fro")
    assert ax2 is not ax and "c_T" in ax2.get_ylabel()
    with pytest.raises(GradflowError):
        gft.plot_training_curves(rec.records, norm="nuclear")
    plt.close("all")
