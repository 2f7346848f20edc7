"""Whether analysed frames look like the frames a model was trained on (structure and CV range), or are them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "compare_with_training",
    "holds_marked_frames",
    "marked_frames",
    "RMSD_FACTOR",
    "CV_RANGE_WIDTHS",
    "CV_FRACTION_WARNED",
    "MARKS_PER_TRAJECTORY",
    "MARK_TOLERANCE",
    "MARK_VALUES",
]

#: Frames of each training trajectory whose internal coordinates a model keeps, evenly spaced from the
#: first: a trajectory holding any of them holds training frames under another name and content (a
#: rerun with the same seed that stopped earlier or went on longer, a copy in another format).
MARKS_PER_TRAJECTORY = 64

#: The most internal coordinates of marked frames a model keeps in all (float32: 1 MiB).
MARK_VALUES = 2**18

#: Root-mean-square difference of internal coordinates (sqrt(amu) nm) below which two frames are one:
#: wide against a copy's rounding (an XTC's 1e-3 nm moves heavy atoms' coordinates by about 1e-3),
#: narrow against two frames of MD (thermal motion moves them by 1e-1 between frames a picosecond apart).
MARK_TOLERANCE = 1e-2

#: A frame is unlike the training structures when its RMSD to the model's reference exceeds this
#: many times the largest RMSD of a training frame. Measured on alanine dipeptide (heavy atoms):
#: the largest held-out RMSD is 1.23 times the largest training one for a model of 40 training
#: frames (0.118 vs 0.096 nm) and 0.97 times for one of 400; a 22-particle harmonic chain read
#: with the dipeptide's topology has an RMSD of 1.07 nm or more, 11 times the training largest.
RMSD_FACTOR = 2.0

#: A frame's CV is far outside its training range when it lies beyond it by more than this many
#: range widths (outside [min - 2 w, max + 2 w], w = max - min). Measured on the same models over
#: the six slowest CVs, on 1,480 held-out frames: those of the 40-frame model reach 1.28 widths
#: beyond (0.6 % beyond one width, on a fast mode), the 400-frame model's 0.18; every frame of the
#: harmonic chain lies more than 3 widths beyond (CVs of 28, 43, -104 against a range of +-0.9).
CV_RANGE_WIDTHS = 2.0

#: Share of frames beyond their CV ranges above which analysis warns (a small model
#: extrapolates on a few held-out frames; a wrong input on most of them).
CV_FRACTION_WARNED = 0.01


def compare_with_training(
    model, positions: np.ndarray, cvs: np.ndarray, atoms: np.ndarray | None = None
) -> dict[str, Any]:
    """Count the frames that are unlike the model's training data, and say so when too many are.

    Two tests, each against what ``neuralct train`` stored in the model: the mass-weighted RMSD
    of the Kabsch fit of each frame's model atoms to the model's reference structure (above
    :data:`RMSD_FACTOR` times the largest training RMSD), and each CV against its range on the
    training frames (more than :data:`CV_RANGE_WIDTHS` range widths beyond it). A warning is
    due when any frame fails the RMSD test or more than :data:`CV_FRACTION_WARNED` of the frames
    fail the CV test: the wrong topology for the trajectory (same atom count, other atoms),
    another molecule, a molecule broken across a periodic box, or states the model never saw.
    A model without the stored figure (trained by an older neuralct) skips that test.

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        A model trained on molecular trajectories.
    positions : np.ndarray, shape=(n_frames, n_atoms, 3)
        The frames, all atoms of the system, nm.
    cvs : np.ndarray, shape=(n_frames, k)
        Their k slowest CVs.
    atoms : np.ndarray, shape=(n_selected,), optional
        Where the model's selected atoms are in ``positions``; default their indices in the model's system.

    Returns
    -------
    dict
        ``frames``; ``rmsd_nm`` (``threshold``, ``training_max``, ``median``, ``max``,
        ``frames_above``, ``fraction_above``, or ``skipped``); ``cv_range`` (``rule``,
        ``frames_beyond``, ``fraction_beyond``, ``most_widths_beyond`` per CV, or
        ``skipped``); ``warning``: one line, or None.
    """
    from ..model.molecular import rigid_body_frame

    n_frames = len(positions)
    record: dict[str, Any] = {"frames": int(n_frames)}
    training = model.metadata.get("training_rmsd_nm")
    rmsd_above = 0
    if training is None:
        record["rmsd_nm"] = {"skipped": "the model stores no training RMSD (trained by an older neuralct)"}
    else:
        atoms = model.metadata["molecule"]["atom_indices"] if atoms is None else atoms
        rmsd = rigid_body_frame(model).align(np.asarray(positions)[:, atoms])[2]
        threshold = RMSD_FACTOR * training["max"]
        rmsd_above = int(np.sum(rmsd > threshold))
        record["rmsd_nm"] = {
            "threshold": threshold,
            "training_max": training["max"],
            "median": float(np.median(rmsd)),
            "max": float(rmsd.max()),
            "frames_above": rmsd_above,
            "fraction_above": rmsd_above / n_frames,
        }
    ranges = model.metadata.get("cv_ranges")
    cv_beyond = 0
    if not ranges:
        record["cv_range"] = {
            "skipped": "the model stores no CV ranges of its training frames (trained by an older neuralct)"
        }
    else:
        low = np.array([r["min"] for r in ranges[: cvs.shape[1]]])
        high = np.array([r["max"] for r in ranges[: cvs.shape[1]]])
        widths = np.maximum(low - cvs, cvs - high) / np.maximum(high - low, np.finfo(np.float64).tiny)
        cv_beyond = int(np.sum((widths > CV_RANGE_WIDTHS).any(axis=1)))
        record["cv_range"] = {
            "rule": f"a CV below its training min or above its training max by more than {CV_RANGE_WIDTHS:g} times "
            "max - min",
            "frames_beyond": cv_beyond,
            "fraction_beyond": cv_beyond / n_frames,
            "most_widths_beyond": [float(w) for w in widths.max(axis=0)],
        }
    warned = rmsd_above > 0 or cv_beyond > CV_FRACTION_WARNED * n_frames
    record["warning"] = (
        None
        if not warned
        else (
            f"of {n_frames} frames, {rmsd_above} lie farther from the model's reference structure than "
            f"{RMSD_FACTOR:g} times its farthest training frame and {cv_beyond} have a CV outside its training range "
            f"by more than {CV_RANGE_WIDTHS:g} times the range: they are unlike the training data (a wrong --top, "
            "another molecule, or states the model never saw), so their CVs are extrapolations; see input_check in "
            "summary.json"
        )
    )
    return record


def holds_marked_frames(features: np.ndarray, marks: np.ndarray, chunk: int = 4096) -> bool:
    """Whether any frame of ``features`` is one of the frames ``marks`` (within :data:`MARK_TOLERANCE`), not counting
    a first frame that is the last of ``marks``, nor a last frame that is the first of them, where the trajectory
    has more frames: the part of a continued run that an engine writes anew (GROMACS's ``mdrun -cpi -noappend``)
    starts with the last frame of the part before it, and shares no other. A rerun with the training run's seed,
    however short, shares its first frame with the first of ``marks``, and counts.

    Parameters
    ----------
    features : np.ndarray, shape=(n_frames, dim)
        Internal coordinates of a trajectory, sqrt(amu) nm
        (:func:`neuralct.model.molecular.internal_coordinates`).
    marks : np.ndarray, shape=(n_marks, dim)
        The internal coordinates a model kept of one of its trajectories (:func:`marked_frames`).
    chunk : int
        Frames compared at a time (memory: ``chunk * n_marks`` distances).
    """
    features = np.asarray(features)
    if len(features) <= 2 or marks_found(features[1:-1], marks, chunk):
        return marks_found(features, marks, chunk) > 0
    # Only the training trajectory's last kept frame as this one's first, or its first as this one's last, is shared.
    first, last = frames_found(features[:1], marks, chunk), frames_found(features[-1:], marks, chunk)
    first[-1], last[0] = False, False
    return bool(first.any() or last.any())


def marks_found(features: np.ndarray, marks: np.ndarray, chunk: int = 4096) -> int:
    """How many of the frames ``marks`` (n_marks, dim) are frames of ``features`` (n_frames, dim), within
    :data:`MARK_TOLERANCE` (see :func:`holds_marked_frames`)."""
    return int(frames_found(features, marks, chunk).sum())


def frames_found(features: np.ndarray, marks: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Which of the frames ``marks`` (n_marks, dim) are frames of ``features`` (n_frames, dim), within
    :data:`MARK_TOLERANCE`: a boolean array of shape (n_marks,)."""
    features, marks = np.asarray(features, dtype=np.float64), np.asarray(marks, dtype=np.float64)
    found = np.zeros(len(marks), dtype=bool)
    if len(features) == 0 or len(marks) == 0 or features.shape[1] != marks.shape[1]:
        return found
    limit = MARK_TOLERANCE**2 * marks.shape[1]
    for start in range(0, len(features), chunk):
        block = features[start : start + chunk]
        squared = (block**2).sum(1)[:, None] + (marks**2).sum(1)[None] - 2.0 * block @ marks.T
        found |= squared.min(axis=0) < limit
    return found


def marked_frames(n_frames: int, dim: int, trajectories: int) -> slice:
    """The frames of one of ``trajectories`` training trajectories of ``n_frames`` (of ``dim`` internal
    coordinates) that a model keeps: at most :data:`MARKS_PER_TRAJECTORY`, fewer where the model's
    :data:`MARK_VALUES` would not hold them (a large molecule, many files), at least 4; evenly spaced
    from the first."""
    marks = max(4, min(MARKS_PER_TRAJECTORY, MARK_VALUES // max(1, dim * trajectories)))
    return slice(None, None, max(1, math.ceil(n_frames / marks)))
