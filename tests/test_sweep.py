"""gradflow sweep: the grid, one point against a PyTorch-autograd oracle, Dask, resuming, failures, files."""

from __future__ import annotations

import fcntl
import json
import os

import numpy as np
import pytest

import gradflow as gf
from gradflow._cli import main
from gradflow._numeric import sweep_run

pytest.importorskip("dask.distributed")
pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402


def test_grid_is_the_product_and_forget_biases_only_where_there_is_a_forget_gate():
    pts = gf.grid_points(["lstm", "gru"], gains=[0.5, 1.0], forget_biases=[0.0, 1.0, 2.0], hidden=[4, 6],
                         steps=[5], seeds=[0, 1])
    assert len(pts) == 2 * 3 * 2 * 2 + 2 * 1 * 2 * 2
    assert {p.forget_bias for p in pts if p.cell == "gru"} == {None}
    assert {p.forget_bias for p in pts if p.cell == "lstm"} == {0.0, 1.0, 2.0}
    assert len({p.key for p in pts}) == len(pts)
    # the key depends on the parameters only, not on the grid a point is part of
    again = gf.grid_points(["lstm"], gains=[1.0], forget_biases=[2.0], hidden=[6], steps=[5], seeds=[1])
    assert again[0].key in {p.key for p in pts}


@pytest.mark.parametrize("kwargs, words", [
    ({"gains": [1.0, 1.0]}, "twice"),
    ({"gains": [float("nan")]}, "finite"),
    ({"hidden": [0]}, "hidden"),
    ({"seeds": [-1]}, "seeds"),
    ({"init": "xavier"}, "init"),
    ({"gains": []}, "empty"),
])
def test_bad_grids_are_one_error(kwargs, words):
    with pytest.raises(gf.GradflowError, match=words):
        gf.grid_points(["lstm"], **kwargs)


def test_a_grid_too_large_for_memory_is_refused_before_anything_runs(monkeypatch):
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", "50M")
    with pytest.raises(gf.GradflowError, match="memory"):
        gf.grid_points(["lstm"], hidden=[4, 2000], steps=[500])


def _oracle_rates(point):
    """Decay rates of ‖∂s_T/∂s_k‖₂ and of the c→c block from PyTorch autograd of nn.LSTMCell steps."""
    from _torch_oracle import torch_lstm_jacobians

    net = gf.network(point.cell, point.hidden, point.input, init=point.init, seed=point.seed,
                     gain=point.gain, forget_bias=point.forget_bias)
    x = gf.random_inputs(point.steps, point.input, batch=point.batch, seed=point.seed)
    J = torch_lstm_jacobians(net, x)
    T, n = point.steps, point.hidden
    P = np.eye(2 * n)
    full, cell = np.empty(T), np.empty(T)
    for k in range(T - 1, -1, -1):  # P = ∂s_T/∂s_k = J_T ⋯ J_{k+1}
        P = P @ J[k]
        full[k] = np.log10(np.linalg.norm(P, 2))
        cell[k] = np.log10(np.linalg.norm(P[n:, n:], 2))
    lag = T - np.arange(T)
    return np.polyfit(lag, full, 1)[0], np.polyfit(lag, cell, 1)[0], full[0]


def test_one_point_matches_pytorch_autograd():
    (point,) = gf.grid_points(["lstm"], gains=[1.3], forget_biases=[0.5], hidden=[3], steps=[9], seeds=[2],
                              batch=1, input=2)
    row = gf.measure_point(point)
    rate, rate_c, k0 = _oracle_rates(point)
    assert row["rate"] == pytest.approx(rate, rel=1e-9, abs=1e-12)
    assert row["rate_cell_state"] == pytest.approx(rate_c, rel=1e-9, abs=1e-12)
    assert row["log10_norm_k0"] == pytest.approx(k0, rel=1e-9, abs=1e-12)
    assert (row["cell"], row["gain"], row["forget_bias"], row["seed"]) == ("lstm", 1.3, 0.5, 2)


def test_on_a_local_dask_cluster_then_resumed(tmp_path):
    pts = gf.grid_points(["lstm", "tanh-rnn"], gains=[0.5, 1.5], forget_biases=[1.0], hidden=[3], steps=[6],
                         seeds=[0, 1], batch=2)
    out = tmp_path / "sweep"
    seen = []
    res = gf.run_sweep(pts, out, workers=2, csv=True, progress=lambda d, t, p, r: seen.append((d, t)))
    assert (res.computed, res.resumed, res.failed) == (len(pts), 0, [])
    assert seen[-1] == (len(pts), len(pts)) and len(seen) == len(pts)
    # the table: one row per point, in grid order, the same numbers as one point run here
    table = pq.read_table(out / "results.parquet").to_pylist()
    assert [r["key"] for r in table] == [p.key for p in pts]
    here = gf.measure_point(pts[3])
    for col in ("rate", "rate_fro", "rate_grad", "log10_norm_k0"):
        assert table[3][col] == pytest.approx(here[col], rel=1e-12)
    assert table[-1]["rate_cell_state"] is None  # tanh-rnn has no cell state
    csv = (out / "results.csv").read_text().splitlines()
    assert csv[0].split(",") == list(sweep_run.COLUMNS) and len(csv) == len(pts) + 1
    # a second run with one more seed computes only the new points
    more = gf.grid_points(["lstm", "tanh-rnn"], gains=[0.5, 1.5], forget_biases=[1.0], hidden=[3], steps=[6],
                          seeds=[0, 1, 2], batch=2)
    res2 = gf.run_sweep(more, out, workers=0)
    assert (res2.resumed, res2.computed) == (len(pts), len(more) - len(pts))
    assert len(pq.read_table(out / "results.parquet")) == len(more)


def _fails_on_gain_two(point):
    if point.gain == 2.0:
        raise FloatingPointError("overflow in this point")
    return gf.measure_point(point)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_failing_point_is_named_and_the_finished_ones_are_kept(tmp_path, workers):
    pts = gf.grid_points(["tanh-rnn"], gains=[1.0, 2.0, 3.0], hidden=[2], steps=[4], batch=1)
    res = gf.run_sweep(pts, tmp_path / "s", workers=workers, compute=_fails_on_gain_two, processes=False)
    assert [p.gain for p, _ in res.failed] == [2.0]
    assert "FloatingPointError: overflow in this point" in res.failed[0][1]
    assert sorted(r["gain"] for r in res.rows) == [1.0, 3.0]
    assert len(list((tmp_path / "s" / "points").glob("*.json"))) == 2
    # the retry computes only the failed point
    res2 = gf.run_sweep(pts, tmp_path / "s", workers=0)
    assert (res2.resumed, res2.computed, res2.failed) == (2, 1, [])


def test_a_foreign_directory_is_refused_and_left_alone(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("mine")
    code = main(["sweep", "tanh-rnn", "-o", str(tmp_path), "--hidden", "2", "--steps", "3", "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("gradflow: error:") and "thesis.tex" in err and err.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["thesis.tex"]


def test_a_second_run_on_a_locked_sweep_is_refused(tmp_path):
    pts = gf.grid_points(["tanh-rnn"], hidden=[2], steps=[3], batch=1)
    gf.run_sweep(pts, tmp_path, workers=0, parquet=False)
    fd = os.open(tmp_path / ".gradflow.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(gf.GradflowError, match="another gradflow sweep"):
            gf.run_sweep(pts, tmp_path, workers=0)
    finally:
        os.close(fd)


def test_cli_writes_table_and_figures_and_names_a_failed_point(tmp_path, capsys, monkeypatch):
    out = tmp_path / "s"
    args = ["sweep", "lstm", "gru", "-o", str(out), "--gains", "0.5,1", "--forget-biases", "0,1",
            "--hidden", "3", "--steps", "5", "--seeds", "0,1", "--batch", "1", "--workers", "0", "--csv",
            "--quiet"]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "12 points (12 computed, 0 already done, 0 failed)" in said
    for name in ("results.parquet", "results.csv", "decay_rates.png", "phase_diagram.pdf", "sweep.json"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["written_by"] == "gradflow sweep" and meta["points"] == 12
    # a point that raises in its run: one error line naming it; the finished ones stay
    monkeypatch.setattr(sweep_run, "measure_point", _fails_on_gain_two)
    code = main(["sweep", "tanh-rnn", "-o", str(tmp_path / "f"), "--gains", "1,2", "--hidden", "2",
                 "--steps", "3", "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "1 of 2 points failed (tanh-rnn gain=2 n=2 T=3 seed=0: FloatingPointError" in err
    assert "the 1 finished points are saved" in err


@pytest.mark.parametrize("args, words", [
    (["--gains", "1,x"], "--gains must be a number"),
    (["--gains", "1,,2"], "comma-separated"),
    (["--forget-biases", "1"], "none of tanh-rnn has one"),
    (["--seeds", "-1"], "--seeds"),
    (["--workers", "-1"], "--workers"),
])
def test_cli_bad_values_are_one_line(tmp_path, capsys, args, words):
    code = main(["sweep", "tanh-rnn", "-o", str(tmp_path / "s"), "--hidden", "2", "--steps", "3", *args])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_an_unreachable_scheduler_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep_run, "SCHEDULER_TIMEOUT", "1s")
    code = main(["sweep", "tanh-rnn", "-o", str(tmp_path / "s"), "--hidden", "2", "--steps", "3",
                 "--scheduler", "tcp://127.0.0.1:9", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err and err.count("\n") == 1
