"""The CV quality report (benchmark B2): learned CVs against phi/psi, TICA, PCA and (phi, psi), on held-out trajectories."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import NeuralCTError
from .information import circular_correlation, mutual_information
from .states import STATE_NAMES, STATE_REGIONS_DEG, conformational_states, state_classification_accuracy
from .vamp import VAMP2_CONVENTION, pca_baseline, tica_baseline, vamp2_score

__all__ = ["cv_quality_report"]

MI_ESTIMATOR = (
    "nats; plug-in estimate from a 2-D histogram with equal-count bins on the CV and equal-width periodic bins "
    "on the angle, Miller-Madow bias correction"
)


def _check_inputs(
    cvs: list[np.ndarray],
    phi: list[np.ndarray],
    psi: list[np.ndarray],
    features: list[np.ndarray],
    train_index: list[int],
    test_index: list[int],
) -> None:
    """Check that the per-trajectory inputs line up and that the split is a valid one."""
    n = len(cvs)
    if not (len(phi) == len(psi) == len(features) == n) or n == 0:
        raise NeuralCTError(
            f"need one array of CVs, phi, psi and features per trajectory; got {n}, {len(phi)}, {len(psi)} "
            f"and {len(features)}"
        )
    for i in range(n):
        lengths = {cvs[i].shape[0], phi[i].shape[0], psi[i].shape[0], features[i].shape[0]}
        if len(lengths) != 1 or cvs[i].ndim != 2 or phi[i].ndim != 1 or psi[i].ndim != 1:
            raise NeuralCTError(
                f"trajectory {i}: CVs {cvs[i].shape}, phi {phi[i].shape}, psi {psi[i].shape} and features "
                f"{features[i].shape} must have one row per frame (CVs and features 2-D, angles 1-D)"
            )
    if not train_index or not test_index:
        raise NeuralCTError("need at least one training and one held-out trajectory; give more trajectories")
    if set(train_index) & set(test_index):
        raise NeuralCTError(f"trajectories {sorted(set(train_index) & set(test_index))} are in both the training "
                            "and the held-out set")
    if not all(0 <= i < n for i in train_index + test_index):
        raise NeuralCTError(f"trajectory indices must lie in [0, {n}), got {train_index} and {test_index}")


def _angle_features(phi: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """(cos phi, sin phi, cos psi, sin psi): a continuous embedding of the two periodic angles."""
    return np.column_stack([np.cos(phi), np.sin(phi), np.cos(psi), np.sin(psi)])


def _dependence(values: np.ndarray, phi: np.ndarray, psi: np.ndarray, bins: int) -> dict:
    """Mutual information (nats) and circular correlation of one CV with phi and with psi."""
    return {
        "mi_phi_nats": mutual_information(values, phi, bins=bins),
        "mi_psi_nats": mutual_information(values, psi, bins=bins),
        "circular_correlation_phi": circular_correlation(values, phi),
        "circular_correlation_psi": circular_correlation(values, psi),
    }


def _best_of(per_mode: list[dict]) -> dict:
    """Which of the given modes carries the most information about phi and about psi."""
    best = {}
    for angle in ("phi", "psi"):
        mode = max(per_mode, key=lambda m: m[f"mi_{angle}_nats"])
        best[angle] = {
            "mode": mode["mode"],
            "mi_nats": mode[f"mi_{angle}_nats"],
            "circular_correlation": mode[f"circular_correlation_{angle}"],
        }
    return best


def _method_summary(
    classifier_train: np.ndarray,
    classifier_test: np.ndarray,
    components_test: np.ndarray,
    labels_train: np.ndarray,
    labels_test: np.ndarray,
    phi_test: np.ndarray,
    psi_test: np.ndarray,
    score: dict,
    bins: int,
) -> dict:
    """VAMP-2, the dependence of two components on phi/psi, and the state accuracy from the classifier inputs."""
    per_mode = [
        {"mode": k + 1, **_dependence(components_test[:, k], phi_test, psi_test, bins)}
        for k in range(components_test.shape[1])
    ]
    return {
        "vamp2": score["vamp2"],
        "vamp2_with_constant": score["vamp2_with_constant"],
        "components": per_mode,
        "best_of_two_slowest": _best_of(per_mode),
        "state_classification": state_classification_accuracy(
            classifier_train, labels_train, classifier_test, labels_test
        ),
    }


def cv_quality_report(
    cvs_by_traj: Sequence[np.ndarray],
    phi_by_traj: Sequence[np.ndarray],
    psi_by_traj: Sequence[np.ndarray],
    train_index: Sequence[int],
    test_index: Sequence[int],
    lag: int,
    features_by_traj: Sequence[np.ndarray],
    n_modes: int = 6,
    time_step_ps: float | None = None,
    masses: np.ndarray | None = None,
    bins: int = 24,
) -> dict:
    """How good the learned CVs are, measured on held-out trajectories against three baselines.

    Everything that is fit (the VAMP models that score, TICA, PCA, the
    state classifier) is fit on the training trajectories and evaluated on the
    held-out ones; time-lagged pairs stay inside each trajectory.

    - Per slow mode (up to ``n_modes``): mutual information (nats) and
      circular-linear correlation with phi and with psi, on the held-out frames.
    - VAMP-2 at ``lag`` of the two slowest CVs, of 2 TICA components on the
      same input features, of 2 mass-weighted PCA components, and of the best
      2 functions in the span of (cos phi, sin phi, cos psi, sin psi)
      (see :data:`neuralct.analysis.vamp.VAMP2_CONVENTION`: ``vamp2`` excludes
      the constant function, ``vamp2_with_constant`` includes it).
    - Conformational-state classification accuracy from two components only,
      for each method; for the (phi, psi) baseline the classifier sees
      (cos phi, sin phi, cos psi, sin psi), which is the ceiling because the
      states are defined by phi and psi.

    Parameters
    ----------
    cvs_by_traj : list of np.ndarray, each shape=(n_frames_i, n_cvs)
        Learned CVs per trajectory, slowest first (latent units).
    phi_by_traj, psi_by_traj : list of np.ndarray, each shape=(n_frames_i,)
        Backbone dihedrals in radians.
    train_index, test_index : sequence of int
        Indices of the training and the held-out trajectories (disjoint).
    lag : int
        Lag time in frames for VAMP-2 and TICA.
    features_by_traj : list of np.ndarray, each shape=(n_frames_i, n_features)
        The model's input features (e.g. aligned heavy-atom positions in nm, flattened).
    n_modes : int
        How many of the slowest CVs get mutual information and correlations.
    time_step_ps : float, optional
        Time between frames in ps, to state the lag in ps.
    masses : np.ndarray, shape=(n_features,) or (n_features // 3,), optional
        Masses in amu for the mass-weighted PCA; None gives unweighted PCA (said in the result).
    bins : int
        Bins per axis of the mutual-information estimator.

    Returns
    -------
    dict
        JSON-serialisable: ``lag_frames``, ``lag_ps``, trajectory split and frame
        counts, ``modes`` (per-mode dependence on phi/psi), ``learned_cvs``,
        ``tica``, ``pca``, ``phi_psi`` (each with ``vamp2``, ``vamp2_with_constant``,
        ``components``, ``best_of_two_slowest``, ``state_classification``),
        ``conventions`` (how each number is defined) and ``state_regions_deg``.
    """
    cvs = [np.asarray(c, dtype=np.float64) for c in cvs_by_traj]
    phi = [np.asarray(a, dtype=np.float64) for a in phi_by_traj]
    psi = [np.asarray(a, dtype=np.float64) for a in psi_by_traj]
    features = [np.asarray(f, dtype=np.float64) for f in features_by_traj]
    train_index = [int(i) for i in train_index]
    test_index = [int(i) for i in test_index]
    _check_inputs(cvs, phi, psi, features, train_index, test_index)
    if cvs[0].shape[1] < 2:
        raise NeuralCTError(f"the report compares the two slowest CVs, but only {cvs[0].shape[1]} CV was given")

    def pick(series: list[np.ndarray], index: list[int]) -> list[np.ndarray]:
        return [series[i] for i in index]

    phi_test = np.concatenate(pick(phi, test_index))
    psi_test = np.concatenate(pick(psi, test_index))
    labels_train = conformational_states(np.concatenate(pick(phi, train_index)), np.concatenate(pick(psi, train_index)))
    labels_test = conformational_states(phi_test, psi_test)
    cvs_test = np.concatenate(pick(cvs, test_index))
    n_modes = min(n_modes, cvs[0].shape[1])
    modes = [{"mode": k + 1, **_dependence(cvs_test[:, k], phi_test, psi_test, bins)} for k in range(n_modes)]

    def summary(train_series: list[np.ndarray], test_series: list[np.ndarray], score: dict) -> dict:
        test_2d = np.concatenate(test_series)[:, :2]
        return _method_summary(np.concatenate(train_series)[:, :2], test_2d, test_2d,
                               labels_train, labels_test, phi_test, psi_test, score, bins)

    learned_train = [c[:, :2] for c in pick(cvs, train_index)]
    learned_test = [c[:, :2] for c in pick(cvs, test_index)]
    learned = summary(learned_train, learned_test, vamp2_score(learned_train, learned_test, lag, dim=2))

    features_train, features_test = pick(features, train_index), pick(features, test_index)
    tica = tica_baseline(features_train, features_test, lag, dim=2)
    pca = pca_baseline(features_train, features_test, lag, dim=2, masses=masses)

    angles = [_angle_features(a, b) for a, b in zip(phi, psi)]
    angles_train, angles_test = pick(angles, train_index), pick(angles, test_index)
    # The (phi, psi) baseline's two components are phi and psi themselves; its VAMP-2 and its
    # classifier use their continuous embedding (cos phi, sin phi, cos psi, sin psi).
    phi_psi = _method_summary(
        np.concatenate(angles_train), np.concatenate(angles_test), np.column_stack([phi_test, psi_test]),
        labels_train, labels_test, phi_test, psi_test, vamp2_score(angles_train, angles_test, lag, dim=2), bins,
    )

    return {
        "lag_frames": int(lag),
        "lag_ps": None if time_step_ps is None else float(lag * time_step_ps),
        "training_trajectories": train_index,
        "held_out_trajectories": test_index,
        "n_frames_train": int(sum(cvs[i].shape[0] for i in train_index)),
        "n_frames_held_out": int(cvs_test.shape[0]),
        "modes": modes,
        "best_of_two_slowest": learned["best_of_two_slowest"],
        "learned_cvs": learned,
        "tica": {
            **summary(tica["projections_train"], tica["projections_test"], tica["score"]),
            "eigenvalues": tica["eigenvalues"],
        },
        "pca": {
            **summary(pca["projections_train"], pca["projections_test"], pca["score"]),
            "mass_weighted": pca["mass_weighted"],
        },
        "phi_psi": phi_psi,
        "conventions": {
            "vamp2": VAMP2_CONVENTION + "; every method is scored with 2 functions at the same lag",
            "mutual_information": MI_ESTIMATOR,
            "circular_correlation": "circular-linear correlation R of Mardia (1976), in [0, 1]",
            "tica": "deeptime TICA (reversible, mean-free, unscaled) on the model's input features, 2 components",
            "pca": ("mass-weighted" if masses is not None else "unweighted (no masses given)")
            + " PCA of the model's input features, 2 largest-variance components",
            "phi_psi": "VAMP-2 and classification on (cos phi, sin phi, cos psi, sin psi); MI and correlation of "
            "phi and psi themselves; classification from them is the ceiling (states are defined by phi, psi)",
            "state_classification": "from the two slowest components only; held-out frames; unassigned frames "
            "and states with too few frames left out",
        },
        "state_regions_deg": {name: [list(r) for r in rects] for name, rects in zip(STATE_NAMES, STATE_REGIONS_DEG)},
    }
