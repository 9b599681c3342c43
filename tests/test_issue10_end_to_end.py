"""Issue 10 end to end, as a new user runs it: a whole classifier (a 2-layer bidirectional,
batch-first ``nn.LSTM`` and an ``nn.Linear(2n, K)`` head) saved every way people save it, given to
``gradflow flow`` with its real loss, and to the training Recorder.

The oracle is PyTorch autograd through the real model in float64: the network is stepped here with
``nn.LSTMCell`` modules holding the model's own tensors (their composition is checked against the
model's own forward pass), every h_t and c_t is a leaf of the graph, and the cross-entropy of the
model's head is differentiated with respect to each of them. Nothing here is computed by gradflow.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gradflow._cli import main  # noqa: E402

N, M, K, T, B = 3, 2, 4, 5, 2


class Classifier(torch.nn.Module):
    """What people train: a stacked bidirectional LSTM read batch-first, a Linear head on y_t."""

    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        self.rnn = torch.nn.LSTM(M, N, num_layers=layers, bidirectional=True, batch_first=True)
        self.head = torch.nn.Linear(2 * N, K)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y)


def classifier(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    model = Classifier().double()
    with torch.no_grad():  # larger than the default init, so that layers and directions interact
        for p in model.rnn.parameters():
            p.mul_(2.0)
    return model


def data(seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((B, T, M)), rng.integers(0, K, B), rng.integers(0, K, (B, T))


def autograd_h_c(model: Classifier, x: np.ndarray, loss: str, y) -> dict:
    """{(layer, direction): (‖∂L/∂h_k‖, ‖∂L/∂c_k‖) for k = 0…T on the direction's own clock,
    shape (B, T+1)}: reverse's own step k is time t = T+1−k (k = 0: its initial state)."""
    rnn = model.rnn
    X = torch.from_numpy(x).transpose(0, 1)  # (T, B, m): stepped one time step at a time
    below = X
    nodes = {}
    for lay in range(rnn.num_layers):
        outs = []
        for d, sfx in enumerate(("", "_reverse")):
            cell = torch.nn.LSTMCell(below.shape[-1], N).double()
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, name).copy_(getattr(rnn, f"{name}_l{lay}{sfx}"))
            # zero leaves added to every h_k and c_k: ∂L/∂(leaf) is the gradient with respect to
            # that state coordinate alone (the c leaf is added after h_k = o ⊙ tanh c_k is formed,
            # so ∂L/∂c_k holds h_k fixed, as the block of ∂L/∂s_k, s_k = (h_k, c_k))
            hs = [torch.zeros(B, N, dtype=torch.float64, requires_grad=True) for _ in range(T + 1)]
            cs = [torch.zeros(B, N, dtype=torch.float64, requires_grad=True) for _ in range(T + 1)]
            h, c = hs[0], cs[0]
            order = range(T) if d == 0 else range(T - 1, -1, -1)
            out = [None] * T
            for k, t in enumerate(order, start=1):
                h, c = cell(below[t], (h, c))
                h, c = h + hs[k], c + cs[k]
                out[t] = h
            nodes[(lay, ("forward", "reverse")[d])] = (hs, cs)
            outs.append(torch.stack(out))
        below = torch.cat(outs, dim=-1)
    with torch.no_grad():  # the composition IS the real model
        assert torch.allclose(below.transpose(0, 1), rnn(torch.from_numpy(x))[0], rtol=0, atol=1e-13)
    logits = model.head(below)  # (T, B, K)
    ce = torch.nn.functional.cross_entropy
    if loss == "sum":  # gradflow's default: L = Σ_i (y_T)_i of the top output
        L = below[-1].sum()
    elif loss == "last":
        L = ce(logits[-1], torch.from_numpy(y), reduction="sum")
    else:  # every: y is (B, T) as a batch-first user holds it
        L = ce(logits.reshape(T * B, K), torch.from_numpy(y).T.reshape(-1), reduction="sum")
    leaves = [v for hs, cs in nodes.values() for v in hs + cs]
    grads = torch.autograd.grad(L, leaves, allow_unused=True)
    out, i = {}, 0
    for key in nodes:
        g = [torch.zeros(B, N, dtype=torch.float64) if v is None else v for v in grads[i:i + 2 * (T + 1)]]
        i += 2 * (T + 1)
        gh = np.stack([v.norm(dim=-1).numpy() for v in g[:T + 1]], axis=1)
        gc = np.stack([v.norm(dim=-1).numpy() for v in g[T + 1:]], axis=1)
        out[key] = (gh, gc)
    return out


def batch_mean_log10(norms: np.ndarray) -> np.ndarray:
    """gradflow's figure: the batch mean of per-sequence log10 norms (None where a norm is 0)."""
    with np.errstate(divide="ignore"):
        lg = np.log10(norms)
    return lg.mean(axis=0)


def compare(rec: dict, want: dict) -> None:
    assert rec["num_layers"] == 2 and rec["bidirectional"] is True and rec["steps"] == T and rec["batch"] == B
    assert [(r["layer"], r["direction"]) for r in rec["layers"]] == list(want)
    for lay in rec["layers"]:
        gh, gc = want[(lay["layer"], lay["direction"])]
        for key, norms in (("log10_grad_norm_h", gh), ("log10_grad_norm_c", gc)):
            got = [r[key] for r in lay["curve"]]
            exp = batch_mean_log10(norms)
            for k, (a, b) in enumerate(zip(got, exp, strict=True)):
                if not np.isfinite(b):  # an exact zero gradient: JSON null
                    assert a is None, (lay["layer"], lay["direction"], key, k, a)
                else:
                    assert a is not None and abs(a - b) <= 1e-10 * max(1.0, abs(b)), \
                        (lay["layer"], lay["direction"], key, k, a, b)


def run_flow(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["flow", "lstm", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The classifier saved four ways, and its batch-first data (read-only for the tests)."""
    tmp_path = tmp_path_factory.mktemp("saved")
    model = classifier()
    x, y_last, y_every = data()
    files = {"state_dict": tmp_path / "sd.pt", "checkpoint": tmp_path / "ckpt.pt",
             "torchscript": tmp_path / "ts.pt", "pickled": tmp_path / "whole.pt"}
    torch.save(model.state_dict(), files["state_dict"])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, files["checkpoint"])
    with warnings.catch_warnings():  # torch.jit's deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(model).save(str(files["torchscript"]))
    torch.save(model, files["pickled"])
    for name, arr in (("x", x), ("y_last", y_last), ("y_every", y_every)):
        np.save(tmp_path / f"{name}.npy", arr)
    return model, tmp_path, files


@pytest.mark.parametrize("loss", ["last", "every"])
def test_whole_classifier_real_loss_is_autograd_through_the_model(saved, capsys, loss):
    """state_dict, {'model', 'optimizer'} checkpoint and TorchScript archive of the whole
    classifier: the head (in-features 2n) is found, and ‖∂L/∂h^(l,d)_k‖, ‖∂L/∂c^(l,d)_k‖ of every
    layer, direction and step are autograd's through the real model (≤ 1e-10)."""
    model, d, files = saved
    x, y_last, y_every = data()
    want = autograd_h_c(model, x, loss, y_last if loss == "last" else y_every)
    targets = d / ("y_last.npy" if loss == "last" else "y_every.npy")
    for kind in ("state_dict", "checkpoint", "torchscript"):
        trust = ["--trust-torchscript"] if kind == "torchscript" else []
        code, out, err = run_flow(capsys, *trust, "--weights", str(files[kind]), "--inputs", str(d / "x.npy"),
                                  "--batch-first", "--loss", loss, "--targets", str(targets), "--json",
                                  "--no-lyapunov")
        assert code == 0, (kind, err)
        assert "as the head" in err, (kind, err)
        compare(json.loads(out), want)


def test_pickled_whole_model_is_one_line(saved, capsys):
    """torch.save(model) is never unpickled (weights_only): one line saying what to save instead."""
    _model, d, files = saved
    code, out, err = run_flow(capsys, "--weights", str(files["pickled"]), "--inputs", str(d / "x.npy"),
                              "--batch-first", "--loss", "last", "--targets", str(d / "y_last.npy"))
    assert code == 2 and out == ""
    assert err.startswith("gradflow: error: ") and err.count("\n") == 1, err
    assert "state_dict()" in err and "Traceback" not in err


def test_recorder_takes_the_whole_model_and_records_every_layer(tmp_path):
    """Recorder(model) with the whole batch-first classifier: the probe (B, T, m) is read in the
    recurrent layer's layout (not the wrapper's, which has no batch_first), and the stacked
    bidirectional LSTM is recorded whole: each layer's ‖∂L/∂h_k‖, ‖∂L/∂c_k‖ (L = Σ y_T) is autograd's."""
    import gradflow.torch as gft

    model = classifier(seed=3)
    x, _, _ = data(seed=4)
    path = tmp_path / "flow.jsonl"
    tags: dict = {}

    class Writer:  # the SummaryWriter interface
        def add_scalar(self, tag, value, step):
            tags[tag] = value

    rec = gft.Recorder(model, every=2, inputs=torch.from_numpy(x), path=path, tensorboard=Writer())
    assert rec.step(1) is None
    got = rec.step(2)
    assert got is not None and got["step"] == 2 and got["batch"] == B and got["steps"] == T
    compare(got, autograd_h_c(model, x, "sum", None))
    assert gft.read_records(path)[0]["layers"] == got["layers"]
    top = got["layers"][-1]["curve"][0]["log10_grad_norm_h"]  # layer 1 reverse, k = 0
    assert tags["gradflow/layer1_reverse/log10_grad_norm_h_k0"] == top and "gradflow/log10_norm_2_k0" not in tags
    one = gft.Recorder(model, every=1, inputs=x, layer=0, direction="forward").record(0)
    assert (one["batch"], one["steps"]) == (B, T)  # not (T, B): the layout is the LSTM's
    with pytest.raises(ValueError, match="bidirectional network"):
        gft.plot_training_curves([got])


def test_torchscript_archive_keeps_its_batch_first_layout(saved, capsys):
    """A TorchScript archive knows batch_first: its (B, T, m) inputs are read so without --batch-first
    (a note says so), giving the numbers of the state_dict with --batch-first; --time-first overrides."""
    _model, d, files = saved
    common = ["--inputs", str(d / "x.npy"), "--loss", "last", "--targets", str(d / "y_last.npy"), "--json",
              "--no-lyapunov"]
    code, out, err = run_flow(capsys, "--trust-torchscript", "--weights", str(files["torchscript"]), *common)
    assert code == 0 and "read as (batch, T, m)" in err and "batch_first=True" in err, err
    assert err.count("is a TorchScript archive") == 1, err  # read twice (model, head), noted once
    code2, out2, _ = run_flow(capsys, "--weights", str(files["state_dict"]), "--batch-first", *common)
    assert code2 == 0 and json.loads(out) == json.loads(out2)
    code, _, err = run_flow(capsys, "--trust-torchscript", "--weights", str(files["torchscript"]), "--time-first",
                            *common)
    assert code == 2 and "targets must have shape (5,)" in err  # (B, T, m) = (2, 5, 2) read as T = 2, B = 5


def test_stacked_json_keeps_the_one_layer_keys_and_the_readme_schema(saved, capsys):
    """flow --json of the whole stack keeps every top-level key of a one-layer run (mode, dtype
    included) and holds the per-layer records the README documents."""
    _model, d, files = saved
    common = ["--weights", str(files["state_dict"]), "--inputs", str(d / "x.npy"), "--batch-first", "--json",
              "--no-lyapunov"]
    code, out, _ = run_flow(capsys, *common)
    assert code == 0
    whole = json.loads(out)
    code, out, _ = run_flow(capsys, *common, "--layer", "0", "--direction", "forward")
    assert code == 0
    one = json.loads(out)
    assert set(one) <= set(whole), set(one) - set(whole)
    assert (whole["mode"], whole["dtype"]) == ("exact", "float64")
    assert {"num_layers", "bidirectional", "proj_size", "layers"} <= set(whole) and whole["curve"] == []
    for lay in whole["layers"]:
        assert set(lay) == {"layer", "direction", "clock", "hidden", "state_size", "curve"}
        assert lay["clock"] == ("forward" if lay["direction"] == "forward" else "reversed")
        assert [r["t"] for r in lay["curve"]] == (list(range(T + 1)) if lay["direction"] == "forward"
                                                  else [T + 1 - k for k in range(T + 1)])
        for r in lay["curve"]:
            base = {"k", "t", "log10_grad_norm_h", "log10_grad_norm_c"}
            assert set(r) == (base | {"log10_norm_2", "log10_norm_fro", "log10_grad_norm"} if r["k"] < T else base)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for key in ("num_layers", "bidirectional", "proj_size", '"layers"', '"clock"', "state_size",
                '"hidden": int, "state_size"', "log10_grad_norm_h", "log10_grad_norm_c"):
        assert key in readme, key


def test_one_step_inputs_are_not_called_ambiguous(tmp_path, capsys):
    """(T, m) with T = 1 has one layout; it was refused as '(T, batch, m) and (batch, T, m) both fit'."""
    np.save(tmp_path / "x.npy", np.ones((1, 2)))
    code, out, err = run_flow(capsys, "--hidden", "2", "--inputs", str(tmp_path / "x.npy"), "--json", "--no-lyapunov")
    assert code == 0 and json.loads(out)["steps"] == 1, err
    np.save(tmp_path / "sq.npy", np.ones((3, 3, 2)))  # B = T > 1: still refused in one line
    code, out, err = run_flow(capsys, "--hidden", "2", "--inputs", str(tmp_path / "sq.npy"))
    assert code == 2 and err.startswith("gradflow: error: ") and "both fit" in err and err.count("\n") == 1


@pytest.mark.parametrize("case", ["relu-as-tanh", "gru-as-cho", "proj", "layers"])
def test_the_silent_cases_of_the_issue_are_said(tmp_path, capsys, case):
    """Each case the issue found silent: a relu nn.RNN state_dict given as tanh-rnn and nn.GRU weights
    given as gru-cho say in a note what they were read as (a module object is refused); proj_size and
    num_layers = 2 are analysed whole, with a note."""
    torch.manual_seed(5)
    mod, cell = {"relu-as-tanh": (torch.nn.RNN(M, N, nonlinearity="relu"), "tanh-rnn"),
                 "gru-as-cho": (torch.nn.GRU(M, N), "gru-cho"),
                 "proj": (torch.nn.LSTM(M, N, proj_size=2), "lstm"),
                 "layers": (torch.nn.LSTM(M, N, num_layers=2), "lstm")}[case]
    path = tmp_path / "w.pt"
    torch.save(mod.double().state_dict(), path)
    code, out, err = (lambda c: (c, *capsys.readouterr()))(main(["flow", cell, "--weights", str(path), "--steps", "3",
                                                                  "--json", "--no-lyapunov"]))
    assert code == 0 and err.startswith("gradflow: note: "), err
    want = {"relu-as-tanh": "nonlinearity", "gru-as-cho": "gru-cho", "proj": "proj_size 2",
            "layers": "2 layer(s)"}[case]
    assert want in err, err
    if case in ("relu-as-tanh", "gru-as-cho"):  # the module itself contradicts the cell: refused
        import gradflow as gf

        with pytest.raises(ValueError, match="contradicts the module"):
            gf.network(cell, weights=mod)
    else:
        rec = json.loads(out)
        assert rec["num_layers"] == (2 if case == "layers" else 1) and rec["proj_size"] == (2 if case == "proj" else 0)


def test_torchscript_archive_is_checked_against_the_cell(tmp_path, capsys):
    """A TorchScript archive keeps its module's type: a relu nn.RNN given as tanh-rnn is refused in
    one line (a state_dict can only be read with a note), whole or one layer; relu-rnn reads it."""
    torch.manual_seed(6)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.RNN(M, N, nonlinearity="relu", num_layers=2)
            self.fc = torch.nn.Linear(N, K)

        def forward(self, x):
            return self.fc(self.rnn(x)[0])

    path = tmp_path / "ts.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(Model().double()).save(str(path))
    for extra in ([], ["--layer", "0"]):
        code, out, err = run_flow(capsys, "--trust-torchscript", "--weights", str(path), "--steps", "3",
                                  *extra)  # lstm: wrong too
        assert code == 2 and err.count("gradflow: error: ") == 1 and "contradicts" in err, err
        code = main(["flow", "tanh-rnn", "--trust-torchscript", "--weights", str(path), "--steps", "3", *extra])
        out, err = capsys.readouterr()
        assert code == 2 and err.count("gradflow: error: ") == 1 and "nonlinearity='relu'" in err, err
        assert "relu-rnn" in err and "Traceback" not in err
    assert main(["flow", "relu-rnn", "--trust-torchscript", "--weights", str(path), "--steps", "3", "--json",
                 "--no-lyapunov"]) == 0
    assert json.loads(capsys.readouterr().out)["num_layers"] == 2


def test_one_direction_of_a_bidirectional_classifier_names_the_whole_model(saved, capsys):
    """--layer 0 --direction forward with the model's 2n-wide head: one line that says why the head
    does not fit and what measures it."""
    _model, d, files = saved
    code, out, err = run_flow(capsys, "--weights", str(files["state_dict"]), "--layer", "0", "--direction", "forward",
                              "--inputs", str(d / "x.npy"), "--batch-first", "--loss", "last", "--targets",
                              str(d / "y_last.npy"))
    assert code == 2 and out == "" and err.count("gradflow: error: ") == 1, err
    assert f"(4, {2 * N})" in err and "both directions" in err and "no --layer/--direction" in err, err


def test_checkpoint_with_numpy_numbers_loads_and_code_is_still_refused(saved, tmp_path, capsys):
    """A checkpoint whose extras are NumPy scalars and arrays (metrics, say) is data: it loads (still
    weights_only) and gives the state_dict's numbers; NumPy object arrays and pickled classes are
    refused in one line naming what is pickled."""
    model, d, files = saved
    sd = model.state_dict()
    cases = {"metrics.pt": {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "best": np.float64(0.9),
                            "history": np.arange(3.0), "hyper_parameters": {"lr": 0.1, "name": "x"}},
             "objects.pt": {"model": sd, "extra": np.array([{"a": 1}], dtype=object)},
             "module.pt": {"model": sd, "head": model.head}}
    for name, ckpt in cases.items():
        torch.save(ckpt, tmp_path / name)
    common = ["--inputs", str(d / "x.npy"), "--batch-first", "--json", "--no-lyapunov"]
    code, out, err = run_flow(capsys, "--weights", str(tmp_path / "metrics.pt"), *common)
    assert code == 0, err
    code2, out2, _ = run_flow(capsys, "--weights", str(files["state_dict"]), *common)
    assert json.loads(out)["layers"] == json.loads(out2)["layers"]
    for name, says in (("objects.pt", "pickled Python objects"), ("module.pt", "torch.nn.modules.linear.Linear")):
        code, out, err = run_flow(capsys, "--weights", str(tmp_path / name), *common)
        assert code == 2 and out == "" and err.startswith("gradflow: error: ") and err.count("\n") == 1, err
        assert says in err and "state_dict()" in err, err


def test_inputs_from_a_bare_state_dict_say_how_they_are_read(tmp_path, capsys):
    """A state_dict does not record batch_first: (batch, T, m) data would be read as (T, batch, m)
    in silence. Now the reading is said, and --batch-first / --steps state or check it."""
    import torch

    from gradflow._cli import main

    torch.save(torch.nn.LSTM(2, 3).state_dict(), tmp_path / "w.pt")
    np.save(tmp_path / "x.npy", np.zeros((2, 5, 2)))  # batch 2, T = 5, saved batch first
    base = ["flow", "lstm", "--weights", str(tmp_path / "w.pt"), "--inputs", str(tmp_path / "x.npy"),
            "--json", "--no-lyapunov"]
    assert main(base) == 0
    err = capsys.readouterr().err
    assert "read time first, as 2 steps of batch 5; pass --batch-first if it is (batch, T, m)" in err
    assert main([*base, "--batch-first"]) == 0
    out, err = capsys.readouterr()
    assert "read time first" not in err and '"steps": 5' in out and '"batch": 2' in out
    assert main([*base, "--steps", "5"]) == 2  # --steps checks the reading
    assert "--steps 5 does not match the 2 steps" in capsys.readouterr().err
