"""Mutual information and circular correlation against cases with known answers."""

import numpy as np
import pytest

from neuralct.analysis.information import circular_correlation, mutual_information
from neuralct.errors import NeuralCTError

N = 20000


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_independent_data_have_mutual_information_near_zero(rng):
    angle = rng.uniform(-np.pi, np.pi, N)
    x = rng.normal(size=N)
    # Residual bias after Miller-Madow is second order; the spread is about 0.003 nats here.
    assert abs(mutual_information(x, angle)) < 0.01


def test_deterministic_function_of_the_angle_has_large_mutual_information(rng):
    angle = rng.uniform(-np.pi, np.pi, N)
    bins = 24
    # x determines the angle up to the two branches of cos: I is at least about ln(bins) - ln 2.
    assert mutual_information(np.cos(angle - 0.3), angle, bins=bins) > 2.0
    # x = angle: each quantile bin of x overlaps at most two fixed angle bins, so ln(bins) - ln 2 <= I <= ln(bins).
    assert np.log(bins) - np.log(2) < mutual_information(angle, angle, bins=bins) <= np.log(bins) + 0.01


def test_angle_is_treated_as_periodic(rng):
    # The same angles on another branch ([1, 1 + 2 pi) instead of [-pi, pi)) must give the same answer.
    angle = rng.uniform(-np.pi, np.pi, N)
    other_branch = np.where(angle < 1.0, angle + 2 * np.pi, angle)
    x = np.cos(angle) + 0.1 * rng.normal(size=N)
    assert mutual_information(x, angle) == pytest.approx(mutual_information(x, other_branch), abs=1e-12)


@pytest.mark.parametrize("rho", [0.5, 0.8, 0.95])
def test_bivariate_gaussian_matches_the_exact_mutual_information(rng, rho):
    z = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=N)
    exact = -0.5 * np.log(1.0 - rho**2)
    estimate = mutual_information(z[:, 0], z[:, 1], bins=32, periodic=False)
    # Discretisation with 32 quantile bins loses a few percent at strong dependence.
    assert estimate == pytest.approx(exact, rel=0.06, abs=0.01)


def test_circular_correlation_is_one_for_a_shifted_cosine(rng):
    angle = rng.uniform(-np.pi, np.pi, 500)
    assert circular_correlation(3.0 * np.cos(angle - 1.1) + 2.0, angle) == pytest.approx(1.0, abs=1e-12)
    assert circular_correlation(-np.sin(angle), angle) == pytest.approx(1.0, abs=1e-12)


def test_circular_correlation_matches_multiple_regression_and_is_small_when_independent(rng):
    angle = rng.vonmises(0.5, 1.0, N)  # non-uniform, so corr(cos, sin) is not 0
    x = np.cos(angle) + 2.0 * rng.normal(size=N)
    design = np.column_stack([np.ones(N), np.cos(angle), np.sin(angle)])
    fitted = design @ np.linalg.lstsq(design, x, rcond=None)[0]
    r2_regression = 1.0 - np.sum((x - fitted) ** 2) / np.sum((x - x.mean()) ** 2)
    assert circular_correlation(x, angle) == pytest.approx(np.sqrt(r2_regression), rel=1e-9)
    assert circular_correlation(rng.normal(size=N), angle) < 0.03


def test_circular_correlation_of_an_angle_with_two_opposite_values_is_the_plain_correlation(rng):
    """a in {0.3, 0.3 + pi}: cos a and sin a are one variable, and R is |corr(x, cos a)| (the closed form is 0 / 0)."""
    angle = np.where(rng.random(1000) < 0.5, 0.3, 0.3 + np.pi)
    x = np.cos(angle) + 0.1 * rng.normal(size=1000)
    assert circular_correlation(x, angle) == pytest.approx(abs(np.corrcoef(x, np.cos(angle))[0, 1]), rel=1e-9)
    assert circular_correlation(x, np.full(1000, 0.3)) == 0.0 and circular_correlation(np.ones(1000), angle) == 0.0


def test_bad_input_is_refused():
    with pytest.raises(NeuralCTError, match="one length"):
        mutual_information(np.zeros(10), np.zeros(9))
    with pytest.raises(NeuralCTError, match="NaN"):
        circular_correlation(np.array([0.0, np.nan, 1.0]), np.zeros(3))


def test_an_angle_that_fixes_the_quartile_of_x_has_mutual_information_ln_4():
    """Angles at the centres of the four quarter turns, 100 frames each, and x the angle itself: each angle bin
    holds one quartile of x, so I = ln 4 plus the Miller-Madow term (4 + 4 - 4 - 1) / (2 N)."""
    angle = np.repeat(np.pi * np.array([-0.75, -0.25, 0.25, 0.75]), 100)
    assert mutual_information(angle, angle, bins=4) == pytest.approx(np.log(4.0) + 3 / 800, rel=1e-12)
    # On another branch the angles fall into the same bins.
    assert mutual_information(angle, angle + 2 * np.pi, bins=4) == pytest.approx(np.log(4.0) + 3 / 800, rel=1e-12)
