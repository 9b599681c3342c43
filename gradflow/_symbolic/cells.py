"""The cell library: each recurrence written once, as a reader would write it on a board."""

from __future__ import annotations

from sympy import MatAdd, MatMul

from .._checks import GradflowError
from .activations import relu, sigmoid, tanh
from .cell import Cell, Recurrence
from .modern_cells import MODERN_ALIASES, MODERN_CELLS
from .nodes import hadamard, one_minus


def _elman(phi):
    """h_t = φ(a_t),  a_t = W h_{t−1} + U x_t + b   (Elman 1990)."""

    def recurrence(r: Recurrence):
        a = r.let("a", r.affine())
        return {"h": phi(a)}

    return recurrence


def _residual(r: Recurrence):
    """h_t = h_{t−1} + tanh(a_t),  a_t = W h_{t−1} + U x_t + b."""
    a = r.let("a", r.affine())
    return {"h": MatAdd(r.prev["h"], tanh(a))}


def _lstm(r: Recurrence):
    """LSTM with forget gate (Gers et al. 2000), PyTorch gate order i, f, g, o."""
    i = r.let("i", sigmoid(r.affine("i")))
    f = r.let("f", sigmoid(r.affine("f")))
    g = r.let("g", tanh(r.affine("g")))
    o = r.let("o", sigmoid(r.affine("o")))
    c = r.let("c", MatAdd(hadamard(f, r.prev["c"]), hadamard(i, g)))
    return {"c": c, "h": hadamard(o, tanh(c))}


def _lstm1997(r: Recurrence):
    """LSTM of Hochreiter & Schmidhuber (1997): no forget gate, c_t = c_{t−1} + i_t ⊙ g_t."""
    i = r.let("i", sigmoid(r.affine("i")))
    g = r.let("g", tanh(r.affine("g")))
    o = r.let("o", sigmoid(r.affine("o")))
    c = r.let("c", MatAdd(r.prev["c"], hadamard(i, g)))
    return {"c": c, "h": hadamard(o, tanh(c))}


def _gru(r: Recurrence):
    """GRU, PyTorch / Keras ``reset_after=True``: r multiplies (W_n h_{t−1} + b_{hn})."""
    h = r.prev["h"]
    rr = r.let("r", sigmoid(r.affine("r")))
    z = r.let("z", sigmoid(r.affine("z")))
    inner = MatAdd(MatMul(r.W("n"), h), r.b("n", side="hidden"))
    cand = r.let(r"\tilde{h}", tanh(MatAdd(MatMul(r.U("n"), r.x), r.b("n", side="input"),
                                           hadamard(rr, inner))))
    return {"h": MatAdd(hadamard(one_minus(z), cand), hadamard(z, h))}


def _gru_cho(r: Recurrence):
    """GRU of Cho et al. (2014), Keras ``reset_after=False``: r multiplies h_{t−1} before W_n."""
    h = r.prev["h"]
    rr = r.let("r", sigmoid(r.affine("r")))
    z = r.let("z", sigmoid(r.affine("z")))
    cand = r.let(r"\tilde{h}", tanh(r.affine("n", hidden=hadamard(rr, h))))
    return {"h": MatAdd(hadamard(one_minus(z), cand), hadamard(z, h))}


CELLS: dict[str, Cell] = {
    c.name: c
    for c in (
        Cell("tanh-rnn", "Elman RNN, tanh", ("h",), _elman(tanh),
             torch_cell="RNNCell", torch_kwargs={"nonlinearity": "tanh"}, reference="elman1990"),
        Cell("relu-rnn", "Elman RNN, ReLU", ("h",), _elman(relu),
             torch_cell="RNNCell", torch_kwargs={"nonlinearity": "relu"}, reference="elman1990"),
        Cell("irnn", "identity-initialised ReLU RNN (IRNN)", ("h",), _elman(relu),
             torch_cell="RNNCell", torch_kwargs={"nonlinearity": "relu"}, default_init="identity",
             reference="le2015irnn"),
        Cell("sigmoid-rnn", "Elman RNN, logistic sigmoid", ("h",), _elman(sigmoid),
             reference="elman1990"),
        Cell("residual-rnn", "residual RNN, h_t = h_{t-1} + tanh(.)", ("h",), _residual,
             reference="he2016residual"),
        Cell("lstm", "LSTM with forget gate", ("h", "c"), _lstm,
             torch_cell="LSTMCell", reference="gers2000forget"),
        Cell("lstm-1997", "LSTM without forget gate (1997)", ("h", "c"), _lstm1997,
             reference="hochreiter1997lstm"),
        Cell("gru", "GRU (PyTorch; Keras reset_after=True)", ("h",), _gru,
             bias_copies={"pytorch": 2, "keras": 2}, torch_cell="GRUCell", reference="cho2014gru"),
        Cell("gru-cho", "GRU of Cho et al. 2014 (Keras reset_after=False)", ("h",), _gru_cho,
             bias_copies={"pytorch": None, "keras": 1}, reference="cho2014gru"),
        *MODERN_CELLS,
    )
}

ALIASES = {"rnn": "tanh-rnn", "tanh": "tanh-rnn", "relu": "relu-rnn", "elman": "tanh-rnn",
           "lstm1997": "lstm-1997", "residual": "residual-rnn", "gru-v1": "gru-cho",
           "gru-reset-before": "gru-cho", **MODERN_ALIASES}


def get_cell(name: str | Cell) -> Cell:
    """The cell called ``name`` (or an alias); ``ValueError`` naming the known cells otherwise."""
    if isinstance(name, Cell):
        return name
    key = str(name).strip().lower()
    if key not in CELLS:  # a user cell may have '_' in its name; the library's use '-'
        key = key.replace("_", "-")
    key = ALIASES.get(key, key)
    if key not in CELLS:
        raise GradflowError(f"unknown cell {name!r}; known cells: {', '.join(CELLS)}")
    return CELLS[key]
