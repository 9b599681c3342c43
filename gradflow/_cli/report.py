"""``gradflow report``: a derivation report (Markdown, LaTeX, figures, references, provenance).

    gradflow report CELL [CELL ...] -o DIR [--hidden N] [--steps T] [--seed S] [--input M]
                    [--forget-bias F] [--init SCHEME] [--figure-size one-column|two-column|slide]
                    [--force] [--pdf] [--columns 1|2] [--slides]

With ``--pdf`` it also runs pdflatex and BibTeX there (only report.pdf is added); ``--columns 2``
lays report.tex out in two columns; ``--slides`` also writes beamer slides (slides.tex).
The command line recorded in the report is the one
this run parsed (``args.argv``, set by :func:`gradflow._cli.main`), never re-read from ``sys.argv``.
"""

from __future__ import annotations

import argparse

from .._checks import GradflowError, check_columns
from .options import float_option, int_option, say

HELP = "write a derivation report (Markdown, LaTeX, figures, references) for cells"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``gradflow report``."""
    p.add_argument("cells", nargs="+", metavar="CELL", help="cell names (gradflow derive --list)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="report directory")
    p.add_argument("--hidden", default="16", help="hidden size n of the numeric runs (default 16)")
    p.add_argument("--steps", default="100", help="sequence length T (default 100)")
    p.add_argument("--seed", default="0", help="seed of the weights and inputs (default 0)")
    p.add_argument("--input", default=None, help="input size m (default: the hidden size, but hidden/N "
                   "for mamba (N = 16) and s4d (N = 32 complex modes), their usual state per channel, or "
                   "the largest divisor of hidden below it)")
    p.add_argument("--forget-bias", default=None, metavar="F",
                   help="forget-gate bias of the LSTM in the numeric runs (e.g. 1)")
    p.add_argument("--init", default=None, metavar="SCHEME",
                   help="init scheme of every cell's run (see gradflow flow --help); default: the cell's "
                        "own, the reference init for mamba-zoh, mamba-euler (mamba), s4d (s4d-lin) and "
                        "rg-lru (rg-lru): channels = --input, state size N = hidden/input")
    p.add_argument("--figure-size", default="two-column", choices=("one-column", "two-column", "slide"),
                   help="size the figures for where they go: a 3.3 in column, the 6.9 in page width "
                        "(default) or a slide; fonts are 8-10 pt at that size")
    p.add_argument("--force", action="store_true", help="replace a report already in DIR")
    p.add_argument("--pdf", action="store_true", help="also compile report.tex with pdflatex")
    p.add_argument("--columns", default="1", metavar="1|2",
                   help="text columns of the standalone report.tex (default 1)")
    p.add_argument("--slides", action="store_true",
                   help="also write beamer slides, slides.tex (and slides.pdf with --pdf)")


def run(a: argparse.Namespace) -> int:
    from .._symbolic.cells import get_cell
    from .._views.report import write_report

    cells = [get_cell(c) for c in a.cells]  # unknown names fail before anything is written
    hidden = int_option(a.hidden, "--hidden", 1)
    steps = int_option(a.steps, "--steps", 2)
    seed = int_option(a.seed, "--seed", 0)
    m = None if a.input is None else int_option(a.input, "--input", 1)
    fb = float_option(a.forget_bias, "--forget-bias")
    try:
        columns = check_columns(int_option(a.columns, "--columns", 1))
    except GradflowError:
        raise GradflowError(f"--columns must be 1 or 2, got {a.columns!r}") from None
    argv = ["gradflow", *a.argv]  # exactly what was parsed: one source for the recorded command
    out = write_report(cells, a.output, hidden=hidden, steps=steps, seed=seed, input=m,
                       forget_bias=fb, command=argv, force=a.force, pdf=a.pdf, columns=columns,
                       slides=a.slides,  # a missing bibtex is one "gradflow: note:" line
                       init=None if a.init is None else a.init.strip().lower(),
                       figure_size=a.figure_size)
    say(f"wrote {out / 'report.md'} and {out / 'report.tex'}")
    if a.slides:
        say(f"wrote {out / 'slides.tex'}")
    if a.pdf:
        say(f"wrote {out / 'report.pdf'}" + (f" and {out / 'slides.pdf'}" if a.slides else ""))
    return 0

