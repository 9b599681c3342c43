"""Initialisations of the diagonal state-space cells, as their reference code draws them.

The cells (:mod:`gradflow._symbolic.ssm_cells`) are written per unit of the flattened d × N state,
unit j = c·N + k (channel c, state index k). These functions also impose the reference models'
row sharing: one Δ per channel, one B row per state index, unit j reading its own channel.

* Mamba (``A_log_init``, ``dt_init`` of ``mamba_ssm``): S4D-Real A_k = −(k + 1), i.e.
  A_log = log(k + 1); Δ's bias b_Δ = softplus⁻¹(dt) with dt = exp(U[log dt_min, log dt_max]),
  floored at dt_floor, softplus⁻¹(y) = y + log(−expm1(−y)); U_Δ = W_dt·W_x of rank
  R = ⌈d_model/16⌉ = ⌈d/32⌉ (the scan has d = expand·d_model channels, expand = 2)
  (W_dt ~ U(±R^{−½}), W_x ~ U(±d^{−½})); U_B rows ~ U(±d^{−½}) (``nn.Linear``).
* S4D (``s4d.py``): log Δ ~ U[log dt_min, log dt_max] per channel; S4D-Lin A_k = −½ + iπk or
  S4D-Real A_k = −(k + 1); B = 1 (the channel's input, real).
* RG-LRU (``rnn_param_init``): σ(Λ) = a = √U[min_rad², max_rad²], i.e. Λ = logit(a); the range is
  that of the base a, so a_t = a^{c r_t} lies in [min_rad^c, 1) at the gate's extremes.
"""

from __future__ import annotations

import numpy as np

from .._checks import GradflowError
from .reference_init import SCHEME_CELLS, mamba_arrays, rglru_lambda, s4d_arrays, state_size
from .weights import Weights, to_numpy


def _as(like, values: np.ndarray):
    """``values`` as an array of ``like``'s namespace and dtype."""
    from array_api_compat import array_namespace

    return array_namespace(like).asarray(values.astype(to_numpy(like).dtype))


def _channels(weights: Weights, channels: int, scheme: str, what: str) -> int:
    """N = n / d after checking the cell and the sizes; ``GradflowError`` otherwise."""
    if weights.cell.name not in SCHEME_CELLS[scheme]:
        raise GradflowError(f"{what} is for {' or '.join(SCHEME_CELLS[scheme])}; got {weights.cell.name}")
    return state_size(scheme, weights.cell.name, weights.hidden, channels)


def _replace(weights: Weights, values: dict[str, np.ndarray]) -> Weights:
    arrays = dict(weights.arrays)
    for key, v in values.items():
        arrays[key] = _as(arrays[key], v)
    return Weights(weights.cell, weights.hidden, weights.input, arrays)


def mamba_init(weights: Weights, channels: int, *, dt_min: float = 1e-3, dt_max: float = 0.1,
               dt_floor: float = 1e-4, seed: int = 0) -> Weights:
    """``weights`` of ``mamba-zoh``/``mamba-euler`` drawn as Mamba draws them, rows shared.

    hidden = channels · N (the flattened d × N state), input = channels. A_log = log(k + 1),
    b_Δ = softplus⁻¹(max(exp(U[log dt_min, log dt_max]), dt_floor)) per channel, so that
    Δ = dt at zero input; U_Δ = W_dt W_x (rank R = ⌈d/32⌉: Mamba's ⌈d_model/16⌉ with
    d = 2·d_model channels), U_B rows per state index, U_u the selection.
    """
    N = _channels(weights, channels, "mamba", "mamba_init")
    return _replace(weights, mamba_arrays(channels, N, weights.input, dt_min=dt_min, dt_max=dt_max,
                                          dt_floor=dt_floor, seed=seed))


def s4d_init(weights: Weights, channels: int, *, variant: str = "lin", dt_min: float = 1e-3,
             dt_max: float = 0.1, seed: int = 0) -> Weights:
    """``weights`` of ``s4d`` as S4D draws them: hidden = channels · N complex modes, input = channels.

    ``variant`` ``"lin"``: A_k = −½ + iπk (|λ| = e^{−Δ/2} for every mode); ``"real"``: A_k = −(k + 1).
    log Δ ~ U[log dt_min, log dt_max], one per channel; B = 1 (B_re the channel selection, B_im = 0).
    """
    N = _channels(weights, channels, "s4d-lin", "s4d_init")
    return _replace(weights, s4d_arrays(channels, N, weights.input, variant=variant, dt_min=dt_min,
                                        dt_max=dt_max, seed=seed))


def rglru_init(weights: Weights, *, min_rad: float = 0.9, max_rad: float = 0.999, seed: int = 0) -> Weights:
    """``weights`` of ``rg-lru`` with Griffin's Λ: σ(Λ) = √U[min_rad², max_rad²] (other weights unchanged)."""
    if weights.cell.name != "rg-lru":
        raise GradflowError(f"rglru_init is for rg-lru; got {weights.cell.name}")
    return _replace(weights, {r"\Lambda": rglru_lambda(weights.hidden, min_rad=min_rad, max_rad=max_rad,
                                                        seed=seed)})
