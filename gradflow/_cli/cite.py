"""``gradflow cite``: how to cite gradflow (BibTeX, or the Citation File Format).

    gradflow cite [--format bibtex|cff]
"""

from __future__ import annotations

import argparse
import sys

HELP = "print how to cite gradflow (BibTeX, or CITATION.cff)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``gradflow cite``."""
    p.add_argument("--format", default="bibtex", choices=("bibtex", "cff"),
                   help="bibtex (default): the @software entry; cff: Citation File Format")


def run(a: argparse.Namespace) -> int:
    from .._views.bibtex import citation_cff, software_citation

    sys.stdout.write(citation_cff() if a.format == "cff" else software_citation() + "\n")
    return 0
