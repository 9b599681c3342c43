"""Diagonal state-space recurrences (S4D, Mamba/S6, Griffin's RG-LRU), each written once.

**What the state is.** These models keep, per input channel c = 1…d, a state of N entries; the
whole state is d × N. gradflow flattens it, channel-major (unit j = c·N + k, as ``h.reshape(-1)``
of a (d, N) array), into one vector of n = d·N units and writes the recurrence *per unit*:
every unit has its own row of the projections. The reference models share rows — Mamba's
Δ_t is one per channel (rows of U_Δ, b_Δ equal within a channel), its B_t one per state index
(rows of U_B equal across channels), and unit j reads its own channel, u_{t,j} = x_{t,c(j)}
(U_u a 0/1 selection). Those sharings are equalities among the weights, set by
:func:`gradflow.mamba_init` / :func:`gradflow.s4d_init`; they leave every formula below, and
the state Jacobian, unchanged.

**The state Jacobian is diagonal.** Δ_t, B_t, r_t, i_t read x_t only, never s_{t−1}, so

    S6:     ∂h_t/∂h_{t−1} = diag(exp(Δ_t ⊙ A)),  A = −exp(A_log) < 0, entries in (0, 1);
    RG-LRU: ∂h_t/∂h_{t−1} = diag(a_t),  a_t = σ(Λ)^{c r_t}, entries in (0, 1);
    S4D:    one 2 × 2 rotation–scaling block per complex mode (|λ| = exp(Δ Re A)), as the LRU's.

For S6 and the RG-LRU the derived blocks are diagonal, so ``gradient_flow`` takes the O(T·n)
diagonal path (:mod:`gradflow._numeric.diagonal`).

**Parameter counts** (``count_params``) with the ``pytorch``/``keras`` conventions are those of
this per-unit form: each unit's rows are counted (A_log: n; U_Δ, U_B, U_u: n × m each; b_Δ: n),
one bias per projection (``nn.Linear``), as for the other modern cells. The ``reference``
convention counts the reference modules' tensors instead (:data:`REFERENCE_MODULES`: shared rows,
the recurrence's parameters only; C_t, D and the block's other layers are the read-out and are
counted by neither convention); the difference is the sharing, not the recurrence.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import HadamardPower, MatAdd, MatMul

from .activations import Activation, sigmoid
from .cell import Cell, Recurrence
from .modern_activations import cos, exp, sin
from .nodes import ACTIVATIONS, Elementwise, hadamard, one_minus


def _softplus_numeric(xp, a):
    """log(1 + e^a) = max(a, 0) + log(1 + e^{−|a|}), without overflow."""
    return xp.maximum(a, 0.0 * a) + xp.log1p(xp.exp(-xp.abs(a)))


# softplus(a) = log(1 + e^a);  softplus'(a) = σ(a)
softplus = Activation(
    "softplus", r"\operatorname{softplus}", lambda x: sp.log(1 + sp.exp(x)),
    lambda a, y: (Elementwise("sigmoid", a),),
    _softplus_numeric,
)

# sqrt(a);  sqrt'(a) = ½ y^{∘−1}
sqrt = Activation(
    "sqrt", r"\operatorname{sqrt}", sp.sqrt,
    lambda a, y: (MatMul(sp.Rational(1, 2), HadamardPower(y, -1)),),
    lambda xp, a: xp.sqrt(a),
)

for _f in (softplus, sqrt):
    ACTIVATIONS.setdefault(_f.name, _f)

#: reference implementations keep one bias per projection (nn.Linear)
_ONE_BIAS = {"pytorch": 1, "keras": 1}


def _read(r: Recurrence, gate: str, bias: bool = True):
    """U_g x_t (+ b_g): a projection of the input only (no s_{t−1})."""
    lin = MatMul(r.U(gate), r.x)
    return MatAdd(lin, r.b(gate)) if bias else lin


def _mamba(zoh: bool):
    """Mamba's selective scan S6 (Gu & Dao 2023), per unit of the flattened d × N state.

    Δ_t = softplus(U_Δ x_t + b_Δ), B_t = U_B x_t, u_t = U_u x_t, A = −exp(A_log), ā_t = exp(Δ_t ⊙ A);
    h_t = ā_t ⊙ h_{t−1} + B̄_t ⊙ u_t with

    * ZOH (the paper, ``mamba-zoh``): B̄_t = (Δ_t A)^{−1}(exp(Δ_t A) − 1) Δ_t B_t = (1 − ā_t) ⊙ exp(−A_log) ⊙ B_t;
    * Euler (the reference code's ``selective_scan_ref``, ``mamba-euler``): B̄_t = Δ_t ⊙ B_t.

    The read-out y_t = C_t h_t + D u_t and the gate SiLU(z) are not part of the recurrence.
    """

    def recurrence(r: Recurrence):
        a_log = r.w("A", label=r"A_{\log}")
        delta = r.let(r"\Delta", softplus(_read(r, r"\Delta")))
        a_bar = r.let(r"\bar{a}", exp(MatMul(-1, hadamard(delta, exp(a_log)))))
        B = r.let("B", _read(r, "B", bias=False))
        u = r.let("u", _read(r, "u", bias=False))
        if zoh:
            b_bar = r.let(r"\bar{B}", hadamard(one_minus(a_bar), exp(MatMul(-1, a_log)), B))
        else:
            b_bar = r.let(r"\bar{B}", hadamard(delta, B))
        return {"h": MatAdd(hadamard(a_bar, r.prev["h"]), hadamard(b_bar, u))}

    return recurrence


def _s4d(r: Recurrence):
    """S4D (Gu et al. 2022): complex diagonal A = −exp(A_re,log) + i A_im, fixed step Δ = exp(log Δ), ZOH.

    x_t = λ ⊙ x_{t−1} + (λ − 1) ⊘ A ⊙ (v_re + i v_im),  λ = exp(Δ A),  v = U x_t (B u folded in).
    The complex state x = h + i q is written as two real states (h, q): each mode is a 2 × 2
    rotation–scaling block of modulus |λ| = exp(−Δ exp(A_re,log)) and angle Δ A_im.
    """
    h, q = r.prev["h"], r.prev["q"]
    dt = r.let(r"\Delta", exp(r.w("dt", label=r"\log\Delta")))
    alpha = r.let(r"\alpha", MatMul(-1, exp(r.w("re", label=r"A_{re,\log}"))))   # Re A < 0
    beta = r.w("im", label=r"A_{im}")                                               # Im A
    rho = r.let(r"\rho", exp(hadamard(dt, alpha)))
    phi = r.let(r"\phi", hadamard(dt, beta))
    re, im = r.let(r"\lambda^{re}", hadamard(rho, cos(phi))), r.let(r"\lambda^{im}", hadamard(rho, sin(phi)))
    # (λ − 1)/A = ((λ_re − 1) + i λ_im)(α − i β)/(α² + β²)
    inv = HadamardPower(MatAdd(hadamard(alpha, alpha), hadamard(beta, beta)), -1)
    p = MatMul(-1, one_minus(re))  # λ_re − 1
    g_re = r.let("g^{re}", hadamard(MatAdd(hadamard(p, alpha), hadamard(im, beta)), inv))
    g_im = r.let("g^{im}", hadamard(MatAdd(hadamard(im, alpha), MatMul(-1, hadamard(p, beta))), inv))
    v_re, v_im = MatMul(r.U("re", label=r"B_{re}"), r.x), MatMul(r.U("im", label=r"B_{im}"), r.x)
    h_new = MatAdd(hadamard(re, h), MatMul(-1, hadamard(im, q)),
                   hadamard(g_re, v_re), MatMul(-1, hadamard(g_im, v_im)))
    q_new = MatAdd(hadamard(im, h), hadamard(re, q), hadamard(g_re, v_im), hadamard(g_im, v_re))
    return {"h": h_new, "q": q_new}


def _rglru(r: Recurrence):
    """RG-LRU of Griffin/Hawk (De et al. 2024): a_t = σ(Λ)^{c r_t}, c = 8.

    r_t = σ(U_a x_t + b_a), i_t = σ(U_x x_t + b_x), u_t = U_u x_t (Griffin: x_t itself),
    log a_t = c r_t ⊙ log σ(Λ) = −c r_t ⊙ softplus(−Λ),
    h_t = a_t ⊙ h_{t−1} + √(1 − a_t²) ⊙ (i_t ⊙ u_t).
    The reference code stores −Λ (``a_param``, with softplus(a_param)); its √ clips the
    derivative at 1000, which no state Jacobian reads (a_t depends on x_t only).
    """
    c = r.const("c", 8.0)
    lam = r.w("a", label=r"\Lambda")
    rr = r.let("r", sigmoid(_read(r, "a")))
    i = r.let("i", sigmoid(_read(r, "x")))
    u = r.let("u", _read(r, "u", bias=False))
    a = r.let("a", exp(MatMul(-1, c, hadamard(rr, softplus(MatMul(-1, lam))))))
    norm = r.let(r"\beta", sqrt(one_minus(hadamard(a, a))))
    return {"h": MatAdd(hadamard(a, r.prev["h"]), hadamard(norm, i, u))}


SSM_CELLS: tuple[Cell, ...] = (
    Cell("mamba-zoh", "Mamba S6 selective scan, ZOH B (paper); state d x N flattened", ("h",),
         _mamba(zoh=True), bias_copies=_ONE_BIAS, reference="gu2023mamba"),
    Cell("mamba-euler", "Mamba S6 selective scan, Euler B = Delta B (reference code); state d x N flattened",
         ("h",), _mamba(zoh=False), bias_copies=_ONE_BIAS, reference="gu2023mamba"),
    Cell("s4d", "S4D, complex diagonal, ZOH, fixed step; complex state = h + i q", ("h", "q"), _s4d,
         bias_copies=_ONE_BIAS, reference="gu2022s4d"),
    Cell("rg-lru", "RG-LRU of Griffin (c = 8)", ("h",), _rglru, bias_copies=_ONE_BIAS,
         reference="de2024griffin"),
)

SSM_ALIASES = {"mamba": "mamba-zoh", "s6": "mamba-zoh", "rglru": "rg-lru", "griffin": "rg-lru"}


# -- the reference modules' parameter tensors (the ``reference`` count convention) ------------------
#: channels d, state entries per channel N, Mamba's dt rank R, Griffin's heads H
d, N, R, H = sp.symbols("d N R H", integer=True, positive=True)


@dataclass(frozen=True)
class ReferenceModule:
    """The parameter tensors of a reference implementation that the recurrence reads.

    Attributes:
        source: file, class and commit the shapes are read from.
        parts: (tensor and its shape, kind ``"w"`` element-wise/decay, ``"U"`` projection weight or
            ``"b"`` bias, entries in d, N, R, H).
        not_counted: the module's other tensors (the read-out and the block around the scan).
        width: True when the module keeps one state per input channel (d = n = m, Griffin);
            else n = d·N units with m = d input channels.
    """

    source: str
    parts: tuple[tuple[str, str, sp.Expr], ...]
    not_counted: str
    width: bool = False


_MAMBA = ReferenceModule(
    "state-spaces/mamba mamba_ssm/modules/mamba_simple.py, class Mamba (commit 000b310f), its selective "
    "scan; d = d_inner = 2 d_model, R = dt_rank = ceil(d_model/16) = ceil(d/32)",
    (("A_log (d x N)", "w", d * N), ("x_proj rows of dt (R x d)", "U", R * d),
     ("x_proj rows of B (N x d)", "U", N * d), ("dt_proj.weight (d x R)", "U", d * R),
     ("dt_proj.bias (d)", "b", d)),
    "x_proj rows of C (N x d) and D (d), the read-out; in_proj, conv1d, out_proj")

REFERENCE_MODULES: dict[str, ReferenceModule] = {
    "mamba-zoh": _MAMBA,
    "mamba-euler": _MAMBA,
    "s4d": ReferenceModule(
        "state-spaces/s4 models/s4/s4d.py, classes S4D and S4DKernel (commit 2ed46fcf); N = d_state/2 "
        "complex modes per channel, B = 1 fixed (no tensor)",
        (("log_dt (d)", "w", d), ("log_A_real (d x N)", "w", d * N), ("A_imag (d x N)", "w", d * N)),
        "C (d x N x 2) and D (d), the read-out; output_linear"),
    "rg-lru": ReferenceModule(
        "google-deepmind/recurrentgemma recurrentgemma/torch/layers.py, class RGLRU (commit 2a3dde4b); "
        "width d = n = m, gates BlockDiagonalLinear with H heads",
        (("a_param (d)", "w", d), ("a_gate.w (H x d/H x d/H)", "U", d ** 2 / H), ("a_gate.b (d)", "b", d),
         ("input_gate.w (H x d/H x d/H)", "U", d ** 2 / H), ("input_gate.b (d)", "b", d)),
        "none of the RGLRU module; the recurrent block's linear_x, linear_y, conv_1d, linear_out",
        width=True),
}
