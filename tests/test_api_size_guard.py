"""gradient_flow and singular_values from Python check their buffers before allocating, as the CLI does.

The memory is fixed with GRADFLOW_MEMORY_LIMIT. Oracle for the bytes named: an independent lower
bound written out here, the trajectory (T + 1)·B·N float64 numbers plus one N × N product per
sequence, B·N² (the estimate must not be below what the run certainly holds). A refused call must
allocate next to nothing (tracemalloc).
"""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

from gradflow import GradflowError, gradient_flow, network, random_inputs, singular_values

UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def _named_bytes(message: str) -> float:
    v, unit = re.search(r"needs about ([0-9.]+) (B|KiB|MiB|GiB|TiB)", message).groups()
    return float(v) * UNITS[unit]


def test_exact_flow_too_large_is_refused_before_allocating_with_the_way_out(monkeypatch):
    n, m, T, B = 256, 4, 200, 8                       # LSTM: N = 512
    net, x = network("lstm", n, m), random_inputs(T, m, batch=B)
    gradient_flow(network("lstm", 3, m), random_inputs(3, m))  # derive the cell's kernels first
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", "100M")
    tracemalloc.start()
    try:
        with pytest.raises(GradflowError) as e:
            gradient_flow(net, x, mode="exact")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(e.value)
    N = 2 * n
    assert _named_bytes(msg) >= 8 * ((T + 1) * B * N + B * N * N)
    assert "100.00 MiB is available" in msg and "hidden size 256" in msg and "200 steps" in msg
    assert 'mode="matrix-free"' in msg and "GRADFLOW_MEMORY_LIMIT" in msg and "batch of at most" in msg
    assert "\n" not in msg
    assert peak < 2 << 20                             # nothing of the run was allocated


def test_auto_mode_and_matrix_free_are_checked_too(monkeypatch):
    n, m, T, B = 256, 4, 200, 8
    net, x = network("lstm", n, m), random_inputs(T, m, batch=B)
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", "20M")
    for mode in ("auto", "matrix-free"):
        with pytest.raises(GradflowError, match="matrix-free mode needs about") as e:
            gradient_flow(net, x, mode=mode)
        assert _named_bytes(str(e.value)) >= 8 * (T + 1) * B * 2 * n
    with pytest.raises(GradflowError, match="probes"):  # a bad probe count is still its own error
        gradient_flow(net, x, mode="matrix-free", probes="many")


def test_singular_values_is_checked_before_the_unroll(monkeypatch):
    n, m, T, B = 256, 4, 200, 8
    net, x = network("lstm", n, m), random_inputs(T, m, batch=B)
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", "40M")
    with pytest.raises(GradflowError, match="singular_values of lstm .* needs about") as e:
        singular_values(net, x, [0])
    assert _named_bytes(str(e.value)) >= 8 * ((T + 1) * B * 2 * n + B * (2 * n) ** 2)


def test_a_run_that_fits_is_not_refused(monkeypatch):
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", "100M")
    net = network("tanh-rnn", 8, 2)
    flow = gradient_flow(net, random_inputs(20, 2, batch=2), lyapunov=False)
    assert flow.mode == "exact" and np.all(np.isfinite(flow.full.mean()["log10_norm_2"]))


def test_stacked_flow_is_checked_before_the_unroll(monkeypatch):
    from gradflow import stacked_flow, stacked_network

    net = stacked_network("lstm", 128, 4, layers=2)   # whole stack N = 2·2·128 = 512
    T, B = 200, 8
    x = random_inputs(T, 4, batch=B)
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", "60M")
    with pytest.raises(GradflowError, match="^stacked_flow: .* needs about .*GRADFLOW_MEMORY_LIMIT") as e:
        stacked_flow(net, x)
    assert _named_bytes(str(e.value)) >= 8 * ((T + 1) * B * 512 + B * 512 * 512)
    with pytest.raises(GradflowError, match="needs about"):  # batch first: the same sizes
        stacked_flow(net, np.swapaxes(x, 0, 1), batch_first=True)


def test_products_and_cell_state_paths_are_checked(monkeypatch):
    from gradflow import cell_state_paths, products

    n, m, T, B = 256, 4, 20, 8                        # LSTM: N = 512, one (B, N, N) float64 buffer 16 MiB
    net, x = network("lstm", n, m), random_inputs(T, m, batch=B)
    traj = net.unroll(x)
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", "40M")
    with pytest.raises(GradflowError, match=r"products ∂s_T/∂s_k of lstm .*\(8, 512, 512\).*smaller batch") as e:
        next(products(net, traj))
    assert _named_bytes(str(e.value).replace("need about", "needs about")) >= 2 * 8 * B * 512 ** 2
    with pytest.raises(GradflowError, match="cell_state_paths of lstm .* needs about"):
        cell_state_paths(net, x)
