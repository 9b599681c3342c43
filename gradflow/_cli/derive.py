"""``gradflow derive``: the recurrence and every closed-form block of the one-step Jacobian.

    gradflow derive CELL [--latex]
    gradflow derive --list
"""

from __future__ import annotations

import argparse

HELP = "print the closed-form Jacobian blocks of a cell"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``gradflow derive``."""
    p.add_argument("cell", help="cell name (gradflow derive --list shows them)", nargs="?")
    p.add_argument("--latex", action="store_true", help="print LaTeX instead of plain text")
    p.add_argument("--list", action="store_true", help="list the known cells")


def run(a: argparse.Namespace) -> int:
    from .._symbolic.cells import CELLS, get_cell
    from .._symbolic.printing import text

    if a.list or a.cell is None:
        for c in CELLS.values():
            print(f"{c.name:14s} {c.title}")
        return 0
    cell = get_cell(a.cell)
    J = cell.jacobian()
    if a.latex:
        from .._symbolic.printing import latex
        from .._views.document import aligned, display_row

        # the report's line breaking: a long sum one summand per line (LaTeX: \\ and &\quad)
        print("% recurrence")
        print(aligned([display_row(latex(s), e) for s, e in cell.recorded.definitions.items()]))
        print("% one-step Jacobian blocks (numerator layout)")
        print(aligned([display_row(J.block_name(k), v) for k, v in J.blocks.items()]))
    else:
        print(f"{cell.title} ({cell.name})")
        print("recurrence:")
        for s, e in cell.recorded.definitions.items():
            print(f"  {text(s)} = {text(e)}")
        print("one-step Jacobian blocks (numerator layout):")
        for line in str(J).splitlines():
            print("  " + line)
    return 0
