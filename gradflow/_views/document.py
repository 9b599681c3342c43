"""One document, two renderings: the report's text as GitHub Markdown and as a LaTeX article.

Paragraphs, display equations (aligned rows broken at summands to fit the page), figures, tables
and citations (``[@key]`` / ``@[key]``) are collected once and written out in both formats.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp
from sympy import MatAdd

from .._symbolic.printing import latex
from .bibtex import BibEntry, entry_label, entry_sort_key, format_entry, tex_text
from .escape import md_code_block, tex_code_block

# ================================================================================================
# Text and math helpers
# ================================================================================================

def _md_text(s: str) -> str:
    return s.replace("*", r"\*").replace("_", r"\_")


#: LaTeX control symbols Markdown could take for escaped punctuation, and equivalent words
_MD_SAFE = {r"\|": r"\Vert ", r"\{": r"\lbrace ", r"\}": r"\rbrace ", r"\,": r"{\thinspace}",
            r"\;": r"{\thickspace}", r"\:": r"{\medspace}", r"\!": r"{\negthinspace}"}


def _md_math(s: str) -> str:
    """Math for GitHub: no backslash before punctuation (Markdown may eat it), ``\\\\`` only at line ends."""
    s = re.sub(r"\\\\|\\[|{},;:!]", lambda m: _MD_SAFE.get(m.group(0), m.group(0)), s)
    return re.sub(r"\\\\(?!\n)[ \t]*", "\\\\\\\\\n", s)


def visible_width(tex: str) -> float:
    """Rough printed width of a LaTeX math string, in characters (for line breaking)."""
    s = re.sub(r"\\(left|right)\b[.]?", "", tex)
    s = re.sub(r"\\operatorname\{(\w+)\}", r"\1", s)
    s = re.sub(r"\\frac\{((?:[^{}]|\{[^{}]*\})*)\}\{((?:[^{}]|\{[^{}]*\})*)\}",
               lambda m: "x" * int(max(visible_width(m.group(1)), visible_width(m.group(2)))), s)
    s = re.sub(r"\\(tanh|max|diag)\b", lambda m: m.group(1), s)
    s = re.sub(r"\\circ\b", "oo", s)
    s = re.sub(r"\\mathbb\{\w\}|\\[A-Za-z]+", "x", s)
    while True:
        new = re.sub(r"[_^]\{([^{}]*)\}",
                     lambda m: "x" * int(0.7 * len(m.group(1).replace(" ", "")) + 0.5), s)
        if new == s:
            break
        s = new
    s = re.sub(r"[_^](\w)", "x", s)
    return float(len(re.sub(r"[\s{}]", "", s)))


def _summands(expr) -> list[str]:
    """LaTeX of the top-level summands of ``expr`` with their signs: [a, + b, - c]."""
    if not isinstance(expr, MatAdd):
        return [latex(expr)]
    out = []
    for i, a in enumerate(expr.args):
        s = latex(a).strip()
        if i == 0:
            out.append(s)
        elif s.startswith("-"):
            out.append("- " + s[1:].lstrip())
        else:
            out.append("+ " + s)
    return out


@dataclass(frozen=True)
class Row:
    """One line of a display: ``lhs rel rhs`` with the rhs given as summands (breakable)."""

    lhs: str
    parts: tuple
    rel: str = "="
    whole: str | None = None  # the rhs printed in one piece (used when it fits on one line)


def display_row(lhs: str, rhs, rel: str = "=") -> Row:
    if isinstance(rhs, sp.Basic):
        return Row(lhs, tuple(_summands(rhs)), rel, latex(rhs))
    return Row(lhs, (rhs,), rel)


_BUDGET = 66.0  # visible characters per display line


def _aligned(rows: Sequence[Row]) -> str:
    lines = []
    for r in rows:
        indent = visible_width(r.lhs) + 3
        if r.whole is not None and (len(r.parts) == 1 or indent + visible_width(r.whole) <= _BUDGET):
            lines.append(f"{r.lhs} &{r.rel} {r.whole}")
            continue
        cur, width = f"{r.lhs} &{r.rel} {r.parts[0]}", indent + visible_width(r.parts[0])
        for p in r.parts[1:]:
            w = visible_width(p)
            if width + w > _BUDGET:
                lines.append(cur)
                cur, width = r"&\quad " + p, indent + 2 + w
            else:
                cur, width = cur + " " + p, width + w
        lines.append(cur)
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


def bmatrix(cells: Sequence[Sequence[str]]) -> str:
    """A bracketed matrix, entries in display style (so fractions keep their size)."""
    rows = [" & ".join(e if e == "0" else "\\displaystyle " + e for e in r) for r in cells]
    return "\\begin{bmatrix}\n" + " \\\\\n".join(rows) + "\n\\end{bmatrix}"


def _spread_matrices(tex: str) -> str:
    """LaTeX only: taller rows in bmatrix environments, whose entries are display-style fractions."""
    return ("\\renewcommand{\\arraystretch}{2.3}" + tex) if "\\begin{bmatrix}" in tex else tex


def fmt_num(x, fmt: str = "{:.4f}") -> str:
    """A number as inline math ($-0.1234$), "–" for None."""
    if x is None:
        return "–"
    x = float(x)
    if np.isnan(x):
        return "n/a"
    if np.isinf(x):
        return "$-\\infty$" if x < 0 else "$\\infty$"
    return "$" + fmt.format(x) + "$"


# ================================================================================================
# The document model: one list of blocks, rendered as Markdown and as LaTeX
# ================================================================================================

_INLINE = re.compile(r"(\$[^$]+\$|`[^`]+`|\[@[^\]]+\]|@\[[^\]]+\])")


@dataclass(frozen=True)
class Heading:
    level: int  # 1 title, 2 section, 3 subsection (2 and 3 numbered), 4 paragraph heading
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str  # with $math$, `code`, [@key] and @[key] citations


@dataclass(frozen=True)
class Display:
    tex: str  # the body of an aligned display


@dataclass(frozen=True)
class Figure:
    stem: str  # figures/<stem>.png and .pdf
    caption: str
    width: float  # fraction of the line width in LaTeX
    print_width: float | None = None  # inches: include at this width (never wider than the line)


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str
    align: str  # one of l, r, c per column


@dataclass(frozen=True)
class Code:
    text: str  # a shell command, shown verbatim (escaped for each format)


Block = Heading | Paragraph | Display | Figure | Table | Code


class Doc:
    """One document: a list of blocks, rendered as Markdown (:meth:`markdown`) and LaTeX (:meth:`latex`)."""

    def __init__(self, bib: dict[str, BibEntry]):
        self.bib = bib
        self.blocks: list[Block] = []
        self.cited: list[str] = []

    # -- building ----------------------------------------------------------------------------
    def heading(self, level: int, text: str):
        """A heading; levels 2 and 3 are numbered (1., 1.1) in the order they are added."""
        self.blocks.append(Heading(level, text))

    def para(self, text: str):
        for key in self._keys(text):
            if key not in self.bib:
                raise KeyError(f"citation {key!r} is not in references.bib")
            if key not in self.cited:
                self.cited.append(key)
        self.blocks.append(Paragraph(text))

    def display(self, rows: Sequence[Row] | str):
        self.blocks.append(Display(rows if isinstance(rows, str) else _aligned(rows)))

    def figure(self, stem: str, caption: str, width: float = 0.75, print_width: float | None = None):
        self._keys_of(caption)
        self.blocks.append(Figure(stem, caption, width, print_width))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], caption: str, align: str):
        self._keys_of(caption)
        self.blocks.append(Table(tuple(header), tuple(tuple(r) for r in rows), caption, align))

    def code(self, text: str):
        self.blocks.append(Code(text))

    def _keys_of(self, text):
        for key in self._keys(text):
            if key not in self.bib:
                raise KeyError(f"citation {key!r} is not in references.bib")
            if key not in self.cited:
                self.cited.append(key)

    @staticmethod
    def _keys(text: str) -> list[str]:
        out = []
        for m in re.finditer(r"\[@([^\]]+)\]|@\[([^\]]+)\]", text):
            out += [k.strip() for k in (m.group(1) or m.group(2)).split(";")]
        return out

    def references(self) -> list[BibEntry]:
        return sorted((self.bib[k] for k in self.cited), key=entry_sort_key)

    # -- inline markup ---------------------------------------------------------------------
    def _cite_md(self, keys: list[str], narrative: bool) -> str:
        es = [self.bib[k] for k in keys]
        if narrative:
            return "; ".join(f"{entry_label(e)} ({e.fields.get('year', 'n.d.')})" for e in es)
        return "(" + "; ".join(f"{entry_label(e)} {e.fields.get('year', 'n.d.')}" for e in es) + ")"

    def inline_md(self, text: str) -> str:
        out = []
        for tok in _INLINE.split(text):
            if not tok:
                continue
            if tok.startswith("$") and tok.endswith("$") and len(tok) > 1:
                out.append(_md_math(tok))
            elif tok.startswith("`"):
                out.append(tok)
            elif tok.startswith("[@"):
                out.append(self._cite_md([k.strip() for k in tok[2:-1].split(";")], False))
            elif tok.startswith("@["):
                out.append(self._cite_md([k.strip() for k in tok[2:-1].split(";")], True))
            else:
                out.append(_md_text(tok))
        return "".join(out)

    def inline_tex(self, text: str) -> str:
        out: list[str] = []
        for tok in _INLINE.split(text):
            if not tok:
                continue
            if tok.startswith("$") and tok.endswith("$") and len(tok) > 1:
                out.append(tok)
            elif tok.startswith("`"):
                out.append(r"\texttt{" + tex_text(tok[1:-1]) + "}")
            elif tok.startswith("[@"):
                joined = ",".join(k.strip() for k in tok[2:-1].split(";"))
                if out and out[-1].endswith(" "):
                    out[-1] = out[-1].rstrip(" ")
                out.append(r"~\cite{" + joined + "}")
            elif tok.startswith("@["):
                keys = [k.strip() for k in tok[2:-1].split(";")]
                out.append("; ".join(tex_text(entry_label(self.bib[k])) + r"~\cite{" + k + "}" for k in keys))
            else:
                out.append(tex_text(tok))
        return "".join(out)

    # -- rendering ---------------------------------------------------------------------------
    def markdown(self) -> str:
        out, fig_no, tab_no = [], 0, 0
        section = [0, 0]  # numbers of the current level-2 and level-3 headings
        for b in self.blocks:
            if isinstance(b, Heading):
                number = ""
                if b.level == 2:
                    section = [section[0] + 1, 0]
                    number = f"{section[0]}. "
                elif b.level == 3:
                    section[1] += 1
                    number = f"{section[0]}.{section[1]} "
                out.append("#" * b.level + " " + number + self.inline_md(b.text))
            elif isinstance(b, Paragraph):
                out.append(self.inline_md(b.text))
            elif isinstance(b, Display):
                out.append("$$\n" + _md_math(b.tex) + "\n$$")
            elif isinstance(b, Figure):
                fig_no += 1
                out.append(f"![Figure {fig_no}](figures/{b.stem}.png)\n\n"
                           f"*Figure {fig_no}.* {self.inline_md(b.caption)}")
            elif isinstance(b, Table):
                tab_no += 1
                header, rows, caption, align = b.header, b.rows, b.caption, b.align
                spec = {"l": ":---", "r": "---:", "c": ":---:"}
                lines = [f"*Table {tab_no}.* {self.inline_md(caption)}", "",
                         "| " + " | ".join(self.inline_md(h) for h in header) + " |",
                         "|" + "|".join(spec[a] for a in align) + "|"]
                lines += ["| " + " | ".join(self.inline_md(c) for c in r) + " |" for r in rows]
                out.append("\n".join(lines))
            elif isinstance(b, Code):
                out.append(md_code_block(b.text))
        out.append("## References")
        out.append("\n".join(f"- <a id=\"ref-{e.key}\"></a>**[{e.key}]** {format_entry(e, 'md')}"
                             for e in self.references()))
        return "\n\n".join(out) + "\n"

    def latex(self, title: str, date: str) -> str:
        body = []
        for b in self.blocks:
            if isinstance(b, Heading):
                if b.level == 1:
                    continue
                cmd = {2: "section", 3: "subsection"}.get(b.level, "subsubsection")
                body.append(f"\\{cmd}{{{self.inline_tex(b.text)}}}")  # LaTeX numbers its own sections
            elif isinstance(b, Paragraph):
                body.append(self.inline_tex(b.text))
            elif isinstance(b, Display):
                body.append("\\[\n\\fitmath{" + _spread_matrices(b.tex) + "}\n\\]")
            elif isinstance(b, Figure):
                width = (f"{b.width:.2f}\\linewidth" if b.print_width is None
                         else f"{b.print_width:.2f}in")  # at print size, shrunk only to fit the line
                body.append("\\begin{figure}[htbp]\n\\centering\n"
                            f"\\fitbox{{\\includegraphics[width={width},height=0.8\\textheight,"
                            f"keepaspectratio]{{figures/{b.stem}.pdf}}}}\n"
                            f"\\caption{{{self.inline_tex(b.caption)}}}\n\\end{{figure}}")
            elif isinstance(b, Table):
                header, rows, caption, align = b.header, b.rows, b.caption, b.align
                lines = ["\\begin{table}[htbp]", "\\centering", "\\small",
                         "\\caption{" + self.inline_tex(caption) + "}",
                         "\\fitbox{\\begin{tabular}{" + align + "}", "\\toprule",
                         " & ".join(self.inline_tex(h) for h in header) + " \\\\", "\\midrule"]
                lines += [" & ".join(self.inline_tex(c) for c in r) + " \\\\" for r in rows]
                lines += ["\\bottomrule", "\\end{tabular}}", "\\end{table}"]
                body.append("\n".join(lines))
            elif isinstance(b, Code):
                body.append(tex_code_block(b.text))
        refs = "\n".join("\\bibitem{" + e.key + "} " + format_entry(e, "tex") for e in self.references())
        preamble = r"""\documentclass[11pt]{article}
\usepackage[margin=2.4cm]{geometry}
\usepackage{amsmath}
\usepackage{amssymb}
\usepackage{graphicx}
\usepackage{booktabs}
\usepackage[hidelinks]{hyperref}
% a display that is wider than the text is scaled down to the text width, never cut or overfull
\newcommand{\fitbox}[1]{\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{#1}}
\newcommand{\fitmath}[1]{\fitbox{$\displaystyle #1$}}
\setlength{\emergencystretch}{3em}
\allowdisplaybreaks
"""
        return (preamble + "\\title{" + self.inline_tex(title) + "}\n\\author{generated by gradflow}\n"
                "\\date{" + tex_text(date) + "}\n\n\\begin{document}\n\\maketitle\n\n"
                + "\n\n".join(body) + "\n\n\\begin{thebibliography}{99}\n" + refs
                + "\n\\end{thebibliography}\n\n\\end{document}\n")
