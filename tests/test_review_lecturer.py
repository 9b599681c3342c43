"""Defects a lecturer found reading reports and slides of cells not reviewed before
(lru, s4d, rg-lru, mingru; cornn, antisymmetric-rnn, lipschitz-rnn, minlstm; slstm,
peephole-lstm, cifg, mamba-zoh). Each test failed before its fix."""

from __future__ import annotations

import math
from types import SimpleNamespace


def test_slow_decay_is_ranked_and_printed_not_rounded_to_zero():
    """S4D (s4d-lin, n = m = 8) decays at -0.5·Δ_min/ln 10 ≈ -2.2e-4 per step: slower than the
    RG-LRU's -0.009. The takeaway slide called rg-lru the slowest decay and printed s4d as -0.000."""
    from gradflow._views.slides import _num, _ranking

    s4d = -0.5 * 0.001 / math.log(10)  # the slowest mode of S4D-Lin: Δ = 0.001, Re A = -1/2
    rates = {"lru": -0.3085, "s4d": s4d, "rg-lru": -0.0090, "exprnn": 2.2e-16}
    b = SimpleNamespace(cells=[SimpleNamespace(name=k) for k in rates],
                        runs={k: SimpleNamespace(rate_full=v) for k, v in rates.items()})
    text = _ranking(b)
    assert "Slowest decay here: \\texttt{s4d} ($-2.2\\times 10^{-4}$)" in text
    assert "fastest: \\texttt{lru} ($-0.308$)" in text
    assert "exprnn" not in text  # rounding, neither growth nor decay
    assert _num(s4d) != "$-0.000$" and _num(-0.0090) == "$-0.009$" and _num(0.0) == "$0$"
    assert _num(float("-inf")) == "$-\\infty$"


def test_cornn_block_prints_a_difference_not_plus_minus():
    """Eq. (2) of a coRNN report read '... W + −Δt γ I' (SymPy's sum printer missed the sign of the
    scalar (−Δt γ)). Written out: ∂z_t/∂h_{t−1} = Δt diag(1 − tanh²(a_t)) W − Δt γ I."""
    from gradflow import get_cell
    from gradflow._symbolic.printing import latex

    for name in ("cornn", "cornn-imex"):
        for block in get_cell(name).jacobian().blocks.values():
            assert "+ -" not in latex(block)
    zh = latex(get_cell("cornn").jacobian().blocks[("z", "h")])
    assert zh.endswith(r"W - \Delta t \gamma I")
