"""Keras 3 stacked and bidirectional models analysed whole, against Keras itself.

The oracle is Keras on the PyTorch backend in float64: the saved model's own recurrent cells
(``layer.cell``, Keras' code) are stepped here, layer by layer and direction by direction (the
backward layer of a Bidirectional over reversed inputs, its outputs flipped back, the two
concatenated), and the composition is first checked to reproduce ``model(x)``. PyTorch autograd
through that composition gives ∂L/∂h and ∂L/∂c at every state node, and the Jacobian of the
final states with respect to the states at step k gives the whole-stack product. gradflow reads
only the saved ``.keras`` file.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
pytest.importorskip("h5py")
keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

import gradflow as gf  # noqa: E402
from gradflow._numeric.stack import stacked_gradients, stacked_network, stacked_products  # noqa: E402

T, B, M, N = 4, 2, 3, 4


@pytest.fixture(scope="module")
def float64_keras():
    if keras.backend.backend() != "torch":
        pytest.skip("these tests run Keras on the PyTorch backend (KERAS_BACKEND=torch)")
    keras.config.set_floatx("float64")
    # Keras 3 promotes float64 operands of its own ops to float32 on the torch backend
    # (dtypes.BIT64_TO_BIT32_DTYPE); the float64 oracle keeps float64 while these tests run
    # (as tests/test_keras.py does). Keras' cell code is unchanged.
    from keras.src.backend.common import dtypes

    table = dtypes.BIT64_TO_BIT32_DTYPE
    old = table.get("float64")
    table["float64"] = "float64"
    try:
        yield
    finally:
        table["float64"] = old


def _kw(seed):
    return {"return_sequences": True, "bias_initializer": keras.initializers.RandomNormal(seed=seed),
            "kernel_initializer": keras.initializers.RandomNormal(stddev=0.8, seed=seed + 1),
            "recurrent_initializer": keras.initializers.RandomNormal(stddev=0.8, seed=seed + 2)}


def build(kind):
    L = keras.layers
    if kind == "lstm2":
        layers = [L.LSTM(N, name="low", **_kw(0)), L.Dropout(0.3), L.LSTM(N, name="high", **_kw(10))]
    elif kind == "bilstm":
        layers = [L.Bidirectional(L.LSTM(N, **_kw(20)), name="bi_low"),
                  L.Bidirectional(L.LSTM(N, **_kw(30)), name="bi_high")]
    elif kind == "gru2":  # different widths: layer 1 reads 4 features, has 3 units
        layers = [L.GRU(N, name="g1", **_kw(40)), L.GRU(3, name="g2", **_kw(50))]
    elif kind == "bilast":  # a classifier: the top returns [h_forward_T ; h_backward at t = 1]
        layers = [L.Bidirectional(L.LSTM(N, **_kw(60))),
                  L.Bidirectional(L.LSTM(N, **{**_kw(70), "return_sequences": False})), L.Dropout(0.5)]
        head = L.Dense(3, name="classes", bias_initializer=keras.initializers.RandomNormal(seed=80))
        return keras.Sequential([keras.Input((T, M))] + layers + [head])
    else:
        raise AssertionError(kind)
    return keras.Sequential([keras.Input((T, M))] + layers + [L.Dense(2, name="head")])


CELLS = {"lstm2": "lstm", "bilstm": "lstm", "gru2": "gru"}


@pytest.fixture(scope="module")
def saved(float64_keras, tmp_path_factory):
    d = tmp_path_factory.mktemp("keras_stack")
    out = {}
    for kind in [*CELLS, "bilast"]:
        model = build(kind)
        model.save(d / f"{kind}.keras")
        out[kind] = (model, str(d / f"{kind}.keras"))
    out["lstm2"][0].save_weights(d / "lstm2.weights.h5")
    out["dir"] = d
    return out


def recurrent(model):
    return [lay for lay in model.layers if isinstance(lay, (keras.layers.RNN, keras.layers.Bidirectional))]


def keras_states(model, x, starts=None):
    """Step the model's own Keras cells over x (B, T, m) as its layers wire them.

    Returns (top output sequence (B, T, K), trail, values): values[(l, d)][k] is the list of state
    tensors on the direction's own clock (k = 0 the initial state). ``starts``: optional initial state
    lists per (l, d); zeros otherwise (leaves that require grad). After step k, trail holds zero
    leaves added to the states: their gradients are the state nodes' gradients."""
    seq, trail, values = torch.from_numpy(x), {}, {}
    for l, layer in enumerate(recurrent(model)):
        subs = [layer.forward_layer, layer.backward_layer] if isinstance(layer, keras.layers.Bidirectional) else [layer]
        outs = []
        for d, sub in enumerate(subs):
            cell = sub.cell
            sizes = cell.state_size if isinstance(cell.state_size, (list, tuple)) else [cell.state_size]
            if starts is None:
                state = [torch.zeros(x.shape[0], s, dtype=torch.float64, requires_grad=True) for s in sizes]
            else:
                state = starts[(l, d)]
            xs = seq if d == 0 else torch.flip(seq, [1])
            states, vals, hs = [state], [state], []
            for k in range(xs.shape[1]):
                _, new = cell(xs[:, k], state, training=False)
                new = list(new) if isinstance(new, (list, tuple)) else [new]
                # s_k + 0 with a zero leaf per state: its .grad is ∂L/∂h_k, ∂L/∂c_k with h and c as
                # independent nodes (c_k reaches L only through the next step, not through h_k)
                zeros = [torch.zeros_like(v, requires_grad=True) for v in new]
                state = [v + z for v, z in zip(new, zeros, strict=True)]
                states.append(zeros)
                vals.append(state)
                hs.append(state[0])  # the h node feeds the next step and the layer above
            h = torch.stack(hs, dim=1)
            outs.append(h if d == 0 else torch.flip(h, [1]))
            trail[(l, d)], values[(l, d)] = states, vals
        seq = torch.cat(outs, dim=-1)
    return seq, trail, values


def model_sequence(model, x):
    """The top recurrent layer's output sequence by Keras' own layer calls (fused kernels included)."""
    y = torch.from_numpy(x)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            break
        y = layer(y, training=False)
    return np.asarray(keras.ops.convert_to_numpy(y))


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("kind", list(CELLS))
def test_every_node_gradient_is_keras_autograd(saved, kind):
    """∂L/∂(h, c)^(l,d)_k for every layer, direction and step, L = Σ_t ⟨g_t, y_t⟩ on the top output."""
    model, path = saved[kind]
    x = np.random.default_rng(1).standard_normal((B, T, M))
    net = stacked_network(CELLS[kind], weights=path)
    assert net.num_layers == 2 and net.bidirectional == (kind == "bilstm")
    y, trail, _ = keras_states(model, x)
    assert rel(y.detach().numpy(), model_sequence(model, x)) < 1e-12  # the oracle is the model
    xs = x.transpose(1, 0, 2)  # gradflow reads (T, B, m)
    traj = net.unroll(xs)
    assert rel(traj.outputs[-1], y.detach().numpy().transpose(1, 0, 2)) < 1e-12
    g = np.random.default_rng(2).standard_normal((T, B, net.output_size))
    (y * torch.from_numpy(g.transpose(1, 0, 2))).sum().backward()
    got = stacked_gradients(net, traj, g)
    for (l, d), states in trail.items():
        A = got[(l, ("forward", "reverse")[d])]
        for k, st in enumerate(states):
            want = np.concatenate([np.zeros(s.shape) if s.grad is None else s.grad.numpy() for s in st], axis=-1)
            assert rel(A[k], want) < 1e-8, (kind, l, d, k, rel(A[k], want))


@pytest.mark.parametrize("kind", ["lstm2", "gru2"])
def test_whole_stack_products_are_keras_jacobians(saved, kind):
    """∂s_T/∂s_k of the whole stacked state = the Jacobian of Keras' final states after the
    steps k+1…T with respect to every layer's state at step k."""
    model, path = saved[kind]
    x = np.random.default_rng(3).standard_normal((1, T, M))
    net = stacked_network(CELLS[kind], weights=path)
    P = stacked_products(net, x.transpose(1, 0, 2))
    _, _, trail = keras_states(model, x)
    shapes = [(key, [s.shape[-1] for s in st[0]]) for key, st in trail.items()]
    for k in range(T):
        s_k = torch.cat([torch.cat(trail[key][k], dim=-1)[0] for key, _ in shapes]).detach()

        def final(s, k=k):
            starts, i = {}, 0
            for key, sizes in shapes:
                starts[key] = []
                for size in sizes:
                    starts[key].append(s[None, i:i + size])
                    i += size
            _, _, tr = keras_states(model, x[:, k:], starts)
            return torch.cat([torch.cat(tr[key][-1], dim=-1)[0] for key, _ in shapes])

        J = torch.autograd.functional.jacobian(final, s_k).numpy()
        assert rel(P[k][0], J) < 1e-8, (kind, k, rel(P[k][0], J))


def test_cli_flow_reads_the_whole_keras_stack(saved, tmp_path, capsys):
    """``gradflow flow --weights model.keras``: every layer and direction, the keys of a PyTorch
    stacked checkpoint's JSON, and ∂L/∂h of the default loss L = Σ y_T equal to Keras autograd."""
    from gradflow._cli import main

    model, path = saved["bilstm"]
    x = np.random.default_rng(4).standard_normal((B, T, M))
    np.save(tmp_path / "x.npy", x)
    assert main(["flow", "lstm", "--weights", path, "--inputs", str(tmp_path / "x.npy"), "--batch-first",
                 "--json"]) == 0
    out = capsys.readouterr()
    rec = json.loads(out.out)
    assert "4 layer/direction" in out.err
    y, trail, _ = keras_states(model, x)
    y[:, -1].sum().backward()
    for lay in rec["layers"]:
        d = ("forward", "reverse").index(lay["direction"])
        for p in lay["curve"]:
            norms = np.linalg.norm(trail[(lay["layer"], d)][p["k"]][0].grad.numpy(), axis=-1)
            if p["log10_grad_norm_h"] is None:  # log10 0 (the top reverse direction after t = T)
                assert not norms.any(), (lay["layer"], d, p["k"])
            else:
                want = np.log10(norms).mean()
                assert abs(p["log10_grad_norm_h"] - want) < 1e-8, (lay["layer"], d, p["k"])
    # the same keys as a PyTorch stacked bidirectional checkpoint
    mod = torch.nn.LSTM(M, N, num_layers=2, bidirectional=True).double()
    torch.save(mod.state_dict(), tmp_path / "m.pt")
    assert main(["flow", "lstm", "--weights", str(tmp_path / "m.pt"), "--steps", str(T), "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)
    assert set(rec) == set(ref) and set(rec["layers"][0]) == set(ref["layers"][0])
    assert set(rec["layers"][0]["curve"][0]) == set(ref["layers"][0]["curve"][0])
    order = [[(r["layer"], r["direction"]) for r in x["layers"]] for x in (rec, ref)]
    assert order[0] == order[1]
    # a unidirectional stack has the whole-stack curve too
    assert main(["flow", "gru", "--weights", saved["gru2"][1], "--steps", "3", "--json", "--no-lyapunov"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["num_layers"] == 2 and len(rec["curve"]) == 3 and [r["state_size"] for r in rec["layers"]] == [4, 3]
    assert [r["hidden"] for r in rec["layers"]] == [4, 3]  # each layer's own width (Keras: g1 4 units, g2 3)
    assert main(["flow", "gru", "--weights", saved["gru2"][1], "--steps", "3", "--no-lyapunov"]) == 0
    assert "n = 4 (layer 0), 3 (layer 1)" in capsys.readouterr().out
    with pytest.raises(gf.GradflowError, match="need layers of one size"):  # PyTorch's h0 layout does not fit
        stacked_network("gru", weights=saved["gru2"][1]).unroll(np.zeros((T, 1, M)), {"h": np.zeros((2, 1, 4))})


def test_classifier_on_the_last_output_is_keras_autograd(saved, tmp_path, capsys):
    """A Keras classifier Bidirectional → Bidirectional(return_sequences=False) → Dropout → Dense:
    its output is [h^(f)_T ; h^(r)_1]; the default loss L = Σ of it (Python) and the CLI's
    --loss last with the Dense read from the .keras file as the head equal Keras autograd of
    Keras' own sparse cross-entropy (from logits, summed over the batch)."""
    from gradflow._cli import main
    from gradflow._numeric.stack import stacked_flow

    model, path = saved["bilast"]
    x = np.random.default_rng(5).standard_normal((B, T, M))
    y, _, _ = keras_states(model, x)
    last = torch.cat([y[:, -1, :N], y[:, 0, N:]], dim=-1)  # what Keras' top Bidirectional returns
    assert rel(last.detach().numpy(), model_sequence(model, x)) < 1e-12
    net = stacked_network("lstm", weights=path)
    assert net.last_only and net.bidirectional
    flow = stacked_flow(net, x.transpose(1, 0, 2), lyapunov=False)
    targets = np.array([2, 0])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", targets)
    assert main(["flow", "lstm", "--weights", path, "--inputs", str(tmp_path / "x.npy"),
                 "--loss", "last", "--targets", str(tmp_path / "t.npy"), "--json"]) == 0
    out = capsys.readouterr()
    assert "read as (batch, T, m), the layout of Keras models" in out.err  # Keras' layout by default
    rec = json.loads(out.out)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    for loss, got in (("sum", {(lf.layer, lf.direction): lf.log10_grad_h.mean(axis=0) for lf in flow.layers}),
                      ("ce", {(r["layer"], r["direction"]): [p["log10_grad_norm_h"] for p in r["curve"]]
                              for r in rec["layers"]})):
        y, trail, _ = keras_states(model, x)
        last = torch.cat([y[:, -1, :N], y[:, 0, N:]], dim=-1)
        L = last.sum() if loss == "sum" else ce(torch.from_numpy(targets), model.get_layer("classes")(last))
        L.backward()
        for (lay, d), curve in got.items():
            for k, v in enumerate(curve):
                norms = np.linalg.norm(trail[(lay, ("forward", "reverse").index(d))][k][0].grad.numpy(), axis=-1)
                if v is None or not np.isfinite(v):
                    assert not norms.any(), (loss, lay, d, k)
                else:
                    assert abs(v - np.log10(norms).mean()) < 1e-8, (loss, lay, d, k)
    with pytest.raises(gf.GradflowError, match="no output at every step"):
        stacked_flow(net, x.transpose(1, 0, 2), loss="every", head=(np.ones((3, 2 * N)), None),
                     targets=np.zeros((T, B), dtype=int), lyapunov=False)


def rewrite(src, dst, change):
    """A copy of the .keras archive ``src`` whose config.json went through ``change``."""
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(files["config.json"])
    change(cfg["config"]["layers"])
    files["config.json"] = json.dumps(cfg).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    dst.write_bytes(buf.getvalue())
    return str(dst)


def _dense_between(layers):
    layers.insert(2, {"class_name": "Dense", "config": {"name": "mid", "units": 4}})


def _sum_merge(layers):
    layers[1]["config"]["merge_mode"] = "sum"


def _set(key, value, at=1):
    def change(layers):
        layers[at]["config"][key] = value
    return change


REFUSED = [("lstm2", _dense_between, "Dense 'mid' sits between"),
           ("bilstm", _sum_merge, "merge_mode='sum'"),
           ("lstm2", _set("go_backwards", True), "go_backwards=True outside a Bidirectional"),
           ("lstm2", _set("return_sequences", False), "return_sequences=False but feeds"),
           ("lstm2", _set("stateful", True, at=3), "'high' is stateful")]


@pytest.mark.parametrize("kind,change,message", REFUSED)
def test_unsupported_wiring_is_one_line(saved, tmp_path, capsys, kind, change, message):
    from gradflow._cli import main

    path = rewrite(saved[kind][1], tmp_path / "bad.keras", change)
    with pytest.raises(gf.GradflowError, match=message.replace("(", r"\(")):
        stacked_network(CELLS[kind], weights=path)
    assert main(["flow", CELLS[kind], "--weights", path, "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradflow: error: ") and message in err and err.count("\n") == 1


def test_weights_h5_has_no_wiring_and_one_layer_stays_reachable(saved, capsys):
    from gradflow._cli import main

    h5 = str(saved["dir"] / "lstm2.weights.h5")
    assert main(["flow", "lstm", "--weights", h5, "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert "no configuration, hence no wiring" in err and ".keras" in err and err.count("\n") == 1
    # one layer: --prefix in either file, --layer K in the .keras (the K-th recurrent layer)
    model, path = saved["lstm2"]
    high = model.get_layer("high").cell
    for w in (gf.load_weights("lstm", path, layer=1), gf.load_weights("lstm", path, prefix="high"),
              gf.load_weights("lstm", h5, prefix="lstm_1")):
        np.testing.assert_array_equal(w.arrays["U_{f}"], keras.ops.convert_to_numpy(high.kernel)[:, N:2 * N].T)
    with pytest.raises(gf.GradflowError, match="out of range"):
        gf.load_weights("lstm", path, layer=2)
    # a single Bidirectional layer named by --prefix is analysed with both directions
    net = stacked_network("lstm", weights=saved["bilstm"][1], prefix="bi_high")
    assert net.num_layers == 1 and net.bidirectional and net.input == 2 * N


def test_leading_layers_are_said_and_a_graph_is_refused(float64_keras, tmp_path):
    L = keras.layers
    model = keras.Sequential([keras.Input((T,), dtype="int32"), L.Embedding(10, M, mask_zero=True),
                              L.LSTM(N, return_sequences=True), L.LSTM(N)])
    model.save(tmp_path / "emb.keras")
    with pytest.warns(UserWarning, match="reads the output of Embedding.*analysed as if unmasked"):
        net = stacked_network("lstm", weights=str(tmp_path / "emb.keras"))
    assert (net.num_layers, net.input, net.last_only) == (2, M, True)
    inp = keras.Input((T, M))
    outs = [L.LSTM(N, name=f"branch{i}")(inp) for i in range(2)]
    keras.Model(inp, L.Concatenate()(outs)).save(tmp_path / "graph.keras")
    with pytest.raises(gf.GradflowError, match="Functional model with 2 recurrent layers.*--prefix"):
        stacked_network("lstm", weights=str(tmp_path / "graph.keras"))
    assert stacked_network("lstm", weights=str(tmp_path / "graph.keras"), prefix="branch1").num_layers == 1
