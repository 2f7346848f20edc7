"""VAMP-2 scores on held-out trajectories, and the TICA and mass-weighted PCA baselines."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..data.pairs import lagged_pairs
from ..errors import NeuralCTError

__all__ = ["VAMP2_CONVENTION", "vamp2_score", "tica_baseline", "pca_baseline"]

#: How every VAMP-2 number of this package is defined (also stored in each result dict).
VAMP2_CONVENTION = (
    "VAMP-2 (Wu & Noe 2020, J. Nonlinear Sci. 30, 23, eq. 33) of the span of the k given functions: "
    "a VAMP model is fit on the training trajectories (mean-free covariances of time-lagged pairs "
    "taken inside each trajectory) and scored on the held-out trajectories; 'vamp2' is the sum of "
    "the squared singular values of the k non-constant singular functions (between 0 and k), "
    "'vamp2_with_constant' adds 1 for the constant function, as deeptime's score does"
)


def as_series(series: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    """Check a list of trajectories and return them as 2-D float64 arrays of one width."""
    if isinstance(series, np.ndarray):
        raise NeuralCTError(f"{what}: pass a list of arrays, one per trajectory, not a single array")
    out = [np.asarray(s, dtype=np.float64) for s in series]
    out = [s[:, None] if s.ndim == 1 else s for s in out]
    if not out:
        raise NeuralCTError(f"{what}: no trajectories given")
    widths = {s.shape[1] for s in out}
    if any(s.ndim != 2 for s in out) or len(widths) != 1:
        raise NeuralCTError(
            f"{what}: every trajectory must be an array of shape (n_frames, n_features) with one n_features; "
            f"got shapes {[s.shape for s in out]}"
        )
    if not all(np.all(np.isfinite(s)) for s in out):
        raise NeuralCTError(f"{what}: the data contain NaN or infinite values")
    return out


def time_lagged_frames(series: list[np.ndarray], lag_frames: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Instantaneous and time-lagged frames ``(x_t, x_{t+lag_frames})``, stacked over trajectories.

    Pairs are formed inside each trajectory, so none spans the end of one
    trajectory and the start of the next; trajectories not longer than ``lag_frames``
    contribute nothing.
    """
    if not (isinstance(lag_frames, (int, np.integer)) and lag_frames >= 1):
        raise NeuralCTError(f"`lag_frames` must be a positive integer number of frames, got {lag_frames!r}")
    lengths = [s.shape[0] for s in series]
    if max(lengths) <= lag_frames:
        raise NeuralCTError(
            f"{what}: no trajectory is longer than the lag ({lag_frames} frames); use a shorter lag or longer "
            "trajectories"
        )
    first, second = lagged_pairs(lengths, lag_frames)
    stacked = np.concatenate(series)
    return stacked[first], stacked[second]


def _fit_vamp(x: np.ndarray, y: np.ndarray, dim: int | None, what: str):
    """deeptime's VAMP (Koopman) model of the pairs ``(x, y)``, keeping ``dim`` singular functions."""
    from deeptime.decomposition import VAMP
    from deeptime.numeric import ZeroRankError

    try:
        return VAMP(dim=dim).fit((x, y)).fetch_model()
    except ZeroRankError:
        raise NeuralCTError(
            f"{what}: the functions do not vary over their {len(x)} time-lagged pairs (every covariance eigenvalue "
            "below "
            "1e-6); give longer trajectories, fewer `blocks` or a shorter lag"
        ) from None


def vamp2_score(
    train_series: Sequence[np.ndarray],
    test_series: Sequence[np.ndarray],
    lag_frames: int,
    dim: int | None = None,
) -> dict:
    """Cross-validated VAMP-2 score of the functions given as features.

    A VAMP model (``deeptime.decomposition.VAMP``) is fit on the time-lagged
    pairs of the training trajectories and scored on those of the held-out
    trajectories (deeptime's ``score(r=2, test_model=...)``, Wu & Noe 2020,
    eq. 33). Pairs never cross a trajectory boundary (they are formed here,
    per trajectory). The score measures how much slow dynamics the span of the
    features captures at this lag.

    Convention: ``vamp2`` is the sum of the squared singular values of the
    ``dim`` non-constant singular functions (0 to ``dim``); ``vamp2_with_constant``
    = ``vamp2 + 1`` counts the constant function too. deeptime's score is the
    latter because it works with mean-free data.

    Parameters
    ----------
    train_series, test_series : list of np.ndarray, each shape=(n_frames_i, n_features)
        Trajectories of the features (e.g. CVs); 1-D arrays are one feature.
    lag_frames : int
        Lag time in frames.
    dim : int, optional
        Number of singular functions scored; default all ``n_features``.

    Returns
    -------
    dict
        ``vamp2``, ``vamp2_with_constant``, ``singular_values_train``
        (the training model's, descending), ``dim``, ``lag_frames``,
        ``includes_constant`` (False: says what ``vamp2`` is),
        ``n_pairs_train``, ``n_pairs_test``, ``convention``.
    """
    train = as_series(train_series, "training trajectories")
    test = as_series(test_series, "held-out trajectories")
    n_features = train[0].shape[1]
    if test[0].shape[1] != n_features:
        raise NeuralCTError(
            f"training data have {n_features} features but held-out data have {test[0].shape[1]}; "
            "project both with the same model"
        )
    dim = n_features if dim is None else dim
    if not (isinstance(dim, (int, np.integer)) and 1 <= dim <= n_features):
        raise NeuralCTError(f"dim must be an integer between 1 and {n_features} (the number of features), got {dim!r}")
    x_train, y_train = time_lagged_frames(train, lag_frames, "training trajectories")
    x_test, y_test = time_lagged_frames(test, lag_frames, "held-out trajectories")
    model = _fit_vamp(x_train, y_train, dim, "training trajectories")
    test_model = _fit_vamp(x_test, y_test, None, "held-out trajectories")
    with_constant = float(model.score(r=2, test_model=test_model, dim=dim))
    return {
        "vamp2": with_constant - 1.0,
        "vamp2_with_constant": with_constant,
        "includes_constant": False,
        "singular_values_train": [float(v) for v in model.singular_values[:dim]],
        "dim": int(dim),
        "lag_frames": int(lag_frames),
        "n_pairs_train": int(x_train.shape[0]),
        "n_pairs_test": int(x_test.shape[0]),
        "convention": VAMP2_CONVENTION,
    }


def tica_baseline(
    train_series: Sequence[np.ndarray],
    test_series: Sequence[np.ndarray],
    lag_frames: int,
    dim: int,
) -> dict:
    """TICA on the training trajectories, projected and VAMP-2-scored on the held-out ones.

    ``deeptime.decomposition.TICA`` (reversible, mean-free covariances, no
    scaling: each component has unit variance on the training data) is fit on
    the pairs of the training trajectories (formed per trajectory); its ``dim``
    slowest components, those of the largest eigenvalues (deeptime orders them by
    absolute value, so that an oscillation with a large negative eigenvalue would
    come first), are then scored like any other ``dim`` functions with
    :func:`vamp2_score` (VAMP fit on their training projections, scored on
    their held-out projections), so the number is comparable with the learned
    CVs' at the same lag and ``dim``.

    Parameters
    ----------
    train_series, test_series : list of np.ndarray, each shape=(n_frames_i, n_features)
        Trajectories of the input features.
    lag_frames : int
        Lag time in frames.
    dim : int
        Number of TICA components.

    Returns
    -------
    dict
        ``projections_train``, ``projections_test``: lists of np.ndarray, each
        shape=(n_frames_i, dim), the TICA components of each trajectory,
        slowest first (not JSON-serialisable; pop them before writing); ``eigenvalues`` (training,
        of the kept components); ``components`` (their indices, from 0, in deeptime's order);
        ``score``: the :func:`vamp2_score` dict.
    """
    from deeptime.decomposition import TICA

    train = as_series(train_series, "training trajectories")
    test = as_series(test_series, "held-out trajectories")
    if not (isinstance(dim, (int, np.integer)) and 1 <= dim <= train[0].shape[1]):
        raise NeuralCTError(f"dim must be between 1 and {train[0].shape[1]} (the number of features), got {dim!r}")
    x, y = time_lagged_frames(train, lag_frames, "training trajectories")
    model = TICA(lagtime=lag_frames, scaling=None).fit((x, y)).fetch_model()
    eigenvalues = np.asarray(model.singular_values, dtype=np.float64)
    if len(eigenvalues) < dim:
        raise NeuralCTError(
            f"TICA found only {len(eigenvalues)} linearly independent feature combinations, fewer than dim={dim}"
        )
    slowest = np.argsort(-eigenvalues, kind="stable")[:dim]
    projected_train = [model.transform(s)[:, slowest] for s in train]
    projected_test = [model.transform(s)[:, slowest] for s in test]
    return {
        "projections_train": projected_train,
        "projections_test": projected_test,
        "eigenvalues": [float(v) for v in eigenvalues[slowest]],
        "components": [int(i) for i in slowest],
        "score": vamp2_score(projected_train, projected_test, lag_frames, dim),
    }


def pca_baseline(
    train_series: Sequence[np.ndarray],
    test_series: Sequence[np.ndarray],
    lag_frames: int,
    dim: int,
    masses: np.ndarray | None = None,
) -> dict:
    """Mass-weighted PCA on the training trajectories, projected and VAMP-2-scored on the held-out ones.

    Each feature column ``j`` is multiplied by ``sqrt(m_j)`` before the
    principal axes of the training frames are computed (the quasi-harmonic
    choice: for Cartesian positions this is PCA of the kinetic-energy metric).
    The ``dim`` largest-variance components are scored with :func:`vamp2_score`.

    Parameters
    ----------
    train_series, test_series : list of np.ndarray, each shape=(n_frames_i, n_features)
        Trajectories of the input features (e.g. aligned positions in nm, flattened as x1 y1 z1 x2 ...).
    lag_frames : int
        Lag time in frames (for the score only).
    dim : int
        Number of principal components.
    masses : np.ndarray, shape=(n_features,) or (n_features // 3,), optional
        Masses in amu, per feature or per atom (repeated for x, y, z).
        None gives plain (unweighted) PCA.

    Returns
    -------
    dict
        ``projections_train``, ``projections_test`` (lists of np.ndarray, each
        shape=(n_frames_i, dim); pop them before writing JSON), ``explained_variance`` (training, amu nm^2
        for positions in nm), ``mass_weighted`` (bool) and ``score`` (the
        :func:`vamp2_score` dict).
    """
    train = as_series(train_series, "training trajectories")
    test = as_series(test_series, "held-out trajectories")
    n_features = train[0].shape[1]
    if not (isinstance(dim, (int, np.integer)) and 1 <= dim <= n_features):
        raise NeuralCTError(f"dim must be between 1 and {n_features} (the number of features), got {dim!r}")
    weights = np.ones(n_features)
    if masses is not None:
        masses = np.asarray(masses, dtype=np.float64)
        if masses.shape == (n_features // 3,) and n_features % 3 == 0:
            masses = np.repeat(masses, 3)
        if masses.shape != (n_features,) or not np.all(masses > 0):
            raise NeuralCTError(
                f"masses must be positive, one per feature ({n_features}) or per atom ({n_features // 3}); "
                f"got shape {masses.shape}"
            )
        weights = np.sqrt(masses)
    stacked = np.concatenate(train) * weights
    mean = stacked.mean(axis=0)
    _, singular_values, axes = np.linalg.svd(stacked - mean, full_matrices=False)
    components = axes[:dim].T

    def project(s: np.ndarray) -> np.ndarray:
        return (s * weights - mean) @ components

    projected_train = [project(s) for s in train]
    projected_test = [project(s) for s in test]
    return {
        "projections_train": projected_train,
        "projections_test": projected_test,
        "explained_variance": [float(v) for v in singular_values[:dim] ** 2 / (stacked.shape[0] - 1)],
        "mass_weighted": masses is not None,
        "score": vamp2_score(projected_train, projected_test, lag_frames, dim),
    }
