"""A .keras archive whose config.json does not match its model.weights.h5 is one error naming the mismatch.

The archives are written here by hand (json + h5py, Keras' layout: config layers, and each
recurrent layer's kernel, recurrent kernel and bias under layers/<class>[_k]/cell/vars), so what
disagrees is known exactly: a config layer without its weights group, a weights group that no
config layer names, a class or a ``units`` that the arrays' shapes contradict. Before, these read
as "has no recurrent layer 'dec'; it has: 'enc' (lstm)", "stacks layers of different classes
(GRU, LSTM)" (the weights were both LSTMs), or were read without a word (units, an extra layer).
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import gradflow as gf

h5py = pytest.importorskip("h5py")

M = 3
GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


def _layer(klass, name, units):
    return {"module": "keras.layers", "class_name": klass,
            "config": {"name": name, "units": units, "return_sequences": True, "activation": "tanh"}}


def _archive(path, config_layers, weight_groups):
    """config_layers: (class, name, units); weight_groups: (group, class of the arrays, units, input)."""
    config = {"module": "keras", "class_name": "Sequential",
              "config": {"name": "sequential", "layers": [
                  {"module": "keras.layers", "class_name": "InputLayer",
                   "config": {"batch_shape": [None, 5, M], "name": "input_layer"}}]
                  + [_layer(*c) for c in config_layers]}}
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for group, klass, n, m in weight_groups:
            g = f.create_group(f"layers/{group}/cell/vars")
            G = GATES[klass]
            g["0"] = rng.normal(size=(m, G * n))
            g["1"] = rng.normal(size=(n, G * n))
            g["2"] = rng.normal(size=(G * n,) if klass != "GRU" else (2, G * n))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        z.writestr("model.weights.h5", buf.getvalue())
    return str(path)


TWO = [("LSTM", "enc", 4), ("LSTM", "dec", 4)]
TWO_W = [("lstm", "LSTM", 4, M), ("lstm_1", "LSTM", 4, 4)]


def test_a_matching_archive_reads(tmp_path):
    net = gf.stacked_network("lstm", weights=_archive(tmp_path / "ok.keras", TWO, TWO_W))
    assert (net.num_layers, net.hidden) == (2, 4)


@pytest.mark.parametrize("config, groups, words", [
    (TWO, TWO_W[:1], ["the config's LSTM 'dec' has no weights", "no group layers/lstm_1"]),
    (TWO[:1], TWO_W, ["the weights' lstm_1 (an LSTM's, 4 units) belong to no layer of the config"]),
    ([("LSTM", "enc", 5), TWO[1]], TWO_W, ["the config's LSTM 'enc' with units=5 has the weights lstm "
                                          "(an LSTM's, 4 units)"]),
    ([TWO[0], ("GRU", "dec", 4)], TWO_W, ["the config's GRU 'dec' has no weights (no group layers/gru",
                                         "lstm_1 (an LSTM's, 4 units) belong to no layer"]),
], ids=["config-layer-without-weights", "weights-without-config-layer", "units", "class"])
def test_a_mismatch_names_what_does_not_match(tmp_path, config, groups, words):
    path = _archive(tmp_path / "m.keras", config, groups)
    calls = [lambda: gf.stacked_network("lstm", weights=path),
             lambda: gf.load_weights("lstm", path, prefix="enc"),
             lambda: gf.network("lstm", weights=path, prefix="dec")]
    for call in calls:
        with pytest.raises(gf.GradflowError, match="its config.json and model.weights.h5 do not match") as e:
            call()
        msg = str(e.value)
        assert all(w in msg for w in words), msg
        assert "\n" not in msg and "model.save('model.keras')" in msg


def test_cli_says_it_in_one_line(tmp_path, capsys):
    from gradflow._cli import main

    path = _archive(tmp_path / "m.keras", TWO, TWO_W[:1])
    assert main(["flow", "lstm", "--weights", path, "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradflow: error: ") and err.count("\n") == 1 and "'dec' has no weights" in err
