"""VAMP-2 scores and the TICA / PCA baselines on a synthetic system whose slow coordinate is known."""

import numpy as np
import pytest

from neuralct.analysis.vamp import pca_baseline, tica_baseline, vamp2_score
from neuralct.errors import NeuralCTError

LAG = 5


def hopping_trajectory(rng, n_frames, switch_probability=0.01):
    """Columns: slow two-state hopping (+/-1, rare switches, small noise), then 3 fast AR(1) noises, large variance."""
    flips = rng.random(n_frames) < switch_probability
    state = np.cumprod(np.where(flips, -1.0, 1.0)) * rng.choice([-1.0, 1.0])
    slow = state + 0.3 * rng.normal(size=n_frames)
    fast = np.zeros((n_frames, 3))
    noise = rng.normal(size=(n_frames, 3))
    for t in range(1, n_frames):
        fast[t] = 0.5 * fast[t - 1] + noise[t]
    return np.column_stack([slow, 3.0 * fast])


@pytest.fixture(scope="module")
def system():
    rng = np.random.default_rng(3)
    train = [hopping_trajectory(rng, 2000) for _ in range(4)]
    test = [hopping_trajectory(rng, 2000) for _ in range(3)]
    mixing = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    return train, test, mixing


def test_slow_coordinate_scores_higher_than_fast_noise(system):
    train, test, _ = system
    slow = vamp2_score([t[:, :1] for t in train], [t[:, :1] for t in test], lag_frames=LAG)
    fast = vamp2_score([t[:, 1:2] for t in train], [t[:, 1:2] for t in test], lag_frames=LAG)
    # Autocorrelation of the hopping coordinate at lag 5: (1 - 2 * 0.01)^5 / (1 + 0.3^2) = 0.83, squared = 0.69.
    assert slow["vamp2"] == pytest.approx(0.69, abs=0.1)
    assert fast["vamp2"] < 0.01
    assert slow["vamp2_with_constant"] == pytest.approx(slow["vamp2"] + 1.0)
    assert slow["includes_constant"] is False
    assert slow["n_pairs_train"] == 4 * (2000 - LAG)


def test_score_is_bounded_by_dim_and_ignores_the_feature_basis(system):
    train, test, mixing = system
    plain = vamp2_score(train, test, lag_frames=LAG)
    mixed = vamp2_score([t @ mixing for t in train], [t @ mixing for t in test], lag_frames=LAG)
    assert 0.0 <= plain["vamp2"] <= plain["dim"] == 4
    assert mixed["vamp2"] == pytest.approx(plain["vamp2"], rel=1e-6)


def test_tica_recovers_the_slow_coordinate_and_pca_does_not(system):
    train, test, mixing = system
    train_mixed = [t @ mixing for t in train]
    test_mixed = [t @ mixing for t in test]
    slow_test = np.concatenate(test)[:, 0]
    tica = tica_baseline(train_mixed, test_mixed, lag_frames=LAG, dim=1)
    component = np.concatenate(tica["projections_test"])[:, 0]
    assert abs(np.corrcoef(component, slow_test)[0, 1]) > 0.9
    direct = vamp2_score([t[:, :1] for t in train], [t[:, :1] for t in test], lag_frames=LAG)
    assert tica["score"]["vamp2"] == pytest.approx(direct["vamp2"], abs=0.02)
    # The fast noises carry the largest variance, so PCA's first component misses the slow one.
    pca = pca_baseline(train_mixed, test_mixed, lag_frames=LAG, dim=1)
    assert abs(np.corrcoef(np.concatenate(pca["projections_test"])[:, 0], slow_test)[0, 1]) < 0.3
    assert pca["score"]["vamp2"] < 0.1


def test_pca_mass_weighting_changes_the_principal_axis():
    rng = np.random.default_rng(0)
    # Two atoms' x coordinates: atom 1 moves more, but atom 2 is 100 times heavier.
    data = [np.column_stack([2.0 * rng.normal(size=3000), 1.0 * rng.normal(size=3000)])]
    light_first = pca_baseline(data, data, lag_frames=1, dim=1)
    heavy_first = pca_baseline(data, data, lag_frames=1, dim=1, masses=np.array([1.0, 100.0]))
    assert abs(np.corrcoef(light_first["projections_test"][0][:, 0], data[0][:, 0])[0, 1]) > 0.99
    assert abs(np.corrcoef(heavy_first["projections_test"][0][:, 0], data[0][:, 1])[0, 1]) > 0.99
    assert heavy_first["mass_weighted"] and not light_first["mass_weighted"]


def boundary_trap(rng, n_trajectories, lag):
    """White-noise trajectories of 2 * lag frames where each one's second half is the next one's first half.

    Inside a trajectory x_t and x_{t+lag} are independent; pairs across a junction of the
    concatenation would be identical, a perfect spurious correlation.
    """
    base = rng.normal(size=(n_trajectories + 1) * lag)
    return [base[i * lag : (i + 2) * lag, None] for i in range(n_trajectories)]


@pytest.mark.parametrize("n_trajectories, lag", [(2, 400), (300, 3)])
def test_lagged_pairs_never_cross_trajectory_boundaries(n_trajectories, lag):
    rng = np.random.default_rng(11)
    train = boundary_trap(rng, n_trajectories, lag)
    test = boundary_trap(rng, n_trajectories, lag)
    concatenated = np.concatenate(test)[:, 0]
    spurious = np.corrcoef(concatenated[:-lag], concatenated[lag:])[0, 1] ** 2
    assert spurious > 0.1  # the trap is armed
    assert vamp2_score(train, test, lag_frames=lag)["vamp2"] < 0.02


def test_the_scored_function_is_the_one_fit_on_the_training_trajectories(system):
    """Train and test disagree on which feature is slow: the training model's slowest function is fast on the test data.

    A model fit on the held-out data would pick their slow feature and score it high; the
    cross-validated score of the training model's choice is that of fast noise.
    """
    train, test, _ = system
    swap = [1, 0]
    train_pairs = [np.column_stack([t[:, 0], t[:, 1] / 3.0]) for t in train]  # slow, fast (unit variance)
    test_pairs = [np.column_stack([t[:, 0], t[:, 1] / 3.0])[:, swap] for t in test]  # fast, slow
    crossed = vamp2_score(train_pairs, test_pairs, lag_frames=LAG, dim=1)
    assert crossed["singular_values_train"][0] ** 2 == pytest.approx(
        0.69, abs=0.1
    )  # the training model found the slow feature
    assert crossed["vamp2"] < 0.05  # its function, feature 0, is fast noise on the test data
    matched = vamp2_score(train_pairs, [t[:, swap] for t in test_pairs], lag_frames=LAG, dim=1)
    assert matched["vamp2"] == pytest.approx(0.69, abs=0.1)


def test_functions_that_do_not_vary_are_refused(system):
    train, _, _ = system
    constant = [np.ones((50, 2))]
    with pytest.raises(
        NeuralCTError, match="held-out trajectories: the functions do not vary over their 45 time-lagged pairs"
    ):
        vamp2_score(train, [np.column_stack([c, c]) for c in constant], lag_frames=LAG)


def test_bad_input_is_refused(system):
    train, test, _ = system
    with pytest.raises(NeuralCTError, match="list of arrays"):
        vamp2_score(train[0], test, lag_frames=LAG)
    with pytest.raises(NeuralCTError, match="longer than the lag"):
        vamp2_score(train, test, lag_frames=5000)
    with pytest.raises(NeuralCTError, match="features"):
        vamp2_score(train, [t[:, :2] for t in test], lag_frames=LAG)
    with pytest.raises(NeuralCTError, match="dim"):
        tica_baseline(train, test, lag_frames=LAG, dim=9)


def test_mass_weighted_pca_variances_are_mass_times_coordinate_variance():
    """Two atoms (x y z each, 1 and 3 amu) that move along atom 1's x (variance 4 a^2) and atom 2's y (variance
    b^2), uncorrelated, off the origin: the principal variances are m s^2 = 4 a^2 and 3 b^2 (sample variances,
    amu nm^2), along those coordinates, and the components of the training frames have zero mean."""
    a = np.tile([1.0, -1.0], 8)
    b = np.tile([1.0, 1.0, -1.0, -1.0], 4)
    frames = np.full((16, 6), 0.5)
    frames[:, 0] += 2.0 * a
    frames[:, 4] += b
    pca = pca_baseline([frames], [frames], lag_frames=1, dim=2, masses=np.array([1.0, 3.0]))
    sample = 16 / 15  # the sample variance (n - 1 in the denominator) of a and of b
    np.testing.assert_allclose(pca["explained_variance"], [4.0 * sample, 3.0 * sample], rtol=1e-12)
    components = pca["projections_train"][0]
    np.testing.assert_allclose(components.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.abs(components[:, 0]), 2.0, rtol=1e-12)  # sqrt(1 amu) x 2 a
    np.testing.assert_allclose(np.abs(components[:, 1]), np.sqrt(3.0), rtol=1e-12)  # sqrt(3 amu) x b


def test_lagged_pairs_are_exactly_the_lag_apart_within_each_trajectory():
    """Frames numbered by their time: every pair is (t, t + lag) of one trajectory."""
    from neuralct.analysis.vamp import time_lagged_frames

    x, y = time_lagged_frames([np.arange(10.0)[:, None], 100.0 + np.arange(4.0)[:, None]], 3, "trajectories")
    np.testing.assert_array_equal(x[:, 0], [0, 1, 2, 3, 4, 5, 6, 100])
    np.testing.assert_array_equal(y[:, 0] - x[:, 0], 3)
