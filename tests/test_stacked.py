"""Stacked, bidirectional and projected networks against PyTorch autograd through the REAL
``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` modules (float64): products, per-layer products and the loss
gradient of every layer and direction are built here from torch, never from gradflow."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gradflow._numeric.stack import (  # noqa: E402
    stacked_flow,
    stacked_gradients,
    stacked_network,
    stacked_products,
    stacked_state_gradient,
)

KINDS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "tanh-rnn": torch.nn.RNN}
N, M, T = 3, 2, 5


def module(cell, layers, bidirectional=False, proj=0, seed=0):
    torch.manual_seed(seed)
    kw = {"proj_size": proj} if proj else {}
    mod = KINDS[cell](M, N, num_layers=layers, bidirectional=bidirectional, **kw).double()
    with torch.no_grad():  # larger weights than the default init, so that the layers interact
        for p in mod.parameters():
            p.mul_(2.5)
    return mod.requires_grad_(False)


def inputs(B=1, seed=1):
    return np.random.default_rng(seed).standard_normal((T, B, M))


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(np.asarray(b))), 1e-300))


def split_state(cell, mod, s):
    """gradflow's stacked state (layer-major; h then c) → the module's (h0, c0) of batch 1."""
    L, D = mod.num_layers, 2 if mod.bidirectional else 1
    p = mod.proj_size or mod.hidden_size
    hs, cs, i = [], [], 0
    for _ in range(L * D):
        hs.append(s[i:i + p])
        i += p
        if cell == "lstm":
            cs.append(s[i:i + N])
            i += N
    h = torch.stack(hs)[:, None, :]
    return (h, torch.stack(cs)[:, None, :]) if cell == "lstm" else h


def join_state(cell, hc):
    if cell != "lstm":
        return hc[:, 0, :].reshape(-1)
    h, c = hc
    return torch.cat([torch.cat([h[j, 0], c[j, 0]]) for j in range(h.shape[0])])


@pytest.mark.parametrize("cell,layers,proj", [("lstm", 2, 0), ("gru", 3, 0), ("tanh-rnn", 2, 0), ("lstm", 2, 2)])
def test_whole_stack_products_are_torch_jacobians(cell, layers, proj):
    """∂s_T/∂s_k of the whole stack = torch's Jacobian of (h_n, c_n) after steps k+1…T of the real
    module with respect to its (h0, c0)."""
    mod = module(cell, layers, proj=proj)
    x = inputs()
    net = stacked_network(cell, weights=mod)
    assert (net.num_layers, net.proj_size) == (layers, proj)
    P = stacked_products(net, x)
    X = torch.from_numpy(x)
    for k in range(T):
        with torch.no_grad():
            _, sk = mod(X[:k], None) if k else (None, None)
        s0 = join_state(cell, sk) if k else torch.zeros(P[k].shape[-1], dtype=torch.float64)

        def F(s, k=k):
            return join_state(cell, mod(X[k:], split_state(cell, mod, s))[1])

        Jt = torch.autograd.functional.jacobian(F, s0).numpy()
        assert rel(P[k][0], Jt) < 1e-10, (k, rel(P[k][0], Jt))
    # lower block-triangular: no path from a higher layer down
    assert np.all(P[0][0][: net.layers[0][0].state_size, net.layers[0][0].state_size:] == 0)


def single(mod, cell, layer, reverse):
    """A one-layer, one-direction real module holding ``mod``'s layer ``layer`` (its reverse copy)."""
    sfx = f"_l{layer}" + ("_reverse" if reverse else "")
    sd = {k.replace(sfx, "_l0"): v for k, v in mod.state_dict().items() if k.endswith(sfx)}
    m_in = sd["weight_ih_l0"].shape[1]
    kw = {"proj_size": mod.proj_size} if mod.proj_size else {}
    one = KINDS[cell](m_in, N, **kw).double()
    one.load_state_dict(sd)
    return one.requires_grad_(False)


def torch_node_gradients(cell, mod, x, cot):
    """∂L/∂h^(l,d)_k (and c) at every state node, L = Σ_t ⟨cot_t, y_t⟩, by torch autograd through
    one-layer real modules stepped one time step at a time; returns (grads, top output)."""
    L, D = mod.num_layers, 2 if mod.bidirectional else 1
    p = mod.proj_size or N
    B = x.shape[1]
    feed = torch.from_numpy(x)
    nodes, ys = {}, None
    for lay in range(L):
        outs = []
        for d in range(D):
            one = single(mod, cell, lay, d == 1)
            h = torch.zeros(1, B, p, dtype=torch.float64, requires_grad=True)
            c = torch.zeros(1, B, N, dtype=torch.float64, requires_grad=True)
            hs, cs, seq = [h], [c], []
            order = range(T) if d == 0 else range(T - 1, -1, -1)
            for t in order:
                if cell == "lstm":
                    _, (h, c) = one(feed[t:t + 1], (h, c))
                else:
                    _, h = one(feed[t:t + 1], h)
                hs.append(h)
                cs.append(c)
                seq.append(h[0])
            if d == 1:
                seq = seq[::-1]
            nodes[(lay, d)] = (hs, cs)
            outs.append(torch.stack(seq))
        feed = torch.cat(outs, dim=-1)
    ys = feed
    loss = (ys * torch.from_numpy(cot)).sum()
    flat = [v for (hs, cs) in nodes.values() for v in hs + (cs if cell == "lstm" else [])]
    grads = torch.autograd.grad(loss, flat, allow_unused=True)
    out, i = {}, 0
    for key, (hs, cs) in nodes.items():
        gh = [g for g in grads[i:i + T + 1]]
        i += T + 1
        gc = None
        if cell == "lstm":
            gc = grads[i:i + T + 1]
            i += T + 1
        zh = [torch.zeros_like(h) if g is None else g for g, h in zip(gh, hs, strict=True)]
        zc = None if gc is None else [torch.zeros_like(c) if g is None else g for g, c in zip(gc, cs, strict=True)]
        out[key] = (zh, zc)
    return out, ys.detach().numpy()


@pytest.mark.parametrize("cell,layers,bidir,proj", [
    ("lstm", 2, False, 0), ("lstm", 2, True, 0), ("gru", 3, True, 0), ("tanh-rnn", 2, True, 0),
    ("lstm", 2, True, 2)])
def test_every_layer_gradient_is_torch_autograd(cell, layers, bidir, proj):
    """∂L/∂s^(l,d)_k for every layer, direction and step, with a cotangent on every step."""
    mod = module(cell, layers, bidir, proj, seed=3)
    x = inputs(B=2, seed=4)
    with torch.no_grad():  # the oracle's composition of one-layer modules is the real module
        y_real = mod(torch.from_numpy(x))[0].numpy()
    net = stacked_network(cell, weights=mod)
    cot = np.random.default_rng(5).standard_normal((T, 2, net.output_size))
    want, y = torch_node_gradients(cell, mod, x, cot)
    assert rel(y, y_real) < 1e-13
    traj = net.unroll(x)
    assert rel(traj.outputs[-1], y_real) < 1e-13
    got = stacked_gradients(net, traj, cot)
    D = 2 if bidir else 1
    for lay in range(layers):
        for d in range(D):
            A = got[(lay, ("forward", "reverse")[d])]
            layer = net.layers[lay][d]
            gh, gc = want[(lay, d)]
            for k in range(T + 1):
                w = gh[k][0].numpy()
                if gc is not None:
                    w = np.concatenate([w, gc[k][0].numpy()], axis=-1)
                assert A[k].shape == (2, layer.state_size)
                assert rel(A[k], w) < 1e-10, (lay, d, k, rel(A[k], w))


def test_default_loss_is_sum_of_last_output_and_state_gradient_is_carried_state():
    """Default L = Σ y_T; ∂L/∂s_k of the carried stacked state = torch's gradient at the (h_n, c_n)
    the real 2-layer module passes from step k to k+1 (stepped one time step at a time)."""
    cell, mod, x = "lstm", module("lstm", 2, seed=6), inputs(B=1, seed=7)
    net = stacked_network(cell, weights=mod)
    A = stacked_state_gradient(net, net.unroll(x))
    X = torch.from_numpy(x)
    hc = (torch.zeros(2, 1, N, dtype=torch.float64, requires_grad=True),
          torch.zeros(2, 1, N, dtype=torch.float64, requires_grad=True))
    carried = [hc]
    for t in range(T):
        _, hc = mod(X[t:t + 1], hc)
        carried.append(hc)
    loss = hc[0][-1].sum()
    for k in range(T + 1):
        gh, gc = torch.autograd.grad(loss, carried[k], retain_graph=True, allow_unused=True)
        gc = torch.zeros_like(carried[k][1]) if gc is None else gc
        want = join_state(cell, (gh, gc)).numpy()
        assert rel(A[k][0], want) < 1e-10, k


@pytest.mark.parametrize("bidir", [True, False])
def test_per_layer_products_are_the_layers_own_recurrence(bidir):
    """The per-layer curve is ‖∂s^(l,d)_T/∂s^(l,d)_k‖ of the layer's own recurrence on its true
    inputs (the reverse one over reversed time), torch Jacobians of one-layer real modules; in a
    unidirectional stack it comes from the diagonal blocks of the whole product."""
    cell, mod, x = "lstm", module("lstm", 2, bidir, seed=8), inputs(B=1, seed=9)
    net = stacked_network(cell, weights=mod)
    flow = stacked_flow(net, x, spectral="svd", lyapunov=False)
    assert (flow.full is None) == bidir
    traj = net.unroll(x)
    with torch.no_grad():
        below = single(mod, cell, 0, False)(torch.from_numpy(x))[0]
        if bidir:
            below = torch.cat([below, torch.flip(single(mod, cell, 0, True)(torch.flip(torch.from_numpy(x), [0]))[0],
                                                 [0])], dim=-1)
    assert rel(traj.outputs[0], below.numpy()) < 1e-13
    feed = {0: torch.from_numpy(x), 1: below}
    for lf in flow.layers:
        one = single(mod, cell, lf.layer, lf.direction == "reverse")
        xs = feed[lf.layer] if lf.direction == "forward" else torch.flip(feed[lf.layer], dims=[0])
        for k in range(T):
            with torch.no_grad():
                sk = one(xs[:k])[1] if k else None
            s0 = join_state(cell, sk) if k else torch.zeros(2 * N, dtype=torch.float64)

            def F(s, k=k, one=one, xs=xs):
                return join_state(cell, one(xs[k:], (s[None, None, :N], s[None, None, N:]))[1])

            J = torch.autograd.functional.jacobian(F, s0).numpy()
            assert abs(lf.curves.log10_norm_2[0, k] - np.log10(np.linalg.norm(J, 2))) < 1e-10
            assert abs(lf.curves.log10_norm_fro[0, k] - np.log10(np.linalg.norm(J))) < 1e-10


def test_whole_stack_curves_match_torch_norms():
    cell, mod, x = "gru", module("gru", 2, seed=10), inputs(B=1, seed=11)
    net = stacked_network(cell, weights=mod)
    flow = stacked_flow(net, x, spectral="power", lyapunov=2)
    P = stacked_products(net, x)
    for k in range(T):  # power iteration (certified to 1e-10) against an SVD of the plain product
        assert abs(flow.full.log10_norm_2[0, k] - np.log10(np.linalg.norm(P[k][0], 2))) < 1e-9
    assert flow.lyapunov.shape == (2,)
    rec = flow.to_json()
    assert [r["k"] for r in rec["curve"]] == list(range(T))
    assert [(r["layer"], r["direction"]) for r in rec["layers"]] == [(0, "forward"), (1, "forward")]


def test_bad_cotangents_and_contradictions_are_one_error():
    from gradflow import GradflowError

    mod = module("lstm", 2, True)
    net = stacked_network("lstm", weights=mod)
    x = inputs()
    with pytest.raises(GradflowError, match="cotangents must have shape"):
        stacked_gradients(net, net.unroll(x), np.ones((T, 1, 3)))
    with pytest.raises(GradflowError, match="NaN"):
        stacked_gradients(net, net.unroll(x), np.full((T, 1, 2 * N), np.nan))
    with pytest.raises(GradflowError, match="contradicts"):
        stacked_network("gru", weights=mod)
    with pytest.raises(GradflowError, match="contradicts"):
        stacked_network("lstm", weights=mod, layers=3)
    with pytest.raises(GradflowError, match="no whole-stack"):
        net.stacked_jacobian(net.unroll(x), 1)


def test_cli_flow_analyses_every_layer(tmp_path, capsys):
    from gradflow._cli import main

    mod = module("lstm", 2, True, proj=2, seed=12)
    path = tmp_path / "m.pt"
    torch.save(mod.state_dict(), path)
    assert main(["flow", "lstm", "--weights", str(path), "--steps", "4", "--json"]) == 0
    out = capsys.readouterr()
    rec = json.loads(out.out)
    assert "4 layer/direction" in out.err
    assert rec["num_layers"] == 2 and rec["bidirectional"] and rec["proj_size"] == 2
    assert [(r["layer"], r["direction"]) for r in rec["layers"]] == [
        (0, "forward"), (0, "reverse"), (1, "forward"), (1, "reverse")]
    assert rec["curve"] == [] and len(rec["layers"][0]["curve"]) == 5
    # the text table: every layer, the reverse one on its reversed clock
    assert main(["flow", "lstm", "--weights", str(path), "--steps", "4", "--no-lyapunov"]) == 0
    text = capsys.readouterr().out
    assert "layer 1 reverse (reversed time" in text and "no whole-stack product" in text


def test_cli_layer_still_picks_one_layer(tmp_path, capsys):
    """--layer 0 on a 2-layer module measures layer 0 alone: the one-layer JSON, no "layers"."""
    from gradflow._cli import main

    mod = module("gru", 2, seed=13)
    path = tmp_path / "g.pt"
    torch.save(mod.state_dict(), path)
    assert main(["flow", "gru", "--weights", str(path), "--steps", "3", "--layer", "0", "--json",
                 "--no-lyapunov"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert "layers" not in rec and len(rec["curve"]) == 3
    assert main(["flow", "gru", "--weights", str(path), "--steps", "3", "--json", "--no-lyapunov"]) == 0
    out = capsys.readouterr()
    rec = json.loads(out.out)
    assert [r["direction"] for r in rec["layers"]] == ["forward", "forward"] and len(rec["curve"]) == 3
    assert main(["flow", "gru", "--weights", str(path), "--steps", "3", "--carousel"]) == 2
    assert "gradflow: error: --carousel" in capsys.readouterr().err


def test_depth_time_heat_map():
    import matplotlib

    matplotlib.use("Agg")
    import gradflow as gf

    net = gf.stacked_network("lstm", 3, 2, layers=2, bidirectional=True, seed=2)
    flow = gf.stacked_flow(net, inputs(B=2), lyapunov=False)
    labels, grid = flow.grad_map()
    assert labels == ["layer 1 forward", "layer 1 reverse", "layer 0 forward", "layer 0 reverse"]
    assert grid.shape == (4, T + 2) and np.isnan(grid[0, T + 1]) and np.isnan(grid[1, 0])
    # the default loss Σ y_T reaches the top reverse direction only at t = T (its first step)
    assert np.isneginf(grid[1, 1:T]).all() and np.isfinite(grid[1, T])
    ax = gf.plot_depth_time(flow)
    assert ax.get_ylabel() == "layer (top first)"
    label = ax.figure.axes[-1].get_ylabel()
    finite = grid[np.isfinite(grid)]
    assert f"{finite.min():.3g}" in label and f"{finite.max():.3g}" in label
    import matplotlib.pyplot as plt

    plt.close(ax.figure)


@pytest.mark.parametrize("layers,bidir,proj,output", [(1, False, 2, None), (3, True, 3, None), (2, False, 1, 5)])
def test_projected_parameter_count_is_torchs(layers, bidir, proj, output):
    import gradflow as gf

    mod = torch.nn.LSTM(7, 5, num_layers=layers, bidirectional=bidir, proj_size=proj)
    want = sum(q.numel() for q in mod.parameters())
    if output is not None:
        want += torch.nn.Linear((2 if bidir else 1) * proj, output).weight.numel() + output
    got = gf.count_params("lstm", 5, 7, layers=layers, bidirectional=bidir, proj_size=proj, output=output)
    assert got.total == want and got.as_dict()["proj_size"] == proj
    assert "p" in str(got.formula)


def test_params_cli_proj_size(capsys):
    from gradflow._cli import main

    assert main(["params", "lstm", "--hidden", "5", "--input", "7", "--proj-size", "2", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["total"] == sum(q.numel() for q in torch.nn.LSTM(7, 5, proj_size=2).parameters())
    assert main(["params", "gru", "--hidden", "5", "--input", "7", "--proj-size", "2"]) == 2
    assert "only an LSTM-type cell" in capsys.readouterr().err
    assert main(["params", "lstm", "--hidden", "5", "--input", "7", "--proj-size", "5"]) == 2
    assert "smaller than the hidden size" in capsys.readouterr().err


def test_batch_first_module_and_inputs_on_the_cli(tmp_path, capsys):
    """A batch_first module and (batch, T, m) inputs with --batch-first: the outputs are the real
    module's, and the whole-stack curve is torch's Jacobian norm on the transposed inputs."""
    from gradflow._cli import main

    torch.manual_seed(14)
    mod = torch.nn.GRU(M, N, num_layers=2, batch_first=True).double().requires_grad_(False)
    xb = np.random.default_rng(15).standard_normal((2, T, M))  # (batch, T, m)
    with pytest.warns(UserWarning, match="batch_first=True"):
        net = stacked_network("gru", weights=mod)
    x = xb.transpose(1, 0, 2)
    assert rel(np.asarray(net.unroll(x).outputs[-1]).transpose(1, 0, 2), mod(torch.from_numpy(xb))[0].numpy()) < 1e-13
    path, xs = tmp_path / "g.pt", tmp_path / "x.npy"
    torch.save(mod.state_dict(), path)
    np.save(xs, xb)
    assert main(["flow", "gru", "--weights", str(path), "--inputs", str(xs), "--batch-first", "--json",
                 "--spectral", "svd", "--no-lyapunov"]) == 0
    rec = json.loads(capsys.readouterr().out)
    X = torch.from_numpy(xb)
    norms = []
    for b in range(2):  # per sequence: log10 ‖∂(h_n)/∂(h0)‖₂ of the real module, then the batch mean
        J = torch.autograd.functional.jacobian(
            lambda s, b=b: mod(X[b:b + 1], s.reshape(2, 1, N))[1].reshape(-1), torch.zeros(2 * N, dtype=torch.float64))
        norms.append(np.log10(np.linalg.norm(J.numpy(), 2)))
    assert abs(rec["curve"][0]["log10_norm_2"] - np.mean(norms)) < 1e-10


def test_initial_states_in_pytorch_layout():
    """h0/c0 as the real module takes them: outputs and the gradient at the initial states match."""
    mod = module("lstm", 2, True, proj=2, seed=16)
    net = stacked_network("lstm", weights=mod)
    x = inputs(B=2, seed=17)
    rng = np.random.default_rng(18)
    h0, c0 = rng.standard_normal((4, 2, 2)), rng.standard_normal((4, 2, N))
    H0 = torch.tensor(h0, requires_grad=True)
    C0 = torch.tensor(c0, requires_grad=True)
    y, _ = mod(torch.from_numpy(x), (H0, C0))
    gh, gc = torch.autograd.grad(y[-1].sum(), (H0, C0))
    traj = net.unroll(x, {"h": h0, "c": c0})
    assert rel(traj.outputs[-1], y.detach().numpy()) < 1e-13
    A = stacked_gradients(net, traj)
    for j, (lay, d) in enumerate([(0, "forward"), (0, "reverse"), (1, "forward"), (1, "reverse")]):
        want = np.concatenate([gh[j].numpy(), gc[j].numpy()], axis=-1)
        assert rel(A[(lay, d)][0], want) < 1e-10 or np.abs(want).max() == 0 and np.abs(A[(lay, d)][0]).max() == 0
    from gradflow import GradflowError

    with pytest.raises(GradflowError, match=r"initial state c must have shape \(layers x directions"):
        net.unroll(x, {"c": c0[:2]})


def test_cli_names_a_bad_upper_layer(tmp_path, capsys):
    from gradflow._cli import main

    sd = module("lstm", 2, seed=19).state_dict()
    sd["weight_hh_l1"][0, 0] = float("nan")
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    assert main(["flow", "lstm", "--weights", str(path), "--steps", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradflow: error: ") and "layer 1 (forward)" in err and "NaN" in err, err


def test_cli_real_loss_on_every_step_and_initial_states(tmp_path, capsys):
    """--loss every with the model's own head and --initial h0/c0 (PyTorch's (L·D, B, n)) on a
    2-layer bidirectional LSTM: ‖∂L/∂h^(l,d)‖, ‖∂L/∂c^(l,d)‖ at the initial states are torch's
    gradients at h0, c0 through the real module and head (cross-entropy summed over steps and batch)."""
    from gradflow._cli import main

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(M, N, num_layers=2, bidirectional=True)
            self.head = torch.nn.Linear(2 * N, 4)

    torch.manual_seed(20)
    model = Model().double()
    B = 2
    x = inputs(B=B, seed=21)
    rng = np.random.default_rng(22)
    y = rng.integers(0, 4, (T, B))
    h0, c0 = rng.standard_normal((4, B, N)), rng.standard_normal((4, B, N))
    for name, arr in (("m.pt", None), ("x.npy", x), ("y.npy", y)):
        if arr is None:
            torch.save(model.state_dict(), tmp_path / name)
        else:
            np.save(tmp_path / name, arr)
    np.savez(tmp_path / "init.npz", h0=h0, c0=c0)
    assert main(["flow", "lstm", "--weights", str(tmp_path / "m.pt"), "--inputs", str(tmp_path / "x.npy"),
                 "--loss", "every", "--targets", str(tmp_path / "y.npy"), "--initial", str(tmp_path / "init.npz"),
                 "--json", "--no-lyapunov"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["loss"] == "every"
    H0 = torch.tensor(h0, requires_grad=True)
    C0 = torch.tensor(c0, requires_grad=True)
    out, _ = model.rnn(torch.from_numpy(x), (H0, C0))
    logits = model.head(out)
    loss = torch.nn.functional.cross_entropy(logits.reshape(T * B, 4), torch.from_numpy(y).reshape(-1), reduction="sum")
    gh, gc = torch.autograd.grad(loss, (H0, C0))
    for j, lay in enumerate(rec["layers"]):
        first = lay["curve"][0]  # k = 0: the initial state (reverse: t = T + 1)
        for key, g in (("log10_grad_norm_h", gh), ("log10_grad_norm_c", gc)):
            want = np.mean(np.log10(np.linalg.norm(g[j].numpy(), axis=-1)))
            assert abs(first[key] - want) < 1e-10, (j, key)
