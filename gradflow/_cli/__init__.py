"""The ``gradflow`` command line: ``derive``, ``params``, ``flow``, ``report``, ``cite``.

Every subcommand turns a ``ValueError`` into a one-line ``gradflow: error: ...`` on stderr
and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

# name -> (help, setup); setup(subparser) adds the arguments and returns run(args) -> int
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Callable]]] = {}


def command(name: str, help: str):
    """Register a subcommand: the decorated function adds its arguments and returns the runner."""

    def wrap(setup):
        _COMMANDS[name] = (help, setup)
        return setup

    return wrap


@command("derive", "print the closed-form Jacobian blocks of a cell")
def _derive(p: argparse.ArgumentParser):
    p.add_argument("cell", help="cell name (gradflow derive --list shows them)", nargs="?")
    p.add_argument("--latex", action="store_true", help="print LaTeX instead of plain text")
    p.add_argument("--list", action="store_true", help="list the known cells")

    def run(a):
        from .._symbolic.nodes import text
        from . import CELLS, get_cell

        if a.list or a.cell is None:
            for c in CELLS.values():
                print(f"{c.name:14s} {c.title}")
            return 0
        cell = get_cell(a.cell)
        J = cell.jacobian()
        if a.latex:
            print("% recurrence")
            print(cell.recorded_latex())
            print("% one-step Jacobian blocks (numerator layout)")
            print(J.latex())
        else:
            print(f"{cell.title} ({cell.name})")
            print("recurrence:")
            for s, e in cell.recorded.definitions.items():
                print(f"  {text(s)} = {text(e)}")
            print("one-step Jacobian blocks (numerator layout):")
            for line in str(J).splitlines():
                print("  " + line)
        return 0

    return run


def int_option(text, option: str, minimum: int | None = 1) -> int:
    """The integer value of a command-line option; ``ValueError`` naming the option otherwise."""
    try:
        v = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"{option} must be an integer, got {text!r}") from None
    if minimum is not None and v < minimum:
        need = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{option} must be {need}, got {v}")
    return v


def float_option(text, option: str) -> float | None:
    """The finite float value of an option (None when not given)."""
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{option} must be a number, got {text!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{option} must be finite, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradflow",
        description="Why gradients vanish in recurrent networks: exact derivations and measured curves.",
    )
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"gradflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import _cli_flow, _cli_params, _cli_report  # noqa: F401  (they register their commands)

    for name, (help, setup) in _COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(_run=setup(p))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except ValueError as e:
        print(f"gradflow: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `gradflow flow ... | head`: the reader left, not an error
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep interpreter shutdown quiet
        except OSError:
            pass
        return 0


if __name__ == "__main__":
    sys.exit(main())
