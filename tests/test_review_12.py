"""Review 12: the lead's last two hours of changes, each against an independent oracle.

1. The chain's structured product (``_scaled_sum``'s einsum) and J_t's fused batched matmul:
   products of every registered cell against J_t by central finite differences of the forward
   step, chained here (float64 and float32, B = 1 and 3); the 1997 carousel against the
   compiled blocks' truncated J_t chained here.
2. ``gradient_flow``'s gradient curves (the reverse accumulation fed by the sweep) against
   PyTorch autograd for the sum / last / every losses.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradflow as gf
from gradflow._numeric.flow import products

T, M = 4, 3


def _fd_jacobian(net, s, x, h=1e-6):
    """∂s_t/∂s_{t−1} (B, N, N) by central differences of the forward step (float64)."""
    B, N = s.shape
    J = np.empty((B, N, N))
    for j in range(N):
        e = np.zeros(N)
        e[j] = h
        J[:, :, j] = (net.step(s + e, x)[0] - net.step(s - e, x)[0]) / (2 * h)
    return J


def _chained(Js):
    """[J_T ⋯ J_{k+1} for k = T−1 … 0], latest first, by plain matmul."""
    out, P = [], None
    for J in reversed(Js):
        P = J if P is None else P @ J
        out.append(P)
    return out


def _true(pr):
    return np.asarray(pr.P, dtype=np.float64) * 10.0 ** np.asarray(pr.log10_scale, dtype=np.float64)[:, None, None]


@pytest.mark.parametrize("name", sorted(gf.CELLS))
def test_products_equal_finite_difference_chain(name):
    n = 8
    net64 = gf.network(name, n, M, seed=1)
    x = gf.random_inputs(T, M, batch=3, seed=2)
    traj = net64.unroll(x)
    Js = [_fd_jacobian(net64, np.asarray(traj.states[t - 1]), np.asarray(traj.inputs[t - 1]))
          for t in range(1, T + 1)]
    want = _chained(Js)
    for dtype, tol in ((np.float64, 1e-6), (np.float32, 2e-3)):
        for B in (1, 3):
            net = gf.network(name, n, M, seed=1, dtype=dtype)
            tr = net.unroll(x[:, :B].astype(dtype))
            got = [_true(pr) for pr in products(net, tr)]
            assert len(got) == T
            for k, (g, w) in enumerate(zip(got, want, strict=True)):
                scale = max(np.max(np.abs(w[:B])), 1e-30)
                err = np.max(np.abs(g - w[:B])) / scale
                assert err < tol, (name, np.dtype(dtype).name, B, T - 1 - k, err)


@pytest.mark.parametrize("name", [c for c in sorted(gf.CELLS) if "c" in gf.get_cell(c).states])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_carousel_products_equal_compiled_truncated_chain(name, dtype):
    net = gf.network(name, 8, M, seed=3, dtype=dtype)
    traj = net.unroll(gf.random_inputs(T, M, batch=3, seed=4, dtype=dtype))
    Js = [np.asarray(net.step_jacobian(traj, t, truncated=True), dtype=np.float64) for t in range(1, T + 1)]
    want = _chained(Js)
    for structured in (False, True):
        got = [_true(pr) for pr in products(net, traj, truncated=True, dense=not structured)]
        for g, w in zip(got, want, strict=True):
            tol = 1e-12 if dtype == np.float64 else 1e-5
            assert np.max(np.abs(g - w)) <= tol * max(np.max(np.abs(w)), 1e-30)


def _torch_grads(kind, net, x, loss, V, c, y):
    """‖∂L/∂s_k‖, ‖∂L/∂c_k‖ (B, T) by PyTorch autograd of nn.LSTMCell / nn.GRUCell with ``net``'s
    weights; the losses written out here (L summed over the batch)."""
    import torch

    n, m = net.hidden, net.input
    mod = (torch.nn.LSTMCell if kind == "lstm" else torch.nn.GRUCell)(m, n).double()
    mod.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in gf.to_state_dict(net.weights).items()})
    mod.requires_grad_(False)
    X = torch.from_numpy(x)
    Tn, B = X.shape[0], X.shape[1]
    Vt, ct = torch.from_numpy(V), torch.from_numpy(c)
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():  # the trajectory s_0 … s_T
        h, cs = torch.zeros(B, n, dtype=torch.float64), torch.zeros(B, n, dtype=torch.float64)
        traj = [(h, cs)]
        for t in range(Tn):
            h, cs = mod(X[t], (h, cs)) if kind == "lstm" else (mod(X[t], h), cs)
            traj.append((h, cs))

    def term(t, h):  # the loss's part read from h_t
        if loss == "sum":
            return h.sum() if t == Tn else 0.0
        if loss == "last":
            return ce(h @ Vt.T + ct, torch.from_numpy(y[-1]), reduction="sum") if t == Tn else 0.0
        return ce(h @ Vt.T + ct, torch.from_numpy(y[t - 1]), reduction="sum") if t >= 1 else 0.0

    full, cell = np.empty((B, Tn)), np.empty((B, Tn))
    for k in range(Tn):  # s_k a leaf: L as a function of s_k alone, run forward from it
        h0 = traj[k][0].clone().requires_grad_(True)
        c0 = traj[k][1].clone().requires_grad_(True)
        h, cs, L = h0, c0, term(k, h0)
        for t in range(k, Tn):
            h, cs = mod(X[t], (h, cs)) if kind == "lstm" else (mod(X[t], h), cs)
            L = L + term(t + 1, h)
        L.backward()
        gh = h0.grad.numpy()
        sq = (gh * gh).sum(-1)
        if kind == "lstm":
            gc = c0.grad.numpy()
            cell[:, k] = np.log10(np.sqrt((gc * gc).sum(-1)))
            sq = sq + (gc * gc).sum(-1)
        full[:, k] = 0.5 * np.log10(sq)
    return full, cell


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("loss", ["sum", "last", "every"])
def test_gradient_curves_equal_torch_autograd(kind, loss):
    n, Tn, B, K = 6, 7, 3, 4
    net = gf.network(kind, n, M, seed=5)
    x = np.asarray(gf.random_inputs(Tn, M, batch=B, seed=6))
    rng = np.random.default_rng(7)
    V, c = rng.standard_normal((K, n)), rng.standard_normal(K)
    y = rng.integers(0, K, size=(Tn, B))
    kw = {} if loss == "sum" else {"head": (V, c), "targets": y[-1] if loss == "last" else y}
    fl = gf.gradient_flow(net, x, loss=loss, lyapunov=False, mode="exact", carousel=kind == "lstm", **kw)
    full, cell = _torch_grads(kind, net, x, loss, V, c, y)
    np.testing.assert_allclose(fl.full.log10_grad_norm, full, rtol=0, atol=1e-10)
    if kind == "lstm":
        np.testing.assert_allclose(fl.cell_state.log10_grad_norm, cell, rtol=0, atol=1e-10)
        assert np.isfinite(fl.carousel.log10_grad_norm).all()


def _svd_truth(net, traj):
    """log10 ‖∂s_T/∂s_k‖₂ and ‖·‖_F (B, T), k = 0 … T−1, from NumPy's SVD of the dense chain."""
    ps = list(products(net, traj, dense=True))[::-1]
    two = np.array([np.log10(np.linalg.svd(_true(p), compute_uv=False)[:, 0]) for p in ps]).T
    fro = np.array([0.5 * np.log10(np.sum(_true(p) ** 2, axis=(1, 2))) for p in ps]).T
    return two, fro


def test_band_collapses_to_the_spectral_norm_when_probes_span_the_rows():
    from gradflow._numeric.matrix_free import _probe_basis, _probes, sketch_sweep

    net = gf.network("lstm", 4, M, seed=1)
    traj = net.unroll(gf.random_inputs(6, M, batch=2, seed=2))
    N = net.state_size
    two, fro = _svd_truth(net, traj)
    seed = 1  # 8 Rademacher probes of full rank on the 8 rows (q = m)
    assert _probe_basis(_probes("rademacher", N, 8, seed), 2).q == N
    c = sketch_sweep(net, traj, np.ones((2, N)), {"full": (slice(0, N), slice(0, N))}, probes=8,
                     probe_blocks=2, seed=seed)["full"]
    np.testing.assert_allclose(c.log10_norm_2_low, two, rtol=0, atol=1e-10)
    np.testing.assert_allclose(c.log10_norm_2_high, two, rtol=0, atol=1e-10)
    np.testing.assert_allclose(c.log10_norm_fro, fro, rtol=0, atol=1e-10)


def test_rank_deficient_probes_repeating_each_other_have_no_standard_error():
    """Rademacher probes (1, 1), (1, 1) on 2 rows (q = 1 < m = 2), one per probe block: every
    leave-one-block-out estimate equals the estimate whatever P, so the jackknife's se was 0 and
    the estimate off by ~0.1 decade read as certain, the ‖·‖₂ band missing the SVD's value."""
    from gradflow._numeric.matrix_free import _probes, sketch_sweep

    net = gf.network("tanh-rnn", 2, M, seed=1)
    traj = net.unroll(gf.random_inputs(6, M, batch=2, seed=2))
    assert (_probes("rademacher", 2, 2, 4) == 1).all()
    two, fro = _svd_truth(net, traj)
    c = sketch_sweep(net, traj, np.ones((2, 2)), {"full": (slice(0, 2), slice(0, 2))}, probes=2,
                     probe_blocks=2, seed=4)["full"]
    assert np.max(np.abs(c.log10_norm_fro - fro)) > 0.05  # an estimate, not the value
    assert np.isinf(c.log10_norm_fro_se).all()
    assert (c.log10_norm_2_low <= two + 1e-12).all() and (c.log10_norm_2_high >= two).all()
    from gradflow._numeric.matrix_free import batch_mean_se

    assert np.isinf(batch_mean_se(c)).all()


def _row(cell, gain, init, m, rate):
    return {"cell": cell, "gain": gain, "forget_bias": None, "hidden": 32, "input": m, "steps": 10,
            "seed": 0, "batch": 2, "init": init, "rate": rate, "rate_fro": rate, "rate_grad": rate,
            "log10_norm_k0": rate, "rate_cell_state": None}


def test_sweep_figures_name_each_cells_init_and_input_when_they_differ(tmp_path):
    """A default sweep of lstm and s4d runs lstm at the orthogonal init with m = 4 and s4d at
    s4d-lin with m = n/32 = 1 (grid_points): the legend and the panels said neither."""
    import matplotlib.pyplot as plt

    rows = [_row("lstm", 0.5, "orthogonal", 4, -0.2), _row("lstm", 1.0, "orthogonal", 4, -0.14),
            _row("s4d", 1.0, "s4d-lin", 1, -0.004)]
    pts = gf.grid_points(["lstm", "s4d"], gains=(0.5, 1.0), hidden=(32,), steps=(10,), batch=2)
    assert {(p.cell, p.init, p.input) for p in pts} == {(r["cell"], r["init"], r["input"]) for r in rows}
    ax = gf.plot_sweep_rates(rows)
    labels = [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else \
        [line.get_label() for line in ax.get_lines()]
    assert any("lstm" in t and "orthogonal" in t and "m = 4" in t for t in labels), labels
    assert any("s4d" in t and "s4d-lin" in t and "m = 1" in t for t in labels), labels
    plt.close(ax.figure)
    same = [r for r in rows if r["cell"] == "lstm"]  # one setup: labels stay the cell's name
    ax = gf.plot_sweep_rates(same)
    assert [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")] == ["lstm"]
    plt.close(ax.figure)


def test_cli_flow_streaming_run_stays_within_the_guards_estimate(monkeypatch, capsys):
    """``gradflow flow indrnn`` (the diagonal path, no trajectory kept) at T = 4000: the guard
    counted the inputs and (B, T) curves only, but the CLI's per-step record and JSON text are
    ~350 bytes a step (at T = 200 000: peak 81 MiB, estimate 15 MiB); now counted, the peak stays below it."""
    import tracemalloc

    import gradflow._cli.flow as cli_flow
    from gradflow._cli import main

    main(["flow", "indrnn", "--hidden", "8", "--input", "1", "--steps", "5", "--json"])  # imports, caches
    seen = []
    real = cli_flow.check_flow_size

    def spy(*args, **kw):
        seen.append(real(*args, **kw))
        return seen[-1]

    monkeypatch.setattr(cli_flow, "check_flow_size", spy)
    capsys.readouterr()
    tracemalloc.start()
    try:
        assert main(["flow", "indrnn", "--hidden", "8", "--input", "1", "--steps", "4000", "--json"]) == 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert capsys.readouterr().out.count('"k"') == 4000
    assert peak <= seen[-1], (peak, seen[-1])
