"""decay_rate: the slope of a log10 curve against T − k, and what it says about exact zeros."""

import math

import numpy as np
import pytest

from gradflow import decay_rate


def test_slope_of_an_exact_geometric_decay():
    T = 50
    curve = (T - np.arange(T)) * math.log10(0.5)  # ‖(0.5 I)^{T−k}‖ = 0.5^{T−k}
    assert decay_rate(curve) == pytest.approx(math.log10(0.5), abs=1e-12)


def test_skip_leaves_out_the_smallest_lags():
    T = 20
    lag = T - np.arange(T)
    curve = -0.1 * lag
    curve[-3:] = 5.0  # transient at the smallest lags
    assert decay_rate(curve, skip=3) == pytest.approx(-0.1, abs=1e-12)
    with pytest.raises(ValueError, match="skip"):
        decay_rate(curve, skip=T)


def test_an_exact_zero_product_is_an_unbounded_decay_not_the_slope_of_the_rest():
    curve = np.array([-np.inf, -np.inf, -0.2, -0.1])  # k = 0, 1 exactly 0; later k finite
    assert decay_rate(curve) == -np.inf


def test_nan_is_an_error():
    with pytest.raises(ValueError, match="NaN"):
        decay_rate([0.0, np.nan, -1.0])
