"""The report's "Which path carries the gradient" section: the path read off each derived Jacobian.

Oracles: the papers' gates computed HERE in NumPy from the weights and the run's states (minGRU
1 − σ(U_z x + b_z), Mamba exp(−softplus(U_Δ x + b_Δ)·exp(A_log)), LSTM/GRU σ(W h + U x + b),
LRU |λ| = exp(−exp ν)); the path's product max_j Σ_t log10|v_{t,j}| from them must equal the
number printed beside the sentence, and, where the path is the whole Jacobian, the measured norm.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

import gradflow as gf
from gradflow._views.bibtex import bibliography_text, parse_bibtex
from gradflow._views.document import Doc
from gradflow._views.evidence import measure
from gradflow._views.paths import gradient_path, gradient_path_section

KINDS = ["lstm", "gru", "lru", "mamba-zoh", "mingru", "slstm-normalised", "rg-lru", "tanh-rnn"]
CELLS = ["lstm", "gru", "lru", "mamba-zoh", "mingru", "rg-lru"]
N, M, T, SEED = 3, 2, 12, 0


def _sig(a):
    return 1 / (1 + np.exp(-a))


def _runs(cells, n, m, steps, seed):
    """What the section reads of a run (the network and its flow), as the report's measure() makes them."""
    x = gf.random_inputs(steps, m, seed=seed)
    out = {}
    for c in cells:
        net = gf.network(c, n, m, seed=seed)
        out[c.name] = SimpleNamespace(net=net, flow=gf.gradient_flow(net, x, carousel="c" in c.states,
                                                                     lyapunov=False))
    return out


@pytest.fixture(scope="module")
def section():
    cells = [gf.get_cell(c) for c in CELLS]
    runs = _runs(cells, N, M, T, SEED)
    doc = Doc(parse_bibtex(bibliography_text()))
    rows = gradient_path_section(doc, cells, runs, M, T, SEED)
    return {r["cell"]: r for r in rows}, runs, doc.markdown()


def test_paths_are_read_off_the_jacobians():
    kinds = {c: (gradient_path(gf.get_cell(c)).kind, gradient_path(gf.get_cell(c)).reads) for c in KINDS}
    assert kinds == {"lstm": ("carousel", "state"), "gru": ("direct", "state"),
                     "lru": ("rotation", "constant"), "mamba-zoh": ("diagonal", "input"),
                     "mingru": ("diagonal", "input"), "slstm-normalised": ("carousel", "state"),
                     "rg-lru": ("diagonal", "input"), "tanh-rnn": ("none", "constant")}
    assert gradient_path(gf.get_cell("gru")).vector.name == "z_{t}"   # PyTorch's GRU: z keeps h_{t−1}
    assert gradient_path(gf.get_cell("lstm")).vector.name == "f_{t}"


def _oracle_factor(name, w, x, hs):
    """(T, n) one-step factors of the path from the papers' equations."""
    a = {k: np.asarray(v) for k, v in w.arrays.items()}
    if name == "mingru":
        return 1 - _sig(x @ a["U_{z}"].T + a["b_{z}"])
    if name == "mamba-zoh":
        delta = np.logaddexp(0.0, x @ a[r"U_{\Delta}"].T + a[r"b_{\Delta}"])
        return np.exp(-delta * np.exp(a[r"A_{\log}"]))
    if name == "lstm":
        return _sig(hs @ a["W_{f}"].T + x @ a["U_{f}"].T + a["b_{f}"])
    if name == "gru":
        return _sig(hs @ a["W_{z}"].T + x @ a["U_{z}"].T + a["b_{z}"])
    if name == "lru":
        return np.broadcast_to(np.exp(-np.exp(a[r"\nu"])), (len(x), w.hidden))
    raise KeyError(name)


@pytest.mark.parametrize("name", ["mingru", "mamba-zoh", "lstm", "gru", "lru"])
def test_printed_numbers_equal_the_papers_gates(section, name):
    rows, runs, md = section
    net = runs[name].net
    x = gf.random_inputs(T, M, seed=SEED)
    traj = net.unroll(x)
    hs = np.stack([np.asarray(traj.states[t])[0, :N] for t in range(T)])   # h_{t−1}, t = 1..T
    v = _oracle_factor(name, net.weights, x[:, 0], hs)
    want = float(np.max(np.sum(np.log10(np.abs(v)), axis=0)))
    assert abs(rows[name]["path"] - want) < 1e-12
    para = next(p for p in md.split("\n\n") if p.startswith(f"`{name}`: "))
    assert f"Path alone: ${want:.4f}$" in para
    if name in ("mingru", "mamba-zoh", "lru"):   # the path is the whole Jacobian
        assert abs(rows[name]["measured"] - want) < 1e-9 and rows[name]["same"]
    if name == "lstm":                           # the carousel: the sweep's curve is the same product
        assert abs(rows[name]["carousel"] - want) < 1e-9


def test_the_stand_in_runs_are_the_reports_runs():
    """measure() (the report's) builds the same network and flow as the stand-in above."""
    cells = [gf.get_cell("mingru")]
    real, mine = measure(cells, 2, 2, 5, 0)["mingru"], _runs(cells, 2, 2, 5, 0)["mingru"]
    assert np.array_equal(np.asarray(real.flow.full["log10_norm_2"]), np.asarray(mine.flow.full["log10_norm_2"]))


def test_sentences(section):
    rows, _, md = section
    assert "contradicts" not in md
    assert md.count("the same number: the path is the whole Jacobian") == 4   # lru, mamba, mingru, rg-lru
    assert r"\bar{a}_{t} = \exp\left(- \Delta_{t} \odot \exp\left(A_{\log}\right)\right)" in md
    assert not math.isnan(rows["gru"]["path"]) and rows["gru"]["path"] != rows["gru"]["measured"]


def test_a_disagreement_is_reported_not_hidden(monkeypatch):
    import gradflow._views.paths as P

    cells = [gf.get_cell("mingru"), gf.get_cell("tanh-rnn")]
    runs = _runs(cells, 2, 2, 5, 0)
    monkeypatch.setattr(P, "path_log10", lambda *a, **k: -123.0)
    doc = Doc(parse_bibtex(bibliography_text()))
    P.gradient_path_section(doc, cells, runs, 2, 5, 0)
    md = doc.markdown()
    assert "contradicts the algebra" in md
    assert "`tanh-rnn`: every term of" in md


@pytest.mark.parametrize("name, reads", [("mamba-zoh", True), ("rg-lru", True), ("mingru", True),
                                         ("lru", True), ("lstm", False), ("gru", False)])
def test_what_the_path_reads_is_true_numerically(name, reads):
    """"Reads x_t only" (or nothing): J_t is the same from two different s_{t−1}; "reads s_{t−1}": it is not."""
    assert (gradient_path(gf.get_cell(name)).reads != "state") == reads
    net = gf.network(name, 3, 2, seed=1)
    x = gf.random_inputs(1, 2, seed=2)
    rng = np.random.default_rng(3)
    J = []
    for _ in range(2):
        s0 = rng.standard_normal(net.state_size)
        init = {st: s0[i * 3:(i + 1) * 3] for i, st in enumerate(net.cell.states)}
        J.append(np.asarray(net.step_jacobian(net.unroll(x, initial=init), 1))[0])
    assert np.array_equal(J[0], J[1]) == reads
