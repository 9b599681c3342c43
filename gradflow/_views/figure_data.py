"""The data of every report figure, as CSV and as a pgfplots snippet a LaTeX document can \\input.

``<stem>.csv`` holds one row per point (``panel,series,x,y`` for curves, ``panel,row,col,value``
for matrices); a value that is not finite is written ``-inf``/``inf``/``nan``. ``<stem>.tex`` is
one ``tikzpicture`` per panel for pgfplots (``\\usepackage{pgfplots}``, compat 1.16 or later);
non-finite points are left out of a curve as a gap (``unbounded coords=jump``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .bibtex import tex_text

_HEADER = ("% gradflow figure data: {stem}. Needs \\usepackage{{pgfplots}} and "
           "\\pgfplotsset{{compat=1.16}}; \\input this file where the figure goes.\n")


def _num(v: float) -> str:
    return repr(float(v)) if math.isfinite(v) else ("-inf" if v == -math.inf else "inf" if v > 0 else "nan")


def _coord(v: float) -> str:
    return f"{float(v):.10g}" if math.isfinite(v) else "nan"


def export_curves(stem: Path, series: Sequence[tuple[str, str, Any, Any]], xlabel: str, ylabel: str
                  ) -> list[Path]:
    """Write ``stem.csv`` and ``stem.tex`` for curves given as (panel, label, x, y); return the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(stem.with_suffix(".csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["panel", "series", "x", "y"])
        for panel, label, x, y in series:
            for xi, yi in zip(np.asarray(x, dtype=float), np.asarray(y, dtype=float), strict=True):
                w.writerow([panel, label, _num(xi), _num(yi)])
    panels: dict[str, list[tuple[str, Any, Any]]] = {}
    for panel, label, x, y in series:
        panels.setdefault(panel, []).append((label, x, y))
    out = [_HEADER.format(stem=stem.name)]
    for panel, curves in panels.items():
        title = f", title={{{tex_text(panel)}}}" if panel else ""
        out.append("\\begin{tikzpicture}\n\\begin{axis}[width=0.9\\linewidth, height=0.55\\linewidth, "
                   f"xlabel={{{xlabel}}}, ylabel={{{ylabel}}}{title}, unbounded coords=jump, "
                   "legend pos=outer north east, legend style={font=\\footnotesize}, no markers]")
        for label, x, y in curves:
            pts = " ".join(f"({_coord(a)},{_coord(b)})" for a, b in
                           zip(np.asarray(x, dtype=float), np.asarray(y, dtype=float), strict=True))
            out.append(f"\\addplot coordinates {{{pts}}};\n\\addlegendentry{{{tex_text(label)}}}")
        out.append("\\end{axis}\n\\end{tikzpicture}\n")
    stem.with_suffix(".tex").write_text("\n".join(out), encoding="utf-8")
    return [stem.with_suffix(".csv"), stem.with_suffix(".tex")]


def export_matrices(stem: Path, panels: Sequence[tuple[str, Any]]) -> list[Path]:
    """Write ``stem.csv`` and ``stem.tex`` for heat maps given as (panel, 2-D array); return the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(stem.with_suffix(".csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["panel", "row", "col", "value"])
        for panel, M in panels:
            M = np.asarray(M, dtype=float)
            for i in range(M.shape[0]):
                for j in range(M.shape[1]):
                    w.writerow([panel, i, j, _num(M[i, j])])
    out = [_HEADER.format(stem=stem.name)]
    for panel, M in panels:
        M = np.asarray(M, dtype=float)
        fin = np.abs(M[np.isfinite(M)])
        v = float(fin.max()) if fin.size and fin.max() > 0 else 1.0
        pts = "\n".join(" ".join(f"({j},{i}) [{_coord(M[i, j])}]" for j in range(M.shape[1]))
                        for i in range(M.shape[0]))
        out.append("\\begin{tikzpicture}\n\\begin{axis}[width=0.6\\linewidth, height=0.6\\linewidth, "
                   f"title={{{tex_text(panel)}}}, y dir=reverse, enlargelimits=false, colorbar, "
                   f"point meta min={-v:.10g}, point meta max={v:.10g}, "
                   "xlabel={column}, ylabel={row}]\n"
                   f"\\addplot[matrix plot*, mesh/cols={M.shape[1]}, point meta=explicit] coordinates {{\n"
                   f"{pts}\n}};\n\\end{{axis}}\n\\end{{tikzpicture}}\n")
    stem.with_suffix(".tex").write_text("\n".join(out), encoding="utf-8")
    return [stem.with_suffix(".csv"), stem.with_suffix(".tex")]
