"""Issue 10, the silent half: a model as it was trained, never silently cut or misread.

Every case that used to run silently on the wrong thing (layer 0 of a stacked or bidirectional
module, a whole model's or a checkpoint's state_dict, batch-first inputs, a projected LSTM, a
cell that contradicts the module) is now either refused with a message that says what to do, or
measured correctly. The correct results are checked against an independent oracle: PyTorch
autograd through a real ``nn.LSTM``/``nn.GRU``/``nn.RNN`` in float64 holding the layer's weights,
∂s_T/∂s_k by ``torch.autograd.functional.jacobian`` and its largest singular value by NumPy.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from gradflow import GradflowError, gradient_flow, load_weights, network  # noqa: E402
from gradflow._cli import main  # noqa: E402
from gradflow._numeric.loading import GradflowNote  # noqa: E402

N, M, T, B = 3, 2, 5, 2


# ------------------------------------------------------------------------------------------------
# the oracle
# ------------------------------------------------------------------------------------------------

def _single(kind: str, sd: dict, suffix: str, nonlinearity: str = "tanh") -> nn.Module:
    """A real one-layer, one-direction torch module holding layer/direction ``suffix`` of ``sd``."""
    wih = sd[f"weight_ih{suffix}"]
    n, m = wih.shape[0] // {"lstm": 4, "gru": 3, "rnn": 1}[kind], wih.shape[1]
    mod = {"lstm": nn.LSTM, "gru": nn.GRU}.get(kind)
    layer = mod(m, n) if mod else nn.RNN(m, n, nonlinearity=nonlinearity)
    layer = layer.double()
    layer.load_state_dict({f"{k}_l0": sd[f"{k}{suffix}"].double() for k in
                           ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    return layer


def _run(layer, kind, s, x):
    """The final state (h, c) or h of ``layer`` from state ``s`` (flat) over inputs x (t, 1, m)."""
    n = layer.hidden_size
    if kind == "lstm":
        _, (h, c) = layer(x, (s[:n].reshape(1, 1, n), s[n:].reshape(1, 1, n)))
        return torch.cat([h.reshape(-1), c.reshape(-1)])
    _, h = layer(x, s.reshape(1, 1, n))
    return h.reshape(-1)


def oracle_log10_norm_2(layer, kind: str, x: np.ndarray) -> np.ndarray:
    """Batch mean of log10 ‖∂s_T/∂s_k‖₂, k = 0…T−1, by autograd through ``layer``."""
    xt = torch.as_tensor(x, dtype=torch.float64)
    Tn, Bn, _ = xt.shape
    S = layer.hidden_size * (2 if kind == "lstm" else 1)
    out = np.zeros((Bn, Tn))
    for b in range(Bn):
        xb = xt[:, b:b + 1]
        for k in range(Tn):
            s0 = torch.zeros(S, dtype=torch.float64)
            s_k = _run(layer, kind, s0, xb[:k]) if k else s0
            J = torch.autograd.functional.jacobian(lambda s, x=xb[k:]: _run(layer, kind, s, x), s_k.detach())
            out[b, k] = np.log10(np.linalg.svd(J.numpy(), compute_uv=False)[0])
    return out.mean(axis=0)


def rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _inputs(seed=0, m=M):
    return np.random.default_rng(seed).standard_normal((T, B, m))


def _curve(net, x):
    return gradient_flow(net, x, lyapunov=False).full.mean().log10_norm_2


class Classifier(nn.Module):
    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.embed = nn.Linear(M, M)
        self.rnn = rnn
        self.head = nn.Linear(N, 4)


def _lstm(**kw) -> nn.Module:
    torch.manual_seed(1)
    return nn.LSTM(M, N, **kw).double()


def _cli_json(capsys, *args):
    code = main(["flow", *map(str, args), "--json", "--no-lyapunov"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    return json.loads(cap.out), cap.err


def _cli_error(capsys, *args) -> str:
    code = main(["flow", *map(str, args)])
    cap = capsys.readouterr()
    assert code == 2 and cap.out == "", (code, cap.out)
    *notes, last = cap.err.splitlines()
    assert last.startswith("gradflow: error: ") and all(x.startswith("gradflow: note: ") for x in notes), cap.err
    return last


# ------------------------------------------------------------------------------------------------
# the table: each silent case → an error now (API and CLI)
# ------------------------------------------------------------------------------------------------

def _refusals():
    torch.manual_seed(0)
    two = nn.LSTM(M, N, num_layers=2).double()
    bi = nn.LSTM(M, N, bidirectional=True).double()
    proj = nn.LSTM(M, N + 1, proj_size=2).double()
    relu = nn.RNN(M, N, nonlinearity="relu").double()
    tanh = nn.RNN(M, N).double()
    gru = nn.GRU(M, N).double()
    lstm = nn.LSTM(M, N).double()
    two_rnns = nn.ModuleDict({"enc": nn.LSTM(M, N), "dec": nn.LSTM(M, N)})
    return [
        # (case, cell, source, kwargs, message)
        ("2-layer LSTM, no layer", "lstm", two, {},
         r"holds 2 layers \(weight_ih_l1 …\); gradflow measures one layer: pass --layer 0"),
        ("2-layer LSTM state_dict", "lstm", two.state_dict(), {}, "holds 2 layers"),
        ("bidirectional LSTM", "lstm", bi, {}, r"bidirectional \(…_reverse keys\).*--direction forward"),
        ("bidirectional, reverse asked", "lstm", bi, {"direction": "reverse"},
         "direction reverse is not supported"),
        ("no such layer", "lstm", two, {"layer": 2}, "has no layer 2"),
        ("proj_size > 0", "lstm", proj, {}, r"proj_size > 0 \(weight_hr_l0\)"),
        ("relu nn.RNN as tanh-rnn", "tanh-rnn", relu, {},
         r"cell tanh-rnn contradicts the module: .* is nn.RNN\(nonlinearity='relu'\); pass relu-rnn or irnn"),
        ("tanh nn.RNN as relu-rnn", "relu-rnn", tanh, {}, r"nn.RNN\(nonlinearity='tanh'\); pass tanh-rnn"),
        ("nn.GRU as gru-cho", "gru-cho", gru, {}, r"is nn.GRU \(PyTorch's GRU.*pass gru$"),
        ("nn.GRU in a model as gru-cho", "gru-cho", Classifier(nn.GRU(M, N)), {}, "rnn is nn.GRU"),
        ("nn.LSTM as slstm", "slstm", lstm, {}, "cell slstm contradicts the module"),
        ("LSTM state_dict as gru", "gru", lstm.state_dict(), {},
         r"contradicts the weights .* do not stack 3 gate.*4 stacked gates .*an LSTM"),
        ("GRU state_dict as lstm", "lstm", gru.state_dict(), {}, "3 stacked gates .*a GRU"),
        ("RNN state_dict as lstm", "lstm", tanh.state_dict(), {}, "1 stacked gates .*an Elman RNN"),
        ("two recurrent modules", "lstm", two_rnns, {}, r"2 recurrent modules: 'dec', 'enc'; .*--prefix"),
        ("prefix not there", "lstm", Classifier(lstm), {"prefix": "encoder"},
         r"no recurrent module under prefix 'encoder'; it has: 'rnn'"),
        ("no recurrent layer", "lstm", {"head.weight": torch.zeros(2, 2)}, {}, "holds no recurrent layer"),
        ("bad direction", "lstm", lstm, {"direction": "backward"}, "direction must be forward or reverse"),
    ]


@pytest.mark.parametrize("case", _refusals(), ids=lambda c: c[0])
def test_silent_case_is_refused(case):
    _, cell, source, kw, message = case
    with pytest.raises(GradflowError, match=message):
        network(cell, weights=source, **kw)


def _on_the_cli(case) -> bool:
    """Cases a saved file can show: not a module's type or nonlinearity (a state_dict does not
    record them; the gate count catches a different gate count, in the state_dict rows), not a
    direction argparse's choices already refuse."""
    _, _, source, kw, message = case
    if isinstance(source, dict) and "head.weight" in source:
        return False
    if kw.get("direction") == "backward":
        return False
    if not kw and re.search("layers|bidirectional|proj_size", message):  # the CLI analyses every
        return False  # layer and direction of these (issue 10; tests/test_stacked.py)
    return not ("nonlinearity" in message or "contradicts the module" in message or "is nn.GRU" in message)


@pytest.mark.parametrize("case", [c for c in _refusals() if _on_the_cli(c)], ids=lambda c: c[0])
def test_silent_case_is_refused_on_the_cli(case, tmp_path, capsys):
    _, cell, source, kw, message = case
    sd = source.state_dict() if hasattr(source, "state_dict") else source
    path = tmp_path / "w.pt"
    torch.save(sd, path)
    opts = []
    for k, v in kw.items():
        opts += [f"--{k}", v]
    if kw.get("layer", 0) > 0:  # refused earlier: a layer above 0 needs its inputs
        message = "--layer 2 reads the outputs of layer 1"
    code = main(["flow", cell, "--weights", str(path), "--steps", "3", *map(str, opts)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gradflow: error: ") and err.count("\n") == 1, err
    import re

    assert re.search(message.replace("$", ""), err), err
    assert str(path) in err or "state_dict" not in message


def test_refusals_table_covers_the_issue():
    names = {c[0] for c in _refusals()}
    for case in ("2-layer LSTM, no layer", "bidirectional LSTM", "proj_size > 0", "relu nn.RNN as tanh-rnn",
                 "nn.GRU as gru-cho", "two recurrent modules"):
        assert case in names


def test_layer_above_0_needs_its_inputs(tmp_path, capsys):
    path = tmp_path / "two.pt"
    torch.save(_lstm(num_layers=2).state_dict(), path)
    err = _cli_error(capsys, "lstm", "--weights", path, "--layer", "1", "--steps", "3")
    assert "--layer 1 reads the outputs of layer 0" in err and "--inputs" in err
    err = _cli_error(capsys, "lstm", "--weights", path, "--steps", "3", "--prefix", "x")
    assert "no recurrent module under prefix 'x'" in err and str(path) in err
    err = _cli_error(capsys, "lstm", "--hidden", "3", "--input", "2", "--steps", "3", "--layer", "0")
    assert "--layer selects weights in a --weights file" in err
    err = _cli_error(capsys, "lstm", "--hidden", "3", "--input", "2", "--steps", "3", "--batch-first")
    assert "--batch-first has no effect without --inputs" in err


# ------------------------------------------------------------------------------------------------
# … or a correct result, against autograd through the real module
# ------------------------------------------------------------------------------------------------

def test_whole_model_state_dict_prefix_found_with_a_note(tmp_path, capsys):
    model = Classifier(_lstm()).double()
    x = _inputs()
    ref = oracle_log10_norm_2(model.rnn, "lstm", x)
    with pytest.warns(GradflowNote, match="using the recurrent layer under 'rnn'"):
        net = network("lstm", weights=model.state_dict())
    assert rel(_curve(net, x), ref) <= 1e-10
    with pytest.warns(GradflowNote, match=r"'rnn' \(nn.LSTM\)"):  # the module object itself
        net = network("lstm", weights=model)
    assert rel(_curve(net, x), ref) <= 1e-10
    # on the CLI: one note line naming the file
    path, xs = tmp_path / "model.pt", tmp_path / "x.npy"
    torch.save(model.state_dict(), path)
    np.save(xs, x)
    rec, err = _cli_json(capsys, "lstm", "--weights", path, "--inputs", xs, "--time-first")
    assert err == f"gradflow: note: weights file {path}: using the recurrent layer under 'rnn'\n"
    assert rel([r["log10_norm_2"] for r in rec["curve"]], ref) <= 1e-10


@pytest.mark.parametrize("wrap", ["model", "state_dict", "npz"])
def test_checkpoints_nested_and_npz(tmp_path, capsys, wrap):
    model = Classifier(_lstm()).double()
    x = _inputs(1)
    ref = oracle_log10_norm_2(model.rnn, "lstm", x)
    opt = torch.optim.Adam(model.parameters())
    if wrap == "npz":
        path = tmp_path / "w.npz"
        np.savez(path, **{k: v.numpy() for k, v in model.state_dict().items()})
        where = "rnn"
    else:
        path = tmp_path / "ckpt.pt"
        torch.save({wrap: model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, path)
        where = f"{wrap}.rnn"
    xs = tmp_path / "x.npy"
    np.save(xs, x)
    rec, err = _cli_json(capsys, "lstm", "--weights", path, "--inputs", xs, "--time-first")
    assert f"using the recurrent layer under '{where}'" in err and err.count("\n") == 1
    assert rel([r["log10_norm_2"] for r in rec["curve"]], ref) <= 1e-10
    with pytest.warns(GradflowNote):
        net = network("lstm", weights=path)
    assert rel(_curve(net, x), ref) <= 1e-10


def test_prefix_picks_one_of_several(tmp_path, capsys):
    torch.manual_seed(3)
    model = nn.ModuleDict({"enc": nn.LSTM(M, N), "dec": nn.GRU(M, N)}).double()
    x = _inputs(2)
    for cell, kind, prefix in (("lstm", "lstm", "enc"), ("gru", "gru", "dec")):
        ref = oracle_log10_norm_2(model[prefix], kind, x)
        net = network(cell, weights=model, prefix=prefix)
        assert rel(_curve(net, x), ref) <= 1e-10
        path, xs = tmp_path / "m.pt", tmp_path / "x.npy"
        torch.save({"model": model.state_dict()}, path)
        np.save(xs, x)
        rec, err = _cli_json(capsys, cell, "--weights", path, "--inputs", xs, "--time-first",
                             "--prefix", f"model.{prefix}")
        assert err == ""
        assert rel([r["log10_norm_2"] for r in rec["curve"]], ref) <= 1e-10
    with pytest.raises(GradflowError, match=r"2 recurrent modules: 'model.dec', 'model.enc'"):
        network("gru", weights=path)


def test_layer_0_of_two_and_forward_of_bidirectional(tmp_path, capsys):
    x = _inputs(3)
    xs = tmp_path / "x.npy"
    np.save(xs, x)
    for kw, opts, suffix, told in (({"num_layers": 2}, ["--layer", "0"], "_l0", "measuring layer 0 of 2"),
                                   ({"bidirectional": True}, ["--direction", "forward"], "_l0",
                                    "measuring the forward direction")):
        mod = _lstm(**kw)
        layer0 = _single("lstm", mod.state_dict(), suffix)
        ref = oracle_log10_norm_2(layer0, "lstm", x)
        if kw.get("bidirectional"):  # the copy is the real module's forward direction
            out_real = mod(torch.as_tensor(x))[0][..., :N]
            np.testing.assert_allclose(layer0(torch.as_tensor(x))[0].detach(), out_real.detach(), rtol=1e-14)
        api = {"layer": 0} if "--layer" in opts else {"direction": "forward"}
        with pytest.warns(GradflowNote, match=told):
            net = network("lstm", weights=mod, **api)
        assert rel(_curve(net, x), ref) <= 1e-10
        path = tmp_path / "w.pt"
        torch.save(mod.state_dict(), path)
        rec, err = _cli_json(capsys, "lstm", "--weights", path, "--inputs", xs, "--time-first", *opts)
        assert err == f"gradflow: note: weights file {path}: {told}: the curves ignore " \
                      f"{'the other layers' if '--layer' in opts else 'the reverse one'}\n"
        assert rel([r["log10_norm_2"] for r in rec["curve"]], ref) <= 1e-10


def test_layer_1_with_its_inputs(tmp_path, capsys):
    mod = _lstm(num_layers=2)
    x = _inputs(4)
    below = _single("lstm", mod.state_dict(), "_l0")(torch.as_tensor(x))[0].detach().numpy()
    # the copy of layer 1 fed with the copy of layer 0 is the real module
    layer1 = _single("lstm", mod.state_dict(), "_l1")
    np.testing.assert_allclose(layer1(torch.as_tensor(below))[0].detach(), mod(torch.as_tensor(x))[0].detach(),
                               rtol=1e-13)
    ref = oracle_log10_norm_2(layer1, "lstm", below)
    path, xs = tmp_path / "w.pt", tmp_path / "below.npy"
    torch.save(mod.state_dict(), path)
    np.save(xs, below)
    rec, err = _cli_json(capsys, "lstm", "--weights", path, "--inputs", xs, "--time-first", "--layer", "1")
    assert "measuring layer 1 of 2" in err
    assert rel([r["log10_norm_2"] for r in rec["curve"]], ref) <= 1e-10
    np.save(tmp_path / "x.npy", x)  # the model's inputs are not layer 1's
    err = _cli_error(capsys, "lstm", "--weights", path, "--inputs", tmp_path / "x.npy", "--layer", "1")
    assert "input size 2 does not match the weights' input size 3" in err


@pytest.mark.parametrize("kind,cell,kw", [("rnn", "relu-rnn", {"nonlinearity": "relu"}),
                                          ("rnn", "tanh-rnn", {}), ("gru", "gru", {})])
def test_the_right_cell_for_the_module(kind, cell, kw):
    torch.manual_seed(5)
    mod = {"rnn": nn.RNN, "gru": nn.GRU}[kind](M, N, **kw).double()
    x = _inputs(5)
    ref = oracle_log10_norm_2(mod, kind, x)
    net = network(cell, weights=Classifier(mod).double(), prefix="rnn")
    assert rel(_curve(net, x), ref) <= 1e-10


def test_batch_first_inputs(tmp_path, capsys):
    mod = _lstm(batch_first=True)
    x = _inputs(6)  # (T, B, m)
    ref = oracle_log10_norm_2(_single("lstm", mod.state_dict(), "_l0"), "lstm", x)
    path, xs = tmp_path / "w.pt", tmp_path / "xbf.npy"
    torch.save(mod.state_dict(), path)
    xbf = np.ascontiguousarray(x.transpose(1, 0, 2))  # (B, T, m), as the module takes it
    np.save(xs, xbf)
    rec, _ = _cli_json(capsys, "lstm", "--weights", path, "--inputs", xs, "--batch-first")
    assert rec["steps"] == T and rec["batch"] == B
    assert rel([r["log10_norm_2"] for r in rec["curve"]], ref) <= 1e-10
    # the module says batch_first=True: the network records it and a note says how to pass inputs
    with pytest.warns(GradflowNote, match=r"batch_first=True; gradient_flow reads inputs as \(batch, T, m\)"):
        net = network("lstm", weights=mod)
    assert net.batch_first is True
    with pytest.warns(GradflowNote, match=r"reading the inputs as \(batch, T, m\)"):
        assert rel(_curve(net, xbf), ref) <= 1e-10  # the module's layout, taken from it
    assert rel(gradient_flow(net, x, batch_first=False, lyapunov=False).full.mean().log10_norm_2, ref) <= 1e-10
    assert network("lstm", weights=_lstm()).batch_first is False


def test_help_documents_the_inputs_layout(capsys):
    with pytest.raises(SystemExit):
        main(["flow", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "time first unless --batch-first; when batch = T both layouts fit and --time-first or " \
           "--batch-first must say which" in out
    for opt in ("--prefix", "--layer", "--direction", "--batch-first"):
        assert opt in out


def test_plain_layouts_unchanged():
    mod = _lstm()
    sd = mod.state_dict()
    a = load_weights("lstm", sd).arrays
    b = load_weights("lstm", {k.removesuffix("_l0"): v for k, v in sd.items()}).arrays
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(GradflowError, match="prefix, layer and direction select loaded weights"):
        network("lstm", 3, 2, layer=0)


def test_gru_state_dict_as_gru_cho_is_said(tmp_path, capsys):
    """A state_dict cannot tell gru from gru-cho (same shapes): the note says which is PyTorch's."""
    torch.manual_seed(7)
    path = tmp_path / "gru.pt"
    torch.save(nn.GRU(M, N).state_dict(), path)
    code = main(["flow", "gru-cho", "--weights", str(path), "--steps", "3", "--json", "--no-lyapunov"])
    err = capsys.readouterr().err
    assert code == 0 and err.count("\n") == 1
    assert "note: " in err and "nn.GRU/nn.GRUCell is gradflow's gru" in err
    _, err = _cli_json(capsys, "gru", "--weights", path, "--steps", "3")
    assert err == ""


@pytest.mark.parametrize("cell,module", [("lstm-1997", nn.GRU), ("slstm", nn.LSTM), ("sigmoid-rnn", nn.RNN)])
def test_state_dict_read_as_a_cell_no_module_computes_is_said(cell, module):
    torch.manual_seed(8)
    with pytest.warns(GradflowNote, match=f"no PyTorch module computes {cell}"):
        network(cell, weights=module(M, N).state_dict())
    with pytest.raises(GradflowError, match=f"cell {cell} contradicts the module"):
        network(cell, weights=module(M, N))
