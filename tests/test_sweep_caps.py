"""A sweep's size is checked before anything is built, written or started: a cap on the number of
points (max_points / --max-points) and on the multiply-adds of all its runs (max_work /
--max-work). Oracles: the points the grid really has (len of the list once the cap is raised), the
rule cells × gains × forget biases × n × T × seeds written out here, and the directory that must
not exist after a refusal."""

from __future__ import annotations

import re

import pytest

from gradflow import GradflowError, grid_points
from gradflow._cli import main


def test_points_cap_names_the_count_and_admits_exactly_it():
    kw = dict(gains=[0.5, 1, 2], forget_biases=[0, 1], hidden=[2, 3], steps=[3, 4, 5], seeds=[0, 1])
    # lstm: 3 gains × 2 b_f; gru: 3 gains (no forget gate); lru: once (no W, no forget gate)
    want = (3 * 2 + 3 + 1) * 2 * 3 * 2
    with pytest.raises(GradflowError) as e:
        grid_points(["lstm", "gru", "lru"], max_points=want - 1, **kw)
    msg = str(e.value)
    assert "\n" not in msg and f"the sweep has {want} points" in msg and f"max_points={want}" in msg
    assert len(grid_points(["lstm", "gru", "lru"], max_points=want, **kw)) == want
    with pytest.raises(GradflowError, match=r"max_points must be"):
        grid_points(["lstm"], max_points=0)


def test_default_cap_refuses_a_huge_grid_at_once():
    seeds = range(20_001)  # 20 001 points: counted, not built
    with pytest.raises(GradflowError, match=r"has 20,001 points .* more than the cap of 10,000"):
        grid_points(["tanh-rnn"], gains=[1.0], seeds=seeds)


def test_work_cap_and_its_suggested_value():
    kw = dict(gains=[1.0], hidden=[8], steps=[100], batch=2)
    # an exact sweep of tanh-rnn, N = n = 8: T·B·N³ = 100 · 2 · 512 multiply-adds
    with pytest.raises(GradflowError) as e:
        grid_points(["tanh-rnn"], max_work=100 * 2 * 512 - 1, **kw)
    msg = str(e.value)
    assert "\n" not in msg and "more than the cap" in msg
    suggested = float(re.search(r"max_work=(\S+) ", msg).group(1))
    assert len(grid_points(["tanh-rnn"], max_work=suggested, **kw)) == 1
    assert len(grid_points(["tanh-rnn"], max_work=100 * 2 * 512, **kw)) == 1
    # the README's example grid passes the default caps
    assert len(grid_points(["lstm", "gru", "tanh-rnn"], gains=[0.5, 1, 1.5, 2], forget_biases=[0, 1, 2],
                           hidden=[32], steps=[100], seeds=[0, 1, 2])) == (4 * 3 + 4 + 4) * 3


def test_cli_refuses_before_writing_and_raises_on_request(tmp_path, capsys):
    out = tmp_path / "sweep"
    base = ["sweep", "tanh-rnn", "--gains", "1,2", "--hidden", "2", "--steps", "3", "--workers", "0",
            "--no-figures", "--quiet", "-o", str(out)]
    assert main([*base, "--max-points", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gradflow: error: the sweep has 2 points")
    assert "--max-points 2" in err[0] and not out.exists()
    assert main([*base, "--max-work", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-work" in err[0] and not out.exists()
    for bad in (["--max-points", "-3"], ["--max-work", "0"], ["--max-work", "inf"]):
        assert main([*base, *bad]) == 2
        assert capsys.readouterr().err.startswith("gradflow: error: --max-")
    assert main([*base, "--max-points", "2"]) == 0
    assert (out / "results.parquet").is_file()
