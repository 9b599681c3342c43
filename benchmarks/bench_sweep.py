"""Benchmark (issue 13): a 4 × 8 × 3-seed ``gradflow sweep`` on 1 and 2 local Dask workers.

The grid: 4 cells (tanh-rnn, gru, lstm, lstm-1997) × 8 gains of W (0.25 … 2.0) × 3 seeds, n = 32,
T = 100, batch 4, orthogonal init (96 points; the LSTMs at their default forget bias). Each worker
count runs in a fresh directory (nothing resumed), timed from the call to :func:`gradflow.run_sweep`
to its return, so the cluster's start-up is included. The load average is printed before and
after: on a shared machine the ratio, not the absolute time, is the figure to read.

    python benchmarks/bench_sweep.py                  # workers 1 and 2
    python benchmarks/bench_sweep.py --workers 1 2 4 --hidden 16 --steps 50
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import gradflow as gf

CELLS = ("tanh-rnn", "gru", "lstm", "lstm-1997")
GAINS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    points = gf.grid_points(CELLS, gains=GAINS, hidden=[a.hidden], steps=[a.steps],
                            seeds=list(range(a.seeds)), batch=4)
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"gradflow {gf.__version__}; {len(points)} points (n = {a.hidden}, T = {a.steps})")
    times = {}
    for w in a.workers:
        with tempfile.TemporaryDirectory() as d:
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            res = gf.run_sweep(points, d, workers=w)
            dt = time.perf_counter() - t0
            assert not res.failed and res.computed == len(points)
            inside = sum(r["seconds"] for r in res.rows)
            times[w] = dt
            print(f"workers = {w}: {dt:7.1f} s wall ({inside:.1f} s inside the points; load average "
                  f"{load:.2f} before, {os.getloadavg()[0]:.2f} after)")
    base = times[a.workers[0]]
    for w, dt in times.items():
        if w != a.workers[0]:
            print(f"speed-up of {w} workers over {a.workers[0]}: {base / dt:.2f}×")


if __name__ == "__main__":
    main()
