"""Parameter counts against independent oracles.

Oracles: the number of entries of PyTorch modules' parameter tensors, the tensor shapes Keras
stores (facts.md), and the published numbers written as literals. Never a value produced by
gradflow itself.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import sympy as sp
import torch  # the oracle: a required test dependency, never skipped

from gradflow import (
    Cell,
    LayerCount,
    ParamCount,
    conv_params,
    count_params,
    dense_params,
    hadamard,
    m,
    n,
    sigmoid,
    tanh,
)
from gradflow._cli import main

nn = torch.nn

k = sp.Symbol("k", integer=True, positive=True)

SIZES = [(3, 5), (7, 2)]  # (hidden, input)
STACKS = [(layers, bidi) for layers in (1, 2, 3) for bidi in (False, True)]
# gradflow cell → torch module and its keyword arguments
TORCH_MODULES = {
    "tanh-rnn": (nn.RNN, {"nonlinearity": "tanh"}),
    "relu-rnn": (nn.RNN, {"nonlinearity": "relu"}),
    "irnn": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}
TORCH_CELLS = {
    "tanh-rnn": (nn.RNNCell, {"nonlinearity": "tanh"}),
    "relu-rnn": (nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTMCell, {}),
    "gru": (nn.GRUCell, {}),
}


def numel(module, prefix: str = "") -> int:
    return sum(p.numel() for name, p in module.named_parameters() if name.startswith(prefix))


# -- PyTorch: modules ---------------------------------------------------------------------------
@pytest.mark.parametrize("hidden,inp", SIZES)
@pytest.mark.parametrize("layers,bidi", STACKS)
@pytest.mark.parametrize("cell", sorted(TORCH_MODULES))
def test_matches_torch_modules(cell, layers, bidi, hidden, inp):
    cls, kwargs = TORCH_MODULES[cell]
    torch.manual_seed(0)
    module = cls(inp, hidden, num_layers=layers, bidirectional=bidi, **kwargs)
    got = count_params(cell, hidden, inp, layers=layers, bidirectional=bidi)
    assert got.total == numel(module)
    assert got.recurrent_weights == numel(module, "weight_hh")
    assert got.input_weights == numel(module, "weight_ih")
    assert got.biases == numel(module, "bias")
    assert got.output_params == 0


@pytest.mark.parametrize("cell", sorted(TORCH_CELLS))
@pytest.mark.parametrize("hidden,inp", SIZES)
def test_matches_torch_cells(cell, hidden, inp):
    cls, kwargs = TORCH_CELLS[cell]
    module = cls(inp, hidden, **kwargs)
    assert count_params(cell, hidden, inp, convention="pytorch").total == numel(module)


@pytest.mark.parametrize("layers,bidi", [(1, False), (2, True)])
def test_output_layer_matches_torch_linear(layers, bidi):
    hidden, inp, out = 6, 4, 5
    rnn = nn.RNN(inp, hidden, num_layers=layers, bidirectional=bidi)
    head = nn.Linear(hidden * (2 if bidi else 1), out)
    got = count_params("tanh-rnn", hidden, inp, layers=layers, bidirectional=bidi, output=out)
    assert got.output_params == numel(head)
    assert got.total == numel(rnn) + numel(head)


def test_published_lstm_numbers_pytorch():
    # LSTM, n = 128, m = 28: 79,872 weights; two biases (b_ih + b_hh) → 80,896
    got = count_params("lstm", 128, 28)
    assert got.recurrent_weights + got.input_weights == 79_872
    assert got.total == 80_896 == numel(nn.LSTM(28, 128))


# -- Keras conventions --------------------------------------------------------------------------
def test_published_lstm_numbers_keras():
    assert count_params("lstm", 256, 4096, convention="keras").total == 4_457_472
    got = count_params("lstm", 128, 28, convention="keras")
    assert got.recurrent_weights + got.input_weights == 79_872
    assert got.biases == 512
    assert got.total == 80_384


@pytest.mark.parametrize("hidden,inp", SIZES + [(32, 10)])
def test_keras_tensor_shapes(hidden, inp):
    """Entries of the tensors Keras stores: kernel (m, g·n), recurrent_kernel (n, g·n), bias."""
    def keras(gates, bias_rows):
        return inp * gates * hidden + hidden * gates * hidden + bias_rows * gates * hidden

    assert count_params("tanh-rnn", hidden, inp, convention="keras").total == keras(1, 1)
    assert count_params("lstm", hidden, inp, convention="keras").total == keras(4, 1)
    assert count_params("gru", hidden, inp, convention="keras").total == keras(3, 2)  # reset_after=True
    assert count_params("gru-cho", hidden, inp, convention="keras").total == keras(3, 1)
    # a Keras Bidirectional wrapper holds two copies
    assert count_params("lstm", hidden, inp, convention="keras",
                        bidirectional=True).total == 2 * keras(4, 1)


def test_simple_rnn_with_output_keras():
    # SimpleRNN n² + nm + n, then Dense(k): nk + k
    hidden, inp, out = 20, 8, 3
    got = count_params("tanh-rnn", hidden, inp, convention="keras", output=out)
    assert got.total == hidden**2 + inp * hidden + hidden + hidden * out + out
    assert got.output_params == hidden * out + out


# -- formulas -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cell,convention,expected", [
    ("lstm", "keras", 4 * (n**2 + n * m + n)),
    ("lstm", "pytorch", 4 * (n**2 + n * m + 2 * n)),
    ("tanh-rnn", "keras", n**2 + n * m + n),
    ("gru", "pytorch", 3 * (n**2 + n * m + 2 * n)),
    ("gru-cho", "keras", 3 * (n**2 + n * m + n)),
    ("lstm-1997", "keras", 3 * (n**2 + n * m + n)),
])
def test_single_layer_formula(cell, convention, expected):
    got = count_params(cell, 5, 3, convention=convention)
    assert sp.expand(got.formula - expected) == 0
    assert sp.expand(got.layer_formula - expected) == 0


def test_formula_is_readable():
    got = count_params("lstm", 256, 4096, convention="keras")
    assert got.as_dict()["formula"] == "4*(n**2 + n*m + n)"
    assert "4*(n**2 + n*m + n)" in str(got)


def test_stacked_formula():
    # layer 1: 4(n² + nm + 2n); layers 2, 3 read 2n inputs: 4(n² + 2n² + 2n); two directions
    got = count_params("lstm", 9, 4, layers=3, bidirectional=True, output=2)
    one = 4 * (n**2 + n * m + 2 * n)
    expected = 2 * (one + 2 * one.subs(m, 2 * n)) + 2 * n * k + k
    assert sp.expand(got.formula - expected) == 0
    assert got.formula.free_symbols == {n, m, k}


@pytest.mark.parametrize("cell", ["tanh-rnn", "sigmoid-rnn", "residual-rnn", "lstm", "lstm-1997", "gru"])
@pytest.mark.parametrize("layers,bidi", [(1, False), (3, True)])
def test_formula_evaluates_to_total(cell, layers, bidi):
    got = count_params(cell, 11, 6, layers=layers, bidirectional=bidi, output=4)
    assert got.formula.subs({n: 11, m: 6, k: 4}) == got.total
    assert sum(got.breakdown.values()) == got.total


def test_counts_follow_the_recurrence():
    """A cell defined here, never seen by the library: two gates, no hand-written formula."""
    def toy(r):
        a = r.let("a", sigmoid(r.affine("a")))
        g = r.let("g", tanh(r.affine("g")))
        return {"h": hadamard(a, g)}

    cell = Cell("toy", "two-gate toy cell", ("h",), toy)
    assert count_params(cell, 4, 3, convention="keras").total == 2 * (16 + 12 + 4)
    got = count_params(cell, 4, 3, convention="pytorch")
    assert got.total == 2 * (16 + 12 + 8)
    assert str(got).startswith("toy: two-gate toy cell")


# -- dense and convolution ----------------------------------------------------------------------
def test_dense():
    assert dense_params(128, 10).total == 1_290 == numel(nn.Linear(128, 10))
    assert dense_params(7, 3, bias=False).total == numel(nn.Linear(7, 3, bias=False))
    got = dense_params(128, 10)
    assert isinstance(got, LayerCount)
    assert (got.weights, got.biases) == (1_280, 10)
    assert "1,290" in str(got)


@pytest.mark.parametrize("kh,kw,cin,filters", [(3, 3, 1, 32), (5, 3, 3, 16), (1, 1, 8, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv(kh, kw, cin, filters, bias):
    conv = nn.Conv2d(cin, filters, (kh, kw), bias=bias)
    assert conv_params(kh, kw, cin, filters, bias=bias).total == numel(conv)
    if bias:
        assert conv_params(kh, kw, cin, filters).total == (kh * kw * cin + 1) * filters


# -- objects ------------------------------------------------------------------------------------
def test_paramcount_object():
    got = count_params("lstm", 256, 4096, convention="keras")
    assert isinstance(got, ParamCount)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.total = 0
    assert "4,457,472" in str(got)
    latex = got._repr_latex_()
    assert latex.startswith("$") and latex.endswith("$") and "4{,}457{,}472" in latex
    d = json.loads(json.dumps(got.as_dict()))
    assert d["total"] == 4_457_472 and d["cell"] == "lstm" and d["convention"] == "keras"
    assert d["output"] is None
    assert dense_params(2, 3)._repr_latex_().startswith("$")


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,match", [
    ({"cell": "no-such-cell"}, "unknown cell"),
    ({"hidden": 0}, "hidden size"),
    ({"hidden": -3}, "hidden size"),
    ({"hidden": 2.5}, "hidden size"),
    ({"hidden": True}, "hidden size"),
    ({"input": 0}, "input size"),
    ({"convention": "jax"}, "unknown convention"),
    ({"cell": "gru-cho", "convention": "pytorch"}, "PyTorch has no GRU.*keras"),
    ({"layers": 0}, "layers"),
    ({"output": -1}, "output size"),
])
def test_bad_input_raises(kwargs, match):
    args = {"cell": "lstm", "hidden": 8, "input": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        count_params(args.pop("cell"), args.pop("hidden"), args.pop("input"), **args)


def test_bad_layer_sizes_raise():
    with pytest.raises(ValueError):
        dense_params(0, 3)
    with pytest.raises(ValueError):
        conv_params(3, 3, 0, 4)


# -- CLI ----------------------------------------------------------------------------------------
def test_cli_text(capsys):
    assert main(["params", "lstm", "--hidden", "128", "--input", "28"]) == 0
    out = capsys.readouterr().out
    assert "80,896" in out and "4*(n**2 + n*m + 2*n)" in out


def test_cli_json(capsys):
    argv = ["params", "lstm", "--hidden", "256", "--input", "4096", "--convention", "keras", "--json"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["total"] == 4_457_472 and d["formula"] == "4*(n**2 + n*m + n)"


def test_cli_stack_json(capsys):
    argv = ["params", "gru", "--hidden", "7", "--input", "2", "--layers", "3", "--bidirectional",
            "--output", "5", "--json"]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    expected = numel(nn.GRU(2, 7, num_layers=3, bidirectional=True)) + numel(nn.Linear(14, 5))
    assert d["total"] == expected


def test_cli_dense_and_conv(capsys):
    assert main(["params", "dense", "--input", "128", "--output", "10"]) == 0
    assert "1,290" in capsys.readouterr().out
    assert main(["params", "conv", "--kernel", "3x5", "--in-channels", "2", "--filters", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == numel(nn.Conv2d(2, 4, (3, 5)))


@pytest.mark.parametrize("argv", [
    ["params", "no-such-cell", "--hidden", "3", "--input", "2"],
    ["params", "lstm", "--hidden", "0", "--input", "2"],
    ["params", "lstm", "--hidden", "-3", "--input", "2"],
    ["params", "lstm", "--hidden", "x", "--input", "2"],
    ["params", "lstm", "--input", "2"],
    ["params", "lstm", "--hidden", "3", "--input", "2", "--convention", "jax"],
    ["params", "gru-cho", "--hidden", "3", "--input", "2"],
    ["params", "dense", "--input", "3"],
    ["params", "conv", "--kernel", "3by3", "--filters", "2"],
    ["params", "lstm", "--hidden", "3", "--input", "2", "--kernel", "3"],
])
def test_cli_errors(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradflow: error: ")
