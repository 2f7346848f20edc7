"""The CV quality report on a synthetic 'dipeptide' whose slow modes are known."""

import json

import numpy as np
import pytest

from neuralct.analysis.information import circular_correlation, mutual_information
from neuralct.analysis.report import cv_quality_report
from neuralct.errors import NeuralCTError

LAG = 10


def hopping(rng, n_frames, centres, switch_probability, spread):
    """An angle hopping between two centres (radians) with rare switches, plus AR(1) noise of std ``spread``."""
    flips = rng.random(n_frames) < switch_probability
    state = (np.cumsum(flips) + rng.integers(2)) % 2
    noise = np.zeros(n_frames)
    kicks = rng.normal(size=n_frames) * spread * np.sqrt(1 - 0.8**2)
    for t in range(1, n_frames):
        noise[t] = 0.8 * noise[t - 1] + kicks[t]
    return np.asarray(centres)[state] + noise


def synthetic_trajectory(rng, n_frames, mixing):
    """phi hops PII/alphaR (-80 deg) <-> C7ax (70 deg) slowly, psi hops 150 <-> -40 deg faster; 8 features.

    The "learned" CVs are mode 1 = sin(phi), mode 2 = cos(psi) (plus a little noise; both separate the two
    centres of their angle), modes 3-4 pure noise.
    The features are a fixed linear mix of (cos phi, sin phi, cos psi, sin psi) and 4 fast, large noises.
    """
    phi = hopping(rng, n_frames, np.radians([-80.0, 70.0]), 0.003, 0.2)
    psi = hopping(rng, n_frames, np.radians([150.0, -40.0]), 0.01, 0.25)
    cvs = np.column_stack([
        np.sin(phi) + 0.05 * rng.normal(size=n_frames),
        np.cos(psi) + 0.05 * rng.normal(size=n_frames),
        rng.normal(size=(n_frames, 2)),
    ])
    features = np.column_stack([np.cos(phi), np.sin(phi), np.cos(psi), np.sin(psi), 3 * rng.normal(size=(n_frames, 4))])
    return cvs, phi, psi, features @ mixing


@pytest.fixture(scope="module")
def report_and_data():
    rng = np.random.default_rng(5)
    mixing = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    data = [synthetic_trajectory(rng, 3000, mixing) for _ in range(6)]
    cvs, phi, psi, features = (list(x) for x in zip(*data))
    report = cv_quality_report(cvs, phi, psi, [0, 1, 2, 3], [4, 5], LAG, features, n_modes=6, time_step_ps=0.5)
    return report, cvs, phi, psi


def test_report_is_json_and_states_its_conventions(report_and_data):
    report, *_ = report_and_data
    json.dumps(report)
    assert report["lag_ps"] == 5.0 and report["n_frames_held_out"] == 6000
    assert len(report["modes"]) == 4  # n_modes is capped at the number of CVs
    assert "constant" in report["conventions"]["vamp2"]
    assert report["pca"]["mass_weighted"] is False and "unweighted" in report["conventions"]["pca"]


def test_per_mode_dependence_is_measured_on_held_out_frames(report_and_data):
    report, cvs, phi, psi = report_and_data
    held_out_cvs = np.concatenate([cvs[4], cvs[5]])
    held_out_phi = np.concatenate([phi[4], phi[5]])
    mode1, mode2, mode3 = report["modes"][:3]
    assert mode1["mi_phi_nats"] == pytest.approx(mutual_information(held_out_cvs[:, 0], held_out_phi))
    assert mode1["circular_correlation_phi"] == pytest.approx(circular_correlation(held_out_cvs[:, 0], held_out_phi))
    # Mode 1 is sin(phi) (correlation near 1), mode 2 cos(psi); mode 3 is noise.
    assert mode1["circular_correlation_phi"] > 0.95 and mode2["circular_correlation_psi"] > 0.95
    assert mode1["mi_phi_nats"] > np.log(2) and mode2["mi_psi_nats"] > np.log(2)  # more than the basin bit
    assert mode3["mi_phi_nats"] < 0.02 and mode3["mi_psi_nats"] < 0.02
    assert report["best_of_two_slowest"]["phi"]["mode"] == 1
    assert report["best_of_two_slowest"]["psi"]["mode"] == 2


def test_vamp2_compares_learned_cvs_with_baselines_at_the_same_lag(report_and_data):
    report, *_ = report_and_data
    learned, tica, pca, angles = (report[k]["vamp2"] for k in ("learned_cvs", "tica", "pca", "phi_psi"))
    # TICA sees a linear mix of the same cos/sin functions, so it should match the learned CVs closely;
    # PCA is drawn to the large fast noise and scores far lower.
    assert 0.5 < learned <= 2.0
    assert tica == pytest.approx(learned, abs=0.15)
    assert angles >= learned - 0.05
    assert pca < 0.5 * learned
    assert report["learned_cvs"]["vamp2_with_constant"] == pytest.approx(learned + 1.0)


def test_states_are_separated_by_the_two_slowest_cvs(report_and_data):
    report, *_ = report_and_data
    learned = report["learned_cvs"]["state_classification"]
    assert set(learned["states_scored"]) == {"PII", "alphaR", "C7ax/alphaL"}
    assert "beta/C5" in learned["skipped_states"]
    assert learned["accuracy"] > 0.95
    assert report["phi_psi"]["state_classification"]["accuracy"] > 0.97
    assert report["pca"]["state_classification"]["balanced_accuracy"] < 0.7


def test_bad_splits_are_refused(report_and_data):
    _, cvs, phi, psi = report_and_data
    features = [c[:, :2] for c in cvs]
    with pytest.raises(NeuralCTError, match="both"):
        cv_quality_report(cvs, phi, psi, [0, 1], [1, 2], LAG, features)
    with pytest.raises(NeuralCTError, match="at least one"):
        cv_quality_report(cvs, phi, psi, [0, 1], [], LAG, features)
    with pytest.raises(NeuralCTError, match="one row per frame"):
        cv_quality_report(cvs, phi, [p[:-1] for p in psi], [0], [1], LAG, features)
