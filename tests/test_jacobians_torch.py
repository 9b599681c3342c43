"""gradflow's derived Jacobian blocks and recurrences, against PyTorch's cells and autograd.

For tanh-rnn, relu-rnn, irnn (``nn.RNNCell``), lstm (``nn.LSTMCell``) and gru (``nn.GRUCell``)
in float64 with seeded random weights, n ∈ {1, 2, 3}, m = 2:

* reference: ``torch.func.jacrev`` of the cell's new state(s) w.r.t. the previous state(s)
  (for the LSTM w.r.t. h and c: all four blocks);
* gradflow: its derived blocks and its recorded recurrence, made explicit the ordinary SymPy
  way (``.subs({n: N, m: M})``, concrete matrices for every ``MatrixSymbol``,
  ``.as_explicit()``), with the same weights/states/input as 30-digit SymPy Floats; named
  quantities are evaluated in definition order.

The mapping of PyTorch's stacked parameters to gradflow's per-gate symbols is written here
from PyTorch's documented layout (not taken from gradflow): RNNCell W = weight_hh,
U = weight_ih, b = bias_ih + bias_hh; LSTMCell rows in gate order i, f, g, o; GRUCell rows in
order r, z, n with b_r, b_z merged and b_{in} = bias_ih[n], b_{hn} = bias_hh[n].

Tolerance: max |ours − torch| / max |torch| ≤ 1e-10 per block (and per new state).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch  # the oracle: a required test dependency, never skipped
from sympy import ImmutableMatrix

from gradflow import CELLS, m, n

M = 2
SIZES = [1, 2, 3]
RTOL = 1e-10
DIGITS = 30


# --------------------------------------------------------------------------------------------
# PyTorch side
# --------------------------------------------------------------------------------------------

def torch_cell(name: str, N: int, seed: int):
    """A float64 torch cell with seeded random weights (wider than the default init)."""
    torch.manual_seed(seed)
    if name in ("tanh-rnn", "relu-rnn", "irnn"):
        nl = "tanh" if name == "tanh-rnn" else "relu"
        cell = torch.nn.RNNCell(M, N, nonlinearity=nl, dtype=torch.float64)
    elif name == "lstm":
        cell = torch.nn.LSTMCell(M, N, dtype=torch.float64)
    elif name == "gru":
        cell = torch.nn.GRUCell(M, N, dtype=torch.float64)
    else:  # pragma: no cover
        raise KeyError(name)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(0.9 * torch.randn(p.shape, dtype=torch.float64))
            p.requires_grad_(False)
    return cell


def _chunks(t, k):
    return torch.chunk(t, k, dim=0)


def gradflow_params_from_torch(name: str, cell) -> dict[str, torch.Tensor]:
    """gradflow parameter name → tensor, from PyTorch's documented stacked layout."""
    wih, whh, bih, bhh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    if name in ("tanh-rnn", "relu-rnn", "irnn"):
        return {"W": whh, "U": wih, "b": (bih + bhh).unsqueeze(1)}
    if name == "lstm":
        out = {}
        parts = zip("ifgo", _chunks(wih, 4), _chunks(whh, 4), _chunks(bih, 4), _chunks(bhh, 4), strict=True)
        for g, wi, wh, bi, bh in parts:
            out[f"W_{{{g}}}"] = wh
            out[f"U_{{{g}}}"] = wi
            out[f"b_{{{g}}}"] = (bi + bh).unsqueeze(1)
        return out
    if name == "gru":
        (wir, wiz, win), (whr, whz, whn) = _chunks(wih, 3), _chunks(whh, 3)
        (bir, biz, bin_), (bhr, bhz, bhn) = _chunks(bih, 3), _chunks(bhh, 3)
        return {
            "W_{r}": whr, "U_{r}": wir, "b_{r}": (bir + bhr).unsqueeze(1),
            "W_{z}": whz, "U_{z}": wiz, "b_{z}": (biz + bhz).unsqueeze(1),
            "W_{n}": whn, "U_{n}": win, "b_{in}": bin_.unsqueeze(1), "b_{hn}": bhn.unsqueeze(1),
        }
    raise KeyError(name)  # pragma: no cover


def torch_reference(name: str, cell, x, state: dict):
    """New states and the Jacobian blocks {(out, in): N × N} from autograd."""
    if name == "lstm":
        def f(h, c):
            return cell(x, (h, c))

        (h1, c1) = f(state["h"], state["c"])
        J = torch.func.jacrev(f, argnums=(0, 1))(state["h"], state["c"])
        blocks = {(o, i): J[oi][ii] for oi, o in enumerate("hc") for ii, i in enumerate("hc")}
        return {"h": h1, "c": c1}, blocks

    def g(h):
        return cell(x, h)

    return {"h": g(state["h"])}, {("h", "h"): torch.func.jacrev(g)(state["h"])}


# --------------------------------------------------------------------------------------------
# gradflow side: explicit SymPy expressions at concrete numbers
# --------------------------------------------------------------------------------------------

def _sym(t) -> ImmutableMatrix:
    a = t.detach().cpu().numpy()
    if a.ndim == 1:
        a = a[:, None]
    return ImmutableMatrix(a.shape[0], a.shape[1], lambda i, j: sp.Float(float(a[i, j]), DIGITS))


def _num(mat) -> np.ndarray:
    return np.array([[float(mat[i, j]) for j in range(mat.cols)] for i in range(mat.rows)])


def gradflow_numeric(name: str, N: int, params: dict, x, state: dict):
    """gradflow's new states and derived blocks evaluated at the given numbers."""
    cell = CELLS[name]
    step = cell.recorded
    sizes = {n: N, m: M}

    def concrete(symbol):
        return symbol.subs(sizes)

    names = {p.symbol.name: p.symbol for p in step.params}
    assert set(names) == set(params), (sorted(names), sorted(params))
    values = {}
    for pname, t in params.items():
        sym = concrete(names[pname])
        assert tuple(sym.shape) == tuple(t.shape if t.dim() == 2 else (*t.shape, 1)), pname
        values[sym] = _sym(t)
    for s, sym in step.prev.items():
        values[concrete(sym)] = _sym(state[s])
    values[concrete(step.x)] = _sym(x)

    for sym, defn in step.definitions.items():  # named quantities in order
        val = defn.subs(sizes).xreplace(values).as_explicit()
        values[concrete(sym)] = ImmutableMatrix(val.evalf(DIGITS))

    new = {s: _num(values[concrete(sym)]) for s, sym in step.new.items()}
    blocks = {}
    for key, blk in cell.jacobian().blocks.items():
        val = blk.subs(sizes).xreplace(values).as_explicit().evalf(DIGITS)
        assert not val.free_symbols, (key, val.free_symbols)
        blocks[key] = _num(val)
    return new, blocks


def rel_err(ours: np.ndarray, ref) -> float:
    ref = ref.detach().cpu().numpy().reshape(ours.shape)
    scale = max(np.abs(ref).max(), 1e-300)
    return float(np.abs(ours - ref).max() / scale)


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------

TORCH_CELLS = ["tanh-rnn", "relu-rnn", "irnn", "lstm", "gru"]


def _draw(name: str, N: int, seed: int):
    cell = torch_cell(name, N, seed)
    x = torch.randn(M, dtype=torch.float64)
    state = {s: torch.randn(N, dtype=torch.float64) for s in CELLS[name].states}
    return cell, x, state


def _case(name: str, N: int, seed_offset: int = 0):
    """A seeded test point; for ReLU cells the first seed with some unit active (a > 0) and,
    for N ≥ 2, some unit inactive (a < 0), so both branches of relu' are exercised."""
    seed = 1000 * TORCH_CELLS.index(name) + 10 * N + seed_offset
    if "relu" not in name and name != "irnn":
        return _draw(name, N, seed)
    for k in range(100):
        cell, x, state = _draw(name, N, seed + 100_000 * k)
        with torch.no_grad():
            a = cell.weight_ih @ x + cell.bias_ih + cell.weight_hh @ state["h"] + cell.bias_hh
        if (a > 0).any() and (N == 1 or (a < 0).any()):
            return cell, x, state
    raise AssertionError("no mixed-sign ReLU test point found")  # pragma: no cover


@pytest.mark.parametrize("N", SIZES)
@pytest.mark.parametrize("name", TORCH_CELLS)
def test_blocks_and_forward_match_torch(name, N):
    cell, x, state = _case(name, N)
    ref_new, ref_blocks = torch_reference(name, cell, x, state)
    params = gradflow_params_from_torch(name, cell)
    new, blocks = gradflow_numeric(name, N, params, x, state)

    assert set(new) == set(ref_new)
    for s in new:
        assert rel_err(new[s], ref_new[s]) <= RTOL, ("forward", s)

    assert set(blocks) == set(ref_blocks)
    for key in blocks:
        err = rel_err(blocks[key], ref_blocks[key])
        assert err <= RTOL, (key, err, blocks[key], ref_blocks[key])


@pytest.mark.parametrize("name", TORCH_CELLS)
def test_second_draw_at_n3(name):
    """Another seed at the largest size, so a lucky draw cannot hide a wrong block."""
    cell, x, state = _case(name, 3, seed_offset=7)
    ref_new, ref_blocks = torch_reference(name, cell, x, state)
    new, blocks = gradflow_numeric(name, 3, gradflow_params_from_torch(name, cell), x, state)
    for s in new:
        assert rel_err(new[s], ref_new[s]) <= RTOL
    for key in blocks:
        assert rel_err(blocks[key], ref_blocks[key]) <= RTOL, key


@pytest.mark.parametrize("N", SIZES)
def test_test_points_are_not_trivial(N):
    """No reference block at the test points is (near) zero, so no comparison is vacuous."""
    for name in TORCH_CELLS:
        for offset in (0, 7):
            cell, x, state = _case(name, N, seed_offset=offset)
            _, ref_blocks = torch_reference(name, cell, x, state)
            for key, J in ref_blocks.items():
                assert J.abs().max() > 1e-3, (name, N, offset, key)


@pytest.mark.parametrize("name", ["relu-rnn", "irnn"])
def test_relu_derivative_at_exactly_zero_matches_torch(name):
    """Pre-activation exactly 0 in unit 0: torch's relu'(0) = 0, and so must gradflow's be.

    (SymPy's Heaviside default, H(0) = 1/2, would give row 0 = W_0 / 2 ≠ 0 here.)
    """
    cell = torch_cell(name, 2, seed=5)
    with torch.no_grad():
        cell.weight_hh[0] = torch.tensor([1.0, -2.0], dtype=torch.float64)
        cell.bias_ih[0] = 0.0
        cell.bias_hh[0] = 0.0
    x = torch.zeros(M, dtype=torch.float64)
    state = {"h": torch.tensor([0.5, 0.25], dtype=torch.float64)}  # W_0 · h = 0 exactly
    ref_new, ref_blocks = torch_reference(name, cell, x, state)
    new, blocks = gradflow_numeric(name, 2, gradflow_params_from_torch(name, cell), x, state)
    J = ref_blocks[("h", "h")]
    assert float(J[0].abs().max()) == 0.0  # torch: relu'(0) = 0
    assert np.all(blocks[("h", "h")][0] == 0.0)
    assert rel_err(blocks[("h", "h")], J) <= RTOL
    assert rel_err(new["h"], ref_new["h"]) <= RTOL


def test_mapping_catches_a_wrong_gate_order():
    """Feeding PyTorch's LSTM rows in the wrong gate order is caught (the check has teeth)."""
    cell, x, state = _case("lstm", 2)
    ref_new, ref_blocks = torch_reference("lstm", cell, x, state)
    params = gradflow_params_from_torch("lstm", cell)
    swapped = dict(params)
    for k in "WUb":
        swapped[f"{k}_{{i}}"], swapped[f"{k}_{{f}}"] = params[f"{k}_{{f}}"], params[f"{k}_{{i}}"]
    new, blocks = gradflow_numeric("lstm", 2, swapped, x, state)
    assert max(rel_err(blocks[k], ref_blocks[k]) for k in blocks) > 1e-3


def test_every_cell_with_a_torch_equivalent_is_covered():
    """Cells that declare a torch.nn equivalent are exactly the ones compared here, and the
    declared class/nonlinearity is the one this file builds."""
    declared = {name: (c.torch_cell, dict(c.torch_kwargs)) for name, c in CELLS.items() if c.torch_cell}
    assert set(declared) == set(TORCH_CELLS)
    for name in TORCH_CELLS:
        built = torch_cell(name, 2, seed=0)
        cls, kwargs = declared[name]
        assert type(built).__name__ == cls, name
        if kwargs:
            assert built.nonlinearity == kwargs["nonlinearity"], name
