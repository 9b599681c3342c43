"""xLSTM's mLSTM (matrix memory, one head): the derived Jacobian against independent oracles.

Oracles, all written here from the paper's equations (Beck et al. 2024, eqs. of the mLSTM cell)
and never from gradflow's recurrence:

* SymPy: the step with C a d × d matrix of scalar symbols, C_t = f C_{t−1} + i v kᵀ,
  n_t = f n_{t−1} + i k, h_t = o ⊙ C_t q / max(|n_tᵀ q|, 1), differentiated element-wise by
  ``Matrix.jacobian`` w.r.t. (vec C_{t−1}, n_{t−1}) (column-stacked vec), at d ∈ {1, 2};
* PyTorch autograd of the same step written with ``torch.outer`` (float64), at d ∈ {2, 3};
* the closed form ‖∂(C_T, n_T)/∂(C_k, n_k)‖₂ = ∏_{j=k+1}^{T} f_j, the product by mpmath;
* the parameter count of the same cell built from ``torch.nn.Linear`` layers.

gradflow's side is its derived blocks (:meth:`Cell.jacobian`), evaluated at numbers by the tests'
own evaluator (``_oracle.explicit``, plain sums of products and textbook scalar functions).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch
from _oracle import explicit

import gradflow as gf
from gradflow import m, n
from gradflow._cli import main
from gradflow._symbolic.nodes import Diag

CELL = gf.get_cell("mlstm")
PARAMS = ("U_{q}", "b_{q}", "U_{k}", "b_{k}", "U_{v}", "b_{v}", "U_{o}", "b_{o}", "w_{i}", "b_{i}", "w_{f}", "b_{f}")


def _numbers(d: int, M: int, seed: int, big: bool) -> dict[str, np.ndarray]:
    """Parameters, x_t, C_{t−1}, n_{t−1} (float64); ``big``: |n_tᵀ q_t| > 1 (the max is |nᵀq|)."""
    rng = np.random.default_rng(seed)
    shapes = {"U_{q}": (d, M), "b_{q}": (d, 1), "U_{k}": (d, M), "b_{k}": (d, 1), "U_{v}": (d, M),
              "b_{v}": (d, 1), "U_{o}": (d, M), "b_{o}": (d, 1), "w_{i}": (1, M), "b_{i}": (1, 1),
              "w_{f}": (1, M), "b_{f}": (1, 1), "x": (M, 1), "C": (d, d), "n": (d, 1)}
    out = {k: rng.standard_normal(s) * 0.7 for k, s in shapes.items()}
    scale = 4.0 if big else 0.05
    out["n"] = out["n"] * scale
    out["b_{q}"] = out["b_{q}"] + (np.sign(out["n"]) * 2.0 if big else 0.0)
    return out


def _paper_step(P, C, nv, x, lib):
    """The paper's mLSTM step; ``lib`` is sympy or torch (C: d × d, vectors: columns / 1-D)."""
    if lib is sp:
        d = C.shape[0]
        q = P["U_{q}"] * x + P["b_{q}"]
        k = (P["U_{k}"] * x + P["b_{k}"]) / sp.sqrt(d)
        v = P["U_{v}"] * x + P["b_{v}"]
        i = sp.exp((P["w_{i}"] * x + P["b_{i}"])[0, 0])
        f = 1 / (1 + sp.exp(-(P["w_{f}"] * x + P["b_{f}"])[0, 0]))
        o = (P["U_{o}"] * x + P["b_{o}"]).applyfunc(lambda u: 1 / (1 + sp.exp(-u)))
        C_new = f * C + i * v * k.T
        n_new = f * nv + i * k
        den = sp.Max(sp.Abs((n_new.T * q)[0, 0]), 1)
        h = o.multiply_elementwise(C_new * q) / den
        return h, C_new, n_new
    d = C.shape[0]
    x, nv = x.reshape(-1), nv.reshape(-1)
    P = {key: val.reshape(-1) if key[0] in "bw" else val for key, val in P.items()}
    q = P["U_{q}"] @ x + P["b_{q}"]
    k = (P["U_{k}"] @ x + P["b_{k}"]) / d ** 0.5
    v = P["U_{v}"] @ x + P["b_{v}"]
    i = torch.exp(P["w_{i}"] @ x + P["b_{i}"])
    f = torch.sigmoid(P["w_{f}"] @ x + P["b_{f}"])
    o = torch.sigmoid(P["U_{o}"] @ x + P["b_{o}"])
    C_new = f * C + i * torch.outer(v, k)
    n_new = f * nv + i * k
    h = o * (C_new @ q) / torch.clamp(torch.abs(n_new @ q), min=1.0)
    return h, C_new, n_new


def _nq(num) -> float:
    """|n_tᵀ q_t| of the step at these numbers (NumPy, from the paper's equations)."""
    x, d = num["x"], num["C"].shape[0]
    q = num["U_{q}"] @ x + num["b_{q}"]
    k = (num["U_{k}"] @ x + num["b_{k}"]) / np.sqrt(d)
    i = np.exp((num["w_{i}"] @ x + num["b_{i}"])[0, 0])
    f = 1 / (1 + np.exp(-(num["w_{f}"] @ x + num["b_{f}"])[0, 0]))
    return abs(float(((f * num["n"] + i * k).T @ q)[0, 0]))


def _vec(C):
    """Column-stacked vec (entry a + d·b is C[a, b]), as gradflow's state C."""
    return C.T.reshape(-1) if isinstance(C, torch.Tensor) else np.asarray(C, dtype=float).T.reshape(-1)


def _step(cell, d: int, M: int, num: dict) -> dict:
    """Every named quantity of one step of ``cell`` at these numbers (the tests' own evaluator)."""
    step = cell.recorded
    sizes = {n: d, m: M}
    leaves = {k: sp.ImmutableMatrix(num[k]) for k in PARAMS}
    leaves[step.x.name] = sp.ImmutableMatrix(num["x"])
    leaves[step.prev["h"].name] = sp.zeros(d, 1)
    leaves[step.prev["C"].name] = sp.ImmutableMatrix(_vec(num["C"]).reshape(-1, 1))
    leaves[step.prev["n"].name] = sp.ImmutableMatrix(num["n"])
    if "m" in step.prev:
        leaves[step.prev["m"].name] = sp.ImmutableMatrix([[num["m"]]])
    for sym, defn in step.definitions.items():
        leaves[sym.name] = explicit(defn, leaves, sizes).subs(n, d)  # k_t's 1/√n
    return leaves


def _ours(d: int, M: int, num: dict, cell=CELL) -> np.ndarray:
    """gradflow's derived one-step Jacobian ∂(h, vec C, n[, m])_t/∂(…)_{t−1} at these numbers."""
    leaves, sizes = _step(cell, d, M, num), {n: d, m: M}
    blocks = cell.jacobian().blocks
    rows = []
    for a in cell.states:
        rows.append([np.array(explicit(blocks[(a, b)], leaves, sizes).subs(n, d), dtype=float)
                     for b in cell.states])
    return np.block(rows)


# -- the structure ----------------------------------------------------------------------------
def test_memory_blocks_are_derived_as_f_times_identity():
    J = CELL.jacobian().blocks
    f = CELL.recorded.definitions
    assert isinstance(J[("C", "C")], Diag) and isinstance(J[("n", "n")], Diag)
    assert J[("C", "C")].shape == (n ** 2, n ** 2) and J[("n", "n")].shape == (n, n)
    assert {str(s) for s in J[("C", "C")].vector.free_symbols if isinstance(s, sp.MatrixSymbol)} == {"f_{t}"}
    assert any(str(s) == "f_{t}" for s in f)
    for a in CELL.states:  # h is a read-out: nothing reads h_{t−1}, and C, n never read each other
        assert isinstance(J[(a, "h")], sp.ZeroMatrix)
    assert isinstance(J[("C", "n")], sp.ZeroMatrix) and isinstance(J[("n", "C")], sp.ZeroMatrix)


# -- SymPy element-wise oracle at d ∈ {1, 2} ---------------------------------------------------
@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("big", [True, False])
def test_jacobian_equals_sympy_elementwise(d, big):
    M = 2
    num = _numbers(d, M, 10 * d + big, big)
    Csym = sp.Matrix(d, d, lambda a, b: sp.Symbol(f"C{a}{b}", real=True))
    nsym = sp.Matrix(d, 1, lambda a, _: sp.Symbol(f"n{a}", real=True))
    P = {k: sp.Matrix(num[k]) for k in PARAMS}
    h, C_new, n_new = _paper_step(P, Csym, nsym, sp.Matrix(num["x"]), sp)
    wrt = list(Csym.T.reshape(d * d, 1)) + list(nsym)  # column-stacked vec C, then n
    out = sp.Matrix.vstack(h, C_new.T.reshape(d * d, 1), n_new)
    point = {**{Csym[a, b]: num["C"][a, b] for a in range(d) for b in range(d)},
             **{nsym[a]: num["n"][a, 0] for a in range(d)}}
    oracle = np.array(out.jacobian(wrt).subs(point).evalf(30), dtype=float)
    ours = _ours(d, M, num)
    assert ours.shape == (2 * d + d * d, 2 * d + d * d)
    assert np.all(ours[:, :d] == 0)  # the h_{t−1} columns
    np.testing.assert_allclose(ours[:, d:], oracle, rtol=1e-12, atol=1e-12)
    assert (_nq(num) > 1) == big  # the regime the case is named for (max(|nᵀq|, 1) = |nᵀq| or 1)


# -- PyTorch autograd oracle ------------------------------------------------------------------
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("big", [True, False])
def test_jacobian_equals_torch_autograd(d, big):
    M = 3
    num = _numbers(d, M, 100 + 10 * d + big, big)
    assert (_nq(num) > 1) == big
    P = {k: torch.tensor(num[k], dtype=torch.float64) for k in PARAMS}
    x = torch.tensor(num["x"], dtype=torch.float64)

    def F(vecC, nv):
        C = vecC.reshape(d, d).T  # column-stacked vec back to C
        h, C_new, n_new = _paper_step(P, C, nv, x, torch)
        return torch.cat([h, C_new.T.reshape(-1), n_new])

    C0 = torch.tensor(_vec(num["C"]), dtype=torch.float64)
    n0 = torch.tensor(num["n"].reshape(-1), dtype=torch.float64)
    jC, jn = torch.autograd.functional.jacobian(F, (C0, n0))
    oracle = torch.cat([jC, jn], dim=1).numpy()
    ours = _ours(d, M, num)
    np.testing.assert_allclose(ours[:, d:], oracle, rtol=1e-12, atol=1e-12)
    # the memory block is f_t I exactly
    f = 1 / (1 + np.exp(-(num["w_{f}"] @ num["x"] + num["b_{f}"])[0, 0]))
    np.testing.assert_allclose(ours[d:, d:], f * np.eye(d * d + d), rtol=1e-14, atol=0)


def test_the_torch_comparison_can_fail():
    """A wrong step (the exponential forget gate f = exp(f̃), which the paper also allows, in place of
    the official σ) is caught by the same comparison."""
    d, M = 2, 3
    num = _numbers(d, M, 7, True)
    P = {k: torch.tensor(num[k], dtype=torch.float64) for k in PARAMS}
    x = torch.tensor(num["x"], dtype=torch.float64)

    def F(vecC, nv):
        C = vecC.reshape(d, d).T
        k = (P["U_{k}"] @ x + P["b_{k}"]).reshape(-1) / d ** 0.5
        v = (P["U_{v}"] @ x + P["b_{v}"]).reshape(-1)
        q = (P["U_{q}"] @ x + P["b_{q}"]).reshape(-1)
        i, f = torch.exp(P["w_{i}"] @ x + P["b_{i}"]).reshape(()), torch.exp(P["w_{f}"] @ x + P["b_{f}"]).reshape(())
        o = torch.sigmoid(P["U_{o}"] @ x + P["b_{o}"]).reshape(-1)
        C_new = f * C + i * torch.outer(v, k)
        n_new = f * nv + i * k
        h = o * (C_new @ q) / torch.clamp(torch.abs(n_new @ q), min=1.0)
        return torch.cat([h, C_new.T.reshape(-1), n_new])

    jC, jn = torch.autograd.functional.jacobian(
        F, (torch.tensor(_vec(num["C"])), torch.tensor(num["n"].reshape(-1))))
    wrong = torch.cat([jC, jn], dim=1).numpy()
    assert not np.allclose(_ours(d, M, num)[:, d:], wrong, rtol=1e-6, atol=1e-9)


# -- many steps: ‖∂(C_T, n_T)/∂(C_k, n_k)‖₂ = ∏ f_j ---------------------------------------------
def test_memory_product_norm_is_the_product_of_forget_gates():
    d, M, T = 2, 2, 6
    rng = np.random.default_rng(3)
    num = _numbers(d, M, 3, True)
    xs = rng.standard_normal((T, M, 1))
    C, nv = num["C"], num["n"]
    jacobians = []
    for t in range(T):
        step = dict(num, x=xs[t], C=C, n=nv)
        jacobians.append(_ours(d, M, step)[d:, d:])  # the (vec C, n) block of J_{t+1}
        P = {k: torch.tensor(num[k], dtype=torch.float64) for k in PARAMS}
        _, Ct, nt = _paper_step(P, torch.tensor(C), torch.tensor(nv), torch.tensor(xs[t]), torch)
        C, nv = Ct.numpy(), nt.numpy()
    mpmath.mp.dps = 30
    for k in range(T):
        Pk = np.eye(d * d + d)
        for J in jacobians[k:]:
            Pk = J @ Pk
        closed = mpmath.fprod(1 / (1 + mpmath.exp(-(mpmath.mpf(float((num["w_{f}"] @ xs[j])[0, 0]))
                                                   + mpmath.mpf(float(num["b_{f}"][0, 0])))))
                              for j in range(k, T))
        assert abs(np.linalg.norm(Pk, 2) - float(closed)) <= 1e-14 * float(closed)


# -- parameter count ------------------------------------------------------------------------------
@pytest.mark.parametrize("d, M", [(3, 2), (8, 5)])
def test_param_count_matches_linear_layers(d, M):
    torch.manual_seed(0)
    layers = [torch.nn.Linear(M, d) for _ in "qkvo"] + [torch.nn.Linear(M, 1) for _ in "if"]
    want = sum(p.numel() for lay in layers for p in lay.parameters())
    got = gf.count_params("mlstm", d, M)
    assert got.total == want == 4 * d * M + 4 * d + 2 * M + 2


# -- the command line ------------------------------------------------------------------------------
def test_cli_derive_and_params(capsys):
    assert main(["derive", "mlstm"]) == 0
    out = capsys.readouterr().out
    assert "∂C_t/∂C_{t-1} = diag(1·f_t)" in out and "∂n_t/∂n_{t-1} = diag(1·f_t)" in out
    assert main(["params", "mlstm", "--hidden", "3", "--input", "2"]) == 0
    assert "42" in capsys.readouterr().out


# -- the stabilised form (official recurrent_step_stabilized_simple) -------------------------------
STAB = gf.get_cell("mlstm-stabilised")


def _official_stabilised_step(P, C, nv, mv, x, d):
    """The official stabilised step, written here with torch (C: d × d; m a scalar)."""
    x = x.reshape(-1)
    q = P["U_{q}"] @ x + P["b_{q}"].reshape(-1)
    k = (P["U_{k}"] @ x + P["b_{k}"].reshape(-1)) / d ** 0.5
    v = P["U_{v}"] @ x + P["b_{v}"].reshape(-1)
    i_pre = (P["w_{i}"] @ x + P["b_{i}"].reshape(-1))[0]
    log_f = torch.nn.functional.logsigmoid((P["w_{f}"] @ x + P["b_{f}"].reshape(-1))[0])
    o = torch.sigmoid(P["U_{o}"] @ x + P["b_{o}"].reshape(-1))
    m_new = torch.maximum(log_f + mv, i_pre)
    i = torch.exp(i_pre - m_new)
    f = torch.exp(log_f + mv - m_new)
    C_new = f * C + i * torch.outer(v, k)
    n_new = f * nv + i * k
    h = o * (C_new @ q) / torch.maximum(torch.abs(n_new @ q), torch.exp(-m_new))
    return h, C_new, n_new, m_new


@pytest.mark.parametrize("m_prev", [-3.0, 2.5])  # max taken by ĩ_t, then by log f_t + m_{t−1}
def test_stabilised_jacobian_equals_torch_autograd(m_prev):
    d, M = 2, 3
    num = dict(_numbers(d, M, 41, True), m=m_prev)
    P = {k: torch.tensor(num[k], dtype=torch.float64) for k in PARAMS}
    x = torch.tensor(num["x"], dtype=torch.float64)

    def F(vecC, nv, mv):
        h, C_new, n_new, m_new = _official_stabilised_step(P, vecC.reshape(d, d).T, nv, mv[0], x, d)
        return torch.cat([h, C_new.T.reshape(-1), n_new, m_new.reshape(1)])

    args = (torch.tensor(_vec(num["C"])), torch.tensor(num["n"].reshape(-1)),
            torch.tensor([m_prev], dtype=torch.float64))
    oracle = torch.cat(torch.autograd.functional.jacobian(F, args), dim=1).numpy()
    ours = _ours(d, M, num, STAB)
    np.testing.assert_allclose(ours[:, d:], oracle, rtol=1e-12, atol=1e-12)
    assert np.all(ours[:, :d] == 0)
    branch = float(ours[-1, -1])  # ∂m_t/∂m_{t−1} = H(log f + m_{t−1} − ĩ): which side the max took
    assert branch == (1.0 if m_prev > 0 else 0.0)


def test_stabilised_and_unstabilised_agree():
    """Same h at every step; the stabilised C, n are the unstabilised ones times e^{−m_t}."""
    d, M, T = 2, 2, 6
    rng = np.random.default_rng(5)
    num = _numbers(d, M, 5, False)
    num["b_{i}"] = num["b_{i}"] + 3.0  # large input gates: the stabiliser moves away from 0
    xs = rng.standard_normal((T, M, 1))
    plain = dict(num, C=np.zeros((d, d)), n=np.zeros((d, 1)))
    stab = dict(plain, m=0.0)
    for t in range(T):
        a = _step(CELL, d, M, dict(plain, x=xs[t]))
        b = _step(STAB, d, M, dict(stab, x=xs[t]))
        h_a, h_b = (np.array(v["h_{t}"], dtype=float) for v in (a, b))
        np.testing.assert_allclose(h_b, h_a, rtol=1e-12, atol=1e-15)
        mt = float(b["m_{t}"][0, 0])
        C_a = np.array(a["C_{t}"], dtype=float).reshape(-1)
        np.testing.assert_allclose(np.array(b["C_{t}"], dtype=float).reshape(-1), C_a * np.exp(-mt), rtol=1e-12)
        plain = dict(plain, C=C_a.reshape(d, d).T, n=np.array(a["n_{t}"], dtype=float))
        stab = dict(stab, C=np.array(b["C_{t}"], dtype=float).reshape(d, d).T,
                    n=np.array(b["n_{t}"], dtype=float), m=mt)
    assert stab["m"] > 1.0  # the stabiliser was in use


# -- the derived blocks compiled to array code ----------------------------------------------------
@pytest.mark.parametrize("name", ["mlstm", "mlstm-stabilised"])
def test_compiled_kernels_match_torch(name):
    """The array code compiled from the derived step and blocks (batch of 2, d = 3) against torch;
    the memory blocks compile as diagonal blocks (what a structured product would use)."""
    from gradflow._numeric.network import kernels

    cell, d, M, B = gf.get_cell(name), 3, 2, 2
    K = kernels(cell)
    rng = np.random.default_rng(11)
    num = _numbers(d, M, 11, True)
    env: dict = {n: d, m: M, "xp": np, "dtype": np.float64}
    for p in cell.recorded.params:
        a = num[p.symbol.name]
        env[p.symbol] = a[:, 0] if a.shape[1] == 1 else a  # biases are (r,)
    Cs, ns = rng.standard_normal((B, d, d)) * 0.5, rng.standard_normal((B, d)) * 2.0
    ms = np.array([[-2.0], [1.5]])
    xs = rng.standard_normal((B, M))
    prev = {"h": np.zeros((B, d)), "C": np.stack([_vec(C) for C in Cs]), "n": ns, "m": ms}
    for sym, s in zip(K.prev, cell.states, strict=True):
        env[sym] = prev[s]
    env[K.x] = xs
    for sym, fn in K.forward:
        env[sym] = fn(env)
    sizes = [d, d * d, d, 1][:len(cell.states)]
    offs = np.cumsum([0] + sizes)
    J = np.zeros((B, offs[-1], offs[-1]))
    kinds = {}
    for blk in K.blocks:
        rows, cols = slice(offs[blk.a], offs[blk.a + 1]), slice(offs[blk.b], offs[blk.b + 1])
        shape = (B, sizes[blk.a], sizes[blk.b]) if blk.kind == "dense" else (B, sizes[blk.a])
        val = np.broadcast_to(blk.fn(env), shape)
        J[:, rows, cols] = val if blk.kind == "dense" else np.stack([np.diag(v) for v in val])
        kinds[(cell.states[blk.a], cell.states[blk.b])] = blk.kind
    assert kinds[("C", "C")] == kinds[("n", "n")] == "diag"
    P = {k: torch.tensor(num[k], dtype=torch.float64) for k in PARAMS}
    for b in range(B):
        x = torch.tensor(xs[b], dtype=torch.float64)

        def F(vecC, nv, mv, x=x):
            C = vecC.reshape(d, d).T
            if name == "mlstm":
                h, C_new, n_new = _paper_step(P, C, nv, x, torch)
                return torch.cat([h, C_new.T.reshape(-1), n_new])
            h, C_new, n_new, m_new = _official_stabilised_step(P, C, nv, mv[0], x, d)
            return torch.cat([h, C_new.T.reshape(-1), n_new, m_new.reshape(1)])

        args = (torch.tensor(_vec(Cs[b])), torch.tensor(ns[b]), torch.tensor(ms[b]))
        out = F(*args).numpy()
        np.testing.assert_allclose(np.concatenate([env[s][b] for s in K.new]), out, rtol=1e-12, atol=1e-14)
        jac = torch.cat(torch.autograd.functional.jacobian(F, args), dim=1).numpy()
        width = offs[-1] - d
        np.testing.assert_allclose(J[b][:, d:], jac[:, :width], rtol=1e-12, atol=1e-12)
