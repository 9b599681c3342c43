"""The diagonal state-space cells (S4D, Mamba/S6 ZOH and Euler, RG-LRU) against independent oracles.

* SymPy: each cell's step written HERE from the papers' equations with scalar symbols (the ZOH
  B̄ literally as (ΔA)⁻¹(exp(ΔA) − 1)ΔB); ``Matrix.jacobian`` of it against gradflow's derived
  blocks, and its new state against gradflow's recorded recurrence, at n ∈ {1, 2, 3}, compared
  at 50 significant digits.
* PyTorch: step functions written here (per unit, and Mamba's (d, N) layout as in
  ``selective_scan_ref``), ``torch.func.jacrev`` against gradflow's J_t and the forward states.
* Exact identities: exp(−softplus(z)) = 1 − σ(z) and the ZOH B̄ = σ(z) (mpmath); the
  HiPPO-LegS norm bound ‖e^{tA}‖₂ ≤ e^{−t/2} (scipy ``expm``) and where it is NOT an equality.
* The O(T·n) diagonal path against the dense SVD sweep; S4D's ‖P_k‖₂ = max_j |λ_j|^{T−k}.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import scipy.linalg
import sympy as sp
import torch
from _oracle import entries_of, explicit
from _torch_oracle import worst_step_errors

import gradflow as gf
from gradflow import CELLS, m, n
from gradflow._numeric.diagonal import is_diagonal

SSM = ["mamba-zoh", "mamba-euler", "s4d", "rg-lru"]
SIZES = [1, 2, 3]
M = 2


# --------------------------------------------------------------------------------------------
# the papers' equations, per unit, in SymPy scalars (P: parameter name → explicit matrix)
# --------------------------------------------------------------------------------------------
def sympy_step(name: str, P: dict, S: dict, x, N: int) -> dict:
    """New states (lists of N scalars) from previous states S and input x."""
    def row(Mx, j):  # (M x)_j
        return sum(Mx[j, k] * x[k, 0] for k in range(x.rows))

    out: dict = {s: [] for s in S}
    for j in range(N):
        if name.startswith("mamba"):
            delta = sp.log(1 + sp.exp(row(P[r"U_{\Delta}"], j) + P[r"b_{\Delta}"][j, 0]))
            A = -sp.exp(P[r"A_{\log}"][j, 0])
            B, u = row(P["U_{B}"], j), row(P["U_{u}"], j)
            if name == "mamba-zoh":  # (ΔA)^{-1}(exp(ΔA) − 1) ΔB
                b_bar = (sp.exp(delta * A) - 1) / (delta * A) * delta * B
            else:
                b_bar = delta * B
            out["h"].append(sp.exp(delta * A) * S["h"][j] + b_bar * u)
        elif name == "rg-lru":
            r = 1 / (1 + sp.exp(-(row(P["U_{a}"], j) + P["b_{a}"][j, 0])))
            i = 1 / (1 + sp.exp(-(row(P["U_{x}"], j) + P["b_{x}"][j, 0])))
            a = (1 / (1 + sp.exp(-P[r"\Lambda"][j, 0]))) ** (8 * r)  # σ(Λ)^{c r}
            out["h"].append(a * S["h"][j] + sp.sqrt(1 - a ** 2) * i * row(P["U_{u}"], j))
        elif name == "s4d":
            A = -sp.exp(P[r"A_{re,\log}"][j, 0]) + sp.I * P[r"A_{im}"][j, 0]
            dt = sp.exp(P[r"\log\Delta"][j, 0])
            lam = sp.exp(dt * A)
            z = S["h"][j] + sp.I * S["q"][j]
            z2 = lam * z + (lam - 1) / A * (row(P["B_{re}"], j) + sp.I * row(P["B_{im}"], j))
            out["h"].append(sp.re(sp.expand_complex(z2)))
            out["q"].append(sp.im(sp.expand_complex(z2)))
    return out


def _values(matrix, rng):
    """``matrix`` of symbols → the same shape of 60-digit random numbers in (−0.9, 0.9)."""
    return matrix.applyfunc(lambda _: sp.Float(rng.uniform(-0.9, 0.9), 60))


@pytest.mark.parametrize("N", SIZES)
@pytest.mark.parametrize("name", SSM)
def test_jacobian_and_recurrence_equal_the_papers_equations_sympy(name, N):
    """Parameters and input at random 60-digit values, the previous state symbolic."""
    cell = CELLS[name]
    step = cell.recorded
    sizes = {n: N, m: 2 if N <= 2 else 1}
    rng = np.random.default_rng(N)
    P = {p.symbol.name: _values(entries_of(p.symbol, sizes), rng) for p in step.params}
    S = {s: entries_of(step.prev[s], sizes) for s in cell.states}
    x = _values(entries_of(step.x, sizes), rng)
    leaves = dict(P, **{step.prev[s].name: S[s] for s in cell.states}, **{step.x.name: x})
    for symbol, defn in step.definitions.items():
        leaves[symbol.name] = explicit(defn, leaves, sizes).subs(step.constants)
    paper = sympy_step(name, P, {s: list(S[s]) for s in cell.states}, x, N)
    prev = [v for s in cell.states for v in S[s]]
    at = {v: sp.Float(rng.uniform(-0.9, 0.9), 60) for v in prev}
    for out_state in cell.states:
        mine_new = leaves[step.new[out_state].name]
        oracle_J = sp.Matrix(paper[out_state]).jacobian(prev)
        mine_J = sp.Matrix.hstack(*[explicit(cell.jacobian()[(out_state, s)], leaves, sizes)
                                    for s in cell.states])
        for a, b in ((mine_new, sp.Matrix(paper[out_state])), (mine_J, oracle_J)):
            diff = (a - b).subs(step.constants).subs(at).evalf(50)
            assert max(abs(complex(v)) for v in diff) < 1e-40, (out_state, diff)


def test_the_sympy_comparison_can_fail():
    """Euler's B̄ = ΔB is not the paper's ZOH B̄: the comparison tells them apart."""
    step = CELLS["mamba-euler"].recorded
    sizes = {n: 1, m: 1}
    rng = np.random.default_rng(0)
    leaves = {p.symbol.name: _values(entries_of(p.symbol, sizes), rng) for p in step.params}
    h, x = _values(entries_of(step.prev["h"], sizes), rng), _values(entries_of(step.x, sizes), rng)
    zoh = sympy_step("mamba-zoh", dict(leaves), {"h": list(h)}, x, 1)
    leaves.update({step.prev["h"].name: h, step.x.name: x})
    for symbol, defn in step.definitions.items():
        leaves[symbol.name] = explicit(defn, leaves, sizes)
    assert abs((leaves[step.new["h"].name][0] - zoh["h"][0]).evalf(30)) > 1e-6


# --------------------------------------------------------------------------------------------
# PyTorch autograd of independent step functions
# --------------------------------------------------------------------------------------------
def _t(a):
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def torch_step(name: str, P: dict, N: int):
    sig, sp_ = torch.sigmoid, torch.nn.functional.softplus

    if name.startswith("mamba"):
        def F(h, x):
            delta = sp_(P[r"U_{\Delta}"] @ x + P[r"b_{\Delta}"])
            A = -torch.exp(P[r"A_{\log}"])
            dA = torch.exp(delta * A)
            B, u = P["U_{B}"] @ x, P["U_{u}"] @ x
            b_bar = (dA - 1) / (delta * A) * delta * B if name == "mamba-zoh" else delta * B
            return dA * h + b_bar * u
    elif name == "rg-lru":  # the reference code's form: a_param = −Λ, log a = −8 r softplus(a_param)
        def F(h, x):
            r, i = sig(P["U_{a}"] @ x + P["b_{a}"]), sig(P["U_{x}"] @ x + P["b_{x}"])
            log_a = -8.0 * r * sp_(-P[r"\Lambda"])
            return torch.exp(log_a) * h + torch.sqrt(1 - torch.exp(2 * log_a)) * (i * (P["U_{u}"] @ x))
    elif name == "s4d":  # complex arithmetic, ZOH
        A = -torch.exp(P[r"A_{re,\log}"]) + 1j * P[r"A_{im}"]
        lam = torch.exp(torch.exp(P[r"\log\Delta"]) * A)
        B = P["B_{re}"] + 1j * P["B_{im}"]

        def F(s, x):
            z = torch.complex(s[:N], s[N:])
            z2 = lam * z + (lam - 1) / A * (B @ x.to(torch.complex128))
            return torch.cat([z2.real, z2.imag])
    else:
        raise KeyError(name)
    return F


def _compare_with_torch(net, F, T=6, seed=0):
    x = gf.random_inputs(T, net.input, seed=seed)
    s0 = np.random.default_rng(seed).standard_normal(net.state_size) * 0.5
    return worst_step_errors(net, F, x, s0)


@pytest.mark.parametrize("N", SIZES)
@pytest.mark.parametrize("name", SSM)
def test_jacobian_and_forward_match_torch(name, N):
    net = gf.network(name, N, M, seed=3 + N)
    P = {k: _t(v) for k, v in net.weights.arrays.items()}
    worst_J, worst_s = _compare_with_torch(net, torch_step(name, P, N), seed=N)
    assert worst_J < 1e-12 and worst_s < 1e-12, (worst_J, worst_s)


@pytest.mark.parametrize("zoh", [True, False])
def test_mamba_in_the_reference_layout(zoh):
    """Mamba's (d, N) state, Δ per channel, B per state index, u the channel (as selective_scan_ref)."""
    d, N = 2, 3
    name = "mamba-zoh" if zoh else "mamba-euler"
    w = gf.mamba_init(gf.init_weights(name, d * N, d), d, seed=2)
    a = {k: np.asarray(v) for k, v in w.arrays.items()}
    W_dt, b_dt = a[r"U_{\Delta}"][::N], a[r"b_{\Delta}"][::N]   # one row per channel
    W_B, A = a["U_{B}"][:N], -np.exp(a[r"A_{\log}"].reshape(d, N))

    def F(h_flat, x):
        h = h_flat.reshape(d, N)
        delta = torch.nn.functional.softplus(_t(W_dt) @ x + _t(b_dt))          # (d,)
        dA = torch.exp(delta[:, None] * _t(A))                                 # (d, N)
        B = _t(W_B) @ x                                                        # (N,)
        if zoh:
            b_bar = (dA - 1) / (delta[:, None] * _t(A)) * delta[:, None] * B[None, :]
        else:
            b_bar = delta[:, None] * B[None, :]
        return (dA * h + b_bar * x[:, None]).reshape(-1)

    worst_J, worst_s = _compare_with_torch(gf.Network(w), F, T=5)
    assert worst_J < 1e-12 and worst_s < 1e-12, (worst_J, worst_s)
    # the shared rows really are shared, and A is S4D-Real
    assert np.array_equal(a[r"U_{\Delta}"], np.repeat(W_dt, N, axis=0))
    assert np.array_equal(a["U_{B}"], np.tile(W_B, (d, 1)))
    assert np.allclose(A, -np.arange(1, N + 1)[None, :], rtol=1e-15)


# --------------------------------------------------------------------------------------------
# the S6 ↔ gate identity (Gu & Dao 2023): N = 1, A = −1, B = 1, Δ = softplus(z)
# --------------------------------------------------------------------------------------------
def test_s6_with_one_state_is_a_sigmoid_gate_mpmath():
    mpmath.mp.dps = 50
    for z in ("-30", "-3.5", "-0.25", "0", "0.7", "4", "35"):
        zz = mpmath.mpf(z)
        delta = mpmath.log(1 + mpmath.exp(zz))
        sig = 1 / (1 + mpmath.exp(-zz))
        assert abs(mpmath.exp(-delta) - (1 - sig)) < mpmath.mpf(10) ** -45
        # ZOH: (ΔA)^{-1}(exp(ΔA) − 1) Δ B with A = −1, B = 1
        assert abs((mpmath.exp(-delta) - 1) / (-delta) * delta - sig) < mpmath.mpf(10) ** -45


def test_gradflow_s6_reduces_to_the_gate_numerically():
    """gradflow's mamba cells at A_log = 0, U_B x = 1, U_u x = x_1: ā = 1 − σ(z), ZOH B̄ = σ(z)."""
    z = np.linspace(-12, 12, 9)
    x = np.stack([z, np.ones_like(z)], axis=1)[:, None, :]  # (T, 1, 2): x = (z, 1)
    base = {r"A_{\log}": np.zeros(1), r"U_{\Delta}": np.array([[1.0, 0.0]]), r"b_{\Delta}": np.zeros(1),
            "U_{B}": np.array([[0.0, 1.0]]), "U_{u}": np.array([[0.0, 1.0]])}
    sig = np.array([float(1 / (1 + mpmath.exp(-v))) for v in z])
    for name in ("mamba-zoh", "mamba-euler"):
        net = gf.Network(gf.Weights(CELLS[name], 1, 2, base))
        traj = net.unroll(x)
        a = np.array([np.asarray(net.step_jacobian(traj, t))[0, 0, 0] for t in range(1, len(z) + 1)])
        assert np.abs(a - (1 - sig)).max() < 2e-16
    # ZOH from h = 0: h_1 = B̄ u = σ(z)
    net = gf.Network(gf.Weights(CELLS["mamba-zoh"], 1, 2, base))
    h1 = [float(np.asarray(net.unroll(x[t:t + 1]).states[1])[0, 0]) for t in range(len(z))]
    assert np.abs(np.array(h1) - sig).max() < 1e-15


# --------------------------------------------------------------------------------------------
# O(T·n) path vs the dense engine; S4D's closed form
# --------------------------------------------------------------------------------------------
def test_structure():
    assert all(is_diagonal(CELLS[c]) for c in ("mamba-zoh", "mamba-euler", "rg-lru"))
    assert not is_diagonal(CELLS["s4d"])  # 2 × 2 rotation blocks, as the LRU


@pytest.mark.parametrize("name", ["mamba-zoh", "mamba-euler", "rg-lru"])
def test_diagonal_path_equals_dense_svd_sweep(name):
    w = gf.init_weights(name, 6, 3, seed=1)
    w = gf.mamba_init(w, 3, dt_min=0.05, dt_max=0.5) if name.startswith("mamba") else gf.rglru_init(w)
    net = gf.Network(w)
    x = gf.random_inputs(20, 3, batch=2, seed=1)
    fast = gf.gradient_flow(net, x)
    dense = gf.gradient_flow(net, x, structure="dense", spectral="svd")
    for key in fast.full.FIELDS:
        a, b = np.asarray(fast.full[key]), np.asarray(dense.full[key])
        assert np.all(np.isfinite(b)) and np.abs(a - b).max() < 1e-11, key
    assert np.abs(fast.lyapunov - dense.lyapunov).max() < 1e-11
    # the product is exp(A Σ Δ): here the torch-free closed form of the spectral norm
    if name.startswith("mamba"):
        arr = {k: np.asarray(v) for k, v in w.arrays.items()}
        z = x[:, 0] @ arr[r"U_{\Delta}"].T + arr[r"b_{\Delta}"]
        delta = np.logaddexp(0.0, z)                                      # (T, n)
        A = -np.exp(arr[r"A_{\log}"])
        suffix = np.cumsum(delta[::-1], axis=0)[::-1]                     # Σ_{s ≥ k+1} Δ_s
        want = np.max(A * suffix, axis=1) / math.log(10)
        assert np.abs(np.asarray(fast.full["log10_norm_2"])[0] - want).max() < 1e-11


def test_s4d_products_are_powers_of_the_modulus():
    """S4D-Lin: every mode has |λ| = e^{−Δ/2}, so ‖P_k‖₂ = max_j e^{−Δ_j (T−k)/2} (dense engine)."""
    d, N, T = 2, 3, 15
    w = gf.s4d_init(gf.init_weights("s4d", d * N, d), d, seed=4)
    dt = np.exp(np.asarray(w.arrays[r"\log\Delta"]))
    flow = gf.gradient_flow(gf.Network(w), gf.random_inputs(T, d, seed=2), spectral="svd")
    lags = T - np.arange(T)
    want = np.max(-dt[None, :] * lags[:, None] / 2, axis=1) / math.log(10)
    assert np.abs(np.asarray(flow.full.mean()["log10_norm_2"]) - want).max() < 1e-12


# --------------------------------------------------------------------------------------------
# HiPPO-LegS (Gu et al. 2020): the norm bound, and that it is not an equality
# --------------------------------------------------------------------------------------------
def hippo_legs(N: int) -> np.ndarray:
    """A_nk = −√(2n+1)√(2k+1) (n > k), −(n+1) (n = k), 0 (n < k)."""
    q = np.sqrt(2 * np.arange(N) + 1.0)
    return -np.tril(np.outer(q, q), -1) - np.diag(np.arange(N) + 1.0)


@pytest.mark.parametrize("N", [2, 4, 16])
def test_hippo_legs_norm_bound(N):
    A = hippo_legs(N)
    P = np.sqrt(np.arange(N) + 0.5)
    assert np.abs((A + A.T) / 2 - (-0.5 * np.eye(N) - np.outer(P, P))).max() < 1e-13
    assert np.allclose(np.sort(np.linalg.eigvals(A).real), -np.arange(N, 0, -1.0))
    norms = {t: np.linalg.norm(scipy.linalg.expm(t * A), 2) for t in (1e-3, 0.1, 1, 3, 10, 40)}
    for t, v in norms.items():  # ‖e^{tA}‖₂ ≤ e^{t μ₂(A)}, μ₂(A) = λ_max((A + Aᵀ)/2) = −½
        assert v <= math.exp(-t / 2) * (1 + 1e-12), t
    assert abs(math.log(norms[1e-3]) / 1e-3 + 0.5) < 1e-3       # initial rate −½ …
    assert norms[10] < 0.5 * math.exp(-5)                         # … NOT e^{−t/2} at all t:
    assert math.log(norms[40]) / 40 < -0.8                        # the rate tends to −1 (eigenvalues)


def test_hippo_legs_one_state_decays_at_rate_one():
    assert abs(np.linalg.norm(scipy.linalg.expm(2.0 * hippo_legs(1)), 2) - math.exp(-2.0)) < 1e-15


# --------------------------------------------------------------------------------------------
# initialisations and bad input
# --------------------------------------------------------------------------------------------
def test_inits_as_the_reference_code_draws_them():
    w = gf.mamba_init(gf.init_weights("mamba-zoh", 64 * 4, 64), 64, seed=0)
    dt = np.logaddexp(0.0, np.asarray(w.arrays[r"b_{\Delta}"]))   # Δ at zero input
    assert dt.min() >= 1e-3 * (1 - 1e-12) and dt.max() <= 0.1 * (1 + 1e-12)
    assert np.log(dt).std() > 0.5  # log-uniform over two decades, not a point
    r = gf.rglru_init(gf.init_weights("rg-lru", 200, 2), seed=0)
    a = 1 / (1 + np.exp(-np.asarray(r.arrays[r"\Lambda"])))
    assert a.min() >= 0.9 and a.max() <= 0.999
    s = gf.s4d_init(gf.init_weights("s4d", 4, 2), 2, variant="real")
    assert np.allclose(np.exp(np.asarray(s.arrays[r"A_{re,\log}"])), [1, 2, 1, 2])


@pytest.mark.parametrize("call", [
    lambda: gf.mamba_init(gf.init_weights("mamba-zoh", 6, 3), 4),          # 6 is not 4·N
    lambda: gf.mamba_init(gf.init_weights("mamba-zoh", 6, 2), 3),          # input ≠ channels
    lambda: gf.mamba_init(gf.init_weights("lstm", 6, 3), 3),
    lambda: gf.mamba_init(gf.init_weights("mamba-zoh", 6, 3), 3, dt_min=0.2, dt_max=0.1),
    lambda: gf.rglru_init(gf.init_weights("rg-lru", 4, 2), min_rad=0.99, max_rad=0.9),
    lambda: gf.s4d_init(gf.init_weights("s4d", 4, 2), 2, variant="inv"),
])
def test_bad_init_arguments_raise_one_gradflow_error(call):
    with pytest.raises(gf.GradflowError):
        call()


# --------------------------------------------------------------------------------------------
# parameter counts: the per-unit form, as torch modules (nn.Linear: one bias per projection)
# --------------------------------------------------------------------------------------------
def _per_unit_module(name: str, n_: int, m_: int) -> torch.nn.Module:
    mod = torch.nn.Module()
    if name.startswith("mamba"):   # A_log (n), Δ projection with bias, B and u projections without
        mod.A_log = torch.nn.Parameter(torch.zeros(n_))
        mod.dt, mod.B = torch.nn.Linear(m_, n_), torch.nn.Linear(m_, n_, bias=False)
        mod.u = torch.nn.Linear(m_, n_, bias=False)
    elif name == "s4d":            # log Δ, log(−Re A), Im A per mode; complex B (n × m, two real parts)
        mod.vec = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(n_)) for _ in range(3)])
        mod.B = torch.nn.Parameter(torch.zeros(n_, m_, dtype=torch.complex128))
    elif name == "rg-lru":         # Λ; gate projections a, x with bias; the unit's input u
        mod.Lam = torch.nn.Parameter(torch.zeros(n_))
        mod.a, mod.x = torch.nn.Linear(m_, n_), torch.nn.Linear(m_, n_)
        mod.u = torch.nn.Linear(m_, n_, bias=False)
    return mod


@pytest.mark.parametrize("name", SSM)
def test_parameter_counts_of_the_per_unit_form(name):
    n_, m_ = 12, 5
    want = sum(p.numel() * (2 if p.is_complex() else 1) for p in _per_unit_module(name, n_, m_).parameters())
    assert gf.count_params(name, n_, m_).total == want
