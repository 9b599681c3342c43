"""Two CLI defects: Mamba at huge inputs (one note, no raw NumPy warning) and --lyapunov full.

Oracles: the S6 product written out here from the paper's equations (ā_t = exp(−Δ_t ⊙ exp(A_log)),
Δ_t = softplus(U_Δ x_t + b_Δ), evaluated in the log domain so 1e200 inputs stay finite); the
state size N of the cell (2n for the LSTM) counted here; the JSON record's exponents.
"""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import pytest

import gradflow as gf
from gradflow._cli import main


def _cli(capsys, *argv):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a raw NumPy warning fails the test
        code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _huge_inputs(tmp_path, T, d, seed):
    x = np.random.default_rng(seed).standard_normal((T, 1, d)) * 1e200
    path = tmp_path / "huge.npy"
    np.save(path, x)
    return path, x[:, 0]


def test_mamba_huge_inputs_one_note_and_exact_norms(tmp_path, capsys):
    d, N, T, seed = 3, 2, 5, 1
    path, x = _huge_inputs(tmp_path, T, d, seed)
    code, out, err = _cli(capsys, "flow", "mamba-zoh", "--hidden", str(d * N), "--input", str(d), "--seed",
                          str(seed), "--inputs", str(path), "--no-lyapunov", "--json")
    assert code == 0
    assert "Warning" not in err and err.count("gradflow: note:") == 1 and "overflowed" in err
    curve = json.loads(out)["curve"]
    w = {k: np.asarray(v) for k, v in gf.init_weights("mamba-zoh", d * N, d, scheme="mamba", seed=seed).arrays.items()}
    for k in range(T):  # log ā summed over s = k+1 … T; softplus(z) = logaddexp(0, z) is finite at 1e200
        log_a = sum(-np.logaddexp(0.0, w[r"U_{\Delta}"] @ x[t] + w[r"b_{\Delta}"]) * np.exp(w[r"A_{\log}"])
                    for t in range(k, T))
        want = log_a.max() / math.log(10)
        got = curve[k]["log10_norm_2"]
        if want < -324:  # ā_t = e^{−1e200} rounds to 0 in float64: the product reads as 0 (null)
            assert got is None
        else:
            assert got is not None and abs(got - want) < 1e-9


def test_mamba_huge_inputs_loss_that_reads_the_state_is_one_error(tmp_path, capsys):
    d, N, T = 3, 2, 4
    path, _ = _huge_inputs(tmp_path, T, d, 2)
    head = tmp_path / "head.npz"
    np.savez(head, weight=np.ones((2, d * N)), bias=np.zeros(2))
    targets = tmp_path / "y.npy"
    np.save(targets, np.zeros(1, dtype=np.int64))
    code, out, err = _cli(capsys, "flow", "mamba-zoh", "--hidden", str(d * N), "--input", str(d), "--inputs",
                          str(path), "--loss", "last", "--targets", str(targets), "--head", str(head))
    errors = [line for line in err.splitlines() if line.startswith("gradflow: error: ")]
    assert code == 2 and not out and len(errors) == 1 and "overflowed" in errors[0] and "reads the states" in errors[0]
    assert "Warning" not in err and all(line.startswith("gradflow: ") for line in err.splitlines())


def _exponents(out: str):
    """The heading and the numbers printed after it (wrapped lines included)."""
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("Lyapunov exponents"))
    nums = re.findall(r"-?(?:\d+\.\d+|inf)", " ".join(lines[i + 1:]))
    return lines[i], [float(v) for v in nums], lines[i + 1:]


@pytest.mark.parametrize("extra, count, words", [
    (["--lyapunov", "full"], 2 * 7, "all 14"),       # the LSTM's state (h, c): N = 2n
    ([], 8, "the 8 largest of 14"),
    (["--lyapunov", "3"], 3, "the 3 largest of 14"),
])
def test_lyapunov_prints_what_was_asked(capsys, extra, count, words):
    argv = ["flow", "lstm", "--hidden", "7", "--steps", "4", "--seed", "3", *extra]
    code, out, _ = _cli(capsys, *argv)
    assert code == 0
    head, printed, body = _exponents(out)
    assert words in head and len(printed) == count
    assert all(len(line) <= 100 for line in body)
    code, js, _ = _cli(capsys, *argv, "--json")
    want = json.loads(js)["lyapunov"]
    assert len(want) == count and np.allclose(printed, want, atol=6e-5)
    assert printed == sorted(printed, reverse=True)


def test_diagonal_cell_whose_jacobian_is_nan_at_huge_inputs_is_one_error(tmp_path, capsys):
    """minLSTM's f'_t = f_t / (f_t + i_t) is 0/0 where both gates round to 0: one error, no warning
    (it printed NumPy's divide/invalid warnings and 'log10_norm_2 at k = 0 is NaN')."""
    path, _ = _huge_inputs(tmp_path, 4, 4, 0)
    code, out, err = _cli(capsys, "flow", "minlstm", "--hidden", "8", "--inputs", str(path), "--no-lyapunov")
    assert code == 2 and not out and err.startswith("gradflow: error: minlstm: the diagonal of J_")
    assert err.count("\n") == 1 and "Warning" not in err
