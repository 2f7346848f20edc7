"""The CV quality report (benchmark B2): learned CVs against every dihedral, TICA, PCA and the dihedrals themselves.

Everything is measured on data the fits never saw.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import NeuralCTError
from .dihedrals import Dihedral, Residue, ramachandran_residues
from .information import circular_correlation, mutual_information
from .kinetics import tica_spectrum, vamp2_blocks
from .states import (
    STATE_NAMES,
    STATE_REGIONS_DEG,
    STATE_REGIONS_DESCRIPTION,
    conformational_states,
    state_classification_accuracy,
)
from .vamp import VAMP2_CONVENTION, pca_baseline, tica_baseline, vamp2_score

__all__ = ["Segment", "cv_quality_report", "dependence_table"]

#: A contiguous piece of one trajectory: (trajectory index, first frame, end frame exclusive).
Segment = tuple[int, int, int]

#: Fit and scored series of each method: method -> (lists of arrays (n_frames_i, 2), one per segment).
Components = dict[str, tuple[list[np.ndarray], list[np.ndarray]]]

OSCILLATION = (
    "a negative eigenvalue at this lag: an oscillation (e.g. a vibration with half-period near the lag), "
    "not a slow process"
)

MI_ESTIMATOR = (
    "nats; plug-in estimate from a 2-D histogram with equal-count bins on the CV and equal-width periodic bins "
    "on the angle, Miller-Madow bias correction"
)


#: Shifts in time (fractions of the frames) of the angles against the CVs that measure the noise of the
#: mutual information: far beyond any correlation time of a run, so the pairs are unrelated.
NOISE_SHIFTS = (0.25, 0.5, 0.75)


def dependence_table(cvs: np.ndarray, angles: np.ndarray, names: Sequence[str], bins: int = 24) -> dict:
    """Mutual information and circular correlation of every CV with every angle.

    Parameters
    ----------
    cvs : np.ndarray, shape=(n_frames, n_modes)
        CVs, slowest first.
    angles : np.ndarray, shape=(n_frames, n_angles)
        Dihedrals in radians.
    names : sequence of str
        One name per angle.
    bins : int
        Bins per axis of the mutual-information estimator.

    Returns
    -------
    dict
        ``modes`` (1-based), ``dihedrals`` (the names), ``mutual_information_nats``,
        ``mutual_information_noise_nats`` and ``circular_correlation``: nested lists of shape
        (n_modes, n_angles). The noise is the largest estimate with the angles shifted in time
        against the CVs by a quarter, a half and three quarters of the frames (:data:`NOISE_SHIFTS`):
        what the estimator gives for no dependence on frames as correlated as these. On few frames
        it is large (0.7 nats for 250 independent frames, 24 bins); an estimate near it says nothing.
    """
    if angles.shape[1] != len(names):
        raise NeuralCTError(f"{angles.shape[1]} angle columns for {len(names)} names")
    modes = range(cvs.shape[1])
    columns = range(angles.shape[1])
    shifts = [int(round(fraction * len(cvs))) for fraction in NOISE_SHIFTS]
    return {
        "modes": [k + 1 for k in modes],
        "dihedrals": list(names),
        "mutual_information_nats": [
            [mutual_information(cvs[:, k], angles[:, j], bins=bins) for j in columns] for k in modes
        ],
        "mutual_information_noise_nats": [
            [
                max(mutual_information(cvs[:, k], np.roll(angles[:, j], shift), bins=bins) for shift in shifts)
                for j in columns
            ]
            for k in modes
        ],
        "circular_correlation": [[circular_correlation(cvs[:, k], angles[:, j]) for j in columns] for k in modes],
    }


def _best_of_two_slowest(table: dict, dihedrals: Sequence[Dihedral]) -> list[dict]:
    """Per dihedral, which of the two slowest modes carries the most information about it."""
    best = []
    for j, dihedral in enumerate(dihedrals):
        mi = [table["mutual_information_nats"][k][j] for k in range(min(2, len(table["modes"])))]
        k = int(np.argmax(mi))
        best.append(
            {
                "dihedral": dihedral.name,
                "kind": dihedral.kind,
                "residue": dihedral.residue.label,
                "mode": k + 1,
                "mi_nats": mi[k],
                "mi_noise_nats": table["mutual_information_noise_nats"][k][j],
                "circular_correlation": table["circular_correlation"][k][j],
            }
        )
    return best


def _check(series: dict[str, list[np.ndarray]], fit: list[Segment], units: list[Segment], lag_frames: int) -> None:
    """Check that the per-trajectory inputs line up and that fit and scored segments are valid and disjoint."""
    lengths = [[s.shape[0] for s in values] for values in series.values()]
    if len({len(x) for x in lengths}) != 1 or not lengths[0]:
        raise NeuralCTError(
            f"need one array of each input per trajectory; got {', '.join(f'{len(v)} {k}' for k, v in series.items())}"
        )
    for i, per_input in enumerate(zip(*lengths)):
        if len(set(per_input)) != 1:
            shapes = ", ".join(f"{k} {v[i].shape}" for k, v in series.items())
            raise NeuralCTError(f"trajectory {i}: {shapes} must have one row per frame")
    n_frames = lengths[0]
    if not fit or not units:
        raise NeuralCTError("need at least one segment to fit on and one to score; give more trajectories")
    for traj, start, stop in fit + units:
        if not (0 <= traj < len(n_frames) and 0 <= start < stop <= n_frames[traj]):
            raise NeuralCTError(f"segment {(traj, start, stop)} lies outside the trajectories ({n_frames} frames)")
    for traj, start, stop in units:
        if stop - start <= lag_frames:
            raise NeuralCTError(
                f"a scored segment of {stop - start} frames is not longer than the lag ({lag_frames} frames); "
                "use a shorter lag or fewer blocks"
            )
        for other, a, b in fit:
            if other == traj and a < stop and start < b:
                raise NeuralCTError(
                    f"frames {max(a, start)}-{min(b, stop) - 1} of trajectory {traj} are in both the fit "
                    "and the scored data"
                )


def _vamp2_with_error(fit_series: list[np.ndarray], unit_series: list[np.ndarray], lag_frames: int, dim: int) -> dict:
    """VAMP-2 on all scored segments together, its jackknife error over segments, and each segment's own score.

    The error and the paired differences are of the pooled score itself (delete-one-segment
    jackknife), not of the per-segment scores, which on short segments scatter about another value.
    """
    pooled = vamp2_score(fit_series, unit_series, lag_frames, dim)
    per_unit = vamp2_blocks(fit_series, unit_series, lag_frames, dim)
    leave_one_out = [
        vamp2_score(fit_series, unit_series[:i] + unit_series[i + 1 :], lag_frames, dim)["vamp2"]
        for i in range(len(unit_series) if len(unit_series) > 1 else 0)
    ]
    return {
        "vamp2": pooled["vamp2"],
        "vamp2_standard_error": jackknife_error(leave_one_out),
        "vamp2_with_constant": pooled["vamp2_with_constant"],
        "vamp2_leave_one_segment_out": leave_one_out,
        "vamp2_per_segment": per_unit["blocks"],
        "singular_values_fit": pooled["singular_values_train"],
        "n_pairs_fit": pooled["n_pairs_train"],
        "n_pairs_scored": pooled["n_pairs_test"],
    }


def jackknife_error(leave_one_out: Sequence[float]) -> float | None:
    """Delete-one jackknife standard error, sqrt((n - 1)/n sum (x_i - mean)^2), of n leave-one-out estimates x_i."""
    values = np.asarray(leave_one_out, dtype=np.float64)
    if len(values) < 2:
        return None
    return float(math.sqrt((len(values) - 1) / len(values) * np.sum((values - values.mean()) ** 2)))


def _spectrum(fit_series: list[np.ndarray], lag_frames: int, time_step_ps: float | None) -> dict:
    """:func:`~neuralct.analysis.kinetics.tica_spectrum` with components numbered from 1.

    Without time stamps (``time_step_ps`` None) the timescales are in frames.

    Returns
    -------
    dict
        ``eigenvalues``, ``implied_timescales_ps`` (or ``implied_timescales_frames``; None
        where the eigenvalue is <= 0) and ``oscillating_components`` (from 1: negative eigenvalue).
    """
    lag_time = float(lag_frames) if time_step_ps is None else float(lag_frames * time_step_ps)
    spectrum = tica_spectrum(fit_series, lag_frames, lag_time)
    timescales = "implied_timescales_frames" if time_step_ps is None else "implied_timescales_ps"
    return {
        "eigenvalues": spectrum["eigenvalues"],
        timescales: spectrum["implied_timescales_ps"],
        "oscillating_components": [k + 1 for k in spectrum["negative"]],
    }


def cv_quality_report(
    cvs_by_traj: Sequence[np.ndarray],
    features_by_traj: Sequence[np.ndarray],
    angles_by_traj: Sequence[np.ndarray],
    dihedrals: Sequence[Dihedral],
    fit: Sequence[Segment],
    scored: Sequence[Segment],
    lag_frames: int,
    n_modes: int = 6,
    time_step_ps: float | None = None,
    masses: np.ndarray | None = None,
    residues: Sequence[Residue] | None = None,
    bins: int = 24,
) -> dict:
    """How good the learned CVs are, measured on scored segments against three baselines.

    Everything that is fit (the VAMP models that score, TICA, PCA, the state
    classifiers) is fit on the ``fit`` segments and evaluated on the ``scored``
    ones; time-lagged pairs stay inside each segment.

    - Mutual information (nats) and circular-linear correlation of each of the
      ``n_modes`` slowest CVs with every dihedral, on the scored frames.
    - VAMP-2 at ``lag_frames`` of the two slowest CVs, of 2 TICA components of the same
      input features, of 2 mass-weighted PCA components and of the best 2
      functions in the span of (cos, sin) of every backbone dihedral (see
      :data:`neuralct.analysis.vamp.VAMP2_CONVENTION`), on all scored segments
      together and on each alone (the spread gives the standard error).
    - TICA's eigenvalues and implied timescales at ``lag_frames`` (of the input features and of
      the learned CVs), the components of negative eigenvalue flagged as oscillations.
    - Per residue with phi and psi (or those in ``residues``): the populations of
      the standard Ramachandran regions and how well two components of each method
      tell them apart (k-nearest neighbours fit on the fit segments).

    A molecule without dihedrals (``dihedrals`` empty) gets the VAMP-2 comparison of
    the learned CVs, TICA and PCA; what needs dihedrals is listed under ``skipped``.

    Parameters
    ----------
    cvs_by_traj : list of np.ndarray, each shape=(n_frames_i, n_cvs)
        Learned CVs per trajectory, slowest first (latent units).
    features_by_traj : list of np.ndarray, each shape=(n_frames_i, n_features)
        The model's input features (e.g. internal coordinates).
    angles_by_traj : list of np.ndarray, each shape=(n_frames_i, n_dihedrals)
        Dihedrals in radians, columns in the order of ``dihedrals``.
    dihedrals : sequence of Dihedral
        What each angle column is (:func:`neuralct.analysis.dihedrals.find_dihedrals`).
    fit, scored : sequence of Segment
        Disjoint segments ``(trajectory, start, stop)`` to fit on and to score on.
    lag_frames : int
        Lag time in frames for VAMP-2 and TICA.
    n_modes : int
        How many of the slowest CVs enter the dependence table.
    time_step_ps : float, optional
        Time between frames in ps, to state the lag in ps.
    masses : np.ndarray, shape=(n_features,), optional
        Masses in amu for the mass-weighted PCA; None gives unweighted PCA (said in the result).
    residues : sequence of Residue, optional
        Residues whose states are reported (default: every residue with phi and psi).
    bins : int
        Bins per axis of the mutual-information estimator.

    Returns
    -------
    dict
        JSON-serialisable: ``lag_frames``, ``lag_ps``, frame and segment counts,
        ``dependence`` (the table of :func:`dependence_table`), ``best_of_two_slowest``,
        ``learned_cvs``, ``tica``, ``pca``, ``backbone_dihedrals`` (each with ``vamp2``,
        ``vamp2_with_constant``, ``vamp2_per_segment``, ``vamp2_standard_error``; ``tica`` with
        its ``eigenvalues``, ``components`` and ``oscillating_components``), ``learned_minus_tica``
        (``value``, its paired jackknife ``standard_error``), ``kinetics`` (TICA spectra and implied
        timescales of the features and of the CVs), ``states`` (per residue), ``skipped`` (part -> reason)
        and ``conventions``.
    """
    series = _series(cvs_by_traj, features_by_traj, angles_by_traj)
    fit, scored = [tuple(int(v) for v in s) for s in fit], [tuple(int(v) for v in s) for s in scored]
    _check(series, fit, scored, lag_frames)
    _check_columns(series, dihedrals)
    n_modes = min(n_modes, series["CVs"][0].shape[1])
    fit_data = {name: _cut(values, fit) for name, values in series.items()}
    scored_data = {name: _cut(values, scored) for name, values in series.items()}
    skipped: dict[str, str] = {}
    components, tica, pca = _components(fit_data, scored_data, dihedrals, lag_frames, masses, skipped)

    report: dict = {
        "lag_frames": int(lag_frames),
        "lag_ps": None if time_step_ps is None else float(lag_frames * time_step_ps),
        "n_frames_fit": int(sum(b - a for _, a, b in fit)),
        "n_frames_scored": int(sum(b - a for _, a, b in scored)),
        "n_scored_segments": len(scored),
    }
    report.update(_vamp2_scores(components, lag_frames))
    report["kinetics"] = _kinetics(fit_data, n_modes, lag_frames, time_step_ps)
    report["tica"]["eigenvalues"] = tica["eigenvalues"]
    # Numbered from 1 in deeptime's order, as kinetics.tica numbers them; negative only when fewer are positive.
    report["tica"]["components"] = [k + 1 for k in tica["components"]]
    report["tica"]["oscillating_components"] = [
        k + 1 for k, value in zip(tica["components"], tica["eigenvalues"]) if value < 0
    ]
    report["pca"]["mass_weighted"] = pca["mass_weighted"]
    angles_fit, angles_scored = np.concatenate(fit_data["angles"]), np.concatenate(scored_data["angles"])
    if dihedrals:
        cvs_scored = np.concatenate(scored_data["CVs"])[:, :n_modes]
        report.update(_dependence(cvs_scored, angles_scored, dihedrals, bins))
    else:
        skipped["dependence"] = "no dihedrals in the topology: no mutual information or correlation table"
    rama = ramachandran_residues(dihedrals)
    if residues is not None:
        rama = [entry for entry in rama if entry[0] in set(residues)]
    if rama:
        report["states"] = _states(rama, angles_fit, angles_scored, components)
    else:
        skipped["states"] = "no residue with both phi and psi: no Ramachandran states"
    report["skipped"] = skipped
    report["conventions"] = _conventions(mass_weighted=masses is not None)
    report["state_regions_deg"] = {
        name: [list(r) for r in rects] for name, rects in zip(STATE_NAMES, STATE_REGIONS_DEG)
    }
    return report


def _series(
    cvs_by_traj: Sequence[np.ndarray], features_by_traj: Sequence[np.ndarray], angles_by_traj: Sequence[np.ndarray]
) -> dict[str, list[np.ndarray]]:
    """The per-trajectory inputs as float64 arrays of one row per frame (the angles always two-dimensional)."""
    return {
        "CVs": [np.asarray(c, dtype=np.float64) for c in cvs_by_traj],
        "features": [np.asarray(f, dtype=np.float64) for f in features_by_traj],
        "angles": [np.asarray(a, dtype=np.float64).reshape(len(a), -1) for a in angles_by_traj],
    }


def _kinetics(fit_data: dict[str, list[np.ndarray]], n_modes: int, lag_frames: int, time_step_ps: float | None) -> dict:
    """TICA's spectrum at the lag, on the fit segments: of the input features and of the ``n_modes`` slowest CVs."""
    return {
        "tica": _spectrum(fit_data["features"], lag_frames, time_step_ps),
        "learned_cvs": _spectrum([c[:, :n_modes] for c in fit_data["CVs"]], lag_frames, time_step_ps),
    }


def _dependence(cvs: np.ndarray, angles: np.ndarray, dihedrals: Sequence[Dihedral], bins: int) -> dict:
    """The dependence table of the CVs (n_frames, n_modes) on every dihedral (n_frames, n_dihedrals, radians), and
    which of the two slowest modes tells most about each dihedral."""
    table = dependence_table(cvs, angles, [d.name for d in dihedrals], bins)
    return {"dependence": table, "best_of_two_slowest": _best_of_two_slowest(table, dihedrals)}


def _check_columns(series: dict[str, list[np.ndarray]], dihedrals: Sequence[Dihedral]) -> None:
    """Check that there are two CVs to compare and one angle column per dihedral."""
    if series["CVs"][0].ndim != 2 or series["CVs"][0].shape[1] < 2:
        raise NeuralCTError("the report compares the two slowest CVs; give at least 2 CV columns")
    if series["angles"][0].shape[1] != len(dihedrals):
        raise NeuralCTError(f"{series['angles'][0].shape[1]} angle columns for {len(dihedrals)} dihedrals")


def _cut(values: list[np.ndarray], segments: list[Segment]) -> list[np.ndarray]:
    """The rows of each segment ``(trajectory, start, stop)`` of per-trajectory arrays."""
    return [values[t][a:b] for t, a, b in segments]


def _dihedral_embedding(angles: np.ndarray, columns: list[int]) -> np.ndarray:
    """``(cos, sin)`` of the angle ``columns`` (radians), shape (n_frames, 2 len(columns)): continuous across +-pi."""
    return np.column_stack([np.cos(angles[:, columns]), np.sin(angles[:, columns])])


def _components(
    fit_data: dict[str, list[np.ndarray]],
    scored_data: dict[str, list[np.ndarray]],
    dihedrals: Sequence[Dihedral],
    lag_frames: int,
    masses: np.ndarray | None,
    skipped: dict[str, str],
) -> tuple[Components, dict, dict]:
    """Two components of each method on the fit and scored segments: learned CVs, TICA, PCA, backbone dihedrals.

    TICA and PCA are fit on the fit segments of the input features. Without backbone phi/psi
    the dihedral baseline is left out, and ``skipped`` says why.

    Returns
    -------
    components : dict
        Method -> (fit series, scored series).
    tica, pca : dict
        The baselines' fits (:func:`~neuralct.analysis.vamp.tica_baseline`,
        :func:`~neuralct.analysis.vamp.pca_baseline`).
    """
    components = {
        "learned_cvs": ([c[:, :2] for c in fit_data["CVs"]], [c[:, :2] for c in scored_data["CVs"]]),
    }
    tica = tica_baseline(fit_data["features"], scored_data["features"], lag_frames, dim=2)
    pca = pca_baseline(fit_data["features"], scored_data["features"], lag_frames, dim=2, masses=masses)
    components["tica"] = (tica["projections_train"], tica["projections_test"])
    components["pca"] = (pca["projections_train"], pca["projections_test"])
    backbone = [j for j, d in enumerate(dihedrals) if d.kind in ("phi", "psi")]
    if backbone:
        components["backbone_dihedrals"] = (
            [_dihedral_embedding(a, backbone) for a in fit_data["angles"]],
            [_dihedral_embedding(a, backbone) for a in scored_data["angles"]],
        )
    else:
        skipped["backbone_dihedrals"] = "no backbone phi/psi in the topology: no dihedral baseline"
    return components, tica, pca


def _vamp2_scores(components: Components, lag_frames: int) -> dict:
    """VAMP-2 with its error of each method, and the learned CVs' minus TICA's with its paired jackknife error."""
    scores = {
        method: _vamp2_with_error(fit_series, scored_series, lag_frames, dim=2)
        for method, (fit_series, scored_series) in components.items()
    }
    learned, tica = scores["learned_cvs"], scores["tica"]
    scores["learned_minus_tica"] = {
        "value": learned["vamp2"] - tica["vamp2"],
        "standard_error": jackknife_error(
            np.subtract(learned["vamp2_leave_one_segment_out"], tica["vamp2_leave_one_segment_out"])
        ),
        "segments": len(learned["vamp2_leave_one_segment_out"]),
    }
    return scores


def _states(
    rama: list[tuple[Residue, int, int]], angles_fit: np.ndarray, angles_scored: np.ndarray, components: Components
) -> dict:
    """Per residue: the populations of the Ramachandran regions on the scored frames, and how well each method tells
    them apart (classifiers fit on the fit frames).

    ``rama`` holds ``(residue, phi column, psi column)``; the angle arrays have shape (n_frames, n_dihedrals).
    """
    states = {}
    for residue, phi, psi in rama:
        labels_fit = conformational_states(angles_fit[:, phi], angles_fit[:, psi])
        labels_scored = conformational_states(angles_scored[:, phi], angles_scored[:, psi])
        states[residue.label] = {
            "populations_scored": {name: float(np.mean(labels_scored == k)) for k, name in enumerate(STATE_NAMES)},
            "classification": {
                method: state_classification_accuracy(np.concatenate(f), labels_fit, np.concatenate(s), labels_scored)
                for method, (f, s) in components.items()
            },
        }
    return states


def _conventions(mass_weighted: bool) -> dict[str, str]:
    """What each figure of the report means and how it is estimated."""
    return {
        "vamp2": VAMP2_CONVENTION + "; every method is scored with 2 functions at the same lag; "
        "vamp2 is scored on every scored segment together; vamp2_standard_error is its delete-one-segment "
        "jackknife error (from vamp2_leave_one_segment_out); vamp2_per_segment scores each segment alone",
        "mutual_information": MI_ESTIMATOR,
        "circular_correlation": "circular-linear correlation R of Mardia (1976), in [0, 1]",
        "tica": "deeptime TICA (reversible, mean-free, unscaled) on the model's input features, its 2 slowest "
        "components (largest eigenvalues: an oscillation's negative eigenvalue ranks last)",
        "learned_minus_tica": "VAMP-2 of the learned CVs minus TICA's (vamp2 of each), with the delete-one-segment "
        "jackknife error of the difference (paired: the variation the segments share cancels)",
        "kinetics": "eigenvalues of reversible TICA at the lag, fit on the fit segments, in deeptime's order (by "
        "absolute eigenvalue): of the model's input features (tica, every component) and of the slowest learned CVs "
        "(learned_cvs, as many as the dependence table has); implied timescale -lag / ln(eigenvalue), None where the "
        "eigenvalue is not in (0, 1); oscillating_components (numbered from 1) have " + OSCILLATION,
        "pca": ("mass-weighted" if mass_weighted else "unweighted (no masses given)")
        + " PCA of the model's input features, 2 largest-variance components",
        "backbone_dihedrals": "VAMP-2 and classification on (cos, sin) of every backbone phi and psi; classification "
        "from them is the ceiling (the states are defined by phi and psi)",
        "state_classification": "per residue, from two components of each method only; scored frames; "
        "unassigned frames and states with too few frames left out",
        "state_regions": STATE_REGIONS_DESCRIPTION,
    }
