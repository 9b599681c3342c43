"""The ``gradflow`` command line: ``derive``, ``params``, ``flow``, ``report``, ``cite``.

Every subcommand turns a ``ValueError`` into a one-line ``gradflow: error: ...`` on stderr
and exit status 2.
"""

from __future__ import annotations

import argparse
import errno
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
        from .._symbolic.cells import CELLS, get_cell
        from .._symbolic.printing import text

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
    """The integer value of a command-line option, in plain decimal digits (``1_6``, ``1e3`` and
    ``16.0`` are refused); ``GradflowError`` naming the option otherwise."""
    from .._checks import GradflowError, parse_int

    s = "" if text is None else str(text).strip()
    digits = s[1:] if s[:1] in "+-" else s
    if not digits.isascii() or not digits.isdigit():
        raise GradflowError(f"{option} must be an integer, got {text!r}")
    if minimum is None:
        return int(s)
    return parse_int(s, option, minimum)


def float_option(text, option: str) -> float | None:
    """The finite float value of an option (None when not given); ``1_0`` is refused."""
    from .._checks import GradflowError, parse_float

    if text is None:
        return None
    s = str(text).strip()
    try:
        float(s)
    except ValueError:
        raise GradflowError(f"{option} must be a number, got {text!r}") from None
    if "_" in s:
        raise GradflowError(f"{option} must be a number in plain digits, got {text!r}")
    return parse_float(s, option)


def say(text: str) -> None:
    """Print an informational line; a reader that left (broken pipe) does not stop the work."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        _quiet_stdout()


def _quiet_stdout() -> None:
    try:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep interpreter shutdown quiet
    except OSError:
        pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradflow",
        description="Why gradients vanish in recurrent networks: exact derivations and measured curves.",
    )
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"gradflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import flow, params, report  # noqa: F401  (they register their commands)

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
    from .._numeric.loading import notes_to_stderr
    from .._views.safe_write import Interrupted

    if sys.stdout is None or sys.stdout.closed:
        print("gradflow: error: standard output is closed; redirect it (e.g. >/dev/null) instead",
              file=sys.stderr)
        return 2
    try:
        with notes_to_stderr():
            code = int(args._run(args) or 0)
        sys.stdout.flush()
        return code
    except ValueError as e:
        print(f"gradflow: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `gradflow flow ... | head`: the reader left, not an error
        _quiet_stdout()
        return 0
    except Interrupted:
        print("gradflow: terminated; no half-written report was left", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("gradflow: interrupted; no half-written report was left", file=sys.stderr)
        return 130
    except MemoryError:
        print("gradflow: error: out of memory (the size estimate was too low; try smaller sizes)",
              file=sys.stderr)
        return 1
    except OSError as e:
        if e.filename is None and e.errno in (errno.ENOSPC, errno.EIO, errno.EBADF, errno.EFBIG):
            _quiet_stdout()
            print(f"gradflow: error: cannot write to standard output: {e.strerror or e}", file=sys.stderr)
        else:
            where = f" ({e.filename})" if e.filename else ""
            print(f"gradflow: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
