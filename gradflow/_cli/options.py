"""Command-line option values and output, shared by every subcommand.

Values arrive as the strings typed; these helpers turn them into checked numbers with the
argument checks of :mod:`gradflow._checks` (one ``GradflowError`` naming the option).
"""

from __future__ import annotations

import os
import sys

from .._checks import GradflowError, is_decimal, parse_float, parse_int


def int_option(text, option: str, minimum: int | None = 1) -> int:
    """The integer value of a command-line option, in plain decimal digits (``1_6``, ``1e3`` and
    ``16.0`` are refused); ``GradflowError`` naming the option otherwise."""
    s = "" if text is None else str(text).strip()
    if not is_decimal(s):
        raise GradflowError(f"{option} must be an integer, got {text!r}")
    if minimum is None:
        return int(s)
    return parse_int(s, option, minimum)


def float_option(text, option: str) -> float | None:
    """The finite float value of an option (None when not given); ``1_0`` is refused."""
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
        quiet_stdout()


def quiet_stdout() -> None:
    try:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep interpreter shutdown quiet
    except OSError:
        pass
