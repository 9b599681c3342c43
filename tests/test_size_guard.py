"""Issue 9: sizes are checked before anything is allocated; .npz members are read only when needed.

The memory available is fixed with GRADFLOW_MEMORY_LIMIT so that the messages are exact on any
machine. Peaks are measured with tracemalloc (NumPy reports its buffers to it).
"""

from __future__ import annotations

import io
import re
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from gradflow import get_cell, gradient_flow, load_weights, network, random_inputs, write_report
from gradflow._checks import GradflowError
from gradflow._cli import main
from gradflow._cli.flow import _long_run, _Progress
from gradflow._numeric.size_guard import flow_bytes

MiB = 1 << 20


@pytest.fixture(autouse=True)
def one_gib(monkeypatch):
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", "1G")


@pytest.mark.parametrize("argv, message", [
    (["flow", "lstm", "--hidden", "1000000", "--input", "2", "--steps", "3"],
     "lstm with hidden size 1000000, input size 2, 3 steps, batch 1 needs about 261.93 TiB of memory, but "
     "1.00 GiB is available (a run may use 80%): the largest hidden size that fits is 1725"),
    (["flow", "lstm", "--hidden", "30000", "--input", "30000", "--steps", "100"],
     "lstm with hidden size 30000, input size 30000, 100 steps, batch 1 needs about 268.43 GiB of memory, "
     "but 1.00 GiB is available (a run may use 80%): the largest hidden size that fits is 711"),
    (["flow", "tanh-rnn", "--hidden", "16", "--input", "2", "--steps", "10000000"],
     "tanh-rnn with hidden size 16, input size 2, 10000000 steps, batch 1 needs about 14.75 GiB of memory, "
     "but 1.00 GiB is available (a run may use 80%): the most steps that fit are 541619"),
    (["report", "lstm", "-o", "{tmp}/rep", "--hidden", "5000"],
     "the report's run of lstm with hidden size 5000, input size 5000, 100 steps needs about 7.49 GiB of "
     "memory, but 1.00 GiB is available (a run may use 80%): the largest hidden size that fits is 1456"),
])
def test_too_big_is_refused_at_once(tmp_path, capsys, argv, message):
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2
    # the figures (estimate, largest size that fits) are checked by the tests below; here the words
    pattern = re.escape(f"gradflow: error: {message}\n")
    pattern = re.sub(r"about\\ [\d\\.]+\\ ([TG])iB", r"about\\ [\\d.]+\\ \1iB", pattern)
    pattern = re.sub(r"(fits\\ is\\ |fit\\ are\\ )\d+", r"\1\\d+", pattern)
    assert re.fullmatch(pattern, capsys.readouterr().err)
    assert peak < 32 * MiB and time.perf_counter() - t0 < 10
    assert not (tmp_path / "rep").exists()


def test_largest_size_named_does_fit():
    cell = get_cell("lstm")
    budget = 0.8 * (1 << 30)
    assert flow_bytes(cell, 1723, 2, 3) <= budget < flow_bytes(cell, 1724, 2, 3)


@pytest.mark.parametrize("name, n, T, B", [("lstm", 40, 12, 2), ("gru", 24, 20, 3),
                                           ("tanh-rnn", 8, 600, 1)])
def test_estimate_bounds_the_measured_peak(name, n, T, B):
    cell = get_cell(name)
    m = 5
    gradient_flow(network(cell, 3, m), random_inputs(3, m))  # compile the cell's kernels first
    est = flow_bytes(cell, n, m, T, B)
    tracemalloc.start()
    try:
        net = network(cell, n, m)
        x = random_inputs(T, m, batch=B)
        gradient_flow(net, x, spectral="svd")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= est <= 2 * peak + MiB, (peak, est)  # within 2x, plus 1 MiB fixed


def test_report_api_is_guarded_too(tmp_path):
    with pytest.raises(GradflowError, match="the largest hidden size that fits is"):
        write_report("tanh-rnn", tmp_path / "r", hidden=50_000, steps=3)
    assert list(tmp_path.iterdir()) == []


# -- .npz members ---------------------------------------------------------------------------------
def _npy_header(shape, dtype="<f8") -> bytes:
    buf = io.BytesIO()  # magic and header, as np.save writes them
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _add_inflating(path, member, header: bytes, inflated: int) -> None:
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open(member, "w", force_zip64=True) as f:
            f.write(header)
            chunk = bytes(MiB)
            for _ in range(inflated // MiB):
                f.write(chunk)


BOMB_INFLATED = 256 * MiB


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """Good weights plus an unused member that inflates to 256 MiB from a few hundred KiB."""
    d = tmp_path_factory.mktemp("bomb")
    rng = np.random.default_rng(0)
    w = {"weight_ih": rng.standard_normal((3, 2)), "weight_hh": rng.standard_normal((3, 3)),
         "bias_ih": np.zeros(3), "bias_hh": np.zeros(3)}
    np.savez(d / "bomb.npz", **w)
    _add_inflating(d / "bomb.npz", "junk.npy", _npy_header((BOMB_INFLATED // 8,)), BOMB_INFLATED)
    np.savez(d / "lying.npz", weight_ih=w["weight_ih"], bias_ih=w["bias_ih"], bias_hh=w["bias_hh"])
    _add_inflating(d / "lying.npz", "weight_hh.npy", _npy_header((3, 3)), 64 * MiB)
    np.savez(d / "huge.npz", weight_ih=w["weight_ih"], bias_ih=w["bias_ih"], bias_hh=w["bias_hh"])
    with zipfile.ZipFile(d / "huge.npz", "a") as z:
        z.writestr("weight_hh.npy", _npy_header((100_000, 100_000)) + bytes(64))
    return d, w


def test_bomb_stays_under_a_memory_bound(bomb):
    d, w = bomb
    assert (d / "bomb.npz").stat().st_size < 2 * MiB
    tracemalloc.start()
    try:
        loaded = load_weights("tanh-rnn", d / "bomb.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB, peak  # the 256 MiB member is never inflated
    np.testing.assert_array_equal(loaded.arrays["W"], w["weight_hh"])


def test_member_inflating_beyond_its_shape_is_refused_unread(bomb, capsys):
    d, _ = bomb
    path = d / "lying.npz"
    tracemalloc.start()
    try:
        code = main(["flow", "tanh-rnn", "--weights", str(path), "--steps", "3"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2 and peak < 16 * MiB
    size = zipfile.ZipFile(path).getinfo("weight_hh.npy").file_size
    assert capsys.readouterr().err == (f"gradflow: error: weights file {path}: member weight_hh declares shape "
                                       f"(3, 3) (72 bytes) but inflates to {size} bytes; refusing it unread\n")


def test_member_declaring_more_than_memory_is_refused(bomb, capsys):
    d, _ = bomb
    path = d / "huge.npz"
    assert main(["flow", "tanh-rnn", "--weights", str(path), "--steps", "3"]) == 2
    assert capsys.readouterr().err == (f"gradflow: error: weights file {path}: member weight_hh declares "
                                       "74.51 GiB of data, more than the 1.00 GiB of memory available\n")


# -- progress -------------------------------------------------------------------------------------
def test_long_runs_report_progress_in_whole_lines_when_not_a_terminal():
    assert _long_run(10_000_000, 1, 16) and not _long_run(100, 1, 16)
    buf = io.StringIO()
    p = _Progress("lstm T=20", stream=buf, width=10)
    for k in range(1, 21):
        p(k, 20)
    lines = buf.getvalue().splitlines()
    assert "\r" not in buf.getvalue() and len(lines) == 10
    assert lines[-1] == "lstm T=20 [##########] 20/20 (100%)"
