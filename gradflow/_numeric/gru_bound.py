"""A finite one-step bound for the GRU, valid while the state stays in (−1, 1).

PyTorch's GRU (``gru``): r = σ(W_r h + …), z = σ(W_z h + …),
ñ = tanh(U_n x + b_in + r ⊙ (W_n h + b_hn)), h' = (1 − z) ⊙ ñ + z ⊙ h. Its one-step Jacobian is

    J = diag(z) + diag((h − ñ) ⊙ z ⊙ (1 − z)) W_z
        + diag((1 − z) ⊙ (1 − ñ²)) [diag(r) W_n + diag((W_n h + b_hn) ⊙ r ⊙ (1 − r)) W_r].

h' is a convex combination of h and ñ ∈ (−1, 1), so |h_0| < 1 (entry-wise) keeps every state in
(−1, 1). Then |h − ñ| < 2, z(1 − z) ≤ 1/4, r(1 − r) ≤ 1/4, 0 < (1 − z)(1 − ñ²) ≤ 1, 0 < r < 1 and
|W_n h + b_hn|_i ≤ ρ_i = Σ_j |(W_n)_ij| + |(b_hn)_i|, and the triangle inequality gives

    ‖J‖₂ ≤ 1 + ½ σ_max(W_z) + σ_max(W_n) + ¼ max_i ρ_i · σ_max(W_r).

Cho et al.'s GRU (``gru-cho``) resets before the product, ñ = tanh(W_n (r ⊙ h) + …), so the last
bracket is W_n [diag(r) + diag(h ⊙ r ⊙ (1 − r)) W_r] and the bound is
1 + ½ σ_max(W_z) + σ_max(W_n)(1 + ¼ σ_max(W_r)).

The bound is at least 1, so it cannot show that gradients vanish; it shows that they cannot
grow faster than its (finite) rate per step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import GradflowError


def gru_step_bound(weights: Any) -> float:
    """The bound above on ‖∂h_t/∂h_{t−1}‖₂ for a ``gru`` or ``gru-cho`` :class:`Weights` (|h| < 1)."""
    from .weights import to_numpy

    name = weights.cell.name
    if name not in ("gru", "gru-cho"):
        raise GradflowError(f"gru_step_bound takes GRU weights (gru, gru-cho), got {name}")
    a = {k: np.asarray(to_numpy(v), dtype=float) for k, v in weights.arrays.items()}

    def smax(key: str) -> float:
        return float(np.linalg.norm(a[key], 2))

    if name == "gru":
        rho = float(np.max(np.abs(a["W_{n}"]).sum(axis=1) + np.abs(a["b_{hn}"]).ravel()))
        return 1.0 + 0.5 * smax("W_{z}") + smax("W_{n}") + 0.25 * rho * smax("W_{r}")
    return 1.0 + 0.5 * smax("W_{z}") + smax("W_{n}") * (1.0 + 0.25 * smax("W_{r}"))
