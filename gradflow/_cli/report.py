"""``gradflow report`` and ``gradflow cite``.

    gradflow report CELL [CELL ...] -o DIR [--hidden N] [--steps T] [--seed S] [--input M]
                    [--force] [--pdf]
    gradflow cite [--format bibtex|cff]

``report`` writes a derivation report (Markdown, LaTeX, figures, references, provenance) into
DIR; with ``--pdf`` it also runs pdflatex there. ``cite`` prints how to cite gradflow.
"""

from __future__ import annotations

import argparse
import sys

from .._cli import command, float_option, int_option


def _real_argv(a: argparse.Namespace) -> list[str] | None:
    """This process's own command line, if it is the ``gradflow report`` call being run."""
    argv = sys.argv[1:]
    if not argv or argv[0] != "report":
        return None
    from .._cli import build_parser

    try:
        b = build_parser().parse_args(argv)
    except SystemExit:
        return None
    same = all(getattr(b, k, None) == getattr(a, k, None)
               for k in ("cells", "output", "hidden", "steps", "seed", "input", "force", "pdf"))
    return ["gradflow", *argv] if same else None


@command("report", "write a derivation report (Markdown, LaTeX, figures, references) for cells")
def _report(p: argparse.ArgumentParser):
    p.add_argument("cells", nargs="+", metavar="CELL", help="cell names (gradflow derive --list)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="report directory")
    p.add_argument("--hidden", default="16", help="hidden size n of the numeric runs (default 16)")
    p.add_argument("--steps", default="100", help="sequence length T (default 100)")
    p.add_argument("--seed", default="0", help="seed of the weights and inputs (default 0)")
    p.add_argument("--input", default=None, help="input size m (default: the hidden size)")
    p.add_argument("--forget-bias", default=None, metavar="F",
                   help="forget-gate bias of the LSTM in the numeric runs (e.g. 1)")
    p.add_argument("--force", action="store_true", help="replace a report already in DIR")
    p.add_argument("--pdf", action="store_true", help="also compile report.tex with pdflatex")

    def run(a) -> int:
        from .._symbolic.cells import get_cell
        from .._views.report import compile_pdf, write_report

        cells = [get_cell(c) for c in a.cells]  # unknown names fail before anything is written
        hidden = int_option(a.hidden, "--hidden", 1)
        steps = int_option(a.steps, "--steps", 2)
        seed = int_option(a.seed, "--seed", 0)
        m = None if a.input is None else int_option(a.input, "--input", 1)
        fb = float_option(a.forget_bias, "--forget-bias")
        argv = _real_argv(a)
        if argv is None:  # called in-process (tests, scripts): the equivalent command line
            argv = ["gradflow", "report", *a.cells, "-o", a.output, "--hidden", a.hidden,
                    "--steps", a.steps, "--seed", a.seed]
            argv += ["--input", a.input] if a.input is not None else []
            argv += ["--forget-bias", a.forget_bias] if a.forget_bias is not None else []
            argv += ["--force"] if a.force else []
            argv += ["--pdf"] if a.pdf else []
        out = write_report(cells, a.output, hidden=hidden, steps=steps, seed=seed, input=m,
                           forget_bias=fb, command=argv, force=a.force)
        print(f"wrote {out / 'report.md'} and {out / 'report.tex'}")
        if a.pdf:
            pdf = compile_pdf(out)
            print(f"wrote {pdf}")
        return 0

    return run


@command("cite", "print how to cite gradflow (BibTeX, or CITATION.cff)")
def _cite(p: argparse.ArgumentParser):
    p.add_argument("--format", default="bibtex", choices=("bibtex", "cff"),
                   help="bibtex (default): the @software entry; cff: Citation File Format")

    def run(a) -> int:
        from .._views.bibtex import citation_cff, software_citation

        sys.stdout.write(citation_cff() if a.format == "cff" else software_citation() + "\n")
        return 0

    return run
