"""One rule for non-finite numbers in every output (issue 8): exact 0 → null, +∞ → "inf",
NaN → an error naming its source; never a flipped sign."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import gradflow as gf
from gradflow._checks import GradflowError
from gradflow._cli import main
from gradflow._numeric.flow import json_number


def test_json_number_rule():
    assert json_number(-1.5, "x") == -1.5
    assert json_number(-math.inf, "x") is None
    assert json_number(math.inf, "x") == "inf"
    with pytest.raises(GradflowError, match="the thing is NaN"):
        json_number(math.nan, "the thing")


def test_huge_recurrent_weights_bound_is_large_not_flipped():
    """σ_max(W) overflows float64 in a plain SVD of W = 1e300·(…): the bound is computed in
    log form, so it is a large positive log10, not null / -inf."""
    rng = np.random.default_rng(0)
    W = 1e300 * rng.standard_normal((3, 3))
    w = {"weight_ih_l0": np.zeros((3, 1)), "weight_hh_l0": W,
         "bias_ih_l0": np.zeros(3), "bias_hh_l0": np.zeros(3)}
    net = gf.network("tanh-rnn", weights=w)
    flow = gf.gradient_flow(net, np.full((4, 1), 0.3), lyapunov=False)
    ref = np.log10(np.linalg.svd(W / 1e300, compute_uv=False)[0]) + 300
    np.testing.assert_allclose(flow.bound, (4 - np.arange(4)) * ref, rtol=1e-12)
    rec = flow.to_json()
    assert all(isinstance(r["log10_bound"], float) and r["log10_bound"] > 299 for r in rec["curve"])


def test_nan_output_matrix_is_an_error_naming_it():
    net = gf.network("tanh-rnn", 3, 2)
    V = np.full((2, 3), np.nan)
    with pytest.raises(GradflowError, match="output weight"):
        gf.gradient_flow(net, gf.random_inputs(4, 2), output=(V, np.zeros(2), np.array([0])))


def test_exact_zero_is_null_and_lyapunov_null_documented(capsys):
    """A ReLU RNN whose units are all off: products exactly 0 (null), Lyapunov exponents −∞
    (null); the table prints -inf."""
    w = {"weight_ih_l0": np.zeros((2, 1)), "weight_hh_l0": np.eye(2),
         "bias_ih_l0": -np.ones(2), "bias_hh_l0": np.zeros(2)}
    net = gf.network("relu-rnn", weights=w)
    rec = gf.gradient_flow(net, np.zeros((3, 1))).to_json()
    assert rec["curve"][0]["log10_norm_2"] is None
    assert rec["lyapunov"] == [None, None]
    json.dumps(rec, allow_nan=False)


def test_cli_table_prints_inf_sign_right(tmp_path, capsys):
    np.savez(tmp_path / "w.npz", weight_ih_l0=np.zeros((2, 1)), weight_hh_l0=np.eye(2) * 1e300,
             bias_ih_l0=np.zeros(2), bias_hh_l0=np.zeros(2))
    np.save(tmp_path / "x.npy", np.full((3, 1), 0.2))
    assert main(["flow", "tanh-rnn", "--weights", str(tmp_path / "w.npz"),
                 "--inputs", str(tmp_path / "x.npy"), "--no-lyapunov"]) == 0
    out = capsys.readouterr().out
    assert "-inf" not in out.split("bound")[-1].splitlines()[1]
