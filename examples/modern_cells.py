"""LSTM, GRU, LRU, minGRU, minLSTM and sLSTM side by side: which path carries the gradient.

Each cell gets its default initialisation (PyTorch's ±1/√n; the LRU its ring initialisation with
minimal-LRU's defaults |λ|² ~ U[0, 1]) and the same random inputs. For every k the exact
‖∂s_T/∂s_k‖₂ is computed from the derived closed-form Jacobians and plotted against T − k on one
figure. For each cell the script prints, from its derived one-step Jacobian, the *direct* terms:
those with no weight matrix (diag(f_t) in the LSTM's c → c block, diag(1 − z_t) for minGRU, the
rotation-scaling blocks of the LRU). Along a direct term the gradient is multiplied by gates only;
every other term goes through a recurrent weight matrix and an activation's derivative.
Mamba/S6, S4D and the RG-LRU are compared in compare_modern.py.

Figure: ``OUT/modern_cells.png`` (and .pdf).

    python examples/modern_cells.py [--out DIR] [--quick] [--hidden N] [--steps T]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files, open no window
import matplotlib.pyplot as plt  # noqa: E402
from sympy import MatAdd, MatrixSymbol  # noqa: E402

import gradflow as gf  # noqa: E402

CELLS = ("lstm", "gru", "lru", "mingru", "minlstm", "slstm")


def direct_terms(cell: gf.Cell) -> gf.StateJacobian:
    """The derived one-step Jacobian with only its terms that hold no recurrent weight matrix."""
    weights = {p.symbol for p in cell.recorded.params if p.kind == "W"}
    J = cell.jacobian()
    kept = {}
    for key, block in J.blocks.items():
        terms = [t for t in (block.args if isinstance(block, MatAdd) else (block,))
                 if not (t.atoms(MatrixSymbol) & weights) and not t.is_ZeroMatrix]
        if terms:
            kept[key] = terms[0] if len(terms) == 1 else MatAdd(*terms)
    return gf.StateJacobian(cell, J.step, kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out",
                        help="output folder (default: examples/out)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    parser.add_argument("--hidden", type=int, default=None, help="hidden size n (default 32)")
    parser.add_argument("--steps", type=int, default=None, help="sequence length T (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    hidden = args.hidden or (8 if args.quick else 32)
    steps = args.steps or (20 if args.quick else 100)
    batch, m = (2 if args.quick else 4), 8

    x = gf.random_inputs(steps, m, batch=batch, seed=args.seed)
    flows = []
    for name in CELLS:
        net = gf.network(name, hidden, m, seed=args.seed)
        if name == "lru":
            net = gf.Network(gf.lru_ring_init(net.weights, seed=args.seed))
        flows.append(gf.gradient_flow(net, x, lyapunov=False))

    print(f"n = {hidden}, m = {m}, T = {steps}, batch = {batch}")
    print(f"{'cell':10s} {'rate (log10/step)':>18s} {'log10 ||ds_T/ds_0||_2':>22s}")
    for row in gf.decay_table(flows):
        print(f"{row['cell']:10s} {row['rate']:18.3f} {row['log10_norm_k0']:22.2f}")
    print("direct paths (terms of the derived one-step Jacobian without a recurrent weight matrix):")
    for name in CELLS:
        for line in str(direct_terms(gf.get_cell(name))).splitlines():
            print(f"  {name:8s} {line}")

    with gf.paper_style({"figure.figsize": (5.4, 3.6)}):
        fig, ax = plt.subplots()
        gf.plot_decay(flows, ax=ax, labels=list(CELLS))
        ax.set_title(f"n = {hidden}, T = {steps}, default initialisations")
        paths = gf.save_figure(fig, args.out / "modern_cells", formats=("png", "pdf"))
        plt.close(fig)
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
