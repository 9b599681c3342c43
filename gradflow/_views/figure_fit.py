"""Panel titles that fit: a title wider than its panel, or running off the figure, is broken in two."""

from __future__ import annotations

from typing import Any


def _halves(text: str) -> str | None:
    """``text`` broken at the space nearest its middle (None: no space to break at)."""
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    if not spaces:
        return None
    i = min(spaces, key=lambda s: abs(s - len(text) / 2))
    return text[:i] + "\n" + text[i + 1:]


def title_overflows(fig: Any) -> list[str]:
    """The axes titles that run past the figure's edge or more than 10 % past their panel's width."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    titled = [ax for ax in fig.axes if ax.title.get_text()]
    if not titled:
        return []
    canvas = fig.canvas if hasattr(fig.canvas, "get_renderer") else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    # a title well inside its panel before layout needs no layout to tell (layout is the costly part)
    if all(ax.title.get_window_extent(renderer).width < 0.6 * ax.get_window_extent(renderer).width
           for ax in titled):
        return []
    canvas.draw()
    width = fig.bbox.width
    out = []
    for ax in titled:
        title = ax.title
        bb = title.get_window_extent(renderer)
        panel = ax.get_window_extent(renderer)
        if bb.x0 < -0.5 or bb.x1 > width + 0.5 or bb.width > 1.1 * panel.width:
            out.append(title.get_text())
    return out


def fit_titles(fig: Any) -> None:
    """Break every axes title that :func:`title_overflows` finds into two lines (at most twice)."""
    for _ in range(2):
        long = set(title_overflows(fig))
        if not long:
            return
        for ax in fig.axes:
            text = ax.title.get_text()
            if text in long:
                lines = text.split("\n")
                j = max(range(len(lines)), key=lambda k: len(lines[k]))
                half = _halves(lines[j])
                if half is not None:
                    lines[j] = half
                    ax.title.set_text("\n".join(lines))
