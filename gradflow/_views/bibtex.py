"""The bibliography: ``references.bib`` (package data) is the single source of every citation.

A small BibTeX reader (enough for our own file) and the formatting of entries for Markdown and
LaTeX reports, plus the citation of gradflow itself (``gradflow cite``, ``CITATION.cff``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from importlib import resources

from .._checks import GradflowError
from .._version import __version__

# ================================================================================================
# Bibliography: references.bib (package data) is the single source of every citation
# ================================================================================================


@dataclass(frozen=True)
class BibEntry:
    """One BibTeX entry: ``kind`` (``article``), ``key``, ``fields`` (lower-case names), ``raw`` text."""

    kind: str
    key: str
    fields: dict
    raw: str


_ENTRY_START = re.compile(r"^[ \t]*@[ \t]*([A-Za-z]+)[ \t]*\{[ \t]*([^\s,{}]+)[ \t]*,", re.M)
_FIELD_NAME = re.compile(r"([A-Za-z][\w-]*)\s*=\s*")
_BARE_VALUE = re.compile(r"[^\s,}]+")


def _braced(text: str, i: int) -> tuple[str, int]:
    """The content of the balanced ``{...}`` starting at ``text[i]`` and the index after it."""
    depth = 0
    for pos in range(i, len(text)):
        c = text[pos]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:pos], pos + 1
    raise GradflowError(f"unbalanced braces in BibTeX value at offset {i}")


def _quoted(text: str, i: int) -> tuple[str, int]:
    depth = 0
    for pos in range(i + 1, len(text)):
        c = text[pos]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == '"' and depth == 0:
            return text[i + 1:pos], pos + 1
    raise GradflowError(f"unterminated quoted BibTeX value at offset {i}")


def parse_bibtex(text: str) -> dict[str, BibEntry]:
    """Parse BibTeX ``text`` into ``key -> BibEntry`` (``ValueError`` if malformed)."""
    entries: dict[str, BibEntry] = {}
    for m in _ENTRY_START.finditer(text):
        kind, key = m.group(1).lower(), m.group(2)
        if kind in ("comment", "preamble", "string"):
            continue
        i, fields = m.end(), {}
        while True:
            while i < len(text) and (text[i].isspace() or text[i] == ","):
                i += 1
            if i >= len(text):
                raise GradflowError(f"BibTeX entry {key!r} is not closed")
            if text[i] == "}":
                i += 1
                break
            fm = _FIELD_NAME.match(text, i)
            if not fm:
                raise GradflowError(f"malformed field in BibTeX entry {key!r} at offset {i}")
            name, i = fm.group(1).lower(), fm.end()
            if i < len(text) and text[i] == "{":
                value, i = _braced(text, i)
            elif i < len(text) and text[i] == '"':
                value, i = _quoted(text, i)
            else:
                vm = _BARE_VALUE.match(text, i)
                if not vm:
                    raise GradflowError(f"missing value of {name} in BibTeX entry {key!r}")
                value, i = vm.group(0), vm.end()
            fields[name] = " ".join(value.split())
        if key in entries:
            raise GradflowError(f"duplicate BibTeX key {key!r}")
        start = text.rfind("\n", 0, m.start()) + 1
        entries[key] = BibEntry(kind, key, fields, text[start:i].strip())
    return entries


def bibliography_text() -> str:
    """The text of gradflow's ``references.bib`` (package data), gradflow's own version filled in."""
    text = resources.files("gradflow").joinpath("references.bib").read_text(encoding="utf-8")
    return text.replace("@VERSION@", __version__)


def bib_for_bibtex(text: str) -> str:
    """``references.bib`` as the report writes it for BibTeX: plainnat prints no ``eprint``, so an
    arXiv ``@misc`` entry (no venue otherwise) gets ``howpublished = {arXiv:ID [class]}``, the
    identifier the Markdown list prints; without it the PDF's entry ends at the year."""

    def fix(m: re.Match) -> str:
        block = m.group(0)
        field = lambda name: re.search(r"^[ \t]*" + name + r"\s*=\s*\{([^}]*)\}", block, re.M | re.I)  # noqa: E731
        eprint = field("eprint")
        if eprint is None or field("howpublished") or field("note"):
            return block
        arch, cls = field("archiveprefix"), field("primaryclass")
        words = f"{arch.group(1) if arch else 'arXiv'}:{eprint.group(1)}" + (f" [{cls.group(1)}]" if cls else "")
        return block[:eprint.start()] + f"  howpublished = {{{words}}},\n" + block[eprint.start():]

    return re.sub(r"@misc\{[^@]*", fix, text, flags=re.I)


def bibliography() -> dict[str, BibEntry]:
    """gradflow's references, ``key -> BibEntry``."""
    return parse_bibtex(bibliography_text())


def software_citation() -> str:
    """The BibTeX ``@software`` entry for gradflow itself."""
    return bibliography()["gradflow"].raw


def citation_cff() -> str:
    """CITATION.cff (Citation File Format 1.2.0) for gradflow, from its ``@software`` entry."""
    f = bibliography()["gradflow"].fields
    return (
        "cff-version: 1.2.0\n"
        'message: "If you use gradflow (installed as gradflow-rnn, imported as gradflow) in your research, '
        'please cite it as below."\n'
        "type: software\n"
        "title: gradflow\n"
        f'abstract: "{_plain(f["title"]).split(": ", 1)[-1].capitalize()}."\n'
        "authors:\n"
        f'  - name: "{_plain(f["author"])}"\n'
        f"version: {f['version']}\n"
        f"date-released: {f['date']}\n"
        f"license: {f['license']}\n"
    )


_ACCENTS = {'"': "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", "c": "\u0327"}


def _plain(s: str) -> str:
    """BibTeX/LaTeX text as plain Unicode: {\\"u} -> ü, -- -> –, braces dropped."""

    def accent(m):
        return unicodedata.normalize("NFC", m.group(2) + _ACCENTS[m.group(1)])

    s = re.sub(r"\{\\([\"'`^~c])\s*\{?([A-Za-z])\}?\}", accent, s)
    s = re.sub(r"\\([\"'`^~])\{?([A-Za-z])\}?", accent, s)
    s = s.replace("---", "\u2014").replace("--", "\u2013").replace("\\&", "&").replace("~", "\u00a0")
    return s.replace("{", "").replace("}", "")


def _split_top(s: str, sep: str) -> list[str]:
    """Split ``s`` on the regex ``sep`` outside braces."""
    out, depth, last = [], 0, 0
    for m in re.finditer(r"[{}]|" + sep, s):
        tok = m.group(0)
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
        elif depth == 0:
            out.append(s[last:m.start()])
            last = m.end()
    out.append(s[last:])
    return [p.strip() for p in out if p.strip()]


def _names(entry: BibEntry) -> list[tuple[str, str]]:
    """(first names, last name) of each author, in BibTeX spelling; corporate authors have no first."""
    out = []
    for name in _split_top(entry.fields.get("author", ""), r"\s+and\s+"):
        if name.startswith("{") and name.endswith("}") and _braced(name, 0)[1] == len(name):
            out.append(("", name[1:-1]))
            continue
        parts = _split_top(name, ",")
        if len(parts) >= 2:
            out.append((parts[1], parts[0]))
        else:
            words = name.split()
            out.append((" ".join(words[:-1]), words[-1]))
    return out


def entry_label(entry: BibEntry) -> str:
    """Author part of an author–year citation: Elman; Hochreiter & Schmidhuber; Cho et al."""
    last = [_plain(ln) for _, ln in _names(entry)]
    if len(last) == 1:
        return last[0]
    if len(last) <= 3:
        return ", ".join(last[:-1]) + " & " + last[-1]
    return last[0] + " et al."


def entry_sort_key(entry: BibEntry):
    names = _names(entry)
    return (_plain(names[0][1]).lower() if names else "", entry.fields.get("year", ""), entry.key)


def format_entry(entry: BibEntry, target: str) -> str:
    """One reference in prose form, as Markdown (``target="md"``) or LaTeX (``"tex"``)."""
    f = entry.fields
    md = target == "md"
    conv = _plain if md else (lambda s: s)

    def emph(s):
        return f"*{s}*" if md else r"\emph{" + s + "}"

    people = []
    for first, last in _names(entry):
        initials = " ".join(w[0] + "." for w in _plain(first).replace("-", " ").split())
        person = conv(last) if not initials else f"{initials if md else tex_text(initials)} {conv(last)}"
        people.append(person)
    if len(people) > 2:
        authors = ", ".join(people[:-1]) + ", and " + people[-1]
    else:
        authors = " and ".join(people)
    pages = conv(f["pages"]) if "pages" in f else None
    if entry.kind == "article":
        venue = emph(conv(f["journal"])) + f" {f.get('volume', '')}"
        venue += f"({f['number']})" if "number" in f else ""
        venue += f":{pages}" if pages else ""
    elif entry.kind == "inproceedings":
        venue = "In " + emph(conv(f["booktitle"]))
        if "series" in f and "volume" in f:
            venue += f", {conv(f['series'])} {f['volume']}"
        venue += f", pp. {pages}" if pages else ""
    elif entry.kind in ("mastersthesis", "phdthesis"):
        venue = f"{conv(f.get('type', 'Thesis'))}, {conv(f['school'])}"
    elif entry.kind == "software":
        venue = f"Software, version {f['version']}" + (f", {f['license']} license" if "license" in f else "")
    elif "eprint" in f:
        venue = f"{f.get('archiveprefix', 'arXiv')}:{f['eprint']}"
        venue += f" [{f['primaryclass']}]" if "primaryclass" in f else ""
    else:
        venue = conv(f.get("howpublished", f.get("note", "")))
    title = conv(f["title"])
    stop = "" if title.endswith(("?", "!", ".")) else "."  # "Were RNNs all we needed?", not "needed?."
    text = f"{authors} ({f.get('year', 'n.d.')}). {title}{stop} {venue}."
    if "doi" in f:
        doi = f["doi"]
        text += (f" doi:[{doi}](https://doi.org/{doi})" if md
                 else rf" doi:\href{{https://doi.org/{doi}}}{{\nolinkurl{{{doi}}}}}")
    return text


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_UNICODE = {"\u2014": "---", "\u2013": "--", "\u2018": "`", "\u2019": "'", "\u201c": "``",
                "\u201d": "''", "\u00a0": "~", "\u00d7": r"$\times$", "\u2212": "-", "\u2026": r"\ldots{}"}


def tex_text(s: str) -> str:
    """Plain text as LaTeX source that pdflatex always accepts (unknown characters become ?)."""
    out = []
    for ch in s:
        if ch in _TEX_SPECIAL:
            out.append(_TEX_SPECIAL[ch])
        elif ord(ch) < 128:
            out.append(ch)
        elif ch in _TEX_UNICODE:
            out.append(_TEX_UNICODE[ch])
        else:
            base = unicodedata.normalize("NFD", ch)
            marks = {v: k for k, v in _ACCENTS.items()}
            if len(base) == 2 and base[0].isascii() and base[1] in marks:
                out.append("{\\" + marks[base[1]] + "{" + base[0] + "}}")
            else:
                out.append("?")
    return "".join(out)
