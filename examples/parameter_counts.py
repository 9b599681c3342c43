"""How many trainable parameters do recurrent, dense and convolutional layers have?

Answers the counting questions of the seed documents with gradflow's counts, each printed with
its formula (derived from the cell's recurrence, not typed in by hand):

* LSTM, n = 256 hidden units, m = 4096 inputs, one bias per gate: 4·(n² + n·m + n) = 4,457,472.
* LSTM, n = 128, m = 28 (MNIST read row by row): 79,872 weights; 80,384 with one bias per gate
  (Keras), 80,896 with two (PyTorch's b_ih and b_hh).
* Elman RNN with a dense output layer: n² + n·m + n + n·k + k.
* Dense layer 128 → 10: 128·10 + 10 = 1,290.
* Convolution with k filters of size k_h × k_w over c channels: (k_h·k_w·c + 1)·k.

Where PyTorch is installed, the same layers are built with ``torch.nn`` and their parameters
counted, as an independent check. The counts are also written to ``OUT/parameter_counts.json``.

    python examples/parameter_counts.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gradflow as gf


def section(title: str) -> None:
    print(f"\n== {title} ==")


def torch_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out",
                        help="output folder (default: examples/out)")
    parser.add_argument("--quick", action="store_true", help="accepted for symmetry; counting is instant")
    args = parser.parse_args(argv)

    records = {}

    section("LSTM, n = 256, m = 4096, one bias per gate (Keras convention)")
    big = gf.count_params("lstm", hidden=256, input=4096, convention="keras")
    print(big)
    print(f"  by hand: 4·(256² + 256·4096 + 256) = 4·{256**2 + 256 * 4096 + 256:,} = {big.total:,}")
    records["lstm_256_4096_keras"] = big.as_dict()

    section("LSTM, n = 128, m = 28: one bias (Keras) or two (PyTorch)")
    keras = gf.count_params("lstm", 128, 28, convention="keras")
    torch_ = gf.count_params("lstm", 128, 28, convention="pytorch")
    weights = keras.recurrent_weights + keras.input_weights
    print(f"  weights  (n + m)·4n = (128 + 28)·512 = {weights:,}")
    print(f"  Keras    {keras.as_dict()['formula']:24s} = {keras.total:,}   (biases: {keras.biases:,})")
    print(f"  PyTorch  {torch_.as_dict()['formula']:24s} = {torch_.total:,}   (biases: {torch_.biases:,})")
    print(f"  The difference, {torch_.total - keras.total:,} = 4n, is PyTorch's second bias vector: it stores")
    print("  b_ih and b_hh for every gate, where only their sum b = b_ih + b_hh enters the cell.")
    records["lstm_128_28_keras"] = keras.as_dict()
    records["lstm_128_28_pytorch"] = torch_.as_dict()

    section("Other cells at n = 128, m = 28 (PyTorch convention)")
    for cell in ("tanh-rnn", "gru", "lstm"):
        c = gf.count_params(cell, 128, 28)
        print(f"  {cell:9s} {c.as_dict()['formula']:24s} = {c.total:>7,}")

    section("Elman RNN n = 128, m = 28 with a dense output layer of k = 10 classes (one bias)")
    elman = gf.count_params("tanh-rnn", 128, 28, convention="keras", output=10)
    print(elman)
    print(f"  weights only (W, U, V shared by every step): n² + n·m + n·k = {128**2 + 128 * 28 + 128 * 10:,}")
    records["elman_128_28_10_keras"] = elman.as_dict()

    section("Dense layer 128 → 10")
    dense = gf.dense_params(128, 10)
    print(dense)
    records["dense_128_10"] = dense.as_dict()

    section("Convolution layers: k filters of size k_h × k_w over c input channels")
    for kh, kw, c, k in ((3, 3, 1, 32), (5, 5, 3, 64)):
        conv = gf.conv_params(kh, kw, c, k)
        if c == 1:
            print(f"  formula {conv.as_dict()['formula']}: a weight per kernel entry and channel, a bias per filter")
        print(f"  {kh}×{kw} kernel, {c} input channel(s), {k} filters: "
              f"({kh}·{kw}·{c} + 1)·{k} = {conv.total:,}")
        records[f"conv_{kh}x{kw}x{c}_{k}"] = conv.as_dict()

    try:
        import torch.nn as nn
    except ImportError:
        print("\n(PyTorch not installed: skipping the check against torch.nn)")
    else:
        section("Check: the same layers built with torch.nn")
        checks = [
            ("nn.LSTM(28, 128)", nn.LSTM(28, 128), torch_.total),
            ("nn.RNN(28, 128)", nn.RNN(28, 128), gf.count_params("tanh-rnn", 128, 28).total),
            ("nn.GRU(28, 128)", nn.GRU(28, 128), gf.count_params("gru", 128, 28).total),
            ("nn.Linear(128, 10)", nn.Linear(128, 10), dense.total),
            ("nn.Conv2d(1, 32, 3)", nn.Conv2d(1, 32, 3), gf.conv_params(3, 3, 1, 32).total),
        ]
        for name, module, ours in checks:
            theirs = torch_count(module)
            verdict = "matches" if theirs == ours else "DIFFERS"
            print(f"  {name:20s} {theirs:>7,} parameters; gradflow {ours:>7,}  {verdict}")

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "parameter_counts.json"
    path.write_text(json.dumps(records, indent=2) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
