"""The example scripts run (``--quick``), write what they promise and print the seed numbers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, out: Path, *extra: str) -> str:
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), "--quick", "--out", str(out), *extra],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def assert_figure(out: Path, stem: str) -> None:
    png, pdf = out / f"{stem}.png", out / f"{stem}.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000


def test_every_example_is_tested():
    tested = {"parameter_counts.py", "why_lstm_does_not_vanish.py", "rnn_lstm_gru_decay.py",
              "remedies.py", "load_pytorch_model.py", "modern_cells.py",
              "compare_modern.py", "train_digits.py", "exploding_cliff.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_docstring_and_options(script):
    text = (EXAMPLES / script).read_text()
    assert text.startswith('"""'), f"{script} needs a module docstring saying what it shows"
    assert "--out" in text and "--quick" in text


def test_parameter_counts(tmp_path):
    out = run_example("parameter_counts.py", tmp_path)
    for number in ("4,457,472", "79,872", "80,384", "80,896", "1,290", "21,386", "320",
                   "4*(n**2 + n*m + n)", "4*(n**2 + n*m + 2*n)", "n**2 + n*m + n + k*n + k",
                   "(k_h*k_w*c + 1)*k"):
        assert number in out, number
    assert "DIFFERS" not in out
    assert out.count("matches") == 5  # torch.nn agrees on every layer
    counts = json.loads((tmp_path / "parameter_counts.json").read_text())
    assert counts["lstm_256_4096_keras"]["total"] == 4_457_472
    assert counts["lstm_128_28_keras"]["total"] == 80_384
    assert counts["lstm_128_28_pytorch"]["total"] == 80_896
    assert counts["dense_128_10"]["total"] == 1_290


def test_why_lstm_does_not_vanish(tmp_path):
    out = run_example("why_lstm_does_not_vanish.py", tmp_path)
    for line in ("∂h_t/∂h_{t-1} = diag(1 - h_t ⊙ h_t)·W", "∂c_t/∂c_{t-1} = diag(f_t)",
                 "∂c_t/∂c_k = diag(⊙_{j=k + 1..t} f_j)", "γ = sup|φ'| = 1,", "γ = sup|φ'| = 1/4",
                 "∂c_t/∂c_k = I  (constant: True)", "∂h_t/∂h_{t-1} = 0"):
        assert line in out, line
    rows = {line.split("  ")[0]: line.split() for line in out.splitlines()
            if line.startswith(("tanh RNN  ", "LSTM, b_f", "LSTM 1997"))}
    rnn = float(rows["tanh RNN"][-1])
    lstm1 = float(rows["LSTM, b_f = 1"][4])
    assert rnn < lstm1 < 0            # the LSTM with b_f = 1 vanishes, but more slowly
    assert float(rows["LSTM 1997 (no forget)"][6]) == 0.0  # the carousel: exactly constant
    assert_figure(tmp_path, "why_lstm_does_not_vanish")


def test_rnn_lstm_gru_decay(tmp_path):
    out = run_example("rnn_lstm_gru_decay.py", tmp_path)
    rates = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()
             if line.split() and line.split()[0] in ("tanh-rnn", "lstm", "gru")}
    assert set(rates) == {"tanh-rnn", "lstm", "gru"}
    assert rates["tanh-rnn"] < rates["lstm"] < 0 and rates["tanh-rnn"] < rates["gru"] < 0
    assert "Pascanu bound" in out
    assert_figure(tmp_path, "rnn_lstm_gru_decay")


def test_remedies(tmp_path):
    out = run_example("remedies.py", tmp_path)
    assert "IRNN (ReLU, W = I)" in out and "residual RNN" in out
    assert "b_f = 1 only" in out and "slower decay" in out
    assert_figure(tmp_path, "remedies")


def test_load_pytorch_model(tmp_path):
    out = run_example("load_pytorch_model.py", tmp_path)
    for name in ("lstm_init.pt", "lstm_trained.pt"):
        assert (tmp_path / name).stat().st_size > 1_000
    check = next(line for line in out.splitlines() if line.startswith("forward check"))
    assert float(check.rsplit("=", 1)[1]) < 1e-10  # gradflow reproduces torch's forward pass
    assert_figure(tmp_path, "load_pytorch_model")
    record = json.loads((tmp_path / "flow_trained.json").read_text())
    assert {"cell", "hidden", "steps", "batch", "curve", "lyapunov"} <= set(record)
    assert record["cell"] == "lstm" and record["hidden"] == 8 and len(record["curve"]) == record["steps"]
    assert {"k", "log10_norm_2", "log10_norm_fro", "log10_grad_norm", "cell_state", "carousel"} \
        <= set(record["curve"][0])
    assert "$ gradflow flow lstm --weights" in out
    # the ratio of two gradient norms is called what it is (it exceeds 1 when the gradient grows),
    # and the words beside each number say what the number says
    assert "share" not in out.lower()
    said = {}
    for line in out.splitlines():
        m = re.fullmatch(r"  (before|after) training: +([0-9.e+-]+): the loss gradient is "
                         r"(?:([0-9.e+-]+) times (smaller|larger)|as large) at s_0 (?:than|as) at s_\(T-1\)", line)
        if m:
            ratio, factor, which = float(m.group(2)), m.group(3), m.group(4)
            if which == "smaller":
                assert ratio < 1 and abs(float(factor) * ratio - 1) < 0.02, line
            elif which == "larger":
                assert ratio > 1 and float(factor) == ratio, line
            said[m.group(1)] = ratio
    assert set(said) == {"before", "after"}, out


def test_compare_modern(tmp_path):
    """The diagonal cells' gate products (written in the script from the papers) equal the measured norms."""
    out = run_example("compare_modern.py", tmp_path)
    assert "DIFFER" not in out
    table = out.split("one-step Jacobians")[0]
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()
            if line.split() and line.split()[0] in ("mamba-zoh", "mamba-euler", "rg-lru", "mingru", "lstm")}
    for name in ("mamba-zoh", "mamba-euler", "rg-lru", "mingru"):
        assert len(rows[name]) == 3 and rows[name][1] == rows[name][2], rows[name]
    assert len(rows["lstm"]) == 2  # not diagonal: no gate product printed
    assert_figure(tmp_path, "compare_modern")


def test_train_digits(tmp_path, capsys):
    """In this process (torch, sklearn and gradflow are imported once, not again in a subprocess)."""
    pytest.importorskip("sklearn")
    pytest.importorskip("torch")
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_digits", EXAMPLES / "train_digits.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import torch

    threads = torch.get_num_threads()
    try:
        module.main(["--quick", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)  # the example sets one thread; the tests after it keep theirs
    out = capsys.readouterr().out
    assert "T = 64, m = 1" in out and "test accuracy after" in out and "overhead:" in out
    records = [json.loads(line) for line in (tmp_path / "train_digits.jsonl").read_text().splitlines()]
    assert len(records) >= 2 and records[0]["step"] == 0
    assert [r["step"] for r in records] == sorted(r["step"] for r in records)
    assert all(r["cell"] == "lstm" and r["steps"] == 64 and len(r["curve"]) == 64 for r in records)
    assert_figure(tmp_path, "train_digits")


def test_exploding_cliff(tmp_path, capsys):
    """The cliff, its gradient and both steps, recomputed with mpmath at 50 digits (in-process)."""
    import importlib.util

    mpmath = pytest.importorskip("mpmath")
    spec = importlib.util.spec_from_file_location("exploding_cliff", EXAMPLES / "exploding_cliff.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert_figure(tmp_path, "exploding_cliff")
    num = r"(-?[0-9.]+(?:e[+-]?[0-9]+)?)"
    wc = float(re.search(r"cliff at w_c = " + num, out).group(1))
    g0 = float(re.search(r"dL/dw = " + num, out).group(1))
    w_free = float(re.search(r"step without clipping: w1 = " + num, out).group(1))
    w_clip = float(re.search(r"step with clipping to 5: w1 = " + num, out).group(1))
    mpmath.mp.dps = 50

    def x_T(w):  # x_t = w σ(x_{t−1}) + b, b = −3, x_0 = 0.5, T = 50, written out here
        x = mpmath.mpf("0.5")
        for _ in range(50):
            x = w / (1 + mpmath.exp(-x)) - 3
        return x

    def L(w):
        return (x_T(w) + mpmath.mpf("2.6")) ** 2 / 2

    # a cliff: x_T on the low branch just below w_c, on the high branch just above, L jumps by ~10
    assert x_T(mpmath.mpf(wc) - mpmath.mpf("1e-8")) < 0 < x_T(mpmath.mpf(wc) + mpmath.mpf("1e-8"))
    assert L(mpmath.mpf(wc) + mpmath.mpf("1e-3")) - L(mpmath.mpf(wc) - mpmath.mpf("1e-3")) > 9
    # the printed gradient at w0 = w_c + 1e-6 is dL/dw (mpmath's numerical derivative at 50 digits)
    w0 = mpmath.mpf(wc) + mpmath.mpf("1e-6")
    assert abs(float(mpmath.diff(L, w0)) - g0) < 1e-3 * abs(g0) and abs(g0) > 1e5
    # the steps: w − 0.05 g without clipping; with g clipped to norm 5, a step of exactly 0.25
    assert abs(w_free - float(w0 - mpmath.mpf("0.05") * g0)) < 1e-5 * abs(w_free)
    assert abs(w_clip - (float(w0) - 0.25)) < 1e-5
    assert float(L(mpmath.mpf(w_clip))) < 0.01  # below the cliff: the low branch
