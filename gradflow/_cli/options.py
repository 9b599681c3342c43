"""Command-line option values and output, shared by every subcommand.

Values arrive as the strings typed; these helpers turn them into checked numbers with the
argument checks of :mod:`gradflow._checks` (one ``GradflowError`` naming the option).
"""

from __future__ import annotations

import os
import sys
from typing import cast

from .._checks import GradflowError, is_decimal, parse_float, parse_int
from .._vocabulary import InitScheme


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
    if "_" in s or not s.isascii():  # float() also reads '1_0' and other scripts' digits ('١')
        raise GradflowError(f"{option} must be a number in plain digits, got {text!r}")
    return parse_float(s, option)


def fmt_log10(x) -> str:
    """A log10 norm of a ``--json`` record as a table cell: null is log10 0 (-inf), "inf" +inf."""
    if x is None:
        return "      -inf"
    if x == "inf":
        return "       inf"
    if isinstance(x, str):  # a Lyapunov exponent "not resolved"
        return f"{x:>10}"
    return f"{x:10.4f}"


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


def init_scheme(text: str | None, cell) -> InitScheme:
    """The init scheme of ``--init`` (checked against the vocabulary), or the cell's default:
    the reference init for the state-space cells (``mamba``, ``s4d-lin``, ``rg-lru``)."""
    from .._numeric.reference_init import REFERENCE_INIT
    from .._vocabulary import INIT_SCHEMES

    if text is None:
        return cast(InitScheme, REFERENCE_INIT.get(cell.name, cell.default_init))
    scheme = str(text).strip().lower()
    if scheme not in INIT_SCHEMES:
        raise GradflowError(f"--init: unknown init scheme {text!r}; known: {', '.join(INIT_SCHEMES)}")
    return cast(InitScheme, scheme)


def init_words(scheme: str, hidden: int, input: int) -> str:
    """``mamba (d = 4 channels, N = 2 state entries each)`` for a reference init, else the name."""
    from .._numeric.reference_init import SCHEME_CELLS

    if scheme not in SCHEME_CELLS or scheme == "rg-lru":
        return scheme
    if scheme == "lru-ring":
        return "lru-ring (Orvieto et al. 2023: |lambda|^2 ~ U[0, 1], the phase ~ U[0, 6.28])"
    from .._numeric.reference_init import USUAL_STATE

    N, usual = hidden // input, USUAL_STATE.get(scheme)
    channels = f"d = {input} channel{'' if input == 1 else 's'}"
    if scheme.startswith("s4d"):
        words = f"{scheme} ({channels}, N = {N} complex modes each, 2N = {2 * N} real state entries"
    else:
        words = f"{scheme} ({channels}, N = {N} state entr{'y' if N == 1 else 'ies'} each"
    if usual is not None and N != usual:
        words += f"; the reference code's default is N = {usual}"
    return words + ")"


def lyapunov_lines(values, total: int | None = None, what: str = "Lyapunov exponents") -> list[str]:
    """The Lyapunov exponents of a ``--json`` record (largest first), every one printed, wrapped.

    ``total``: how many the state has (N); the heading says "all N" when every one was asked for
    (--lyapunov full) and "the K largest of N" otherwise, so no exponent is dropped without a word.
    """
    import textwrap

    cells = [fmt_log10(v).strip() for v in values]
    count = len(cells)
    which = f"all {count}" if total is None or count >= total else f"the {count} largest of {total}"
    head = f"{what} (natural log per step, {which}, largest first):"
    body = textwrap.wrap(", ".join(cells), width=100, initial_indent="  ", subsequent_indent="  ",
                         break_on_hyphens=False)
    lines = [head, *body]
    if any(isinstance(v, str) and v != "inf" for v in values):
        lines.append("  not resolved: at some step the direction's growth factor |R_ii| fell to float64's "
                     "rounding floor (8 N eps ||J_t Q||_F): its value there is rounding, not data")
    return lines
