"""Kinetic scores against processes with known spectra."""

import json
import math

import numpy as np
import pytest

from neuralct.analysis.kinetics import (
    OSCILLATION_SIGNIFICANCE,
    autocorrelation,
    compare_vamp2,
    cv_kinetics,
    implied_timescales,
    mean_and_standard_error,
    msm_implied_timescale,
    split_blocks,
    tica_spectrum,
    vamp2_blocks,
)
from neuralct.analysis.report import cv_quality_report
from neuralct.errors import NeuralCTError

SLOW, OSCILLATING, MODERATE = 0.9, -0.6, 0.3
ROTATION = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]


def ar1(coefficients, frames, seed):
    """Independent unit-variance AR(1) processes x_t+1 = c x_t + sqrt(1 - c^2) noise: autocorrelation c^lag."""
    rng = np.random.default_rng(seed)
    c = np.asarray(coefficients)
    x = np.empty((frames, len(c)))
    x[0] = rng.normal(size=len(c))
    noise = rng.normal(size=(frames, len(c))) * np.sqrt(1 - c**2)
    for t in range(1, frames):
        x[t] = c * x[t - 1] + noise[t]
    return x


@pytest.fixture(scope="module")
def mixed():
    """Three AR(1) processes mixed by a fixed rotation, as features; two train and two test trajectories."""
    return [ar1([SLOW, OSCILLATING, MODERATE], 20000, seed) @ ROTATION.T for seed in range(4)]


def test_tica_spectrum_finds_the_eigenvalues_and_flags_the_oscillation(mixed):
    spectrum = tica_spectrum(mixed[:2], lag_frames=1, lag_ps=0.5)
    assert spectrum["eigenvalues"] == pytest.approx([SLOW, OSCILLATING, MODERATE], abs=0.02)
    assert spectrum["negative"] == [1]
    assert spectrum["implied_timescales_ps"][0] == pytest.approx(-0.5 / math.log(SLOW), rel=0.1)
    assert spectrum["implied_timescales_ps"][1] is None
    assert implied_timescales([0.5, -0.1, 1.0], 2.0) == [pytest.approx(2.0 / math.log(2)), None, None]


def test_vamp2_error_bars_cover_the_exact_score(mixed):
    """The slow process alone has VAMP-2 c^(2 lag) at every lag."""
    slow = [x @ ROTATION[:, 0] for x in mixed]
    for lag in (1, 3):
        score = vamp2_blocks(slow[:2], split_blocks(slow[2:], 4, lag), lag, dim=1)
        assert len(score["blocks"]) == 8
        assert abs(score["mean"] - SLOW ** (2 * lag)) < 4 * score["standard_error"] + 0.01


def test_compare_vamp2_pairs_blocks_and_reports_tica(mixed):
    """CVs equal to the exact slow process score like TICA's first component; TICA's second adds c_osc^2."""
    slow = [(x @ ROTATION[:, 0])[:, None] for x in mixed]
    result = compare_vamp2(
        slow[:2], slow[2:], mixed[:2], mixed[2:], lag_frames=1, lag_ps=0.5, dim=1, blocks_per_trajectory=4
    )
    assert result["n_blocks"] == 8
    assert abs(result["difference"]["mean"]) < 4 * result["difference"]["standard_error"] + 0.005
    assert result["learned_timescales_ps"][0] == pytest.approx(-0.5 / math.log(SLOW), rel=0.1)
    assert result["tica_spectrum"]["negative"] == [1]
    # Two components: deeptime's order takes the oscillation second (VAMP-2 c_slow^2 + c_osc^2),
    # the slowest-first order the moderate process (c_slow^2 + c_mod^2).
    pair = [x @ ROTATION[:, [0, 2]] for x in mixed]
    two = compare_vamp2(
        pair[:2], pair[2:], mixed[:2], mixed[2:], lag_frames=1, lag_ps=0.5, dim=2, blocks_per_trajectory=4
    )
    assert two["tica"]["mean"] == pytest.approx(SLOW**2 + OSCILLATING**2, abs=0.03)
    assert two["tica_slowest_components"] == [0, 2]
    assert two["tica_slowest"]["mean"] == pytest.approx(SLOW**2 + MODERATE**2, abs=0.03)
    assert abs(two["difference_slowest"]["mean"]) < 4 * two["difference_slowest"]["standard_error"] + 0.005


def test_the_cv_report_flags_the_oscillation_and_gives_timescales_next_to_tica(mixed):
    """What ``neuralct analyze`` writes: TICA's second component is the oscillation, its baseline the two slowest
    (slow and moderate, like the CVs); the scores' errors are the pooled scores' jackknife errors."""
    cvs = [x @ ROTATION[:, [0, 2]] for x in mixed]
    no_angles = [np.zeros((len(x), 0)) for x in mixed]
    fit = [(0, 0, 20000), (1, 0, 20000)]
    scored = [(t, a, a + 5000) for t in (2, 3) for a in range(0, 20000, 5000)]
    report = cv_quality_report(cvs, mixed, no_angles, [], fit, scored, lag_frames=1, time_step_ps=0.5)
    json.dumps(report)
    tica = report["kinetics"]["tica"]
    assert tica["eigenvalues"] == pytest.approx([SLOW, OSCILLATING, MODERATE], abs=0.02)
    assert tica["oscillating_components"] == [2] and report["tica"]["oscillating_components"] == []
    assert report["tica"]["components"] == [1, 3]
    assert tica["implied_timescales_ps"][1] is None
    learned = report["kinetics"]["learned_cvs"]
    assert learned["oscillating_components"] == []
    assert learned["implied_timescales_ps"] == pytest.approx([-0.5 / math.log(c) for c in (SLOW, MODERATE)], rel=0.1)
    assert learned["implied_timescales_ps"][0] == pytest.approx(tica["implied_timescales_ps"][0], rel=0.05)
    # TICA's two slowest components and the CVs both score c_slow^2 + c_mod^2: no difference within its error.
    learned, tica_score, difference = report["learned_cvs"], report["tica"], report["learned_minus_tica"]
    assert learned["vamp2"] == pytest.approx(SLOW**2 + MODERATE**2, abs=0.03)
    assert difference["segments"] == 8 and difference["value"] == learned["vamp2"] - tica_score["vamp2"]
    assert abs(difference["value"]) < 4 * difference["standard_error"] + 0.005
    # The jackknife over the 8 scored segments, recomputed: each score without one segment, spread (n-1)/n.
    loo = np.subtract(learned["vamp2_leave_one_segment_out"], tica_score["vamp2_leave_one_segment_out"])
    assert difference["standard_error"] == pytest.approx(math.sqrt(7 / 8 * np.sum((loo - loo.mean()) ** 2)))
    assert learned["vamp2_standard_error"] < 0.02 and len(learned["vamp2_per_segment"]) == 8
    no_time = cv_quality_report(cvs, mixed, no_angles, [], fit, scored[:1], lag_frames=1)
    assert no_time["kinetics"]["tica"]["implied_timescales_frames"][0] == pytest.approx(-1 / math.log(SLOW), rel=0.1)
    assert (
        no_time["learned_cvs"]["vamp2_standard_error"] is None
        and no_time["learned_minus_tica"]["standard_error"] is None
    )


def test_the_standard_error_of_block_scores_is_the_sample_deviation_over_root_n():
    """Scores 1, 2, 3, 4: sample variance 5/3 (n - 1 in the denominator), standard error sqrt(5/3) / 2."""
    result = mean_and_standard_error(np.array([1.0, 2.0, 3.0, 4.0]))
    assert result["mean"] == 2.5
    assert result["standard_error"] == pytest.approx(math.sqrt(5 / 3) / 2, rel=1e-12)
    assert result["standard_error"] == pytest.approx(0.6454972243679028, rel=1e-12)


def test_the_autocorrelation_pairs_frames_within_one_trajectory_only():
    """Trajectories 0, 1, 2 and 10, 11, 12 at lag 1: pooled mean 6 and variance 154/6, pairs (0,1), (1,2), (10,11),
    (11,12) only (not 2 then 10), so the autocorrelation is 25 / (154/6) = 75/77."""
    series = [np.array([[0.0], [1.0], [2.0]]), np.array([[10.0], [11.0], [12.0]])]
    assert autocorrelation(series, 1)[0] == pytest.approx(75 / 77, rel=1e-12)
    # At lag 2 one pair per trajectory: ((-6)(-4) + (4)(6)) / 2 / (154/6).
    assert autocorrelation(series, 2)[0] == pytest.approx(24 / (154 / 6), rel=1e-12)


def test_a_negative_autocorrelation_at_the_first_lag_is_judged_by_the_white_noise_error():
    """Bartlett's variance of r_k sums r_j^2 over the shorter lags j < k only: at the first lag the sum is empty and
    the error is white noise's 1 / sqrt(pairs). The pattern 1, -1, 0, 0 repeated 11 times has r_1 = -22/43 over 43
    pairs, 3.35 such errors below zero: it oscillates. (Counting r_1 itself, the error would be
    sqrt(1 + 2 r_1^2) = 1.23 times larger and r_1 only 2.7 of them below zero.)"""
    series = np.tile([1.0, -1.0, 0.0, 0.0], 11)[:, None]
    kinetics = cv_kinetics([series], lag_frames=1, time_step_ps=None)
    assert kinetics["lags_frames"] == [1.0, 2.0] and kinetics["pairs"] == [43, 42]
    r = kinetics["cvs"][0]["autocorrelation"]
    assert r[0] == pytest.approx(-22 / 43, rel=1e-12) and r[1] == pytest.approx(0.0, abs=1e-12)
    white_noise_error = 1 / math.sqrt(43)
    assert (
        -r[0] / white_noise_error
        > OSCILLATION_SIGNIFICANCE
        > -r[0] / (white_noise_error * math.sqrt(1 + 2 * r[0] ** 2))
    )
    assert kinetics["cvs"][0]["oscillating"] is True


def test_blocks_shorter_than_ten_lags_are_refused():
    with pytest.raises(NeuralCTError, match="10 lags"):
        split_blocks([np.zeros((100, 1))], 4, lag_frames=5)


def test_msm_timescale_of_a_two_state_process():
    """Hops between wells at -1 and +1 with probability s per 0.5 ps frame: t_2 = -0.5 ps / ln(1 - 2 s) at any lag."""
    rng = np.random.default_rng(5)
    switch, frames = 0.02, 100000
    hops = rng.random(frames) < switch
    state = np.where(np.cumsum(hops) % 2 == 0, -1.0, 1.0)
    # Wells far apart compared with their width: a frame never looks like the other well.
    coordinate = state + 0.2 * rng.normal(size=frames)
    expected = -0.5 / math.log(1 - 2 * hops.mean())
    assert msm_implied_timescale(
        [coordinate[:50000], coordinate[50000:]], lag_frames=4, lag_ps=2.0, bins=50
    ) == pytest.approx(expected, rel=0.05)
    with pytest.raises(NeuralCTError, match="no relaxation"):
        msm_implied_timescale([rng.normal(size=5000)], lag_frames=4, lag_ps=2.0, bins=20)
