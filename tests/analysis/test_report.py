"""The CV quality report on a synthetic 'dipeptide' whose slow modes are known."""

import json

import numpy as np
import pytest

from neuralct.analysis.dihedrals import Dihedral, Residue
from neuralct.analysis.information import circular_correlation, mutual_information
from neuralct.analysis.report import cv_quality_report
from neuralct.analysis.vamp import vamp2_score
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
    """phi hops PPII/alphaR (-60 deg) <-> alphaL (70 deg) slowly, psi hops 150 <-> -40 deg faster; 8 features.

    The "learned" CVs are mode 1 = sin(phi), mode 2 = cos(psi) (plus a little noise; both separate the two
    centres of their angle), modes 3-4 pure noise.
    The features are a fixed linear mix of (cos phi, sin phi, cos psi, sin psi) and 4 fast, large noises.
    """
    phi = hopping(rng, n_frames, np.radians([-60.0, 70.0]), 0.003, 0.2)
    psi = hopping(rng, n_frames, np.radians([150.0, -40.0]), 0.01, 0.25)
    cvs = np.column_stack(
        [
            np.sin(phi) + 0.05 * rng.normal(size=n_frames),
            np.cos(psi) + 0.05 * rng.normal(size=n_frames),
            rng.normal(size=(n_frames, 2)),
        ]
    )
    features = np.column_stack([np.cos(phi), np.sin(phi), np.cos(psi), np.sin(psi), 3 * rng.normal(size=(n_frames, 4))])
    return cvs, phi, psi, features @ mixing


PHI = Dihedral("phi", Residue("A", 2, "ALA"), (4, 6, 8, 10))
PSI = Dihedral("psi", Residue("A", 2, "ALA"), (6, 8, 10, 12))
FIT = [(i, 0, 3000) for i in range(4)]
SCORED = [(4, 0, 3000), (5, 0, 3000)]


@pytest.fixture(scope="module")
def report_and_data():
    rng = np.random.default_rng(5)
    mixing = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    data = [synthetic_trajectory(rng, 3000, mixing) for _ in range(6)]
    cvs, phi, psi, features = (list(x) for x in zip(*data))
    angles = [np.column_stack([a, b]) for a, b in zip(phi, psi)]
    report = cv_quality_report(cvs, features, angles, [PHI, PSI], FIT, SCORED, LAG, n_modes=6, time_step_ps=0.5)
    return report, cvs, phi, psi, features


def test_report_is_json_and_states_its_conventions(report_and_data):
    report, *_ = report_and_data
    json.dumps(report)
    assert report["lag_ps"] == 5.0 and report["n_frames_scored"] == 6000 and report["n_frames_fit"] == 12000
    assert report["dependence"]["modes"] == [1, 2, 3, 4]  # n_modes is capped at the number of CVs
    assert report["dependence"]["dihedrals"] == ["phi A:ALA2", "psi A:ALA2"]
    assert "constant" in report["conventions"]["vamp2"] and "alphaR" in report["conventions"]["state_regions"]
    assert report["pca"]["mass_weighted"] is False and "unweighted" in report["conventions"]["pca"]
    assert report["skipped"] == {}


def test_dependence_table_is_measured_on_scored_frames(report_and_data):
    report, cvs, phi, psi, _ = report_and_data
    scored_cvs = np.concatenate([cvs[4], cvs[5]])
    scored_phi, scored_psi = np.concatenate([phi[4], phi[5]]), np.concatenate([psi[4], psi[5]])
    mi = np.array(report["dependence"]["mutual_information_nats"])
    r = np.array(report["dependence"]["circular_correlation"])
    assert mi[0, 0] == pytest.approx(mutual_information(scored_cvs[:, 0], scored_phi))
    assert r[1, 1] == pytest.approx(circular_correlation(scored_cvs[:, 1], scored_psi))
    # Mode 1 is sin(phi) (correlation near 1), mode 2 cos(psi); modes 3 and 4 are noise.
    assert r[0, 0] > 0.95 and r[1, 1] > 0.95
    assert mi[0, 0] > np.log(2) and mi[1, 1] > np.log(2)  # more than the basin bit
    assert np.all(mi[2:] < 0.02)
    best = {b["kind"]: b for b in report["best_of_two_slowest"]}
    assert best["phi"]["mode"] == 1 and best["psi"]["mode"] == 2 and best["phi"]["residue"] == "A:ALA2"
    # The noise: the estimate with the angles shifted in time against the CVs (no dependence left).
    noise = np.array(report["dependence"]["mutual_information_noise_nats"])
    n = len(scored_cvs)
    shifted = [mutual_information(scored_cvs[:, 0], np.roll(scored_phi, round(f * n))) for f in (0.25, 0.5, 0.75)]
    assert noise[0, 0] == pytest.approx(max(shifted)) and best["phi"]["mi_noise_nats"] == noise[0, 0]
    assert np.all(noise < 0.05) and mi[0, 0] > 10 * noise[0, 0]


def test_the_noise_of_the_mutual_information_of_few_independent_frames_is_what_it_reports_there():
    """250 frames of a CV and an angle that are independent: the estimate is mostly noise, and so is the noise."""
    from neuralct.analysis.report import dependence_table

    rng = np.random.default_rng(0)
    table = dependence_table(rng.normal(size=(250, 1)), rng.uniform(-np.pi, np.pi, size=(250, 1)), ["phi"])
    mi, noise = table["mutual_information_nats"][0][0], table["mutual_information_noise_nats"][0][0]
    assert 0.3 < noise and abs(mi - noise) < 0.3  # no dependence: the estimate sits at its noise


def test_vamp2_compares_learned_cvs_with_baselines_at_the_same_lag(report_and_data):
    report, *_ = report_and_data
    learned, tica, pca, angles = (report[k]["vamp2"] for k in ("learned_cvs", "tica", "pca", "backbone_dihedrals"))
    # TICA sees a linear mix of the same cos/sin functions, so it should match the learned CVs closely;
    # PCA is drawn to the large fast noise and scores far lower.
    assert 0.5 < learned <= 2.0
    assert tica == pytest.approx(learned, abs=0.15)
    assert angles >= learned - 0.05
    assert pca < 0.5 * learned
    assert report["learned_cvs"]["vamp2_with_constant"] == pytest.approx(learned + 1.0)


def test_error_bars_come_from_each_scored_segment(report_and_data):
    report, cvs, *_ = report_and_data
    learned = report["learned_cvs"]
    fit = [c[:, :2] for c in cvs[:4]]
    alone = [vamp2_score(fit, [cvs[i][:, :2]], LAG, dim=2)["vamp2"] for i in (4, 5)]
    assert learned["vamp2_per_segment"] == pytest.approx(alone)
    assert learned["vamp2_standard_error"] == pytest.approx(np.std(alone, ddof=1) / np.sqrt(2))
    assert min(alone) <= learned["vamp2"] + 0.05 and learned["vamp2"] - 0.05 <= max(alone)


def test_states_are_the_standard_regions_separated_by_the_two_slowest_cvs(report_and_data):
    report, *_ = report_and_data
    states = report["states"]["A:ALA2"]
    # phi hops between -60 and 70 degrees, psi between 150 and -40: PPII, alphaR and alphaL, no beta.
    assert states["populations_scored"]["beta"] < 0.01
    learned = states["classification"]["learned_cvs"]
    assert set(learned["states_scored"]) == {"PPII", "alphaR", "alphaL"}
    assert learned["accuracy"] > 0.95
    assert states["classification"]["backbone_dihedrals"]["accuracy"] > 0.97
    assert states["classification"]["pca"]["balanced_accuracy"] < 0.7


def test_a_molecule_without_dihedrals_gets_the_vamp2_comparison_and_notes(report_and_data):
    _, cvs, _, _, features = report_and_data
    report = cv_quality_report(cvs, features, [np.zeros((len(c), 0)) for c in cvs], [], FIT, SCORED, LAG)
    json.dumps(report)
    assert report["learned_cvs"]["vamp2"] > 0.5 and "tica" in report
    assert sorted(report["skipped"]) == ["backbone_dihedrals", "dependence", "states"]
    assert "dependence" not in report and "states" not in report


def test_bad_splits_are_refused(report_and_data):
    _, cvs, phi, psi, features = report_and_data
    angles = [np.column_stack([a, b]) for a, b in zip(phi, psi)]

    def report(fit, scored, lag=LAG, angles=angles):
        return cv_quality_report(cvs, features, angles, [PHI, PSI], fit, scored, lag)

    with pytest.raises(NeuralCTError, match="both"):
        report([(0, 0, 3000), (1, 0, 2000)], [(1, 1500, 3000)])
    with pytest.raises(NeuralCTError, match="at least one"):
        report(FIT, [])
    with pytest.raises(NeuralCTError, match="not longer than the lag"):
        report(FIT, [(4, 0, LAG)])
    with pytest.raises(NeuralCTError, match="one row per frame"):
        report(FIT, SCORED, angles=[a[:-1] for a in angles])
