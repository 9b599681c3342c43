"""Benchmark (issue 13): the matrix-free mode on real-size LSTMs, and float32 against float64.

    python benchmarks/bench_matrix_free.py --hidden 1024 --steps 1000 --exact-steps 100
    python benchmarks/bench_matrix_free.py --hidden 4096 --steps 1000
    python benchmarks/bench_matrix_free.py --float32-check --hidden 64 --steps 10000

For one LSTM (m = ``--input``, default n), ``gradient_flow(..., mode="matrix-free")`` with its
defaults (32 probes per block on the full product and the c→c block, 8 Lyapunov exponents):

* wall time of the whole call and of its parts (forward unroll, the sketch sweep, the Lyapunov
  pass, split by the progress callback), and the peak resident memory of the process
  (``resource.getrusage``; run one size per process for a clean figure);
* the product chain alone (T_chain steps of yᵀ ↦ yᵀJ_t for the R = 65 rows, renormalised) and
  its FLOP rate, counting only the GEMM FLOPs it must do (2·R·(4n)·n per step, the first
  ``--chain-steps`` steps), against the
  machine's float64 matmul rate measured here for n × n matrices and for the chain's own GEMM
  shape (R × 4n times 4n × n);
* with ``--exact-steps T_e``: the exact sweep on the first T_e inputs and the matrix-free curves
  of the same T_e steps: max |Δ| of log10 ‖∂L/∂s_k‖ (exact in both), the Frobenius estimate's
  error in log10 and in standard errors, and whether the spectral band holds the exact norm.

``--float32-check``: matrix-free and exact runs in float64 and float32 on the same network
(``--hidden``, ``--steps``), and the largest difference of their log10 curves.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time

import numpy as np


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_rate(shape_a, shape_b, dtype=np.float64, repeats=5, clock=time.process_time) -> float:
    """GFLOP/s of A @ B, median of ``repeats``; by CPU time of this process by default (on one
    BLAS thread and a shared machine, the rate of the core while this process held it)."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal(shape_a).astype(dtype), rng.standard_normal(shape_b).astype(dtype)
    A @ B
    times = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(3):
            A @ B
        times.append((clock() - t0) / 3)
    return 2 * shape_a[0] * shape_a[1] * shape_b[1] / statistics.median(times) / 1e9


def timed(f, *args, **kwargs):
    """(CPU seconds of this process, result): on one BLAS thread, the work without the waits."""
    t0 = time.process_time()
    out = f(*args, **kwargs)
    return time.process_time() - t0, out


def float32_check(n: int, T: int) -> None:
    import gradflow as gf

    net = gf.network("lstm", n, n, seed=0, forget_bias=1.0)
    x = gf.random_inputs(T, n, seed=0)
    for mode in ("matrix-free", "exact"):
        t64, f64 = timed(gf.gradient_flow, net, x, mode=mode, lyapunov=False)
        t32, f32 = timed(gf.gradient_flow, net, x, mode=mode, dtype="float32", lyapunov=False)
        print(f"lstm n = {n}, T = {T}, {mode}: float64 {t64:.1f} s CPU, float32 {t32:.1f} s CPU", flush=True)
        for key in ("log10_norm_2", "log10_norm_fro", "log10_grad_norm"):
            a, b = np.asarray(f64.full[key]), np.asarray(f32.full[key])
            if np.all(np.isnan(a)):
                continue
            d = np.abs(a - b)
            print(f"  max |Δ {key}| float32 vs float64 = {np.nanmax(d):.1e} (median {np.nanmedian(d):.1e}); "
                  f"smallest log10 value {np.nanmin(a):.1f}; finite in float32: {bool(np.all(np.isfinite(b)))}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--input", type=int, default=None, help="input size m (default n)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--chain-steps", type=int, default=100, help="steps of the chain-alone timing")
    ap.add_argument("--exact-steps", type=int, default=0, help="compare with the exact sweep over this many steps")
    ap.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    ap.add_argument("--float32-check", action="store_true")
    a = ap.parse_args()

    import gradflow as gf
    from gradflow._numeric.flow import blas_threads, thread_limit

    print(f"gradflow {gf.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs; load average before: {os.getloadavg()}", flush=True)
    if a.float32_check:
        float32_check(a.hidden, a.steps)
        print(f"load average after: {os.getloadavg()}")
        return
    n, T = a.hidden, a.steps
    m = a.input or n
    N = 2 * n
    threads = blas_threads(None, N * N)
    print(f"BLAS threads: {threads or 'BLAS default'} (GRADFLOW_THREADS={os.environ.get('GRADFLOW_THREADS')})")
    with thread_limit(threads):  # the threads gradient_flow chooses, for every part
        run(a, n, m, N, T)
    print(f"peak RSS at the end: {rss_peak_mib():.0f} MiB; load average after: {os.getloadavg()}")


def run(a, n, m, N, T):
    import gradflow as gf
    from gradflow._numeric.matrix_free import JacobianOperator

    R = 1 + 2 * 32
    q = min(n, 1024)  # BLAS reaches its rate by this size; a 4096³ product would cost minutes here
    print(f"machine float64 matmul {q}x{q} @ {q}x{q}: {matmul_rate((q, q), (q, q)):.1f} GFLOP/s; "
          f"the chain's shape {R}x{4 * n} @ {4 * n}x{n}: {matmul_rate((R, 4 * n), (4 * n, n)):.1f} GFLOP/s "
          f"(median of 5, CPU time)", flush=True)
    net = gf.network("lstm", n, m, seed=0, forget_bias=1.0)
    x = gf.random_inputs(T, m, seed=0)
    print(f"lstm n = {n}, m = {m}, N = {N}, T = {T}, B = 1; after building the weights: "
          f"peak RSS {rss_peak_mib():.0f} MiB", flush=True)
    marks: list[float] = []

    def progress(done, total):  # the first call comes after the unroll, the last ends the sweep
        if done in (1, total):
            marks.append(time.perf_counter())

    t0, c0 = time.perf_counter(), time.process_time()
    flow = gf.gradient_flow(net, x, mode="matrix-free", dtype=a.dtype, progress=progress)
    t_all, c_all = time.perf_counter() - t0, time.process_time() - c0
    print(f"gradient_flow(mode='matrix-free', dtype={a.dtype}), whole call: {t_all:.1f} s wall, "
          f"{c_all:.1f} s CPU; peak RSS {rss_peak_mib():.0f} MiB", flush=True)
    print(f"  parts: forward unroll and first step {marks[0] - t0:.1f} s, sketch sweep {marks[-1] - marks[0]:.1f} s "
          f"({1e3 * (marks[-1] - marks[0]) / max(T - 1, 1):.0f} ms/step), Lyapunov (8, forward products) "
          f"{t0 + t_all - marks[-1]:.1f} s; log10 ||dL/ds_0|| = {flow.full.log10_grad_norm[0, 0]:.3f}", flush=True)
    traj = net.unroll(x[:a.chain_steps])
    T = traj.steps
    op = JacobianOperator(net, dtype=np.dtype(a.dtype))
    Tc = min(a.chain_steps, T)
    Y = np.random.default_rng(0).standard_normal((1, R, N)).astype(a.dtype)
    envs = [net.step_env(traj, t) for t in range(T, T - Tc, -1)]
    t0, c0 = time.perf_counter(), time.process_time()
    for env in envs:
        Y = op.vjp(Y, env)
        Y = Y / np.sqrt(np.sum(Y * Y, axis=-1, keepdims=True))
    tw, tc = time.perf_counter() - t0, time.process_time() - c0
    rate = op.flops(R) * Tc / tc / 1e9
    ref = matmul_rate((R, 4 * n), (4 * n, n), np.dtype(a.dtype))
    q = min(n, 1024)
    sq = matmul_rate((q, q), (q, q), np.dtype(a.dtype))
    print(f"  chain alone ({Tc} steps, R = {R} rows, {a.dtype}): {1e3 * tc / Tc:.1f} ms/step CPU "
          f"({1e3 * tw / Tc:.1f} wall), by CPU time "
          f"{rate:.1f} GFLOP/s = {100 * rate / sq:.0f}% of the {q}x{q} matmul rate ({sq:.1f}), "
          f"{100 * rate / ref:.0f}% of the same-shape GEMM rate ({ref:.1f}), measured just after", flush=True)
    if a.exact_steps:
        Te = a.exact_steps
        xe = x[:Te]
        t_ex, fe = timed(gf.gradient_flow, net, xe, mode="exact", lyapunov=False, bound=False)
        t_mf, fm = timed(gf.gradient_flow, net, xe, mode="matrix-free", lyapunov=False, bound=False)
        print(f"exact sweep, first {Te} steps: {t_ex:.1f} s CPU; matrix-free, same steps: {t_mf:.1f} s CPU",
              flush=True)
        for name in ("full", "cell_state"):
            ce = fe.full if name == "full" else fe.cell_state
            cm = fm.full if name == "full" else fm.cell_state
            sk = fm.sketch[name]
            dg = np.max(np.abs(ce.log10_grad_norm - cm.log10_grad_norm))
            err = cm.log10_norm_fro[0] - ce.log10_norm_fro[0]
            se = sk.log10_norm_fro_se[0]
            z = np.abs(err[se > 0]) / se[se > 0]  # se = 0 where the block is diagonal (k = T − 1): exact
            two = ce.log10_norm_2[0]
            inside = np.mean((sk.log10_norm_2_low[0] <= two + 1e-12) & (two <= sk.log10_norm_2_high[0]))
            cert = bool(np.all(sk.log10_norm_2_sketch[0] <= two + 1e-12))
            width = np.median(sk.log10_norm_2_high[0] - sk.log10_norm_2_low[0])
            print(f"  {name}: max |Δ log10 ||dL/ds_k|| | = {dg:.1e}; Frobenius estimate: max |error| "
                  f"{np.max(np.abs(err)):.3f} in log10 (median {np.median(np.abs(err)):.3f}), median se "
                  f"{np.median(sk.log10_norm_fro_se[0]):.3f} (mean {np.mean(sk.log10_norm_fro_se[0]):.4f}), "
                  f"max |error|/se {np.max(z, initial=0):.2f}; spectral band holds "
                  f"the exact norm at {100 * inside:.0f}% of k (median width {width:.2f} in log10), sketch lower "
                  f"bound certified everywhere: {cert}", flush=True)


if __name__ == "__main__":
    main()
