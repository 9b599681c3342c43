"""The size guard of a run on a GPU reads the device's free memory (plus CuPy's pooled free
blocks), not the host's. No GPU is needed here: the namespace is recognised by its name and the
device query is replaced by a fixed number of bytes."""

from __future__ import annotations

import types

import pytest

import gradflow as gf
from gradflow._numeric import size_guard as sg

CUPY = types.SimpleNamespace(__name__="array_api_compat.cupy")  # what array_namespace gives for CuPy
NUMPY = types.SimpleNamespace(__name__="array_api_compat.numpy")


@pytest.fixture
def gpu_with(monkeypatch):
    def set_free(nbytes):
        monkeypatch.setattr(sg, "_gpu_free", lambda: nbytes)
    monkeypatch.delenv("GRADFLOW_MEMORY_LIMIT", raising=False)
    return set_free


def test_device_memory_is_the_budget_on_a_gpu(gpu_with):
    cell = gf.get_cell("lstm")
    need = sg.flow_bytes(cell, 256, 256, 500, 1, 8)  # tens of MiB
    gpu_with(need // 2)
    with pytest.raises(gf.GradflowError, match="available on the GPU"):
        sg.check_flow_size(cell, 256, 256, 500, 1, 8, device=CUPY)
    assert sg.check_flow_size(cell, 256, 256, 500, 1, 8, device=NUMPY) == need  # the host has room
    gpu_with(4 * need)
    assert sg.check_flow_size(cell, 256, 256, 500, 1, 8, device=CUPY) == need


def test_auto_mode_follows_the_gpu_memory(gpu_with):
    cell = gf.get_cell("lstm")
    exact = sg.flow_bytes(cell, 256, 256, 500, 1, 8)
    gpu_with(exact // 2)  # the exact sweep does not fit on the card; the matrix-free one does
    assert sg.choose_mode(cell, 256, 256, 500, 1, 8, device=CUPY) == "matrix-free"
    assert sg.choose_mode(cell, 256, 256, 500, 1, 8, device=NUMPY) == "exact"


def test_no_device_answer_falls_back_to_the_host_and_the_variable_overrides_both(gpu_with, monkeypatch):
    gpu_with(None)
    assert sg.available_bytes(CUPY) == sg.available_bytes()
    gpu_with(1 << 20)
    monkeypatch.setenv("GRADFLOW_MEMORY_LIMIT", "64G")
    assert sg.available_bytes(CUPY) == 64 << 30


def test_the_real_query_without_a_gpu_is_none_or_a_number():
    free = sg._gpu_free()  # no CuPy or no device here: None, never an exception
    assert free is None or free >= 0
