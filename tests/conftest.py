"""Shared test fixtures: external programs that some tests need.

A test that needs an external program (pdflatex) calls :func:`need_program`: on a machine
without it the test is skipped with the reason; where ``GRADFLOW_REQUIRE_TEX=1`` is set (CI's
``.ci/run`` installs TeX Live and sets it) a missing program fails the test instead.
"""

from __future__ import annotations

import os
import shutil

import pytest

TEXLIVE = "texlive-latex-base texlive-latex-recommended texlive-fonts-recommended"


def need_program(name: str, install: str = TEXLIVE) -> str:
    """The path of ``name``; skip (or, under GRADFLOW_REQUIRE_TEX=1, fail) when it is missing."""
    exe = shutil.which(name)
    if exe is None:
        reason = f"{name} is not installed (Debian: apt-get install {install})"
        if os.environ.get("GRADFLOW_REQUIRE_TEX") == "1":
            pytest.fail(reason + "; GRADFLOW_REQUIRE_TEX=1 makes it required")
        pytest.skip(reason)
    return exe
