"""Every cell and every engine path on CuPy arrays: the same curves as the NumPy run.

Oracle: the NumPy run of the same weights and inputs (itself checked against PyTorch autograd,
mpmath and finite differences in the other engine tests). ``tests/test_engine_cupy.py`` covers
the classic cells' states, Jacobians and products; this file covers every registered cell through
:func:`gradient_flow` with its defaults (dense sweep, diagonal path, block path, mLSTM's layout),
the matrix-free mode, the float32 chain, the per-step loss, the full Lyapunov spectrum and the
singular values. Skipped where CuPy or a CUDA device is missing.
"""

from __future__ import annotations

import numpy as np
import pytest
from _cupy import cupy, needs_device  # skips the module without CuPy

from gradflow import (
    CELLS,
    cell_state_paths,
    gradient_flow,
    init_weights,
    network,
    random_inputs,
    singular_values,
    state_drift,
)

pytestmark = needs_device

N, M, T, B = 3, 2, 6, 2


def pair(name, n=N, **kw):
    w = init_weights(name, n, M, seed=5, **kw)
    w_cp = init_weights(name, n, M, seed=5, xp=cupy, **kw)
    return network(name, weights=w), network(name, weights=w_cp)


def host(a):
    return cupy.asnumpy(a) if isinstance(a, cupy.ndarray) else np.asarray(a)


def same_curves(f_np, f_cp, atol=1e-9):
    for fam in ("full", "cell_state", "carousel"):
        a, b = getattr(f_np, fam), getattr(f_cp, fam)
        assert (a is None) == (b is None), fam
        if a is None:
            continue
        for key in ("log10_norm_2", "log10_norm_fro", "log10_grad_norm"):
            va, vb = host(getattr(a, key)), host(getattr(b, key))
            assert va.shape == vb.shape, (fam, key)
            np.testing.assert_array_equal(np.isfinite(va), np.isfinite(vb), err_msg=f"{fam} {key}")
            fin = np.isfinite(va)
            np.testing.assert_allclose(vb[fin], va[fin], rtol=0, atol=atol, err_msg=f"{fam} {key}")
    if f_np.lyapunov is None:
        assert f_cp.lyapunov is None
    else:
        a, b = host(f_np.lyapunov), host(f_cp.lyapunov)
        np.testing.assert_array_equal(np.isnan(b), np.isnan(a))  # the same "not resolved" ones
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-9)
    assert f_np.mode == f_cp.mode


@pytest.mark.parametrize("name", list(CELLS))
def test_every_cell_default_flow(name):
    n = 2 if name.startswith("mlstm") else N
    net_np, net_cp = pair(name, n)
    x = random_inputs(T, M, batch=B, seed=7)
    carousel = "c" in net_np.cell.states and name.endswith("lstm")
    f_np = gradient_flow(net_np, x, carousel=carousel)
    f_cp = gradient_flow(net_cp, cupy.asarray(x), carousel=carousel)
    same_curves(f_np, f_cp)


@pytest.mark.parametrize("name", ["tanh-rnn", "lstm", "gru", "lru"])
def test_matrix_free_mode(name):
    net_np, net_cp = pair(name)
    x = random_inputs(T, M, batch=B, seed=8)
    f_np = gradient_flow(net_np, x, mode="matrix-free", probes=8, probe_blocks=2)
    f_cp = gradient_flow(net_cp, cupy.asarray(x), mode="matrix-free", probes=8, probe_blocks=2)
    assert f_cp.mode == "matrix-free"
    # ‖∂L/∂s_k‖ is exact in both; the Frobenius estimate draws the same probes from a host RNG
    a, b = f_np.full.log10_grad_norm, host(f_cp.full.log10_grad_norm)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-9)
    np.testing.assert_allclose(host(f_cp.lyapunov), host(f_np.lyapunov), rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_float32_chain_against_float64(name):
    net_np, net_cp = pair(name)
    x = random_inputs(T, M, batch=B, seed=9)
    f64 = gradient_flow(net_np, x)
    f32 = gradient_flow(net_cp, cupy.asarray(x), dtype="float32")
    d = np.abs(host(f32.full.log10_norm_2) - f64.full.log10_norm_2)
    assert np.max(d) <= 1e-4


@pytest.mark.parametrize("name", ["lstm", "gru", "tanh-rnn"])
def test_every_step_loss_and_full_spectrum(name):
    net_np, net_cp = pair(name)
    x = random_inputs(T, M, batch=B, seed=10)
    rng = np.random.default_rng(1)
    V, c = rng.standard_normal((4, N)), rng.standard_normal(4)
    y = rng.integers(0, 4, size=(T, B))
    kw = dict(loss="every", lyapunov="full", spectral="svd")
    f_np = gradient_flow(net_np, x, head=(V, c), targets=y, **kw)
    f_cp = gradient_flow(net_cp, cupy.asarray(x), head=(cupy.asarray(V), cupy.asarray(c)),
                         targets=cupy.asarray(y), **kw)
    same_curves(f_np, f_cp)


@pytest.mark.parametrize("name", ["lstm", "gru", "tanh-rnn"])
def test_singular_values(name):
    net_np, net_cp = pair(name)
    x = random_inputs(T, M, batch=B, seed=11)
    s_np = singular_values(net_np, x, [0, 3])
    s_cp = singular_values(net_cp, cupy.asarray(x), [0, 3])
    assert sorted(s_cp) == [0, 3]
    for k in (0, 3):
        a, b = host(s_np[k]), host(s_cp[k])
        np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
        fin = np.isfinite(a)
        np.testing.assert_allclose(b[fin], a[fin], rtol=0, atol=1e-9)


def test_initial_states_and_last_step_loss():
    net_np, net_cp = pair("lstm")
    x = random_inputs(T, M, batch=B, seed=12)
    rng = np.random.default_rng(2)
    h0, c0 = rng.standard_normal((B, N)), rng.standard_normal((B, N))
    V, c = rng.standard_normal((4, N)), rng.standard_normal(4)
    y = rng.integers(0, 4, size=B)
    f_np = gradient_flow(net_np, x, initial={"h": h0, "c": c0}, loss="last", head=(V, c), targets=y)
    f_cp = gradient_flow(net_cp, cupy.asarray(x), initial={"h": cupy.asarray(h0), "c": cupy.asarray(c0)},
                         loss="last", head=(cupy.asarray(V), cupy.asarray(c)), targets=cupy.asarray(y))
    same_curves(f_np, f_cp)


def test_cell_state_paths_and_drift():
    net_np, net_cp = pair("lstm")
    x = random_inputs(T, M, batch=B, seed=13)
    p_np, p_cp = cell_state_paths(net_np, x), cell_state_paths(net_cp, cupy.asarray(x))
    for key in ("block", "carousel", "through_h"):
        np.testing.assert_allclose(host(getattr(p_cp, key)), getattr(p_np, key), rtol=0, atol=1e-9)
    d_np, d_cp = state_drift(net_np, x), state_drift(net_cp, cupy.asarray(x))
    for key in d_np.max_abs:
        np.testing.assert_allclose(host(d_cp.max_abs[key]), d_np.max_abs[key], rtol=1e-12)
