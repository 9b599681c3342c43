"""Shared test fixtures: external programs that some tests need, and the built user guide.

A test that needs an external program calls :func:`need_program`: on a machine without it the
test is skipped with the reason; where the program's environment variable is ``1`` a missing
program fails the test instead. CI's ``.ci/run`` installs the programs and sets the variables:

* ``pdflatex`` (TeX Live), required under ``GRADFLOW_REQUIRE_TEX=1``;
* ``chromium`` (a headless browser for the offline user-guide check), required under
  ``GRADFLOW_REQUIRE_BROWSER=1``.

A test module that needs an optional Python package calls :func:`need_module` (the same rule:
``xlstm``, the official xLSTM package, is required under ``GRADFLOW_REQUIRE_XLSTM=1``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Two test processes share the machine's cores (pytest-xdist, ``-n 2``): one BLAS/OpenMP thread
# each, also in the subprocesses tests start (examples, the notebook's kernel); more threads only
# wait on each other there. Set before NumPy or torch is imported by any test module.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
TEXLIVE = "texlive-latex-base texlive-latex-recommended texlive-fonts-recommended texlive-pictures"
CHROMIUM = "chromium"


def need_program(name: str, install: str = TEXLIVE, env: str = "GRADFLOW_REQUIRE_TEX") -> str:
    """The path of ``name``; skip (or, under ``env=1``, fail) when it is missing.

    ``install`` names the Debian packages that provide it (for the message); the default
    arguments are those of ``pdflatex``.
    """
    exe = shutil.which(name)
    if exe is None:
        reason = f"{name} is not installed (Debian: apt-get install {install})"
        if os.environ.get(env) == "1":
            pytest.fail(f"{reason}; {env}=1 makes it required")
        pytest.skip(reason)
    return exe


def need_browser() -> str:
    """Headless Chromium; skip (or, under GRADFLOW_REQUIRE_BROWSER=1, fail) without it."""
    return need_program("chromium", install=CHROMIUM, env="GRADFLOW_REQUIRE_BROWSER")


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The user guide, built once per test session with ``mkdocs build --strict``."""
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def need_module(name: str, install: str, env: str):
    """``import name`` for a test module; skip without it, or, under ``env=1``, fail instead.

    ``install`` is the command that provides it (for the message). CI's ``.ci/run`` sets the
    variable, so there a missing package is an error, not a silent skip.
    """
    if os.environ.get(env) == "1":
        try:
            return __import__(name)
        except ImportError as exc:
            pytest.fail(f"{name} is not importable ({exc}; {install}); {env}=1 makes it required",
                        pytrace=False)
    return pytest.importorskip(name, reason=f"{name} is not installed ({install})")


@pytest.fixture(autouse=True)
def _mpmath_precision_restored():
    """A test that sets mpmath's global precision (``mp.dps``) leaves it as it found it: the tests of
    one process share it (a test at 30 digits made a later 80-digit oracle lose the saturated tanh′)."""
    import mpmath

    dps = mpmath.mp.dps
    yield
    mpmath.mp.dps = dps
