"""Initialisations of the diagonal state-space cells, as their reference code draws them.

The cells (:mod:`gradflow._symbolic.ssm_cells`) are written per unit of the flattened d × N state,
unit j = c·N + k (channel c, state index k). These functions also impose the reference models'
row sharing: one Δ per channel, one B row per state index, unit j reading its own channel.

* Mamba (``A_log_init``, ``dt_init`` of ``mamba_ssm``): S4D-Real A_k = −(k + 1), i.e.
  A_log = log(k + 1); Δ's bias b_Δ = softplus⁻¹(dt) with dt = exp(U[log dt_min, log dt_max]),
  floored at dt_floor, softplus⁻¹(y) = y + log(−expm1(−y)); U_Δ = W_dt·W_x of rank R = ⌈d/16⌉
  (W_dt ~ U(±R^{−½}), W_x ~ U(±d^{−½})); U_B rows ~ U(±d^{−½}) (``nn.Linear``).
* S4D (``s4d.py``): log Δ ~ U[log dt_min, log dt_max] per channel; S4D-Lin A_k = −½ + iπk or
  S4D-Real A_k = −(k + 1); B = 1 (the channel's input, real).
* RG-LRU (``rnn_param_init``): σ(Λ) = a = √U[min_rad², max_rad²], i.e. Λ = logit(a); the range is
  that of the base a, so a_t = a^{c r_t} lies in [min_rad^c, 1) at the gate's extremes.
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import GradflowError
from .weights import Weights, to_numpy


def _as(like, values: np.ndarray):
    """``values`` as an array of ``like``'s namespace and dtype."""
    from array_api_compat import array_namespace

    return array_namespace(like).asarray(values.astype(to_numpy(like).dtype))


def _inverse_softplus(y: np.ndarray) -> np.ndarray:
    """softplus⁻¹(y) = y + log(−expm1(−y)) (y > 0), the form Mamba's ``dt_init`` uses."""
    return y + np.log(-np.expm1(-y))


def _channels(weights: Weights, channels: int, cells: tuple[str, ...], what: str) -> int:
    """N = n / d after checking the cell and the sizes; ``GradflowError`` otherwise."""
    if weights.cell.name not in cells:
        raise GradflowError(f"{what} is for {' or '.join(cells)}; got {weights.cell.name}")
    if not (isinstance(channels, int) and not isinstance(channels, bool) and channels >= 1):
        raise GradflowError(f"channels must be a positive integer, got {channels!r}")
    if weights.hidden % channels:
        raise GradflowError(f"hidden size {weights.hidden} is not channels × state size "
                            f"(channels = {channels})")
    return weights.hidden // channels


def _log_uniform(rng, low: float, high: float, size: int) -> np.ndarray:
    if not (0 < low < high and math.isfinite(high)):
        raise GradflowError(f"need 0 < dt_min < dt_max, got {low!r}, {high!r}")
    return np.exp(rng.uniform(math.log(low), math.log(high), size))


def _selection(d: int, N: int, m: int) -> np.ndarray:
    """(d·N) × m: unit c·N + k reads input channel c."""
    if m != d:
        raise GradflowError(f"input size must equal channels (each unit reads its channel), got {m} and {d}")
    return np.repeat(np.eye(d), N, axis=0)


def mamba_init(weights: Weights, channels: int, *, dt_min: float = 1e-3, dt_max: float = 0.1,
               dt_floor: float = 1e-4, seed: int = 0) -> Weights:
    """``weights`` of ``mamba-zoh``/``mamba-euler`` drawn as Mamba draws them, rows shared.

    hidden = channels · N (the flattened d × N state), input = channels. A_log = log(k + 1),
    b_Δ = softplus⁻¹(max(exp(U[log dt_min, log dt_max]), dt_floor)) per channel, so that
    Δ = dt at zero input; U_Δ = W_dt W_x (rank ⌈d/16⌉), U_B rows per state index, U_u the selection.
    """
    d = channels
    N = _channels(weights, channels, ("mamba-zoh", "mamba-euler"), "mamba_init")
    m = weights.input
    sel = _selection(d, N, m)
    rng = np.random.default_rng(seed)
    R = math.ceil(d / 16)
    dt = np.maximum(_log_uniform(rng, dt_min, dt_max, d), dt_floor)
    W_x = rng.uniform(-1, 1, (R, d)) / math.sqrt(d)
    W_dt = rng.uniform(-1, 1, (d, R)) / math.sqrt(R)
    W_B = rng.uniform(-1, 1, (N, d)) / math.sqrt(d)
    values = {r"A_{\log}": np.tile(np.log(np.arange(1, N + 1)), d),
              r"U_{\Delta}": np.repeat(W_dt @ W_x, N, axis=0),
              r"b_{\Delta}": np.repeat(_inverse_softplus(dt), N),
              "U_{B}": np.tile(W_B, (d, 1)),
              "U_{u}": sel}
    arrays = dict(weights.arrays)
    for key, v in values.items():
        arrays[key] = _as(arrays[key], v)
    return Weights(weights.cell, weights.hidden, m, arrays)


def s4d_init(weights: Weights, channels: int, *, variant: str = "lin", dt_min: float = 1e-3,
             dt_max: float = 0.1, seed: int = 0) -> Weights:
    """``weights`` of ``s4d`` as S4D draws them: hidden = channels · N complex modes, input = channels.

    ``variant`` ``"lin"``: A_k = −½ + iπk (|λ| = e^{−Δ/2} for every mode); ``"real"``: A_k = −(k + 1).
    log Δ ~ U[log dt_min, log dt_max], one per channel; B = 1 (B_re the channel selection, B_im = 0).
    """
    N = _channels(weights, channels, ("s4d",), "s4d_init")
    if variant not in ("lin", "real"):
        raise GradflowError(f"variant must be 'lin' or 'real', got {variant!r}")
    d, m = channels, weights.input
    sel = _selection(d, N, m)
    rng = np.random.default_rng(seed)
    k = np.arange(N, dtype=float)
    re = np.full(N, 0.5) if variant == "lin" else k + 1
    im = math.pi * k if variant == "lin" else np.zeros(N)
    values = {r"\log\Delta": np.repeat(np.log(_log_uniform(rng, dt_min, dt_max, d)), N),
              r"A_{re,\log}": np.tile(np.log(re), d), r"A_{im}": np.tile(im, d),
              "B_{re}": sel, "B_{im}": np.zeros_like(sel)}
    arrays = dict(weights.arrays)
    for key, v in values.items():
        arrays[key] = _as(arrays[key], v)
    return Weights(weights.cell, weights.hidden, m, arrays)


def rglru_init(weights: Weights, *, min_rad: float = 0.9, max_rad: float = 0.999, seed: int = 0) -> Weights:
    """``weights`` of ``rg-lru`` with Griffin's Λ: σ(Λ) = √U[min_rad², max_rad²] (other weights unchanged)."""
    if weights.cell.name != "rg-lru":
        raise GradflowError(f"rglru_init is for rg-lru; got {weights.cell.name}")
    if not (0 < min_rad < max_rad < 1):
        raise GradflowError(f"need 0 < min_rad < max_rad < 1, got {min_rad!r}, {max_rad!r}")
    rng = np.random.default_rng(seed)
    a = np.sqrt(rng.uniform(min_rad ** 2, max_rad ** 2, weights.hidden))
    arrays = dict(weights.arrays)
    arrays[r"\Lambda"] = _as(arrays[r"\Lambda"], np.log(a) - np.log1p(-a))  # logit(a)
    return Weights(weights.cell, weights.hidden, weights.input, arrays)
