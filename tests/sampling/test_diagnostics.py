"""Errors and efficiency figures that claim no more than the chains saw.

Basin populations, undefined figures, stuck chains.
"""

import json
import math

import numpy as np
import pytest
import torch

from neuralct.sampling.diagnostics import (
    FLOW_REACH_FRACTION,
    TRAINING_DATA_DISAGREEMENT,
    basin_population,
    batch_means_standard_error,
    between_chain_standard_error,
    curvature_figures,
    integrated_autocorrelation_time,
    mark_against_training_data,
    mark_unreached,
    mean_standard_error,
    observable_efficiency,
    sampling_efficiency,
    split_r_hat,
    trajectory_basin_fractions,
)


def strict_json(obj):
    """``obj`` through JSON that refuses NaN and Infinity, as jq and JavaScript do."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(json.dumps(obj), parse_constant=refuse)


def telegraph(rng, runs, samples, chains, enter, leave):
    """Indicators of a two-state Markov chain started in equilibrium, shape (runs, samples, chains); its population."""
    population = enter / (enter + leave)
    x = np.empty((runs, samples, chains))
    x[:, 0] = rng.random((runs, chains)) < population
    uniform = rng.random((runs, samples, chains))
    for t in range(1, samples):
        x[:, t] = np.where(x[:, t - 1] == 1, uniform[:, t] >= leave, uniform[:, t] < enter)
    return x, population


def test_a_basin_one_chain_sits_in_is_known_only_to_within_its_population():
    """16 chains that never move, one of them in the basin: the population 1/16 could as well be 0 or 2/16."""
    indicator = np.zeros((500, 16))
    indicator[:, 3] = 1.0
    assert math.isfinite(integrated_autocorrelation_time(indicator)), (
        "chains holding different constants are not a constant observable"
    )
    # An autocorrelation time of the run's length: about one independent sample per chain, an error of about p.
    assert mean_standard_error(indicator) > 0.9 / 16
    figures = basin_population(indicator)
    assert figures["population"] == 1 / 16 and figures["standard_error"] >= 1 / 16
    assert (
        figures["chains_visiting"] == 1
        and figures["stays"] == 1
        and figures["note"].startswith("rough: entered 1 time, by 1 of 16 chains")
    )
    # R-hat of chains that do not move is infinite, not undefined: they are the worst case of disagreement.
    assert split_r_hat(indicator) == math.inf
    efficiency = sampling_efficiency(indicator, 1000, 1.0)
    assert efficiency["r_hat"] is None and efficiency["undefined"]["r_hat"].startswith("infinite")


def test_a_basin_no_chain_entered_is_not_visited_with_an_upper_bound():
    figures = strict_json(basin_population(np.zeros((200, 8))))
    assert figures["population"] is None and figures["standard_error"] is None and figures["chains_visiting"] == 0
    assert figures["note"].startswith("not visited")
    # No hit in 8 independent samples: p <= 1 - 0.05^(1/8) = 0.31 at 95%.
    assert figures["upper_bound_95"] == pytest.approx(0.312, abs=1e-3)
    never_left = strict_json(basin_population(np.ones((200, 8))))
    assert never_left["population"] is None and never_left["lower_bound_95"] == pytest.approx(0.688, abs=1e-3)
    assert never_left["note"].startswith("never left")


def test_trajectory_populations_pool_the_frames_with_an_error_no_smaller_than_their_spread():
    # Two trajectories: 100 frames alternating in blocks of 10 (5 stays in, 5 out), 300 frames in blocks of 50.
    first = np.tile(np.r_[np.ones(10), np.zeros(10)], 5)
    second = np.tile(np.r_[np.ones(50), np.zeros(100)], 2)
    found = trajectory_basin_fractions({"b": np.r_[first, second], "never": np.zeros(400)}, [100, 300])
    b = found["b"]
    assert b["fraction"] == pytest.approx((50 + 100) / 400) and b["stays"] == 5 + 2
    p = b["fraction"]
    stays_error = math.sqrt(2 * (p * (1 - p)) ** 2 / 7 - p * (1 - p) / 400)
    # The trajectories' own fractions, 0.5 and 1/3, weighted by their frames 1/4 and 3/4.
    spread = math.sqrt(2 * ((0.25 * (0.5 - p)) ** 2 + (0.75 * (1 / 3 - p)) ** 2))
    assert b["standard_error"] == pytest.approx(max(stays_error, spread))
    assert found["never"] == {"fraction": 0.0, "standard_error": None, "stays": 0}
    # One trajectory: the stays alone.
    (alone,) = trajectory_basin_fractions({"b": first}, [100]).values()
    assert alone["standard_error"] == pytest.approx(math.sqrt(2 * 0.25**2 / 5 - 0.25 / 100))


def test_chains_that_agree_with_each_other_but_not_with_the_training_trajectories_are_not_converged():
    # Tri-alanine (B4): every chain keeps ALA3's psi in its major basin, where 9 ns of MD put 0.928 +- 0.022.
    stuck = {"population": 0.999, "standard_error": 0.001, "converged": True, "stays": 17}
    assert mark_against_training_data(stuck, {"fraction": 0.928, "standard_error": 0.022, "stays": 130})
    stuck = strict_json(stuck)
    assert stuck["converged"] is False and stuck["standard_error"] == pytest.approx(0.071)
    assert stuck["training_data_fraction"] == 0.928 and stuck["training_data_standard_error"] == 0.022
    assert stuck["note"].startswith("not converged: the chains put 0.999 +- 0.001 of their samples in it")
    assert "may not have left the basins where they started" in stuck["note"]
    # Chains that went in and out more often than the trajectories: the short trajectories are the likelier cause.
    moving = {"population": 0.524, "standard_error": 0.016, "converged": True, "stays": 316, "chains_visiting": 16}
    assert mark_against_training_data(moving, {"fraction": 0.39, "standard_error": 0.035, "stays": 71})
    assert "entered it 300 times, the trajectories 71: the trajectories are the likelier" in moving["note"]
    # Chains that disagree with each other (stuck, each in or out from its start) get no such word.
    stuck = {"population": 0.3, "standard_error": 0.06, "converged": False, "stays": 20, "chains_visiting": 20}
    assert mark_against_training_data(stuck, {"fraction": 0.7, "standard_error": 0.03, "stays": 12})
    assert "may not have left the basins where they started" in stuck["note"] and "likelier" not in stuck["note"]
    # Within the threshold the figures stand, with the trajectories' figure beside them.
    near = 0.93 + TRAINING_DATA_DISAGREEMENT * math.hypot(0.01, 0.022) * 0.99
    agreeing = {"population": near, "standard_error": 0.01, "converged": True}
    assert not mark_against_training_data(agreeing, {"fraction": 0.93, "standard_error": 0.022, "stays": 100})
    assert agreeing["converged"] is True and agreeing["standard_error"] == 0.01 and "note" not in agreeing
    assert agreeing["training_data_fraction"] == 0.93
    # No chain entered a basin that held 30 +- 2 % of the frames: the bound is withdrawn.
    never = basin_population(np.zeros((200, 8)))
    assert mark_against_training_data(never, {"fraction": 0.3, "standard_error": 0.02, "stays": 40})
    assert never["converged"] is False and never["upper_bound_95"] is None
    assert never["note"].startswith("not visited") and "the chains put none of their samples in it" in never["note"]
    # ... nor left one that held 70 %; a rare one (2 %) or one the trajectories never left says nothing.
    always = basin_population(np.ones((200, 8)))
    assert mark_against_training_data(always, {"fraction": 0.7, "standard_error": 0.02, "stays": 40})
    assert always["lower_bound_95"] is None and "the chains put all of their samples" in always["note"]
    for training in (
        {"fraction": 0.02, "standard_error": 0.005, "stays": 9},
        {"fraction": 1.0, "standard_error": None},
    ):
        figures = basin_population(np.zeros((200, 8)))
        assert not mark_against_training_data(figures, {"stays": 0, **training})
        assert figures["upper_bound_95"] > 0 and "converged" not in figures


def test_a_basin_the_flow_reaches_and_no_chain_entered_marks_the_chains_stuck():
    # No chain entered; 30% of the flow's draws are in the basin: stuck outside it, the bound withdrawn.
    stuck_out = basin_population(np.zeros((200, 8)))
    assert mark_unreached(stuck_out, 0.3, 1000)
    stuck_out = strict_json(stuck_out)
    assert stuck_out["converged"] is False and stuck_out["upper_bound_95"] is None
    assert stuck_out["flow_draws_fraction"] == 0.3 and stuck_out["population"] is None
    assert stuck_out["note"].startswith("not converged: no chain entered it, yet 30% of 1000 draws of the flow lie in")
    # No chain left; 20% of the draws lie outside it.
    stuck_in = basin_population(np.ones((200, 8)))
    assert mark_unreached(stuck_in, 0.8, 1000)
    assert stuck_in["converged"] is False and stuck_in["lower_bound_95"] is None
    assert stuck_in["note"].startswith("not converged: no chain left it, yet 20% of 1000 draws of the flow lie outside")
    # Below the threshold the flow agrees that the basin is (nearly) empty or full: the bounds stand.
    for indicator, fraction, bound in (
        (np.zeros((200, 8)), 0.01, "upper_bound_95"),
        (np.ones((200, 8)), 0.99, "lower_bound_95"),
    ):
        figures = basin_population(indicator)
        assert not mark_unreached(figures, fraction, 1000)
        assert (
            figures[bound] > 0
            and "converged" not in figures
            and figures["note"].startswith(("not visited", "never left"))
        )
    assert FLOW_REACH_FRACTION > 0.01
    # A basin the chains entered and left keeps its figures, whatever the flow's share of it.
    rng = np.random.default_rng(0)
    visited = basin_population((rng.random((400, 4)) < 0.3).astype(float))
    before = dict(visited)
    assert not mark_unreached(visited, 0.9, 1000)
    assert visited == {**before, "flow_draws_fraction": 0.9}


def test_a_single_stay_in_a_short_chain_is_not_given_a_tight_error():
    """One chain, one stay over its last 300 samples: the population 0.3 rests on one event."""
    indicator = np.zeros((1000, 1))
    indicator[700:] = 1.0
    figures = basin_population(indicator)
    # The two-state Markov error with one stay: sqrt(2 p^2 (1 - p)^2 - p (1 - p) / n) = 0.296
    # (autocorrelation alone: 0.16).
    assert figures["standard_error"] == pytest.approx(math.sqrt(2 * 0.21**2 - 0.21 / 1000), rel=1e-9)


def test_population_errors_cover_the_truth_for_chains_that_rarely_switch():
    """Single chains of 1000 samples that switch a few times (p = 1/3): +- 2 standard errors should hold the truth.

    With few stays no Gaussian interval reaches 95%; the autocorrelation error alone covered
    about 60% of these runs, the error with the stays' bound about 75%.
    """
    indicators, population = telegraph(np.random.default_rng(0), 400, 1000, 1, 0.002, 0.004)
    covered = visited = 0
    for indicator in indicators:
        figures = basin_population(indicator)
        if figures["population"] is None:
            continue
        visited += 1
        covered += abs(figures["population"] - population) <= 2 * figures["standard_error"]
    assert visited > 300 and covered / visited > 0.7


def test_population_error_of_independent_samples_is_the_binomial_one():
    indicator = (np.random.default_rng(1).random((2000, 8)) < 0.3).astype(float)
    figures = basin_population(indicator)
    assert figures["standard_error"] == pytest.approx(math.sqrt(0.21 / indicator.size), rel=0.1)
    assert "note" not in figures


def test_undefined_figures_are_null_with_a_reason():
    constant = strict_json(observable_efficiency(np.full((50, 4), 2.5), 100, 1.0))
    assert constant["mean"] == 2.5
    for key in ("standard_error", "iat", "ess", "ess_per_evaluation", "ess_per_cpu_second", "r_hat", "converged"):
        assert constant[key] is None and "the same value in every sample" in constant["undefined"][key]
    few = strict_json(observable_efficiency(np.random.default_rng(3).normal(size=(2, 4)), 100, 1.0))
    assert few["converged"] is None
    assert few["undefined"]["converged"] == "split R-hat undefined: fewer than 4 samples per chain"
    short = strict_json(sampling_efficiency(np.random.default_rng(2).normal(size=(3, 4)), 100, 0.0))
    assert (
        short["iat"] is not None
        and short["r_hat"] is None
        and short["undefined"]["r_hat"] == "fewer than 4 samples per chain"
    )
    assert short["ess_per_cpu_second"] is None and "CPU time" in short["undefined"]["ess_per_cpu_second"]
    assert "undefined" not in sampling_efficiency(np.random.default_rng(2).normal(size=(100, 4)), 100, 1.0)


def test_condition_number_of_a_singular_curvature_is_null_with_a_reason():
    singular = strict_json(curvature_figures(torch.tensor([-1e-12, 3.0, 5.0]).numpy()))
    assert singular["condition_number"] is None and "not positive" in singular["undefined"]["condition_number"]
    assert singular["above_4"] == 1
    assert curvature_figures(np.array([2.0, 8.0]))["condition_number"] == 4.0


def test_split_r_hat_of_a_hand_computed_case_is_gelmans():
    """Chains (0, 1, 2, 4) and (1, 3, 0, 2) split into halves of n = 2: means 1/2, 3 and 2, 1 with sample variance
    B/n = 59/48, within-half variances 1/2, 2, 2, 2 with mean W = 13/8 (both with n - 1 in the denominator), and
    R-hat = sqrt(((n - 1)/n W + B/n) / W) (Gelman et al., BDA 3rd ed., section 11.4)."""
    series = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 0.0], [4.0, 2.0]])
    W, B_over_n = 13 / 8, 59 / 48
    expected = math.sqrt((0.5 * W + B_over_n) / W)
    assert expected == pytest.approx(1.1208970766, rel=1e-10)
    assert split_r_hat(series) == pytest.approx(expected, rel=1e-12)


def test_chains_that_disagree_get_the_spread_between_them_as_their_error():
    """Chains stuck in four places (R-hat far above the limit): no tight error from the many samples each holds."""
    rng = np.random.default_rng(3)
    centres = np.array([0.0, 1.0, 2.0, 3.0])
    stuck = centres + 0.01 * rng.normal(size=(400, 4))
    figures = strict_json(observable_efficiency(stuck, 1600, 1.0))
    assert figures["converged"] is False and figures["note"].startswith("not converged: the chains disagree")
    assert (
        figures["standard_error"]
        >= between_chain_standard_error(stuck)
        == pytest.approx(centres.std(ddof=1) / 2, rel=1e-2)
    )
    mixed = rng.normal(size=(400, 4))
    well = strict_json(observable_efficiency(mixed, 1600, 1.0))
    assert well["converged"] is True and "note" not in well
    assert well["standard_error"] == pytest.approx(mean_standard_error(mixed), rel=1e-12)


def test_a_basin_population_of_chains_that_disagree_is_marked_and_widened():
    """Half the chains stay in the basin, half outside, each switching once in a while: the population 0.5
    rests on 8 chains, not on 3,200 samples."""
    indicator = np.zeros((400, 8))
    indicator[:, :4] = 1.0
    indicator[200:210, 5] = 1.0
    figures = strict_json(basin_population(indicator))
    assert figures["converged"] is False and "not converged: the chains disagree" in figures["note"]
    assert figures["standard_error"] >= between_chain_standard_error(indicator)


def test_a_slow_small_tail_past_sokals_window_is_caught_by_the_batch_means():
    """Unit noise plus an offset held for 800 samples at a time (variance 0.05): the autocorrelation is about 0.05 up
    to lag 800, too small for Sokal's window to reach, yet it makes the error of the mean 4.5 times the window's."""
    rng = np.random.default_rng(11)
    chains, samples, block, slow = 4, 4000, 800, 0.05
    offsets = np.repeat(rng.normal(scale=math.sqrt(slow), size=(samples // block, chains)), block, axis=0)
    series = rng.normal(size=(samples, chains)) + offsets
    exact = math.sqrt(1.0 / series.size + slow / (series.size // block))  # noise and 20 independent offsets
    window = math.sqrt(series.var() * integrated_autocorrelation_time(series) / series.size)
    assert window < 0.35 * exact
    assert 0.7 * exact < batch_means_standard_error(series) == mean_standard_error(series) < 1.4 * exact
    figures = strict_json(observable_efficiency(series, series.size, 1.0))
    assert figures["converged"] is True and figures["standard_error"] == pytest.approx(mean_standard_error(series))
    assert figures["note"].startswith("the autocorrelation reaches past Sokal's window")
    assert figures["standard_error_from"] == "batch means"
    # Offsets held for 700 samples, across the batches' ends of 800: caught as well.
    offsets = np.repeat(rng.normal(scale=math.sqrt(slow), size=(samples // 700 + 1, chains)), 700, axis=0)[:samples]
    series = rng.normal(size=(samples, chains)) + offsets
    exact = math.sqrt(1.0 / series.size + slow / (series.size / 700))
    assert 0.7 * exact < mean_standard_error(series) < 1.4 * exact
    # One chain's series, given as 1-D: as the one-column 2-D one.
    assert mean_standard_error(series[:, 0]) == mean_standard_error(series[:, :1]) > 0
