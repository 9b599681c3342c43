"""Spread of a gradient-flow curve over sequences and seeds: median and a quantile band.

One sequence on one set of weights is an anecdote. :func:`flow_spread` runs ``seeds`` networks
(weights from seeds seed, seed+1, …) on ``batch`` input sequences each and summarises the
``seeds × batch`` curves log10 ‖∂s_T/∂s_k‖₂ at every k by their median and the ``lo``–``hi``
quantile band. Quantiles are empirical (the inverse of the empirical distribution function, no
interpolation), so a curve that is exactly zero (−∞ in log10) at some k enters as −∞ and a
band edge is −∞ only where at least that share of the curves is exactly zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import GradflowError, positive_int


@dataclass(frozen=True)
class Spread:
    """Median and band of log10 curves over ``count`` sequences, arrays (T,) indexed by k.

    Attributes:
        curves: (count, T) the curves themselves (seed-major).
        median, lo, hi: the 50 %, ``q_lo`` and ``q_hi`` empirical quantiles at every k.
        q_lo, q_hi: the band's quantile levels (e.g. 0.1, 0.9).
        seeds, batch: how the curves were drawn (count = seeds · batch).
    """

    curves: np.ndarray
    median: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    q_lo: float
    q_hi: float
    seeds: int
    batch: int

    @property
    def count(self) -> int:
        return int(self.curves.shape[0])


def spread_of(curves: Any, *, q_lo: float = 0.1, q_hi: float = 0.9, seeds: int = 1) -> Spread:
    """Median and [q_lo, q_hi] band of ``curves`` (count, T); NaN is an error."""
    c = np.asarray(curves, dtype=float)
    if c.ndim != 2 or c.shape[0] < 1:
        raise GradflowError(f"curves must be (count, T), got shape {c.shape}")
    if np.isnan(c).any():
        raise GradflowError("the curves contain NaN")
    if not 0 <= q_lo < 0.5 < q_hi <= 1:
        raise GradflowError(f"need 0 ≤ q_lo < 0.5 < q_hi ≤ 1, got {q_lo}, {q_hi}")
    q = np.quantile(c, [q_lo, 0.5, q_hi], axis=0, method="inverted_cdf")
    return Spread(c, q[1], q[0], q[2], q_lo, q_hi, seeds, c.shape[0] // seeds)


def flow_spread(cell: Any, hidden: int, input: int, steps: int, *, seed: int = 0, seeds: int = 4,
                batch: int = 4, forget_bias: float | None = None, q_lo: float = 0.1,
                q_hi: float = 0.9, init: str | None = None) -> Spread:
    """log10 ‖∂s_T/∂s_k‖₂ over ``seeds`` weight draws × ``batch`` input sequences, summarised.

    ``init``: the initialisation of every draw (default: the cell's own), the one the report's run
    used, so that the band and the run's sentences describe the same networks."""
    from .flow import gradient_flow
    from .network import network, random_inputs

    seeds = positive_int(seeds, "seeds", 1)
    batch = positive_int(batch, "batch", 1)
    rows = []
    for s in range(seed, seed + seeds):
        net = network(cell, hidden, input, seed=s, forget_bias=forget_bias, init=init)  # type: ignore[arg-type]
        x = random_inputs(steps, input, batch=batch, seed=s)
        f = gradient_flow(net, x, lyapunov=False, bound=False, mode="exact")  # ‖·‖₂ at any N
        rows.append(np.asarray(f.full.log10_norm_2, dtype=float))
    return spread_of(np.concatenate(rows, axis=0), q_lo=q_lo, q_hi=q_hi, seeds=seeds)
