"""Beamer slides of a report: the same derivation and figures as report.tex, one idea per frame.

Per cell: the recurrence, the one-step Jacobian (broken to the slide width; a long one over
several frames), the product over time, the bound or why there is none, the carousel of a cell
state; then the measured decay and carousel figures and a takeaway whose numbers come from the
report's own runs. Every formula is printed by the symbolic core, as in the report.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import sympy as sp
from sympy import MatrixSymbol

from .._symbolic.cell import Cell
from .._symbolic.many_steps import carousel, pascanu_bound, state_product
from .._symbolic.many_steps import j as _j
from .._symbolic.printing import latex
from .bibtex import entry_label, tex_text
from .derivation import carousel_kind
from .document import BUDGET_SLIDE, Row, display_row, row_lines
from .evidence import input_words

#: a report's Build (``.report.Build``; not imported here: report.py imports this module)
Build = Any

#: the height a frame holds, in plain display lines at \small (measured with pdflatex on a 16:9 frame
#: under its title: 12 lines with \bigl delimiters fit, 6 lines led by a fraction but not 7, and
#: 2 fraction-led and 8 plain lines not; one line spare)
FRAME_HEIGHT = 11.0

#: the height of a line that holds a fraction or a big operator with limits, in plain lines
TALL_LINE = 1.75

_TALL = re.compile(r"\\(frac|dfrac|prod|sum|bigodot|displaystyle)\b")


def line_height(line: str) -> float:
    """A display line's height in plain lines: :data:`TALL_LINE` if it holds a fraction or ∏/∑, else 1."""
    return TALL_LINE if _TALL.search(line) else 1.0


def _frame(title: str, body: str) -> str:
    return f"\\begin{{frame}}{{{title}}}\n{body}\n\\end{{frame}}"


def _math(lines: list[str]) -> str:
    return "{\\small\n\\begin{align*}\n" + " \\\\\n".join(lines) + "\n\\end{align*}}"


def _display_frames(title: str, rows: list[Row], intro: str = "") -> list[str]:
    """Frames showing ``rows``, filled up to :data:`FRAME_HEIGHT` (an intro counts 2 lines).

    A row starts a new frame when it does not fit the rest of the current one; a row taller than a
    whole frame is split between its lines; the next frame starts with ``lhs = ⋯`` and goes on with
    its continuation lines (``&\\quad …``).
    """
    frames: list[list[str]] = []
    chunk: list[str] = []
    room = FRAME_HEIGHT - (2.0 if intro else 0.0)
    used = 0.0
    for r in rows:
        lines = row_lines(r, BUDGET_SLIDE)
        tall = sum(line_height(ln) for ln in lines)
        if chunk and used + tall > room and tall <= FRAME_HEIGHT:
            frames.append(chunk)
            chunk, used, room = [], 0.0, FRAME_HEIGHT
        for i, ln in enumerate(lines):
            h = line_height(ln)
            if chunk and used + h > room:
                frames.append(chunk)
                chunk, used, room = [], 0.0, FRAME_HEIGHT
                if i:  # a row continued from the last frame: say whose right-hand side goes on
                    chunk.append(f"{r.lhs} &{r.rel} \\cdots")
                    used += line_height(chunk[-1])
            chunk.append(ln)
            used += h
    frames.append(chunk)
    out = []
    for i, lines in enumerate(frames):
        t = title if len(frames) == 1 else f"{title} ({i + 1}/{len(frames)})"
        out.append(_frame(t, (intro + "\n" if intro and i == 0 else "") + _math(lines)))
    return out


def _cite(b: Build, key: str) -> str:
    e = b.doc.bib[key]
    return tex_text(f"{entry_label(e)} ({e.fields.get('year', 'n.d.')})")


def _cell_frames(b: Build, cell: Cell) -> list[str]:
    name = tex_text(cell.name)
    st, J = cell.recorded, cell.jacobian()
    out = _display_frames(f"\\texttt{{{name}}}: one step of the recurrence",
                          [display_row(latex(s), e) for s, e in st.definitions.items()])
    out += _display_frames(f"\\texttt{{{name}}}: the one-step Jacobian $J_t = \\partial s_t/\\partial s_{{t-1}}$",
                           [display_row(J.block_name(k), v) for k, v in J.blocks.items()])
    prod = state_product(cell)
    lhs, _, _ = prod.latex().partition(" = ")
    body = prod.expr.args[0]
    Jj = MatrixSymbol(f"J_{{{sp.latex(_j)}}}", *body.shape)
    compact = prod.expr.func(Jj, *prod.expr.args[1:])
    out.append(_frame(f"\\texttt{{{name}}}: the product over time",
                      "The chain rule multiplies one-step Jacobians, the latest on the left:\n"
                      + _math(row_lines(Row(lhs, (latex(compact),)), BUDGET_SLIDE))
                      + "\nIt shrinks or grows geometrically in $t-k$ with the sizes of its factors."))
    try:
        bound = pascanu_bound(cell)
    except ValueError:
        bound = None
    if bound is not None:
        lhs, _, rhs = bound.latex().partition(" \\le ")
        text = (f"After {_cite(b, 'pascanu2013difficulty')}: "
                + (f"with $\\gamma = \\sup|\\varphi'| = {sp.latex(bound.gamma)}$, "
                   f"$\\sigma_{{\\max}}(W) < {sp.latex(1 / bound.gamma)}$ suffices for vanishing gradients."
                   if bound.gamma is not None and getattr(bound.terms[0][1], "name", None) == "W" else
                   "a sum of terms $\\operatorname{diag}(v)\\,M$, each bounded." if len(bound.terms) > 1 else
                   # minGRU's diag(1 − z_t): no M to speak of
                   "a single diagonal matrix $\\operatorname{diag}(v)$, of norm $\\max_i |v_i| \\le \\sup|v|$."
                   if isinstance(bound.terms[0][1], sp.Identity) else
                   "one term $\\operatorname{diag}(v)\\,M$, at most $\\sup|v|\\,\\sigma_{\\max}(M)$."))
        out.append(_frame(f"\\texttt{{{name}}}: the bound",
                          text + "\n" + _math(row_lines(Row(lhs, (rhs,), "\\le"), BUDGET_SLIDE))))
    if "c" in cell.states:
        car = carousel(cell)
        lhs, _, rhs = car.latex().partition(" = ")
        kind, v = carousel_kind(cell)
        what = {"identity": "the identity: the constant error carousel of " + _cite(b, "hochreiter1997lstm"),
                "forget": "diagonal: no recurrent weights, no $\\varphi'$; it decays only as far as the "
                          "forget gates fall below 1",
                "factor": "diagonal, with no recurrent weights: each unit is multiplied at every step by its "
                          f"own entry of ${latex(v)}$ and decays as far as those fall below 1 in magnitude",
                "other": "diagonal, but it holds recurrent weights or activation derivatives"}[kind]
        out.append(_frame(f"\\texttt{{{name}}}: the cell state carries the gradient",
                          "Along the cell state alone (never through $h$) the product is " + what + ":\n"
                          + _math(row_lines(Row(lhs, (rhs,)), BUDGET_SLIDE))))
    return out


def _figure(title: str, stem: str) -> str:
    return _frame(title, "\\centering\n\\includegraphics[width=\\textwidth,height=0.78\\textheight,"
                         f"keepaspectratio]{{figures/{stem}.pdf}}")


def slide_decay_stem(cell: Cell) -> str:
    """The per-cell decay figure of the slides: ``figures/slide-decay-<cell>.pdf``."""
    return "slide-decay-" + cell.name


#: the joint decay figure of the slides (every cell on one axis, at the slide's width)
SLIDE_DECAY_STEM = "slide-decay"


def _joint_decay_frame(b: Build) -> list[str]:
    """Every cell's measured decay (median and band) on one axis, drawn at the slide's width."""
    from .figure_fit import fit_titles
    from .plots import figure_legend, figure_style, plot_decay_band, preset_figure, save_figure

    ev = b.evidence
    if ev is None or not ev.spreads:
        return []
    with figure_style("slide"):
        fig, (ax,) = preset_figure(1, "slide")
        plot_decay_band(dict(ev.spreads), ax=ax)
        figure_legend(fig, [ax])
        fit_titles(fig)
        save_figure(fig, b.stage / "figures" / SLIDE_DECAY_STEM, formats=("pdf",))
    return [_figure("Measured: the gradient norm against the lag", SLIDE_DECAY_STEM)]


def _path_frames(b: Build) -> list[str]:
    """One frame per cell with a cell state: ∂c_T/∂c_k split by path; per mLSTM cell: its memory
    block ∂(C_T, n_T)/∂(C_k, n_k) against the full product; drawn at the slide's width."""
    from .figure_fit import fit_titles
    from .plots import figure_legend, figure_style, plot_cell_state_paths, plot_memory_paths, preset_figure, save_figure

    ev = b.evidence
    if ev is None or not (ev.paths or ev.memory):
        return []
    paths, memory = ev.paths or {}, ev.memory or {}
    out = []
    for cell in b.cells:
        if cell.name not in paths and cell.name not in memory:
            continue
        stem = "slide-paths-" + cell.name
        with figure_style("slide"):
            fig, (ax,) = preset_figure(1, "slide")
            if cell.name in paths:
                plot_cell_state_paths(paths[cell.name], ax=ax)
            else:
                plot_memory_paths(*memory[cell.name], ax=ax)
            figure_legend(fig, [ax])
            fit_titles(fig)
            save_figure(fig, b.stage / "figures" / stem, formats=("pdf",))
        what = ("the cell-state gradient split by path" if cell.name in paths else
                "the memory block $(C, n)$ against the full product")
        out.append(_figure(f"\\texttt{{{tex_text(cell.name)}}}: {what}", stem))
    return out


def _cell_decay_frames(b: Build) -> list[str]:
    """One frame per cell: its own measured decay (median, band and bound) at the slide's width."""
    import matplotlib

    from .figure_fit import fit_titles
    from .plots import figure_legend, figure_style, plot_decay_band, preset_figure, save_figure

    ev = b.evidence
    if ev is None or not ev.spreads:
        return []
    out = []
    for i, cell in enumerate(b.cells):
        if cell.name not in ev.spreads:
            continue
        bounds = {cell.name: ev.bounds[cell.name]} if ev.bounds and cell.name in ev.bounds else None
        stem = slide_decay_stem(cell)
        with figure_style("slide"):
            fig, (ax,) = preset_figure(1, "slide")
            colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
            ax.set_prop_cycle(color=[colours[i % len(colours)]])  # the cell's colour in the joint figure
            plot_decay_band({cell.name: ev.spreads[cell.name]}, ax=ax, bounds=bounds)
            figure_legend(fig, [ax])
            fit_titles(fig)
            save_figure(fig, b.stage / "figures" / stem, formats=("pdf",))
        r = b.runs[cell.name]
        sp_ = ev.spreads[cell.name]
        verb = "grows at" if r.rate_full is not None and r.rate_full > 0 else "decays at"
        note = (f"Median and 10--90\\,\\% band of {sp_.count} sequences; the first sequence {verb} "
                f"{_num(r.rate_full)} per step of lag.")
        out.append(_frame(f"\\texttt{{{tex_text(cell.name)}}}: the measured decay",
                          "\\centering\n\\includegraphics[width=\\textwidth,height=0.7\\textheight,"
                          f"keepaspectratio]{{figures/{stem}.pdf}}\n\n\\small " + note))
    return out


def _num(x: float | None) -> str:
    """A rate for a slide: 3 decimals; one that would print as ±0.000 with two significant digits
    (S4D's −2.2·10⁻⁴ per step is slow decay, not "−0.000"); exactly 0 as 0."""
    if x is None:
        return "n/a"
    if x == 0:
        return "$0$"
    if not np.isfinite(x):
        return "n/a" if np.isnan(x) else ("$-\\infty$" if x < 0 else "$+\\infty$")
    if abs(x) >= 5e-4:
        return f"${x:+.3f}$"
    mant, exp = f"{x:+.1e}".split("e")
    return f"${mant}\\times 10^{{{int(exp)}}}$"


def _takeaway(b: Build) -> str:
    items = []
    for cell in b.cells:
        r = b.runs[cell.name]
        text = (f"\\texttt{{{tex_text(cell.name)}}}: $\\log_{{10}}\\lVert\\partial s_T/\\partial s_k\\rVert_2$ "
                f"changes by {_num(r.rate_full)} per step of lag")
        if r.rate_carousel is not None:
            text += f"; along the carousel by {_num(r.rate_carousel)}"
        if r.rate_bound is not None:
            text += f"; the bound by {_num(r.rate_bound)}"
        items.append("\\item " + text + ".")
    m_words = input_words(b.inputs, lambda name: "\\texttt{" + tex_text(name) + "}")
    sizes = f"$n = {b.hidden}$, {m_words}, $T = {b.steps}$, seed {b.seed}"
    return _frame("Takeaway", "Measured on random weights (" + sizes + "):\n\\begin{itemize}\n"
                  + "\n".join(items) + "\n\\end{itemize}\n" + _ranking(b))


def _ranking(b: Build) -> str:
    """Which cell keeps its gradient longest here, which loses it fastest, which grows: from the rates."""
    rates = {c.name: b.runs[c.name].rate_full for c in b.cells if b.runs[c.name].rate_full is not None}
    finite = {k: v for k, v in rates.items() if np.isfinite(v)}
    flat = 1e-12  # rounding (expRNN's orthogonal W: +1e-16), not a slow decay like S4D's -2e-4, is neither
    decay = {k: v for k, v in finite.items() if v < -flat}
    grow = [k for k, v in finite.items() if v > flat]
    parts = []
    if len(decay) >= 2:
        slow, fast = max(decay, key=decay.__getitem__), min(decay, key=decay.__getitem__)
        parts.append(f"Slowest decay here: \\texttt{{{tex_text(slow)}}} ({_num(decay[slow])}); fastest: "
                     f"\\texttt{{{tex_text(fast)}}} ({_num(decay[fast])}).")
    if grow:
        parts.append("Growing, not decaying: " + ", ".join(f"\\texttt{{{tex_text(k)}}}" for k in grow) + ".")
    return " ".join(parts)


def slides_tex(b: Build, title: str) -> str:
    """slides.tex for a built report (its sections have run: ``b.runs`` and the figures exist)."""
    frames = ["\\begin{frame}\n\\titlepage\n\\end{frame}"]
    for cell in b.cells:
        frames += _cell_frames(b, cell)
    stems = set(b.evidence.figures) if b.evidence is not None else set()
    joint = _joint_decay_frame(b)
    if joint:
        frames += joint
    elif "decay" in stems:
        frames.append(_figure("Measured: the gradient norm against the lag", "decay"))
    frames += _cell_decay_frames(b)
    path_frames = _path_frames(b)
    if path_frames:
        frames += path_frames
    elif "carousel" in stems:
        frames.append(_figure("Measured: the gradient split by path", "carousel"))
    frames.append(_takeaway(b))
    return ("\\documentclass[aspectratio=169,11pt]{beamer}\n"
            "\\usepackage{amsmath}\n\\usepackage{amssymb}\n\\usepackage{graphicx}\n"
            "\\setbeamertemplate{navigation symbols}{}\n"
            f"\\title{{{tex_text(title)}}}\n\\author{{generated by gradflow}}\n\\date{{{tex_text(b.date[:10])}}}\n"
            "\\begin{document}\n\n" + "\n\n".join(frames) + "\n\n\\end{document}\n")
