"""The default objective of a training on trajectories: kinetic where the data allow it, its lag from the data."""

from dataclasses import dataclass

import numpy as np
import pytest

from neuralct.errors import NeuralCTError
from neuralct.workflows import objective as objective_module
from neuralct.workflows.objective import KINETIC_VAMP_WEIGHT, MIN_KINETIC_PAIRS, choose_objective


@dataclass
class Trajectories:
    """What the choice reads of :class:`neuralct.data.PhaseSpaceData`: internal coordinates and their times."""

    y: np.ndarray
    traj_lengths: list
    timestep_ps: float | None
    momenta_source: str = "recorded"
    timestep_note: str | None = None

    def internal_positions(self) -> np.ndarray:
        return self.y


def slow_process(relaxation_ps: float, timestep_ps: float, lengths=(4000, 4000, 4000), fast=5, seed=0):
    """Trajectories of one Ornstein-Uhlenbeck coordinate relaxing in ``relaxation_ps`` and ``fast`` white-noise ones."""
    rng = np.random.default_rng(seed)
    decay = np.exp(-timestep_ps / relaxation_ps)
    series = []
    for length in lengths:
        slow = np.empty(length)
        slow[0] = rng.normal()
        kicks = rng.normal(size=length) * np.sqrt(1 - decay**2)
        for t in range(1, length):
            slow[t] = decay * slow[t - 1] + kicks[t]
        series.append(np.column_stack([slow, rng.normal(size=(length, fast))]))
    return Trajectories(np.concatenate(series), list(lengths), timestep_ps)


@pytest.mark.parametrize("relaxation_ps, lag_ps, vamp_lags_ps", [(8.0, 2.0, [1.0, 2.0]), (16.0, 4.0, [2.0, 4.0])])
def test_the_lag_is_a_quarter_of_the_slowest_timescale(relaxation_ps, lag_ps, vamp_lags_ps):
    """A process relaxing in t ps gets the lag t/4 in whole frames, the VAMP-2 term at half of it and it."""
    choice = choose_objective(slow_process(relaxation_ps, 0.5), 1)
    assert choice.objective == "kinetic" and choice.momenta == "recorded"
    assert choice.figures["tica_slowest_timescale_ps"] == pytest.approx(relaxation_ps, rel=0.15)
    assert choice.lag_ps == lag_ps and choice.vamp_lags_ps == vamp_lags_ps
    assert choice.vamp_weight == KINETIC_VAMP_WEIGHT
    # The held-out trajectory does not enter the choice: replacing it changes nothing.
    other = slow_process(relaxation_ps, 0.5)
    other.y[-4000:] = np.random.default_rng(9).normal(size=(4000, other.y.shape[1]))
    assert choose_objective(other, 1).as_dict() == choice.as_dict()
    record = choice.as_dict()
    assert record["objective"] == "kinetic" and record["lag_ps"] == lag_ps and "TICA" in record["reason"]


def test_an_odd_number_of_frames_has_its_vamp_term_at_the_lag_alone():
    choice = choose_objective(slow_process(6.0, 0.5), 1)  # 0.25 x 6 ps = 3 frames of 0.5 ps
    assert choice.lag_ps == 1.5 and choice.vamp_lags_ps == [1.5]


def test_the_lag_spans_at_most_a_tenth_of_the_shortest_training_trajectory():
    choice = choose_objective(slow_process(200.0, 1.0, lengths=(1500, 400, 1500, 1500)), 1)
    assert choice.objective == "kinetic" and choice.lag_ps == 40.0  # not 50: 400 frames / 10


@pytest.mark.parametrize(
    "relaxation_ps, timestep_ps, lag_ps, vamp_lags_ps",
    [(8.0, 0.5, 1.0, [1.0, 2.0]), (6.0, 0.5, 0.5, [1.5]), (4.0, 1.0, 1.0, [1.0])],
)
def test_files_without_velocities_train_the_configuration_only_term_at_half_the_lag(
    relaxation_ps, timestep_ps, lag_ps, vamp_lags_ps
):
    """Half the chosen lag in whole frames, rounded down, at least one frame; the VAMP-2 term as with velocities."""
    data = slow_process(relaxation_ps, timestep_ps)
    data.momenta_source = "resampled"
    choice = choose_objective(data, 1)
    assert choice.objective == "kinetic" and choice.momenta == "resample"
    assert (choice.lag_ps, choice.vamp_lags_ps) == (lag_ps, vamp_lags_ps)
    assert "configuration only" in choice.line() and "at half of it" in choice.reason
    # Asked for, recorded velocities are not there to use; resampled on data that has them: the same halving.
    with_velocities = choose_objective(slow_process(relaxation_ps, timestep_ps), 1, momenta="resample")
    assert (with_velocities.lag_ps, with_velocities.vamp_lags_ps) == (lag_ps, vamp_lags_ps)


def test_too_few_pairs_give_maximum_likelihood_with_the_reason():
    short = slow_process(8.0, 0.5, lengths=(300, 300, 300))
    choice = choose_objective(short, 1)
    assert choice.objective == "density" and choice.lag_ps is None and choice.vamp_weight == 0
    assert f"{2 * (300 - 4)} training pairs" in choice.reason and str(MIN_KINETIC_PAIRS) in choice.reason
    # Asked for, the kinetic objective trains on what there is.
    asked = choose_objective(short, 1, objective="kinetic")
    assert asked.objective == "kinetic" and asked.lag_ps == 2.0


def test_what_cannot_carry_the_kinetic_objective_gets_maximum_likelihood():
    data = slow_process(8.0, 0.5)
    assert "weighted maximum likelihood" in choose_objective(data, 1, weighted=True).reason
    assert choose_objective(data, 1, rank_lag_ps=1.0).objective == "density"
    assert choose_objective(data, 1, objective="density").as_dict()["objective"] == "density"
    stamped = Trajectories(data.y, data.traj_lengths, None, timestep_note="these files have no time stamps")
    choice = choose_objective(stamped, 1)
    assert choice.objective == "density" and "no time stamps" in choice.reason
    with pytest.raises(NeuralCTError, match="`objective` kinetic needs pairs of frames a lag apart: no time"):
        choose_objective(stamped, 1, objective="kinetic")
    with pytest.raises(NeuralCTError, match="`vamp_weight` needs pairs of frames a lag apart"):
        choose_objective(stamped, 1, vamp_weight=5.0)


def test_options_of_one_objective_are_refused_with_the_other():
    data = slow_process(8.0, 0.5)
    with pytest.raises(NeuralCTError, match="`lag_ps` sets the kinetic objective; drop it or `objective` density"):
        choose_objective(data, 1, objective="density", lag_ps=1.0)
    with pytest.raises(NeuralCTError, match="`rank_lag_ps` ranks the modes of maximum likelihood"):
        choose_objective(data, 1, objective="kinetic", rank_lag_ps=1.0)
    with pytest.raises(NeuralCTError, match="`objective` must be one of auto, kinetic, density"):
        choose_objective(data, 1, objective="slow")


def test_a_given_lag_keeps_its_meaning():
    """`lag_ps` alone: the time-lagged objective without a VAMP-2 term, as it always was; the data choose nothing."""
    data = slow_process(8.0, 0.5)
    choice = choose_objective(data, 1, lag_ps=1.0)
    assert (choice.lag_ps, choice.vamp_weight, choice.vamp_lags_ps, choice.figures) == (1.0, 0.0, None, {})
    weighted = choose_objective(data, 1, lag_ps=1.0, vamp_weight=5.0)
    assert (weighted.vamp_weight, weighted.vamp_lags_ps) == (5.0, None)
    chosen_lag = choose_objective(data, 1, vamp_weight=5.0)
    assert (chosen_lag.lag_ps, chosen_lag.vamp_weight, chosen_lag.vamp_lags_ps) == (2.0, 5.0, [1.0, 2.0])
    assert chosen_lag.momenta == "recorded"
    # The modes of a VAMP-2 term that is off are refused, not dropped in silence, even at their default value.
    for given in ({"lag_ps": 1.0}, {"vamp_weight": 0.0}):
        with pytest.raises(NeuralCTError, match=r"^`vamp_modes` needs `vamp_weight` \(the modes of the VAMP-2 term\)$"):
            choose_objective(data, 1, vamp_modes=2, **given)


def test_the_pair_threshold_is_what_decides(monkeypatch):
    """The same data switch objective exactly at the threshold (guards the constant's use, not its value)."""
    data = slow_process(8.0, 0.5, lengths=(600, 600, 600))
    pairs = 2 * (600 - 4)
    monkeypatch.setattr(objective_module, "MIN_KINETIC_PAIRS", pairs)
    assert choose_objective(data, 1).objective == "kinetic"
    monkeypatch.setattr(objective_module, "MIN_KINETIC_PAIRS", pairs + 1)
    assert choose_objective(data, 1).objective == "density"
