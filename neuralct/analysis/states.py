"""Conformational states of a residue from its backbone (phi, psi).

The standard Ramachandran regions, and how well CVs separate them.
"""

from __future__ import annotations

import numpy as np

from ..errors import NeuralCTError

__all__ = [
    "STATE_NAMES",
    "STATE_REGIONS_DEG",
    "STATE_REGIONS_DESCRIPTION",
    "UNASSIGNED",
    "conformational_states",
    "state_classification_accuracy",
]

#: Names of the states, indexed by the integer labels of :func:`conformational_states`.
STATE_NAMES = ("alphaR", "beta", "PPII", "alphaL")

#: Label of frames outside every region.
UNASSIGNED = -1

#: Regions in degrees: per state, rectangles ``(phi_min, phi_max, psi_min, psi_max)``
#: (a state is the union of its rectangles; bounds inclusive, and a point on a shared
#: boundary belongs to the state listed first). These are the standard secondary-structure
#: regions of the Ramachandran plot of a non-glycine, non-proline residue, the same for
#: every residue of every peptide: right-handed helix alphaR, extended beta strand,
#: polyproline II (PPII) and the left-handed region alphaL (every phi > 0). The psi > 50
#: band of beta and PPII wraps past psi = 180 down to psi = -120. Frames with
#: -20 < phi < 0, or phi < -160 below psi = 50, stay unassigned.
STATE_REGIONS_DEG = (
    ((-160.0, -20.0, -120.0, 50.0),),
    ((-180.0, -90.0, 50.0, 180.0), (-180.0, -90.0, -180.0, -120.0)),
    ((-90.0, -20.0, 50.0, 180.0), (-90.0, -20.0, -180.0, -120.0)),
    ((0.0, 180.0, -180.0, 180.0),),
)

#: One sentence stating the regions, for summary files.
STATE_REGIONS_DESCRIPTION = (
    "standard Ramachandran regions per residue (degrees, the same for every residue): "
    "alphaR -160 <= phi <= -20 and -120 <= psi <= 50; beta -180 <= phi <= -90 and psi >= 50 or psi <= -120; "
    "PPII -90 < phi <= -20 and psi >= 50 or psi <= -120; alphaL phi >= 0; other frames unassigned"
)


def conformational_states(phi: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """Label each frame with the Ramachandran region of one residue's backbone dihedrals.

    Parameters
    ----------
    phi, psi : np.ndarray, shape=(n_frames,)
        Backbone dihedrals in radians (any branch; they are wrapped to [-180, 180) degrees).

    Returns
    -------
    np.ndarray, shape=(n_frames,), dtype=int
        Index into :data:`STATE_NAMES`, or :data:`UNASSIGNED` (-1) outside every
        region of :data:`STATE_REGIONS_DEG`.
    """
    phi = np.asarray(phi, dtype=np.float64)
    psi = np.asarray(psi, dtype=np.float64)
    if phi.ndim != 1 or psi.shape != phi.shape:
        raise NeuralCTError(
            f"phi and psi must be 1-D arrays of one length (one residue), got shapes {phi.shape} and {psi.shape}"
        )
    phi_deg = np.mod(np.degrees(phi) + 180.0, 360.0) - 180.0
    psi_deg = np.mod(np.degrees(psi) + 180.0, 360.0) - 180.0
    labels = np.full(phi.shape, UNASSIGNED, dtype=np.int64)
    for state, rectangles in enumerate(STATE_REGIONS_DEG):
        for phi_lo, phi_hi, psi_lo, psi_hi in rectangles:
            inside = (phi_deg >= phi_lo) & (phi_deg <= phi_hi) & (psi_deg >= psi_lo) & (psi_deg <= psi_hi)
            labels[inside & (labels == UNASSIGNED)] = state
    return labels


def state_classification_accuracy(
    cvs_train: np.ndarray,
    labels_train: np.ndarray,
    cvs_test: np.ndarray,
    labels_test: np.ndarray,
    n_neighbours: int = 15,
    min_frames: int = 20,
) -> dict:
    """How well the CVs alone tell the conformational states apart, on held-out frames.

    A k-nearest-neighbour classifier (majority vote of the ``n_neighbours``
    nearest training frames, Euclidean distance after scaling each CV to unit
    variance on the training frames, ties to the nearest neighbour's state) is
    trained on labelled training frames and scored on held-out frames.
    Unassigned frames are left out on both sides. A state with fewer than
    ``min_frames`` training frames or fewer than ``min_frames`` held-out frames is
    skipped (listed under ``skipped_states``): it is not a class for the
    classifier and its frames are not scored.

    Parameters
    ----------
    cvs_train, cvs_test : np.ndarray, shape=(n_frames, n_cvs)
        CV values (the two slowest CVs in the report).
    labels_train, labels_test : np.ndarray, shape=(n_frames,), dtype=int
        Labels from :func:`conformational_states`.
    n_neighbours : int
        Number of neighbours voting.
    min_frames : int
        Fewest training frames and fewest held-out frames for a state to count.

    Returns
    -------
    dict
        ``accuracy`` (fraction of scored held-out frames classified right),
        ``balanced_accuracy`` (mean over scored states of the per-state recall),
        ``majority_baseline`` (accuracy of always answering the most common
        training state), ``per_state`` (``{name: {"n_train", "n_test", "recall"}}``),
        ``states_scored``, ``skipped_states`` (``{name: reason}``),
        ``n_test_scored``, ``classifier``. The accuracies are None when fewer
        than two states can be scored.
    """
    from scipy.spatial import cKDTree

    cvs_train = np.asarray(cvs_train, dtype=np.float64)
    cvs_test = np.asarray(cvs_test, dtype=np.float64)
    cvs_train = cvs_train[:, None] if cvs_train.ndim == 1 else cvs_train
    cvs_test = cvs_test[:, None] if cvs_test.ndim == 1 else cvs_test
    labels_train = np.asarray(labels_train)
    labels_test = np.asarray(labels_test)
    if cvs_train.shape[0] != labels_train.shape[0] or cvs_test.shape[0] != labels_test.shape[0]:
        raise NeuralCTError(
            f"one label per frame needed: {cvs_train.shape[0]} training frames with {labels_train.shape[0]} labels, "
            f"{cvs_test.shape[0]} held-out frames with {labels_test.shape[0]} labels"
        )
    if cvs_train.shape[1] != cvs_test.shape[1]:
        raise NeuralCTError(f"training CVs have {cvs_train.shape[1]} columns, held-out CVs {cvs_test.shape[1]}")
    per_state: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    kept: list[int] = []
    for state, name in enumerate(STATE_NAMES):
        n_train = int(np.count_nonzero(labels_train == state))
        n_test = int(np.count_nonzero(labels_test == state))
        per_state[name] = {"n_train": n_train, "n_test": n_test, "recall": None}
        if n_train < min_frames or n_test < min_frames:
            skipped[name] = f"{n_train} training and {n_test} held-out frames (need {min_frames} of each)"
        else:
            kept.append(state)
    result = {
        "accuracy": None,
        "balanced_accuracy": None,
        "majority_baseline": None,
        "per_state": per_state,
        "states_scored": [STATE_NAMES[s] for s in kept],
        "skipped_states": skipped,
        "n_test_scored": 0,
        "classifier": f"{n_neighbours}-nearest neighbours on CVs scaled to unit training variance",
    }
    if len(kept) < 2:
        return result
    train_mask = np.isin(labels_train, kept)
    test_mask = np.isin(labels_test, kept)
    x_train, y_train = cvs_train[train_mask], labels_train[train_mask]
    x_test, y_test = cvs_test[test_mask], labels_test[test_mask]
    scale = x_train.std(axis=0)
    scale[scale == 0] = 1.0
    k = min(n_neighbours, x_train.shape[0])
    _, neighbours = cKDTree(x_train / scale).query(x_test / scale, k=k)
    neighbours = neighbours.reshape(x_test.shape[0], k)
    votes = np.zeros((x_test.shape[0], len(STATE_NAMES)))
    # Tiny decreasing weights break ties in favour of the nearer neighbours.
    weights = 1.0 + 1e-6 * np.arange(k, 0, -1)
    np.add.at(votes, (np.arange(x_test.shape[0])[:, None], y_train[neighbours]), weights)
    predicted = votes.argmax(axis=1)
    correct = predicted == y_test
    for state in kept:
        per_state[STATE_NAMES[state]]["recall"] = float(correct[y_test == state].mean())
    majority = np.bincount(y_train, minlength=len(STATE_NAMES)).argmax()
    result.update(
        accuracy=float(correct.mean()),
        balanced_accuracy=float(np.mean([per_state[STATE_NAMES[s]]["recall"] for s in kept])),
        majority_baseline=float(np.mean(y_test == majority)),
        n_test_scored=int(x_test.shape[0]),
    )
    return result
