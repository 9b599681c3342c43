"""One document, two renderings: the report's text as GitHub Markdown and as a LaTeX article.

Paragraphs, numbered display equations, figures, tables, code, citations (``[@key]`` /
``@[key]``) and cross-references (``[#eq:…]``, ``[#sec:…]``, ``[#fig:…]``) are collected once
and written out in both formats. In LaTeX a display is an ``align`` (breakable across pages; one
number, on its last line) whose long right-hand sides are cut to the width of the page, of one
column of two, or of a slide (:func:`break_math`; nothing is ever scaled); citations are natbib
commands resolved by BibTeX from ``references.bib``; the body (:meth:`Doc.latex_body`) can be
``\\input`` into a paper, and :meth:`Doc.latex` wraps it as a standalone article.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sympy as sp

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
    s = re.sub(r"\\(circ|odot)\b", "oo", s)
    s = re.sub(r"\\[Bb]ig[lr]\b", "", s)
    s = re.sub(r"\\mathbb\{\w\}|\\[A-Za-z]+", "x", s)
    while True:
        new = re.sub(r"[_^]\{([^{}]*)\}",
                     lambda m: "x" * int(0.7 * len(m.group(1).replace(" ", "")) + 0.5), s)
        if new == s:
            break
        s = new
    s = re.sub(r"[_^](\w)", "x", s)
    return float(len(re.sub(r"[\s{}]", "", s)))


@dataclass(frozen=True)
class Row:
    """One line of a display, ``lhs rel rhs``; a long rhs is broken over lines when rendered."""

    lhs: str
    parts: tuple
    rel: str = "="
    whole: str | None = None  # the rhs in one piece (default: the parts joined)

    @property
    def rhs(self) -> str:
        return self.whole if self.whole is not None else " ".join(self.parts)


def display_row(lhs: str, rhs, rel: str = "=") -> Row:
    """A display row; ``rhs`` a SymPy expression (printed by the symbolic core) or LaTeX."""
    tex = latex(rhs) if isinstance(rhs, sp.Basic) else str(rhs)
    return Row(lhs, (tex,), rel, tex)


# -- line breaking ---------------------------------------------------------------------------------
#: visible characters per display line: Markdown, a one-column page, one column of two, a slide
BUDGET_MD, BUDGET_ONE, BUDGET_TWO, BUDGET_SLIDE = 66.0, 62.0, 38.0, 60.0

_OPS = (" + ", " - ", " \\odot ")


@dataclass(frozen=True)
class _Point:
    pos: int  # where the operator's leading space starts
    depth: int  # how many \left ... \right groups enclose it
    groups: tuple[int, ...]  # the positions of those \left's


def _break_points(tex: str) -> tuple[list[_Point], dict[int, int]]:
    """Binary + − ⊙ outside braces and environments, and the matching \\right of every \\left."""
    points, match, stack = [], {}, []
    brace = env = 0
    i = 0
    while i < len(tex):
        if tex.startswith("\\left", i) and not tex[i + 5:i + 6].isalpha():
            stack.append(i)
            i += 5
            continue
        if tex.startswith("\\right", i) and not tex[i + 6:i + 7].isalpha():
            if stack:
                match[stack.pop()] = i
            i += 6
            continue
        if tex.startswith("\\begin{", i):
            env += 1
        elif tex.startswith("\\end{", i):
            env -= 1
        c = tex[i]
        if c == "\\":  # a control word or symbol: skip it (\{ is not a brace)
            i = _after_control(tex, i)
            continue
        if c == "{":
            brace += 1
        elif c == "}":
            brace -= 1
        elif c == " " and brace == 0 and env == 0 and any(tex.startswith(op, i) for op in _OPS):
            if i > 0 and tex[:i].rstrip()[-1:] not in ("(", "[", "&", "=", ""):
                points.append(_Point(i, len(stack), tuple(stack)))
        i += 1
    return points, match


def _greedy(tex: str, a: int, b: int, pts: list[_Point], first: float, rest: float,
            budget: float) -> list[_Point]:
    """Cut ``tex[a:b]`` at some of ``pts``, each line as long as fits (a piece may stay too long)."""
    seq: list[_Point | None] = [*pts, None]  # None: the end of the piece
    cuts: list[_Point] = []
    start, indent, prev, i = a, first, None, 0
    while i < len(seq):
        p = seq[i]
        pos = b if p is None else p.pos
        if indent + visible_width(tex[start:pos]) <= budget:
            prev, i = p, i + 1
            continue
        if prev is not None and prev.pos > start:  # cut where it still fitted, then retry p
            cut = prev
        elif p is None:
            break
        else:  # even the first piece is too long: cut right after it
            cut, i = p, i + 1
        cuts.append(cut)
        start, indent, prev = cut.pos, rest + 2 * (1 + cut.depth), None
    return cuts


def _cuts(tex: str, a: int, b: int, pts: list[_Point], level: int, first: float, rest: float,
          budget: float) -> list[_Point]:
    """Cuts of ``tex[a:b]``: greedy at the outermost ``level`` first, deeper only in pieces too long."""
    if first + visible_width(tex[a:b]) <= budget:
        return []
    inside = [p for p in pts if a < p.pos < b and p.depth >= level]
    if not inside:
        return []
    here = [p for p in inside if p.depth == level]
    if not here:
        return _cuts(tex, a, b, pts, level + 1, first, rest, budget)
    cuts = _greedy(tex, a, b, here, first, rest, budget)
    bounds = [a, *(c.pos for c in cuts), b]
    indents = [first, *(rest + 2 * (1 + c.depth) for c in cuts)]
    out: list[_Point] = []
    for k in range(len(bounds) - 1):
        if k:
            out.append(cuts[k - 1])
        out += _cuts(tex, bounds[k], bounds[k + 1], pts, level + 1, indents[k], rest, budget)
    return out


def break_math(tex: str, budget: float, first: float = 0.0, rest: float = 0.0) -> list[tuple[int, str]]:
    """``tex`` cut into lines of at most ``budget`` visible characters: ``[(depth, line), ...]``.

    Lines are cut before a binary +, − or ⊙ outside braces: at the outermost level first (one
    summand per line when they do not fit together), inside a summand only when it alone is too
    long; a cut inside ``\\left( … \\right)`` turns that pair into ``\\bigl( … \\bigr)``, which
    may span lines. ``first``/``rest``: the width already used on the first/following lines. A
    piece that cannot be cut (one long factor) stays as it is.
    """
    points, match = _break_points(tex)
    best = _cuts(tex, 0, len(tex), points, 0, first, rest, budget)
    cuts = sorted(set(best), key=lambda p: p.pos)
    # \left( ... \right) around a cut: fixed-size delimiters, which may stand on different lines
    edits: dict[int, tuple[str, str]] = {}
    for g in {g for p in cuts for g in p.groups}:
        r = match.get(g)
        if r is not None:
            big = "Big" if "\\frac" in tex[g:r] else "big"
            edits[g], edits[r] = ("\\left", "\\" + big + "l"), ("\\right", "\\" + big + "r")
    depth_at = {p.pos: p.depth for p in cuts}
    lines, buf, depth, start = [], "", 0, 0
    for pos in sorted([*edits, *depth_at]):
        buf += tex[start:pos]
        if pos in edits:
            buf += edits[pos][1]
            start = pos + len(edits[pos][0])
        else:
            lines.append((depth, buf.strip()))
            buf, depth, start = "", depth_at[pos], pos
    lines.append((depth, (buf + tex[start:]).strip()))
    out: list[tuple[int, str]] = []
    for k, (d, text) in enumerate(lines):  # a line still too long: cut its product between factors
        out += _cut_product(text, d, (first if k == 0 else rest + 2 * (1 + d)), rest, budget)
    return out


def _after_control(tex: str, i: int) -> int:
    """The index after the control word or symbol starting at ``tex[i] == "\\"`` (``\\{`` is not a brace)."""
    j = i + 1
    while j < len(tex) and tex[j].isalpha():
        j += 1
    return max(j, i + 2)


def _cut_product(text: str, depth: int, indent: float, rest: float, budget: float) -> list[tuple[int, str]]:
    """A line with no + − ⊙ left to cut at, too long: cut before a factor ``\\operatorname{diag}``
    that stands outside braces and outside any ``\\left … \\right`` of the line (mLSTM's
    ``… q_t^T \\operatorname{diag}(n_{t−1}) 1 \\operatorname{diag}(…)``); the rest goes one level deeper."""
    if indent + visible_width(text) <= budget:
        return [(depth, text)]
    cands, brace, pairs, i = [], 0, 0, 0
    while i < len(text):
        if text.startswith("\\left", i) and not text[i + 5:i + 6].isalpha():
            pairs, i = pairs + 1, i + 5
            continue
        if text.startswith("\\right", i) and not text[i + 6:i + 7].isalpha():
            pairs, i = pairs - 1, i + 6
            continue
        c = text[i]
        if c == "\\":
            i = _after_control(text, i)
            continue
        if c == "{":
            brace += 1
        elif c == "}":
            brace -= 1
        elif c == " " and brace == 0 and pairs == 0 and text.startswith(" \\operatorname{diag}", i) and i > 0:
            cands.append(i)
        i += 1
    fits = [p for p in cands if indent + visible_width(text[:p]) <= budget]
    cut = fits[-1] if fits else (cands[0] if cands else None)
    if cut is None:
        return [(depth, text)]
    head, tail = text[:cut].strip(), text[cut:].strip()
    return [(depth, head), *_cut_product(tail, depth + 1, rest + 2 * (2 + depth), rest, budget)]


def row_lines(r: Row, budget: float) -> list[str]:
    """One display row as ``aligned``/``align`` lines: ``lhs &= …`` then ``&\\quad + …``."""
    lw = visible_width(r.lhs) + 3
    lines = break_math(r.rhs, budget, lw, lw)
    out = [f"{r.lhs} &{r.rel} {lines[0][1]}"]
    out += ["&" + "\\quad" * (1 + d) + " " + text for d, text in lines[1:]]
    return out


def aligned(rows: Sequence[Row], budget: float = BUDGET_MD) -> str:
    """The rows as an ``aligned`` block, long right-hand sides broken to ``budget`` characters."""
    lines = [ln for r in rows for ln in row_lines(r, budget)]
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


def bmatrix(cells: Sequence[Sequence[str]]) -> str:
    """A bracketed matrix, entries in display style (so fractions keep their size)."""
    rows = [" & ".join(e if e == "0" else "\\displaystyle " + e for e in r) for r in cells]
    return "\\begin{bmatrix}\n" + " \\\\\n".join(rows) + "\n\\end{bmatrix}"


def _spread_matrices(tex: str) -> str:
    """LaTeX only: taller rows in bmatrix environments, whose entries are display-style fractions."""
    return ("\\renewcommand{\\arraystretch}{2.3}" + tex) if "\\begin{bmatrix}" in tex else tex


def _matrix_width(tex: str) -> float:
    """Estimated width of the widest row of the bmatrix in ``tex`` (entries plus column gaps)."""
    inner = tex.split("\\begin{bmatrix}", 1)[1].split("\\end{bmatrix}", 1)[0]
    return max(sum(visible_width(e) + 2 for e in row.split(" & ")) for row in inner.split("\\\\"))


def _matrix_tex(tex: str, room: float) -> str:
    """LaTeX only: a bmatrix with taller rows for its display-style fractions; one too wide for
    ``room`` keeps its entries in text style with narrower gaps instead (never scaled)."""
    if _matrix_width(tex) <= room:
        return "{" + _spread_matrices(tex) + "}"
    return "{\\setlength{\\arraycolsep}{3pt}\\renewcommand{\\arraystretch}{1.6}" + tex.replace(
        "\\displaystyle ", "") + "}"


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

_INLINE = re.compile(r"(\$[^$]+\$|`[^`]+`|\[@[^\]]+\]|@\[[^\]]+\]|\[#[\w:.-]+(?:;[\w:.-]+)*\])")
_REF = re.compile(r"\[#([\w:.-]+(?:;[\w:.-]+)*)\]")

#: the label prefix of everything the report labels (so that a paper \inputting it has no clash)
LABEL_PREFIX = "gf:"
#: what a reference to each kind of label reads as
_REF_WORDS = {"sec": "Section", "fig": "Figure", "tab": "Table"}


def _refs_text(labels: list[str], number) -> str:
    """References grouped by kind: "Figures 3, 4 and 5 and Table 1"; ``number(label)`` is its text."""
    groups: dict[str, list[str]] = {}
    for lab in labels:
        groups.setdefault(lab.split(":", 1)[0], []).append(lab)
    out = []
    for kind, labs in groups.items():
        nums = [number(lab) for lab in labs]
        listed = nums[0] if len(nums) == 1 else ", ".join(nums[:-1]) + " and " + nums[-1]
        if kind == "eq":
            out.append(listed)
        else:
            word = _REF_WORDS.get(kind, "")
            out.append((word + ("s" if len(nums) > 1 else "") + "~" + listed) if word else listed)
    return "; ".join(out)


@dataclass(frozen=True)
class Heading:
    level: int  # 1 title, 2 section, 3 subsection (2 and 3 numbered), 4 paragraph heading
    text: str
    label: str | None = None  # "sec:..." if the text refers to it as [#sec:...]


@dataclass(frozen=True)
class Paragraph:
    text: str  # with $math$, `code`, [@key] and @[key] citations, [#label] references


@dataclass(frozen=True)
class Display:
    tex: str  # the body of an aligned display, as written (a raw display)
    rows: tuple[Row, ...] = ()  # or rows, broken to the page width when rendered
    label: str | None = None  # "eq:..." if the text refers to it as [#eq:...]


@dataclass(frozen=True)
class Figure:
    stem: str  # figures/<stem>.png and .pdf
    caption: str
    width: float  # fraction of the line width in LaTeX
    print_width: float | None = None  # inches: include at this width (never wider than the line)

    @property
    def label(self) -> str:
        return "fig:" + self.stem


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str
    align: str  # one of l, r, c per column
    label: str = "tab:1"


@dataclass(frozen=True)
class Code:
    text: str  # a shell command, shown verbatim (escaped for each format)


Block = Heading | Paragraph | Display | Figure | Table | Code

#: LaTeX packages the report body needs (listed in its header; loaded by report.tex)
BODY_PACKAGES = ("amsmath", "amssymb", "graphicx", "booktabs", "natbib", "hyperref")


def heading_text(text: str) -> str:
    """A title in plain text with its informal formula made math: ``h_t = h_{t-1} + tanh(.)``
    becomes ``$h_t = h_{t-1} + \\tanh(\\cdot)$`` (a formula is ``x[_sub] = …``, x one letter, up to a
    comma or `` (``; ``reset_after=True`` stays text)."""
    m = re.search(r"(?<![\w$\\])([A-Za-z](?:_\{[^{}]*\}|_\w+)?~?)\s*=\s*", text)
    if not m or "$" in text:
        return text
    end, depth = m.end(), 0
    while end < len(text):
        c = text[end]
        if c == "(":
            depth += 1
        elif c == ")":
            if depth == 0:
                break
            depth -= 1
        elif c in ",`" and depth == 0 or text.startswith(" (", end) and depth == 0:
            break
        end += 1
    formula = text[m.start():end].rstrip()
    tex = re.sub(r"\b(tanh|exp|log|cos|sin)\b", r"\\\1", formula)
    tex = re.sub(r"\b(relu|diag)\b", r"\\operatorname{\1}", tex)
    tex = tex.replace("(.)", r"(\cdot)").replace("*", r"\odot")
    tex = re.sub(r"([A-Za-z])~", r"\\tilde{\1}", tex)
    return text[:m.start()] + "$" + tex + "$" + text[m.start() + len(formula):]


class Doc:
    """One document: a list of blocks, rendered as Markdown (:meth:`markdown`) and LaTeX (:meth:`latex`).

    Cross-references: ``[#sec:…]``, ``[#eq:…]``, ``[#fig:STEM]``, ``[#tab:…]`` in a paragraph refer
    to a heading, display, figure or table given that label; they read "Section 2", "(3)", "Figure 1"
    in Markdown and ``Section~\\ref``, ``\\eqref``, ``Figure~\\ref`` in LaTeX. A figure or table that
    no paragraph refers to is referred to from the paragraph just before it, so every float is cited
    in the text (and LaTeX places it near that paragraph).
    """

    def __init__(self, bib: dict[str, BibEntry]):
        self.bib = bib
        self.blocks: list[Block] = []
        self.cited: list[str] = []

    # -- building ----------------------------------------------------------------------------
    def heading(self, level: int, text: str, label: str | None = None):
        """A heading; levels 2 and 3 are numbered (1., 1.1) in the order they are added."""
        self.blocks.append(Heading(level, text, label))

    def para(self, text: str):
        self._keys_of(text)
        self.blocks.append(Paragraph(text))

    def display(self, rows: Sequence[Row] | str, label: str | None = None):
        """A numbered display: rows ``lhs rel rhs`` (broken to the width when rendered) or raw LaTeX."""
        if isinstance(rows, str):
            self.blocks.append(Display(rows, (), label))
        else:
            self.blocks.append(Display("", tuple(rows), label))

    def figure(self, stem: str, caption: str, width: float = 0.75, print_width: float | None = None):
        self._keys_of(caption)
        self.blocks.append(Figure(stem, caption, width, print_width))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], caption: str, align: str,
              label: str | None = None):
        self._keys_of(caption)
        n = sum(isinstance(b, Table) for b in self.blocks) + 1
        self.blocks.append(Table(tuple(header), tuple(tuple(r) for r in rows), caption, align,
                                 label or f"tab:{n}"))

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

    # -- cross-references --------------------------------------------------------------------
    def _referenced(self) -> set[str]:
        out = {lab for b in self.blocks if isinstance(b, Paragraph) for m in _REF.findall(b.text)
               for lab in m.split(";")}
        # an equation named in a caption (a long bound, by its number) needs its \label as well
        return out | {lab for b in self.blocks if isinstance(b, (Figure, Table))
                      for m in _REF.findall(b.caption) for lab in m.split(";") if lab.startswith("eq:")}

    def _resolved(self) -> tuple[list[Block], dict[str, str]]:
        """The blocks with a reference to every float added, and each label's number as text."""
        refs = self._referenced()
        blocks: list[Block] = list(self.blocks)
        # floats nobody refers to: cite them from the paragraph just before them
        pending: dict[int, list[str]] = {}
        last_para = None
        for i, b in enumerate(blocks):
            if isinstance(b, Paragraph):
                last_para = i
            elif isinstance(b, (Figure, Table)) and b.label not in refs and last_para is not None:
                pending.setdefault(last_para, []).append(b.label)
        for i, labels in pending.items():
            p = blocks[i]
            assert isinstance(p, Paragraph)
            see = "[#" + ";".join(labels) + "]"
            text = p.text.rstrip()
            if text.endswith("."):
                text = text[:-1] + f" ({see})."
            elif text.endswith(":"):
                text = text[:-1] + f" ({see}):"
            else:
                text += f" ({see})"
            blocks[i] = Paragraph(text)
        numbers: dict[str, str] = {}
        sec, eq, fig = [0, 0], 0, 0
        for b in blocks:
            if isinstance(b, Heading) and b.level in (2, 3):
                if b.level == 2:
                    sec = [sec[0] + 1, 0]
                else:
                    sec[1] += 1
                if b.label:
                    numbers[b.label] = str(sec[0]) if b.level == 2 else f"{sec[0]}.{sec[1]}"
            elif isinstance(b, Display):
                eq += 1
                if b.label:
                    numbers[b.label] = str(eq)
            elif isinstance(b, Figure):
                fig += 1
                numbers[b.label] = str(fig)
        for b in blocks:
            if isinstance(b, Table):
                numbers[b.label] = str(1 + [x for x in blocks if isinstance(x, Table)].index(b))
        return blocks, numbers  # a label no block has reads "?" (LaTeX: "??" and a warning)

    # -- inline markup ---------------------------------------------------------------------
    def _cite_md(self, keys: list[str], narrative: bool) -> str:
        es = [self.bib[k] for k in keys]
        if narrative:
            return "; ".join(f"{entry_label(e)} ({e.fields.get('year', 'n.d.')})" for e in es)
        return "(" + "; ".join(f"{entry_label(e)} {e.fields.get('year', 'n.d.')}" for e in es) + ")"

    def inline_md(self, text: str, numbers: dict[str, str] | None = None) -> str:
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
            elif tok.startswith("[#"):
                text = _refs_text(tok[2:-1].split(";"), lambda lab: (
                    "({})" if lab.startswith("eq:") else "{}").format((numbers or {}).get(lab, "?")))
                out.append(text.replace("~", " "))
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
                out.append(r"~\citep{" + joined + "}")
            elif tok.startswith("@["):
                out.append(r"\citet{" + ",".join(k.strip() for k in tok[2:-1].split(";")) + "}")
            elif tok.startswith("[#"):
                out.append(_refs_text(tok[2:-1].split(";"), lambda lab: (
                    r"\eqref{%s}" if lab.startswith("eq:") else r"\ref{%s}") % (LABEL_PREFIX + lab)))
            else:
                out.append(tex_text(tok))
        return "".join(out)

    # -- rendering ---------------------------------------------------------------------------
    def markdown(self) -> str:
        blocks, numbers = self._resolved()
        out, fig_no, tab_no, eq_no = [], 0, 0, 0
        section = [0, 0]  # numbers of the current level-2 and level-3 headings
        for b in blocks:
            if isinstance(b, Heading):
                number = ""
                if b.level == 2:
                    section = [section[0] + 1, 0]
                    number = f"{section[0]}. "
                elif b.level == 3:
                    section[1] += 1
                    number = f"{section[0]}.{section[1]} "
                out.append("#" * b.level + " " + number + self.inline_md(heading_text(b.text), numbers))
            elif isinstance(b, Paragraph):
                out.append(self.inline_md(b.text, numbers))
            elif isinstance(b, Display):
                eq_no += 1
                body = aligned(b.rows, BUDGET_MD) if b.rows else b.tex
                out.append("$$\n" + _md_math(body) + f"\n\\tag{{{eq_no}}}\n$$")
            elif isinstance(b, Figure):
                fig_no += 1
                out.append(f"![Figure {fig_no}](figures/{b.stem}.png)\n\n"
                           f"*Figure {fig_no}.* {self.inline_md(b.caption, numbers)}")
            elif isinstance(b, Table):
                tab_no += 1
                header, rows, caption, align = b.header, b.rows, b.caption, b.align
                spec = {"l": ":---", "r": "---:", "c": ":---:"}
                lines = [f"*Table {tab_no}.* {self.inline_md(caption, numbers)}", "",
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

    def _display_tex(self, b: Display, budget: float, refs: set[str]) -> str:
        label = f"\\label{{{LABEL_PREFIX}{b.label}}}" if b.label and b.label in refs else ""
        if not b.rows:
            return "\\begin{equation}" + label + "\n" + _spread_matrices(b.tex) + "\n\\end{equation}"
        rows = [Row(r.lhs, (), r.rel, _matrix_tex(r.rhs, budget - visible_width(r.lhs) - 3))
                if "\\begin{bmatrix}" in r.rhs else r for r in b.rows]
        lines = [ln for r in rows for ln in row_lines(r, budget)]
        body = " \\notag \\\\\n".join(lines)
        return "\\begin{align}\n" + body + (" " + label if label else "") + "\n\\end{align}"

    def latex_body(self, columns: int = 1) -> str:
        """The report's body: sections, displays, floats, no preamble (``\\input`` it into a paper).

        Its header lists the packages it needs; figures are read from ``\\gradflowdir figures/``
        (``\\gradflowdir`` defaults to empty: define it as ``report/`` when the report is in a
        folder of that name); every label starts with ``gf:``.
        """
        blocks, _ = self._resolved()
        refs = {lab for b in blocks if isinstance(b, Paragraph) for m in _REF.findall(b.text)
                for lab in m.split(";")} | self._referenced()
        budget = BUDGET_TWO if columns == 2 else BUDGET_ONE
        body = ["% gradflow report body (report-body.tex): \\input it into a LaTeX document that loads\n"
                "% " + ", ".join(BODY_PACKAGES) + " (hyperref optional).\n"
                "% Figures are read from \\gradflowdir figures/ (define \\gradflowdir, e.g. as report/,\n"
                "% before \\input when the report is in another folder); all labels start with gf:.\n"
                "\\providecommand{\\gradflowdir}{}\n"
                "% a figure at its print width #1, or the line width where the line is narrower\n"
                "\\providecommand{\\gradflowfigure}[2]{\\ifdim#1>\\linewidth\\includegraphics[width=\\linewidth,"
                "height=0.8\\textheight,keepaspectratio]{#2}\\else\\includegraphics[width=#1,height=0.8\\textheight,"
                "keepaspectratio]{#2}\\fi}"]
        for b in blocks:
            if isinstance(b, Heading):
                if b.level == 1:
                    continue
                cmd = {2: "section", 3: "subsection"}.get(b.level, "subsubsection")
                label = f"\\label{{{LABEL_PREFIX}{b.label}}}" if b.label and b.label in refs else ""
                title = self.inline_tex(heading_text(b.text))
                short = re.sub(r"\s*\$[^$]*\$", "", title).rstrip(" ,") if "$" in title else None
                opt = f"[{short}]" if short and short != title else ""
                body.append(f"\\{cmd}{opt}{{{title}}}{label}")  # LaTeX numbers its own sections
            elif isinstance(b, Paragraph):
                body.append(self.inline_tex(b.text))
            elif isinstance(b, Display):
                body.append(self._display_tex(b, budget, refs))
            elif isinstance(b, Figure):
                wide = columns == 2 and (b.width > 0.7 or (b.print_width or 0) > 3.5)
                env = "figure*" if wide else "figure"
                if b.print_width is not None:  # at print size, shrunk only where the line is narrower
                    width = f"{b.print_width:.2f}in"
                else:
                    width = f"{b.width if columns == 1 else (min(b.width + 0.1, 1.0) if wide else 1.0):.2f}\\linewidth"
                body.append(f"\\begin{{{env}}}[htbp]\n\\centering\n"
                            f"\\gradflowfigure{{{width}}}{{\\gradflowdir figures/{b.stem}.pdf}}\n"
                            f"\\caption{{{self.inline_tex(b.caption)}}}\\label{{{LABEL_PREFIX}{b.label}}}\n"
                            f"\\end{{{env}}}")
            elif isinstance(b, Table):
                env = "table*" if columns == 2 and len(b.header) > 4 else "table"
                lines = [f"\\begin{{{env}}}[htbp]", "\\centering", "\\small",
                         "\\caption{" + self.inline_tex(b.caption) + "}\\label{" + LABEL_PREFIX + b.label + "}",
                         "\\setlength{\\tabcolsep}{4pt}",
                         "\\begin{tabular}{" + b.align + "}", "\\toprule",
                         " & ".join(_shortstack(self.inline_tex(h)) for h in b.header) + " \\\\", "\\midrule"]
                lines += [" & ".join(self.inline_tex(c) for c in r) + " \\\\" for r in b.rows]
                lines += ["\\bottomrule", "\\end{tabular}", f"\\end{{{env}}}"]
                body.append("\n".join(lines))
            elif isinstance(b, Code):
                body.append(tex_code_block(b.text))
        return "\n\n".join(body) + "\n"

    def latex(self, title: str, date: str, columns: int = 1, body: str | None = None) -> str:
        """A standalone article: the preamble, the title, the body (inline, or ``\\input{body}``),
        the bibliography from ``references.bib`` (BibTeX, natbib, author–year)."""
        inner = self.latex_body(columns) if body is None else f"\\input{{{body}}}\n"
        return (latex_preamble(columns) + "\\title{" + self.inline_tex(title) + "}\n"
                "\\author{generated by gradflow}\n\\date{" + tex_text(date) + "}\n\n"
                "\\begin{document}\n\\maketitle\n\n" + inner
                + "\n\\bibliographystyle{plainnat}\n\\bibliography{references}\n\n\\end{document}\n")


def latex_preamble(columns: int = 1) -> str:
    """The preamble of the standalone report: article, one or two columns, the body's packages."""
    opts = "10pt,twocolumn" if columns == 2 else "11pt"
    margin = "1.8cm" if columns == 2 else "2.4cm"
    return (f"\\documentclass[{opts}]{{article}}\n"
            f"\\usepackage[margin={margin}]{{geometry}}\n"
            "\\usepackage{amsmath}\n\\usepackage{amssymb}\n\\usepackage{graphicx}\n\\usepackage{booktabs}\n"
            "\\usepackage[round]{natbib}\n\\usepackage[hidelinks]{hyperref}\n"
            "% long displays break across pages between their lines\n"
            "\\allowdisplaybreaks\n\\setlength{\\emergencystretch}{3em}\n"
            # a column the next display does not fit ends short, not with its paragraphs spread apart
            + ("\\raggedbottom\n" if columns == 2 else ""))


def _shortstack(cell: str) -> str:
    """A long table header over two lines (at its last space outside math)."""
    if len(re.sub(r"\$[^$]*\$", "xxxx", cell)) <= 12 or " " not in cell:
        return cell
    parts = re.split(r"( )(?![^$]*\$(?:[^$]*\$[^$]*\$)*[^$]*$)", cell)
    words = [p for p in parts if p and p != " "]
    if len(words) < 2:
        return cell
    return "\\begin{tabular}[b]{@{}c@{}}" + " ".join(words[:-1]) + "\\\\" + words[-1] + "\\end{tabular}"
