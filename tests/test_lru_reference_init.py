"""The LRU's reference initialisation (the ring of Orvieto et al. 2023) is what the CLI and the
report use for ``lru``; PyTorch's U(±1/√n) gave |λ| ≈ 0.5 and a decay of −0.31 per step, which
no LRU has. Oracle: the ring's formulas and ‖Λ^{T−k}‖₂ = max_j |λ_j|^{T−k} written out here."""

from __future__ import annotations

import json

import numpy as np

import gradflow as gf
from gradflow._cli import main


def moduli(w):
    return np.exp(-np.exp(np.asarray(w.arrays[r"\nu"])))


def test_ring_draws_the_paper_s_distribution():
    n, m = 400, 3
    w = gf.init_weights("lru", n, m, scheme="lru-ring", seed=1)
    r2 = np.sort(moduli(w) ** 2)
    assert r2.min() >= 0 and r2.max() <= 1
    assert np.max(np.abs(r2 - (np.arange(n) + 0.5) / n)) < 0.08      # |λ|² ~ U[0, 1]
    theta = np.exp(np.asarray(w.arrays[r"\theta"]))
    assert theta.min() > 0 and theta.max() < 6.28
    np.testing.assert_allclose(np.exp(np.asarray(w.arrays[r"\gamma_{\log}"])), np.sqrt(1 - moduli(w) ** 2), rtol=1e-12)
    B = np.concatenate([np.ravel(w.arrays["B_{re}"]), np.ravel(w.arrays["B_{im}"])])
    assert abs(B.std() - 1 / np.sqrt(2 * m)) < 0.05 / np.sqrt(2 * m)
    # any sizes (the LRU's B mixes every input into every unit)
    assert gf.init_weights("lru", 5, 3, scheme="lru-ring").hidden == 5
    # the same draws as lru_ring_init's defaults
    again = gf.lru_ring_init(gf.init_weights("lru", n, m), seed=1)
    for k in w.arrays:
        np.testing.assert_array_equal(np.asarray(again.arrays[k]), np.asarray(w.arrays[k]))


def test_the_cli_runs_the_lru_with_its_ring(capsys):
    n, T = 8, 40
    assert main(["flow", "lru", "--hidden", str(n), "--steps", str(T)]) == 0
    assert "init: lru-ring" in capsys.readouterr().out
    assert main(["flow", "lru", "--hidden", str(n), "--steps", str(T), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    rho = moduli(gf.init_weights("lru", n, n, scheme="lru-ring", seed=0)).max()
    want = (T - np.arange(T)) * np.log10(rho)                             # log10 max_j |λ_j|^{T−k}
    got = np.array([p["log10_norm_2"] for p in rec["curve"]])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    assert want[0] / T > -0.1                                              # not PyTorch's −0.31 per step


def test_the_exact_mode_line_names_the_path_it_took(capsys):
    def line(cell):
        assert main(["flow", cell, "--hidden", "4", "--steps", "5"]) == 0
        return next(x for x in capsys.readouterr().out.splitlines() if x.startswith("mode:"))
    assert "per-unit blocks" in line("lru") and "N x N" not in line("lru").split("no ")[0]
    assert "diagonal Jacobian" in line("mingru")
    assert line("lstm") == "mode: exact (N x N products, float64)"


def test_structured_cells_are_not_refused_for_an_n_by_n_buffer_they_never_allocate(monkeypatch, capsys):
    """LRU (per-unit blocks) and minGRU (diagonal) run exact without any N × N matrix; the size
    guard counted 8 N × N buffers (LRU n = 20000: "needs about 44.94 GiB") and refused them."""
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", "300M")
    n, m, T = 3000, 4, 6                      # N = 6000: 8 N × N float64 buffers would be 2.3 GB
    assert main(["flow", "lru", "--hidden", str(n), "--input", str(m), "--steps", str(T), "--json",
                 "--no-lyapunov"]) == 0
    rec = json.loads(capsys.readouterr().out)
    rho = moduli(gf.init_weights("lru", n, m, scheme="lru-ring", seed=0)).max()
    got = np.array([p["log10_norm_2"] for p in rec["curve"]])
    np.testing.assert_allclose(got, (T - np.arange(T)) * np.log10(rho), rtol=0, atol=1e-9)
    assert rec["mode"] == "exact"
    assert main(["flow", "mingru", "--hidden", str(n), "--input", str(m), "--steps", str(T), "--json",
                 "--no-lyapunov"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "exact"
    # a dense cell of the same size is still refused, with the estimate
    assert main(["flow", "tanh-rnn", "--hidden", str(2 * n), "--input", str(m), "--steps", str(T),
                 "--mode", "exact"]) == 2
    assert "needs about" in capsys.readouterr().err


def test_the_report_names_the_ring_not_channels():
    """The report said "lru-ring, the reference code's init with d = 16 channels and N = 1 state
    entries each": words of the channel-wise state-space inits, false for the LRU."""
    from gradflow._views.evidence import _init_words

    text = _init_words("lru-ring", 16, 16)
    assert "ring" in text and "orvieto2023lru" in text and "channels" not in text
    assert "channels" in _init_words("s4d-lin", 16, 4)
