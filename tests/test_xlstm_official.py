"""xLSTM's cells against the official package's own step functions (issue 11).

The oracle is the ``xlstm`` package of NX-AI (PyPI ``xlstm==2.0.6``, pure Python on torch; its
CUDA/Triton kernels are not used): its code computes the reference numbers, torch autograd
through that code the reference Jacobians, all in float64 (the vanilla sLSTM cell and the mLSTM
step accept float64 tensors; nothing is compared in float32).

* sLSTM: ``xlstm.blocks.slstm.cell.sLSTMCell`` with ``backend="vanilla"`` (its
  ``slstm_forward`` loop and ``slstm_forward_pointwise`` step), called as a module on a sequence.
* mLSTM: ``xlstm.blocks.mlstm.backends.recurrent_step_stabilized_simple``, the recurrent step the
  official mLSTM cell uses for generation.

gradflow's side is its compiled kernels: ``Network.unroll`` and ``Network.step_jacobian`` for the
sLSTM cells, and, because the numeric engine refuses the mLSTM (a state of size n²), the compiled
forward step and derived Jacobian blocks of ``kernels(cell)`` evaluated here at one point.

**Parameter mapping, sLSTM** (hidden size N, one head unless stated; gate order i, f, z, o):

* official input ``Wx`` (the layer's input projections; shape (B, S, 4N), gate-major) ← U_g x_t:
  entry g·N + j is (U_g x_t)_j;
* official bias (external layout (heads, 4, d_h)) ← b_g;
* official recurrent kernel (external layout (heads, d_h, 4, d_h), entry [k, a, g, b]) ←
  W_g[k·d_h + b, k·d_h + a]: the official R multiplies h from the left of its transposed layout,
  so ours is its transpose; with several heads ours is block-diagonal (off-head blocks zero);
* official states (y, c, n, m) = our (h, c, n, m) of ``slstm-stabilised``; the pre-activations
  ĩ, f̃, z̃, õ of the official pointwise step are our U_g x_t + W_g h_{t−1} + b_g.
* ``slstm`` (unstabilised c̃, ñ) and ``slstm-normalised`` (u = c̃/ñ, ñ) are mapped through the
  coordinate change c = c̃ e^{−μ}, n = ñ e^{−μ} with any μ as the official m_{t−1} (here 0.7),
  and back with the official m_t: c̃_t = c_t e^{m_t}, ñ_t = n_t e^{m_t}, u_t = c_t/n_t.

**Parameter mapping, mLSTM** (head dimension d = n, one head):

* official ``q`` ← U_q x_t + b_q (our q); official ``k`` ← U_k x_t + b_k: the official step divides
  by √d itself, while our k includes the 1/√n; official ``v`` ← U_v x_t + b_v;
* official ``igate_preact`` ← ĩ_t = w_i x_t + b_i, ``fgate_preact`` ← f̃_t = w_f x_t + b_f;
* official ``c_state`` (d × d) = k vᵀ accumulated, the transpose of our C = v kᵀ: our column-stacked
  vec C (entry a + d·b is C[a, b]) is the official C flattened row by row;
  official ``n_state`` = our n, ``m_state`` = our m;
* the official cell has no σ output gate (the layer multiplies by SiLU(z)): our h_t = o_t ⊙ h̃_t with
  o_t = σ(U_o x_t + b_o) and h̃_t the official hidden state;
* the official step adds ``eps`` (1e-6) to max(|qᵀn|, e^{−m}); our cell has no eps: the test passes
  ``eps=0``; ``mlstm`` (unstabilised) is mapped like the sLSTM: C = C̃ e^{−μ}, n = ñ e^{−μ}.

Every case states which branch of each max it is at, and a wrong mapping is shown to fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import need_module

import gradflow as gf
from gradflow._numeric.network import kernels
from gradflow._symbolic.cell import m as M_SYM
from gradflow._symbolic.cell import n as N_SYM

xlstm = need_module("xlstm", "pip install xlstm==2.0.6", "GRADFLOW_REQUIRE_XLSTM")
from xlstm.blocks.mlstm.backends import recurrent_step_stabilized_simple  # noqa: E402
from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig  # noqa: E402

GATES = "ifzo"
M = 2
MU = 0.7  # the official m_{t−1} at which the unstabilised coordinates are fed in


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


# --------------------------------------------------------------------------------------------
# sLSTM: the official vanilla cell
# --------------------------------------------------------------------------------------------
def official_slstm(arrays: dict, N: int, heads: int = 1, transpose_R: bool = True):
    """The official ``sLSTMCell`` (vanilla backend, float64) carrying our weights W_g, b_g.

    ``transpose_R=False`` is a wrong mapping (W_g copied without the transpose), for the test
    that shows the comparison can fail.
    """
    dh = N // heads
    cell = sLSTMCell(sLSTMCellConfig(hidden_size=N, num_heads=heads, backend="vanilla",
                                     function="slstm", dtype="float32")).double()
    R = torch.zeros(heads, dh, 4, dh, dtype=torch.float64)
    b = torch.zeros(heads, 4, dh, dtype=torch.float64)
    for g, gate in enumerate(GATES):
        W = np.asarray(arrays[f"W_{{{gate}}}"])
        for k in range(heads):
            block = W[k * dh:(k + 1) * dh, k * dh:(k + 1) * dh]
            R[k, :, g, :] = _t(block.T if transpose_R else block)  # R[k, a, g, b] = W_g[b, a]
            b[k, g, :] = _t(np.asarray(arrays[f"b_{{{gate}}}"])[k * dh:(k + 1) * dh])
    with torch.no_grad():
        cell._recurrent_kernel_.copy_(cell._recurrent_kernel_ext2int(R))
        cell._bias_.copy_(cell._bias_ext2int(b))
    return cell


def _Wx(arrays: dict, x: np.ndarray) -> torch.Tensor:
    """The official cell's input (S, 4N) for inputs x (S, m): U_g x_t, gate-major."""
    return _t(np.concatenate([x @ np.asarray(arrays[f"U_{{{g}}}"]).T for g in GATES], axis=-1))


def official_slstm_step(cell, Wx_t: torch.Tensor, N: int):
    """s ↦ s_t, s = (y, c, n, m) stacked (4N,), one step of the official cell (a sequence of one)."""

    def F(s):
        _, last = cell(Wx_t.reshape(1, 1, 4 * N), s.reshape(4, 1, N))
        return last.reshape(-1)

    return F


def _slstm_point(N: int, seed: int, m_prev: float, heads: int = 1):
    """Weights (gradflow's init for slstm-stabilised, scaled up), x_t, and s_{t−1} = (h, c, n, m)."""
    rng = np.random.default_rng(seed)
    arrays = {k: np.asarray(v) * 1.5 for k, v in gf.network("slstm-stabilised", N, M, seed=seed).weights.arrays.items()}
    if heads > 1:  # our one-head cell with block-diagonal W_g is the official multi-head cell
        dh = N // heads
        mask = np.kron(np.eye(heads), np.ones((dh, dh)))
        arrays.update({f"W_{{{g}}}": arrays[f"W_{{{g}}}"] * mask for g in GATES})
    x = rng.standard_normal(M)
    s0 = np.concatenate([rng.standard_normal(N) * 0.5, rng.standard_normal(N) * 0.5,
                         np.abs(rng.standard_normal(N)) + 0.5, np.full(N, m_prev)])
    return arrays, x, s0


def _ours(name: str, arrays: dict, N: int, x: np.ndarray, s0: np.ndarray):
    """gradflow's s_t and J_t from its compiled kernels (Network.unroll, Network.step_jacobian)."""
    net = gf.Network(gf.Weights(gf.get_cell(name), N, M, arrays))
    S = len(net.cell.states)
    traj = net.unroll(x.reshape(1, 1, M), initial={s: s0[i * N:(i + 1) * N] for i, s in enumerate(net.cell.states)})
    assert S * N == s0.size
    return np.asarray(traj.states[1])[0], np.asarray(net.step_jacobian(traj, 1))[0]


def _branch(arrays, x, s0, N) -> str:
    """Which side of m_t = max(log σ(f̃) + m_{t−1}, ĩ) every unit is on (from the equations here)."""
    h, m_prev = s0[:N], s0[3 * N:]
    pre = {g: arrays[f"W_{{{g}}}"] @ h + arrays[f"U_{{{g}}}"] @ x + arrays[f"b_{{{g}}}"] for g in "if"}
    forget = -np.logaddexp(0.0, -pre["f"]) + m_prev > pre["i"]
    return "forget" if forget.all() else "input" if (~forget).all() else "mixed"


@pytest.mark.parametrize("N", [1, 2, 3])
@pytest.mark.parametrize("branch, m_prev", [("forget", 4.0), ("input", -4.0)])
def test_slstm_stabilised_step_and_jacobian_equal_the_official_cell(N, branch, m_prev):
    arrays, x, s0 = _slstm_point(N, 10 * N + (m_prev > 0), m_prev)
    assert _branch(arrays, x, s0, N) == branch
    F = official_slstm_step(official_slstm(arrays, N), _Wx(arrays, x[None])[0], N)
    s_ref = F(_t(s0)).detach().numpy()
    J_ref = torch.autograd.functional.jacobian(F, _t(s0)).numpy()
    s_new, J = _ours("slstm-stabilised", arrays, N, x, s0)
    np.testing.assert_allclose(s_new, s_ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(J, J_ref, rtol=1e-12, atol=1e-14)
    # the m-column: ∂m_t/∂m_{t−1} is 1 on the forget branch, 0 on the input branch
    np.testing.assert_array_equal(np.diag(J_ref[3 * N:, 3 * N:]), np.full(N, 1.0 if branch == "forget" else 0.0))


def test_slstm_two_heads_is_our_cell_with_block_diagonal_recurrent_weights():
    N, heads = 4, 2
    arrays, x, s0 = _slstm_point(N, 5, 1.0, heads=heads)
    F = official_slstm_step(official_slstm(arrays, N, heads), _Wx(arrays, x[None])[0], N)
    s_new, J = _ours("slstm-stabilised", arrays, N, x, s0)
    np.testing.assert_allclose(s_new, F(_t(s0)).detach().numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(J, torch.autograd.functional.jacobian(F, _t(s0)).numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["slstm", "slstm-normalised"])
@pytest.mark.parametrize("N", [2, 3])
def test_unstabilised_and_normalised_slstm_equal_the_official_cell_in_their_coordinates(name, N):
    """(h, c̃, ñ) or (h, u, ñ) → the official (y, c, n, m) at m = μ → one official step → back."""
    arrays, x, s0 = _slstm_point(N, 40 + N, 0.0)
    h, a, nt = s0[:N], s0[N:2 * N], s0[2 * N:3 * N]
    ours0 = np.concatenate([h, a, nt])  # c̃ = a (slstm) or u = a (slstm-normalised)
    step = official_slstm_step(official_slstm(arrays, N), _Wx(arrays, x[None])[0], N)
    e = float(np.exp(-MU))

    def F(s):
        h, a, nt = s[:N], s[N:2 * N], s[2 * N:]
        c = a * e if name == "slstm" else a * nt * e
        y2, c2, n2, m2 = step(torch.cat([h, c, nt * e, torch.full((N,), MU, dtype=torch.float64)])).split(N)
        return torch.cat([y2, c2 * torch.exp(m2) if name == "slstm" else c2 / n2, n2 * torch.exp(m2)])

    s_new, J = _ours(name, arrays, N, x, ours0)
    np.testing.assert_allclose(s_new, F(_t(ours0)).detach().numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(J, torch.autograd.functional.jacobian(F, _t(ours0)).numpy(), rtol=1e-12, atol=1e-13)


def test_slstm_trajectory_from_zero_state_has_the_official_h_and_rescaled_c_n():
    """Eight steps from the zero state through the official ``slstm_forward`` loop.

    The official first step, where n_{t−1} = 0, sets m_1 = ĩ_1 outright (its ``torch.all(n == 0)``
    branch); ours takes m_1 = max(log σ(f̃_1) + m_0, ĩ_1). Where the two differ, c and n differ by
    the factor e^{m − m_official} (until a step where ĩ_t wins in both) while h and c/n agree.
    """
    N, T = 3, 8
    arrays, _, _ = _slstm_point(N, 77, 0.0)
    arrays["b_{i}"] = arrays["b_{i}"] - 4.0  # ĩ_1 < log σ(f̃_1): the two first steps pick different m_1
    x = np.random.default_rng(77).standard_normal((T, M)) * 2.0
    cell = official_slstm(arrays, N)
    out, _ = cell(_Wx(arrays, x)[None], torch.zeros(4, 1, N, dtype=torch.float64))
    net = gf.Network(gf.Weights(gf.get_cell("slstm-stabilised"), N, M, arrays))
    traj = net.unroll(x[:, None, :])
    ours = np.array([np.asarray(s)[0] for s in traj.states[1:]])  # (T, 4N)
    ref_h = out.detach().numpy().reshape(T, N)  # output_shape BNSH, one batch and head
    np.testing.assert_allclose(ours[:, :N], ref_h, rtol=1e-13, atol=1e-15)
    # the official c, n, m over the sequence, step by step through the same module
    s, gap = torch.zeros(4 * N, dtype=torch.float64), 0.0
    for t in range(T):
        s = official_slstm_step(cell, _Wx(arrays, x[t:t + 1])[0], N)(s)
        y, c, n, m = s.detach().numpy().reshape(4, N)
        np.testing.assert_allclose(ours[t, :N], y, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(ours[t, N:2 * N] / ours[t, 2 * N:3 * N], c / n, rtol=1e-12)
        scale = np.exp(m - ours[t, 3 * N:])
        gap = max(gap, float(np.abs(m - ours[t, 3 * N:]).max()))
        np.testing.assert_allclose(ours[t, N:3 * N], np.concatenate([c, n]) * np.tile(scale, 2), rtol=1e-12)
    assert gap > 0.5  # the stabilisers did differ (the case is not vacuous)


def test_the_slstm_comparison_can_fail():
    """W_g copied into the official kernel without the transpose is caught, state and Jacobian."""
    N = 3
    arrays, x, s0 = _slstm_point(N, 8, 1.0)
    F = official_slstm_step(official_slstm(arrays, N, transpose_R=False), _Wx(arrays, x[None])[0], N)
    s_new, J = _ours("slstm-stabilised", arrays, N, x, s0)
    assert np.abs(s_new - F(_t(s0)).detach().numpy()).max() > 1e-3
    assert np.abs(J - torch.autograd.functional.jacobian(F, _t(s0)).numpy()).max() > 1e-3


# --------------------------------------------------------------------------------------------
# mLSTM: the official recurrent step
# --------------------------------------------------------------------------------------------
def _mlstm_params(d: int, seed: int) -> dict[str, np.ndarray]:
    """Random weights for our mLSTM cell (matrices (rows, cols); biases as 1-D arrays)."""
    rng = np.random.default_rng(seed)
    out = {}
    for p in gf.get_cell("mlstm").recorded.params:
        rows, cols = p.symbol.shape
        shape = (d if rows == N_SYM else 1, M if cols == M_SYM else 1)
        a = rng.standard_normal(shape) * 0.8
        out[p.symbol.name] = a.reshape(-1) if p.kind == "b" else a
    return out


def ours_mlstm(name: str, P: dict, d: int, x: np.ndarray, prev: dict[str, np.ndarray]):
    """gradflow's s_t and J_t of an mLSTM cell from ``kernels(cell)``: the compiled forward step
    and derived Jacobian blocks, at one point (batch of one), assembled by state sizes."""
    cell = gf.get_cell(name)
    K = kernels(cell)
    sizes = [d * d if s == "C" else 1 if s == "m" else d for s in cell.states]
    env: dict = {N_SYM: d, M_SYM: M, "xp": np, "dtype": np.float64, K.x: x[None, :]}
    env.update({p.symbol: P[p.symbol.name] for p in cell.recorded.params})
    env.update({sym: prev[s][None, :] for sym, s in zip(K.prev, cell.states, strict=True)})
    for sym, fn in K.forward:
        env[sym] = fn(env)
    s_new = np.concatenate([np.broadcast_to(env[sym], (1, k))[0] for sym, k in zip(K.new, sizes, strict=True)])
    off = np.cumsum([0, *sizes])
    J = np.zeros((off[-1], off[-1]))
    for blk in K.blocks:
        rows, cols = slice(off[blk.a], off[blk.a + 1]), slice(off[blk.b], off[blk.b + 1])
        v = np.asarray(blk.fn(env))
        J[rows, cols] = v[0] if blk.kind == "dense" else np.diag(np.broadcast_to(v, (1, sizes[blk.a]))[0])
    return s_new, J


def official_mlstm_step(P: dict, d: int, x: np.ndarray, row_major: bool = True):
    """(h, vec C, n, m) ↦ (o ⊙ h̃, vec C_t, n_t, m_t) through ``recurrent_step_stabilized_simple``.

    ``row_major=False`` is a wrong mapping (our vec C read as the official C column by column).
    """
    T = {k: _t(v) for k, v in P.items()}
    X = _t(x)
    q, k, v = (T[f"U_{{{g}}}"] @ X + T[f"b_{{{g}}}"] for g in "qkv")
    i_pre, f_pre = (T[f"w_{{{g}}}"] @ X + T[f"b_{{{g}}}"] for g in "if")
    o = torch.sigmoid(T["U_{o}"] @ X + T["b_{o}"])

    def F(s):
        vecC, n, m = s[d:d + d * d], s[d + d * d:2 * d + d * d], s[2 * d + d * d:]
        C = vecC.reshape(d, d) if row_major else vecC.reshape(d, d).T
        h, (C2, n2, m2) = recurrent_step_stabilized_simple(
            C.reshape(1, 1, d, d), n.reshape(1, 1, d, 1), m.reshape(1, 1, 1, 1),
            q.reshape(1, 1, 1, d).clone(), k.reshape(1, 1, 1, d).clone(), v.reshape(1, 1, 1, d).clone(),
            i_pre.reshape(1, 1, 1, 1), f_pre.reshape(1, 1, 1, 1), eps=0.0)
        C2 = C2.reshape(d, d) if row_major else C2.reshape(d, d).T
        return torch.cat([o * h.reshape(-1), C2.reshape(-1), n2.reshape(-1), m2.reshape(-1)])

    return F


def _mlstm_regime(P, d, x, prev) -> tuple[str, str]:
    """(max branch of m_t, max branch of the denominator) from the equations written here."""
    q = P["U_{q}"] @ x + P["b_{q}"]
    k = (P["U_{k}"] @ x + P["b_{k}"]) / np.sqrt(d)
    i_pre, f_pre = (float((P[f"w_{{{g}}}"] @ x + P[f"b_{{{g}}}"])[0]) for g in "if")
    log_f = -np.logaddexp(0.0, -f_pre)
    m_prev = float(prev["m"][0])
    m = max(log_f + m_prev, i_pre)
    n = np.exp(log_f + m_prev - m) * prev["n"] + np.exp(i_pre - m) * k
    return ("forget" if log_f + m_prev > i_pre else "input",
            "|q.n|" if abs(q @ n) > np.exp(-m) else "exp(-m)")


def _mlstm_point(d: int, seed: int, m_prev: float, n_scale: float, i_shift: float = 0.0):
    """Weights, x_t, s_{t−1}; ``i_shift`` is added to the input gate's bias b_i."""
    rng = np.random.default_rng(seed)
    P = _mlstm_params(d, seed)
    P["b_{i}"] = P["b_{i}"] + i_shift
    x = rng.standard_normal(M)
    prev = {"h": rng.standard_normal(d), "C": rng.standard_normal(d * d), "n": rng.standard_normal(d) * n_scale,
            "m": np.array([m_prev])}
    return P, x, prev


#: (branch of m_t, branch of the denominator, m_{t−1}, scale of n_{t−1}, shift of b_i): the floor e^{−m_t}
#: wins where e^{ĩ}|qᵀk| < 1 in unstabilised terms, hence the lowered input gate
REGIMES = [("forget", "|q.n|", 3.0, 5.0, 0.0), ("forget", "exp(-m)", 3.0, 1e-3, -4.0),
           ("input", "|q.n|", -3.0, 500.0, 0.0), ("input", "exp(-m)", -5.5, 1e-3, -4.0)]


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("regime", REGIMES, ids=lambda r: f"{r[0]}-{r[1]}")
def test_mlstm_stabilised_step_and_jacobian_equal_the_official_step(d, regime):
    m_branch, den_branch, m_prev, n_scale, i_shift = regime
    P, x, prev = _mlstm_point(d, 100 * d + REGIMES.index(regime), m_prev, n_scale, i_shift)
    assert _mlstm_regime(P, d, x, prev) == (m_branch, den_branch)
    s0 = np.concatenate([prev[s] for s in ("h", "C", "n", "m")])
    F = official_mlstm_step(P, d, x)
    s_new, J = ours_mlstm("mlstm-stabilised", P, d, x, prev)
    np.testing.assert_allclose(s_new, F(_t(s0)).detach().numpy(), rtol=1e-13, atol=1e-15)
    J_ref = torch.autograd.functional.jacobian(F, _t(s0)).numpy()
    np.testing.assert_allclose(J, J_ref, rtol=1e-12, atol=1e-14)
    assert np.abs(J_ref[:d, d:]).max() > 1e-3  # the read-out rows are not zero (the case tests them)


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("n_scale", [5.0, 1e-3])  # max(|ñᵀq|, 1) = |ñᵀq| or 1
def test_unstabilised_mlstm_equals_the_official_step_in_its_coordinates(d, n_scale):
    P, x, prev = _mlstm_point(d, 300 + d, 0.0, n_scale)
    F_off = official_mlstm_step(P, d, x)
    e = float(np.exp(-MU))

    def F(s):  # (h, vec C̃, ñ) → the official state at m = μ → one step → (h, C̃_t, ñ_t)
        out = F_off(torch.cat([s[:d], s[d:] * e, torch.tensor([MU], dtype=torch.float64)]))
        return torch.cat([out[:d], out[d:-1] * torch.exp(out[-1])])

    s0 = np.concatenate([prev[s] for s in ("h", "C", "n")])
    s_new, J = ours_mlstm("mlstm", P, d, x, prev)
    q = P["U_{q}"] @ x + P["b_{q}"]
    assert (abs(q @ s_new[d + d * d:]) > 1) == (n_scale > 1)  # the branch of max(|ñ_tᵀq|, 1) named
    np.testing.assert_allclose(s_new, F(_t(s0)).detach().numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(J, torch.autograd.functional.jacobian(F, _t(s0)).numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("regime", [REGIMES[0], REGIMES[1]], ids=lambda r: f"{r[0]}-{r[1]}")
def test_the_official_eps_scales_h_by_nu_over_nu_plus_eps(regime):
    """With its default ε = 1e-6 the official h̃ is ours times ν_t/(ν_t + ε), ν_t = max(|qᵀn_t|, e^{−m_t})
    (the only difference between the two steps; the other tests pass ε = 0)."""
    d = 3
    P, x, prev = _mlstm_point(d, 500, *regime[2:])
    assert _mlstm_regime(P, d, x, prev) == regime[:2]
    s_new, _ = ours_mlstm("mlstm-stabilised", P, d, x, prev)
    q = P["U_{q}"] @ x + P["b_{q}"]
    nu = max(abs(q @ s_new[d + d * d:2 * d + d * d]), np.exp(-s_new[-1]))
    X = _t(x)
    q_, k_, v_ = ((_t(P[f"U_{{{g}}}"]) @ X + _t(P[f"b_{{{g}}}"])).reshape(1, 1, 1, d) for g in "qkv")
    i_, f_ = ((_t(P[f"w_{{{g}}}"]) @ X + _t(P[f"b_{{{g}}}"])).reshape(1, 1, 1, 1) for g in "if")
    h, _ = recurrent_step_stabilized_simple(_t(prev["C"]).reshape(1, 1, d, d), _t(prev["n"]).reshape(1, 1, d, 1),
                                            _t(prev["m"]).reshape(1, 1, 1, 1), q_, k_, v_, i_, f_)
    o = 1 / (1 + np.exp(-(P["U_{o}"] @ x + P["b_{o}"])))
    np.testing.assert_allclose(o * h.numpy().reshape(-1), s_new[:d] * nu / (nu + 1e-6), rtol=1e-13)
    assert np.abs(o * h.numpy().reshape(-1) - s_new[:d]).max() > 1e-9 * np.abs(s_new[:d]).max()


def test_mlstm_trajectory_equals_repeated_official_steps():
    """Six steps from C = 0, n = 0, m = 0: our compiled step fed its own states, the official one its own."""
    d, T = 3, 6
    P = _mlstm_params(d, 9)
    xs = np.random.default_rng(9).standard_normal((T, M)) * 1.5
    s = np.zeros(2 * d + d * d + 1)
    ref = torch.zeros(2 * d + d * d + 1, dtype=torch.float64)
    for t in range(T):
        prev = dict(zip(("h", "C", "n", "m"), np.split(s, np.cumsum([d, d * d, d])), strict=True))
        s, _ = ours_mlstm("mlstm-stabilised", P, d, xs[t], prev)
        ref = official_mlstm_step(P, d, xs[t])(ref)
        np.testing.assert_allclose(s, ref.numpy(), rtol=1e-12, atol=1e-15)


def test_the_mlstm_comparison_can_fail():
    """Our vec C read as the official C column by column (C not transposed) is caught."""
    d = 3
    P, x, prev = _mlstm_point(d, 11, 3.0, 5.0)
    s0 = np.concatenate([prev[s] for s in ("h", "C", "n", "m")])
    F = official_mlstm_step(P, d, x, row_major=False)
    s_new, J = ours_mlstm("mlstm-stabilised", P, d, x, prev)
    assert np.abs(s_new - F(_t(s0)).detach().numpy()).max() > 1e-3
    # the Jacobian's read-out rows ∂h_t/∂vec C_{t−1} differ too
    assert np.abs(J - torch.autograd.functional.jacobian(F, _t(s0)).numpy()).max() > 1e-3
