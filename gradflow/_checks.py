"""The one error class and the one home of argument checks.

Every public function checks its arguments once, at the boundary, with these helpers; the
internals trust what they are given. Each check raises :class:`GradflowError` (a
``ValueError``) whose message names the argument and what was wrong; the command line turns it
into ``gradflow: error: <message>`` and exit status 2.

This module is the ground floor: it imports nothing from gradflow.
"""

from __future__ import annotations

import math
import numbers
import operator
import unicodedata
from collections.abc import Iterable
from typing import TypeVar

__all__ = ["GradflowError", "finite_float", "lyapunov_count", "one_of", "positive_int", "parse_int", "parse_float"]

T = TypeVar("T")


class GradflowError(ValueError):
    """Bad input to gradflow: a wrong argument, file, shape or value (message says which)."""


def positive_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum``; bools, floats and strings are refused.

    Arguments:
        value: the given value (a Python or NumPy integer).
        name: how the argument is named in the message (``"hidden"``, ``"--steps"``).
        minimum: the smallest accepted value.
    """
    if isinstance(value, bool):
        raise GradflowError(f"{name} must be {_int_need(minimum)}, got {value!r}")
    try:
        v = operator.index(value)  # type: ignore[arg-type]  # Python and NumPy integers, nothing that only looks like one
    except TypeError:
        raise GradflowError(f"{name} must be {_int_need(minimum)}, got {value!r}") from None
    if v < minimum:
        raise GradflowError(f"{name} must be {_int_need(minimum)}, got {v}")
    return v


def _int_need(minimum: int) -> str:
    if minimum == 1:
        return "a positive integer"
    if minimum == 0:
        return "a non-negative integer"
    return f"an integer >= {minimum}"


def finite_float(value: object, name: str) -> float:
    """``value`` as a finite ``float``; bools, strings, NaN and ±inf are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise GradflowError(f"{name} must be a finite number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise GradflowError(f"{name} must be finite, got {value!r}")
    return v


def one_of(value: object, name: str, choices: Iterable[T]) -> T:
    """``value`` when it is one of ``choices``; the message lists them otherwise."""
    choices = tuple(choices)
    if value not in choices:
        raise GradflowError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value  # type: ignore[return-value]


def is_decimal(text: str) -> bool:
    """``text`` is an integer in plain ASCII decimal digits with an optional sign (not ``1_6``, ``1e3``)."""
    digits = text[1:] if text[:1] in "+-" else text
    return digits.isascii() and digits.isdigit()


def parse_int(text: object, name: str, minimum: int = 1) -> int:
    """An integer written in decimal digits on a command line (``"1_6"`` and ``"1e3"`` are refused)."""
    s = str(text).strip()
    if not is_decimal(s):
        raise GradflowError(f"{name} must be {_int_need(minimum)}, got {text!r}")
    return positive_int(int(s), name, minimum)


def parse_float(text: object, name: str) -> float:
    """A finite number written on a command line."""
    s = str(text).strip()
    if "_" in s:
        raise GradflowError(f"{name} must be a finite number, got {text!r}")
    try:
        v = float(s)
    except ValueError:
        raise GradflowError(f"{name} must be a finite number, got {text!r}") from None
    return finite_float(v, name)


def lyapunov_count(value: object, size: int, default: int = 8) -> int:
    """How many Lyapunov exponents ``lyapunov=value`` asks for, of a state of ``size`` numbers.

    ``False`` → 0 (none); ``True`` → the leading ``min(size, default)``; ``"full"`` → all
    ``size``; a positive integer r → the leading ``min(r, size)``.
    """
    if value is False:
        return 0
    if value is True:
        return min(size, default)
    if isinstance(value, str):
        if value == "full":
            return size
        raise GradflowError(f"lyapunov must be True, False, 'full' or a positive integer, got {value!r}")
    return min(positive_int(value, "lyapunov"), size)


def check_columns(value: object) -> int:
    """The number of text columns of a LaTeX report: 1 or 2."""
    if isinstance(value, bool) or value not in (1, 2):
        raise GradflowError(f"columns must be 1 or 2, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def one_line(text: str) -> str:
    """``text`` with every control or format character (newline, ESC, bidi overrides …) written as
    its escape (``\\n``, ``\\x1b``): names read from a user's file reach the terminal inert and an
    error stays one line."""
    return "".join(c.encode("unicode_escape").decode("ascii") if unicodedata.category(c)[0] == "C" else c
                   for c in text)


def check_not_in_package(out: str, what: str) -> None:
    """Refuse an output directory inside gradflow's own package folder (an installed
    site-packages copy or a source checkout's ``gradflow/``): its files are the program's."""
    import os

    package = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    target = os.path.realpath(os.path.abspath(os.path.expanduser(str(out))))
    if target == package or target.startswith(package + os.sep):
        raise GradflowError(f"{what} {out} is inside gradflow's own package folder {package}; choose a "
                            "directory of your own")
