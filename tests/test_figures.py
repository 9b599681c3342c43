"""Figures sized for where they go: print size, fonts read back from the saved files, legends off
the data, integer index ticks, exact zeros marked, ∏ not Π, colour ranges stated, human titles,
and the data of every figure as CSV and pgfplots (compiled when pdflatex and pgfplots exist)."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.text import Text  # noqa: E402

import gradflow as gf  # noqa: E402
from gradflow._numeric.spread import flow_spread, spread_of  # noqa: E402
from gradflow._symbolic.cells import CELLS  # noqa: E402
from gradflow._views import plots as P  # noqa: E402
from gradflow._views.figure_data import export_curves, export_matrices  # noqa: E402

PRESETS = {"one-column": 3.3, "two-column": 6.9, "slide": 4.8}  # inches, from the brief's sizes


def _texts(fig):
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _decay_figure(size, spreads, bounds=None, save=None):
    with P.figure_style(size):  # the report draws and saves inside the style
        fig, (ax,) = P.preset_figure(1, size)
        P.plot_decay_band(spreads, ax=ax, bounds=bounds)
        P.figure_legend(fig, [ax])
        fig.draw_without_rendering()
        if save is not None:
            P.save_figure(fig, save, formats=("svg",))
    return fig, ax


@pytest.fixture(scope="module")
def spreads():
    return {c: flow_spread(c, 3, 2, 12, seeds=2, batch=2) for c in ("tanh-rnn", "lstm")}


# -- print size and fonts, read back from the saved SVG ------------------------------------------
@pytest.mark.parametrize("size", list(PRESETS))
def test_saved_width_and_font_sizes_at_print_size(size, spreads, tmp_path):
    fig, _ = _decay_figure(size, spreads, save=tmp_path / "d" if size == "one-column" else None)
    for t in _texts(fig):  # every text artist: 8–10 pt at the figure's own size
        assert 8.0 <= t.get_fontsize() <= 10.0, (t.get_text(), t.get_fontsize())
    assert fig.get_figwidth() == pytest.approx(PRESETS[size])
    if size != "one-column":  # the saved file is read back once (saving is the slow part)
        return
    svg = tmp_path / "d.svg"
    root = ET.parse(svg).getroot()
    width_pt = float(root.get("width").removesuffix("pt"))
    assert width_pt == pytest.approx(72 * PRESETS[size], abs=0.05)  # saved exactly at print width
    sizes = [float(v) for v in re.findall(r"font(?:-size)?:\s*([\d.]+)px", svg.read_text())]
    # text in the SVG: 8–10 pt, or 0.7× that for a math subscript (log_{10}, s_T)
    assert sizes and all(8.0 <= s <= 10.0 or 0.7 * 8 - 0.01 <= s <= 0.7 * 10 for s in sizes), sizes
    assert max(sizes) >= 8.0
    fonts = set(re.findall(r"font-family[:=]\s*['\"]?([\w ]+)", svg.read_text()))
    assert "cmr10" in " ".join(fonts) and "DejaVu Sans" not in fonts  # Computer Modern, serif
    assert matplotlib.rcParams["mathtext.fontset"] != "cm"  # the style is a context, not global


# -- legends, ticks, zeros, symbols, titles, colour ranges -------------------------------------------
def test_legend_is_off_the_data(spreads):
    fig, ax = _decay_figure("one-column", spreads)
    assert ax.get_legend() is None and len(fig.legends) == 1
    r = fig.canvas.get_renderer() if hasattr(fig.canvas, "get_renderer") else fig._get_renderer()
    leg, box = fig.legends[0].get_window_extent(r), ax.get_window_extent(r)
    assert leg.y1 <= box.y0  # below the axes, not over the curves


def test_exact_zero_is_marked_not_silent():
    curves = np.array([[-np.inf, -np.inf, -2.0, -1.0, 0.0]] * 3)  # k = 0, 1 exactly zero: lags 4, 5
    fig, ax = _decay_figure("two-column", {"irnn": spread_of(curves)})
    notes = [t.get_text() for t in ax.texts]
    assert "exact 0 from lag 4" in notes
    marks = [ln for ln in ax.lines if ln.get_marker() == "v"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [3] and list(marks[0].get_ydata()) == [-2.0]


def test_spectrum_index_ticks_are_integers_and_missing_curves_are_named():
    with P.figure_style("one-column"):
        ax = P.plot_spectrum({0: np.full(4, -np.inf), 3: np.array([0.0, 0.0, 0.0, -np.inf])},
                             ax=P.preset_figure(1, "one-column")[1][0])
        ax.figure.draw_without_rendering()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["$k = 3$"]  # no legend entry for a curve that is not drawn
    note = " ".join(t.get_text() for t in ax.texts)
    assert "$k = 0$: every" in note and "i \\geq 4" in note
    lo, hi = ax.get_ylim()
    assert hi - lo >= 1.0  # not a ±0.04 range around a flat line


def test_carousel_label_uses_prod_and_titles_are_human(spreads):
    x = gf.random_inputs(6, 2, seed=0)
    flow = gf.gradient_flow(gf.network("lstm", 2, 2), x, carousel=True, lyapunov=False)
    ax = gf.plot_carousel(flow)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(r"\prod_j" in s for s in labels) and not any(r"\Pi" in s for s in labels)
    assert "lstm" not in ax.get_title() and "LSTM with forget gate" in ax.get_title()
    for c in CELLS.values():  # a panel title never shows code: no _ or braces (cmr10 lacks them)
        t = P.panel_title(c.title)
        assert t and not set(t) & set("_{}")


def test_heat_map_colour_ranges_are_stated():
    J = np.array([[0.5, -2.0], [0.25, 1.0]])
    ax = gf.plot_jacobian(J)
    cbar_label = ax.figure.axes[-1].get_ylabel()
    assert r"\pm2" in cbar_label and "range" in cbar_label


def test_figure_size_is_checked():
    with pytest.raises(gf.GradflowError, match="figure size must be one of"):
        P.figure_size("a4")
    with pytest.raises(gf.GradflowError, match="figure size"):
        gf.write_report("tanh-rnn", "/nonexistent/never", figure_size="poster")


def test_cli_figure_size_option(tmp_path):
    from gradflow._cli import main

    with pytest.raises(SystemExit) as e:
        main(["report", "tanh-rnn", "-o", str(tmp_path / "x"), "--figure-size", "poster"])
    assert e.value.code == 2
    assert not (tmp_path / "x").exists()


# -- spread: quantiles recomputed here ---------------------------------------------------------------
def test_spread_quantiles_are_the_empirical_ones():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((10, 5))
    c[0, 0] = -np.inf
    s = spread_of(c, q_lo=0.1, q_hi=0.9)
    srt = np.sort(c, axis=0)
    # inverted CDF with 10 values: the q-quantile is the ceil(10 q)-th smallest
    np.testing.assert_array_equal(s.lo, srt[0])
    np.testing.assert_array_equal(s.median, srt[4])
    np.testing.assert_array_equal(s.hi, srt[8])


def test_flow_spread_collects_every_seed_and_sequence():
    T, n, m = 6, 3, 2
    s = flow_spread("tanh-rnn", n, m, T, seed=5, seeds=2, batch=3)
    assert s.count == 6 and s.seeds == 2 and s.batch == 3
    rows = []
    for seed in (5, 6):  # independent: products of one-step Jacobians written out with NumPy
        net = gf.network("tanh-rnn", n, m, seed=seed)
        x = gf.random_inputs(T, m, batch=3, seed=seed)
        traj = net.unroll(x)
        P_ = np.broadcast_to(np.eye(n), (3, n, n))
        curve = np.empty((3, T))
        for k in range(T - 1, -1, -1):
            P_ = P_ @ np.asarray(net.step_jacobian(traj, k + 1))
            curve[:, k] = np.log10(np.linalg.norm(P_, 2, axis=(1, 2)))
        rows.append(curve)
    np.testing.assert_allclose(s.curves, np.concatenate(rows), atol=1e-8)
    np.testing.assert_allclose(s.median, np.quantile(s.curves, 0.5, axis=0, method="inverted_cdf"))


# -- data files -----------------------------------------------------------------------------------
def _pgfplots_available() -> bool:
    exe = shutil.which("kpsewhich")
    if not shutil.which("pdflatex") or not exe:
        return False
    return bool(subprocess.run([exe, "pgfplots.sty"], capture_output=True, text=True).stdout.strip())


def test_csv_holds_what_the_figure_draws(spreads, tmp_path):
    fig, ax = _decay_figure("two-column", spreads)
    lag = 12 - np.arange(12)
    export_curves(tmp_path / "decay", [("", f"{c} median", lag, s.median) for c, s in spreads.items()],
                  "lag", "log10")
    rows = list(csv.DictReader(open(tmp_path / "decay.csv", encoding="utf-8")))
    for line in ax.lines[:1]:  # the first median drawn
        ys = [float(r["y"]) for r in rows if r["series"] == "tanh-rnn median"]
        np.testing.assert_allclose(ys, line.get_ydata())


def test_pgfplots_snippets_compile(tmp_path):
    if not _pgfplots_available():
        if os.environ.get("GRADFLOW_REQUIRE_TEX") == "1":
            pytest.fail("pdflatex with pgfplots is required (GRADFLOW_REQUIRE_TEX=1) but not found")
        pytest.skip("pdflatex with pgfplots not installed")
    lag = np.arange(1, 6)
    export_curves(tmp_path / "c", [("LSTM", "a_b median", lag, np.array([0, -1, -np.inf, -3, -4.0]))],
                  "lag $T-k$", "$\\log_{10}\\|\\cdot\\|_2$")
    export_matrices(tmp_path / "m", [("J_T", np.array([[1.0, -0.5], [0.0, 2.0]]))])
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage{pgfplots}"
                                      "\\pgfplotsset{compat=1.16}\\begin{document}"
                                      "\\input{c.tex}\\input{m.tex}\\end{document}\n")
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                       cwd=tmp_path, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stdout.decode(errors="replace")[-2000:]


def test_spread_plan_shrinks_for_large_runs():
    from gradflow._views.evidence import spread_plan

    lstm, tanh = CELLS["lstm"], CELLS["tanh-rnn"]
    assert spread_plan([tanh, lstm], 16, 100) == (4, 4)  # the report's defaults: 16 sequences
    assert spread_plan([lstm], 512, 100) == (2, 2)  # (2·512)²·100 ≈ 1.0e8
    assert spread_plan([lstm], 2048, 100) == (1, 2)  # ≈ 1.7e9
