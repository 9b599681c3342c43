"""xLSTM's mLSTM through the numeric engine: the flow curves against independent oracles.

The oracle is PyTorch autograd (float64) of an mLSTM step written here from the paper's equations
(Beck et al. 2024): q = U_q x + b_q, k = (U_k x + b_k)/√d, v = U_v x + b_v, o = σ(U_o x + b_o),
i = exp(w_iᵀx + b_i), f = σ(w_fᵀx + b_f), C_t = f C_{t−1} + i v kᵀ, n_t = f n_{t−1} + i k,
h_t = o ⊙ C_t q / max(|n_tᵀ q|, 1); and of the stabilised step (the official
``recurrent_step_stabilized_simple``) with m_t = max(log f + m_{t−1}, ĩ), i' = exp(ĩ − m_t),
f' = exp(log f + m_{t−1} − m_t), the floor exp(−m_t) in the max. The unrolled map s_k ↦ s_T is
composed of these steps and differentiated by ``torch.autograd.functional.jacobian``; gradflow's
side is its compiled, derived blocks. Only the weights are shared.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gradflow as gf
from gradflow._cli import main

N_STEPS, M_IN, BATCH = 6, 2, 2


def _params(net) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(np.asarray(v), dtype=torch.float64) for k, v in net.weights.arrays.items()}


def _gates(P, x, d):
    q = P["U_{q}"] @ x + P["b_{q}"]
    k = (P["U_{k}"] @ x + P["b_{k}"]) / math.sqrt(d)
    v = P["U_{v}"] @ x + P["b_{v}"]
    o = torch.sigmoid(P["U_{o}"] @ x + P["b_{o}"])
    i_pre = (P["w_{i}"] @ x + P["b_{i}"])[0]
    f_pre = (P["w_{f}"] @ x + P["b_{f}"])[0]
    return q, k, v, o, i_pre, f_pre


def _step(P, stabilised: bool, d: int, s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One step on the state (h, vec C, n[, m]) (vec column-stacked: entry a + d·b is C[a, b])."""
    C = s[d:d + d * d].reshape(d, d).T
    nv = s[d + d * d:2 * d + d * d]
    q, k, v, o, i_pre, f_pre = _gates(P, x, d)
    if not stabilised:
        i, f = torch.exp(i_pre), torch.sigmoid(f_pre)
        C, nv = f * C + i * torch.outer(v, k), f * nv + i * k
        h = o * (C @ q) / torch.clamp(torch.abs(nv @ q), min=1.0)
        return torch.cat([h, C.T.reshape(-1), nv])
    m_prev = s[-1]
    log_f = torch.nn.functional.logsigmoid(f_pre)
    m_new = torch.maximum(log_f + m_prev, i_pre)
    i, f = torch.exp(i_pre - m_new), torch.exp(log_f + m_prev - m_new)
    C, nv = f * C + i * torch.outer(v, k), f * nv + i * k
    h = o * (C @ q) / torch.maximum(torch.abs(nv @ q), torch.exp(-m_new))
    return torch.cat([h, C.T.reshape(-1), nv, m_new.reshape(1)])


def _oracle(net, x: np.ndarray, stabilised: bool):
    """Per sequence b and k: ∂s_T/∂s_k (torch autograd), the trajectory, and the forget gates f_t."""
    d, T = net.hidden, x.shape[0]
    P = _params(net)
    N = 2 * d + d * d + (1 if stabilised else 0)
    out = []
    for b in range(x.shape[1]):
        xs = [torch.tensor(x[t, b], dtype=torch.float64) for t in range(T)]
        states = [torch.zeros(N, dtype=torch.float64)]
        for t in range(T):
            states.append(_step(P, stabilised, d, states[-1], xs[t]))

        def run(s, k, xs=xs):
            for t in range(k, T):
                s = _step(P, stabilised, d, s, xs[t])
            return s

        jacs = [torch.autograd.functional.jacobian(lambda s, k=k: run(s, k), states[k]).numpy()
                for k in range(T)]
        forget = [float(torch.sigmoid(_gates(P, xs[t], d)[5])) for t in range(T)]
        out.append((jacs, [s.numpy() for s in states], forget))
    return out


def _inputs(T=N_STEPS, seed=3):
    return gf.random_inputs(T, M_IN, batch=BATCH, seed=seed)


@pytest.mark.parametrize("name, d", [("mlstm", 3), ("mlstm-stabilised", 2)])
def test_flow_curves_against_torch(name, d):
    """‖∂s_T/∂s_k‖₂, ‖·‖_F, ‖∂L/∂s_k‖ (L = Σ h_T) and per-state gradient norms, every k."""
    net = gf.network(name, d, M_IN, seed=d, forget_bias=1.0)
    x = _inputs()
    flow = gf.gradient_flow(net, x, spectral="svd")
    ref = _oracle(net, x, name == "mlstm-stabilised")
    T = x.shape[0]
    traj = net.unroll(x)
    sl = net.layout
    for b, (jacs, states, _) in enumerate(ref):
        np.testing.assert_allclose(np.asarray(traj.states[-1][b]), states[-1], rtol=1e-12, atol=1e-13)
        for k in range(T):
            J = jacs[k]
            g = J[sl.slice("h")].sum(axis=0)  # ∂(Σ h_T)/∂s_k
            want = {"log10_norm_2": np.log10(np.linalg.norm(J, 2)),
                    "log10_norm_fro": np.log10(np.linalg.norm(J)),
                    "log10_grad_norm": np.log10(np.linalg.norm(g))}
            for key, v in want.items():
                assert abs(flow.full[key][b, k] - v) < 1e-10, (key, b, k)
            mem = sl.span(("C", "n"))  # the memory block and ‖∂L/∂(C_k, n_k)‖
            block = {"log10_norm_2": np.log10(np.linalg.norm(J[mem, mem], 2)),
                     "log10_norm_fro": np.log10(np.linalg.norm(J[mem, mem])),
                     "log10_grad_norm": np.log10(np.linalg.norm(g[mem]))}
            for key, v in block.items():
                assert abs(flow.cell_state[key][b, k] - v) < 1e-10, ("cell_state", key, b, k)
            for state in net.cell.states:
                part = np.linalg.norm(g[sl.slice(state)])
                got = flow.grad_parts[state][b, k]
                assert (part == 0 and got == -np.inf) or abs(got - np.log10(part)) < 1e-10, (state, k)


@pytest.mark.parametrize("d", [2, 3])
def test_memory_block_is_product_of_forget_gates(d):
    """‖∂(C_T, n_T)/∂(C_k, n_k)‖₂ = ∏_{j=k+1}^{T} f_j (a multiple of the identity), to 1e-12."""
    net = gf.network("mlstm", d, M_IN, seed=7, forget_bias=2.0)
    x = _inputs(T=6, seed=5)
    flow = gf.gradient_flow(net, x)
    mem = net.layout.span(("C", "n"))
    for b, (jacs, _, forget) in enumerate(_oracle(net, x, False)):
        for k in range(x.shape[0]):
            prod = math.prod(forget[k:])
            block = jacs[k][mem, mem]
            np.testing.assert_allclose(block, prod * np.eye(d * d + d), rtol=1e-12, atol=1e-15)
            for key in ("log10_norm_2", "log10_norm_fro"):
                scale = 0.0 if key == "log10_norm_2" else 0.5 * math.log10(d * d + d)
                assert abs(10 ** (flow.cell_state[key][b, k] - scale) / prod - 1) < 1e-12


def test_stabilised_memory_block_and_same_h():
    """The stabilised cell's h equals the unstabilised one's on the same weights and inputs; its
    memory block is ∏ f'_j = ∏ σ(f̃_j) · e^{m_k − m_T} (stored C, n are C̃ e^{−m})."""
    d = 3
    plain = gf.network("mlstm", d, M_IN, seed=4, forget_bias=1.5)
    stab = gf.Network(gf.Weights(gf.get_cell("mlstm-stabilised"), d, M_IN, dict(plain.weights.arrays)))
    x = _inputs(T=6, seed=9)
    ta, tb = plain.unroll(x), stab.unroll(x)
    h = plain.layout.slice("h")
    for sa, sb in zip(ta.states, tb.states, strict=True):
        np.testing.assert_allclose(np.asarray(sb[:, h]), np.asarray(sa[:, h]), rtol=1e-12, atol=1e-14)
    flow = gf.gradient_flow(stab, x)
    ref = _oracle(stab, x, True)
    for b, (_, states, forget) in enumerate(ref):
        m = [s[-1] for s in states]
        for k in range(x.shape[0]):
            want = math.prod(forget[k:]) * math.exp(m[k] - m[-1])
            assert abs(10 ** flow.cell_state.log10_norm_2[b, k] / want - 1) < 1e-12


def test_sizes_and_layout():
    """N = n² + 2n (+1): the network and the size guard read one layout."""
    from gradflow._numeric.size_guard import choose_mode, flow_bytes, state_entries

    net = gf.network("mlstm-stabilised", 3, 2)
    assert net.state_size == 9 + 6 + 1 and net.layout.sizes == (3, 9, 3, 1)
    assert net.layout.slice("m") == slice(15, 16) and net.layout.span(("C", "n")) == slice(3, 15)
    # the guard counts N = n² + 2n (+1): its square buffers are N² (at n = 40, N = 1680, not 3 · 40)
    ml, stab, lstm = (gf.get_cell(c) for c in ("mlstm", "mlstm-stabilised", "lstm"))
    assert [state_entries(c, 40)[0] for c in (ml, stab, lstm)] == [1680, 1681, 80]
    assert flow_bytes(ml, 40, 2, 4) > flow_bytes(lstm, 40, 2, 4) * 100
    # auto mode stays exact above N = 1024 (the matrix-free mode does not take the cell)
    assert choose_mode(ml, 40, 2, 4) == "exact" and choose_mode(lstm, 600, 2, 4) == "matrix-free"


@pytest.mark.parametrize("call, words", [
    (lambda net, x: gf.gradient_flow(net, x, mode="matrix-free"), "matrix-free"),
    (lambda net, x: gf.stacked_network("mlstm", 3, 2, layers=2), "stacked"),
    (lambda net, x: gf.network("mlstm", weights={"weight_ih": np.zeros((12, 2))}), "PyTorch or Keras"),
    (lambda net, x: gf.to_state_dict(net.weights), "state_dict"),
])
def test_modes_that_do_not_take_it_refuse(call, words):
    net = gf.network("mlstm", 3, 2)
    with pytest.raises(gf.GradflowError, match="mlstm") as e:
        call(net, _inputs(T=3))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_weights_by_parameter_name(tmp_path):
    """An .npz keyed by the parameter names (U_q, w_i, b_i …) loads; the flow is the same."""
    from gradflow._numeric.named_weights import plain_name

    net = gf.network("mlstm", 2, M_IN, seed=6)
    path = tmp_path / "mlstm.npz"
    np.savez(path, **{plain_name(k): np.asarray(v) for k, v in net.weights.arrays.items()})
    again = gf.network("mlstm", weights=str(path))
    assert (again.hidden, again.input) == (2, M_IN)
    x = _inputs(T=3)
    a, b = gf.gradient_flow(net, x), gf.gradient_flow(again, x)
    np.testing.assert_array_equal(a.full.log10_norm_2, b.full.log10_norm_2)


def test_block_path_refuses():
    from gradflow._numeric.blocks import block_curves

    with pytest.raises(gf.GradflowError, match="mlstm: the per-unit block path"):
        block_curves(gf.network("mlstm", 2, 2), _inputs(T=2))


def test_cli_flow_json(capsys):
    import json

    assert main(["flow", "mlstm", "--hidden", "3", "--input", "2", "--steps", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cell"] == "mlstm" and len(out["curve"]) == 10
    first = out["curve"][0]
    assert {"log10_norm_2", "cell_state", "log10_grad_norm_C", "log10_grad_norm_n"} <= set(first)
    assert main(["flow", "mlstm-stabilised", "--hidden", "2", "--input", "2", "--steps", "4"]) == 0
    assert "mlstm-stabilised" in capsys.readouterr().out


def test_cli_flow_matrix_free_refuses(capsys):
    assert main(["flow", "mlstm", "--hidden", "2", "--input", "2", "--steps", "3", "--mode", "matrix-free"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradflow: error:") and "mlstm" in err and "Traceback" not in err


def test_report_section_for_mlstm(tmp_path, monkeypatch):
    """The report runs mlstm; its sentences are the ones true for this cell (Markdown only)."""
    import gradflow._views.plots as plots

    real = plots.save_figure

    def coarse(fig, stem, formats=("pdf", "png"), dpi=200):  # the figures are not looked at here
        return real(fig, stem, formats=("png",), dpi=20)

    monkeypatch.setattr(plots, "save_figure", coarse)
    out = gf.write_report(["mlstm"], tmp_path / "rep", hidden=2, steps=4)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert r"$C_{t}$: $n^{2}$" in md and "9 blocks" in md
    assert r"each $n \times n$" not in md and "is the pair" not in md
    para = next(line for line in md.splitlines() if line.startswith("`mlstm`: $h_t$ is a read-out"))
    assert r"\partial C_t/\partial C_{t-1} = f_{t} I" in para and "(the same number)" in para
    assert "contradicts" not in md and "no single diagonal term" not in md


def test_initial_states_by_their_sizes():
    """s_0 = (h_0, vec C_0, n_0): C_0 has n² entries; the flow from it matches the oracle's first step."""
    d = 2
    net = gf.network("mlstm", d, M_IN, seed=1)
    rng = np.random.default_rng(0)
    C0, n0 = rng.standard_normal(d * d), rng.standard_normal(d)
    x = _inputs(T=2)
    traj = net.unroll(x, {"C": C0, "n": n0})
    s0 = torch.tensor(np.concatenate([np.zeros(d), C0, n0]))
    want = _step(_params(net), False, d, s0, torch.tensor(x[0, 1]))
    np.testing.assert_allclose(np.asarray(traj.states[1][1]), want.numpy(), rtol=1e-12, atol=1e-14)
    gf.gradient_flow(net, x, initial={"h0": np.zeros(d), "C0": C0, "n0": n0})
    with pytest.raises(gf.GradflowError, match=r"state C0 has shape \(2, 2\), expected .*\(4,\)"):
        gf.gradient_flow(net, x, initial={"C0": n0})


def test_every_step_cross_entropy_against_torch():
    """‖∂L/∂s_k‖ for L = Σ_t CE(V h_t + c, y_t): reverse accumulation against torch autograd."""
    d, T = 2, 4
    net = gf.network("mlstm", d, M_IN, seed=2, forget_bias=1.0)
    x = _inputs(T=T)
    rng = np.random.default_rng(1)
    V, c, y = rng.standard_normal((3, d)), rng.standard_normal(3), rng.integers(0, 3, (T, BATCH))
    flow = gf.gradient_flow(net, x, loss="every", head=(V, c), targets=y)
    P, Vt, ct = _params(net), torch.tensor(V), torch.tensor(c)

    def ce(h, target):
        return torch.nn.functional.cross_entropy((Vt @ h + ct)[None], torch.tensor([int(target)]), reduction="sum")

    for b in range(BATCH):
        xs = [torch.tensor(x[t, b]) for t in range(T)]
        states = [torch.zeros(2 * d + d * d, dtype=torch.float64)]
        for t in range(T):
            states.append(_step(P, False, d, states[-1], xs[t]))
        for k in range(T):
            s = states[k].detach().clone().requires_grad_(True)
            loss = ce(s[:d], y[k - 1, b]) if k >= 1 else torch.zeros((), dtype=torch.float64)
            cur = s
            for t in range(k, T):
                cur = _step(P, False, d, cur, xs[t])
                loss = loss + ce(cur[:d], y[t, b])
            (g,) = torch.autograd.grad(loss, s)
            assert abs(flow.full.log10_grad_norm[b, k] - np.log10(float(g.norm()))) < 1e-10, (b, k)
