"""CuPy and a CUDA device for the CuPy tests: ``cupy`` (the module) and ``needs_device`` (a mark)."""

from __future__ import annotations

import pytest

cupy = pytest.importorskip("cupy")


def _has_device() -> bool:
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver / no device
        return False


needs_device = pytest.mark.skipif(not _has_device(), reason="no CUDA device for CuPy")
