"""Initialisation schemes and input validation of the weights and the engine.

Oracles: the definitions of the schemes (PyTorch's U(±1/√n), Glorot's ±gain·√(6/(fan_in+fan_out)),
orthogonal WᵀW = gain²·I, the IRNN's W = gain·I, N(0, gain²/fan_in)), checked on the arrays
with NumPy, and the parameter labels and shapes written out here per cell. Bad input must raise
``ValueError`` with a message that says what is wrong.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradflow import (
    Weights,
    from_state_dict,
    get_cell,
    gradient_flow,
    init_weights,
    load_weights,
    network,
    random_inputs,
)

ELMAN = ["W", "U", "b"]
LABELS = {
    "tanh-rnn": ELMAN, "relu-rnn": ELMAN, "irnn": ELMAN, "sigmoid-rnn": ELMAN, "residual-rnn": ELMAN,
    "lstm": [f"{k}_{{{g}}}" for g in "ifgo" for k in "WUb"],
    "lstm-1997": [f"{k}_{{{g}}}" for g in "igo" for k in "WUb"],
    "gru": ["W_{r}", "U_{r}", "b_{r}", "W_{z}", "U_{z}", "b_{z}", "W_{n}", "U_{n}", "b_{in}", "b_{hn}"],
    "gru-cho": [f"{k}_{{{g}}}" for g in "rzn" for k in "WUb"],
}
SCHEMES = ["pytorch", "glorot", "orthogonal", "identity", "gaussian"]


def shape_of(label: str, n: int, m: int) -> tuple:
    return {"W": (n, n), "U": (n, m), "b": (n,)}[label[0]]


def by_kind(w: Weights, kind: str) -> list[np.ndarray]:
    return [np.asarray(a) for k, a in w.arrays.items() if k[0] == kind]


# -- shapes and labels ---------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", list(LABELS))
def test_every_scheme_gives_the_cells_parameters_with_their_shapes(name, scheme):
    n, m = 5, 3
    w = init_weights(name, n, m, scheme=scheme, seed=1)
    assert sorted(w.arrays) == sorted(LABELS[name])
    assert (w.hidden, w.input) == (n, m)
    for lab, a in w.arrays.items():
        assert a.shape == shape_of(lab, n, m), lab
        assert a.dtype == np.float64
        assert np.all(np.isfinite(a))


def test_seed_and_dtype():
    a, b = init_weights("lstm", 4, 3, seed=3), init_weights("lstm", 4, 3, seed=3)
    c = init_weights("lstm", 4, 3, seed=4)
    for k in a.arrays:
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])
    assert any(not np.array_equal(a.arrays[k], c.arrays[k]) for k in a.arrays)
    f32 = init_weights("lstm", 4, 3, seed=3, dtype=np.float32)
    for k, v in f32.arrays.items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, a.arrays[k].astype(np.float32))


# -- the schemes --------------------------------------------------------------------------------
N_BIG, M_BIG = 40, 30


@pytest.mark.parametrize("name", ["tanh-rnn", "lstm", "gru"])
def test_pytorch_scheme_is_uniform_within_one_over_sqrt_n(name):
    w = init_weights(name, N_BIG, M_BIG, scheme="pytorch", seed=0)
    r = 1 / math.sqrt(N_BIG)  # PyTorch: every parameter U(−1/√hidden, 1/√hidden), U and b too
    merged = {p.symbol.name for p in w.cell.recorded.params if p.bias == "merged"}  # b_ih + b_hh: two draws
    allv = np.concatenate([np.ravel(a) for k, a in w.arrays.items() if k not in merged])
    assert np.all(np.abs(allv) <= r)
    assert np.max(np.abs(allv)) > 0.98 * r  # and it fills the range (a 1/n scale would not)
    assert abs(np.std(allv) - r / math.sqrt(3)) < 0.05 * r / math.sqrt(3)
    for a in w.arrays.values():  # the biases are drawn too, not zero
        assert np.any(a != 0)


def test_pytorch_is_the_default_and_irnn_defaults_to_identity():
    w = network("tanh-rnn", 6, 2, seed=2).weights
    assert np.all(np.abs(w.arrays["W"]) <= 1 / math.sqrt(6))
    irnn = network("irnn", 6, 2, seed=2).weights
    np.testing.assert_array_equal(irnn.arrays["W"], np.eye(6))
    np.testing.assert_array_equal(irnn.arrays["b"], np.zeros(6))


@pytest.mark.parametrize("gain", [1.0, 0.5])
@pytest.mark.parametrize("name", ["tanh-rnn", "lstm"])
def test_glorot_limits(name, gain):
    w = init_weights(name, N_BIG, M_BIG, scheme="glorot", gain=gain, seed=1)
    for lab, a in w.arrays.items():
        if lab[0] == "b":
            assert np.all(a == 0), lab
            continue
        fan_out, fan_in = a.shape  # per gate matrix, not the stacked 4n rows
        limit = gain * math.sqrt(6.0 / (fan_in + fan_out))
        assert np.all(np.abs(a) <= limit), lab
        assert np.max(np.abs(a)) > 0.95 * limit, lab
        assert abs(np.std(a) - limit / math.sqrt(3)) < 0.1 * limit / math.sqrt(3), lab


@pytest.mark.parametrize("gain", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("name", ["tanh-rnn", "lstm", "gru"])
def test_orthogonal_W_satisfies_WtW_is_gain_squared_identity(name, gain):
    n, m = 6, 4
    w = init_weights(name, n, m, scheme="orthogonal", gain=gain, seed=5)
    Ws = by_kind(w, "W")
    for W in Ws:
        np.testing.assert_allclose(W.T @ W, gain ** 2 * np.eye(n), rtol=0, atol=1e-12)
        np.testing.assert_allclose(W @ W.T, gain ** 2 * np.eye(n), rtol=0, atol=1e-12)
        assert np.max(np.abs(W - np.diag(np.diag(W)))) > 0.1 * gain  # a rotation, not ±I
    for a, b in zip(Ws, Ws[1:], strict=False):  # every gate draws its own
        assert not np.allclose(a, b)
    limit = gain * math.sqrt(6.0 / (n + m))
    for U in by_kind(w, "U"):
        assert np.all(np.abs(U) <= limit)
    for b in by_kind(w, "b"):
        assert np.all(b == 0)


@pytest.mark.parametrize("gain", [1.0, 0.9])
def test_identity_scheme(gain):
    w = init_weights("relu-rnn", N_BIG, M_BIG, scheme="identity", gain=gain, seed=2)
    np.testing.assert_array_equal(w.arrays["W"], gain * np.eye(N_BIG))
    np.testing.assert_array_equal(w.arrays["b"], np.zeros(N_BIG))
    U = w.arrays["U"]  # N(0, 0.001²), Le et al. 2015
    assert abs(np.std(U) - 1e-3) < 1e-4 and abs(np.mean(U)) < 1e-4


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_gaussian_scheme(gain):
    w = init_weights("tanh-rnn", N_BIG, M_BIG, scheme="gaussian", gain=gain, seed=3)
    assert abs(np.std(w.arrays["W"]) - gain / math.sqrt(N_BIG)) < 0.05 * gain / math.sqrt(N_BIG)
    assert abs(np.std(w.arrays["U"]) - gain / math.sqrt(M_BIG)) < 0.05 * gain / math.sqrt(M_BIG)
    assert np.all(w.arrays["b"] == 0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_forget_bias_sets_b_f_only(scheme):
    plain = init_weights("lstm", 5, 3, scheme=scheme, seed=4)
    fb = init_weights("lstm", 5, 3, scheme=scheme, seed=4, forget_bias=2.5)
    np.testing.assert_array_equal(fb.arrays["b_{f}"], np.full(5, 2.5))
    for k in plain.arrays:
        if k != "b_{f}":
            np.testing.assert_array_equal(fb.arrays[k], plain.arrays[k], err_msg=k)
    net = network("lstm", 5, 3, seed=4, forget_bias=-1.0)
    np.testing.assert_array_equal(net.weights.arrays["b_{f}"], np.full(5, -1.0))


# -- bad input ----------------------------------------------------------------------------------------
def test_wrong_weight_shapes_name_the_parameter():
    cell = get_cell("lstm")
    arrays = dict(init_weights(cell, 3, 2).arrays)
    arrays["W_{f}"] = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"W_\{f\}.*\(3, 4\).*\(3, 3\)"):
        Weights(cell, 3, 2, arrays)
    arrays = dict(init_weights(cell, 3, 2).arrays)
    arrays["U_{o}"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"U_\{o\}.*expected \(3, 2\)"):
        Weights(cell, 3, 2, arrays)
    arrays = dict(init_weights("tanh-rnn", 3, 2).arrays)
    with pytest.raises(ValueError, match="hidden=4"):  # the sizes disagree with the arrays
        Weights(get_cell("tanh-rnn"), 4, 2, arrays)


def test_missing_parameter_is_named():
    arrays = dict(init_weights("gru", 3, 2).arrays)
    del arrays["b_{hn}"]
    with pytest.raises(ValueError, match=r"missing.*b_\{hn\}"):
        Weights(get_cell("gru"), 3, 2, arrays)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(bad):
    arrays = dict(init_weights("lstm", 3, 2).arrays)
    arrays["U_{g}"] = arrays["U_{g}"].copy()
    arrays["U_{g}"][1, 0] = bad
    with pytest.raises(ValueError, match=r"U_\{g\}.*NaN or inf"):
        Weights(get_cell("lstm"), 3, 2, arrays)
    sd = {"weight_ih": np.zeros((3, 2)), "weight_hh": np.eye(3),
          "bias_ih": np.zeros(3), "bias_hh": np.zeros(3)}
    sd["bias_hh"][2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        network("tanh-rnn", weights=sd)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_and_initial_states(bad):
    net = network("lstm", 3, 2)
    x = np.zeros((4, 2, 2))
    x[2, 1, 0] = bad
    with pytest.raises(ValueError, match="inputs contain NaN or inf"):
        net.unroll(x)
    with pytest.raises(ValueError, match="inputs contain NaN or inf"):
        gradient_flow(net, x)
    with pytest.raises(ValueError, match="initial state c contains NaN or inf"):
        net.unroll(np.zeros((4, 2)), {"c": np.array([0.0, bad, 0.0])})


def test_empty_and_misshapen_inputs():
    net = network("gru", 3, 2)
    with pytest.raises(ValueError, match="T = 0"):
        net.unroll(np.zeros((0, 1, 2)))
    with pytest.raises(ValueError, match="T = 0"):
        gradient_flow(net, np.zeros((0, 2)))
    with pytest.raises(ValueError, match="3 features.*input size 2"):
        net.unroll(np.zeros((4, 1, 3)))
    with pytest.raises(ValueError, match=r"shape \(T, m\) or \(T, batch, m\)"):
        net.unroll(np.zeros((4, 1, 1, 2)))
    with pytest.raises(ValueError, match="empty batch"):
        net.unroll(np.zeros((4, 0, 2)))
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        random_inputs(0, 2)


def test_bad_initial_states():
    net = network("lstm", 3, 2)
    x = np.zeros((4, 2, 2))
    with pytest.raises(ValueError, match="no state.*q"):
        net.unroll(x, {"q": np.zeros(3)})
    with pytest.raises(ValueError, match=r"initial state h has shape \(2, 4\)"):
        net.unroll(x, {"h": np.zeros((2, 4))})
    # a 1-D initial state of the wrong length must get the same clear message
    with pytest.raises(ValueError, match="initial state h"):
        net.unroll(x, {"h": np.zeros(4)})


def test_step_jacobian_time_out_of_range():
    net = network("tanh-rnn", 3, 2)
    traj = net.unroll(np.zeros((4, 2)))
    for t in (0, 5, -1):
        with pytest.raises(ValueError, match=r"t must be in 1\.\.4"):
            net.step_jacobian(traj, t)


def test_unknown_scheme_cell_and_spectral_method():
    with pytest.raises(ValueError, match="unknown init scheme 'xavier'.*glorot"):
        network("tanh-rnn", 3, 2, init="xavier")
    with pytest.raises(ValueError, match="unknown cell 'vanilla'.*tanh-rnn"):
        network("vanilla", 3, 2)
    with pytest.raises(ValueError, match="spectral"):
        gradient_flow(network("tanh-rnn", 3, 2), np.zeros((3, 2)), spectral="qr")


@pytest.mark.parametrize("name", ["tanh-rnn", "gru", "lstm-1997", "gru-cho", "residual-rnn"])
def test_forget_bias_on_cell_without_forget_gate(name):
    with pytest.raises(ValueError, match=f"{name} has no forget gate"):
        network(name, 3, 2, forget_bias=1.0)


@pytest.mark.parametrize("value", [0, -2, 2.5, True, None])
def test_hidden_size_must_be_positive_integer(value):
    with pytest.raises(ValueError, match="hidden"):
        network("tanh-rnn", value, 2)
    if value is not None:
        with pytest.raises(ValueError, match="hidden size must be a positive integer"):
            init_weights("lstm", value, 2)
        with pytest.raises(ValueError, match="input size must be a positive integer"):
            init_weights("lstm", 3, value)


def test_non_finite_gain_and_forget_bias():
    with pytest.raises(ValueError, match="gain must be finite"):
        network("tanh-rnn", 3, 2, gain=float("inf"))
    with pytest.raises(ValueError, match="forget bias must be finite"):
        network("lstm", 3, 2, forget_bias=float("nan"))


def test_state_dict_missing_keys_are_named():
    n, m = 3, 2
    full = {"weight_ih": np.zeros((4 * n, m)), "weight_hh": np.zeros((4 * n, n)),
            "bias_ih": np.zeros(4 * n), "bias_hh": np.zeros(4 * n)}
    for key in ("weight_ih", "weight_hh"):
        sd = {k: v for k, v in full.items() if k != key}
        with pytest.raises(ValueError, match=key):
            from_state_dict("lstm", sd)
        with pytest.raises(ValueError, match=key):  # the layer-0 form of nn.LSTM
            network("lstm", weights={k + "_l0": v for k, v in sd.items()})
    for key in ("bias_ih", "bias_hh"):
        sd = {k: v for k, v in full.items() if k != key}
        with pytest.raises(ValueError, match=key):
            from_state_dict("lstm", sd)
    with pytest.raises(ValueError, match="weight_ih"):
        from_state_dict("gru", {})


def test_state_dict_shapes_disagreeing_with_sizes():
    n, m = 3, 2
    sd = {"weight_ih": np.zeros((4 * n, m)), "weight_hh": np.zeros((4 * n, n))}
    with pytest.raises(ValueError, match="hidden size 4 does not match.*hidden size 3"):
        network("lstm", hidden=4, weights=sd)
    with pytest.raises(ValueError, match="input size 5 does not match.*input size 2"):
        network("lstm", input=5, weights=sd)
    with pytest.raises(ValueError, match="weight_hh has shape"):
        from_state_dict("lstm", {"weight_ih": np.zeros((4 * n, m)), "weight_hh": np.zeros((4 * n, n + 1))})
    with pytest.raises(ValueError, match="bias_ih has shape"):
        from_state_dict("lstm", dict(sd, bias_ih=np.zeros(4 * n + 1), bias_hh=np.zeros(4 * n)))
    with pytest.raises(ValueError, match="do not stack 3 gate"):  # a 4-gate LSTM dict read as a GRU
        from_state_dict("gru", {"weight_ih": np.zeros((4 * 2, m)), "weight_hh": np.zeros((4 * 2, 2))})
    with pytest.raises(ValueError, match="forget_bias applies to initialised weights"):
        network("lstm", weights=sd, forget_bias=1.0)


def test_bad_weight_sources(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_weights("lstm", tmp_path / "none.npz")
    bad = tmp_path / "w.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="unknown weights file type"):
        load_weights("lstm", bad)
    with pytest.raises(ValueError, match="cannot read weights from int"):
        load_weights("lstm", 3)


def test_output_layer_validation():
    net = network("tanh-rnn", 3, 2)
    x = np.zeros((4, 2, 2))
    V, c = np.zeros((5, 3)), np.zeros(5)
    with pytest.raises(ValueError, match=r"V must be \(K, 3\)"):
        gradient_flow(net, x, output=(np.zeros((5, 4)), c, [0, 1]))
    with pytest.raises(ValueError, match=r"targets must be class indices in 0..4 \(the head has 5 outputs\)"):
        gradient_flow(net, x, output=(V, c, [0, 5]))
    with pytest.raises(ValueError, match=r"targets must have shape \(2,\) \(one class per sequence\)"):
        gradient_flow(net, x, output=(V, c, [0]))
