"""Benchmark (issue 13): the whole ``gradflow flow`` process against a plain PyTorch loop.

Both sides are whole processes started from this script, on the same weights and inputs, with
the same number of threads, interleaved (gradflow, PyTorch, gradflow, PyTorch, …):

* **gradflow**: ``python -m gradflow flow lstm --weights W.pt --inputs X.npy --json`` — import,
  derivation and compilation of the cell, loading, unroll, the exact backward sweep with its
  certified spectral norms (whole product and c→c block), Frobenius norms, ‖∂L/∂s_k‖, the 8
  leading Lyapunov exponents, the JSON on stdout.
* **PyTorch**: a process that imports torch, loads the same ``nn.LSTMCell``, unrolls it and, for
  every k, takes ``torch.func.jacrev`` of the cell w.r.t. the state (h, c), chains
  P_k = P_{k+1} J_{k+1} and calls ``torch.linalg.matrix_norm`` (2 and "fro") on P_k and its c→c
  block, and ‖g P_k‖ (the loop of ``bench_flow.py``); float64. No Lyapunov exponents.

Each process is timed by wall clock and by CPU time (user + system, from ``getrusage`` of the
children): on a machine shared with other work, CPU time on one thread each is the fairest
measure. The load average is printed before and after each run. The curves of the two are
compared (log10 ‖·‖₂ and ‖·‖_F of the whole product and of the c→c block).

    python benchmarks/bench_whole.py --hidden 256 --steps 500 --threads 1 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def torch_child(weights: str, inputs: str, out: str, threads: int) -> None:
    """The PyTorch loop, in its own process; writes the curves and the loop's own time."""
    import torch

    torch.set_num_threads(threads)
    sd = torch.load(weights)
    curves, loop = torch_curves(sd, np.load(inputs)[:, 0, :])
    np.savez(out, curves=curves, loop=loop)


def torch_curves(sd, X, device: str = "cpu") -> tuple[np.ndarray, float]:
    """The plain PyTorch loop on an ``nn.LSTMCell`` state_dict and inputs X (T, m), float64, on
    ``device``: (curves (T, 5): ‖P_k‖₂, ‖P_k‖_F, the c→c block's two, ‖g P_k‖; the loop's wall time)."""
    import torch

    n = sd["weight_hh"].shape[1]
    m = sd["weight_ih"].shape[1]
    mod = torch.nn.LSTMCell(m, n).double()
    mod.load_state_dict(sd)
    mod.requires_grad_(False)
    mod.to(device)
    X = torch.tensor(np.asarray(X), dtype=torch.float64, device=device)
    T, N = X.shape[0], 2 * n

    def F(s, xt):
        h, c = mod(xt[None], (s[None, :n], s[None, n:]))
        return torch.cat([h[0], c[0]])

    jac = torch.func.jacrev(F)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    with torch.no_grad():
        s = torch.zeros(N, dtype=torch.float64, device=device)
        states = [s]
        for t in range(T):
            s = F(s, X[t])
            states.append(s)
        P = torch.eye(N, dtype=torch.float64, device=device)
        g = torch.zeros(N, dtype=torch.float64, device=device)
        g[:n] = 1.0  # L = Σ h_T
        rows = []
        for k in range(T - 1, -1, -1):
            P = P @ jac(states[k], X[k])
            rows.append(torch.stack([torch.linalg.matrix_norm(P, 2), torch.linalg.matrix_norm(P, "fro"),
                                     torch.linalg.matrix_norm(P[n:, n:], 2),
                                     torch.linalg.matrix_norm(P[n:, n:], "fro"),
                                     torch.linalg.vector_norm(g @ P)]))
        curves = torch.stack(rows[::-1]).cpu().numpy()
    sync()
    return curves, time.perf_counter() - t0


def parts(n: int, T: int, threads: int) -> None:
    """CPU time of each part of the default run, in this process (one BLAS thread count), and the
    product chain's FLOP rate against the machine's GEMM rate for the chain's own shape."""
    from threadpoolctl import threadpool_limits

    sys.path.insert(0, str(ROOT))  # this source tree, not an installed gradflow
    c0 = time.process_time()
    import gradflow as gf
    from gradflow._numeric.flow import _lyapunov

    cpu = {"import gradflow": time.process_time() - c0}
    threadpool_limits(threads)

    def tm(label, fn):
        c = time.process_time()
        out = fn()
        cpu[label] = time.process_time() - c
        return out

    net = tm("network (derive, compile)", lambda: gf.network("lstm", n, n, seed=0))
    x = gf.random_inputs(T, n)
    traj = tm("unroll", lambda: net.unroll(x))
    tm("product chain alone (fill J_t, P J_t)", lambda: [None for _ in gf.products(net, traj, reuse=True)])
    from gradflow._numeric import flow as flow_mod

    record, in_norms = flow_mod._Tracker.record, [0.0]

    def timed_record(self, *args, **kwargs):  # the norms of each product: ‖·‖₂ certified, ‖·‖_F, ‖g P‖
        c = time.process_time()
        record(self, *args, **kwargs)
        in_norms[0] += time.process_time() - c

    flow_mod._Tracker.record = timed_record  # type: ignore[method-assign]
    tm("gradient_flow without Lyapunov", lambda: gf.gradient_flow(net, x, lyapunov=False, threads=threads))
    flow_mod._Tracker.record = record  # type: ignore[method-assign]
    cpu["  of which the norms (_Tracker.record)"] = in_norms[0]
    tm("8 leading Lyapunov exponents", lambda: _lyapunov(net, traj, 8))
    N = 2 * n
    rng = np.random.default_rng(0)
    A, B, C = rng.standard_normal((N, N)), rng.standard_normal((N, n)), np.empty((N, n))
    np.matmul(A, B, out=C)
    c = time.process_time()
    for _ in range(50):
        np.matmul(A, B, out=C)
    rate = 50 * 2 * N * N * n / (time.process_time() - c) / 1e9
    for k, v in cpu.items():
        print(f"  {k:40s} {v:6.2f} s CPU")
    chain = cpu["product chain alone (fill J_t, P J_t)"]
    flops = 2.0 * N * N * n * T
    print(f"  the chain's FLOPs (2 N^2 n T = {flops / 1e9:.0f} GFLOP) at {flops / chain / 1e9:.1f} GFLOP/s = "
          f"{100 * flops / chain / 1e9 / rate:.0f}% of the {N}x{N} @ {N}x{n} GEMM rate measured here ({rate:.1f})")


def timed(cmd: list[str], env: dict, stdout, cwd) -> tuple[float, float, tuple]:
    """(wall s, CPU s of the child, load averages before and after) of one child process, run in
    ``cwd`` (not the source tree: ``python -m`` puts the working directory first on the path)."""
    load0 = os.getloadavg()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=stdout, check=True, cwd=cwd)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, (load0[0], os.getloadavg()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-torch", action="store_true", help="time gradflow only")
    ap.add_argument("--baseline", default=None, metavar="DIR",
                    help="also time the same command on another gradflow source tree (e.g. an older "
                         "commit unpacked with git archive), interleaved")
    ap.add_argument("--parts", action="store_true", help="the CPU time of each part, in this process")
    ap.add_argument("--torch-child", nargs=4, metavar=("W", "X", "OUT", "THREADS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_child:
        w, x, out, th = a.torch_child
        torch_child(w, x, out, int(th))
        return

    if a.parts:
        parts(a.hidden, a.steps, a.threads)
        return
    import torch

    n, T = a.hidden, a.steps
    tmp = Path(tempfile.mkdtemp(prefix="gradflow-bench-whole-"))
    torch.manual_seed(a.seed)
    cell = torch.nn.LSTMCell(n, n).double()
    torch.save(cell.state_dict(), tmp / "W.pt")
    np.save(tmp / "X.npy", np.random.default_rng(a.seed).standard_normal((T, 1, n)))
    th = str(a.threads)
    env = dict(os.environ, OMP_NUM_THREADS=th, OPENBLAS_NUM_THREADS=th, MKL_NUM_THREADS=th, GRADFLOW_THREADS=th,
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    gf_cmd = [sys.executable, "-m", "gradflow", "flow", "lstm", "--weights", str(tmp / "W.pt"),
              "--inputs", str(tmp / "X.npy"), "--json", "--no-progress"]
    pt_cmd = [sys.executable, str(Path(__file__).resolve()), "--torch-child", str(tmp / "W.pt"),
              str(tmp / "X.npy"), str(tmp / "torch.npz"), th]
    import gradflow

    print(f"gradflow {gradflow.__version__}, numpy {np.__version__}, torch {torch.__version__}, "
          f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
          f"threads {a.threads} each")
    print(f"lstm n = m = {n}, N = {2 * n}, T = {T}, B = 1; whole processes, interleaved")
    warm = [[sys.executable, "-m", "gradflow", "flow", "lstm", "--hidden", "4", "--input", "4", "--steps", "3",
             "--json"], [sys.executable, "-c", "import torch"]]
    for cmd in warm:  # byte-code compiled and files cached before anything is timed
        for e in (env, dict(env, PYTHONPATH=str(a.baseline))) if a.baseline else (env,):
            subprocess.run(cmd, env=e, stdout=subprocess.DEVNULL, check=True, cwd=tmp)
    res: dict[str, list] = {"gradflow": [], "pytorch": [], "baseline": []}
    base_env = dict(env, PYTHONPATH=str(a.baseline)) if a.baseline else None
    for _ in range(a.repeats):
        if base_env is not None:
            with open(tmp / "base.json", "w") as fh:
                w, c, ld = timed(gf_cmd, base_env, fh, tmp)
            res["baseline"].append((w, c))
            print(f"  baseline gradflow      wall {w:7.2f} s   CPU {c:7.2f} s   load {ld[0]:.1f} -> {ld[1]:.1f}",
                  flush=True)
        with open(tmp / "flow.json", "w") as fh:
            w, c, ld = timed(gf_cmd, env, fh, tmp)
        res["gradflow"].append((w, c))
        print(f"  gradflow flow --json   wall {w:7.2f} s   CPU {c:7.2f} s   load {ld[0]:.1f} -> {ld[1]:.1f}",
              flush=True)
        if a.skip_torch:
            continue
        w, c, ld = timed(pt_cmd, env, subprocess.DEVNULL, tmp)
        loop = float(np.load(tmp / "torch.npz")["loop"])
        res["pytorch"].append((w, c))
        print(f"  PyTorch loop process   wall {w:7.2f} s   CPU {c:7.2f} s   load {ld[0]:.1f} -> {ld[1]:.1f}"
              f"   (the loop alone {loop:.2f} s wall)", flush=True)
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in res.items() if v}
    print(f"median gradflow: wall {med['gradflow'][0]:.2f} s, CPU {med['gradflow'][1]:.2f} s")
    if "baseline" in med:
        print(f"median baseline: wall {med['baseline'][0]:.2f} s, CPU {med['baseline'][1]:.2f} s "
              f"(baseline / this tree: wall {med['baseline'][0] / med['gradflow'][0]:.2f}x, "
              f"CPU {med['baseline'][1] / med['gradflow'][1]:.2f}x)")
        now, before = (json.loads((tmp / f).read_text()) for f in ("flow.json", "base.json"))
        worst = max(abs(x[key] - y[key]) for x, y in zip(now["curve"], before["curve"], strict=True)
                    for key in ("log10_norm_2", "log10_norm_fro", "log10_grad_norm"))
        print(f"curves of this tree vs the baseline: max |Δ log10| {worst:.1e}; Lyapunov max |Δ| "
              f"{max(abs(x - y) for x, y in zip(now['lyapunov'], before['lyapunov'], strict=True)):.1e}")
    if "pytorch" not in med:
        return
    print(f"median PyTorch:  wall {med['pytorch'][0]:.2f} s, CPU {med['pytorch'][1]:.2f} s")
    print(f"ratio PyTorch / gradflow: wall {med['pytorch'][0] / med['gradflow'][0]:.1f}x, "
          f"CPU {med['pytorch'][1] / med['gradflow'][1]:.1f}x")
    rec = json.loads((tmp / "flow.json").read_text())
    ours = np.array([[e["log10_norm_2"], e["log10_norm_fro"], e["cell_state"]["log10_norm_2"],
                      e["cell_state"]["log10_norm_fro"]] for e in rec["curve"]], dtype=float)
    theirs = np.load(tmp / "torch.npz")["curves"][:, :4]
    ok = (theirs > 1e-290).all(axis=1)
    with np.errstate(divide="ignore"):
        d = np.abs(np.log10(theirs[ok]) - ours[ok]).max(axis=0)
    print(f"agreement where PyTorch did not underflow ({int(ok.sum())} of {T} k): max |Δ log10| "
          f"||.||_2 {d[0]:.1e}, ||.||_F {d[1]:.1e}, c-block ||.||_2 {d[2]:.1e}, ||.||_F {d[3]:.1e}")


if __name__ == "__main__":
    main()
