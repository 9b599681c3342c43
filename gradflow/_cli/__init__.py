"""The ``gradflow`` command line: ``derive``, ``params``, ``flow``, ``report``, ``cite``, ``sweep``.

Every subcommand turns a ``ValueError`` into a one-line ``gradflow: error: ...`` on stderr
and exit status 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence
from types import ModuleType

from . import cite, derive, flow, params, report, sweep
from .options import quiet_stdout

#: the subcommands, in the order ``gradflow --help`` lists them: name -> module with
#: ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
COMMANDS: dict[str, ModuleType] = {
    "derive": derive,
    "flow": flow,
    "params": params,
    "report": report,
    "cite": cite,
    "sweep": sweep,
}


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line ``gradflow: error: …`` (exit 2), as every other
    bad input's, instead of a usage block and a ``gradflow report: error:`` line."""

    def error(self, message: str):  # type: ignore[override]
        see = f"{self.prog} --help" if " " in self.prog else "gradflow --help, or gradflow COMMAND --help"
        self.exit(2, f"gradflow: error: {message} (see: {see})\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="gradflow",
        description="Why gradients vanish in recurrent networks: exact derivations and measured curves.",
    )
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"gradflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gradflow ARGV`` (default: this process's arguments); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # the command line as parsed, for the records a command writes
    if not getattr(args, "run", None):
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
            code = int(args.run(args) or 0)
        sys.stdout.flush()
        return code
    except ValueError as e:
        from .._checks import one_line

        print(f"gradflow: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `gradflow flow ... | head`: the reader left, not an error
        quiet_stdout()
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
            quiet_stdout()
            print(f"gradflow: error: cannot write to standard output: {e.strerror or e}", file=sys.stderr)
        else:
            where = f" ({e.filename})" if e.filename else ""
            from .._checks import one_line

            print(f"gradflow: error: {one_line(f'{e.strerror or e}{where}')}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
