"""``gradflow sweep``: decay rates over a grid of cells × gains × forget biases × n × T × seeds, on Dask.

    gradflow sweep CELL [CELL ...] -o DIR [--gains 0.5,1,1.5] [--forget-biases -1,0,1]
                   [--hidden 16,32] [--steps 50,100] [--seeds 0,1,2] [--input M] [--batch B]
                   [--init SCHEME] [--workers N | --scheduler ADDRESS] [--csv] [--no-figures]
                   [--quiet] [--max-points P] [--max-work W]

DIR receives ``results.parquet`` (``results.csv`` with ``--csv``), ``decay_rates.png/pdf``,
``phase_diagram.png/pdf``, ``sweep.json`` and ``points/`` (one file per finished point). Run the
same command again after an interruption or a failed point: finished points are not recomputed.

The grid's size is checked before anything is written or started: at most 10 000 points and 1e13
multiply-adds for all runs together (about three hours of one core); ``--max-points`` and
``--max-work`` raise the caps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._checks import GradflowError
from .options import float_option, int_option, say

HELP = "decay rates over a grid of cells, gains, forget biases, sizes and seeds (on Dask)"


def _list(text: str, option: str, parse) -> list:
    items = [s.strip() for s in str(text).split(",")]
    if not items or any(not s for s in items):
        raise GradflowError(f"{option} must be a comma-separated list, got {text!r}")
    return [parse(s, option) for s in items]


def _positive(v: float | None, option: str) -> float:
    if v is None or v <= 0:
        raise GradflowError(f"{option} must be a positive number, got {v!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cells", nargs="+", metavar="CELL", help="cells to sweep (see `gradflow derive --list`)")
    p.add_argument("-o", "--out", required=True, metavar="DIR",
                   help="the sweep's directory: new, empty, or an earlier sweep's (resumed)")
    p.add_argument("--gains", default=None, metavar="G,G,…",
                   help="gains of W (with the orthogonal init: σ_max of each gate's W; cells without a "
                        "recurrent matrix run once at gain 1); default 0.5,1,1.5")
    p.add_argument("--forget-biases", default=None, metavar="B,B,…",
                   help="forget-gate biases b_f (cells with a forget gate; the others use their default)")
    p.add_argument("--hidden", default="16", metavar="N,N,…", help="hidden sizes (default 16)")
    p.add_argument("--steps", default="50", metavar="T,T,…", help="sequence lengths (default 50)")
    p.add_argument("--seeds", default="0", metavar="S,S,…", help="seeds of weights and inputs (default 0)")
    p.add_argument("--input", default=None, metavar="M",
                   help="input size of every cell (default 4; Mamba, S4D, RG-LRU and the LRU under their "
                        "reference init: as flow and report, e.g. Mamba n/16)")
    p.add_argument("--batch", default="4", metavar="B", help="input sequences per point (default 4)")
    p.add_argument("--init", default=None, help="initialisation scheme of every cell (default: orthogonal, "
                   "so that the gain is σ_max of each gate's W; Mamba, S4D, RG-LRU and the LRU, which "
                   "have no W, their reference init, as flow and report)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", default=None, metavar="N",
                       help="local Dask worker processes (default: the CPU count); 0: in this process")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="a running Dask scheduler, e.g. tcp://10.0.0.1:8786")
    p.add_argument("--csv", action="store_true", help="also write results.csv")
    p.add_argument("--no-figures", action="store_true", help="write the table only")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--max-points", default=None, metavar="P",
                   help="refuse a grid of more points than this (default 10000)")
    p.add_argument("--max-work", default=None, metavar="W",
                   help="refuse a grid whose runs need more multiply-adds than this in all "
                        "(default 1e13, about three hours of one core)")


class _Progress:
    """``sweep: 12/24 points`` on stderr: one updated line on a terminal, else every 10 %."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr

    def __call__(self, done: int, total: int, point, row) -> None:
        failed = row is None
        tty = getattr(self.stream, "isatty", lambda: False)()
        if failed:
            self.stream.write(("\n" if tty else "") + f"sweep: point failed: {point.describe()}\n")
        if tty:
            self.stream.write(f"\rsweep: {done}/{total} points")
            if done == total:
                self.stream.write("\n")
        elif done == total or done % max(1, total // 10) == 0:
            self.stream.write(f"sweep: {done}/{total} points ({100 * done // total}%)\n")
        self.stream.flush()


def run(args: argparse.Namespace) -> int:
    from .._numeric.size_guard import MAX_POINTS, MAX_WORK
    from .._numeric.sweep_grid import grid_points, has_recurrent_matrix
    from .._numeric.sweep_run import run_sweep

    fbs = None if args.forget_biases is None else _list(args.forget_biases, "--forget-biases", float_option)
    points = grid_points(
        args.cells, gains=_list("0.5,1,1.5" if args.gains is None else args.gains, "--gains", float_option),
        forget_biases=fbs if fbs is not None else (None,),
        hidden=_list(args.hidden, "--hidden", int_option), steps=_list(args.steps, "--steps", int_option),
        seeds=_list(args.seeds, "--seeds", lambda s, o: int_option(s, o, minimum=0)),
        input=None if args.input is None else int_option(args.input, "--input"),
        batch=int_option(args.batch, "--batch"), init=args.init,
        max_points=MAX_POINTS if args.max_points is None else int_option(args.max_points, "--max-points"),
        max_work=MAX_WORK if args.max_work is None else _positive(float_option(args.max_work, "--max-work"),
                                                                   "--max-work"))
    if fbs is not None and not any(p.forget_bias is not None for p in points):
        raise GradflowError("--forget-biases applies to cells with a forget gate; none of "
                            f"{', '.join(args.cells)} has one")
    if args.gains is not None and not any(has_recurrent_matrix(c) for c in args.cells):
        raise GradflowError("--gains scales the recurrent matrix W (σ_max of each gate's W); none of "
                            f"{', '.join(args.cells)} has one: they run once, at their unscaled init")
    workers = None if args.workers is None else int_option(args.workers, "--workers", minimum=0)
    try:
        result = run_sweep(points, args.out, scheduler=args.scheduler, workers=workers,
                           progress=None if args.quiet else _Progress(), command=["gradflow", *args.argv],
                           csv=args.csv)
    except KeyboardInterrupt:
        print(f"gradflow: interrupted; the finished points are saved in {args.out}: run the same "
              "command again to resume", file=sys.stderr)
        return 130
    out = Path(args.out)
    files = ["results.parquet"] + (["results.csv"] if (out / "results.csv").is_file() else [])
    if result.rows and not args.no_figures:
        from .._views.sweep_plots import write_sweep_figures

        files += [p.name for p in write_sweep_figures(result.rows, args.out)]
    else:  # an earlier run's figures would show an earlier grid beside this table
        stale = [out / f"{stem}.{ext}" for stem in ("decay_rates", "phase_diagram") for ext in ("png", "pdf")]
        if any(f.is_file() for f in stale):
            for f in stale:
                f.unlink(missing_ok=True)
            say(f"sweep: removed the earlier figures in {args.out} (they showed an earlier grid"
                + ("; run without --no-figures to draw this one)" if result.rows else ")"))
    say(f"sweep: {len(points)} points ({result.computed} computed, {result.resumed} already done, "
        f"{len(result.failed)} failed) in {args.out}: {', '.join(files) if result.rows else 'no table'}")
    if result.failed:
        shown = "; ".join(f"{p.describe()}: {why}" for p, why in result.failed[:3])
        more = f"; and {len(result.failed) - 3} more" if len(result.failed) > 3 else ""
        raise GradflowError(f"{len(result.failed)} of {len(points)} points failed ({shown}{more}); the "
                            f"{len(result.rows)} finished points are saved in {args.out}: run the same "
                            "command again to retry the others")
    return 0
