"""Watch the gradient flow of an LSTM change while it learns to read handwritten digits.

1. scikit-learn's ``load_digits`` (1,797 images of 8 × 8 pixels, 10 classes) is read by an
   ``nn.LSTM`` pixel by pixel (T = 64 steps of one pixel, the default) or row by row
   (``--rows``: T = 8 steps of 8 pixels); a linear read-out of h_T classifies the digit.
2. An ordinary PyTorch training loop (Adam, CPU, well under a minute) calls
   ``gradflow.torch.Recorder.step(step)``: every ``--every`` steps the recorder copies the LSTM's
   weights and measures log10 ‖∂s_T/∂s_k‖ on a fixed probe batch of training images, appending
   one JSON line to ``OUT/train_digits.jsonl``.
3. The curves, coloured by training step, are drawn with ``gradflow.torch.plot_training_curves``:
   ``OUT/train_digits.png`` (and .pdf), beside the test accuracy during training.
4. It prints the accuracy before and after, the decay rate of the first and last recordings,
   and the measured cost of one recording (seconds, and its share of the training time).

    python examples/train_digits.py [--out DIR] [--quick] [--rows] [--epochs E] [--hidden N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files, open no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from torch import nn  # noqa: E402

import gradflow as gf  # noqa: E402
import gradflow.torch as gft  # noqa: E402


class DigitReader(nn.Module):
    """An LSTM that reads an image as a sequence (batch first) and classifies it from h_T."""

    def __init__(self, input: int, hidden: int):
        super().__init__()
        self.rnn = nn.LSTM(input, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)
        with torch.no_grad():  # forget-gate bias 1 (Jozefowicz et al. 2015); PyTorch order i, f, g, o
            self.rnn.bias_ih_l0[hidden:2 * hidden] = 1.0
            self.rnn.bias_hh_l0[hidden:2 * hidden] = 0.0

    def forward(self, x):
        _, (h_T, _) = self.rnn(x)
        return self.head(h_T[0])


def sequences(images: np.ndarray, rows: bool) -> torch.Tensor:
    """(batch, T, m): 8 rows of 8 pixels, or 64 pixels one at a time; pixels scaled to [0, 1]."""
    x = images.reshape(len(images), 8, 8) / 16.0
    return torch.tensor(x if rows else x.reshape(len(images), 64, 1), dtype=torch.float32)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out",
                        help="output folder (default examples/out)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    parser.add_argument("--rows", action="store_true", help="read row by row (T = 8) instead of pixel by pixel")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 8; 1 with --quick)")
    parser.add_argument("--hidden", type=int, default=None, help="hidden size n (default 32; 8 with --quick)")
    parser.add_argument("--every", type=int, default=None, help="record every this many steps (default 25)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs = args.epochs or (1 if args.quick else 8)
    hidden = args.hidden or (8 if args.quick else 32)
    every = args.every or (2 if args.quick else 25)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # a model this small runs fastest on one thread (18x faster on a busy 2-core CPU)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    digits = load_digits()
    order = rng.permutation(len(digits.target))
    split = int(0.8 * len(order))
    x = sequences(digits.images[order], args.rows)
    y = torch.tensor(digits.target[order])
    x_train, y_train, x_test, y_test = x[:split], y[:split], x[split:], y[split:]
    if args.quick:  # a smoke test: a few steps on a few images
        x_train, y_train = x_train[:256], y_train[:256]
    T, m = x.shape[1], x.shape[2]

    model = DigitReader(m, hidden)
    probe = x_train[:4 if args.quick else 16]  # the fixed probe batch: (batch, T, m), as the module takes it
    path = args.out / "train_digits.jsonl"
    rec = gft.Recorder(model.rnn, every=every, inputs=probe, path=path)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = 64
    print(f"LSTM n = {hidden} reads {'rows' if args.rows else 'pixels'}: T = {T}, m = {m}; "
          f"{len(x_train)} training and {len(x_test)} test images, {epochs} epoch(s)")
    print(f"test accuracy before training: {accuracy(model, x_test, y_test):.3f}")
    acc = [(0, accuracy(model, x_test, y_test))]
    step, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x_train))
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            rec.step(step)  # records at steps 0, every, 2·every, …
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % every == 0:
                acc.append((step, accuracy(model, x_test, y_test)))
    rec.record(step)  # and after the last step
    total = time.perf_counter() - t0
    acc.append((step, accuracy(model, x_test, y_test)))
    print(f"test accuracy after {step} steps: {acc[-1][1]:.3f}")

    records = gft.read_records(path)
    first, last = records[0], records[-1]
    for name, r in (("first", first), ("last", last)):
        curve = np.array([c["log10_norm_2"] for c in r["curve"]])
        print(f"{name} recording (step {r['step']:>4}): log10 ||ds_T/ds_0||_2 = {curve[0]:8.3f}, "
              f"decay rate {gf.decay_rate(curve):+.4f} decades/step")
    seconds = np.array([r["seconds"] for r in records])
    print(f"overhead: {len(records)} recordings, {seconds.mean():.3f} s each (median {np.median(seconds):.3f} s) "
          f"for n = {hidden}, T = {T}, probe batch {len(probe)}; {seconds.sum() / total:.0%} of the "
          f"{total:.1f} s of training")

    with gf.paper_style({"figure.figsize": (8.0, 3.2)}):
        fig, (ax, ax2) = plt.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
        gft.plot_training_curves(records, ax=ax)
        ax.set_title(f"LSTM reading digits {'by rows' if args.rows else 'pixel by pixel'}")
        s, a = zip(*acc, strict=True)
        ax2.plot(s, a, marker="o", ms=3)
        ax2.set_xlabel("training step")
        ax2.set_ylabel("test accuracy")
        ax2.set_ylim(0, 1)
        fig.tight_layout()
        paths = gf.save_figure(fig, args.out / "train_digits", formats=("png", "pdf"))
    print("wrote", path, *paths)


if __name__ == "__main__":
    main()
