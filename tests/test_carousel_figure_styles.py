"""The LSTM's path figure (block, carousel, paths through h): every curve can be told apart.

At long lags the paths through h are the block to a fraction of a percent (the carousel is orders of
magnitude smaller), so the two lie on one another. The figure keeps the same data and makes them
distinguishable: different line styles, markers and widths, the narrow one drawn on top, and a note
naming the lags where two curves agree to 1 % (computed here by hand on made-up curves).
"""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gradflow._views.plots import on_curve_lags, plot_cell_state_paths  # noqa: E402

T = 40


def _paths(close_from: int | None):
    """Curves over k = 0…T−1 (lag T − k): block −0.2·lag, carousel −0.3·lag, the paths through h
    0.001 decade above the block (0.23 %) from lag ``close_from`` on, 0.5 decade below before, −∞ at lag 1."""
    lag = T - np.arange(T)
    block = -0.2 * lag
    carousel = -0.3 * lag
    through = block - 0.5
    if close_from is not None:
        through = np.where(lag >= close_from, block + 0.001, through)
    through = np.where(lag == 1, -np.inf, through)
    return SimpleNamespace(block=block[None], carousel=carousel[None], through_h=through[None])


def _notes(ax) -> list[str]:
    """The notes written into the panel (a title-only legend placed where it covers least data)."""
    from matplotlib.legend import Legend

    notes = [a.get_title().get_text() for a in ax.artists if isinstance(a, Legend)]
    return notes + [t.get_text() for t in ax.texts]


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_the_three_curves_differ_in_style_and_the_narrow_one_is_on_top():
    fig, ax = plt.subplots(figsize=(6.9, 2.4))
    paths = _paths(12)
    plot_cell_state_paths(paths, ax=ax)
    lines = _lines(ax)
    assert len(lines) == 3
    block, car, thr = (next(v for k, v in lines.items() if key in k) for key in ("block $", "carousel", "through"))
    # the same data as given
    for line, y in ((block, paths.block[0]), (car, paths.carousel[0]), (thr, paths.through_h[0])):
        assert np.array_equal(np.asarray(line.get_xdata()), T - np.arange(T))
        assert np.array_equal(np.asarray(line.get_ydata()), y)
    looks = {(ln.get_linestyle(), ln.get_marker(), matplotlib.colors.to_hex(ln.get_color()))
             for ln in (block, car, thr)}
    assert len(looks) == 3 and len({ln.get_linestyle() for ln in (block, car, thr)}) == 3
    assert thr.get_marker() not in (None, "None", "", " ")          # markers on the dotted curve
    assert block.get_linewidth() >= 2 * thr.get_linewidth()        # the block shows around it
    assert thr.get_zorder() > car.get_zorder() > block.get_zorder()  # narrow on top of wide
    plt.close(fig)


def test_a_note_names_the_lags_where_the_paths_through_h_lie_on_the_block():
    fig, ax = plt.subplots()
    plot_cell_state_paths(_paths(12), ax=ax)
    notes = [t for t in _notes(ax) if "block" in t]
    assert notes == ["paths through $h$ = block\nto 1 % at lags 12 to 40"]
    assert ax.get_legend() is None   # the note is not the legend that figure_legend gathers
    plt.close(fig)
    fig, ax = plt.subplots()
    plot_cell_state_paths(_paths(None), ax=ax)   # 0.5 decade apart everywhere: nothing to say
    assert not [t for t in _notes(ax) if "block" in t]
    plt.close(fig)


def test_on_curve_lags_threshold_and_longest_run():
    lag = np.arange(1, 21)
    ref = np.zeros(20)
    y = np.where((lag >= 3) & (lag <= 9), np.log10(1.0099), 1.0)   # 0.99 % apart on lags 3–9
    y[lag >= 15] = np.log10(1.0101)                                   # 1.01 % apart: not on the curve
    assert on_curve_lags(lag, y, ref) == (3, 9)
    y[lag >= 12] = 0.0                                                # now 12–20 is the longest run
    assert on_curve_lags(lag, y, ref) == (12, 20)
    assert on_curve_lags(lag, np.ones(20), ref) is None
    y = np.zeros(20)
    y[[4, 9, 14]] = 1.0   # runs of 4 and 5 out of 20: long enough (≥ 3 and a tenth)
    assert on_curve_lags(lag[::-1], y[::-1], ref) == (16, 20)
