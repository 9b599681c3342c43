"""``gradflow flow``: the public CLI contract, its numbers against PyTorch, and bad input.

Oracle: a ``torch.nn.RNNCell`` / ``nn.LSTMCell`` saved with ``torch.save``; the products
∂s_T/∂s_k of the unrolled torch cell by ``torch.autograd.functional.jacobian`` (from s_k, the
inputs fixed), their norms by ``torch.linalg.matrix_norm``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch  # the oracle: a required test dependency

from gradflow._cli import main

T, M, N = 6, 3, 4


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _torch_products(cell, x, two: bool):
    """log10 ‖∂s_T/∂s_k‖₂ and ‖·‖_F for k = 0…T−1 (s = h, or concat(h, c))."""
    X = torch.from_numpy(x)

    def step(s, xt):
        if two:
            h, c = cell(xt[None], (s[None, :N], s[None, N:]))
            return torch.cat([h[0], c[0]])
        return cell(xt[None], s[None])[0]

    with torch.no_grad():
        states = [torch.zeros(2 * N if two else N, dtype=torch.float64)]
        for t in range(T):
            states.append(step(states[-1], X[t]))
    n2, nf = [], []
    for k in range(T):
        def unrolled(s, k=k):
            for t in range(k, T):
                s = step(s, X[t])
            return s
        P = torch.autograd.functional.jacobian(unrolled, states[k])
        n2.append(math.log10(float(torch.linalg.matrix_norm(P, 2))))
        nf.append(math.log10(float(torch.linalg.matrix_norm(P, "fro"))))
    return np.array(n2), np.array(nf)


@pytest.mark.parametrize("name, module, two", [("tanh-rnn", "RNNCell", False), ("lstm", "LSTMCell", True)])
def test_json_curve_equals_torch_products(tmp_path, capsys, name, module, two):
    torch.manual_seed(3)
    cell = getattr(torch.nn, module)(M, N).double()
    cell.requires_grad_(False)
    torch.save(cell.state_dict(), tmp_path / "w.pt")
    x = np.random.default_rng(5).standard_normal((T, M))
    np.save(tmp_path / "x.npy", x)
    code, out, err = _run(capsys, "flow", name, "--weights", str(tmp_path / "w.pt"),
                          "--inputs", str(tmp_path / "x.npy"), "--json", "--spectral", "svd")
    # the one note a tanh RNN's state_dict gets: it does not record its nonlinearity
    assert code == 0 and all("does not record nn.RNN's nonlinearity" in line for line in err.splitlines())
    rec = json.loads(out)
    assert (rec["cell"], rec["hidden"], rec["steps"], rec["batch"]) == (name, N, T, 1)
    assert [r["k"] for r in rec["curve"]] == list(range(T))
    n2, nf = _torch_products(cell, x, two)
    np.testing.assert_allclose([r["log10_norm_2"] for r in rec["curve"]], n2, rtol=0, atol=1e-10)
    np.testing.assert_allclose([r["log10_norm_fro"] for r in rec["curve"]], nf, rtol=0, atol=1e-10)
    assert len(rec["lyapunov"]) == (2 * N if two else N)
    if two:
        assert set(rec["curve"][0]["cell_state"]) == {"log10_norm_2", "log10_norm_fro", "log10_grad_norm"}
        assert "log10_bound" not in rec["curve"][0]
    else:
        assert "cell_state" not in rec["curve"][0]
        # the bound never lies below the measured curve
        assert all(r["log10_norm_2"] <= r["log10_bound"] + 1e-12 for r in rec["curve"])


def test_text_table_has_one_row_per_k(capsys):
    code, out, _ = _run(capsys, "flow", "lstm", "--hidden", "3", "--input", "2", "--steps", "5",
                        "--carousel")
    assert code == 0
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [int(r.split()[0]) for r in rows] == list(range(5))
    assert [int(r.split()[1]) for r in rows] == [5, 4, 3, 2, 1]  # T − k
    assert "Lyapunov exponents" in out and "carousel_2" in out


def test_progress_bar_goes_to_stderr_and_json_stays_clean(capsys):
    code, out, err = _run(capsys, "flow", "gru", "--hidden", "3", "--input", "2", "--steps", "4",
                          "--json", "--progress")
    assert code == 0
    assert json.loads(out)["steps"] == 4
    assert "4/4" in err and "[" in err


def test_batch_records_are_means_of_per_sequence_values(tmp_path, capsys):
    x = np.random.default_rng(0).standard_normal((T, 2, M))
    np.save(tmp_path / "x2.npy", x)
    singles = []
    for b in range(2):
        np.save(tmp_path / f"x{b}.npy", x[:, b])
        _, out, _ = _run(capsys, "flow", "tanh-rnn", "--hidden", str(N), "--inputs", str(tmp_path / f"x{b}.npy"),
                         "--json", "--no-lyapunov")
        singles.append([r["log10_norm_2"] for r in json.loads(out)["curve"]])
    _, out, _ = _run(capsys, "flow", "tanh-rnn", "--hidden", str(N), "--inputs", str(tmp_path / "x2.npy"),
                     "--json", "--no-lyapunov")
    both = json.loads(out)
    assert both["batch"] == 2 and both["lyapunov"] == []
    np.testing.assert_allclose([r["log10_norm_2"] for r in both["curve"]], np.mean(singles, axis=0),
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("argv, message", [
    (["flow", "nosuchcell", "--hidden", "3", "--input", "2", "--steps", "4"], "unknown cell"),
    (["flow", "lstm", "--hidden", "3", "--input", "2", "--steps", "0"], "--steps"),
    (["flow", "lstm", "--hidden", "-2", "--input", "2", "--steps", "3"], "--hidden"),
    (["flow", "lstm", "--hidden", "3", "--input", "2"], "--steps"),
    (["flow", "lstm", "--hidden", "3", "--input", "2", "--steps", "3", "--init", "nope"], "init scheme"),
    (["flow", "gru", "--hidden", "3", "--input", "2", "--steps", "3", "--forget-bias", "1"], "forget gate"),
    (["flow", "lstm", "--weights", "/nonexistent/w.pt", "--steps", "3"], "not found"),
    (["flow", "lstm", "--input", "2", "--steps", "3"], "needs --hidden"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("gradflow: error:") and message in err


def test_nan_inputs_and_missing_keys(tmp_path, capsys):
    x = np.zeros((4, 2))
    x[1, 0] = np.nan
    np.save(tmp_path / "nan.npy", x)
    code, _, err = _run(capsys, "flow", "tanh-rnn", "--hidden", "3", "--inputs", str(tmp_path / "nan.npy"))
    assert code == 2 and "NaN" in err
    np.savez(tmp_path / "w.npz", weight_ih=np.zeros((3, 2)))
    code, _, err = _run(capsys, "flow", "tanh-rnn", "--weights", str(tmp_path / "w.npz"), "--steps", "3")
    assert code == 2 and "weight_hh" in err


# -- gradflow derive -------------------------------------------------------------------------------
def test_derive_prints_every_block(capsys):
    code, out, _ = _run(capsys, "derive", "lstm")
    assert code == 0
    for block in ("∂h_t/∂h_{t-1}", "∂c_t/∂h_{t-1}", "∂h_t/∂c_{t-1}", "∂c_t/∂c_{t-1} = diag(f_t)"):
        assert block in out
    code, out, _ = _run(capsys, "derive", "tanh-rnn")
    assert "∂h_t/∂h_{t-1} = diag(1 - h_t ⊙ h_t)·W" in out


def test_derive_latex_and_list(capsys):
    code, out, _ = _run(capsys, "derive", "lstm-1997", "--latex")
    assert code == 0 and r"\frac{\partial c_{t}}{\partial c_{t - 1}} &= I" in out
    code, out, _ = _run(capsys, "derive", "--list")
    assert code == 0 and [line.split()[0] for line in out.splitlines()][:2] == ["tanh-rnn", "relu-rnn"]
    code, out, err = _run(capsys, "derive", "lstm2")
    assert code == 2 and out == "" and err.startswith("gradflow: error: unknown cell 'lstm2'")


def test_input_size_defaults_to_the_hidden_size(capsys):
    """Without --input (initialised weights, random inputs) m = n, as in `gradflow report`: the
    same curves as with --input equal to --hidden."""
    runs = [json.loads(_run(capsys, "flow", "gru", "--hidden", "3", *extra, "--steps", "5", "--json")[1])
            for extra in ([], ["--input", "3"])]
    assert runs[0]["curve"] == runs[1]["curve"]
    code, _, err = _run(capsys, "flow", "gru", "--hidden", "3", "--input", "2", "--steps", "5", "--json")
    assert code == 0
