"""decay_rate at its edges: every input is a correct number or one clear GradflowError, never NaN.

Oracle: the least-squares slope written out here (Σ(x−x̄)(y−ȳ)/Σ(x−x̄)²) and the definition of
−∞/+∞ as "exactly zero / overflowed from some lag on".
"""

import numpy as np
import pytest

from gradflow import GradflowError, decay_rate, phase_grid


def _slope(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())


@pytest.mark.parametrize("curve, skip", [([-0.1], 0), ([-0.3, -0.2, -0.1], 2), ([[-0.5], [-0.7]], 0)])
def test_fewer_than_two_points_is_an_error_not_nan(curve, skip):
    with pytest.raises(GradflowError, match="at least 2 points"):
        decay_rate(curve, skip=skip)


def test_two_points_is_the_slope_through_them():
    # k = 0 ↔ lag 3, k = 1 ↔ lag 2 (T = 3, skip 1)
    assert decay_rate([-0.9, -0.4, 7.0], skip=1) == pytest.approx(_slope([3, 2], [-0.9, -0.4]), abs=1e-12)


def test_skip_must_be_an_integer_in_range():
    c = [-0.3, -0.2, -0.1]
    for bad in (1.5, True, "1", -1, 3, 10):
        with pytest.raises(GradflowError, match="skip"):
            decay_rate(c, skip=bad)
    assert decay_rate(c, skip=np.int64(1)) == pytest.approx(_slope([3, 2], [-0.3, -0.2]), abs=1e-12)


def test_nonnumbers_and_empty_are_one_clear_error():
    for bad in (["a", "b"], None, [], np.zeros((0, 3)), np.zeros((2, 2, 2)), [[1.0, 2.0], [3.0]]):
        with pytest.raises(GradflowError):
            decay_rate(bad)


def test_infinities():
    assert decay_rate([-np.inf, -np.inf]) == -np.inf  # zero at every lag: unbounded decay
    assert decay_rate([np.inf, 1.0]) == np.inf  # overflowed at the longest lag: unbounded growth
    with pytest.raises(GradflowError, match=r"-inf.*\+inf"):
        decay_rate([np.inf, -np.inf, 0.0])
    with pytest.raises(GradflowError, match="NaN"):
        decay_rate([-1.0, np.nan, -np.inf])
    # a NaN left out by skip does not matter; the rest is the plain slope
    assert decay_rate([-1.0, -0.5, np.nan], skip=1) == pytest.approx(-0.5, abs=1e-12)


def test_batch_slope_is_the_mean_of_the_slopes():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(3, 7))
    lags = 7 - np.arange(7)
    assert decay_rate(Y) == pytest.approx(np.mean([_slope(lags, y) for y in Y]), abs=1e-12)


def test_phase_grid_with_one_step_is_refused_at_the_boundary():
    with pytest.raises(GradflowError, match="steps"):
        phase_grid("tanh-rnn", hidden=2, input=1, steps=1, scales=(1.0,))


def test_a_batch_is_checked_curve_by_curve_before_its_mean():
    with pytest.raises(GradflowError, match=r"both -inf .*\+inf"):  # the mean would be NaN
        decay_rate([[-np.inf, -1.0], [np.inf, 0.0]])
    assert decay_rate([[-np.inf, -1.0], [-2.0, -1.0]]) == -np.inf  # one sequence exactly zero


@pytest.mark.parametrize("bad", [["1.5", "2.0", "2.5"], np.array([1 + 1j, 2, 3]), [True, False, True],
                                 [1.0, None, 2.0]])
def test_text_complex_booleans_and_objects_are_refused(bad):
    """Strings were parsed as numbers and a complex curve lost its imaginary part without a word."""
    with pytest.raises(GradflowError, match="real numbers"):
        decay_rate(bad)
