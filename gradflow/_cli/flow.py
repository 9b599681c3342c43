"""``gradflow flow``: measured gradient-decay curves of an unrolled network.

    gradflow flow CELL --hidden N --input M --steps T [--batch B] [--seed S] [--init SCHEME]
                  [--gain G] [--forget-bias F] [--weights FILE.pt|.npz|.weights.h5|.keras] [--prefix NAME]
                  [--layer L] [--direction forward] [--inputs FILE.npy] [--batch-first]
                  [--dtype float64|float32] [--spectral power|svd] [--carousel]
                  [--lyapunov N|full | --no-lyapunov] [--json]
                  [--loss sum|last|every] [--targets FILE.npy] [--head PREFIX|FILE]
                  [--initial FILE.npy|FILE.npz] [--time-first]
                  [--mode auto|exact|matrix-free] [--float32] [--probes R]

With ``--json`` stdout is one JSON object (schema in the README); the progress bar, if any,
goes to stderr.
A stacked, bidirectional or projected module in ``--weights`` is analysed whole (every layer
and direction, :mod:`gradflow._cli.stacked`) unless ``--layer``/``--direction`` pick one.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from .._checks import GradflowError
from .._numeric.loading import note, read_npy, torchscript_batch_first
from .._numeric.reference_init import SCHEME_CELLS, default_input
from .._numeric.size_guard import check_flow_size, choose_mode
from .._numeric.structure import keeps_no_trajectory, structured_path
from .options import float_option, fmt_log10, init_scheme, init_words, int_option, lyapunov_lines


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str, stream=None, width: int = 30):
        self.label, self.width = label, width
        self.stream = stream if stream is not None else sys.stderr  # the stderr of now, not of import

    def __call__(self, done: int, total: int) -> None:
        if not _isatty(self.stream):  # a log file or a pipe: whole lines, every 10 %
            if done == total or done % max(1, total // 10) == 0:
                filled = int(self.width * done / total)
                self.stream.write(f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
                                  f"{done}/{total} ({100 * done // total}%)\n")
                self.stream.flush()
            return
        if done != total and done % max(1, total // 100):
            return
        filled = int(self.width * done / total)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _long_run(T: int, batch: int, N: int) -> bool:
    """A run that takes more than a few seconds (one N×N product per step, roughly)."""
    return T * batch * (N ** 3 + 200 * N) >= 2e10


def _no_effect(a) -> None:
    """Options that the given files make meaningless are errors, not silently ignored."""
    if a.weights is None:
        for opt, val in (("--prefix", a.prefix), ("--layer", a.layer), ("--direction", a.direction)):
            if val is not None:
                raise GradflowError(f"{opt} selects weights in a --weights file; give --weights too")
    if a.batch_first and a.time_first:
        raise GradflowError("--batch-first and --time-first contradict each other; give one")
    if a.time_first and a.inputs is None:
        raise GradflowError("--time-first has no effect without --inputs: it says how the --inputs "
                            "array is laid out")
    if a.batch_first and a.inputs is None:
        raise GradflowError("--batch-first has no effect without --inputs: it says how the --inputs "
                            "array is laid out")
    if a.inputs is not None and a.batch is not None:
        raise GradflowError(f"--batch has no effect with --inputs: the batch is the second axis of {a.inputs}")
    if a.weights is not None:
        for opt, val in (("--init", a.init), ("--gain", a.gain)):
            if val is not None:
                raise GradflowError(f"{opt} has no effect with --weights: the weights come from {a.weights}")
        if a.inputs is not None and a.seed is not None:
            raise GradflowError("--seed has no effect with both --weights and --inputs: nothing is random")


def _gain(text: str) -> float:
    v = float_option(text, "--gain")
    assert v is not None  # --gain has a default
    return v


def _lyapunov(a) -> bool | int | str:
    """The ``lyapunov=`` argument of gradient_flow from --lyapunov N|full and --no-lyapunov."""
    if a.lyapunov is None:
        return not a.no_lyapunov
    if a.no_lyapunov:
        raise GradflowError("--lyapunov has no effect with --no-lyapunov")
    return "full" if a.lyapunov.strip() == "full" else int_option(a.lyapunov, "--lyapunov")


HELP = "measure log10 ||ds_T/ds_k|| for every k on an unrolled network"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``gradflow flow``."""
    p.add_argument("cell", help="cell name (gradflow derive --list)")
    p.add_argument("--hidden", help="hidden size n (taken from --weights if given)")
    p.add_argument("--input", help="input size m (default: the hidden size, but hidden/N for mamba "
                   "(N = 16) and s4d (N = 32 complex modes), their usual state per channel, or the largest "
                   "divisor of hidden below it; taken from --weights/--inputs "
                   "when given)")
    p.add_argument("--steps", help="number of steps T (taken from --inputs if given)")
    p.add_argument("--batch", default=None, help="sequences in the batch (default 1)")
    p.add_argument("--seed", default=None, help="random seed for weights and inputs (default 0)")
    p.add_argument("--init", default=None,
                   help="pytorch, glorot, orthogonal, identity or gaussian (default: the cell's); the "
                        "state-space cells' reference inits mamba (mamba-zoh, mamba-euler), s4d-lin or "
                        "s4d-real (s4d), rg-lru (rg-lru, input = hidden): channels = --input, state "
                        "size N = hidden/input; these are those cells' defaults")
    p.add_argument("--gain", default=None, help="scale of the recurrent weights (default 1)")
    p.add_argument("--forget-bias", default=None, help="forget-gate bias (LSTM)")
    p.add_argument("--weights", default=None,
                   help="PyTorch state_dict (.pt) or .npz with the same keys: an nn.RNN/LSTM/GRU's, a "
                        "whole model's (the recurrent layer is found under any prefix) or a checkpoint "
                        "such as {'model': state_dict, 'optimizer': ...}; or a Keras 3 .weights.h5 / .keras "
                        "file (LSTM, GRU, SimpleRNN layers; pick one with --prefix)")
    p.add_argument("--prefix", default=None,
                   help="which recurrent module of --weights (its name in the model, e.g. rnn or "
                        "model.encoder), when it holds several")
    p.add_argument("--trust-torchscript", action="store_true",
                   help="load --weights (or --head) that is a TorchScript archive: torch.jit.load can run "
                        "the code an archive holds, so only for files you trust (refused without it)")
    p.add_argument("--layer", default=None,
                   help="which layer of a stacked (num_layers > 1) module; refused without it. A layer "
                        "above 0 reads the outputs of the layer below: give them as --inputs")
    p.add_argument("--direction", default=None, choices=("forward", "reverse"),
                   help="forward: the forward direction of a bidirectional module (refused without "
                        "it); reverse is refused (it runs over reversed time)")
    p.add_argument("--inputs", default=None,
                   help=".npy array of shape (T, m) or (T, batch, m): time first unless --batch-first; "
                        "when batch = T both layouts fit and --time-first or --batch-first must say which")
    p.add_argument("--batch-first", action="store_true",
                   help="read --inputs of shape (batch, T, m), as a module built with batch_first=True "
                        "takes them (and --targets of --loss every as (batch, T))")
    p.add_argument("--time-first", action="store_true",
                   help="say that --inputs are (T, batch, m): needed when batch = T, where both "
                        "layouts fit (refused without --time-first or --batch-first)")
    p.add_argument("--loss", default=None, choices=("sum", "last", "every"),
                   help="the loss followed back: sum (L = sum of h_T, the default), last (softmax "
                        "cross-entropy of the head on h_T, --targets of shape (batch,)) or every "
                        "(cross-entropy summed over every step, --targets (T, batch)); batch summed")
    p.add_argument("--targets", default=None, help=".npy of integer classes for --loss last/every")
    p.add_argument("--head", default=None, metavar="PREFIX|FILE",
                   help="the output Linear of --loss last/every: its name in --weights (e.g. fc or "
                        "model.head), or a .pt/.npz file holding its weight and bias; default: the "
                        "Linear named head, fc, linear, classifier, out, output or decoder in --weights "
                        "whose in-features are the hidden size")
    p.add_argument("--initial", default=None, metavar="FILE",
                   help="initial state: .npy of PyTorch's h_0 (1, batch, n), (batch, n) or (n,), or .npz "
                        "with h0 and c0 (LSTM) or the cell's other states; zeros otherwise")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--spectral", default="power", choices=("power", "svd"),
                   help="spectral norm by warm-started power iteration (default) or full SVD")
    p.add_argument("--carousel", action="store_true",
                   help="LSTM: also the carousel path (1997-truncated gradient) curve")
    p.add_argument("--lyapunov", default=None, metavar="N|full",
                   help="how many Lyapunov exponents, the largest first (default 8), or full")
    p.add_argument("--no-lyapunov", action="store_true", help="skip the Lyapunov exponents")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: for long runs on a terminal)")
    p.add_argument("--mode", default="auto", choices=("auto", "exact", "matrix-free"),
                   help="exact N x N products, or matrix-free vector-Jacobian products (Frobenius "
                        "norms estimated with standard errors, the spectral norm as a band); auto: "
                        "exact up to N = 1024 when it fits in memory")
    p.add_argument("--float32", action="store_true",
                   help="the backward products in float32 (rescaled, log scale carried apart)")
    p.add_argument("--probes", default=None, help="probe vectors of the matrix-free mode, a multiple of 8 (default 32)")


def run(a: argparse.Namespace) -> int:
    from .._numeric.loading import trusting_torchscript

    with trusting_torchscript(bool(getattr(a, "trust_torchscript", False))):
        return _run(a)


def _run(a: argparse.Namespace) -> int:
    from .._numeric.flow import gradient_flow, network, random_inputs
    from .._numeric.keras_loading import is_keras_path
    from .._symbolic.cells import get_cell

    cell = get_cell(a.cell)
    _no_effect(a)
    if a.carousel and "c" not in cell.states:  # it used to be dropped without a word
        raise GradflowError(f"--carousel applies to cells with a cell state c (e.g. lstm, lstm-1997, slstm); "
                            f"{cell.name} has none")
    init = None
    seed = int_option(a.seed, "--seed", 0) if a.seed is not None else 0
    batch = int_option(a.batch, "--batch") if a.batch is not None else 1
    dtype = np.float64 if a.dtype == "float64" else np.float32
    probes = int_option(a.probes, "--probes", minimum=2) if a.probes is not None else 32
    if probes % 8:  # gradient_flow splits them into probe_blocks = 8 blocks (the standard error)
        raise GradflowError(f"--probes must be a multiple of 8 (8 independent probe blocks give the "
                            f"standard error), got {probes}")
    if a.probes is not None and a.mode == "exact":
        raise GradflowError("--probes has no effect with --mode exact")
    chain = "float32" if a.float32 or a.dtype == "float32" else "float64"

    structured = structured_path(cell) is not None  # its exact run holds no N × N matrix
    # the diagonal path without a per-step loss keeps no trajectory (as gradient_flow counts it)
    streaming = keeps_no_trajectory(cell, a.loss or "sum")
    # beside the run: the output's per-step record (dicts of floats) and its text, ~350 bytes a
    # step measured with tracemalloc (indrnn T = 200 000: 66 MiB beyond a 15 MiB streaming run)
    per_step_out = 512

    def mode_of(n, m, T, B):  # the mode gradient_flow will choose, for the size guard
        return choose_mode(cell, n, m, T, B, np.dtype(chain).itemsize, a.mode, structured=structured)
    hidden = int_option(a.hidden, "--hidden") if a.hidden is not None else None
    m = int_option(a.input, "--input") if a.input is not None else None
    inputs = None
    if a.inputs is not None:
        inputs = read_npy(a.inputs, "inputs")  # header, dtype and size checked before reading
        given_3d = inputs.ndim == 3
        if inputs.ndim == 2:
            inputs = inputs[:, None, :]
        if inputs.ndim != 3:
            raise GradflowError(f"--inputs must have shape (T, m) or ({'batch, T' if a.batch_first else 'T, batch'}"
                                f", m), got {inputs.shape}")
        if given_3d and not (a.batch_first or a.time_first) and a.weights is not None \
                and torchscript_batch_first(a.weights, a.prefix):  # the module keeps its layout
            a.batch_first = True
            note(f"--inputs {a.inputs}: read as (batch, T, m), the layout of the recurrent module in the "
                 f"TorchScript archive {a.weights} (batch_first=True); --time-first if it is not")
        if given_3d and not (a.batch_first or a.time_first) and a.weights is not None \
                and is_keras_path(str(a.weights)):  # Keras layers read (batch, T, m)
            a.batch_first = True
            note(f"--inputs {a.inputs}: read as (batch, T, m), the layout of Keras models ({a.weights}); "
                 "--time-first if it is not")
        if given_3d and not (a.batch_first or a.time_first) and inputs.shape[0] == inputs.shape[1] > 1:
            raise GradflowError(f"--inputs {a.inputs} has shape {inputs.shape}: (T, batch, m) and (batch, T, m) "
                                "both fit; say which with --time-first or --batch-first")
        if given_3d and not (a.batch_first or a.time_first) and inputs.shape[1] > 1 and a.steps is None:
            # nothing says the layout (no module, no --steps to check it against): say how it is read
            note(f"--inputs {a.inputs} of shape {inputs.shape}: read time first, as {inputs.shape[0]} steps "
                 f"of batch {inputs.shape[1]}; pass --batch-first if it is (batch, T, m)")
        if a.batch_first:
            inputs = np.ascontiguousarray(inputs.transpose(1, 0, 2))
        if a.steps is not None and int_option(a.steps, "--steps") != inputs.shape[0]:
            raise GradflowError(f"--steps {a.steps} does not match the {inputs.shape[0]} steps in {a.inputs}")
        if m is not None and m != inputs.shape[2]:
            raise GradflowError(f"--input {m} does not match the inputs' {inputs.shape[2]} features")
        m = inputs.shape[2]
    from .stacked import run_stacked, stacked_inputs, stacked_or_none  # every layer and direction
    stacked = stacked_or_none(a, cell, dtype)
    if stacked is not None and (a.mode != "auto" or a.float32 or a.probes is not None):
        raise GradflowError("--mode, --float32 and --probes apply to one layer; this model is analysed "
                            "whole (every layer and direction): pick one with --layer/--direction")
    if stacked is not None:  # the loss's head reads the top layer's output (D·n or D·p features)
        x = stacked_inputs(a, stacked, inputs, batch, seed, dtype)
        sized = argparse.Namespace(hidden=stacked.output_size)
        return run_stacked(a, stacked, x, _lyapunov(a), _loss_options(a, sized, x.shape[0], x.shape[1]))
    if a.weights is not None:
        layer = int_option(a.layer, "--layer", minimum=0) if a.layer is not None else None
        if layer is not None and layer > 0 and inputs is None:
            raise GradflowError(f"--layer {layer} reads the outputs of layer {layer - 1}, which gradflow "
                                f"does not compute: give them as --inputs (an .npy of shape (T, batch, "
                                f"features) saved from your model), or measure --layer 0")
        net = network(cell, hidden, m, weights=a.weights, dtype=dtype, prefix=a.prefix, layer=layer,
                      direction=a.direction, forget_bias=float_option(a.forget_bias, "--forget-bias"))
    else:
        if m is None and inputs is None and hidden is not None:  # initialised weights, random inputs:
            m = default_input(init_scheme(a.init, cell), hidden)  # m = n (Mamba, S4D: n / N), as in report
        if hidden is None or m is None:
            raise GradflowError("flow needs --hidden (or --weights)")
        if a.steps is None and inputs is None:
            raise GradflowError("flow needs --steps (or --inputs)")
        T = inputs.shape[0] if inputs is not None else int_option(a.steps, "--steps")
        B = inputs.shape[1] if inputs is not None else batch
        check_flow_size(cell, hidden, m, T, B, np.dtype(dtype).itemsize,  # before any allocation
                        mode=mode_of(hidden, m, T, B), probes=probes, structured=structured, streaming=streaming,
                        per_step=per_step_out)
        init = init_scheme(a.init, cell)
        net = network(cell, hidden, m, init=init, seed=seed, gain=_gain(a.gain or "1.0"),
                      forget_bias=float_option(a.forget_bias, "--forget-bias"), dtype=dtype)
    if inputs is None:
        if a.steps is None:
            raise GradflowError("flow needs --steps (or --inputs)")
        T = int_option(a.steps, "--steps")
        check_flow_size(cell, net.hidden, net.input, T, batch, np.dtype(dtype).itemsize,
                        mode=mode_of(net.hidden, net.input, T, batch), probes=probes,
                        structured=structured, streaming=streaming, per_step=per_step_out)
        inputs = random_inputs(T, net.input, batch=batch, seed=seed, dtype=dtype)
    T = inputs.shape[0]
    mode = mode_of(net.hidden, net.input, T, inputs.shape[1])
    if a.probes is not None and a.mode == "auto" and _exact_at_any_size(cell):
        raise GradflowError(f"--probes has no effect: {cell.name}'s Jacobian is diagonal (or per-unit "
                            "blocks), measured exactly at any size (--mode matrix-free forces the estimates)")
    if a.probes is not None and mode == "exact":
        raise GradflowError("--probes has no effect: --mode auto runs this size exactly "
                            "(--mode matrix-free forces the estimates)")
    if a.spectral == "svd" and mode == "matrix-free":
        raise GradflowError("--spectral svd has no effect in the matrix-free mode, where ||.||_2 is a band "
                            "from the probes; --mode exact computes it")
    check_flow_size(cell, net.hidden, net.input, T, inputs.shape[1], np.dtype(dtype).itemsize, mode=mode,
                    probes=probes, structured=structured, streaming=streaming, per_step=per_step_out)
    tty = _isatty(sys.stderr)
    show = a.progress if a.progress is not None else \
        ((tty and T * net.state_size >= 20_000) or _long_run(T, inputs.shape[1], net.state_size))
    loss, head, targets, initial = _loss_options(a, net, T, inputs.shape[1])
    flow = gradient_flow(net, inputs, spectral=a.spectral, carousel=a.carousel, lyapunov=_lyapunov(a),
                         progress=_Progress(f"{cell.name} T={T}") if show else None, loss=loss, head=head,
                         targets=targets, initial=initial, batch_first=False,
                         mode=a.mode, dtype="float32" if a.float32 else None, probes=probes)
    record = flow.to_json()
    if a.json:
        json.dump(record, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
        return 0
    print(f"{cell.title} ({cell.name}): n = {net.hidden}, m = {net.input}, T = {T}, "
          f"batch = {flow.batch}; loss {flow.loss}; log10 norms, batch mean")
    if init is not None and init in SCHEME_CELLS:
        print(f"init: {init_words(init, net.hidden, net.input)}")
    if flow.mode == "matrix-free":
        _sketch_table(flow, record, T, net.state_size)
        return 0
    print(f"mode: exact ({_exact_path(cell)}, {flow.dtype})")
    head = f"{'k':>6} {'T-k':>6} {'||.||_2':>10} {'||.||_F':>10} {'||dL/ds_k||':>11}"
    if flow.cell_state is not None and "c" not in cell.states:  # mLSTM: the memory (C, n)
        f = "f'_j" if "m" in cell.states else "f_j"
        print(f"Cn: the memory block d(C_T, n_T)/d(C_k, n_k) = prod_{{j>k}} {f} I (vec C has n^2 entries)")
        head += f" {'Cn:||.||_2':>10} {'Cn:||.||_F':>10}"
    elif flow.cell_state is not None:
        head += f" {'c: ||.||_2':>10} {'c: ||.||_F':>10}"
    if flow.carousel is not None:
        head += f" {'carousel_2':>10}"
    if flow.bound is not None:
        head += f" {'bound':>10}"
    parts = list(flow.grad_parts or {})
    for name in parts:
        head += f" {'||dL/d' + name + '_k||':>11}"
    print(head)
    for rec in record["curve"]:
        line = (f"{rec['k']:>6} {T - rec['k']:>6} {fmt_log10(rec['log10_norm_2'])} "
                f"{fmt_log10(rec['log10_norm_fro'])} {fmt_log10(rec['log10_grad_norm']):>11} ")
        if "cell_state" in rec:
            line += f"{fmt_log10(rec['cell_state']['log10_norm_2'])} {fmt_log10(rec['cell_state']['log10_norm_fro'])} "
        if "carousel" in rec:
            line += f"{fmt_log10(rec['carousel']['log10_norm_2'])} "
        if "log10_bound" in rec:
            line += fmt_log10(rec["log10_bound"]) + " "
        for name in parts:
            line += f" {fmt_log10(rec['log10_grad_norm_' + name])}"
        print(line.rstrip())
    if record["lyapunov"]:
        print("\n".join(lyapunov_lines(record["lyapunov"], net.state_size)))
    return 0


def _loss_options(a: argparse.Namespace, net, T: int, B: int):
    """(loss, head, targets, initial) for gradient_flow from --loss, --head, --targets, --initial."""
    import os

    from .._numeric.loading import read_npz
    from .._numeric.loss import read_head

    loss = a.loss
    if loss is None:
        if a.targets is not None:
            raise GradflowError("--targets needs --loss last (targets (batch,)) or --loss every (targets "
                                "(T, batch))")
        loss = "sum"
    head = targets = None
    if loss == "sum":
        if a.head is not None:
            raise GradflowError("--head has no effect with --loss sum (L = sum of h_T); pass --loss last or every")
        if a.targets is not None:
            raise GradflowError("--targets has no effect with --loss sum (L = sum of h_T); pass --loss last or every")
    else:
        if a.targets is None:
            raise GradflowError(f"--loss {loss} needs --targets FILE.npy (integer classes, shape "
                                f"{'(batch,)' if loss == 'last' else '(T, batch)'})")
        if a.head is not None and os.path.isfile(a.head):
            head = read_head(a.head, net.hidden)
        elif a.weights is not None:
            head = read_head(a.weights, net.hidden, a.head, what=f"weights file {a.weights}")
        elif a.head is not None:
            raise GradflowError(f"--head {a.head} is not a file, and there is no --weights to find it in")
        else:
            raise GradflowError(f"--loss {loss} needs a head: --weights holding it, or --head FILE")
        targets = read_npy(a.targets, "targets")
        if loss == "every" and a.batch_first:  # checked here: the message must name the file's own layout
            if targets.shape != (B, T):
                raise GradflowError(f"--targets {a.targets} has shape {tuple(targets.shape)}; with "
                                    f"--batch-first, --loss every needs (batch, T) = ({B}, {T})")
            targets = targets.T
    initial: Any = None
    if a.initial is not None:
        if a.initial.endswith(".npz"):
            initial = read_npz(a.initial, lambda name: True, "initial")
        else:
            initial = read_npy(a.initial, "initial")
    return loss, head, targets, initial


def _exact_path(cell) -> str:
    """How the exact mode computes the products for this cell (what gradient_flow's auto picks)."""
    path = structured_path(cell)
    if path == "diagonal":
        return "a diagonal Jacobian: products of its diagonals, O(T N), no N x N matrix"
    if path == "blocks":
        return "per-unit blocks: products of the small blocks, no N x N matrix"
    return "N x N products"


def _exact_at_any_size(cell) -> bool:
    """gradient_flow's auto mode runs this cell's O(T·n) structured path, never matrix-free."""
    return structured_path(cell) is not None


def _sketch_table(flow, record, T: int, N: int) -> None:
    """The table of a matrix-free run: the estimates with their standard errors, the band."""
    print(f"mode: matrix-free ({flow.dtype}; {flow.probes} probe vectors): ||.||_F estimated "
          f"+- one standard error ('exact': no error, the probes span the block's rows or it is diagonal), "
          f"||.||_2 a band [low, high], ||dL/ds_k|| exact")
    head = f"{'k':>6} {'T-k':>6} {'||.||_F':>10} {'+-se':>8} {'||.||_2 low':>11} {'high':>10} {'||dL/ds_k||':>11}"
    if flow.cell_state is not None:
        head += f" {'c: ||.||_F':>10} {'+-se':>8}"
    if flow.carousel is not None:  # --carousel: the 1997-truncated c→c block
        head += f" {'carousel_F':>10} {'+-se':>8}"
    parts = list(flow.grad_parts or {})
    for name in parts:
        head += f" {'||dL/d' + name + '_k||':>11}"
    print(head)

    def se(c) -> str:
        return f"{'exact':>8}" if c.get("log10_norm_fro_exact") else f"{c['log10_norm_fro_se']:8.4f}"

    for rec in record["curve"]:
        line = (f"{rec['k']:>6} {T - rec['k']:>6} {fmt_log10(rec['log10_norm_fro'])} {se(rec)} "
                f"{fmt_log10(rec['log10_norm_2_low']):>11} {fmt_log10(rec['log10_norm_2_high'])} "
                f"{fmt_log10(rec['log10_grad_norm']):>11}")
        if "cell_state" in rec:
            c = rec["cell_state"]
            line += f" {fmt_log10(c['log10_norm_fro'])} {se(c)}"
        if "carousel" in rec:
            c = rec["carousel"]
            line += f" {fmt_log10(c['log10_norm_fro'])} {se(c)}"
        for name in parts:
            line += f" {fmt_log10(rec['log10_grad_norm_' + name]):>11}"
        print(line)
    if record["lyapunov"]:
        print("\n".join(lyapunov_lines(record["lyapunov"], N)))
