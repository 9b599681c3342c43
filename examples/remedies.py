"""Remedies for vanishing gradients, measured: ReLU/IRNN, residual RNN, orthogonal W, forget bias 1.

Left panel: ‖∂h_T/∂h_k‖₂ of Elman-type networks against the distance T − k:

* tanh RNN with PyTorch's initialisation (the baseline) and with an orthogonal W (σ_max(W) = 1,
  so only tanh' < 1 shrinks the product);
* ReLU RNN: ReLU' is exactly 1 or 0, so an active unit does not shrink the gradient;
* IRNN (Le, Jaitly & Hinton 2015): ReLU with W = I; ∂h_T/∂h_k is then diagonal with entries
  1 or 0 — exactly 1 while a unit stays active, exactly 0 once every unit has been switched off;
* residual RNN, h_t = h_{t−1} + tanh(·): ∂h_t/∂h_{t−1} = I + diag(tanh')·W keeps an identity path.

Right panel: the LSTM's decay rate over the scale of W × the forget-gate bias b_f (a phase
diagram, red: growth, blue: vanishing). b_f = 1 (Jozefowicz, Zaremba & Sutskever 2015; Keras'
``unit_forget_bias``) puts σ(b_f) ≈ 0.73 and slows the decay several-fold compared with b_f = 0.

Figure: ``OUT/remedies.png`` (and .pdf).

    python examples/remedies.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files, open no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import gradflow as gf  # noqa: E402

# (label, cell, keyword arguments of gradflow.network)
NETWORKS = [
    ("tanh RNN (PyTorch init)", "tanh-rnn", {}),
    ("tanh RNN, orthogonal W", "tanh-rnn", {"init": "orthogonal"}),
    ("ReLU RNN (PyTorch init)", "relu-rnn", {}),
    ("IRNN (ReLU, W = I)", "irnn", {}),
    ("residual RNN", "residual-rnn", {}),
]


def describe(curves: gf.Curves) -> str:
    """Decay rate of the batch mean; where sequences reach an exact 0 (log10 = -inf), say from where."""
    per_sequence = curves.log10_norm_2  # (batch, T), index k
    T = per_sequence.shape[1]
    text = f"{gf.decay_rate(curves.mean()['log10_norm_2']):+.3f}"
    dead = [T - int(np.flatnonzero(row).max()) for row in np.isneginf(per_sequence) if row.any()]
    if dead:
        text += (f"   exactly 0 in {len(dead)} of {per_sequence.shape[0]} sequences, "
                 f"from T - k = {', '.join(map(str, dead))} on")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out",
                        help="output folder (default: examples/out)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        hidden, steps, batch = 8, 20, 2
        scales, biases, grid_n, grid_T = (0.5, 1.0, 2.0), (0.0, 1.0, 3.0), 8, 20
    else:
        hidden, steps, batch = 32, 100, 4
        scales, biases, grid_n, grid_T = (0.5, 0.75, 1.0, 1.5, 2.0), (-1.0, 0.0, 1.0, 2.0, 3.0), 16, 50
    m = 8

    x = gf.random_inputs(steps, m, batch=batch, seed=args.seed)
    flows = [gf.gradient_flow(gf.network(cell, hidden, m, seed=args.seed, **kw), x, lyapunov=False)
             for _, cell, kw in NETWORKS]
    print(f"Elman-type networks: n = {hidden}, m = {m}, T = {steps}, batch = {batch}")
    print(f"{'network':26s} decay rate (log10 per step; > 0 grows)")
    for (label, _, _), f in zip(NETWORKS, flows, strict=True):
        print(f"{label:26s} {describe(f.full)}")

    tanh_grid = gf.phase_grid("tanh-rnn", hidden=grid_n, steps=grid_T, scales=scales, seed=args.seed)
    print(f"\ntanh RNN, orthogonal W = gain·Q (n = {grid_n}, T = {grid_T}): decay rate by gain")
    print("  gain " + " ".join(f"{s:>7g}" for s in scales))
    print("  rate " + " ".join(f"{r:+7.3f}" for r in tanh_grid.rates[0]))

    lstm_grid = gf.phase_grid("lstm", hidden=grid_n, steps=grid_T, scales=scales, forget_biases=biases,
                              seed=args.seed)
    print(f"\nLSTM, orthogonal W (n = {grid_n}, T = {grid_T}): decay rate by forget-gate bias b_f and gain")
    print("   b_f  σ(b_f) " + " ".join(f"{s:>7g}" for s in scales))
    for b, row in zip(biases, lstm_grid.rates, strict=True):
        print(f"  {b:4g}  {1 / (1 + np.exp(-b)):.3f}  " + " ".join(f"{r:+7.3f}" for r in row))
    at1 = lstm_grid.rates[list(biases).index(1.0), list(scales).index(1.0)]
    at0 = lstm_grid.rates[list(biases).index(0.0), list(scales).index(1.0)]
    print(f"At gain 1: b_f = 0 loses {-at0:.3f} decades per step, b_f = 1 only {-at1:.3f} "
          f"({at0 / at1:.1f}× slower decay).")

    with gf.paper_style({"figure.figsize": (9.0, 3.6)}):
        fig, (left, right) = plt.subplots(1, 2, gridspec_kw={"width_ratios": [1.0, 1.1]})
        gf.plot_decay(flows, ax=left, bound=False, labels=[label for label, _, _ in NETWORKS])
        left.set_title(f"Elman-type remedies, n = {hidden}")
        gf.plot_phase_diagram(lstm_grid, ax=right, annotate=True)
        paths = gf.save_figure(fig, args.out / "remedies", formats=("png", "pdf"))
        plt.close(fig)
    for p in paths:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
