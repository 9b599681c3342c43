"""The numeric engine on CuPy arrays: CuPy in, CuPy out, and the same numbers as NumPy.

Oracle: the NumPy run of the same weights and inputs (itself checked against PyTorch and finite
differences in the other engine tests). Skipped where CuPy or a CUDA device is missing.
"""

from __future__ import annotations

import numpy as np
import pytest
from _cupy import cupy, needs_device  # skips the module without CuPy

from gradflow._numeric.flow import gradient_flow, loss_gradient, network, random_inputs, sweep
from gradflow._numeric.weights import init_weights

pytestmark = needs_device

CELLS = ["tanh-rnn", "relu-rnn", "sigmoid-rnn", "residual-rnn", "lstm", "lstm-1997", "gru", "gru-cho"]
N, M, T, B = 4, 3, 8, 3


def nets(name, **kw):
    w_np = init_weights(name, N, M, scheme="gaussian", gain=1.3, seed=2, **kw)
    w_cp = init_weights(name, N, M, scheme="gaussian", gain=1.3, seed=2, xp=cupy, **kw)
    return network(name, weights=w_np), network(name, weights=w_cp)


@pytest.mark.parametrize("name", CELLS)
def test_weights_move_to_cupy(name):
    w = init_weights(name, N, M, seed=1, xp=cupy)
    ref = init_weights(name, N, M, seed=1)
    assert set(w.arrays) == set(ref.arrays)
    for k, a in w.arrays.items():
        assert isinstance(a, cupy.ndarray), k
        np.testing.assert_array_equal(cupy.asnumpy(a), ref.arrays[k])


@pytest.mark.parametrize("name", CELLS)
def test_states_and_jacobians_are_cupy_and_match_numpy(name):
    n_np, n_cp = nets(name)
    x = random_inputs(T, M, batch=B, seed=4)
    x_cp = random_inputs(T, M, batch=B, seed=4, xp=cupy)
    assert isinstance(x_cp, cupy.ndarray)
    t_np, t_cp = n_np.unroll(x), n_cp.unroll(x_cp)
    for t in range(T + 1):
        assert isinstance(t_cp.states[t], cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(t_cp.states[t]), t_np.states[t], rtol=1e-12, atol=1e-13)
    for t in (1, T // 2, T):
        J = n_cp.step_jacobian(t_cp, t)
        assert isinstance(J, cupy.ndarray)
        assert J.shape == (B, n_np.state_size, n_np.state_size)
        np.testing.assert_allclose(cupy.asnumpy(J), n_np.step_jacobian(t_np, t), rtol=1e-12, atol=1e-13)
    g = loss_gradient(n_cp, t_cp)
    assert isinstance(g, cupy.ndarray)


@pytest.mark.parametrize("name", CELLS)
def test_sweep_products_are_cupy_and_match_numpy(name):
    n_np, n_cp = nets(name)
    x = random_inputs(T, M, batch=B, seed=4)
    got: dict = {}

    def collect(store):
        def each(k, P, logscale):
            store[k] = (P, logscale)
        return each

    want: dict = {}
    t_np, t_cp = n_np.unroll(x), n_cp.unroll(cupy.asarray(x))
    sweep(n_np, t_np, loss_gradient(n_np, t_np), blocks={}, each=collect(want))
    sweep(n_cp, t_cp, loss_gradient(n_cp, t_cp), blocks={}, each=collect(got))
    assert sorted(got) == list(range(T))
    for k in range(T):
        P, ls = got[k]
        assert isinstance(P, cupy.ndarray) and isinstance(ls, cupy.ndarray)
        true_cp = cupy.asnumpy(P) * 10.0 ** cupy.asnumpy(ls)[:, None, None]
        true_np = want[k][0] * 10.0 ** want[k][1][:, None, None]
        np.testing.assert_allclose(true_cp, true_np, rtol=1e-10, atol=1e-12 * np.max(np.abs(true_np)))


FLOW_CASES = [(c, "power") for c in CELLS] + [("tanh-rnn", "svd"), ("lstm", "svd")]


@pytest.mark.parametrize("name,spectral", FLOW_CASES)
def test_flow_curves_match_numpy(name, spectral):
    n_np, n_cp = nets(name, **({"forget_bias": 1.0} if name == "lstm" else {}))
    x = random_inputs(T, M, batch=B, seed=6)
    rng = np.random.default_rng(0)
    out = (rng.standard_normal((5, N)), rng.standard_normal(5), np.array([0, 3, 4]))
    for output in (None, out):
        f_np = gradient_flow(n_np, x, output=output, spectral=spectral, carousel=True)
        f_cp = gradient_flow(n_cp, cupy.asarray(x), output=output, spectral=spectral, carousel=True)
        pairs = [(f_np.full, f_cp.full), (f_np.cell_state, f_cp.cell_state), (f_np.carousel, f_cp.carousel)]
        for a, b in pairs:
            assert (a is None) == (b is None)
            if a is None:
                continue
            for key in ("log10_norm_2", "log10_norm_fro", "log10_grad_norm"):
                va, vb = getattr(a, key), np.asarray(getattr(b, key))
                assert va.shape == vb.shape == (B, T)
                np.testing.assert_array_equal(np.isfinite(va), np.isfinite(vb))
                fin = np.isfinite(va)
                np.testing.assert_allclose(vb[fin], va[fin], rtol=0, atol=1e-9, err_msg=key)
        np.testing.assert_allclose(np.asarray(f_cp.lyapunov), f_np.lyapunov, rtol=0, atol=1e-9)
        if f_np.bound is None:
            assert f_cp.bound is None
        else:
            np.testing.assert_allclose(np.asarray(f_cp.bound), f_np.bound, rtol=0, atol=1e-12)


def test_network_built_directly_on_cupy():
    net = network("gru", N, M, seed=3, xp=cupy)
    assert all(isinstance(a, cupy.ndarray) for a in net.weights.arrays.values())
    traj = net.unroll(random_inputs(T, M, seed=1, xp=cupy))
    assert isinstance(traj.states[-1], cupy.ndarray)
    ref = network("gru", N, M, seed=3)
    want = ref.unroll(random_inputs(T, M, seed=1)).states[-1]
    np.testing.assert_allclose(cupy.asnumpy(traj.states[-1]), want, rtol=1e-12, atol=1e-13)


def test_float32_on_cupy():
    net = network("lstm", N, M, seed=3, xp=cupy, dtype=np.float32)
    traj = net.unroll(random_inputs(T, M, seed=1, xp=cupy))
    assert traj.states[-1].dtype == cupy.float32
    assert net.step_jacobian(traj, T).dtype == cupy.float32
    f32 = gradient_flow(net, random_inputs(T, M, seed=1, xp=cupy))
    f64 = gradient_flow(network("lstm", N, M, seed=3), random_inputs(T, M, seed=1))
    assert np.max(np.abs(10 ** (np.asarray(f32.full.log10_norm_2) - f64.full.log10_norm_2) - 1)) <= 1e-4


def test_size_guard_reads_the_devices_free_memory():
    """On a real card the guard's budget is the device's free memory (plus CuPy's pooled free
    blocks), as CUDA reports it, not the host's."""
    from gradflow._numeric import size_guard as sg

    free, total = cupy.cuda.runtime.memGetInfo()
    got = sg._gpu_free()
    assert got is not None and free <= got <= total + cupy.get_default_memory_pool().total_bytes()
    net = network("lstm", weights=init_weights("lstm", N, M, seed=1, xp=cupy))
    assert sg.on_gpu(net.xp)
