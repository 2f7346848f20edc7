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
