"""LSTM, GRU, LRU, S4D, Mamba (ZOH and Euler), RG-LRU and minGRU compared: how far back the gradient reaches.

Every cell gets its reference initialisation — PyTorch's ±1/√n for the LSTM, GRU and minGRU, the
LRU's ring (minimal-LRU defaults), S4D-Lin (A_k = −½ + iπk, log Δ ~ U[log 1e-3, log 1e-1]),
Mamba's S4D-Real A and log-uniform Δ with shared rows (d = m channels × N state entries),
Griffin's σ(Λ) ~ √U[0.9², 0.999²] — and the same standard-normal inputs. For every k the exact
‖∂s_T/∂s_k‖₂ is computed from the derived Jacobians and all curves are drawn on one axis.

For the cells whose derived one-step Jacobian is diagonal (S6, RG-LRU, minGRU), the script also
computes the path's product straight from the gates written out here from the papers —
Mamba ā_t = exp(−softplus(U_Δ x_t + b_Δ) ⊙ exp(A_log)), RG-LRU a_t = σ(Λ)^{8 r_t},
minGRU 1 − z_t — and prints it beside gradflow's measured log10 ‖∂s_T/∂s_0‖₂ (they agree to
rounding: for these cells the path is the whole Jacobian).

Figure: ``OUT/compare_modern.png`` (and .pdf). The same comparison as a report with derivations
and a section "Which path carries the gradient":
``gradflow report lstm gru lru mamba-zoh mingru slstm --out DIR``.

    python examples/compare_modern.py [--out DIR] [--quick] [--steps T]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files, open no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import gradflow as gf  # noqa: E402

CELLS = ("lstm", "gru", "lru", "s4d", "mamba-zoh", "mamba-euler", "rg-lru", "mingru")


def network(name: str, d: int, N: int, seed: int) -> gf.Network:
    """``name`` with hidden size d·N, input size d, and its reference initialisation."""
    w = gf.init_weights(name, d * N, d, seed=seed)
    if name == "lru":
        w = gf.lru_ring_init(w, seed=seed)
    elif name == "s4d":
        w = gf.s4d_init(w, d, seed=seed)
    elif name.startswith("mamba"):
        w = gf.mamba_init(w, d, seed=seed)
    elif name == "rg-lru":
        w = gf.rglru_init(w, seed=seed)
    return gf.Network(w)


def gate_product(name: str, w: gf.Weights, x: np.ndarray) -> float | None:
    """max_j Σ_t log10 a_{t,j} from the papers' gates (x: (T, m), one sequence); None if not diagonal."""
    a = {k: np.asarray(v) for k, v in w.arrays.items()}
    if name.startswith("mamba"):
        delta = np.logaddexp(0.0, x @ a[r"U_{\Delta}"].T + a[r"b_{\Delta}"])
        g = np.exp(-delta * np.exp(a[r"A_{\log}"]))
    elif name == "rg-lru":
        r = 1 / (1 + np.exp(-(x @ a["U_{a}"].T + a["b_{a}"])))
        g = (1 / (1 + np.exp(-a[r"\Lambda"]))) ** (8 * r)
    elif name == "mingru":
        g = 1 - 1 / (1 + np.exp(-(x @ a["U_{z}"].T + a["b_{z}"])))
    else:
        return None
    return float(np.max(np.sum(np.log10(g), axis=0)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out",
                        help="output folder (default: examples/out)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    parser.add_argument("--steps", type=int, default=None, help="sequence length T (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    d, N = (4, 2) if args.quick else (8, 4)
    steps = args.steps or (30 if args.quick else 200)
    x = gf.random_inputs(steps, d, seed=args.seed)

    flows, rows = [], []
    for name in CELLS:
        net = network(name, d, N, args.seed)
        flow = gf.gradient_flow(net, x, lyapunov=False)
        flows.append(flow)
        measured = float(flow.full.mean()["log10_norm_2"][0])
        rows.append((name, gf.decay_rate(flow.full.mean()["log10_norm_2"]), measured,
                     gate_product(name, net.weights, x[:, 0])))

    print(f"d = {d} channels, N = {N} (n = {d * N}), T = {steps}, seed {args.seed}")
    print(f"{'cell':12s} {'rate (log10/step)':>18s} {'log10||ds_T/ds_0||_2':>21s} {'gates alone':>12s}")
    for name, rate, measured, gates in rows:
        g = "" if gates is None else f"{gates:12.6f}"
        print(f"{name:12s} {rate:18.4f} {measured:21.6f} {g}")
        if gates is not None and abs(gates - measured) > 1e-9 * max(1.0, abs(measured)):
            print(f"  {name}: the gates' product and the measured norm DIFFER")
    print("one-step Jacobians (derived):")
    for name in CELLS:
        J = gf.get_cell(name).jacobian()
        if len(J.blocks) == 1:
            print(f"  {name:12s} {J}")

    with gf.paper_style({"figure.figsize": (5.6, 3.8)}):
        fig, ax = plt.subplots()
        gf.plot_decay(flows, ax=ax, labels=list(CELLS))
        ax.set_title(f"n = {d * N}, T = {steps}, reference initialisations")
        paths = gf.save_figure(fig, args.out / "compare_modern", formats=("png", "pdf"))
        plt.close(fig)
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
