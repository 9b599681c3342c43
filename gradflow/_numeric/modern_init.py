"""Initialisation schemes that come with the modern cells.

Chrono (Tallec & Ollivier 2018): forget-gate biases from the time scales to learn,
b_f ~ log U[1, T_max − 1] and b_i = −b_f, so that 1/(1 − σ(b_f)) = 1 + e^{b_f} ~ U[2, T_max]: with
the gate's other inputs at 0, unit j forgets with characteristic time τ_j = 1 + e^{b_f,j}
(∏ f = σ(b_f)^{t−k} ≈ e^{−(t−k)/τ_j}), spread over the range of dependencies expected.

LRU ring (Orvieto et al. 2023, minimal-LRU defaults): |λ|² ~ U[r_min², r_max²], phase
~ U[0, max_phase], γ = √(1 − |λ|²), B_re and B_im entries N(0, 1/(2m)).
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import GradflowError
from .._vocabulary import EXPRNN_INITS, ExprnnInit
from .weights import Weights, to_numpy


def chrono_init(weights: Weights, t_max: float, *, seed: int = 0) -> Weights:
    """``weights`` with chrono forget and input biases (the other parameters unchanged).

    Arguments:
        weights: weights of a cell with a forget-gate bias b_f (LSTM, peephole LSTM, minLSTM);
            an input-gate bias b_i, if present, is set to −b_f.
        t_max: the longest dependency expected (T_max > 2).
        seed: seed of the uniform draw.
    """
    if not (isinstance(t_max, (int, float)) and math.isfinite(t_max) and t_max > 2):
        raise GradflowError(f"t_max must be a number > 2, got {t_max!r}")
    cell = weights.cell
    if not cell.has_forget_gate:
        raise GradflowError(f"{cell.name} has no forget-gate bias b_f; chrono initialisation sets it")
    n = weights.hidden
    arrays = dict(weights.arrays)
    like = arrays[cell.FORGET_BIAS]
    if tuple(like.shape) != (n,):  # mLSTM: one scalar forget gate per head
        raise GradflowError(f"{cell.name}: chrono initialisation sets one forget bias per hidden unit "
                            f"(Tallec & Ollivier 2018); this cell's b_f has shape {tuple(like.shape)}: "
                            "set it with forget_bias= (--forget-bias) instead")
    b_f = np.log(np.random.default_rng(seed).uniform(1.0, t_max - 1.0, n))
    arrays[cell.FORGET_BIAS] = _as(like, b_f)
    if "b_{i}" in arrays:
        arrays["b_{i}"] = _as(arrays["b_{i}"], -b_f)
    return Weights(cell, n, weights.input, arrays)


def _as(like, values: np.ndarray):
    """``values`` as an array of ``like``'s namespace and dtype."""
    from array_api_compat import array_namespace

    xp = array_namespace(like)
    host = to_numpy(like)
    return xp.asarray(values.astype(host.dtype))


def lru_ring_init(weights: Weights, *, r_min: float = 0.0, r_max: float = 1.0, max_phase: float = 6.28,
                  seed: int = 0) -> Weights:
    """``weights`` of the ``lru`` cell with the ring initialisation (its parameters ν, θ, γ_log, B).

    ν_log = log(−½ log(U·(r_max² − r_min²) + r_min²)) so that |λ|² ~ U[r_min², r_max²];
    θ_log = log(max_phase·U); γ_log = log √(1 − |λ|²); B_re, B_im ~ N(0, 1/(2m)).
    """
    if weights.cell.name != "lru":
        raise GradflowError(f"the ring initialisation is the LRU's; got {weights.cell.name}")
    from .reference_init import lru_ring_arrays

    n, m = weights.hidden, weights.input
    values = lru_ring_arrays(n, m, r_min=r_min, r_max=r_max, max_phase=max_phase, seed=seed)
    arrays = dict(weights.arrays)
    for key, v in values.items():
        arrays[key] = _as(arrays[key], v)
    return Weights(weights.cell, n, m, arrays)


def exprnn_init(weights: Weights, *, scheme: ExprnnInit = "henaff", seed: int = 0) -> Weights:
    """``weights`` of the ``exprnn`` cell with its log-orthogonal A initialised (others unchanged).

    W = exp(A − Aᵀ) is orthogonal for every A. The schemes of the reference code
    (Lezcano-Casado & Martínez-Rubio 2019), both 2 × 2 rotation blocks on the diagonal of A − Aᵀ:

    * ``"henaff"``: A_{2j, 2j+1} = θ_j ~ U[−π, π] (Henaff et al. 2016): rotations by uniform angles;
    * ``"cayley"``: A_{2j, 2j+1} = −√((1 − cos s_j)/(1 + cos s_j)), s_j ~ U[0, π/2];
    * ``"random"``: every entry of A ~ N(0, 1/n): a random skew part, W a random rotation;
    * ``"orthogonal"``: the Henaff rotations in a random orthonormal basis Z (QR of a Gaussian,
      signs fixed): A = ½ Z B Zᵀ with B the Henaff skew blocks, so W = Z exp(B) Zᵀ, a dense rotation
      with eigenvalues e^{±iθ_j}, θ_j ~ U[−π, π].
    """
    if weights.cell.name != "exprnn":
        raise GradflowError(f"exprnn_init initialises the exprnn cell; got {weights.cell.name}")
    if scheme not in EXPRNN_INITS:
        raise GradflowError(f"unknown expRNN init scheme {scheme!r}; known: {', '.join(EXPRNN_INITS)}")
    n = weights.hidden
    rng = np.random.default_rng(seed)
    A = np.zeros((n, n))
    if scheme == "random":
        A = rng.standard_normal((n, n)) / math.sqrt(n)
    elif scheme == "orthogonal":
        B = np.zeros((n, n))
        for j in range(0, n - 1, 2):
            B[j, j + 1] = rng.uniform(-math.pi, math.pi)
            B[j + 1, j] = -B[j, j + 1]
        Z, R = np.linalg.qr(rng.standard_normal((n, n)))
        Z = Z * np.sign(np.diag(R))[None, :]
        A = 0.5 * (Z @ B @ Z.T)
    else:
        for j in range(0, n - 1, 2):
            if scheme == "henaff":
                A[j, j + 1] = rng.uniform(-math.pi, math.pi)
            else:
                s = rng.uniform(0.0, math.pi / 2)
                A[j, j + 1] = -math.sqrt((1 - math.cos(s)) / (1 + math.cos(s)))
    arrays = dict(weights.arrays)
    arrays["A"] = _as(arrays["A"], A)
    return Weights(weights.cell, n, weights.input, arrays)

