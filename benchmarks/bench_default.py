"""Benchmark (issue 13): the default ``gradient_flow`` run before and after the "fast default".

* before: the old default — the full Lyapunov spectrum (an N × N QR per step, ``lyapunov="full"``),
  BLAS with its default number of threads, and the dense N × N product chain;
* after: the new default — the 8 largest exponents (an N × 8 QR per step), BLAS threads chosen
  for the size (one thread below N²·B = ``ONE_THREAD_BELOW``, the BLAS default above), and the
  LSTM's diagonal c column applied as column scalings in the product chain.

Both are timed in this process, interleaved (before, after, before, after, …) so that a change
of load on a shared machine hits both; the load average is printed before and after. Also the
Lyapunov pass alone (full against leading 8) and the agreement of the 8 leading exponents with
the first 8 of the full spectrum (same trajectory; they differ by O(1/T) because the starts differ),
and the product chain alone with the LSTM's diagonal c column applied as column scalings (the
default) against the dense N × N matmul (``products(..., dense=True)``), interleaved too.

    python benchmarks/bench_default.py                   # LSTM n = 64, T = 200 and n = 256, T = 500
    python benchmarks/bench_default.py --repeats 3 --sizes 64:200
    python benchmarks/bench_default.py --scan      # ms/step, 1 thread against the BLAS default, by n

``--scan`` measures where more BLAS threads start to pay (the threshold ``ONE_THREAD_BELOW``):
``gradient_flow`` without Lyapunov exponents, LSTM n = 32…256, interleaved, 3 repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time

import numpy as np


def blas_default_threads() -> int:
    from threadpoolctl import threadpool_info

    return max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")


@contextlib.contextmanager
def dense_chain():
    """The product chain as before issue 13: every J_t multiplied as a dense N × N matrix."""
    from gradflow._numeric import flow

    kinds = flow._column_kinds
    flow._column_kinds = lambda blocks, S: [False] * S  # no column is taken as diagonal
    try:
        yield
    finally:
        flow._column_kinds = kinds


def timed(f, *args, **kwargs):
    t0 = time.perf_counter()
    out = f(*args, **kwargs)
    return time.perf_counter() - t0, out


def scan(default: int) -> None:
    import gradflow as gf

    for n, T in ((32, 100), (64, 60), (96, 40), (128, 30), (192, 20), (256, 15)):
        net = gf.network("lstm", n, n, seed=0, forget_bias=1.0)
        x = gf.random_inputs(T, n, seed=0)
        res: dict = {1: [], default: []}
        for _ in range(3):
            for th in res:
                t, _f = timed(gf.gradient_flow, net, x, lyapunov=False, bound=False, threads=th)
                res[th].append(1e3 * t / T)
        print(f"lstm n = {n:3d}, N^2 = {(2 * n) ** 2:6d}: " + ", ".join(
            f"{th} thread(s) {min(v):6.2f} ms/step (median {statistics.median(v):6.2f})" for th, v in res.items()),
            flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="64:200,256:500", help="n:T pairs (LSTM, m = n)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scan", action="store_true", help="only the thread scan")
    ap.add_argument("--parts", default="flow,lyapunov,chain",
                    help="which timings: flow (before/after), lyapunov (the pass alone), chain")
    a = ap.parse_args()

    import gradflow as gf
    from gradflow._numeric.flow import ONE_THREAD_BELOW, blas_threads, thread_limit

    default = blas_default_threads()
    print(f"gradflow {gf.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, BLAS default threads {default}, "
          f"ONE_THREAD_BELOW = {ONE_THREAD_BELOW}")
    print(f"load average before: {os.getloadavg()}")
    if a.scan:
        scan(default)
        print(f"load average after: {os.getloadavg()}")
        return
    for pair in a.sizes.split(","):
        n, T = (int(v) for v in pair.split(":"))
        net = gf.network("lstm", n, n, seed=0, forget_bias=1.0)
        x = gf.random_inputs(T, n, seed=0)
        N = net.state_size
        chosen = blas_threads(None, N * N)
        print(f"\nlstm n = {n}, m = {n}, N = {N}, T = {T}, B = 1; threads chosen: "
              f"{chosen if chosen is not None else f'BLAS default ({default})'}")
        before, after = [], []
        for _ in range(a.repeats if "flow" in a.parts else 0):
            with dense_chain():
                tb, fb = timed(gf.gradient_flow, net, x, lyapunov="full", threads=default)
            ta, fa = timed(gf.gradient_flow, net, x)
            before.append(tb)
            after.append(ta)
            print(f"  before {tb:8.2f} s   after {ta:8.2f} s   ({tb / ta:.1f}x)", flush=True)
        if before:
            print(f"  median: before {statistics.median(before):.2f} s, after {statistics.median(after):.2f} s "
                  f"({statistics.median(before) / statistics.median(after):.1f}x)")
            for key in fa.full.FIELDS:
                d = np.nanmax(np.abs(np.asarray(fa.full[key]) - np.asarray(fb.full[key])))
                print(f"  curves before/after: max |Δ {key}| = {d:.1e}")
        traj = net.unroll(x)
        if "lyapunov" in a.parts:
            with thread_limit(chosen):
                t_full, l_full = timed(gf.lyapunov_exponents, net, traj)
                t_lead, l_lead = timed(gf.lyapunov_exponents, net, traj, 8)
            print(f"  Lyapunov pass alone ({'1 thread' if chosen == 1 else 'BLAS default'}): full {t_full:.2f} s, "
                  f"leading 8 {t_lead:.2f} s; max |λ_i(leading) − λ_i(full)|, i < 8: "
                  f"{np.abs(l_lead[0] - l_full[0, :8]).max():.1e} (T = {T}: O(1/T), different starts)")
        chain = {"dense": [], "structured": []}
        with thread_limit(chosen):
            for _ in range(a.repeats if "chain" in a.parts else 0):
                for key, dense in (("dense", True), ("structured", False)):
                    t0 = time.perf_counter()
                    for _pr in gf.products(net, traj, dense=dense):
                        pass
                    chain[key].append(time.perf_counter() - t0)
        if not chain["dense"]:
            continue
        d, st = statistics.median(chain["dense"]), statistics.median(chain["structured"])
        print(f"  product chain alone: dense {', '.join(f'{v:.2f}' for v in chain['dense'])} s, "
              f"structured {', '.join(f'{v:.2f}' for v in chain['structured'])} s; median {d / st:.2f}x")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
