"""Phase grids and decay tables: shapes, axes, physics, and agreement with independent fits."""

import numpy as np
import pytest

import gradflow as gf

N, M, T, B = 6, 3, 16, 2


def _flow(cell, **kw):
    net = gf.network(cell, N, M, init="orthogonal", seed=3, **kw)
    return gf.gradient_flow(net, gf.random_inputs(T, M, batch=B, seed=3), lyapunov=False)


def _slope(y):
    """Least-squares slope of y (indexed by k) against T − k, fitted here independently."""
    x = len(y) - np.arange(len(y))
    A = np.stack([x, np.ones_like(x)], axis=1).astype(float)
    return np.linalg.lstsq(A, y, rcond=None)[0][0]


def test_phase_grid_shape_and_axes():
    grid = gf.phase_grid("lstm", hidden=N, input=M, steps=T, scales=(0.5, 1.0, 2.0),
                         forget_biases=(-1.0, 1.0), batch=B)
    assert isinstance(grid, gf.PhaseGrid)
    assert grid.rates.shape == (2, 3)
    assert grid.scales == (0.5, 1.0, 2.0) and grid.forget_biases == (-1.0, 1.0)
    assert (grid.cell, grid.hidden, grid.steps, grid.which) == ("lstm", N, T, "full")
    assert np.isfinite(grid.rates).all()
    # rows are forget biases, columns scales: one point recomputed by hand
    net = gf.network("lstm", N, M, init="orthogonal", seed=0, gain=2.0, forget_bias=-1.0)
    flow = gf.gradient_flow(net, gf.random_inputs(T, M, batch=B, seed=0), lyapunov=False)
    assert grid.rates[0, 2] == pytest.approx(_slope(flow.full.mean()["log10_norm_2"]), abs=1e-9)
    with pytest.raises(ValueError, match="read-only"):
        grid.rates[0, 0] = 1.0  # read-only


def test_forget_bias_slows_cell_state_decay():
    biases = (-2.0, -1.0, 0.0, 1.0)
    grid = gf.phase_grid("lstm", hidden=N, input=M, steps=T, scales=(1.0,), forget_biases=biases,
                         which="cell_state", batch=B)
    r = grid.rates[:, 0]
    assert (r < 0).all()
    assert (np.diff(r) > 0).all(), r          # larger b_f: slower decay of ∂c_T/∂c_k
    assert (np.diff(np.abs(r)) < 0).all(), r  # ... i.e. closer to 0


def test_gain_sets_tanh_decay():
    grid = gf.phase_grid("tanh-rnn", hidden=N, input=M, steps=T, scales=(0.25, 0.5, 0.9),
                         batch=B)
    assert grid.forget_biases == (None,) and grid.rates.shape == (1, 3)
    r = grid.rates[0]
    assert (np.diff(r) > 0).all(), r  # smaller gain: faster decay
    # orthogonal W: σ_max(W) = gain and |tanh'| ≤ 1, so the decay is at least log10(gain)
    assert (r <= np.log10(grid.scales) + 0.02).all(), r


def test_phase_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="forget gate"):
        gf.phase_grid("tanh-rnn", hidden=N, input=M, steps=T, scales=(1.0,), forget_biases=(1.0,))
    with pytest.raises(ValueError, match="cell state"):
        gf.phase_grid("gru", hidden=N, input=M, steps=T, scales=(1.0,), which="cell_state")
    with pytest.raises(ValueError, match="which"):
        gf.phase_grid("lstm", hidden=N, input=M, steps=T, scales=(1.0,), which="c")
    with pytest.raises(ValueError, match="scales"):
        gf.phase_grid("lstm", hidden=N, input=M, steps=T, scales=())
    with pytest.raises(ValueError, match="scales"):
        gf.phase_grid("lstm", hidden=N, input=M, steps=T, scales=(float("nan"),))
    with pytest.raises(ValueError, match="unknown cell"):
        gf.phase_grid("nope", scales=(1.0,))


def test_decay_table_matches_independent_fit():
    flows = [_flow("tanh-rnn", gain=0.8), _flow("lstm", forget_bias=1.0)]
    rows = gf.decay_table(flows)
    assert [r["cell"] for r in rows] == ["tanh-rnn", "lstm"]
    for f, r in zip(flows, rows, strict=True):
        assert (r["n"], r["T"], r["batch"]) == (N, T, B)
        y = f.full.log10_norm_2.mean(axis=0)
        assert r["rate"] == pytest.approx(_slope(y), abs=1e-10)
        assert r["log10_norm_k0"] == pytest.approx(y[0])
    assert rows[0]["rate_cell_state"] is None and rows[0]["log10_norm_k0_cell_state"] is None
    yc = flows[1].cell_state.log10_norm_2.mean(axis=0)
    assert rows[1]["rate_cell_state"] == pytest.approx(_slope(yc), abs=1e-10)
    assert rows[1]["log10_norm_k0_cell_state"] == pytest.approx(yc[0])
    # gradients vanish for a contracting tanh RNN
    assert rows[0]["rate"] < 0

    fro = gf.decay_table(flows[0], norm="fro")[0]
    assert fro["rate"] == pytest.approx(_slope(flows[0].full.log10_norm_fro.mean(axis=0)), abs=1e-10)
    with pytest.raises(ValueError, match="norm"):
        gf.decay_table(flows, norm="1")
    with pytest.raises(ValueError, match="Flow"):
        gf.decay_table([1.0])
