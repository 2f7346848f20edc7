"""Lagged pairs in rescaled time: the pairing that weighs each pair by the rescaled time it spans."""

import numpy as np
import pytest
import torch

from neuralct.data.pairs import LaggedPairs, lagged_pairs, rescaled_lagged_pairs, split_lagged_pairs
from neuralct.errors import NeuralCTError
from neuralct.training.objectives import LaggedLikelihood


def test_without_a_bias_rescaled_time_is_simulation_time():
    first, second, spans = rescaled_lagged_pairs([10, 7], np.zeros(17), 0.5, 1.0)
    expected = lagged_pairs([10, 7], 2)
    assert np.array_equal(first, expected[0]) and np.array_equal(second, expected[1])
    assert np.all(spans == 0.5)


def test_without_a_bias_decimal_frame_spacings_pair_frames_a_whole_number_of_frames_apart():
    """0.1 ps frames and a 0.3 ps lag, neither exact in binary: the pairs are still (i, i + 3), each 0.1 ps long,
    with no sliver of overlap left by the rounding of the frames' bounds."""
    first, second, spans = rescaled_lagged_pairs([40, 25], np.zeros(65), 0.1, 0.3)
    expected = lagged_pairs([40, 25], 3)
    np.testing.assert_array_equal(first, expected[0])
    np.testing.assert_array_equal(second, expected[1])
    np.testing.assert_allclose(spans, 0.1, rtol=1e-9)


def test_a_constant_bias_stretches_time_by_its_boltzmann_factor():
    """V = kT ln 4 everywhere: every frame lasts 4 dt, so 8 dt of rescaled time is 2 frames."""
    first, second, spans = rescaled_lagged_pairs([12], np.full(12, np.log(4.0)), 0.5, 4.0)
    expected = lagged_pairs([12], 2)
    assert np.array_equal(first, expected[0]) and np.array_equal(second, expected[1])
    assert np.allclose(spans, 2.0, rtol=1e-12)


def test_each_frame_starts_pairs_for_exactly_its_rescaled_time():
    """The spans of the pairs that start at frame i add up to dt exp(w_i), wherever the lag ends inside the run;
    a frame that lasts longer than the lag is paired with itself (the system stays there)."""
    rng = np.random.default_rng(0)
    lengths, dt, lag = [150, 90], 0.5, 3.0
    log_rates = rng.normal(0.0, 2.0, size=sum(lengths))
    first, second, spans = rescaled_lagged_pairs(lengths, log_rates, dt, lag)
    ends = np.cumsum(lengths)
    for start, end in zip([0, *ends[:-1]], ends):
        inside = (first >= start) & (first < end)
        assert np.all((second[inside] >= start) & (second[inside] < end)), "no pair crosses a trajectory boundary"
        durations = dt * np.exp(log_rates[start:end])
        bounds = np.concatenate([[0.0], np.cumsum(durations)])
        total = np.bincount(first[inside] - start, weights=spans[inside], minlength=end - start)
        whole = bounds[1:] + lag <= bounds[-1]
        assert np.allclose(total[whole], durations[whole], rtol=1e-10)
        # Frame j follows i one lag later for the overlap of [T_i + lag, T_i+1 + lag) with [T_j, T_j+1).
        i, j = first[inside] - start, second[inside] - start
        overlap = np.minimum(bounds[i + 1] + lag, bounds[j + 1]) - np.maximum(bounds[i] + lag, bounds[j])
        assert np.allclose(spans[inside], overlap, rtol=1e-12)
    long = dt * np.exp(log_rates) > lag
    assert np.any(first == second) and set(first[first == second]) <= set(np.flatnonzero(long))


def test_a_frame_starts_the_model_with_the_rescaled_time_it_lasts():
    """The start weights of pairs in rescaled time are dt exp(w) of each frame (but near the end of its run), so that
    the model's start sees the unbiased distribution; the fit's start draws by them."""
    from neuralct.model.transformation import DEFAULT_ARCHITECTURE
    from neuralct.training.loop import TrainingSettings
    from neuralct.workflows.train import fit_frames

    rng = np.random.default_rng(3)
    n, dt = 2000, 0.5
    # Two clusters, visited alternately for 10 frames each; the frames at +1 last 9 times as long unbiased.
    at_plus = (np.arange(n) // 10) % 2 == 1
    y = np.where(at_plus, 1.0, -1.0)[:, None] + 0.1 * rng.normal(size=(n, 2))
    log_rates = np.where(at_plus, np.log(9.0), 0.0)
    train_index, valid_index = np.arange(1600), np.arange(1600, n)
    pairs = split_lagged_pairs([n], 2.0, dt, train_index, valid_index, log_rates=log_rates)
    weights = pairs.start_weights(train_index)
    interior = train_index[:1500]
    assert np.allclose(weights[:1500], dt * np.exp(log_rates[interior]), rtol=1e-10)
    assert split_lagged_pairs([n], 2.0, dt, train_index, valid_index).start_weights(train_index) is None

    settings = TrainingSettings(steps=1, batch_size=64, progress=False)
    means = {}
    for time, given in (("rescaled", pairs), ("simulation", None)):
        given = given or split_lagged_pairs([n], 2.0, dt, train_index, valid_index)
        model, *_ = fit_frames(
            y, 1.0, DEFAULT_ARCHITECTURE, settings, train_index=train_index, valid_index=valid_index, pairs=given
        )
        means[time] = model.position_offset.detach().numpy()
    # Unbiased, the +1 cluster holds 90 % of the time: mean 0.8 (draws of 1,600 frames: standard error 0.015).
    assert np.allclose(means["rescaled"], 0.8, atol=0.06)
    assert np.allclose(means["simulation"], 0.0, atol=0.06)


def test_a_frame_biased_beyond_float32s_range_starts_the_model_on_itself():
    """(V - c)/kT = 100 makes one frame last e^100 dt, beyond float32: still a start (float64, as pairs are drawn)."""
    from neuralct.model.transformation import DEFAULT_ARCHITECTURE
    from neuralct.training.loop import TrainingSettings
    from neuralct.workflows.train import fit_frames

    y = np.random.default_rng(0).normal(size=(400, 2))
    log_rates = np.zeros(400)
    log_rates[50] = 100.0
    train_index, valid_index = np.arange(320), np.arange(320, 400)
    pairs = split_lagged_pairs([400], 2.0, 0.5, train_index, valid_index, log_rates=log_rates)
    settings = TrainingSettings(steps=1, batch_size=32, progress=False)
    model, *_ = fit_frames(
        y, 1.0, DEFAULT_ARCHITECTURE, settings, train_index=train_index, valid_index=valid_index, pairs=pairs
    )
    assert np.allclose(model.position_offset.detach().numpy(), y[50], atol=1e-6)


def test_a_pair_belongs_to_a_set_only_when_both_its_frames_do():
    """Frames 0-6 train and 7-15 validate (trajectories of 10 and 6 frames, 2 frames a lag): no pair spans the cut
    between the sets nor the end of a trajectory."""
    pairs = split_lagged_pairs([10, 6], 0.2, 0.1, np.arange(7), np.arange(7, 16))
    assert pairs.lag_frames == 2
    np.testing.assert_array_equal(pairs.train[0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(pairs.train[1], [2, 3, 4, 5, 6])
    np.testing.assert_array_equal(pairs.valid[0], [7, 10, 11, 12, 13])
    np.testing.assert_array_equal(pairs.valid[1], [9, 12, 13, 14, 15])


def test_bad_biases_are_refused():
    with pytest.raises(NeuralCTError, match="4 values for 5 frames"):
        rescaled_lagged_pairs([5], np.zeros(4), 1.0, 1.0)
    with pytest.raises(NeuralCTError, match="not finite"):
        rescaled_lagged_pairs([3], np.array([0.0, np.nan, 0.0]), 1.0, 1.0)
    with pytest.raises(NeuralCTError, match="needs the time between frames"):
        split_lagged_pairs([3], 1.0, None, np.arange(2), np.arange(2, 3), log_rates=np.zeros(3))


def test_weighted_pairs_are_drawn_in_proportion_to_their_weights():
    """Pairs of zero weight never enter a minibatch nor the validation draw; the others as often as their weight."""
    q = torch.randn(400, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    first, second = lagged_pairs([400], 1)
    weights = np.where(first % 3 == 0, 0.0, np.where(first % 3 == 1, 1.0, 3.0))
    train, valid = first < 300, first >= 300
    pairs = LaggedPairs(
        (first[train], second[train]), (first[valid], second[valid]), 0, 1.0, weights[train], weights[valid]
    )
    objective = LaggedLikelihood(q, None, pairs)
    assert torch.all(objective.valid_pairs[0] % 3 != 0) and len(objective.valid_pairs[0]) == int(valid.sum())
    starts = []

    def drawn_starts(model, begin, ends, generator):
        starts.append(begin)
        raise _Drawn

    objective._latent = drawn_starts
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        with pytest.raises(_Drawn):
            objective.loss(_DynamicsModel(), 512, generator)
    drawn = torch.cat(starts) % 3
    assert not torch.any(drawn == 0)
    share = float((drawn == 2).double().mean())
    assert share == pytest.approx(0.75, abs=0.02)


class _Drawn(Exception):
    """Raised once a minibatch's first frames are drawn."""


class _DynamicsModel:
    """Enough of a model for :meth:`LaggedLikelihood.loss` to reach its draw."""

    dynamics = object()

    class flow:
        acts_on_configuration = True
