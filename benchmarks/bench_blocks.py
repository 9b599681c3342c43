"""Benchmark: the per-unit block path of ``gradient_flow`` (LRU) against the dense sweep.

The LRU's state Jacobian is n rotation–scaling blocks of size 2 × 2 (``gradflow._numeric.blocks``):
one backward sweep of 2 × 2 products, O(T·n), against the dense sweep's 2n × 2n products, O(T·n³).
Both run on the same network at a size the dense sweep manages, and the block path alone at a
large one; the curves are compared where both run.

    python benchmarks/bench_blocks.py --hidden 2048 --steps 2000 --dense-hidden 64 --dense-steps 200
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import gradflow as gf


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def lru(n: int, m: int) -> gf.Network:
    return gf.Network(gf.lru_ring_init(gf.network("lru", n, m, seed=0).weights, r_min=0.9, r_max=0.999))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--input", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--dense-hidden", type=int, default=64)
    ap.add_argument("--dense-steps", type=int, default=200)
    a = ap.parse_args()
    print(f"{platform.machine()}, numpy {np.__version__}, python {platform.python_version()}")

    small, xs = lru(a.dense_hidden, a.input), gf.random_inputs(a.dense_steps, a.input, seed=0)
    fb, t_b = timed(lambda: gf.gradient_flow(small, xs, lyapunov=False))
    fd, t_d = timed(lambda: gf.gradient_flow(small, xs, lyapunov=False, structure="dense"))
    gap = max(float(np.max(np.abs(np.asarray(fb.full[k]) - np.asarray(fd.full[k])))) for k in fb.full.FIELDS)
    print(f"n = {a.dense_hidden} (state {2 * a.dense_hidden}), T = {a.dense_steps}: block path {t_b:.3f} s, "
          f"dense sweep {t_d:.3f} s, x{t_d / t_b:.0f}; largest log10 difference {gap:.1e}")

    big, x = lru(a.hidden, a.input), gf.random_inputs(a.steps, a.input, seed=0)
    fl, t_big = timed(lambda: gf.gradient_flow(big, x, lyapunov=False))
    print(f"n = {a.hidden} (state {2 * a.hidden}), T = {a.steps}: block path {t_big:.2f} s "
          f"({1e6 * t_big / a.steps:.0f} µs per step); log10 ||ds_T/ds_0||_2 = "
          f"{fl.full.mean()['log10_norm_2'][0]:.4f}")


if __name__ == "__main__":
    main()
