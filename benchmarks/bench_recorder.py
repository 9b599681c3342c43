"""The cost of one gradflow.torch.Recorder recording: wall and CPU seconds per recording.

An ``nn.LSTM`` with input size 1 (pixel by pixel) and a probe batch of 16, one BLAS thread (the
Recorder's default), Lyapunov exponents off (its default): the minimum and median of ``--repeat``
recordings for each (n, T). CPU seconds are the process's own, which a loaded machine inflates
less than wall seconds.

    python benchmarks/bench_recorder.py [--sizes 8x64,32x64,32x8,64x64] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import gradflow.torch as gft


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="8x64,32x8,32x64,64x64", help="n x T pairs")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    torch.manual_seed(0)
    print(f"{'n':>4} {'T':>4} {'B':>3}  wall min / median (s)   cpu min / median (s)")
    for pair in a.sizes.split(","):
        n, T = (int(v) for v in pair.split("x"))
        rnn = torch.nn.LSTM(1, n, batch_first=True)
        rec = gft.Recorder(rnn, inputs=torch.rand(a.batch, T, 1))
        rec.record(0)  # compiles the cell's kernels once
        wall, cpu = [], []
        for i in range(a.repeat):
            w, c = time.perf_counter(), time.process_time()
            rec.record(i + 1)
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
        print(f"{n:>4} {T:>4} {a.batch:>3}  {min(wall):8.3f} / {np.median(wall):6.3f}        "
              f"{min(cpu):8.3f} / {np.median(cpu):6.3f}")


if __name__ == "__main__":
    main()
