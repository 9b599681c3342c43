"""Benchmark (issue 13): the numeric engine on a GPU through CuPy, against NumPy and PyTorch.

One script for one call on a lent GPU machine; every section prints its line as soon as it has it
and one failing section does not stop the others:

* the card's float64 (and float32) matmul rates through CuPy, for the shapes the chain uses;
* the default job (LSTM n = m = 256, T = 500, B = 1, PyTorch's init; ‖∂s_T/∂s_k‖₂ certified,
  ‖·‖_F, ‖∂L/∂s_k‖ for the whole product and the c→c block, 8 Lyapunov exponents): gradflow on
  CuPy in this process (after a warm-up) and as a whole fresh process (import, CUDA start, kernel
  compilation), gradflow on NumPy on the same machine's CPUs, the plain PyTorch loop
  (``bench_whole.torch_curves``) on the GPU and on the CPUs; the curves compared;
* the product chain alone on CuPy, its FLOP rate against the card's matmul rate;
* real sizes: LSTM n = 1024 and 4096, T = 1000, exact and matrix-free, time and the GPU memory
  pool's peak.

    python benchmarks/bench_gpu.py --out results.json
    python benchmarks/bench_gpu.py --xp numpy --small      # the script's own check, without a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # this source tree
sys.path.insert(0, str(HERE))

RESULTS: dict = {}


def say(msg: str) -> None:
    print(msg, flush=True)


def section(name: str):
    """Run a section, record its result or its error, never stop the script."""
    def wrap(fn):
        def run(*a, **kw):
            t0 = time.perf_counter()
            try:
                RESULTS[name] = fn(*a, **kw)
            except Exception as e:  # noqa: BLE001 - a benchmark section reports and moves on
                RESULTS[name] = {"error": f"{type(e).__name__}: {e}"}
                say(f"[{name}] FAILED: {type(e).__name__}: {e}")
                traceback.print_exc(file=sys.stdout)
            say(f"[{name}] {time.perf_counter() - t0:.1f} s")
        return run
    return wrap


class Backend:
    def __init__(self, name: str):
        self.name = name
        if name == "cupy":
            import cupy

            self.xp = cupy
            self.sync = cupy.cuda.Device().synchronize
            self.pool = cupy.get_default_memory_pool()
        else:
            self.xp, self.sync, self.pool = np, (lambda: None), None

    def timed(self, fn, repeats: int = 1):
        times, out = [], None
        for _ in range(repeats):
            self.sync()
            t0 = time.perf_counter()
            out = fn()
            self.sync()
            times.append(time.perf_counter() - t0)
        return float(np.median(times)), out

    def host(self, a):
        return a.get() if hasattr(a, "get") else np.asarray(a)


@section("device")
def device_info(be: Backend) -> dict:
    info = {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count()}
    import sympy

    info["sympy"] = sympy.__version__
    if be.name == "cupy":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        info.update(card=props["name"].decode(), cupy=cupy.__version__,
                    memory_gib=round(props["totalGlobalMem"] / 2 ** 30, 1),
                    multiprocessors=props["multiProcessorCount"])
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    say(f"device: {info}")
    return info


@section("matmul rates")
def rates(be: Backend, small: bool) -> dict:
    xp, out = be.xp, {}
    shapes = [(512, 512, 512), (512, 512, 256), (2048, 2048, 1024), (8192, 8192, 4096), (8192, 8192, 8192)]
    for dt in ("float64", "float32"):
        for (a, b, c) in shapes[:2] if small else shapes:
            A = xp.asarray(np.random.default_rng(0).standard_normal((a, b)), dtype=dt)
            Bm = xp.asarray(np.random.default_rng(1).standard_normal((b, c)), dtype=dt)
            C = xp.matmul(A, Bm)
            reps = 20 if a <= 2048 else 5
            t, _ = be.timed(lambda A=A, Bm=Bm, C=C, reps=reps: [xp.matmul(A, Bm, out=C) for _ in range(reps)], 3)
            rate = 2.0 * a * b * c * reps / t / 1e9
            out[f"{dt} {a}x{b} @ {b}x{c}"] = rate
            say(f"  {dt} matmul {a}x{b} @ {b}x{c}: {rate:,.0f} GFLOP/s")
    return out


def lstm_setup(n: int, T: int, seed: int = 0):
    """PyTorch's LSTMCell init (drawn as PyTorch draws it: U(±1/√n), numpy here) and inputs."""
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(n)
    sd = {"weight_ih": rng.uniform(-k, k, (4 * n, n)), "weight_hh": rng.uniform(-k, k, (4 * n, n)),
          "bias_ih": rng.uniform(-k, k, 4 * n), "bias_hh": rng.uniform(-k, k, 4 * n)}
    return sd, rng.standard_normal((T, 1, n))


def curves_of(flow, be: Backend) -> np.ndarray:
    f, c = flow.full, flow.cell_state
    cols = [f.log10_norm_2, f.log10_norm_fro, c.log10_norm_2, c.log10_norm_fro, f.log10_grad_norm]
    return np.stack([be.host(v)[0] for v in cols], axis=1)


@section("default job")
def default_job(be: Backend, n: int, T: int, torch_cpu: bool, torch_gpu: bool = True) -> dict:
    import gradflow as gf

    sd, X = lstm_setup(n, T)
    res = {}
    net = gf.network("lstm", weights=sd, xp=be.xp)
    warm = gf.gradient_flow(net, be.xp.asarray(X[:10]))  # kernels compiled, handles made
    del warm
    t, flow = be.timed(lambda: gf.gradient_flow(net, be.xp.asarray(X)), 2)
    res[f"gradflow {be.name}"] = t
    say(f"  gradflow on {be.name}, in process (after warm-up): {t:.3f} s = {1e3 * t / T:.2f} ms/step")
    ours = curves_of(flow, be)
    traj = net.unroll(be.xp.asarray(X))
    t, _ = be.timed(lambda: [None for _ in gf.products(net, traj, reuse=True)], 2)
    N = 2 * n
    flops = 2.0 * N * N * n * T  # the structured chain's own FLOPs (the c column as scalings)
    res["chain alone"] = t
    res["chain GFLOP/s"] = flops / t / 1e9
    say(f"  the product chain alone: {t:.3f} s, {flops / t / 1e9:,.0f} GFLOP/s counting 2 N^2 n T "
        f"(dense-equivalent {2 * flops / t / 1e9:,.0f})")
    t, _ = be.timed(lambda: gf.gradient_flow(net, be.xp.asarray(X), lyapunov=False), 1)
    res["without Lyapunov"] = t
    say(f"  gradflow without Lyapunov: {t:.3f} s")
    if be.name == "cupy":
        net_np = gf.network("lstm", weights=sd)
        t, flow_np = Backend("numpy").timed(lambda: gf.gradient_flow(net_np, X), 1)
        res["gradflow numpy (this machine's CPUs)"] = t
        d = np.nanmax(np.abs(curves_of(flow_np, Backend("numpy")) - ours), axis=0)
        res["cupy vs numpy max |d log10|"] = d.tolist()
        say(f"  gradflow on NumPy, same machine ({os.cpu_count()} CPUs): {t:.3f} s; CuPy vs NumPy max |d log10| "
            f"per curve {np.array2string(d, precision=1)}")
    try:
        import torch
        from bench_whole import torch_curves
    except ImportError as e:
        say(f"  no PyTorch loop: {e}")
        return res
    tsd = {k: torch.tensor(v) for k, v in sd.items()}
    on_gpu = torch_gpu and be.name == "cupy" and torch.cuda.is_available()
    devices = (["cuda"] if on_gpu else []) + (["cpu"] if torch_cpu else [])
    for dev in devices:
        torch_curves(tsd, X[:5, 0], dev)  # warm-up
        theirs, loop = torch_curves(tsd, X[:, 0], dev)
        res[f"pytorch loop {dev}"] = loop
        ok = (theirs > 1e-290).all(axis=1)
        with np.errstate(divide="ignore"):
            d = np.abs(np.log10(theirs[ok]) - ours[ok]).max(axis=0)
        res[f"pytorch {dev} vs gradflow max |d log10|"] = d.tolist()
        say(f"  PyTorch loop on {dev}: {loop:.3f} s = {1e3 * loop / T:.2f} ms/step; ratio to gradflow on "
            f"{be.name} {loop / res[f'gradflow {be.name}']:.1f}x; max |d log10| {np.array2string(d, precision=1)} "
            f"({int(ok.sum())} of {T} k)")
    return res


WHOLE = """
import sys, time, json
t0 = time.perf_counter()
import numpy as np, cupy
sys.path.insert(0, {root!r})
import gradflow as gf
sd = dict(np.load({w!r}))
X = np.load({x!r})
net = gf.network("lstm", weights=sd, xp=cupy)
flow = gf.gradient_flow(net, cupy.asarray(X))
cupy.cuda.Device().synchronize()
print(json.dumps({{"wall": time.perf_counter() - t0}}))
"""


@section("whole process")
def whole_process(be: Backend, n: int, T: int, tmp: Path) -> dict:
    sd, X = lstm_setup(n, T)
    np.savez(tmp / "W.npz", **sd)
    np.save(tmp / "X.npy", X)
    code = WHOLE.format(root=str(ROOT), w=str(tmp / "W.npz"), x=str(tmp / "X.npy"))
    subprocess.run([sys.executable, "-c", "import cupy, sympy, numpy"], check=True)
    walls = []
    for _ in range(2):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - t0)
        if r.returncode:
            raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "child failed")
    say(f"  whole fresh process on the GPU (import, CUDA start, compile, run): {walls} s")
    return {"walls": walls}


@section("real sizes")
def real_sizes(be: Backend, sizes: list[int], T: int, modes: list[str]) -> dict:
    import gradflow as gf

    res = {}
    for n in sizes:
        for mode in modes:
            sd, X = lstm_setup(n, T, seed=1)
            net = gf.network("lstm", weights=sd, xp=be.xp)
            if be.pool is not None:
                be.pool.free_all_blocks()
            try:
                t, flow = be.timed(lambda net=net, X=X, mode=mode: gf.gradient_flow(
                    net, be.xp.asarray(X), mode=mode, lyapunov=False), 1)
            except Exception as e:  # noqa: BLE001
                res[f"n={n} {mode}"] = f"{type(e).__name__}: {e}"
                say(f"  n = {n}, T = {T}, {mode}: {type(e).__name__}: {e}")
                continue
            peak = be.pool.total_bytes() / 2 ** 30 if be.pool is not None else float("nan")
            res[f"n={n} {mode}"] = {"s": t, "pool GiB": peak, "ran": flow.mode}
            say(f"  n = {n}, T = {T}, {mode} (ran {flow.mode}): {t:.2f} s, GPU pool {peak:.2f} GiB")
            if mode == "exact":
                res[f"n={n} exact curve"] = be.host(flow.full.log10_norm_fro)[0].tolist()
            else:
                exact = res.get(f"n={n} exact curve")
                if exact is not None:
                    d = np.abs(be.host(flow.full.log10_norm_fro)[0] - np.array(exact))
                    res[f"n={n} sketch vs exact max |d log10 F|"] = float(np.max(d))
                    say(f"    matrix-free Frobenius estimate vs exact: max |d log10| {np.max(d):.2e}")
    for k in [k for k in res if k.endswith("exact curve")]:
        del res[k]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xp", choices=("cupy", "numpy"), default="cupy")
    ap.add_argument("--small", action="store_true", help="tiny sizes: check the script itself")
    ap.add_argument("--torch-cpu", action="store_true", help="also the PyTorch loop on the CPUs")
    ap.add_argument("--no-torch-gpu", action="store_true", help="leave out the PyTorch loop on the GPU (~65 s)")
    ap.add_argument("--sizes", default="1024,4096")
    ap.add_argument("--modes", default="exact,matrix-free")
    ap.add_argument("--skip-rates", action="store_true", help="leave out the matmul rates")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    be = Backend(a.xp)
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="gradflow-bench-gpu-"))
    device_info(be)
    if not a.skip_rates:
        rates(be, a.small)
    n, T = (16, 20) if a.small else (256, 500)
    default_job(be, n, T, a.torch_cpu, not a.no_torch_gpu)
    if be.name == "cupy":
        whole_process(be, n, T, tmp)
    real_sizes(be, [8, 16] if a.small else [int(s) for s in a.sizes.split(",") if s], 30 if a.small else 1000,
               a.modes.split(","))
    if a.out:
        Path(a.out).write_text(json.dumps(RESULTS, indent=1, default=str))


if __name__ == "__main__":
    main()
