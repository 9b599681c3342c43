"""Plots: what each figure draws is the data it was given (Agg backend, no display)."""

import matplotlib

matplotlib.use("Agg")

import subprocess  # noqa: E402
import sys  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import gradflow as gf  # noqa: E402
from gradflow._views.plots import OKABE_ITO  # noqa: E402

N, M, T, B = 4, 2, 12, 2


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def flows():
    x = gf.random_inputs(T, M, batch=B, seed=1)
    tanh = gf.gradient_flow(gf.network("tanh-rnn", N, M, init="orthogonal", gain=0.8), x,
                            lyapunov=False)
    lstm = gf.gradient_flow(gf.network("lstm", N, M, init="orthogonal", forget_bias=1.0), x,
                            lyapunov=False, carousel=True)
    return tanh, lstm


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_import_does_not_load_pyplot():
    code = "import gradflow, sys; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_plot_decay_draws_the_curves_and_bound(flows):
    tanh, lstm = flows
    ax = gf.plot_decay([tanh, lstm])
    lines = ax.get_lines()
    # tanh curve + its bound (Elman) + lstm curve (no bound)
    assert [ln.get_label() for ln in lines] == ["tanh-rnn", "tanh-rnn bound", "lstm"]
    assert _legend(ax) == ["tanh-rnn", "tanh-rnn bound", "lstm"]
    x = T - np.arange(T)
    for ln, f in ((lines[0], tanh), (lines[2], lstm)):
        np.testing.assert_array_equal(ln.get_xdata(), x)
        np.testing.assert_array_equal(ln.get_ydata(), f.full.log10_norm_2.mean(axis=0))
        assert ln.get_linestyle() == "-"
    assert tanh.bound is not None and lstm.bound is None
    np.testing.assert_array_equal(lines[1].get_xdata(), x)
    np.testing.assert_array_equal(lines[1].get_ydata(), tanh.bound)
    assert lines[1].get_linestyle() == "--"
    assert lines[1].get_color() == lines[0].get_color()
    assert ax.get_xlabel() == r"$T-k$"
    assert ax.get_ylabel() == r"$\log_{10}\|\partial s_T/\partial s_k\|_2$"


def test_plot_decay_options(flows):
    tanh, lstm = flows
    fig, ax = plt.subplots()
    out = gf.plot_decay(tanh, ax=ax, norm="fro", bound=False, labels=["Elman"])
    assert out is ax
    (ln,) = ax.get_lines()
    assert _legend(ax) == ["Elman"]
    np.testing.assert_array_equal(ln.get_ydata(), tanh.full.log10_norm_fro.mean(axis=0))
    assert ax.get_ylabel().endswith(r"\|_F$")
    with pytest.raises(ValueError, match="norm"):
        gf.plot_decay(tanh, norm="1")
    with pytest.raises(ValueError, match="labels"):
        gf.plot_decay([tanh, lstm], labels=["one"])


def test_plot_carousel(flows):
    tanh, lstm = flows
    ax = gf.plot_carousel(lstm)
    lines = ax.get_lines()
    assert len(lines) == 3
    want = [lstm.full, lstm.cell_state, lstm.carousel]
    for ln, curves in zip(lines, want, strict=True):
        np.testing.assert_array_equal(ln.get_xdata(), T - np.arange(T))
        np.testing.assert_array_equal(ln.get_ydata(), curves.log10_norm_2.mean(axis=0))
    texts = _legend(ax)
    assert len(texts) == 3 and "full" in texts[0] and "c" in texts[1]
    assert r"\mathrm{diag}(f_j)" in texts[2]
    assert ax.get_xlabel() == r"$T-k$"
    # ∏ diag(f_j) with gates f in (0, 1): its norm never exceeds 1
    assert np.all(lines[2].get_ydata() <= 1e-12)


def test_plot_carousel_rejects_other_flows(flows):
    tanh, lstm = flows
    with pytest.raises(ValueError, match="LSTM"):
        gf.plot_carousel(tanh)
    no_car = gf.gradient_flow(gf.network("lstm", N, M), gf.random_inputs(T, M), lyapunov=False)
    with pytest.raises(ValueError, match="carousel=True"):
        gf.plot_carousel(no_car)


def test_plot_spectrum():
    net = gf.network("lstm", N, M, init="orthogonal")
    spectra = gf.singular_values(net, gf.random_inputs(T, M, batch=B), [0, 5, T - 1])
    fig, ax = plt.subplots()
    assert gf.plot_spectrum(spectra, ax=ax) is ax
    lines = ax.get_lines()
    assert _legend(ax) == ["$k = 0$", "$k = 5$", f"$k = {T - 1}$"]
    for ln, k in zip(lines, (0, 5, T - 1), strict=True):
        np.testing.assert_array_equal(ln.get_xdata(), np.arange(1, 2 * N + 1))
        np.testing.assert_array_equal(ln.get_ydata(), spectra[k])
    assert ax.get_xlabel() == "index $i$" and r"\sigma_i" in ax.get_ylabel()
    with pytest.raises(ValueError):
        gf.plot_spectrum({})


def test_plot_jacobian():
    net = gf.network("lstm", N, M)
    x = gf.random_inputs(T, M)
    J = net.step_jacobian(net.unroll(x), 3)[0]
    ax = gf.plot_jacobian(J, title="step 3", state_names=("h", "c"))
    (im,) = ax.get_images()
    np.testing.assert_array_equal(im.get_array(), J)
    assert im.colorbar is not None and len(ax.figure.axes) == 2
    lo, hi = im.get_clim()
    assert lo == -hi == -np.abs(J).max()  # centred at 0
    assert im.get_cmap().name == "RdBu_r"
    # one horizontal and one vertical separator between the h and c blocks
    seps = ax.get_lines()
    assert len(seps) == 2
    assert {tuple(ln.get_ydata()) for ln in seps} >= {(N - 0.5, N - 0.5)}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["$h$", "$c$"]
    assert ax.get_title() == "step 3"
    with pytest.raises(ValueError, match="2-D"):
        gf.plot_jacobian(np.zeros((1, 3, 3)))
    with pytest.raises(ValueError, match="state blocks"):
        gf.plot_jacobian(np.eye(3), state_names=("h", "c"))


def _grid():
    rates = np.array([[-0.4, -0.2, 0.1], [-0.1, 0.05, 0.2]])
    return gf.PhaseGrid(scales=(0.5, 1.0, 2.0), forget_biases=(0.0, 2.0), rates=rates, cell="lstm",
                        hidden=8, steps=20)


def test_plot_phase_diagram():
    grid = _grid()
    fig, ax = plt.subplots()
    assert gf.plot_phase_diagram(grid, ax=ax, annotate=True) is ax
    (im,) = ax.get_images()
    np.testing.assert_array_equal(im.get_array(), grid.rates)
    assert im.colorbar is not None
    assert "scale" in ax.get_xlabel() and "b_f" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "1", "2"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "2"]
    contours = [c for c in ax.collections if hasattr(c, "levels")]
    assert len(contours) == 1 and list(contours[0].levels) == [0.0]
    assert len(ax.texts) == grid.rates.size


def test_plot_phase_diagram_of_computed_grid():
    grid = gf.phase_grid("tanh-rnn", hidden=N, input=M, steps=T, scales=(0.5, 1.0), batch=1)
    ax = gf.plot_phase_diagram(grid)
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), grid.rates)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["default"]


def test_paper_style_and_save_figure(tmp_path, flows):
    before = dict(matplotlib.rcParams)
    with gf.paper_style():
        assert matplotlib.rcParams["pdf.fonttype"] == 42
        assert matplotlib.rcParams["svg.fonttype"] == "none"
        assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] == list(OKABE_ITO)
        ax = gf.plot_decay(list(flows))
        assert ax.get_lines()[0].get_color().lower() == OKABE_ITO[0].lower()
        paths = gf.save_figure(ax.figure, tmp_path / "figs" / "decay", formats=("pdf", "png", "svg"))
    assert matplotlib.rcParams["pdf.fonttype"] == before["pdf.fonttype"]
    assert paths == [tmp_path / "figs" / f"decay.{ext}" for ext in ("pdf", "png", "svg")]
    pdf, png, svg = (p.read_bytes() for p in paths)
    assert pdf.startswith(b"%PDF")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert svg.lstrip().startswith(b"<?xml") and b"<svg" in svg
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType fonts embedded
    assert b"<text" in svg  # text kept as text


def test_save_figure_rejects_unknown_format(tmp_path):
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="unknown figure format"):
        gf.save_figure(fig, tmp_path / "x", formats=("pdf", "jpeg2000"))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("zero_from", [5, 38])
def test_exact_zero_note_stays_inside_the_frame(zero_from):
    """The 'exact 0 from lag …' note sat below its marker and ran onto the tick labels when the
    marker was at the bottom of the frame; it now sits beside the marker, inside the axes, whether
    the curve stops early or late."""
    from gradflow._views.plots import mark_exact_zero

    fig, ax = plt.subplots(figsize=(4, 3))
    x = np.arange(1, 41, dtype=float)
    y = np.where(x < zero_from, -0.5 * x, -np.inf)
    ax.plot(x, y)
    ax.set_xlim(0, 41)  # the whole lag axis, as the other curves of a figure span it
    assert mark_exact_zero(ax, x, y, "C0") == zero_from
    ax.set_ylim(-0.5 * (zero_from - 1) - 0.1, 0)  # the marker at the bottom edge
    fig.canvas.draw()
    note = next(t for t in ax.texts if t.get_text() == f"exact 0 from lag {zero_from}")
    box, frame = note.get_window_extent(), ax.get_window_extent()
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1, (box, frame)
    assert box.y0 >= frame.y0 - box.height / 2 - 1, (box, frame)  # at the marker's height, not below it
    plt.close(fig)
