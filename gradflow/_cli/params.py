"""``gradflow params``: parameter counts of a recurrent cell, a dense layer or a convolution.

    gradflow params CELL --hidden N --input M [--convention pytorch|keras|reference] [--layers L]
                         [--bidirectional] [--output K] [--heads H] [--json]
    gradflow params dense --input M --output K [--no-bias] [--json]
    gradflow params conv --kernel KHxKW [--in-channels C] --filters K [--no-bias] [--json]

Sizes are validated by :mod:`gradflow._symbolic.params`, so every bad value is a one-line error with
exit status 2 (the ``ValueError`` handling of :func:`gradflow._cli.main`).
"""

from __future__ import annotations

import argparse
import json

from .._checks import GradflowError
from .options import int_option

# options each layer kind accepts (besides --json); anything else given is an error
_ALLOWED = {
    "cell": {"hidden", "input", "convention", "layers", "bidirectional", "output", "proj_size", "heads"},
    "dense": {"input", "output", "no_bias"},
    "conv": {"kernel", "in_channels", "filters", "no_bias"},
}
_FLAG = {"no_bias": "--no-bias", "in_channels": "--in-channels", "proj_size": "--proj-size"}


def _kernel(text: str) -> tuple[int, int]:
    """``"3x5"`` → (3, 5); ``"3"`` → (3, 3)."""
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise GradflowError(f"--kernel must be KHxKW (e.g. 3x3) or K, got {text!r}")
    try:
        kh, kw = (int(p.strip()) for p in parts)
    except ValueError:
        raise GradflowError(f"--kernel must be KHxKW (e.g. 3x3) or K, got {text!r}") from None
    return kh, kw


def _require(args: argparse.Namespace, what: str, *names: str) -> None:
    missing = [_FLAG.get(a, "--" + a) for a in names if getattr(args, a) is None]
    if missing:
        raise GradflowError(f"{what} needs {' and '.join(missing)}")


def _check_options(args: argparse.Namespace, kind: str, what: str) -> None:
    """Reject options that do not apply to this kind of layer."""
    defaults = {"convention": None, "layers": None, "bidirectional": False, "no_bias": False}
    for name in ("hidden", "input", "convention", "layers", "bidirectional", "output",
                 "kernel", "in_channels", "filters", "no_bias", "proj_size", "heads"):
        given = getattr(args, name) != defaults.get(name)
        if given and name not in _ALLOWED[kind]:
            flag = _FLAG.get(name, "--" + name)
            raise GradflowError(f"{flag} does not apply to {what}")


HELP = "count the trainable parameters of a cell, a dense layer or a convolution"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``gradflow params``."""
    p.add_argument("layer", metavar="CELL", help="a cell name (gradflow derive --list), 'dense' or 'conv'")
    cell = p.add_argument_group("recurrent cells")
    cell.add_argument("--hidden", metavar="N", help="hidden size n")
    cell.add_argument("--input", metavar="M", help="input size m (also for dense)")
    cell.add_argument("--convention", metavar="NAME",
                      help="bias convention: pytorch (b_ih + b_hh, default) or keras (one bias); reference "
                           "for mamba-zoh, mamba-euler, s4d, rg-lru: the reference module's tensors "
                           "(channels d = input, state size N = hidden/input)")
    cell.add_argument("--heads", metavar="H", help="rg-lru --convention reference: Griffin's gate heads (default 1)")
    cell.add_argument("--layers", metavar="L", help="stacked layers (default 1)")
    cell.add_argument("--bidirectional", action="store_true", help="every layer in both directions")
    cell.add_argument("--proj-size", metavar="P", help="LSTM output projection (PyTorch proj_size)")
    cell.add_argument("--output", metavar="K",
                      help="dense output layer of size k on top (for dense: its output size)")
    ff = p.add_argument_group("dense and conv")
    ff.add_argument("--kernel", metavar="KHxKW", help="conv kernel size, e.g. 3x3 (or 3)")
    ff.add_argument("--in-channels", metavar="C", help="conv input channels (default 1)")
    ff.add_argument("--filters", metavar="K", help="conv filters (output channels)")
    ff.add_argument("--no-bias", action="store_true", help="dense/conv layer without bias")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(a: argparse.Namespace) -> int:
    from .._symbolic.params import LayerCount, ParamCount, conv_params, count_params, dense_params

    result: ParamCount | LayerCount
    kind = a.layer.strip().lower()
    if kind == "dense":
        _check_options(a, "dense", "a dense layer")
        _require(a, "a dense layer", "input", "output")
        result = dense_params(int_option(a.input, "--input", None), int_option(a.output, "--output", None),
                              bias=not a.no_bias)
    elif kind in ("conv", "conv2d"):
        _check_options(a, "conv", "a convolution")
        _require(a, "a convolution", "kernel", "filters")
        kh, kw = _kernel(a.kernel)
        channels = 1 if a.in_channels is None else int_option(a.in_channels, "--in-channels", None)
        result = conv_params(kh, kw, channels, int_option(a.filters, "--filters", None), bias=not a.no_bias)
    else:
        from .._symbolic.cells import get_cell

        name = get_cell(a.layer).name  # unknown cell: error before complaining about sizes
        _check_options(a, "cell", f"a recurrent cell ({name})")
        _require(a, name, "hidden", "input")
        result = count_params(
            name, int_option(a.hidden, "--hidden", None), int_option(a.input, "--input", None),
            convention="pytorch" if a.convention is None else a.convention,
            layers=1 if a.layers is None else int_option(a.layers, "--layers", None),
            bidirectional=a.bidirectional,
            output=None if a.output is None else int_option(a.output, "--output", None),
            proj_size=0 if a.proj_size is None else int_option(a.proj_size, "--proj-size", None),
            heads=None if a.heads is None else int_option(a.heads, "--heads", None))
    if a.json:
        print(json.dumps(result.as_dict()))
    else:
        print(result)
    return 0
