"""The state-space cells' reference initialisations as arrays (NumPy only; no ``Weights``).

:func:`gradflow._numeric.weights.init_weights` reads these for the schemes ``mamba``,
``s4d-lin``, ``s4d-real``, ``rg-lru`` and ``lru-ring`` (the LRU's ring: any sizes);
:mod:`gradflow._numeric.ssm_init` wraps them for ``Weights`` already drawn. Sizes (not the LRU):
the flattened state has n = d·N units (d channels, N state entries per channel, unit j = c·N + k)
and every unit reads its own channel, so the input size m is d and **N = n / m** (n must be a
multiple of m). Griffin's RG-LRU has u_t = x_t: m = n.
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import GradflowError

#: reference scheme → the cells it initialises
SCHEME_CELLS: dict[str, tuple[str, ...]] = {
    "mamba": ("mamba-zoh", "mamba-euler"), "s4d-lin": ("s4d",), "s4d-real": ("s4d",), "rg-lru": ("rg-lru",),
    "lru-ring": ("lru",)}
#: cell → the scheme gradflow's CLI and report use for it unless told otherwise
REFERENCE_INIT: dict[str, str] = {c: s for s, cells in SCHEME_CELLS.items() for c in cells if s != "s4d-real"}
#: the state entries per channel N of the reference code's defaults: Mamba's ``d_state = 16``
#: (``mamba_simple.py``); S4D's ``d_state = 64`` (``s4d.py``), which it keeps as N/2 = 32 complex
#: modes (conjugate pairs, the kernel takes 2·Re), gradflow's N for ``s4d`` (one complex mode a unit)
USUAL_STATE: dict[str, int] = {"mamba": 16, "s4d-lin": 32, "s4d-real": 32}


def default_input(scheme: str, hidden: int) -> int:
    """The input size m (the channels d) when none is given: m = n / N with N the largest divisor
    of n that is at most the reference code's N (:data:`USUAL_STATE`), so Mamba has N = 16 state
    entries per channel and S4D 32 complex modes when n allows; m = n for every other scheme."""
    usual = USUAL_STATE.get(scheme)
    if usual is None:
        return hidden
    N = max(k for k in range(1, min(usual, hidden) + 1) if hidden % k == 0)
    return hidden // N


def inverse_softplus(y: np.ndarray) -> np.ndarray:
    """softplus⁻¹(y) = y + log(−expm1(−y)) (y > 0), the form Mamba's ``dt_init`` uses."""
    return y + np.log(-np.expm1(-y))


def log_uniform(rng: np.random.Generator, low: float, high: float, size: int) -> np.ndarray:
    """exp(U[log low, log high]) (Mamba's dt, S4D's Δ)."""
    if not (0 < low < high and math.isfinite(high)):
        raise GradflowError(f"need 0 < dt_min < dt_max, got {low!r}, {high!r}")
    return np.exp(rng.uniform(math.log(low), math.log(high), size))


def selection(d: int, N: int, m: int) -> np.ndarray:
    """(d·N) × m: unit c·N + k reads input channel c."""
    if m != d:
        raise GradflowError(f"input size must equal channels (each unit reads its channel), got {m} and {d}")
    return np.repeat(np.eye(d), N, axis=0)


def state_size(scheme: str, cell: str, hidden: int, channels: int) -> int:
    """N = hidden / channels after checking that ``scheme`` fits the cell and the sizes."""
    cells = SCHEME_CELLS[scheme]
    if cell not in cells:
        raise GradflowError(f"init {scheme} is for {' or '.join(cells)}; got {cell}")
    if scheme == "lru-ring":  # the LRU's B mixes every input into every unit: any sizes
        return 1
    if not (isinstance(channels, int) and not isinstance(channels, bool) and channels >= 1):
        raise GradflowError(f"channels must be a positive integer, got {channels!r}")
    if hidden % channels:
        raise GradflowError(f"init {scheme}: hidden size {hidden} is not channels × state size "
                            f"(channels = {channels}, the input size); give a hidden size that is a "
                            f"multiple of {channels}")
    return hidden // channels


def check_fits(scheme: str, cell: str, hidden: int, input: int) -> None:
    """``GradflowError`` unless reference ``scheme`` fits ``cell`` at these sizes (other schemes: no check)."""
    if scheme not in SCHEME_CELLS:
        return
    state_size(scheme, cell, hidden, input)
    if scheme == "rg-lru" and input != hidden:
        raise GradflowError(f"init rg-lru: Griffin's RG-LRU reads u_t = x_t, so the input size must equal "
                            f"the hidden size; got {input} and {hidden}")


def dt_rank(d: int, expand: int = 2) -> int:
    """Mamba's R = ⌈d_model/16⌉ with d_model = d/expand (the scan has d = expand·d_model channels)."""
    return math.ceil(d / expand / 16)


def mamba_arrays(d: int, N: int, m: int, *, dt_min: float = 1e-3, dt_max: float = 0.1,
                 dt_floor: float = 1e-4, seed: int = 0) -> dict[str, np.ndarray]:
    """A_log, U_Δ, b_Δ, U_B, U_u of Mamba's scan (``mamba_simple.py``), rows shared per channel/state index."""
    sel = selection(d, N, m)
    rng = np.random.default_rng(seed)
    R = dt_rank(d)
    dt = np.maximum(log_uniform(rng, dt_min, dt_max, d), dt_floor)
    W_x = rng.uniform(-1, 1, (R, d)) / math.sqrt(d)      # x_proj's Δ rows (nn.Linear, fan_in d)
    W_dt = rng.uniform(-1, 1, (d, R)) / math.sqrt(R)     # dt_proj, dt_init "random"
    W_B = rng.uniform(-1, 1, (N, d)) / math.sqrt(d)      # x_proj's B rows
    return {r"A_{\log}": np.tile(np.log(np.arange(1, N + 1)), d),
            r"U_{\Delta}": np.repeat(W_dt @ W_x, N, axis=0),
            r"b_{\Delta}": np.repeat(inverse_softplus(dt), N),
            "U_{B}": np.tile(W_B, (d, 1)),
            "U_{u}": sel}


def s4d_arrays(d: int, N: int, m: int, *, variant: str = "lin", dt_min: float = 1e-3, dt_max: float = 0.1,
               seed: int = 0) -> dict[str, np.ndarray]:
    """log Δ, A and B of S4D (``s4d.py``): S4D-Lin A_k = −½ + iπk or S4D-Real A_k = −(k + 1); B = 1."""
    if variant not in ("lin", "real"):
        raise GradflowError(f"variant must be 'lin' or 'real', got {variant!r}")
    sel = selection(d, N, m)
    rng = np.random.default_rng(seed)
    k = np.arange(N, dtype=float)
    re = np.full(N, 0.5) if variant == "lin" else k + 1
    im = math.pi * k if variant == "lin" else np.zeros(N)
    return {r"\log\Delta": np.repeat(np.log(log_uniform(rng, dt_min, dt_max, d)), N),
            r"A_{re,\log}": np.tile(np.log(re), d), r"A_{im}": np.tile(im, d),
            "B_{re}": sel, "B_{im}": np.zeros_like(sel)}


def rglru_lambda(n: int, *, min_rad: float = 0.9, max_rad: float = 0.999, seed: int = 0) -> np.ndarray:
    """Λ = logit(a), a = √U[min_rad², max_rad²] (Griffin's ``rnn_param_init``, σ(Λ) = a)."""
    if not (0 < min_rad < max_rad < 1):
        raise GradflowError(f"need 0 < min_rad < max_rad < 1, got {min_rad!r}, {max_rad!r}")
    a = np.sqrt(np.random.default_rng(seed).uniform(min_rad ** 2, max_rad ** 2, n))
    return np.log(a) - np.log1p(-a)


def rglru_arrays(n: int, m: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Griffin's RG-LRU (``recurrentgemma/torch/layers.py``): Λ on the ring [0.9, 0.999], the gates'
    weights N(0, 1/n) (``BlockDiagonalLinear`` with one block), zero biases, u_t = x_t (U_u = I, m = n)."""
    if m != n:
        raise GradflowError(f"init rg-lru: Griffin's RG-LRU reads u_t = x_t, so the input size must equal "
                            f"the hidden size; got {m} and {n}")
    rng = np.random.default_rng(seed)
    lam = rglru_lambda(n, seed=seed + 1)
    return {r"\Lambda": lam, "U_{a}": rng.standard_normal((n, n)) / math.sqrt(n), "b_{a}": np.zeros(n),
            "U_{x}": rng.standard_normal((n, n)) / math.sqrt(n), "b_{x}": np.zeros(n), "U_{u}": np.eye(n)}


def reference_arrays(scheme: str, cell: str, hidden: int, input: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Every parameter of ``cell`` drawn by reference ``scheme`` (``GradflowError`` if it does not fit)."""
    check_fits(scheme, cell, hidden, input)
    N = hidden // input
    if scheme == "mamba":
        return mamba_arrays(input, N, input, seed=seed)
    if scheme in ("s4d-lin", "s4d-real"):
        return s4d_arrays(input, N, input, variant=scheme[4:], seed=seed)
    if scheme == "lru-ring":
        return lru_ring_arrays(hidden, input, seed=seed)
    return rglru_arrays(hidden, input, seed=seed)


def lru_ring_arrays(n: int, m: int, *, r_min: float = 0.0, r_max: float = 1.0, max_phase: float = 6.28,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """The LRU's ring initialisation (Orvieto et al. 2023; the defaults of the reimplementation
    ``NicolasZucchet/minimal-LRU``, ``lru/model.py``: r_min = 0, r_max = 1, max_phase = 6.28):
    ν_log = log(−½ log(U·(r_max² − r_min²) + r_min²)), so |λ|² ~ U[r_min², r_max²] with
    |λ| = exp(−exp(ν_log)); θ_log = log(max_phase·U); γ_log = log √(1 − |λ|²) (the normalisation);
    B_re, B_im ~ N(0, 1/(2m))."""
    if not (0 <= r_min < r_max <= 1) or not (max_phase > 0):
        raise GradflowError("need 0 <= r_min < r_max <= 1 and max_phase > 0")
    rng = np.random.default_rng(seed)
    u1, u2 = rng.uniform(size=n), rng.uniform(size=n)
    nu_log = np.log(-0.5 * np.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
    modulus = np.exp(-np.exp(nu_log))
    return {r"\nu": nu_log, r"\theta": np.log(max_phase * u2), r"\gamma_{\log}": np.log(np.sqrt(1 - modulus ** 2)),
            "B_{re}": rng.standard_normal((n, m)) / np.sqrt(2 * m),
            "B_{im}": rng.standard_normal((n, m)) / np.sqrt(2 * m)}
