"""Lines and power laws through uncertain points: intervals that cover at their nominal
rate and are never narrower than the points' own errors imply."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toolkit.analysis.fits import META_REGRESSION, OLS, fit_line, fit_power_law

DRAWS = 500


def _known_variance_half_width(x: np.ndarray, se: np.ndarray) -> float:
    """1.96 standard errors of a weighted slope, from the points' errors alone (closed form)."""
    w = 1 / se**2
    center = np.sum(w * x) / np.sum(w)
    return 1.959964 * math.sqrt(1 / np.sum(w * (x - center) ** 2))


@pytest.mark.parametrize("extra_scatter", [0.0, 0.5])
def test_the_slope_interval_covers_the_true_slope_at_the_nominal_rate(extra_scatter):
    rng = np.random.default_rng(11)
    x = np.log2([32.0, 64, 128, 256, 512])
    covered = 0
    for _ in range(DRAWS):
        se = rng.uniform(0.2, 1.0, len(x))
        y = -1.0 * x + rng.normal(0, np.sqrt(se**2 + extra_scatter**2))
        fit = fit_line(x, y, se)
        assert fit.method == META_REGRESSION
        covered += fit.slope_lo <= -1.0 <= fit.slope_hi
    assert abs(covered / DRAWS - 0.95) <= 0.03, covered / DRAWS


def test_points_on_a_line_with_large_errors_give_a_wide_interval():
    """The horizon case: optima with 2-octave intervals that happen to lie on a line must
    not give a slope known to a few hundredths."""
    x = np.log2([250.0, 500, 1000, 2000, 4000, 8000])
    y = -7.0 - 0.27 * x  # exactly on a line
    se = np.full(len(x), 2.3 / (2 * 1.96))  # each optimum's 95% interval spans 2.3 octaves
    fit = fit_line(x, y, se)
    assert fit.slope == pytest.approx(-0.27)
    half = (fit.slope_hi - fit.slope_lo) / 2
    assert half >= _known_variance_half_width(x, se) * (1 - 1e-6)
    ols = fit_line(x, y)
    assert ols.method == OLS and ols.slope_hi - ols.slope_lo < 1e-6  # what OLS would claim


def test_ols_slope_covers_at_the_nominal_rate_without_errors():
    rng = np.random.default_rng(12)
    x = np.log2([32.0, 64, 128, 256, 512])
    covered = 0
    for _ in range(DRAWS):
        fit = fit_line(x, -1.0 * x + rng.normal(0, 0.3, len(x)))
        covered += fit.slope_lo <= -1.0 <= fit.slope_hi
    assert abs(covered / DRAWS - 0.95) <= 0.03, covered / DRAWS


def test_the_power_law_prediction_covers_a_new_seed_mean_at_the_nominal_rate():
    rng = np.random.default_rng(13)
    n = 4.0 ** np.arange(6) * 1e3
    at = np.array([n[-1] * 4])
    covered = 0
    for _ in range(DRAWS):
        se = 0.005 * rng.uniform(0.7, 1.3, len(n))
        y = 3 * n**-0.5 + 0.3 + rng.normal(0, se)
        observed = 3 * at[0] ** -0.5 + 0.3 + rng.normal(0, 0.005)
        prediction = fit_power_law(n, y, se=se, at=at, se_new=np.array([0.005]))
        assert prediction.params[2] >= 0.0
        covered += prediction.lo[0] <= observed <= prediction.hi[0]
    assert abs(covered / DRAWS - 0.95) <= 0.03, covered / DRAWS


def test_the_power_law_asymptote_is_never_negative():
    n = np.array([1e3, 4e3, 1.6e4, 6.4e4])
    y = 2.0 * n**-0.3 - 0.05  # the best unconstrained fit has c < 0
    prediction = fit_power_law(n, y, se=np.full(4, 1e-3), at=n)
    assert prediction.params[2] >= 0.0


def test_a_prediction_from_four_points_is_never_narrower_than_the_noise_floor():
    """Four widths fit with one degree of freedom: without a noise floor the interval can
    collapse to nothing and miss the observation."""
    n = np.array([1e3, 4e3, 1.6e4, 6.4e4])
    y = 3 * n**-0.5 + 0.3
    se = np.full(4, 0.01)
    prediction = fit_power_law(n, y, se=se, at=np.array([2.56e5]), se_new=np.array([0.01]))
    assert prediction.interval
    assert prediction.hi[0] - prediction.lo[0] >= 2 * 1.96 * 0.01
