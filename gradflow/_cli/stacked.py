"""``gradflow flow CELL --weights FILE`` on a stacked, bidirectional or projected module: every
layer and direction (:mod:`gradflow._numeric.stack`), unless ``--layer``/``--direction`` pick one.

``--json`` keeps the keys of a one-layer run (``curve`` holds the whole-stack curves; empty for a
bidirectional module, which has no whole-stack product) and adds ``num_layers``,
``bidirectional``, ``proj_size`` and ``layers``: one record per layer and direction (schema in
the README).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

import numpy as np

from .._checks import GradflowError
from .._numeric.loading import GradflowNote, note
from .options import fmt_log10, lyapunov_lines


def stacked_or_none(a: argparse.Namespace, cell: Any, dtype: Any):
    """The :class:`~gradflow._numeric.stack.StackedNetwork` of ``--weights`` when it has more than
    one layer or direction or a projection and no ``--layer``/``--direction`` picks one; else
    None (the one-layer path then reads the file and says what is wrong with it, if anything)."""
    from .._numeric.keras_loading import is_keras_path
    from .._numeric.stack import inspect_module, stacked_network

    if a.weights is None or a.layer is not None or a.direction is not None:
        return None
    with warnings.catch_warnings(record=True):  # its notes come again from stacked_network
        warnings.simplefilter("always", GradflowNote)
        try:
            mod, _ = inspect_module(cell, a.weights, a.prefix)
        except GradflowError:
            if is_keras_path(str(a.weights)):  # a Keras stack's wiring is refused here, in its own words
                raise
            return None
    if mod.layers == 1 and not mod.bidirectional and not mod.proj_size:
        return None
    return stacked_network(cell, weights=a.weights, prefix=a.prefix, dtype=dtype)  # errors name the layer


def _widths(net: Any) -> str:
    """n, or each layer's n where a (Keras) stack changes it: "4 (layer 0), 3 (layer 1)"."""
    per_layer = {lay.layer: lay.hidden for lay in net.all_layers()}
    if len(set(per_layer.values())) == 1:
        return str(net.hidden)
    return ", ".join(f"{n} (layer {layer})" for layer, n in sorted(per_layer.items()))


def run_stacked(a: argparse.Namespace, net: Any, inputs: Any, lyapunov: Any,
                losses: tuple = ("sum", None, None, None)) -> int:
    """Measure every layer and direction of ``net``; print the table or the JSON object.

    ``losses``: (loss, head, targets, initial) as the flow command read them (the head's
    in-features are the top output's size; initial states in PyTorch's (L·D, B, size) layout)."""
    from .._numeric.stack import stacked_flow

    if a.forget_bias is not None:
        raise GradflowError(f"--forget-bias has no effect with --weights: the weights come from {a.weights}")
    if a.carousel:
        raise GradflowError("--carousel measures one layer: pick it with --layer K --direction forward")
    for name, want, got in (("--hidden", a.hidden, net.hidden), ("--input", a.input, net.input)):
        if want is not None and int(want) != got:
            raise GradflowError(f"{name} {want} does not match the weights' size {got}")
    count = net.num_layers * len(net.directions)
    note(f"analysing all {count} layer/direction(s) of the {net.cell.name} ({net.num_layers} layer(s), "
         f"{'bidirectional' if net.bidirectional else 'one direction'}"
         f"{f', proj_size {net.proj_size}' if net.proj_size else ''}); --layer K (--direction forward) "
         "measures one alone")
    loss, head, targets, initial = losses
    flow = stacked_flow(net, inputs, initial=initial, loss=loss, head=head, targets=targets,
                        spectral=a.spectral, lyapunov=lyapunov, batch_first=False)  # laid out (T, B, m) by the CLI
    record = flow.to_json()
    if a.json:
        json.dump(record, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    T = flow.steps
    print(f"{net.cell.title} ({net.cell.name}): {net.num_layers} layer(s)"
          f"{', bidirectional' if net.bidirectional else ''}{f', proj_size {net.proj_size}' if net.proj_size else ''}"
          f", n = {_widths(net)}, m = {net.input}, T = {T}, batch = {flow.batch}; loss {flow.loss}; "
          "log10 norms, batch mean")
    if record["curve"]:
        print("whole stack: s_k = (s^(1)_k, ..., s^(L)_k)")
        print(f"{'k':>6} {'T-k':>6} {'||.||_2':>10} {'||.||_F':>10} {'||dL/ds_k||':>11}")
        for rec in record["curve"]:
            print(f"{rec['k']:>6} {T - rec['k']:>6} {fmt_log10(rec['log10_norm_2'])} "
                  f"{fmt_log10(rec['log10_norm_fro'])} {fmt_log10(rec['log10_grad_norm'])}")
    else:
        print("bidirectional: no whole-stack product (the reverse direction runs over reversed time); per layer:")
    for lay in record["layers"]:
        clock = "" if lay["direction"] == "forward" else " (reversed time: k steps after t = T+1, t = T+1-k)"
        print(f"layer {lay['layer']} {lay['direction']}{clock}: own product ds^(l)_T/ds^(l)_k, "
              "gradient dL/dh^(l)_k through the whole network")
        print(f"{'k':>6} {'t':>6} {'||.||_2':>10} {'||.||_F':>10} {'||dL/dh_k||':>11}")
        for rec in lay["curve"]:
            if "log10_norm_2" in rec:
                print(f"{rec['k']:>6} {rec['t']:>6} {fmt_log10(rec['log10_norm_2'])} "
                      f"{fmt_log10(rec['log10_norm_fro'])} {fmt_log10(rec['log10_grad_norm_h'])}")
            else:
                print(f"{rec['k']:>6} {rec['t']:>6} {'':>10} {'':>10} {fmt_log10(rec['log10_grad_norm_h'])}")
    if record["lyapunov"]:
        print("\n".join(lyapunov_lines(record["lyapunov"], net.state_size,
                                        "Lyapunov exponents of the whole stack")))
    return 0


def stacked_inputs(a: argparse.Namespace, net: Any, inputs: Any, batch: int, seed: int, dtype: Any):
    """The (T, B, m) inputs: ``--inputs`` as read, else standard normal from ``--seed``."""
    from .._numeric.network import random_inputs
    from .._numeric.size_guard import check_stacked_size
    from .options import int_option

    if inputs is None and a.steps is None:
        raise GradflowError("flow needs --steps (or --inputs)")
    T = int_option(a.steps, "--steps") if inputs is None else inputs.shape[0]
    B = batch if inputs is None else inputs.shape[1]
    size = np.dtype(dtype).itemsize
    check_stacked_size(net, T, B, size)  # before any allocation
    if inputs is None:
        inputs = random_inputs(T, net.input, batch=batch, seed=seed, dtype=dtype)
    return inputs
