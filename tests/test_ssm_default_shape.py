"""The state-space cells' default shape: the usual state entries per channel, not N = 1.

The numbers are the reference code's defaults, written here from the sources
(``/work/shared/reference/modern-cells.md`` §1.2–1.3), never read from gradflow:

* Mamba (Gu & Dao 2023, ``mamba_simple.py``): ``d_state = 16``; S4D-Real A[d, n] = −(n + 1), so
  A_log = log(1), …, log(16) in every channel.
* S4D (Gu et al. 2022, ``s4d.py``): ``d_state = 64``, kept as 64/2 = 32 complex modes (conjugate
  pairs); S4D-Lin A_n = −½ + iπn, n = 0…31, in every channel.

Without ``--input`` the report, ``gradflow flow`` and ``gradflow report`` give these cells m = n/16
(Mamba) and m = n/32 (S4D) channels; an explicit ``--input`` is kept; the other cells keep m = n.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradflow as gf
import gradflow._views.report as report_module
from gradflow._cli import main

MAMBA_D_STATE = 16          # mamba_simple.py, Mamba(d_state=16)
S4D_D_STATE = 64            # s4d.py, S4D(d_state=64): 32 complex modes per channel
S4D_MODES = S4D_D_STATE // 2


def _flow_head(capsys, *argv) -> str:
    assert main(["flow", *argv, "--steps", "3", "--no-lyapunov"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("cell", "hidden", "m", "words"), [
    ("mamba", 64, 64 // MAMBA_D_STATE, "d = 4 channels, N = 16 state entries each)"),
    ("mamba", 16, 1, "d = 1 channel, N = 16 state entries each)"),
    ("s4d", 64, 64 // S4D_MODES, "d = 2 channels, N = 32 complex modes each, 2N = 64 real state entries)"),
    # n = 16 < 32 modes: all 16 in one channel, and the line says the reference's N
    ("s4d", 16, 1, "N = 16 complex modes each, 2N = 32 real state entries; the reference code's default is N = 32)"),
    ("lstm", 16, 16, None),   # not a state-space cell: m = n as before
    ("rg-lru", 16, 16, "init: rg-lru"),  # Griffin's u_t = x_t: m = n
])
def test_flow_cli_default_input_gives_the_usual_state_per_channel(capsys, cell, hidden, m, words):
    out = _flow_head(capsys, cell, "--hidden", str(hidden))
    assert f"n = {hidden}, m = {m}, T = 3" in out
    if words is not None:
        assert words in out


def test_flow_cli_explicit_input_is_kept(capsys):
    out = _flow_head(capsys, "mamba", "--hidden", "16", "--input", "8")
    assert "n = 16, m = 8, T = 3" in out and "N = 2 state entries each; the reference code's default is N = 16" in out


def test_the_usual_shape_draws_the_papers_state():
    """At the default m the reference inits hold the papers' per-channel state: A_log = log(1..16) per
    Mamba channel, A_im = π·(0..31) and Re A = −½ per S4D channel."""
    w = gf.init_weights("mamba-zoh", 64, 64 // MAMBA_D_STATE, scheme="mamba").arrays
    a_log = np.asarray(w[r"A_{\log}"]).reshape(4, MAMBA_D_STATE)
    assert np.allclose(a_log, np.log(np.arange(1, 17))[None, :], rtol=0, atol=1e-15)
    w = gf.init_weights("s4d", 64, 64 // S4D_MODES, scheme="s4d-lin").arrays
    im = np.asarray(w["A_{im}"]).reshape(2, S4D_MODES)
    assert np.allclose(im, math.pi * np.arange(32)[None, :], rtol=0, atol=1e-12)
    assert np.allclose(np.exp(np.asarray(w[r"A_{re,\log}"])), 0.5, rtol=0, atol=1e-15)


class _Stop(Exception):
    pass


@pytest.mark.parametrize(("cells", "hidden", "given", "expected"), [
    (["mamba", "s4d", "lstm"], 64, None, {"mamba-zoh": 4, "s4d": 2, "lstm": 64}),
    (["mamba"], 48, None, {"mamba-zoh": 3}),       # 48 = 3 × 16
    (["s4d"], 48, None, {"s4d": 2}),               # 32 does not divide 48: N = 24 modes, its largest divisor ≤ 32
    (["mamba", "s4d"], 64, 8, {"mamba-zoh": 8, "s4d": 8}),  # an explicit input is every cell's
])
def test_report_default_input_per_cell(tmp_path, monkeypatch, cells, hidden, given, expected):
    """write_report (and so ``gradflow report``) hands each cell's run its own m; stopped before any run."""
    seen = {}

    def capture(stage, resolved, out, **kw):
        seen.update(kw["inputs"])
        raise _Stop

    monkeypatch.setattr(report_module, "_build", capture)
    with pytest.raises(_Stop):
        gf.write_report(cells, tmp_path / "r", hidden=hidden, steps=3, input=given)
    assert seen == expected


def test_report_words_say_the_shape():
    """The sentence beside the numbers names d and N as the run has them (and S4D's real size 2N)."""
    from gradflow._views.evidence import _init_words, input_words

    assert "$d = 4$ channels and $N = 16$ state entries each, Mamba's `d_state`" in _init_words("mamba", 64, 4)
    assert "default" not in _init_words("mamba", 64, 4)
    s = _init_words("s4d-lin", 16, 1)
    assert "$d = 1$ channel and $N = 16$ complex modes each, i.e. `d_state` $= 2N = 32$" in s
    assert "S4D's default is `d_state` $= 64$ ($N = 32$), more than $n = 16$ allows" in s
    assert input_words({"lstm": 16, "mamba-zoh": 1}) == "input sizes $m = 16$ (`lstm`), $m = 1$ (`mamba-zoh`)"
    assert input_words({"lstm": 16, "gru": 16}) == "$m = 16$"


def test_report_size_guard_advises_a_hidden_size_with_the_usual_state(monkeypatch):
    """Too large a default Mamba report: the advised n keeps N = 16 (a multiple of 16, with m = n/16)
    and is the largest such n under the budget."""
    import re

    from gradflow._numeric import size_guard

    monkeypatch.setattr(size_guard, "available_bytes", lambda device=None: 2 ** 30)
    cell = gf.get_cell("mamba")
    with pytest.raises(gf.GradflowError) as e:
        size_guard.check_report_size([cell], 10 ** 6, None, 100, {cell.name}, {cell.name: "mamba"})
    msg = str(e.value)
    assert f"input size {10 ** 6 // MAMBA_D_STATE}" in msg
    best = int(re.search(r"largest hidden size that fits is (\d+)", msg).group(1))
    assert best % MAMBA_D_STATE == 0 and best > 0
    budget = 2 ** 30 * size_guard.MEMORY_SHARE

    def need(n):
        return size_guard.flow_bytes(cell, n, n // MAMBA_D_STATE, 100, 1, 8, structured=True)

    assert need(best) <= budget < need(best + MAMBA_D_STATE)


def test_default_mamba_run_shows_the_papers_sixteen_rates(capsys):
    """End to end at the CLI's default shape (n = 16, no --input): one channel whose 16 state entries
    decay as exp(−Δ_t (k + 1)), so the Lyapunov exponents are −(k + 1)·mean(Δ): in ratio 1 : 2 : … : 16.
    S4D-Lin at its default shape: every mode has |λ| = exp(−Δ/2) in the one channel, so its 2N = 32
    exponents are equal. (With the old m = n each unit was its own channel with its own Δ.)"""
    import json

    assert main(["flow", "mamba", "--hidden", "16", "--steps", "20", "--lyapunov", "full", "--json"]) == 0
    lyap = np.sort(np.asarray(json.loads(capsys.readouterr().out)["lyapunov"], dtype=float))[::-1]
    assert lyap.shape == (MAMBA_D_STATE,) and lyap[0] < 0
    assert np.allclose(lyap / lyap[0], np.arange(1, MAMBA_D_STATE + 1), rtol=1e-9, atol=0)
    assert main(["flow", "s4d", "--hidden", "16", "--steps", "20", "--lyapunov", "full", "--json"]) == 0
    lyap = np.asarray(json.loads(capsys.readouterr().out)["lyapunov"], dtype=float)
    assert lyap.shape == (32,) and lyap.max() < 0
    assert np.allclose(lyap, lyap[0], rtol=1e-9, atol=0)
