"""Exploding gradients on one unit: the error-surface cliff of Pascanu et al. (2013), and clipping.

The model is a single recurrent unit, x_t = w σ(x_{t−1}) + b, with b = −3, x_0 = 0.5 and T = 50
steps, and the loss L(w) = ½ (x_T − y)² with y = −2.6. For w below w_c ≈ 5.6229 the unit settles
in its low fixed point; above w_c that fixed point no longer exists (a saddle-node bifurcation)
and x_T jumps to the high branch. Across a w-interval of about 10⁻⁵ the loss rises by ~10: a
cliff. The derivative is exact (forward mode):

    dx_t/dw = σ(x_{t−1}) + w σ'(x_{t−1}) dx_{t−1}/dw,      dL/dw = (x_T − y) dx_T/dw,

and it reaches millions on the wall, because near w_c the factors w σ'(x_j) of ∂x_T/∂x_k stay
close to 1 for many steps (the unit lingers at the vanished fixed point).

One gradient step from a point on the wall (learning rate 0.05) throws w to about −1.0·10⁵,
four orders of magnitude outside the plotted range; the same
step with the gradient clipped to norm 5 (Pascanu et al. 2013, Algorithm 1: if ‖g‖ > θ then
g ← θ g/‖g‖) moves w by at most 0.05 · 5 = 0.25 and lands below the cliff.

Figure: ``OUT/exploding_cliff.png`` (and .pdf). Printed: w_c, the largest |dL/dw| found, and
both steps.

    python examples/exploding_cliff.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # write files, open no window
import numpy as np  # noqa: E402

B, X0, T, Y = -3.0, 0.5, 50, -2.6
LR, CLIP = 0.05, 5.0


def unit(w: float, b: float = B, steps: int = T, x0: float = X0) -> tuple[float, float]:
    """x_T and dx_T/dw of x_t = w σ(x_{t−1}) + b (forward-mode derivative, exact)."""
    x, dx = x0, 0.0
    for _ in range(steps):
        e = math.exp(-abs(x))  # σ without overflow for any x
        s = 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)
        dx = s + w * s * (1.0 - s) * dx
        x = w * s + b
    return x, dx


def loss(w: float) -> tuple[float, float]:
    """L(w) = ½ (x_T − y)² and dL/dw."""
    x, dx = unit(w)
    return 0.5 * (x - Y) ** 2, (x - Y) * dx


def cliff(lo: float = 5.0, hi: float = 6.0) -> float:
    """w_c by bisection on the jump of x_T (below: low branch x_T < 0; above: high branch)."""
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if unit(mid)[0] > 0 else (mid, hi)
    return lo


def step(w: float, clip: float | None) -> float:
    """One gradient-descent step, with the gradient clipped to norm ``clip`` when given."""
    g = loss(w)[1]
    if clip is not None and abs(g) > clip:
        g = clip * math.copysign(1.0, g)
    return w - LR * g


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out",
                        help="output folder (default: examples/out)")
    parser.add_argument("--quick", action="store_true", help="fewer grid points (a second)")
    a = parser.parse_args(argv)

    import gradflow as gf

    wc = cliff()
    dist = np.logspace(-9, 0, 40 if a.quick else 120)  # distance from the cliff, both sides
    g_left = np.array([abs(loss(wc - d)[1]) for d in dist])
    g_right = np.array([abs(loss(wc + d)[1]) for d in dist])
    w0 = wc + 1e-6  # on the wall
    L0, g0 = loss(w0)
    w_free, w_clip = step(w0, None), step(w0, CLIP)
    print(f"cliff at w_c = {wc:.9f} (b = {B}, x_0 = {X0}, T = {T}, y = {Y})")
    print(f"L just below / above: {loss(wc - 1e-3)[0]:.4f} / {loss(wc + 1e-3)[0]:.4f}")
    print(f"largest |dL/dw| on the grid: {max(g_left.max(), g_right.max()):.4g}")
    print(f"from w0 = w_c + 1e-6: L = {L0:.4f}, dL/dw = {g0:.6g}")
    print(f"step without clipping: w1 = {w_free:.6g}, L = {loss(w_free)[0]:.6g}")
    print(f"step with clipping to {CLIP:g}: w1 = {w_clip:.6f}, L = {loss(w_clip)[0]:.4f}")

    ws = np.linspace(4.0, 7.5, 400 if a.quick else 1400)
    ws = np.sort(np.concatenate([ws, wc + np.array([-1e-5, -1e-6, 1e-6, 1e-5])]))
    Ls = np.array([loss(w)[0] for w in ws])
    with gf.paper_style():
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.9, 2.6), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        ax1.plot(ws, Ls, color="black", label=r"$L(w)$")
        ax1.axvline(wc, color="0.6", linewidth=0.6)
        ax1.annotate("", xy=(w_clip, loss(w_clip)[0]), xytext=(w0, L0),
                     arrowprops={"arrowstyle": "->", "color": "#009E73"})
        ax1.plot([w_clip], [loss(w_clip)[0]], "o", color="#009E73", label=f"clipped step (to {CLIP:g})")
        ax1.annotate(f"unclipped step: to $w = {w_free:.3g}$", (w0, L0), xytext=(-110, -30),
                     textcoords="offset points", color="#D55E00", fontsize=8,
                     arrowprops={"arrowstyle": "<-", "color": "#D55E00"})
        ax1.set_xlabel(r"recurrent weight $w$")
        ax1.set_ylabel(r"loss $L = \frac{1}{2}(x_T - y)^2$")
        ax1.legend(loc="upper left")
        ax2.loglog(dist, g_left, label=r"$w = w_c - d$")
        ax2.loglog(dist, g_right, linestyle="--", label=r"$w = w_c + d$")
        ax2.set_xlabel(r"distance $d$ from the cliff")
        ax2.set_ylabel(r"$|dL/dw|$")
        ax2.legend(loc="upper right")
        a.out.mkdir(parents=True, exist_ok=True)
        gf.save_figure(fig, a.out / "exploding_cliff", formats=("png", "pdf"))
    print(f"wrote {a.out / 'exploding_cliff.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
