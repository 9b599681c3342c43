"""The numeric engine against PyTorch, an independent oracle.

gradflow evaluates the closed-form Jacobians its symbolic core derived; here every number is
compared with PyTorch's own modules and autograd:

* forward states s_t against ``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell`` stepped in a loop,
* J_t = ∂s_t/∂s_{t−1} against ``torch.func.jacrev`` of the torch cell,
* every product ∂s_T/∂s_k against ``torch.autograd.functional.jacobian`` of the unrolled
  ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` layer started from s_k (weights loaded via its state_dict),
* the spectral / Frobenius norms in :class:`Flow` against ``torch.linalg.matrix_norm``,
* ‖∂L/∂s_k‖ against ``backward()`` with ``retain_grad`` on every state,
* cells PyTorch lacks (lstm-1997, residual-rnn, sigmoid-rnn, gru-cho) against their papers'
  equations written here in torch, with the weights taken from the Weights arrays by label.

Everything is float64. The LSTM state is s = concat(h, c).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch  # the oracle: a required test dependency, never skipped
from torch import nn  # noqa: E402

from gradflow import (  # noqa: E402
    Weights,
    get_cell,  # noqa: E402
    gradient_flow,
    load_weights,
    loss_gradient,
    network,
    products,
)
from gradflow._numeric.flow import sweep  # noqa: E402  (the internal sweep, tested on purpose)

F64 = torch.float64
N_HID, M_IN, T, B = 4, 3, 6, 2

# cell name -> (torch cell class, torch layer class, constructor kwargs, number of states)
TORCH_CELLS = {
    "tanh-rnn": (nn.RNNCell, nn.RNN, {"nonlinearity": "tanh"}, 1),
    "relu-rnn": (nn.RNNCell, nn.RNN, {"nonlinearity": "relu"}, 1),
    "irnn": (nn.RNNCell, nn.RNN, {"nonlinearity": "relu"}, 1),
    "lstm": (nn.LSTMCell, nn.LSTM, {}, 2),
    "gru": (nn.GRUCell, nn.GRU, {}, 1),
}
NAMES = list(TORCH_CELLS)


def assert_log10_close(mine, ref, tol):
    """mine = log10 of a norm, ref = the norm: relative error |10^(mine) / ref − 1| ≤ tol;
    an exact 0 must be −inf (it happens: ReLU units switched off)."""
    mine, ref = np.asarray(mine, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert mine.shape == ref.shape
    zero = ref == 0
    assert np.all(np.isneginf(mine[zero])), (mine, ref)
    assert np.all(np.isfinite(mine[~zero])), (mine, ref)
    err = np.abs(10 ** (mine[~zero] - np.log10(ref[~zero])) - 1)
    assert err.size > 0 and np.max(err) <= tol, (np.max(err), mine, ref)


def rel_err(a, b) -> float:
    """max |a − b| / max |b| (the reference is b)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = np.max(np.abs(b))
    if scale == 0:  # an exact zero reference (ReLU units all off): must be reproduced exactly
        return float(np.max(np.abs(a)))
    return float(np.max(np.abs(a - b)) / scale)


def randomise(module: nn.Module, seed: int, scale: float = 0.8) -> nn.Module:
    """Overwrite every parameter with U(−scale, scale) (larger than PyTorch's ±1/√n default, so
    that the gates and nonlinearities are well inside their non-trivial range)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=F64) * 2 * scale - scale)
    return module


def make_inputs(seed: int, steps: int = T, batch: int = B, m: int = M_IN) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((steps, batch, m))


def torch_step(name: str, cell: nn.Module, s, x):
    """s_t from s_{t−1} (…, N) and x_t (…, m) with the torch cell; the LSTM state is (h, c)."""
    if TORCH_CELLS[name][3] == 2:
        h, c = cell(x, (s[..., :N_HID], s[..., N_HID:]))
        return torch.cat([h, c], dim=-1)
    return cell(x, s)


def torch_layer_run(name: str, layer: nn.Module, s0, xs):
    """Final state s_T of the torch layer run on xs (T', B, m) from s0 (B, N)."""
    if TORCH_CELLS[name][3] == 2:
        h0, c0 = s0[None, :, :N_HID], s0[None, :, N_HID:]
        _, (h, c) = layer(xs, (h0.contiguous(), c0.contiguous()))
        return torch.cat([h[0], c[0]], dim=-1)
    _, h = layer(xs, s0[None].contiguous())
    return h[0]


@functools.cache
def cell_setup(name: str):
    """A randomised torch cell, the gradflow network loaded from it, inputs, torch states."""
    cls, _, kw, S = TORCH_CELLS[name]
    cell = randomise(cls(M_IN, N_HID, dtype=F64, **kw), seed=11 + NAMES.index(name))
    net = network(name, weights=cell)
    x = make_inputs(5)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        s = torch.zeros(B, S * N_HID, dtype=F64)
        states = [s]
        for t in range(T):
            s = torch_step(name, cell, s, xt[t])
            states.append(s)
    return cell, net, x, [st.numpy() for st in states]


@functools.cache
def layer_setup(name: str):
    """A randomised torch layer (nn.RNN/LSTM/GRU), the network loaded from its state_dict, and
    the torch products ∂s_T/∂s_k (B, N, N) for k = 0…T−1 from autograd of the unrolled layer."""
    _, cls, kw, S = TORCH_CELLS[name]
    layer = randomise(cls(M_IN, N_HID, num_layers=1, dtype=F64, **kw), seed=23 + NAMES.index(name))
    net = network(name, weights=layer.state_dict())
    x = make_inputs(7)
    xt = torch.from_numpy(x)
    N = S * N_HID
    products = []
    zeros = torch.zeros(B, N, dtype=F64)
    for k in range(T):
        with torch.no_grad():
            s_k = zeros if k == 0 else torch_layer_run(name, layer, zeros, xt[:k])
        full = torch.autograd.functional.jacobian(lambda s, k=k: torch_layer_run(name, layer, s, xt[k:]), s_k)
        # (B, N, B, N): sequences are independent, keep the diagonal in the batch index
        products.append(torch.stack([full[b, :, b, :] for b in range(B)]))
    return layer, net, x, products


def engine_products(net, x) -> dict[int, np.ndarray]:
    """∂s_T/∂s_k from gradflow's public backward pass :func:`gradflow.products`: 10**log10_scale · P."""
    traj = net.unroll(x)
    return {pr.k: np.array(pr.P) * (10.0 ** np.asarray(pr.log10_scale))[:, None, None]
            for pr in products(net, traj)}


# -- forward and one step ---------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_forward_states_match_torch_cell(name):
    _, net, x, states = cell_setup(name)
    traj = net.unroll(x)
    assert traj.steps == T and len(traj.states) == T + 1
    for t in range(T + 1):
        assert traj.states[t].shape == (B, TORCH_CELLS[name][3] * N_HID)
        np.testing.assert_allclose(traj.states[t], states[t], rtol=0, atol=1e-13)
    # the dynamics are not trivial: the final state is far from 0
    assert np.max(np.abs(states[-1])) > 0.1


@pytest.mark.parametrize("name", NAMES)
def test_step_jacobian_matches_jacrev(name):
    cell, net, x, states = cell_setup(name)
    traj = net.unroll(x)
    xt = torch.from_numpy(x)
    for t in range(1, T + 1):
        J = net.step_jacobian(traj, t)
        N = TORCH_CELLS[name][3] * N_HID
        assert J.shape == (B, N, N)
        for b in range(B):
            ref = torch.func.jacrev(lambda s, xb=xt[t - 1, b]: torch_step(name, cell, s, xb))(
                torch.from_numpy(states[t - 1][b])).detach().numpy()
            assert rel_err(J[b], ref) <= 1e-10, (name, t, b)


def test_relu_step_jacobian_has_switched_off_units():
    """Sanity of the ReLU comparison: some units are off (a zero row in J_t), some on."""
    _, net, x, _ = cell_setup("relu-rnn")
    traj = net.unroll(x)
    rows = np.concatenate([np.abs(net.step_jacobian(traj, t)).sum(axis=-1).ravel() for t in range(2, T + 1)])
    assert (rows == 0).any() and (rows > 0).any()


# -- products over many steps -------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_products_match_autograd_of_unrolled_layer(name):
    _, net, x, products = layer_setup(name)
    mine = engine_products(net, x)
    assert sorted(mine) == list(range(T))
    for k in range(T):
        assert rel_err(mine[k], products[k].numpy()) <= 1e-10, (name, k)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("spectral,tol", [("svd", 1e-10), ("power", 1e-8)])
def test_flow_norms_match_torch_matrix_norm(name, spectral, tol):
    _, net, x, products = layer_setup(name)
    flow = gradient_flow(net, x, spectral=spectral, lyapunov=False)
    assert flow.full.log10_norm_2.shape == (B, T)
    for k in range(T):
        P = products[k]
        two = torch.linalg.matrix_norm(P, ord=2).numpy()
        fro = torch.linalg.matrix_norm(P, ord="fro").numpy()
        # relative error of the norm itself: |10^(mine − ref) − 1|
        assert_log10_close(flow.full.log10_norm_2[:, k], two, tol)
        assert_log10_close(flow.full.log10_norm_fro[:, k], fro, 1e-10)
        if name == "lstm":  # the c→c block ∂c_T/∂c_k
            cc = P[:, N_HID:, N_HID:]
            two_c = torch.linalg.matrix_norm(cc, ord=2).numpy()
            fro_c = torch.linalg.matrix_norm(cc, ord="fro").numpy()
            assert_log10_close(flow.cell_state.log10_norm_2[:, k], two_c, tol)
            assert_log10_close(flow.cell_state.log10_norm_fro[:, k], fro_c, 1e-10)
    if name != "lstm":
        assert flow.cell_state is None


# -- ‖∂L/∂s_k‖ ---------------------------------------------------------------------------------
def torch_state_grads(name, cell, x, loss_fn, part="s") -> np.ndarray:
    """‖∂L/∂s_k‖ (B, T) by backward() through the torch cell, retain_grad on every state.

    s_k = (h_k, c_k) is the state handed to step k+1: ∂L/∂c_k holds h_k fixed. Within the step
    h_k is computed from c_k, so autograd's gradient on the cell's own c output would also
    count the path c_k → h_k; the state is therefore a clone of c_k that only step k+1 reads.
    """
    xt = torch.from_numpy(x)
    two = TORCH_CELLS[name][3] == 2
    h = torch.zeros(B, N_HID, dtype=F64, requires_grad=True)
    c = torch.zeros(B, N_HID, dtype=F64, requires_grad=True)
    hs, cs = [h], [c]
    for t in range(T):
        if two:
            h, c_out = cell(xt[t], (h, c))
            c = c_out.clone()
            c.retain_grad()
            cs.append(c)
        else:
            h = cell(xt[t], h)
        h.retain_grad()
        hs.append(h)
    loss_fn(h).backward()
    out = np.zeros((B, T))
    for k in range(T):
        sq = hs[k].grad.pow(2).sum(-1) if part == "s" else 0.0
        if two:
            sq = sq + cs[k].grad.pow(2).sum(-1)
        out[:, k] = sq.sqrt().numpy()
    return out


@pytest.mark.parametrize("name", NAMES)
def test_grad_norm_sum_loss_matches_backward(name):
    cell, net, x, _ = cell_setup(name)
    ref = torch_state_grads(name, cell, x, lambda h: h.sum())
    flow = gradient_flow(net, x, lyapunov=False)
    assert_log10_close(flow.full.log10_grad_norm, ref, 1e-10)


def test_cell_state_grad_norm_is_dL_dc_k():
    """The c→c block's gradient curve is ‖∂L/∂c_k‖ (h_k held fixed), from backward()."""
    cell, net, x, _ = cell_setup("lstm")
    ref = torch_state_grads("lstm", cell, x, lambda h: h.sum(), part="c")
    flow = gradient_flow(net, x, lyapunov=False)
    assert_log10_close(flow.cell_state.log10_grad_norm, ref, 1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_grad_norm_cross_entropy_matches_backward(name):
    cell, net, x, _ = cell_setup(name)
    K = 5
    rng = np.random.default_rng(3)
    V, c, y = rng.standard_normal((K, N_HID)), rng.standard_normal(K), np.array([1, 4])
    Vt, ct, yt = torch.from_numpy(V), torch.from_numpy(c), torch.from_numpy(y)
    ref = torch_state_grads(
        name, cell, x, lambda h: nn.functional.cross_entropy(h @ Vt.T + ct, yt, reduction="sum"))
    flow = gradient_flow(net, x, output=(V, c, y), lyapunov=False)
    assert_log10_close(flow.full.log10_grad_norm, ref, 1e-10)
    # the loss matters: the cross-entropy curve differs from the sum-of-h_T one
    plain = gradient_flow(net, x, lyapunov=False).full.log10_grad_norm
    both = np.isfinite(plain) & np.isfinite(flow.full.log10_grad_norm)
    assert np.max(np.abs(plain[both] - flow.full.log10_grad_norm[both])) > 1e-3


def test_loss_gradient_matches_autograd_at_h_T():
    """∂L/∂s_T itself (h part from torch, c part zero) for the LSTM and the cross-entropy."""
    cell, net, x, states = cell_setup("lstm")
    traj = net.unroll(x)
    rng = np.random.default_rng(4)
    V, c, y = rng.standard_normal((3, N_HID)), rng.standard_normal(3), np.array([2, 0])
    h = torch.from_numpy(states[-1][:, :N_HID]).requires_grad_(True)
    nn.functional.cross_entropy(h @ torch.from_numpy(V).T + torch.from_numpy(c), torch.from_numpy(y),
                                reduction="sum").backward()
    g = loss_gradient(net, traj, (V, c, y))
    np.testing.assert_allclose(g[:, :N_HID], h.grad.numpy(), rtol=1e-12, atol=1e-14)
    assert np.all(g[:, N_HID:] == 0)


# -- cells PyTorch has no module for: the papers' equations, written here ----------------------
LABELS = {
    "sigmoid-rnn": ["W", "U", "b"],
    "residual-rnn": ["W", "U", "b"],
    "lstm-1997": [f"{k}_{{{g}}}" for g in "igo" for k in "WUb"],
    "gru-cho": [f"{k}_{{{g}}}" for g in "rzn" for k in "WUb"],
}
STATES = {"sigmoid-rnn": 1, "residual-rnn": 1, "lstm-1997": 2, "gru-cho": 1}


def random_weights(name: str, seed: int, scale: float = 0.7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = {"W": (N_HID, N_HID), "U": (N_HID, M_IN), "b": (N_HID,)}
    return {lab: rng.standard_normal(shape[lab[0]]) * scale for lab in LABELS[name]}


def paper_step(name: str, p: dict, s, x):
    """One step of the paper's recurrence in torch, on unbatched s (N,) and x (m,)."""
    sig = torch.sigmoid

    def aff(g, h):
        suf = "" if g is None else f"_{{{g}}}"
        return p["W" + suf] @ h + p["U" + suf] @ x + p["b" + suf]

    if name == "sigmoid-rnn":
        return sig(aff(None, s))
    if name == "residual-rnn":  # h_t = h_{t−1} + tanh(W h + U x + b)
        return s + torch.tanh(aff(None, s))
    if name == "lstm-1997":  # Hochreiter & Schmidhuber 1997: no forget gate
        h, c = s[:N_HID], s[N_HID:]
        i, g, o = sig(aff("i", h)), torch.tanh(aff("g", h)), sig(aff("o", h))
        c_new = c + i * g
        return torch.cat([o * torch.tanh(c_new), c_new])
    if name == "gru-cho":  # Cho et al. 2014 / Keras reset_after=False
        r, z = sig(aff("r", s)), sig(aff("z", s))
        cand = torch.tanh(aff("n", r * s))
        return (1 - z) * cand + z * s
    raise KeyError(name)


@pytest.mark.parametrize("name", list(LABELS))
def test_cells_without_torch_module_match_paper_equations(name):
    arrays = random_weights(name, seed=41 + list(LABELS).index(name))
    net = network(name, weights=Weights(get_cell(name), N_HID, M_IN, arrays))
    p = {k: torch.from_numpy(v) for k, v in arrays.items()}
    N = STATES[name] * N_HID
    x = make_inputs(9)
    s0 = np.random.default_rng(10).standard_normal((B, N)) * 0.5
    initial = {"h": s0[:, :N_HID]} if N == N_HID else {"h": s0[:, :N_HID], "c": s0[:, N_HID:]}
    traj = net.unroll(x, initial)
    xt = torch.from_numpy(x)
    prods = {}

    def each(k, P, ls):
        prods[k] = np.array(P) * 10.0 ** np.asarray(ls)[:, None, None]

    sweep(net, traj, loss_gradient(net, traj), blocks={}, each=each)
    for b in range(B):
        s = torch.from_numpy(s0[b])
        ref_states = [s]
        for t in range(T):
            s = paper_step(name, p, s, xt[t, b])
            ref_states.append(s)
        for t in range(1, T + 1):
            np.testing.assert_allclose(traj.states[t][b], ref_states[t].numpy(), rtol=0, atol=1e-13)
            ref = torch.func.jacrev(lambda v, xb=xt[t - 1, b]: paper_step(name, p, v, xb))(ref_states[t - 1])
            assert rel_err(net.step_jacobian(traj, t)[b], ref.detach().numpy()) <= 1e-10, (name, t, b)

        # the whole product ∂s_T/∂s_k through the composed map, for every k
        def unrolled(v, k, xs=xt[:, b]):
            for t in range(k, T):
                v = paper_step(name, p, v, xs[t])
            return v

        for k in range(T):
            ref_prod = torch.func.jacrev(unrolled)(ref_states[k], k).detach().numpy()
            assert rel_err(prods[k][b], ref_prod) <= 1e-10, (name, b, k)


# -- loading --------------------------------------------------------------------------------------
def _same_weights(a, b):
    assert set(a.arrays) == set(b.arrays)
    for k in a.arrays:
        np.testing.assert_array_equal(np.asarray(a.arrays[k]), np.asarray(b.arrays[k]), err_msg=k)


@pytest.mark.parametrize("name", ["tanh-rnn", "lstm", "gru"])
@pytest.mark.parametrize("kind", ["cell", "layer"])
def test_pt_and_npz_files_give_the_module_network(name, kind, tmp_path):
    if kind == "cell":
        module, net, x, _ = cell_setup(name)
    else:
        module, net, x, _ = layer_setup(name)
    sd = module.state_dict()
    if kind == "layer":
        assert "weight_hh_l0" in sd
    pt, pth, npz = tmp_path / "w.pt", tmp_path / "w.pth", tmp_path / "w.npz"
    torch.save(sd, pt)
    torch.save(sd, pth)
    np.savez(npz, **{k: v.numpy() for k, v in sd.items()})
    traj = net.unroll(x)
    for src in (pt, str(pt), pth, npz, str(npz), sd, module):
        other = network(name, weights=src)
        _same_weights(other.weights, net.weights)
        t2 = other.unroll(x)
        for t in (1, T):
            np.testing.assert_array_equal(other.step_jacobian(t2, t), net.step_jacobian(traj, t))
    # and the loaded weights are the torch ones, by gate block (PyTorch order: i,f,g,o / r,z,n)
    gates = {"tanh-rnn": [None], "lstm": list("ifgo"), "gru": list("rzn")}[name]
    sfx = "_l0" if kind == "layer" else ""
    w = load_weights(name, npz).arrays
    for j, g in enumerate(gates):
        lab = "" if g is None else f"_{{{g}}}"
        rows = slice(j * N_HID, (j + 1) * N_HID)
        np.testing.assert_array_equal(w["W" + lab], sd["weight_hh" + sfx][rows].numpy())
        np.testing.assert_array_equal(w["U" + lab], sd["weight_ih" + sfx][rows].numpy())
        bi, bh = sd["bias_ih" + sfx][rows].numpy(), sd["bias_hh" + sfx][rows].numpy()
        if g == "n":  # GRU keeps the two n biases apart: r multiplies (W_n h + b_hn)
            np.testing.assert_array_equal(w["b_{in}"], bi)
            np.testing.assert_array_equal(w["b_{hn}"], bh)
        else:
            np.testing.assert_allclose(w["b" + lab], bi + bh, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_bias_free_module(name):
    """A module built with bias=False: the network behaves as the module (zero biases)."""
    cls, _, kw, S = TORCH_CELLS[name]
    cell = randomise(cls(M_IN, N_HID, bias=False, dtype=F64, **kw), seed=99)
    assert "bias_ih" not in cell.state_dict()
    net = network(name, weights=cell)
    x = make_inputs(12, steps=3)
    xt = torch.from_numpy(x)
    s = torch.zeros(B, S * N_HID, dtype=F64) + 0.3
    traj = net.unroll(x, {st: np.full(N_HID, 0.3) for st in ("h", "c")[:S]})
    for t in range(1, 4):
        ref = torch.func.jacrev(lambda v, x0=xt[t - 1, 0]: torch_step(name, cell, v, x0))(s[0])
        assert rel_err(net.step_jacobian(traj, t)[0], ref.detach().numpy()) <= 1e-10
        with torch.no_grad():
            s = torch_step(name, cell, s, xt[t - 1])
        np.testing.assert_allclose(traj.states[t], s.numpy(), rtol=0, atol=1e-13)
