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

    canvas = fig.canvas if hasattr(fig.canvas, "get_renderer") else FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    width = fig.bbox.width
    out = []
    for ax in fig.axes:
        title = ax.title
        if not title.get_text():
            continue
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
