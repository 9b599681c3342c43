"""A sweep's default init and input size: orthogonal (the gain is σ_max of each gate's W) and
m = 4 for cells with a recurrent matrix W; the reference initialisation and its input size for
the cells without W that have one (Mamba, S4D, RG-LRU, the LRU), as ``gradflow flow`` and the
report use them. The expected sizes are written here from the papers' code: Mamba's
``d_state = 16`` (m = n/16), S4D's ``d_state = 64`` kept as 32 complex modes (m = n/32)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradflow as gf
from gradflow._numeric.sweep_grid import grid_points, measure_point


def test_defaults_per_cell():
    pts = grid_points(["lstm", "mamba-zoh", "s4d", "rg-lru", "lru", "mingru"], hidden=[32, 64], steps=[5])
    got = {(p.cell, p.hidden): (p.init, p.input) for p in pts}
    assert got[("lstm", 32)] == ("orthogonal", 4) and got[("mingru", 64)] == ("orthogonal", 4)
    assert got[("mamba-zoh", 32)] == ("mamba", 2) and got[("mamba-zoh", 64)] == ("mamba", 4)
    assert got[("s4d", 32)] == ("s4d-lin", 1) and got[("s4d", 64)] == ("s4d-lin", 2)
    assert got[("rg-lru", 32)] == ("rg-lru", 32) and got[("lru", 64)] == ("lru-ring", 64)
    assert sorted({p.gain for p in pts if p.cell == "lstm"}) == [0.5, 1.0, 1.5]
    assert {p.gain for p in pts if p.cell != "lstm" and p.cell != "mingru"} == {1.0}


def test_a_given_init_or_input_applies_to_every_cell_and_keys_of_w_cells_are_unchanged():
    given = grid_points(["lstm", "s4d"], hidden=[16], steps=[5], init="orthogonal", input=4)
    assert {(p.init, p.input) for p in given} == {("orthogonal", 4)}
    default = grid_points(["lstm"], hidden=[16], steps=[5])
    assert [p.key for p in default] == [p.key for p in given if p.cell == "lstm"]  # resumable as before
    (mamba,) = grid_points(["mamba-zoh"], hidden=[16], steps=[5], input=2)
    assert (mamba.init, mamba.input) == ("mamba", 2)


def test_s4d_point_at_its_reference_init_decays_as_its_slowest_mode():
    """S4D's state Jacobian is ρ_i R(φ_i) per unit with ρ_i = exp(−Δ_i e^{A_i}) fixed in time, so
    ‖∂s_T/∂s_k‖₂ = max_i ρ_i^{T−k}: a decay rate of max_i(−Δ_i e^{A_i})/ln 10 per step, exactly."""
    (point,) = grid_points(["s4d"], hidden=[16], steps=[12], seeds=[3], batch=1)
    row = measure_point(point)
    net = gf.network("s4d", point.hidden, point.input, init=point.init, seed=point.seed)
    w = {k: np.asarray(v) for k, v in net.weights.arrays.items()}
    slowest = np.max(-np.exp(w[r"\log\Delta"]) * np.exp(w[r"A_{re,\log}"])) / math.log(10)
    assert row["rate"] == pytest.approx(slowest, abs=1e-10)
    assert row["log10_norm_k0"] == pytest.approx(12 * slowest, abs=1e-9)
    assert row["init"] == "s4d-lin" and row["input"] == 1


def test_cli_help_names_the_defaults(capsys):
    from gradflow._cli import main

    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "their reference init" in out and "default: orthogonal" in out
