"""``gradflow report``: a derivation report (Markdown, LaTeX, figures, references, provenance).

    gradflow report CELL [CELL ...] -o DIR [--hidden N] [--steps T] [--seed S] [--input M]
                    [--forget-bias F] [--figure-size one-column|two-column|slide] [--force] [--pdf]

With ``--pdf`` it also runs pdflatex there. The command line recorded in the report is the one
this run parsed (``args.argv``, set by :func:`gradflow._cli.main`), never re-read from ``sys.argv``.
"""

from __future__ import annotations

import argparse

from .options import float_option, int_option, say

HELP = "write a derivation report (Markdown, LaTeX, figures, references) for cells"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``gradflow report``."""
    p.add_argument("cells", nargs="+", metavar="CELL", help="cell names (gradflow derive --list)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="report directory")
    p.add_argument("--hidden", default="16", help="hidden size n of the numeric runs (default 16)")
    p.add_argument("--steps", default="100", help="sequence length T (default 100)")
    p.add_argument("--seed", default="0", help="seed of the weights and inputs (default 0)")
    p.add_argument("--input", default=None, help="input size m (default: the hidden size)")
    p.add_argument("--forget-bias", default=None, metavar="F",
                   help="forget-gate bias of the LSTM in the numeric runs (e.g. 1)")
    p.add_argument("--figure-size", default="two-column", choices=("one-column", "two-column", "slide"),
                   help="size the figures for where they go: a 3.3 in column, the 6.9 in page width "
                        "(default) or a slide; fonts are 8-10 pt at that size")
    p.add_argument("--force", action="store_true", help="replace a report already in DIR")
    p.add_argument("--pdf", action="store_true", help="also compile report.tex with pdflatex")


def run(a: argparse.Namespace) -> int:
    from .._symbolic.cells import get_cell
    from .._views.report import write_report

    cells = [get_cell(c) for c in a.cells]  # unknown names fail before anything is written
    hidden = int_option(a.hidden, "--hidden", 1)
    steps = int_option(a.steps, "--steps", 2)
    seed = int_option(a.seed, "--seed", 0)
    m = None if a.input is None else int_option(a.input, "--input", 1)
    fb = float_option(a.forget_bias, "--forget-bias")
    argv = ["gradflow", *a.argv]  # exactly what was parsed: one source for the recorded command
    out = write_report(cells, a.output, hidden=hidden, steps=steps, seed=seed, input=m,
                       forget_bias=fb, command=argv, force=a.force, pdf=a.pdf, figure_size=a.figure_size)
    say(f"wrote {out / 'report.md'} and {out / 'report.tex'}")
    if a.pdf:
        say(f"wrote {out / 'report.pdf'}")
    return 0

