"""Benchmark: gradflow's full gradient-flow curve against PyTorch doing the same job.

The job, for every k = 0…T−1: the product ∂s_T/∂s_k, its spectral and Frobenius norms.

* gradflow: ``gradient_flow`` (one backward sweep over the derived closed-form Jacobians,
  spectral norm by warm-started power iteration, Lyapunov spectrum off).
* PyTorch: per-step ``torch.func.jacrev`` of the cell w.r.t. the state, then chained matmuls
  P_k = P_{k+1} J_{k+1}, and ``torch.linalg.matrix_norm`` (ord 2 and "fro") at every k; float64.

Both run in this process on this machine; the script also measures the machine's float64
matmul rate for N × N matrices (N = 2n for the LSTM) and reports which fraction of it the
product chain reaches (dense-equivalent FLOPs 2N³ per step / time), and the peak memory of
the gradflow run (tracemalloc).

    python benchmarks/bench_flow.py --cell lstm --hidden 256 --steps 1000

``--torch-steps`` times PyTorch on fewer steps (its cost per step is constant, so the per-step
ratio is unchanged; the script says when it does this).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import tracemalloc

import numpy as np


def matmul_rate(N: int, repeats: int = 5) -> float:
    """Measured float64 GFLOP/s of an N × N by N × N NumPy matmul (median of ``repeats``)."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((N, N)), rng.standard_normal((N, N))
    A @ B
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        A @ B
        times.append(time.perf_counter() - t0)
    return 2 * N**3 / statistics.median(times) / 1e9


def run_gradflow(cell, n, m, T, seed):
    import gradflow as gf

    net = gf.network(cell, n, m, seed=seed, forget_bias=1.0 if cell == "lstm" else None)
    x = gf.random_inputs(T, m, seed=seed)
    t0 = time.perf_counter()
    flow = gf.gradient_flow(net, x, lyapunov=False, bound=False)
    t_full = time.perf_counter() - t0
    # the product chain alone (no norms), to show what the norms cost on top
    traj = net.unroll(x)
    t0 = time.perf_counter()
    for _ in gf.products(net, traj):
        pass
    t_chain = time.perf_counter() - t0
    tracemalloc.start()
    gf.gradient_flow(net, x, lyapunov=False, bound=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return net, x, flow, t_full, t_chain, peak


def run_torch(net, x, T_torch):
    import torch

    import gradflow as gf

    n, N = net.hidden, net.state_size
    name = net.cell.torch_cell
    if name is None:
        raise SystemExit(f"{net.cell.name} has no PyTorch module to compare with")
    mod = getattr(torch.nn, name)(net.input, n, **dict(net.cell.torch_kwargs)).double()
    mod.load_state_dict({k: torch.tensor(v) for k, v in gf.to_state_dict(net.weights).items()})
    mod.requires_grad_(False)  # no autograd graph across the chain (it would hold every J)
    two = name == "LSTMCell"

    def F(s, xt):
        if two:
            h, c = mod(xt[None], (s[None, :n], s[None, n:]))
            return torch.cat([h[0], c[0]])
        return mod(xt[None], s[None])[0]

    X = torch.tensor(np.asarray(x)[:T_torch, 0, :])
    jac = torch.func.jacrev(F)
    t0 = time.perf_counter()
    with torch.no_grad():
        s = torch.zeros(N, dtype=torch.float64)
        states = [s]
        for t in range(T_torch):
            s = F(s, X[t])
            states.append(s)
    P = torch.eye(N, dtype=torch.float64)
    g = torch.ones(N, dtype=torch.float64)
    g[n:] = 0  # L = Σ h_T
    norms2, normsF = [], []
    with torch.no_grad():
        for k in range(T_torch - 1, -1, -1):
            J = jac(states[k], X[k])
            P = P @ J
            norms2.append(torch.linalg.matrix_norm(P, 2))
            normsF.append(torch.linalg.matrix_norm(P, "fro"))
            torch.linalg.vector_norm(g @ P)  # ‖∂L/∂s_k‖
            if two:  # the same job: the c→c block's norms too
                torch.linalg.matrix_norm(P[n:, n:], 2)
                torch.linalg.matrix_norm(P[n:, n:], "fro")
    t = time.perf_counter() - t0
    return t, torch.stack(norms2[::-1]).numpy(), torch.stack(normsF[::-1]).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--input", type=int, default=None, help="input size (default: hidden)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--torch-steps", type=int, default=None, help="steps for the PyTorch path (default: --steps)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    m = a.input or a.hidden
    T_torch = a.torch_steps or a.steps

    import torch

    import gradflow as gf

    print(f"gradflow {gf.__version__}, numpy {np.__version__}, torch {torch.__version__}, "
          f"python {platform.python_version()}, {platform.machine()}, torch threads {torch.get_num_threads()}")
    net, x, flow, t_full, t_chain, peak = run_gradflow(a.cell, a.hidden, m, a.steps, a.seed)
    N, T = net.state_size, a.steps
    rate = matmul_rate(N)
    flops = 2.0 * N**3 * T
    print(f"\n{a.cell}: n = {a.hidden}, m = {m}, N = {N}, T = {T}")
    print(f"machine float64 matmul, {N}x{N}: {rate:.1f} GFLOP/s (median of 5)")
    print(f"gradflow full curve (all k; ||.||_2, ||.||_F, ||dL/ds_k||; c-block too): {t_full:.3f} s "
          f"= {1e3 * t_full / T:.2f} ms/step")
    print(f"  dense-equivalent rate {flops / t_full / 1e9:.1f} GFLOP/s = "
          f"{100 * flops / t_full / 1e9 / rate:.0f}% of the measured matmul rate")
    print(f"gradflow product chain alone: {t_chain:.3f} s = {1e3 * t_chain / T:.2f} ms/step, dense-equivalent "
          f"{flops / t_chain / 1e9:.1f} GFLOP/s = {100 * flops / t_chain / 1e9 / rate:.0f}% of the matmul rate")
    print(f"gradflow peak traced memory: {peak / 2**20:.1f} MiB  (T*N*8 = {T * N * 8 / 2**20:.1f} MiB, "
          f"N^2*8 = {N * N * 8 / 2**20:.1f} MiB)")
    t_torch, n2, nF = run_torch(net, x, T_torch)
    note = "" if T_torch == T else f" (on {T_torch} steps; per-step cost scaled to T = {T})"
    t_torch_T = t_torch * T / T_torch
    print(f"PyTorch jacrev + chained matmuls + matrix_norm (same blocks and figures): {t_torch:.3f} s{note} "
          f"= {1e3 * t_torch / T_torch:.2f} ms/step")
    print(f"ratio PyTorch / gradflow (full curve): {t_torch_T / t_full:.1f}x")
    if T_torch == T:
        mine = flow.full.mean()
        ok = np.isfinite(np.log10(n2)) & (n2 > 1e-290)
        d2 = np.abs(np.log10(n2[ok]) - mine["log10_norm_2"][ok]).max() if ok.any() else float("nan")
        dF = np.abs(np.log10(nF[ok]) - mine["log10_norm_fro"][ok]).max() if ok.any() else float("nan")
        print(f"agreement where PyTorch did not underflow ({int(ok.sum())} of {T} k): "
              f"max |Δ log10 ||.||_2| = {d2:.1e}, max |Δ log10 ||.||_F| = {dF:.1e}")


if __name__ == "__main__":
    main()
