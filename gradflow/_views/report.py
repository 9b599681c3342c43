"""Derivation reports: the mathematics of gradient flow and the numbers that confirm it, as files.

:func:`write_report` writes, for one or more cells, a self-contained report directory::

    report.md          GitHub-renderable Markdown ($$ display math, $ inline math)
    report.tex         the same content as a standalone LaTeX article (pdflatex + BibTeX)
    report-body.tex    its body alone, to input into a paper (no preamble)
    slides.tex         beamer slides of the same derivation and figures (``slides=True``)
    figures/           every figure as PDF and PNG
    references.bib     the bibliography (gradflow's package data)
    flows.json         the measured curves behind the figures
    provenance.json    command line, versions, seed, sizes, date ("input": m, an int, or
                       {cell: m} where the cells' default sizes differ; "inputs": always {cell: m})

This module is a view: every formula is printed from the symbolic core (the cells' recorded
recurrences, :meth:`Cell.jacobian`, :mod:`gradflow._symbolic.many_steps`), every number from the numeric
engine (:mod:`gradflow._numeric.flow`, :mod:`gradflow._numeric.analysis`); only the connecting prose is
written here. Claims in the prose that depend on the algebra (no W in the carousel, an identity
block, a finite bound) are checked on the symbolic objects before they are stated.

The report is built in a temporary sibling directory and moved into place only when complete,
so a failed run never leaves a half-written report behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sympy as sp

from .._checks import GradflowError, check_columns, positive_int
from .._numeric.flow import json_number
from .._symbolic.cell import Cell
from .._symbolic.cells import get_cell
from .bibtex import bib_for_bibtex, bibliography_text, parse_bibtex
from .derivation import derive_cell
from .document import Doc
from .evidence import Evidence, Measurement, evidence_section, input_words, measure

#: files whose presence marks a directory as holding a gradflow report
REPORT_MARKERS = ("report.md", "report.tex", "provenance.json")

#: Debian packages that provide pdflatex and every LaTeX package report.tex uses
TEXLIVE_PACKAGES = ("texlive-latex-base", "texlive-latex-recommended", "texlive-fonts-recommended",
                    "texlive-pictures")  # pictures: pgf, which beamer (the slides) needs


# ================================================================================================
# The report
# ================================================================================================


def _versions() -> dict:
    import matplotlib

    from .._version import __version__

    return {"gradflow": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "sympy": sp.__version__, "matplotlib": matplotlib.__version__}


def _canonical_command(cells: list[Cell], out_dir: str, hidden: int, steps: int, seed: int,
                       input: int | None, forget_bias: float | None = None, init: str | None = None,
                       figure_size: str = "two-column") -> str:
    fb = [] if forget_bias is None else ["--forget-bias", repr(float(forget_bias))]
    fb += [] if init is None else ["--init", init]
    fs = [] if figure_size == "two-column" else ["--figure-size", figure_size]
    return shlex.join(["gradflow", "report", *[c.name for c in cells], "-o", out_dir,
                       "--hidden", str(hidden), "--steps", str(steps), "--seed", str(seed),
                       *([] if input is None else ["--input", str(input)]), *fb, *fs])


def _wrap_command(cmd: str, width: int = 78) -> str:
    """A shell command folded with backslash continuations (still a valid command)."""
    lines, cur = [], ""
    for tok in shlex.split(cmd):
        q = shlex.quote(tok)
        if cur and len(cur) + 1 + len(q) > width - 2:
            lines.append(cur + " \\")
            cur = "    " + q
        else:
            cur = (cur + " " + q) if cur else q
    lines.append(cur)
    return "\n".join(lines)


def _check_out_dir(out_dir, force: bool) -> Path:
    """The absolute output directory, or ValueError if it cannot (or must not) be written."""
    from .safe_write import check_target

    return check_target(out_dir, force)


def write_report(cells: str | Cell | Iterable[str | Cell], out_dir: str | os.PathLike, *, hidden: int = 16,
                 steps: int = 100, seed: int = 0, input: int | None = None,
                 forget_bias: float | None = None,
                 command: str | Sequence[str] | None = None, force: bool = False,
                 pdf: bool = False, columns: int = 1, slides: bool = False,
                 init: str | None = None, figure_size: str = "two-column") -> Path:
    """Write a derivation report for ``cells`` into ``out_dir`` and return its path.

    The directory receives ``report.md``, ``report.tex``, ``figures/`` (PDF and PNG),
    ``references.bib``, ``flows.json`` and ``provenance.json`` (see the module docstring).

    Arguments:
        cells: cell names (or one name); duplicates are dropped, order is kept.
        out_dir: the report directory; created if missing (with its parents).
        hidden, steps, input: n, T and m of the numeric runs. ``input`` defaults to ``hidden``, but
            for Mamba and S4D to n / N with their reference code's N per channel (Mamba's
            ``d_state`` = 16, S4D's 32 complex modes, or the largest divisor of n below it):
            each cell's own m, :func:`gradflow._numeric.reference_init.default_input`.
        seed: seed of the weights and the inputs.
        forget_bias: forget-gate bias b_f of the cells that have a forget gate (default: the
            initialisation's own), e.g. 1 as recommended by Jozefowicz et al. (2015).
        command: the command line that produced the report, as a string or argv list (the CLI
            passes the real one); default: the equivalent ``gradflow report`` command.
        force: replace the files of a gradflow report already in ``out_dir`` (those its
            manifest ``.gradflow-manifest.json`` lists); everything else there is kept.
        pdf: also compile ``report.pdf`` (see :func:`compile_pdf`) while the directory is locked;
            if that fails the report stays installed and the error is raised.
        columns: 1 or 2, the layout of the standalone ``report.tex`` (the body breaks its
            displays to that width).
        slides: also write ``slides.tex`` (beamer), compiled to ``slides.pdf`` with ``pdf``.
        init: the init scheme of every cell's run (``gf.INIT_SCHEMES``); default: the cell's own,
            but the reference init for the state-space cells (``mamba``, ``s4d-lin``, ``rg-lru``).
        figure_size: ``"one-column"`` (3.3 in), ``"two-column"`` (the 6.9 in page width) or
            ``"slide"``: figures drawn at that print size with 8–10 pt fonts (see
            :data:`gradflow._views.plots.FIGURE_SIZES`).

    Raises:
        ValueError: an unknown cell or bad size; ``out_dir`` holds a report and ``force`` is
            False; ``out_dir`` is not a directory, not empty, or cannot be written. Nothing is
            left in ``out_dir`` by a failed run.
    """
    if isinstance(cells, (str, Cell)):
        cells = [cells]
    resolved: list[Cell] = []
    for c in cells:
        c = get_cell(c)
        if c not in resolved:
            resolved.append(c)
    if not resolved:
        raise GradflowError("name at least one cell")
    hidden = positive_int(hidden, "hidden", 1)
    steps = positive_int(steps, "steps", 2)
    seed = positive_int(seed, "seed", 0)
    input = None if input is None else positive_int(input, "input", 1)
    columns = check_columns(columns)
    from .plots import figure_size as _check_figure_size

    _check_figure_size(figure_size)
    if forget_bias is not None:
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float)) \
                or not np.isfinite(forget_bias):
            raise GradflowError(f"forget bias must be a finite number, got {forget_bias!r}")
        if not any(c.has_forget_gate for c in resolved):
            raise GradflowError("a forget bias needs a cell with a forget gate (lstm)")
    from .._checks import one_of
    from .._numeric.reference_init import REFERENCE_INIT, check_fits, default_input
    from .._numeric.size_guard import check_report_size
    from .._numeric.structure import structured_path
    from .._vocabulary import INIT_SCHEMES
    from .safe_write import open_target

    if init is not None:
        init = one_of(init, "init", INIT_SCHEMES)
    inits = {c.name: init or REFERENCE_INIT.get(c.name, c.default_init) for c in resolved}
    # m per cell: the one given, else n, but n / N for Mamba and S4D (their usual N per channel)
    inputs = {c.name: default_input(inits[c.name], hidden) if input is None else input for c in resolved}
    for c in resolved:  # before anything is derived or written
        try:
            check_fits(inits[c.name], c.name, hidden, inputs[c.name])
        except GradflowError as e:
            if init is not None:
                raise
            raise GradflowError(f"{e} ({inits[c.name]} is {c.name}'s default init here; report {c.name} "
                                "separately at sizes that fit, or give an init such as pytorch)") from None

    check_report_size(resolved, hidden, input, steps, {c.name for c in resolved if structured_path(c)}, inits)
    out = _check_out_dir(out_dir, force)
    with open_target(out, force) as target:
        assert target.stage is not None
        _build(target.stage, resolved, out, hidden=hidden, steps=steps, seed=seed, inputs=inputs,
               forget_bias=forget_bias, command=command, out_arg=_typed_path(out_dir, out),
               columns=columns, slides=slides, init=init, inits=inits,
               figure_size=figure_size)
        target.install()
        if pdf:
            target.compile_pdf(_pdflatex_runner(out))
            if slides:
                target.compile_pdf(_pdflatex_runner(out, name="slides"), name="slides")
    return out


@dataclass
class Build:
    """Everything a report's sections read (the run's parameters) and write (measurements, evidence)."""

    stage: Path
    cells: list[Cell]
    hidden: int
    inputs: dict[str, int]  # m of each cell's run (one --input, or each cell's default)
    steps: int
    seed: int
    forget_bias: float | None
    versions: dict[str, str]
    date: str
    command: str
    canonical: str
    doc: Doc
    runs: dict[str, Measurement] = field(default_factory=dict)
    evidence: Evidence | None = None
    paths: list[dict] = field(default_factory=list)
    inits: dict[str, str] = field(default_factory=dict)
    figure_size: str = "two-column"


def introduction(b: Build) -> None:
    """The title and the opening paragraphs: what the report does, its sources, its notation."""
    doc, cells, versions, date = b.doc, b.cells, b.versions, b.date
    names = ", ".join(c.name for c in cells)
    title = f"Gradient flow in recurrent networks: {names}"
    doc.heading(1, title)
    doc.para(f"Generated by gradflow {versions['gradflow']} on {date[:10]}. For each requested cell "
             "this report derives how the gradient with respect to an earlier state depends on the "
             "Jacobians $\\partial s_t/\\partial s_k$: for a loss on the last step alone, "
             "$\\partial L/\\partial s_k = (\\partial L/\\partial s_T)(\\partial s_T/\\partial s_k)$; for a "
             "loss summed over steps, $L = \\sum_t L_t$, it is the sum "
             "$\\sum_{t \\ge k} (\\partial L_t/\\partial s_t)(\\partial s_t/\\partial s_k)$, each term "
             "carrying one such Jacobian. It follows how $\\partial s_t/\\partial s_k$ depends on the "
             "one-step Jacobians of the recurrence, and then measures the same "
             "quantities on a network with random weights. Every formula is printed from gradflow's "
             "symbolic derivation of the cell's recurrence as written once in the library; the "
             "connecting text is fixed commentary.")
    # the Elman network is named only when the report studies one (an Elman cell cites elman1990)
    elman = (" The simple recurrent network studied here goes back to @[elman1990]."
             if any(c.reference == "elman1990" for c in cells) else "")
    doc.para("Gradients that shrink or grow geometrically with the time lag were analysed by "
             "@[hochreiter1991untersuchungen] and by @[bengio1994learning], and bounded through the "
             f"recurrent weight matrix by @[pascanu2013difficulty].{elman} The remedies give the gradient a path whose "
             "one-step Jacobian is close to the identity: the additive cell state of the LSTM "
             "[@hochreiter1997lstm], with the forget gate of its common form [@gers2000forget], the "
             "interpolating update of "
             "the GRU [@cho2014gru], the identity initialisation of ReLU recurrences [@le2015irnn] "
             "and, in feed-forward networks, residual connections [@he2016residual].")
    doc.para("Notation. Vectors are columns. Jacobians use numerator layout: "
             "$\\partial y/\\partial x$ has one row per entry of $y$ and one column per entry of $x$, "
             "so chain-rule products run from the output on the left to the input on the right. "
             "$u \\odot v$ is the entry-wise (Hadamard) product and $v^{\\odot 2} = v \\odot v$; "
             "$\\operatorname{diag}(v)$ is the diagonal matrix with $v$ on its diagonal; $I$ "
             "the identity; $\\varphi$ an activation applied entry by entry, $\\varphi'$ its derivative, "
             "and $\\tanh^{2}(v) = \\tanh(v) \\odot \\tanh(v)$; $\\sigma(a)$ the logistic sigmoid, "
             "always with its argument; $H$ the Heaviside step (the derivative of "
             "ReLU, $H(0) = 0$); $\\sigma_i(A)$ the singular values of a matrix $A$, always with a "
             "subscript, and $\\sigma_{\\max}(A) = \\lVert A \\rVert_2$ the largest. "
             "$W$ are recurrent weights ($n \\times n$), $U$ input weights ($n \\times m$), $b$ "
             "biases; $n$ is the hidden size and $m$ the input size." + notation_extras(cells))


def notation_extras(cells: list[Cell]) -> str:
    """The Notation sentence for a matrix memory (mLSTM), only where a printed recurrence holds ⊗."""
    from sympy import KroneckerProduct

    mem = [c for c in cells if any(e.has(KroneckerProduct) for e in c.recorded.definitions.values())]
    if not mem:
        return ""
    return (" For a matrix memory (" + ", ".join(f"`{c.name}`" for c in mem) + "), $C_t$ in the state and "
            "in the formulas is $\\operatorname{vec} C_t$, the $n \\times n$ matrix with its columns "
            "stacked ($n^2$ entries); $\\otimes$ is the Kronecker product, so "
            "$\\operatorname{vec}(v k^{T}) = k \\otimes v$ and $C q = (q^{T} \\otimes I) \\operatorname{vec} C$; "
            "a $1$ before a scalar is a column of ones ($1 f_t$ has $f_t$ in every entry).")



def derivation(b: Build) -> None:
    """Section: every requested cell derived from its recurrence (:mod:`.derivation`)."""
    b.doc.heading(2, "Derivation", label="sec:derivation")
    for cell in b.cells:
        derive_cell(b.doc, cell)
    from .teaching import teach

    teach(b.doc, b.cells)


def numeric_evidence(b: Build) -> None:
    """Section: the same quantities measured on random weights (:mod:`.evidence`)."""
    b.runs = measure(b.cells, b.hidden, b.inputs, b.steps, b.seed, b.forget_bias, b.inits)
    b.evidence = evidence_section(b.doc, b.stage, b.cells, b.runs, b.hidden, b.inputs, b.steps, b.seed,
                                  b.forget_bias, figure_size=b.figure_size)


def gradient_paths(b: Build) -> None:
    """Section: which path carries each cell's gradient, read off its Jacobian (:mod:`.paths`)."""
    from .paths import gradient_path_section

    b.paths = gradient_path_section(b.doc, b.cells, b.runs, b.inputs, b.steps, b.seed)


def reproduce(b: Build) -> None:
    """Section: the command line, the versions and where the raw numbers are."""
    doc, versions, date = b.doc, b.versions, b.date
    command_str, canonical = b.command, b.canonical
    hidden, steps, seed = b.hidden, b.steps, b.seed
    doc.heading(2, "Reproduce")
    doc.para("This report was produced by the command")
    doc.code(_wrap_command(command_str) if command_str else "")
    if command_str != canonical:
        doc.para("which is equivalent to (every parameter explicit"
                 + ("; no `--input`, so that each cell takes its own default input size)"
                    if len(set(b.inputs.values())) > 1 else ")"))
        doc.code(_wrap_command(canonical))
    doc.para("with " + ", ".join(f"{k} {v}" for k, v in versions.items())
             + f" on {platform.system() or 'unknown OS'} {platform.machine()}, at {date} (UTC). "
             f"Sizes: $n = {hidden}$, {input_words(b.inputs)}, $T = {steps}$, batch 1; seed {seed}. The same "
             "command with the same versions regenerates the figures and numbers; "
             "`provenance.json` records all of this, and `flows.json` holds the measured curves. "
             "To cite gradflow itself [@gradflow], run `gradflow cite`.")



#: the report's sections in order; level-2 headings are numbered by the document, in this order
SECTIONS: tuple[Callable[[Build], None], ...] = (introduction, derivation, numeric_evidence, gradient_paths,
                                                 reproduce)


def _typed_path(out_dir, out: Path) -> str:
    """The output folder as the reproduce command should name it: as typed when relative, else
    relative to the current folder when inside it, else "." (run from the report's folder)."""
    typed = os.fspath(out_dir)
    if not os.path.isabs(typed):
        return typed
    try:
        return Path(out).relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return "."


def _build(stage: Path, cells: list[Cell], out: Path, *, hidden: int, steps: int, seed: int,
           inputs: dict[str, int], forget_bias: float | None, command, out_arg: str, columns: int = 1,
           slides: bool = False, init: str | None = None,
           inits: dict[str, str] | None = None, figure_size: str = "two-column") -> None:
    bib_text = bibliography_text()
    bib = parse_bibtex(bib_text)
    versions = _versions()
    date = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    common = set(inputs.values())  # one m for every cell: written; else each cell's default (no --input)
    input = common.pop() if len(common) == 1 else None
    canonical = _canonical_command(cells, out_arg, hidden, steps, seed, input, forget_bias, init, figure_size)
    if command is None:
        command_str = canonical
    elif isinstance(command, str):
        command_str = command
    else:
        command_str = shlex.join([str(a) for a in command])
    command_str = relative_output(command_str)
    b = Build(stage, cells, hidden, dict(inputs), steps, seed, forget_bias, versions, date, command_str, canonical,
              Doc(bib), inits=dict(inits or {}), figure_size=figure_size)
    for section in SECTIONS:
        section(b)
    doc, runs = b.doc, b.runs
    assert b.evidence is not None
    numeric = b.evidence
    title = f"Gradient flow in recurrent networks: {', '.join(c.name for c in cells)}"

    md = doc.markdown()
    (stage / "report.md").write_text(md, encoding="utf-8")
    (stage / "report-body.tex").write_text(doc.latex_body(columns), encoding="utf-8")
    (stage / "report.tex").write_text(doc.latex(title, date[:10], columns, body="report-body"),
                                      encoding="utf-8")
    if slides:
        from .slides import slides_tex

        (stage / "slides.tex").write_text(slides_tex(b, title), encoding="utf-8")
    (stage / "references.bib").write_text(bib_for_bibtex(bib_text), encoding="utf-8")

    flows_json = {name: {**r.flow.to_json(), "input": inputs[name], "init": r.init,
                         "sigma_max_W": r.sigma_max_W,
                         "singular_values": {str(k): [None if v == -np.inf else "unresolved" if np.isnan(v)
                                                      else float(v) for v in s]
                                             for k, s in r.spectra.items()}}
                  for name, r in runs.items()}
    (stage / "flows.json").write_text(json.dumps({"flows": flows_json, "phase": numeric.phase},
                                                 allow_nan=False) + "\n", encoding="utf-8")

    def clean(x, what):
        if isinstance(x, (float, np.floating)):
            return json_number(x, what)
        if isinstance(x, np.integer):
            return x.item()
        return x

    provenance = {
        "command": command_str,
        "canonical_command": canonical,
        "argv": None if command is None or isinstance(command, str) else [str(a) for a in command],
        "cells": [c.name for c in cells],
        "hidden": hidden, "input": input if input is not None else dict(inputs),  # cell → m where they differ
        "inputs": dict(inputs),  # always cell → m, for readers that want one type
        "steps": steps, "batch": 1, "seed": seed,
        "forget_bias": forget_bias,
        "init": {c.name: runs[c.name].init for c in cells},
        "date": date,
        "versions": versions,
        "platform": {"system": platform.system(), "machine": platform.machine(),
                     "python_implementation": platform.python_implementation()},
        "output": out_arg,
        "figures": numeric.figures,
        "figure_size": figure_size,
        "claims": _jsonable(numeric.claims),
        "decay_table": [{k: clean(v, f"decay table {row['cell']} {k}") for k, v in row.items()}
                        for row in numeric.table],
        "references": doc.cited,
    }
    (stage / "provenance.json").write_text(json.dumps(provenance, indent=2, allow_nan=False) + "\n",
                                           encoding="utf-8")


def _jsonable(x):
    """Plain JSON values for the claims' numbers: ±∞ and NaN as strings (never a NaN token)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if np.isfinite(v) else ("nan" if np.isnan(v) else "inf" if v > 0 else "-inf")
    return x


def compile_pdf(out_dir: str | os.PathLike, *, timeout: float = 180.0) -> Path:
    """Compile ``out_dir/report.tex`` (pdflatex, BibTeX, pdflatex twice); return the PDF's path.

    Only ``report.pdf`` is added to the report (on a failure, ``report.log`` instead); the
    auxiliary files stay in a work folder that is removed. Where BibTeX is missing the PDF is
    still made (its citations unresolved) and a one-line warning says so.

    Raises:
        ValueError: pdflatex is not installed, or the compilation fails (the first LaTeX error
            is quoted; the full log is ``report.log``).
    """
    from .safe_write import locked_report

    out = Path(out_dir)
    if not (out / "report.tex").is_file():
        raise GradflowError(f"no report.tex in {out}")
    with locked_report(out) as target:
        return target.compile_pdf(_pdflatex_runner(out, timeout))


def _pdflatex_runner(out: Path, timeout: float = 180.0, name: str = "report"):
    """pdflatex, bibtex, pdflatex twice in a work folder; errors name the report's own files."""
    from .safe_write import run_bibtex, run_pdflatex

    tex = out / f"{name}.tex"
    exe = shutil.which("pdflatex")
    if exe is None:
        raise GradflowError(f"pdflatex not found (install TeX Live, e.g. apt-get install "
                         f"{' '.join(TEXLIVE_PACKAGES)}); report.md and report.tex are in {out}")
    bibtex = shutil.which("bibtex")

    def latex_pass(work: Path) -> None:
        try:
            proc = run_pdflatex(exe, work, timeout, name)
        except subprocess.TimeoutExpired:
            raise GradflowError(f"pdflatex did not finish within {timeout:g} s on {tex}") from None
        if proc.returncode != 0:
            log = (work / f"{name}.log").read_text(encoding="latin-1") if (work / f"{name}.log").exists() \
                else proc.stdout.decode("latin-1")
            first = next((ln for ln in log.splitlines() if ln.startswith("!")), "unknown error")
            raise GradflowError(f"pdflatex failed on {tex}: {first.lstrip('! ')} (see {out / (name + '.log')})")

    def run(work: Path) -> None:
        latex_pass(work)
        aux = work / f"{name}.aux"
        if aux.is_file() and "\\bibdata" in aux.read_text(encoding="latin-1"):
            if bibtex is None:
                from .._numeric.loading import GradflowNote

                warnings.warn("bibtex not found: the PDF's citations are unresolved (bibtex comes with "
                              "TeX Live: texlive-binaries)", GradflowNote, stacklevel=2)
            else:
                try:
                    proc = run_bibtex(bibtex, work, timeout, name)
                except subprocess.TimeoutExpired:
                    raise GradflowError(f"bibtex did not finish within {timeout:g} s on {tex}") from None
                if proc.returncode > 1:  # 1: warnings only
                    raise GradflowError(f"bibtex failed on {tex}: "
                                        + proc.stdout.decode("latin-1").strip().splitlines()[-1])
        for _ in range(3):  # twice, and once more while the cross-references still move
            latex_pass(work)
            log = work / f"{name}.log"
            if _ and not (log.is_file() and "Rerun to get cross-references right" in log.read_text(
                    encoding="latin-1")):
                break
        if not (work / f"{name}.pdf").is_file():
            raise GradflowError(f"pdflatex produced no PDF in {out}")

    return run


def relative_output(command: str) -> str:
    """``command`` with an absolute ``-o``/``--output`` directory replaced by its last component, so that
    the report names no absolute path (``-o /tmp/x/r1`` → ``-o r1``)."""
    try:
        args = shlex.split(command)
    except ValueError:
        return command
    out, changed = [], False
    for i, a in enumerate(args):
        prev = args[i - 1] if i else ""
        if prev in ("-o", "--output") and Path(a).is_absolute():
            a, changed = Path(a).name or ".", True
        elif a.startswith("--output=") and Path(a[9:]).is_absolute():
            a, changed = "--output=" + (Path(a[9:]).name or "."), True
        out.append(a)
    return shlex.join(out) if changed else command
