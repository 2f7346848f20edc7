"""Reweighting by hand: core sets with their ends excluded, the first entry into a core set, the free-energy
difference across phi = 0 and its block error where blocks hold no weight, and reweighted one-CV profiles."""

import math

import numpy as np
import pytest

from neuralct.analysis.fes import free_energy_1d
from neuralct.analysis.reweighting import (
    CORE_A,
    CORE_B,
    count_transitions,
    first_entry,
    in_core_set,
    phi_free_energy_difference,
)
from neuralct.errors import NeuralCTError

KT = 2.494


def test_core_sets_leave_out_their_ends_and_the_first_entry_is_that_frames_index():
    assert CORE_B == (0.5, 1.6)
    phi = np.array([-1.0, 0.2, 0.5, 1.6, 0.9, 1.0, -0.5, -0.7])
    np.testing.assert_array_equal(in_core_set(phi, CORE_B), [False, False, False, False, True, True, False, False])
    np.testing.assert_array_equal(in_core_set(phi, CORE_A), [True, False, False, False, False, False, False, True])
    # Frame 2 sits on B's lower end and frame 3 on its upper one: the first frame inside B is frame 4.
    assert first_entry(phi, CORE_B) == 4
    assert first_entry(phi, CORE_A) == 0
    assert first_entry(np.array([0.0, 0.5, 1.6, 2.0]), CORE_B) is None
    # A -> (B's end) -> A is no transition; A -> B -> A two.
    assert count_transitions(np.array([-1.0, 0.5, -1.0])) == 0
    assert count_transitions(phi) == 2


def test_the_free_energy_difference_divides_the_frames_at_phi_zero():
    rng = np.random.default_rng(3)
    phi = rng.uniform(-math.pi, math.pi, 2000)
    phi[::50] = 0.0  # on the dividing surface: the phi <= 0 side
    weights = rng.lognormal(0.0, 0.7, len(phi))
    difference = phi_free_energy_difference(phi, weights, KT)
    expected = -KT * math.log(weights[phi > 0].sum() / weights[phi <= 0].sum())
    assert difference.value_kj == pytest.approx(expected, rel=1e-12)
    # Weights exp(-U/kT) of a step U = 3 kJ/mol over phi > 0 on uniform frames: dF = 3 kJ/mol (to sampling noise).
    uniform = rng.uniform(-math.pi, math.pi, 200000)
    boltzmann = np.where(uniform > 0, math.exp(-3.0 / KT), 1.0)
    assert phi_free_energy_difference(uniform, boltzmann, KT).value_kj == pytest.approx(3.0, abs=0.05)


def test_blocks_without_weight_are_left_out_of_the_standard_error():
    """A block whose frames all weigh 0 changes neither the value nor its error: the run without it gives both."""
    rng = np.random.default_rng(11)
    phi = np.where(rng.random(1000) < 0.3, 1.0, -1.2)
    weights = rng.lognormal(0.0, 0.5, len(phi))
    weights[400:500] = 0.0  # the fifth of ten blocks of 100 frames
    kept = np.r_[0:400, 500:1000]
    with_empty_block = phi_free_energy_difference(phi, weights, KT, blocks=10)
    without_it = phi_free_energy_difference(phi[kept], weights[kept], KT, blocks=9)
    assert np.isfinite(with_empty_block.standard_error_kj) and with_empty_block.standard_error_kj > 0
    assert with_empty_block.value_kj == pytest.approx(without_it.value_kj, rel=1e-12)
    assert with_empty_block.standard_error_kj == pytest.approx(without_it.standard_error_kj, rel=1e-12)


def test_no_standard_error_when_the_weight_sits_in_fewer_than_two_blocks():
    phi = np.tile([-1.2, 1.0], 50)
    # Kish's effective number of blocks: (1 + 0.5)^2 / (1 + 0.25) = 1.8.
    weights = np.zeros(len(phi))
    weights[:10], weights[10:20] = 1.0, 0.5
    difference = phi_free_energy_difference(phi, weights, KT, blocks=10)
    assert difference.value_kj is None and difference.standard_error_kj is None
    assert "1.80 of the 10 blocks" in difference.reason
    one_block = np.zeros(len(phi))
    one_block[:10] = 1.0
    assert phi_free_energy_difference(phi, one_block, KT, blocks=10).value_kj is None


def test_a_reweighted_profile_follows_the_weights():
    x = np.array([0.1, 0.2, 0.6, 0.7, 0.8])
    weights = np.array([1.0, 1.0, 1.0, 1.0, 6.0])
    free, edges = free_energy_1d(x, bins=2, kT=KT, range=(0.0, 1.0), weights=weights)
    np.testing.assert_allclose(edges, [0.0, 0.5, 1.0])
    # Bin 0 holds weight 2, bin 1 weight 8: F_0 - F_1 = kT ln 4.
    np.testing.assert_allclose(free, [KT * math.log(4.0), 0.0], rtol=1e-12, atol=1e-12)
    plain, _ = free_energy_1d(x, bins=2, kT=KT, range=(0.0, 1.0))
    np.testing.assert_allclose(plain, [KT * math.log(1.5), 0.0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weights", [[1.0, -0.5, 1.0, 1.0], [1.0, np.nan, 1.0, 1.0], [1.0, 1.0, 1.0]])
def test_weights_that_are_no_probabilities_are_refused(weights):
    with pytest.raises(NeuralCTError, match="weights must be finite, non-negative and one per frame"):
        free_energy_1d(np.array([0.1, 0.2, 0.6, 0.7]), bins=2, range=(0.0, 1.0), weights=np.array(weights))
