"""mLSTM's memory block in the report's path figure (Figure 2) and its slide frame.

Oracle: the forget gate written out here, f_j = σ(w_fᵀ x_j + b_f), from the network's weights and
the report's inputs; the memory block ∂(C_T, n_T)/∂(C_k, n_k) = ∏_{j=k+1}^{T} f_j I, so its log10
spectral norm is Σ_{j>k} log10 f_j. The TeX test compiles the figure's pgfplots data and skips
without pdflatex.
"""

from __future__ import annotations

import csv
import subprocess

import numpy as np
import pytest
from conftest import need_program

import gradflow as gf
from gradflow._numeric.flow import random_inputs

HIDDEN, INPUT, STEPS, SEED = 2, 3, 6, 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    import gradflow._views.plots as plots

    real = plots.save_figure

    def coarse(fig, stem, formats=("pdf", "png"), dpi=200):  # the pixels are not looked at here
        return real(fig, stem, formats=("png",), dpi=20)

    mp = pytest.MonkeyPatch()
    mp.setattr(plots, "save_figure", coarse)
    try:
        out = gf.write_report(["mlstm"], tmp_path_factory.mktemp("rep") / "r", hidden=HIDDEN, steps=STEPS,
                              seed=SEED, input=INPUT, slides=True)
    finally:
        mp.undo()
    return out


def _curves(out, panel):
    with open(out / "figures" / "carousel.csv", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["panel"] == panel]
    got: dict[str, dict[int, float]] = {}
    for r in rows:
        got.setdefault(r["series"], {})[int(float(r["x"]))] = float(r["y"])
    return got


def test_memory_curve_is_the_sum_of_log_forget_gates(report):
    net = gf.network("mlstm", HIDDEN, INPUT, seed=SEED)
    w = np.asarray(net.weights.arrays["w_{f}"], dtype=float)[0]  # (m,)
    b = float(np.asarray(net.weights.arrays["b_{f}"], dtype=float).ravel()[0])
    x = np.asarray(random_inputs(STEPS, INPUT, seed=SEED), dtype=float)[:, 0]  # (T, m): x_1 … x_T
    f = 1.0 / (1.0 + np.exp(-(x @ w + b)))  # the forget gate, written here
    got = _curves(report, "mlstm")
    mem = got["memory block (C, n)"]
    assert sorted(mem) == list(range(1, STEPS + 1))
    for k in range(STEPS):  # lag T − k holds ∏_{j=k+1}^{T} f_j: f at rows k … T−1 of x
        want = float(np.sum(np.log10(f[k:])))
        assert abs(mem[STEPS - k] - want) < 1e-12 * max(1.0, abs(want)), k
    full = got["full"]
    assert sorted(full) == sorted(mem) and all(full[t] >= mem[t] - 1e-12 for t in full)  # a block ≤ the whole


def test_caption_and_slide_name_c_n(report):
    md = (report / "report.md").read_text(encoding="utf-8")
    cap = next(line for line in md.splitlines() if "figures/carousel.csv" in line)
    assert "For `mlstm`" in cap and "$(C, n)$" in cap
    assert r"\partial (C_T, n_T)/\partial (C_k, n_k)" in cap and r"\prod_{j=k+1}^{T} (f_{j}) I" in cap
    assert r"$c \to c$ block" not in cap  # an mLSTM-only report draws no LSTM panel: no c in its caption
    tex = (report / "slides.tex").read_text(encoding="utf-8")
    assert "the memory block $(C, n)$ against the full product" in tex and "slide-paths-mlstm" in tex


def test_figure_data_compiles(report, tmp_path):
    need_program("pdflatex")
    body = (report / "figures" / "carousel.tex").read_text(encoding="utf-8")
    doc = ("\\documentclass{article}\n\\usepackage{pgfplots}\n\\pgfplotsset{compat=1.16}\n"
           "\\begin{document}\n" + body + "\n\\end{document}\n")
    (tmp_path / "f.tex").write_text(doc, encoding="utf-8")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "f.tex"], cwd=tmp_path,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout.decode("latin-1")[-1500:]


def test_plot_memory_paths_draws_on_the_given_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        full, mem = np.array([-2.0, -1.0, -0.5]), np.array([-2.25, -1.25, -0.75])
        assert gf.plot_memory_paths(full, mem, ax=ax) is ax
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert not any(s in "".join(lines) for s in ("c_T", "c_k", r"c\to"))  # (C, n), never c
        drawn = lines[r"memory block $\partial (C_T, n_T)/\partial (C_k, n_k)$"]
        assert list(drawn.get_xdata()) == [3, 2, 1] and list(drawn.get_ydata()) == list(mem)  # lag T − k
    finally:
        plt.close(fig)
