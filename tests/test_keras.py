"""Keras 3 weights (.weights.h5, .keras) read by gradflow measure the Keras layer itself.

The oracle is Keras: each layer's own forward pass (Keras 3 on the PyTorch backend, float64),
started from ``initial_state`` s_k on the inputs x[k:], differentiated by PyTorch autograd with
respect to s_k, gives ∂s_T/∂s_k directly (no product, no gradflow); the norms are written out here.
gradflow's curves (read from the saved file) must agree to 1e-10, and its forward pass must
reproduce the layer's output.
"""

from __future__ import annotations

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

T, B, M, N = 5, 2, 3, 4
#: user layer name → (gradflow cell, the HDF5 group Keras saves it under)
LAYERS = {"enc_lstm": ("lstm", "lstm"), "enc_gru": ("gru", "gru"), "enc_cho": ("gru-cho", "gru_1"),
          "enc_tanh": ("tanh-rnn", "simple_rnn"), "enc_relu": ("relu-rnn", "simple_rnn_1")}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    if keras.backend.backend() != "torch":
        pytest.skip("these tests run Keras on the PyTorch backend (KERAS_BACKEND=torch)")
    keras.config.set_floatx("float64")
    keras.utils.set_random_seed(0)
    # Keras 3 promotes float64 operands of its own ops (ops.matmul …) to float32 on every backend but
    # TensorFlow (keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE, "aligned with JAX"): its
    # SimpleRNN and GRU(reset_after=False) cells then compute in float32 even with floatx float64
    # (LSTM and GRU(reset_after=True) run torch's fused float64 kernels). For a float64 oracle the
    # promotion table keeps float64 while these tests run; Keras' cell code is unchanged.
    from keras.src.backend.common import dtypes

    table = dtypes.BIT64_TO_BIT32_DTYPE
    old = table.get("float64")
    table["float64"] = "float64"
    try:
        yield _build(tmp_path_factory)
    finally:
        table["float64"] = old


def _build(tmp_path_factory):
    inp = keras.Input((T, M))
    kw = {"bias_initializer": "random_normal", "return_state": True}  # a misplaced bias shows
    layers = [keras.layers.LSTM(N, name="enc_lstm", **kw), keras.layers.GRU(N, name="enc_gru", **kw),
              keras.layers.GRU(N, reset_after=False, name="enc_cho", **kw),
              keras.layers.SimpleRNN(N, name="enc_tanh", **kw),
              keras.layers.SimpleRNN(N, activation="relu", name="enc_relu", **kw)]
    model = keras.Model(inp, [layer(inp)[0] for layer in layers])
    d = tmp_path_factory.mktemp("keras")
    model.save_weights(d / "model.weights.h5")
    model.save(d / "model.keras")
    x = np.random.default_rng(1).standard_normal((B, T, M))
    return {"dir": d, "layers": {layer.name: layer for layer in layers}, "x": x,
            "outputs": {layer.name: np.asarray(layer(torch.from_numpy(x))[0].detach()) for layer in layers}}


def keras_curves(layer, x):
    """Batch-mean log10 curves of a Keras layer (built with ``return_state=True``) by autograd of
    the layer's own forward pass: ∂s_T/∂s_k is the Jacobian of the states the layer returns after
    x[k:] with respect to the ``initial_state`` it starts from (s_k, from the layer run on x[:k])."""
    lstm = isinstance(layer, keras.layers.LSTM)
    Ns = 2 * N if lstm else N

    def run(s, xs):  # (N_s,) state, (t, m) inputs → (N_s,) final state of the layer
        init = [s[None, :N], s[None, N:]] if lstm else [s[None]]
        return torch.cat([v[0] for v in layer(xs[None], initial_state=init)[1:]])

    out = {k: np.zeros(T) for k in ("log10_norm_2", "log10_norm_fro", "log10_grad_norm")}
    g = np.r_[np.ones(N), np.zeros(Ns - N)]  # L = Σ h_T
    for b in range(B):
        X = torch.from_numpy(x[b])
        s = torch.zeros(Ns, dtype=torch.float64)
        for k in range(T):
            P = torch.autograd.functional.jacobian(lambda v, xs=X[k:]: run(v, xs), s).detach().numpy()
            out["log10_norm_2"][k] += np.log10(np.linalg.norm(P, 2)) / B
            out["log10_norm_fro"][k] += np.log10(np.linalg.norm(P, "fro")) / B
            out["log10_grad_norm"][k] += np.log10(np.linalg.norm(g @ P)) / B
            s = run(s, X[k:k + 1]).detach()
    return out


@pytest.mark.parametrize("name", list(LAYERS))
def test_curves_and_forward_equal_the_keras_layer(saved, name):
    cell, group = LAYERS[name]
    x = saved["x"]
    want = keras_curves(saved["layers"][name], x)
    for path, prefix in ((saved["dir"] / "model.keras", name), (saved["dir"] / "model.weights.h5", group)):
        net = gf.network(cell, weights=str(path), prefix=prefix)
        assert (net.hidden, net.input) == (N, M)
        xs = x.transpose(1, 0, 2)  # gradflow reads (T, B, m)
        traj = net.unroll(xs)
        h_T = np.asarray(traj.states[-1])[:, :N]
        np.testing.assert_allclose(h_T, saved["outputs"][name], rtol=0, atol=1e-12)
        flow = gf.gradient_flow(net, xs, lyapunov=False).full.mean()
        for field, curve in want.items():
            np.testing.assert_allclose(getattr(flow, field), curve, rtol=0, atol=1e-10, err_msg=f"{path.name} {field}")


def test_cli_flow_reads_a_keras_file(saved, capsys):
    from gradflow._cli import main

    path = str(saved["dir"] / "model.keras")
    assert main(["flow", "gru-cho", "--weights", path, "--prefix", "enc_cho", "--steps", "6", "--json",
                 "--no-lyapunov"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert (rec["cell"], rec["hidden"], rec["steps"]) == ("gru-cho", N, 6)
    assert main(["flow", "gru", "--weights", path, "--prefix", "enc_cho", "--steps", "6"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradflow: error: cell gru contradicts") and "gru-cho" in err and "Traceback" not in err


def test_refusals_are_one_gradflow_error(saved, tmp_path):
    d = saved["dir"]
    with pytest.raises(gf.GradflowError, match="holds 5 recurrent layers"):
        gf.load_weights("lstm", str(d / "model.keras"))
    with pytest.raises(gf.GradflowError, match="contradicts the weights.*reset_after=False"):
        gf.load_weights("gru", str(d / "model.weights.h5"), prefix="gru_1")
    with pytest.raises(gf.GradflowError, match="pass relu-rnn or irnn"):
        gf.load_weights("tanh-rnn", str(d / "model.keras"), prefix="enc_relu")
    with pytest.raises(gf.GradflowError, match="no recurrent layer 'nope'"):
        gf.load_weights("lstm", str(d / "model.keras"), prefix="nope")
    with pytest.raises(gf.GradflowError, match="not --layer"):
        gf.load_weights("lstm", str(d / "model.keras"), prefix="enc_lstm", layer=1)
    with pytest.warns(UserWarning, match="no layer configuration"):
        gf.load_weights("lstm", str(d / "model.weights.h5"), prefix="lstm")
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes((d / "model.weights.h5").read_bytes()[:600])
    with pytest.raises(gf.GradflowError, match="not a readable HDF5"):
        gf.load_weights("lstm", str(broken))
    not_keras = tmp_path / "other.keras"
    with zipfile.ZipFile(not_keras, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(gf.GradflowError, match="without model.weights.h5"):
        gf.load_weights("lstm", str(not_keras))


def test_bidirectional_needs_forward(tmp_path):
    if keras.backend.backend() != "torch":
        pytest.skip("Keras on the PyTorch backend")
    keras.config.set_floatx("float64")
    model = keras.Sequential([keras.Input((T, M)), keras.layers.Bidirectional(keras.layers.LSTM(N), name="bi")])
    path = tmp_path / "bi.keras"
    model.save(path)
    with pytest.raises(gf.GradflowError, match="Bidirectional"):
        gf.load_weights("lstm", str(path))
    w = gf.load_weights("lstm", str(path), direction="forward")
    by_name = gf.load_weights("lstm", str(path), prefix="bi", direction="forward")
    assert all(np.array_equal(w.arrays[k], by_name.arrays[k]) for k in w.arrays)
    with pytest.raises(gf.GradflowError, match="is bidirectional"):
        gf.load_weights("lstm", str(path), prefix="bi")
    with pytest.raises(gf.GradflowError, match="reverse"):
        gf.load_weights("lstm", str(path), prefix="bi", direction="reverse")
    fwd = model.layers[0].forward_layer.cell
    np.testing.assert_array_equal(w.arrays["U_{f}"], keras.ops.convert_to_numpy(fwd.kernel)[:, N:2 * N].T)
    np.testing.assert_array_equal(w.arrays["W_{o}"], keras.ops.convert_to_numpy(fwd.recurrent_kernel)[:, 3 * N:].T)
