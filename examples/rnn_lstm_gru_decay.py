"""Gradient decay of the tanh RNN, the LSTM and the GRU, measured on the same inputs.

Each network gets PyTorch's default initialisation (every weight uniform in ±1/√n) and the
same random input sequences. For every k the exact ‖∂s_T/∂s_k‖₂ is computed from the closed-form
Jacobians (s = h, or (h, c) for the LSTM) and plotted against the distance T − k, together with
the Pascanu bound (γ·σ_max(W))^{T−k} of the tanh RNN. A table gives each network's decay rate
(log10 change per step, from :func:`gradflow.decay_table`) and log10 ‖∂s_T/∂s_0‖₂.

Figure: ``OUT/rnn_lstm_gru_decay.png`` (and .pdf).

    python examples/rnn_lstm_gru_decay.py [--out DIR] [--quick] [--hidden N] [--steps T]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files, open no window
import matplotlib.pyplot as plt  # noqa: E402

import gradflow as gf  # noqa: E402

CELLS = ("tanh-rnn", "lstm", "gru")


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
    flows = [gf.gradient_flow(gf.network(cell, hidden, m, seed=args.seed), x, lyapunov=False)
             for cell in CELLS]

    print(f"n = {hidden}, m = {m}, T = {steps}, batch = {batch}; PyTorch default initialisation")
    print(f"{'cell':10s} {'rate (log10/step)':>18s} {'log10 ||ds_T/ds_0||_2':>22s} {'c->c rate':>10s}")
    for row in gf.decay_table(flows):
        c_rate = "" if row["rate_cell_state"] is None else f"{row['rate_cell_state']:10.3f}"
        print(f"{row['cell']:10s} {row['rate']:18.3f} {row['log10_norm_k0']:22.2f} {c_rate}".rstrip())
    rnn = flows[0]
    print(f"Pascanu bound of the tanh RNN: log10 (γ·σ_max(W))^T = {rnn.bound[0]:.2f} "
          f"(γ = 1, σ_max(W) = {10 ** rnn.bound[-1]:.3f})")
    print("With these weights the gates sit near 0.5: the LSTM and the GRU decay too, but more slowly")
    print("than the tanh RNN. How slowly is set by the forget gate (LSTM) or the update gate z (GRU).")

    with gf.paper_style({"figure.figsize": (5.0, 3.4)}):
        fig, ax = plt.subplots()
        gf.plot_decay(flows, ax=ax, labels=["tanh RNN", "LSTM", "GRU"])
        ax.set_title(f"n = {hidden}, T = {steps}, PyTorch init")
        paths = gf.save_figure(fig, args.out / "rnn_lstm_gru_decay", formats=("png", "pdf"))
        plt.close(fig)
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
