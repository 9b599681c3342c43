"""Measure the gradient flow of a real, trained PyTorch LSTM — before and after training.

1. Train a tiny ``torch.nn.LSTM`` (CPU, seconds) on a memory task: read T = 20 numbers, then
   say whether the *first* one was positive. The loss at step T can only teach the network
   through the gradient that travels back T steps to x_1. The forget-gate bias starts at 1
   (Jozefowicz et al. 2015); with ``--forget-bias none`` (PyTorch's own random biases) the same
   training typically stays at chance level — the vanishing gradient at work.
2. Save the LSTM's ``state_dict`` before and after training as ``.pt`` files.
3. Load them with :func:`gradflow.load_weights` / ``gradflow.network("lstm", weights=path)``
   (PyTorch's ``weight_ih_l0``/``weight_hh_l0``/``bias_*`` layout, gate order i, f, g, o) and
   check that gradflow's forward pass reproduces torch's h_T.
4. Measure ‖∂s_T/∂s_k‖₂ and ‖∂L/∂s_k‖ (the task's own cross-entropy loss) on the task's inputs,
   before and after training, and plot both: ``OUT/load_pytorch_model.png`` (and .pdf).
5. Run the same measurement from the command line,
   ``gradflow flow lstm --weights OUT/lstm_trained.pt --steps T --carousel --json``,
   and save its JSON as ``OUT/flow_trained.json``.

    python examples/load_pytorch_model.py [--out DIR] [--quick] [--forget-bias B|none]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files, open no window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import gradflow as gf  # noqa: E402


class FirstSign(nn.Module):
    """An LSTM that reads a sequence and classifies the sign of its first element."""

    def __init__(self, hidden: int, input: int = 1, forget_bias: float | None = None):
        super().__init__()
        self.lstm = nn.LSTM(input, hidden)          # inputs (T, batch, m)
        self.readout = nn.Linear(hidden, 2)
        if forget_bias is not None:                 # PyTorch gate order i, f, g, o
            with torch.no_grad():
                self.lstm.bias_ih_l0[hidden:2 * hidden] = forget_bias
                self.lstm.bias_hh_l0[hidden:2 * hidden] = 0.0

    def forward(self, x):
        _, (h_T, _) = self.lstm(x)
        return self.readout(h_T[0])


def task(steps: int, batch: int, generator: torch.Generator):
    x = torch.randn(steps, batch, 1, generator=generator)
    return x, (x[0, :, 0] > 0).long()


def change(log10_ratio: float) -> str:
    """The ratio ‖∂L/∂s_0‖ / ‖∂L/∂s_{T−1}‖, given as its log10, and what it says, in words."""
    ratio = 10.0 ** log10_ratio
    if f"{ratio:.3g}" == "1":
        return f"{ratio:.3g}: the loss gradient is as large at s_0 as at s_(T-1)"
    if ratio < 1:
        return f"{ratio:.3g}: the loss gradient is {1 / ratio:.3g} times smaller at s_0 than at s_(T-1)"
    return f"{ratio:.3g}: the loss gradient is {ratio:.3g} times larger at s_0 than at s_(T-1)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out",
                        help="output folder (default: examples/out)")
    parser.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--forget-bias", default="1",
                        help="initial forget-gate bias (default 1); 'none' keeps PyTorch's random biases")
    args = parser.parse_args(argv)
    forget_bias = None if args.forget_bias.lower() == "none" else float(args.forget_bias)
    hidden, steps, updates, lr = (8, 10, 60, 0.03) if args.quick else (16, 20, 1000, 0.003)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # a tiny model: one thread is fastest
    gen = torch.Generator().manual_seed(args.seed)

    # -- 1, 2: train and save --------------------------------------------------------------------
    model = FirstSign(hidden, forget_bias=forget_bias)
    before = args.out / "lstm_init.pt"
    after = args.out / "lstm_trained.pt"
    torch.save(model.lstm.state_dict(), before)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_test, y_test = task(steps, 256, gen)
    print(f"task: n = {hidden}, T = {steps}; predict the sign of x_1 from h_T")
    for i in range(updates + 1):
        if i % max(1, updates // 4) == 0:
            with torch.no_grad():
                acc = (model(x_test).argmax(-1) == y_test).float().mean().item()
            print(f"  update {i:4d}: test accuracy {acc:.2f}")
        if i == updates:
            break
        x, y = task(steps, 64, gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    torch.save(model.lstm.state_dict(), after)
    print(f"saved {before} and {after}")

    # -- 3: load into gradflow and check the forward pass ------------------------------------
    weights = gf.load_weights("lstm", after)
    print(f"loaded {after.name}: n = {weights.hidden}, m = {weights.input}, parameters "
          f"{', '.join(weights.arrays)}")
    net = gf.network("lstm", weights=after)
    x_np = x_test.numpy().astype(np.float64)
    h_ours = net.unroll(x_np).states[-1][:, :hidden]        # state s = (h, c): h comes first
    with torch.no_grad():  # torch in float64 too, so the two agree to rounding error
        _, (h_torch, _) = copy.deepcopy(model.lstm).double()(x_test.double())
    print(f"forward check: max |h_T(gradflow) - h_T(torch)| = {np.abs(h_ours - h_torch[0].numpy()).max():.1e}")
    for name, path in (("before", before), ("after", after)):
        b_f = gf.load_weights("lstm", path).arrays["b_{f}"]
        print(f"  forget-gate bias b_f {name:6s} training: mean {b_f.mean():+.3f}, "
              f"σ(b_f) mean {(1 / (1 + np.exp(-b_f))).mean():.3f}")

    # -- 4: gradient flow on the task's inputs, with the task's loss ---------------------------
    V = model.readout.weight.detach().numpy()
    c = model.readout.bias.detach().numpy()
    x_flow, y_flow = x_np[:, :16], y_test.numpy()[:16]
    flows = {}
    for name, path in (("before training", before), ("after training", after)):
        flows[name] = gf.gradient_flow(gf.network("lstm", weights=path), x_flow, output=(V, c, y_flow),
                                       carousel=True, lyapunov=False)
    print(f"\nmean over {x_flow.shape[1]} task sequences of log10 norms; k = 0 is the initial state s_0, "
          f"before x_1 is read")
    print(f"{'':16s} {'rate/step':>10s} {'||ds_T/ds_0||':>14s} {'||dc_T/dc_0||':>14s} {'carousel':>9s} "
          f"{'||dL/ds_0|| / ||dL/ds_(T-1)||':>30s}")
    ratios = {}
    for name, f in flows.items():
        full, grad = f.full.mean(), f.full.mean()["log10_grad_norm"]
        ratios[name] = grad[0] - grad[-1]            # log10 ‖∂L/∂s_0‖ − log10 ‖∂L/∂s_{T−1}‖
        print(f"{name:16s} {gf.decay_rate(full['log10_norm_2']):10.3f} {full['log10_norm_2'][0]:14.2f} "
              f"{f.cell_state.mean()['log10_norm_2'][0]:14.2f} {f.carousel.mean()['log10_norm_2'][0]:9.2f} "
              f"{ratios[name]:30.2f}")
    print("(rate/step: least-squares slope of log10 ||ds_T/ds_k||_2 against T - k, < 0 vanishing, > 0 growing;\n"
          " both rows use the trained readout for the loss, so only the LSTM differs)")
    # The last column compares two gradient norms: it is a ratio, not a share, and a gradient that
    # grows on its way back (a trained LSTM's often does) makes it larger than 1.
    print(f"||dL/ds_0|| / ||dL/ds_(T-1)||, geometric mean over the {x_flow.shape[1]} sequences:")
    for name, log10_ratio in ratios.items():
        print(f"  {name + ':':17s}{change(log10_ratio)}")

    with gf.paper_style({"figure.figsize": (8.0, 3.2)}):
        fig, (left, right) = plt.subplots(1, 2)
        gf.plot_decay(list(flows.values()), ax=left, labels=list(flows))
        left.set_title(f"nn.LSTM, n = {hidden}, on the task's inputs")
        for name, f in flows.items():
            grad = f.full.mean()["log10_grad_norm"]
            right.plot(f.steps - f.k, grad - grad[-1], label=name)
        right.set_xlabel(r"$T-k$")
        right.set_ylabel(r"$\log_{10}\,\|\partial L/\partial s_k\| \,/\, \|\partial L/\partial s_{T-1}\|$")
        right.set_title("the task's loss gradient, relative")
        right.legend()
        paths = gf.save_figure(fig, args.out / "load_pytorch_model", formats=("png", "pdf"))
        plt.close(fig)
    for p in paths:
        print(f"wrote {p}")

    # -- 5: the same from the command line -----------------------------------------------------
    cmd = ["gradflow", "flow", "lstm", "--weights", str(after), "--steps", str(steps),
           "--batch", "4", "--carousel", "--json"]
    print("\n$ " + " ".join(cmd))
    run = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, check=True)
    record = json.loads(run.stdout)
    (args.out / "flow_trained.json").write_text(json.dumps(record, indent=1) + "\n")
    first, last = record["curve"][0], record["curve"][-1]
    print(f"cell {record['cell']}, hidden {record['hidden']}, steps {record['steps']}, batch {record['batch']}")
    print(f"  k = {first['k']}: log10_norm_2 = {first['log10_norm_2']:.3f}, "
          f"cell_state {first['cell_state']['log10_norm_2']:.3f}, carousel {first['carousel']['log10_norm_2']:.3f}")
    print(f"  k = {last['k']}: log10_norm_2 = {last['log10_norm_2']:.3f}")
    print(f"  largest Lyapunov exponent {record['lyapunov'][0]:.3f} per step")
    print(f"wrote {args.out / 'flow_trained.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
