"""Conformational state labels and the classification accuracy of CVs."""

import numpy as np
import pytest

from neuralct.analysis.states import (
    STATE_NAMES,
    STATE_REGIONS_DEG,
    UNASSIGNED,
    conformational_states,
    state_classification_accuracy,
)


def test_textbook_conformations_get_their_regions():
    # (phi, psi) in degrees: alpha helix, antiparallel/parallel beta strands, polyproline II helix,
    # left-handed helix and the C7ax minimum (phi > 0).
    points = {
        "alphaR": [(-57, -47), (-63, -41)],
        "beta": [(-139, 135), (-119, 113), (-160, -170)],
        "PPII": [(-75, 145), (-83, 73)],
        "alphaL": [(57, 47), (75, -65)],
    }
    for name, angles in points.items():
        phi, psi = np.radians(np.array(angles, dtype=float)).T
        assert list(conformational_states(phi, psi)) == [STATE_NAMES.index(name)] * len(angles)


def test_gaps_are_unassigned_and_angles_are_wrapped():
    phi, psi = np.radians([[-170.0, -10.0], [0.0, 0.0]])  # left of alphaR, between alphaR and alphaL
    assert list(conformational_states(phi, psi)) == [UNASSIGNED, UNASSIGNED]
    beta = conformational_states(np.radians([-150.0 + 360.0]), np.radians([160.0 - 720.0]))
    assert beta[0] == STATE_NAMES.index("beta")


def test_cores_do_not_overlap():
    grid = np.radians(np.arange(-179.5, 180.0, 1.0))
    phi, psi = np.meshgrid(grid, grid)
    phi_deg, psi_deg = np.degrees(phi.ravel()), np.degrees(psi.ravel())
    membership = np.zeros(phi_deg.size, dtype=int)
    for rectangles in STATE_REGIONS_DEG:
        inside = np.zeros(phi_deg.size, dtype=bool)
        for lo, hi, psi_lo, psi_hi in rectangles:
            inside |= (phi_deg >= lo) & (phi_deg <= hi) & (psi_deg >= psi_lo) & (psi_deg <= psi_hi)
        membership += inside
    assert membership.max() == 1


def clusters(rng, centres, n_per_state, spread):
    points = np.concatenate([c + spread * rng.normal(size=(n_per_state, 2)) for c in centres])
    labels = np.repeat(np.arange(len(centres)), n_per_state)
    return points, labels


def test_separated_clusters_are_classified_perfectly():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    x_train, y_train = clusters(rng, centres, 300, 0.5)
    x_test, y_test = clusters(rng, centres, 200, 0.5)
    result = state_classification_accuracy(x_train, y_train, x_test, y_test)
    assert result["accuracy"] > 0.99 and result["balanced_accuracy"] > 0.99
    assert result["majority_baseline"] == pytest.approx(0.25)
    assert result["states_scored"] == list(STATE_NAMES) and result["skipped_states"] == {}
    assert result["per_state"]["PPII"] == {"n_train": 300, "n_test": 200, "recall": pytest.approx(1.0, abs=0.02)}


def test_overlapping_clusters_are_classified_at_chance():
    rng = np.random.default_rng(2)
    centres = np.zeros((2, 2))
    x_train, y_train = clusters(rng, centres, 1000, 1.0)
    x_test, y_test = clusters(rng, centres, 1000, 1.0)
    result = state_classification_accuracy(x_train, y_train, x_test, y_test)
    assert 0.45 < result["balanced_accuracy"] < 0.55
    assert sorted(result["skipped_states"]) == ["PPII", "alphaL"]


def test_rare_states_and_unassigned_frames_are_left_out():
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    x_train, y_train = clusters(rng, centres, 200, 0.5)
    x_test, y_test = clusters(rng, centres, 100, 0.5)
    y_train[y_train == 2] = np.where(np.arange(200) < 5, 2, UNASSIGNED)  # only 5 PPII training frames
    result = state_classification_accuracy(x_train, y_train, x_test, y_test)
    assert result["states_scored"] == ["alphaR", "beta"]
    assert "PPII" in result["skipped_states"] and "5 training" in result["skipped_states"]["PPII"]
    assert result["n_test_scored"] == 200 and result["accuracy"] > 0.99


def test_fewer_than_two_states_give_no_accuracy():
    x = np.zeros((50, 2))
    labels = np.zeros(50, dtype=int)
    result = state_classification_accuracy(x, labels, x, labels)
    assert result["accuracy"] is None and result["states_scored"] == ["alphaR"]


def test_points_on_region_boundaries_belong_to_the_state_listed_first():
    """Bounds are inclusive and a shared edge goes to the first state: phi = -90 is beta (PPII starts above it),
    phi = -160 and psi = -120 or 50 are alphaR's own edges, phi = 0 is alphaL, phi = -180 is beta."""
    points = {
        "beta": [(-90.0, 100.0), (-180.0, 120.0), (-90.0, -150.0)],
        "alphaR": [(-160.0, 0.0), (-100.0, -120.0), (-100.0, 50.0), (-20.0, 0.0)],
        "PPII": [(-89.0, 100.0), (-20.0, 100.0)],
        "alphaL": [(0.0, 0.0), (0.0, 180.0)],
    }
    for name, angles in points.items():
        phi, psi = np.radians(np.array(angles)).T
        assert list(conformational_states(phi, psi)) == [STATE_NAMES.index(name)] * len(angles), name


def test_a_tie_between_neighbours_goes_to_the_nearest():
    """Two neighbours vote, one of each state: the state of the nearer one wins."""
    x_train = np.array([[0.0], [1.0]])
    y_train = np.array([0, 1])
    x_test = np.array([[0.2], [0.8], [0.3], [0.9]])
    y_test = np.array([0, 1, 0, 1])
    result = state_classification_accuracy(x_train, y_train, x_test, y_test, n_neighbours=2, min_frames=1)
    assert result["accuracy"] == 1.0


def test_recall_counts_the_frames_of_each_state_found():
    """Nearest neighbour on a line: training state 0 at 0 and state 1 at 1; held-out frames of state 0 at 0.1 and
    0.9 and of state 1 at 0.95: state 0 has recall 1/2, state 1 recall 1 (its precision would be 1/2)."""
    x_train = np.array([[0.0], [1.0]])
    y_train = np.array([0, 1])
    x_test = np.array([[0.1], [0.9], [0.95]])
    y_test = np.array([0, 0, 1])
    result = state_classification_accuracy(x_train, y_train, x_test, y_test, n_neighbours=1, min_frames=1)
    assert result["per_state"]["alphaR"]["recall"] == pytest.approx(0.5)
    assert result["per_state"]["beta"]["recall"] == pytest.approx(1.0)
    assert result["balanced_accuracy"] == pytest.approx(0.75) and result["accuracy"] == pytest.approx(2 / 3)


def test_the_accuracy_does_not_depend_on_the_units_of_a_cv():
    """Scaling one CV by 1000 (another unit) changes no neighbour: each CV is scaled to unit training variance."""
    rng = np.random.default_rng(4)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    x_train, y_train = clusters(rng, centres, 100, 0.8)
    x_test, y_test = clusters(rng, centres, 100, 0.8)
    result = state_classification_accuracy(x_train, y_train, x_test, y_test)
    units = np.array([1000.0, 1.0])
    rescaled = state_classification_accuracy(x_train * units, y_train, x_test * units, y_test)
    assert rescaled["accuracy"] == pytest.approx(result["accuracy"], abs=1e-12)
    assert 0.7 < result["accuracy"] < 0.99


def test_the_majority_baseline_answers_the_most_common_training_state():
    """70 % of the training frames but 25 % of the held-out ones are alphaR: the baseline scores 0.25."""
    rng = np.random.default_rng(5)
    x_train = np.concatenate([rng.normal(0, 0.3, (70, 2)), rng.normal(3, 0.3, (30, 2))])
    y_train = np.repeat([0, 1], [70, 30])
    x_test = np.concatenate([rng.normal(0, 0.3, (25, 2)), rng.normal(3, 0.3, (75, 2))])
    y_test = np.repeat([0, 1], [25, 75])
    result = state_classification_accuracy(x_train, y_train, x_test, y_test)
    assert result["majority_baseline"] == pytest.approx(0.25)
