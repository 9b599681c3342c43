"""Text a user supplied (paths, command lines, names), made inert for LaTeX and Markdown.

A code block is never a LaTeX ``verbatim`` environment (which ends at the first
``\\end{verbatim}`` in its text, whatever surrounds it): every character is written as itself
or as the command that prints it, so nothing in the text is ever read as TeX. In Markdown the
fence is longer than any run of backticks in the text, so the text cannot close it.
"""

from __future__ import annotations

import re

#: characters that TeX would read as markup, and the commands that print them (cmtt has no
#: ligatures, so "--" stays two hyphens)
_TEX_CHARS = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#",
    "^": r"\textasciicircum{}", "_": r"\_", "%": r"\%", "~": r"\textasciitilde{}",
    "'": r"\textquotesingle{}", "`": r"\textasciigrave{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}", '"': r"\textquotedbl{}",
}


def tex_chars(text: str, breakable: bool = False) -> str:
    """``text`` as LaTeX that prints exactly it; characters outside printable ASCII become '?'.

    ``breakable``: allow a line break after '/' and markup characters, and inside any run of 30
    characters without one, so that a long path wraps instead of running off the page.
    """
    out = []
    prev, run = "", 0
    for c in text:
        if not (c.isascii() and c.isprintable()):
            c = "?"
        if c == " ":  # a space after a space or at the start would be dropped by TeX: keep it
            out.append(" " if prev not in ("", " ") else "\\ ")
            run = 0
        else:
            out.append(_TEX_CHARS.get(c, c))
            run += 1
            if breakable and (c == "/" or c in _TEX_CHARS or run >= 30):
                out.append("\\allowbreak{}")
                run = 0
        prev = c
    return "".join(out)


def tex_code_block(text: str) -> str:
    """A block of monospaced lines, each printed character by character (no verbatim)."""
    # the typewriter font's own backslash (slot 92 of cmtt): \textbackslash is OMS, absent in cmtt,
    # and pdflatex substituted cmsy's with a font warning (the "Reproduce" block's line continuation)
    lines = [tex_chars(line, breakable=True).replace(r"\textbackslash{}", r"{\char92}") or r"\mbox{}"
             for line in text.split("\n")]
    return ("{\\small\\ttfamily\\raggedright\\noindent\n" + "\\\\\n".join(lines) + "\\par}")


def md_code_block(text: str, info: str = "sh") -> str:
    """A fenced Markdown code block that ``text`` cannot close."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"
