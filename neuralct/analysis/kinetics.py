"""Kinetic scores of CVs: TICA spectra, implied timescales and VAMP-2 with error bars.

Everything is fit on training trajectories and scored on test trajectories that neither
trained a model nor selected its kept state. Error bars come from contiguous blocks of
the test trajectories (each block scored on its own, mean and standard error over
blocks); a difference between two sets of CVs is scored block by block (paired), which
removes the variation the blocks share.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import NeuralCTError
from .vamp import as_series, time_lagged_frames, vamp2_score

#: Standard errors beyond which an autocorrelation counts as negative, or as rising with the lag.
OSCILLATION_SIGNIFICANCE = 3.0

__all__ = [
    "implied_timescales",
    "tica_spectrum",
    "split_blocks",
    "vamp2_blocks",
    "compare_vamp2",
    "mean_and_standard_error",
    "msm_implied_timescale",
    "autocorrelation",
    "cv_kinetics",
    "oscillation_notes",
    "OSCILLATION_SIGNIFICANCE",
]


def implied_timescales(eigenvalues: Sequence[float], lag_ps: float) -> list[float | None]:
    """``t_i = -lag_ps / ln(lambda_i)`` in ps; None where ``lambda_i <= 0`` (an oscillation, no relaxation) or >= 1."""
    return [-lag_ps / math.log(value) if 0 < value < 1 else None for value in eigenvalues]


def tica_spectrum(train_series: Sequence[np.ndarray], lag_frames: int, lag_ps: float, dim: int | None = None) -> dict:
    """Eigenvalues of reversible TICA on the training trajectories, with their timescales.

    The components come in deeptime's order, by absolute eigenvalue: the order in which
    the TICA baseline (:func:`neuralct.analysis.vamp.tica_baseline`) takes them. Components
    with a negative eigenvalue are flagged: their autocorrelation at this lag is negative,
    an oscillation (e.g. a vibration with half-period near the lag), not a slow process,
    whatever their rank.

    Parameters
    ----------
    train_series : list of np.ndarray, each shape=(n_frames_i, n_features)
    lag_frames : int
        Lag in frames.
    lag_ps : float
        The same lag in ps (for the timescales).
    dim : int, optional
        Number of components reported (default all).

    Returns
    -------
    dict
        ``eigenvalues``, ``implied_timescales_ps`` (None for eigenvalues <= 0),
        ``negative`` (indices, from 0, of components with a negative eigenvalue), ``lag_ps``.
    """
    from deeptime.decomposition import TICA

    series = as_series(train_series, "training trajectories")
    x, y = time_lagged_frames(series, lag_frames, "training trajectories")
    model = TICA(lagtime=lag_frames, scaling=None).fit((x, y)).fetch_model()
    eigenvalues = np.asarray(model.singular_values, dtype=np.float64)[: dim or None]
    return {
        "eigenvalues": eigenvalues.tolist(),
        "implied_timescales_ps": implied_timescales(eigenvalues, lag_ps),
        "negative": [int(i) for i in np.flatnonzero(eigenvalues < 0)],
        "lag_ps": lag_ps,
    }


def split_blocks(test_series: Sequence[np.ndarray], blocks_per_trajectory: int, lag_frames: int) -> list[np.ndarray]:
    """Contiguous blocks of the test trajectories (each at least 10 lags long).

    Raises
    ------
    NeuralCTError
        If a block would be shorter than 10 lags.
    """
    if blocks_per_trajectory < 1:
        raise NeuralCTError(f"blocks per trajectory must be >= 1, got {blocks_per_trajectory}")
    blocks = []
    for series in test_series:
        if len(series) // blocks_per_trajectory < 10 * lag_frames:
            raise NeuralCTError(
                f"a test trajectory of {len(series)} frames in {blocks_per_trajectory} blocks gives blocks shorter "
                f"than 10 lags ({lag_frames} frames); use fewer blocks or a shorter lag"
            )
        blocks.extend(np.array_split(np.asarray(series), blocks_per_trajectory))
    return blocks


def mean_and_standard_error(values: np.ndarray) -> dict:
    """``mean``, ``standard_error`` and ``blocks`` of per-block scores, shape (n,).

    The standard error is the sample standard deviation over sqrt(n); None for one value.
    """
    values = np.asarray(values, dtype=np.float64)
    error = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    return {"mean": float(values.mean()), "standard_error": error, "blocks": values.tolist()}


def vamp2_blocks(
    train_series: Sequence[np.ndarray], blocks: Sequence[np.ndarray], lag_frames: int, dim: int | None = None
) -> dict:
    """VAMP-2 of the given functions, fit on the training trajectories, scored on each block.

    Returns
    -------
    dict
        ``mean``, ``standard_error`` (over blocks) and ``blocks`` (one score each), with
        ``vamp2`` as in :func:`neuralct.analysis.vamp.vamp2_score` (constant excluded).
    """
    return mean_and_standard_error(
        np.array([vamp2_score(train_series, [block], lag_frames, dim)["vamp2"] for block in blocks])
    )


def compare_vamp2(
    cv_train: Sequence[np.ndarray],
    cv_test: Sequence[np.ndarray],
    feature_train: Sequence[np.ndarray],
    feature_test: Sequence[np.ndarray],
    lag_frames: int,
    lag_ps: float,
    dim: int,
    blocks_per_trajectory: int = 2,
) -> dict:
    """Learned CVs against TICA on the same features at one lag, with block error bars.

    TICA is fit on the training features. Two TICA baselines of ``dim`` components are
    scored: ``tica``, deeptime's first components (by absolute eigenvalue, as
    :func:`neuralct.analysis.vamp.tica_baseline` and ``neuralct analyze`` take them; an
    oscillation with a large negative eigenvalue counts), and ``tica_slowest``, the
    components of the largest signed eigenvalues (slow processes only). Every set of
    ``dim`` functions is VAMP-2 scored on the same test blocks; differences are paired
    block by block.

    Returns
    -------
    dict
        ``learned``, ``tica``, ``tica_slowest`` (:func:`vamp2_blocks`-like), ``difference``
        and ``difference_slowest`` (learned minus each baseline, paired over blocks),
        ``tica_spectrum`` (:func:`tica_spectrum`, all components),
        ``learned_timescales_ps`` (implied timescales of the CVs' own TICA at this lag),
        ``lag_ps``, ``n_blocks``.
    """
    from deeptime.decomposition import TICA

    features = as_series(feature_train, "training trajectories")
    x, y = time_lagged_frames(features, lag_frames, "training trajectories")
    tica = TICA(lagtime=lag_frames, scaling=None).fit((x, y)).fetch_model()
    eigenvalues = np.asarray(tica.singular_values)
    slowest = np.argsort(-eigenvalues, kind="stable")[:dim]
    scores = {}
    for name, columns, train, test in (
        ("learned", None, cv_train, cv_test),
        ("tica", np.arange(dim), feature_train, feature_test),
        ("tica_slowest", slowest, feature_train, feature_test),
    ):
        if columns is not None:
            train = [tica.transform(s)[:, columns] for s in as_series(train, "training trajectories")]
            test = [tica.transform(s)[:, columns] for s in as_series(test, "test trajectories")]
        scores[name] = np.array(
            [
                vamp2_score(train, [block], lag_frames, dim)["vamp2"]
                for block in split_blocks(test, blocks_per_trajectory, lag_frames)
            ]
        )
    return {
        "lag_ps": lag_ps,
        "n_blocks": len(scores["learned"]),
        **{name: mean_and_standard_error(values) for name, values in scores.items()},
        "tica_slowest_components": [int(i) for i in slowest],
        "difference": mean_and_standard_error(scores["learned"] - scores["tica"]),
        "difference_slowest": mean_and_standard_error(scores["learned"] - scores["tica_slowest"]),
        "tica_spectrum": tica_spectrum(feature_train, lag_frames, lag_ps),
        "learned_timescales_ps": tica_spectrum(cv_train, lag_frames, lag_ps)["implied_timescales_ps"],
    }


def msm_implied_timescale(series: Sequence[np.ndarray], lag_frames: int, lag_ps: float, bins: int = 100) -> float:
    """Slowest implied timescale (ps) of a reversible fine-grid Markov model of one coordinate.

    The coordinate is cut into ``bins`` bins of equal width between its extremes over all
    given trajectories (a grid: unlike equal-population bins, none straddles a sparsely
    visited barrier); deeptime's maximum-likelihood reversible MSM at ``lag_frames`` gives the
    second eigenvalue ``lambda_2`` and ``t_2 = -lag_ps / ln(lambda_2)``.

    Parameters
    ----------
    series : list of np.ndarray, each shape=(n_frames_i,)
        The coordinate along each trajectory.
    """
    from deeptime.markov import TransitionCountEstimator
    from deeptime.markov.msm import MaximumLikelihoodMSM

    values = [np.asarray(s, dtype=np.float64).reshape(-1) for s in series]
    everything = np.concatenate(values)
    edges = np.linspace(everything.min(), everything.max(), bins + 1)[1:-1]
    discrete = [np.digitize(v, edges).astype(np.int32) for v in values]
    counts = TransitionCountEstimator(lagtime=lag_frames, count_mode="sliding").fit(discrete).fetch_model()
    msm = MaximumLikelihoodMSM(reversible=True).fit(counts.submodel_largest()).fetch_model()
    eigenvalue = float(np.sort(np.real(msm.eigenvalues(2)))[0])
    if not 0 < eigenvalue < 1:
        raise NeuralCTError(
            f"the Markov model's second eigenvalue at lag {lag_ps:g} ps is {eigenvalue:.3g}: no relaxation resolved; "
            "use a shorter lag"
        )
    return -lag_ps / math.log(eigenvalue)


def autocorrelation(series: Sequence[np.ndarray], lag_frames: int) -> np.ndarray:
    """Normalised autocorrelation of each column at a lag, pooled over trajectories.

    ``<(x_t - mean)(x_t+lag - mean)> / var``, mean and variance over every frame of every
    trajectory, pairs within one trajectory only.

    Parameters
    ----------
    series : list of np.ndarray, each shape=(n_frames_i, n_columns)
    lag_frames : int
        Lag in frames (>= 1).

    Returns
    -------
    np.ndarray, shape=(n_columns,)
        NaN for every column where no trajectory is longer than the lag.
    """
    values = [np.asarray(s, dtype=np.float64).reshape(len(s), -1) for s in series]
    everything = np.concatenate(values)
    mean, variance = everything.mean(0), everything.var(0)
    products = [(v[:-lag_frames] - mean) * (v[lag_frames:] - mean) for v in values if len(v) > lag_frames]
    if not products:
        return np.full(everything.shape[1], np.nan)
    return np.concatenate(products).mean(0) / variance


def cv_kinetics(series: Sequence[np.ndarray], lag_frames: int, time_step_ps: float | None) -> dict:
    """Each CV's autocorrelation at a lag, half of it and twice it, its implied timescales, and whether it oscillates.

    A slow process relaxes: its autocorrelation is positive and decreases with the lag, and
    ``-lag / ln(acf)`` is its implied timescale. A CV whose autocorrelation is negative at any
    of the three lags, or rises from one to the next, follows an oscillation (e.g. a vibration
    with half-period near a lag), not a slow process: it is flagged ``oscillating``, whatever its
    rank. Only what the data resolve counts: a negative value or a rise beyond
    :data:`OSCILLATION_SIGNIFICANCE` standard errors. The error of the autocorrelation r_k at lag
    k is Bartlett's, ``sqrt((1 + 2 sum_{j<k} r_j^2) / pairs)`` (Box and Jenkins, Time Series
    Analysis, eq. 2.1.13): white noise's ``1 / sqrt(pairs)`` grows with the correlation at shorter
    lags, so that neither a few dozen frames nor the slightly negative tail that a finite sample
    gives a slow CV past its relaxation (-0.10 at 20 ps from 2,000 frames of a CV with 0.27 at 5
    ps) flag anything by chance.

    Parameters
    ----------
    series : list of np.ndarray, each shape=(n_frames_i, n_cvs)
        The CVs along each trajectory (consecutive frames), slowest first.
    lag_frames : int
        The lag in frames (>= 1); the half lag is ``lag_frames // 2`` frames, left out below one frame.
    time_step_ps : float or None
        Time between frames in ps; None gives the lags and timescales in frames.

    Returns
    -------
    dict
        ``lag_ps`` (or ``lag_frames``), ``lags_ps`` (or ``lags_frames``: the lags, shortest first),
        ``pairs`` (per lag), and ``cvs``: per CV, slowest first, ``name``, ``autocorrelation`` and
        ``implied_timescales_ps`` (or ``_frames``; None where the autocorrelation is not in (0, 1)
        or no pair is that far apart) at each lag, and ``oscillating``.
    """
    lags = sorted({lag for lag in (lag_frames // 2, lag_frames, 2 * lag_frames) if lag >= 1})
    unit = "frames" if time_step_ps is None else "ps"
    times = [float(lag) if time_step_ps is None else float(lag * time_step_ps) for lag in lags]
    pairs = np.array([sum(max(len(s) - lag, 0) for s in series) for lag in lags])
    resolved = pairs > 0
    # Every lag up to the longest, for Bartlett's sums over the shorter ones: shape (longest, n_cvs).
    every = np.array([autocorrelation(series, lag) for lag in range(1, max(lags) + 1)])
    cvs = []
    for k, values in enumerate(np.array([every[lag - 1] for lag in lags]).T):
        shorter = np.cumsum(np.nan_to_num(every[:, k]) ** 2)
        bartlett = np.array([1.0 + 2.0 * (shorter[lag - 2] if lag > 1 else 0.0) for lag in lags])
        error = OSCILLATION_SIGNIFICANCE * np.sqrt(bartlett[resolved] / pairs[resolved])
        measured = values[resolved]
        rises = np.diff(measured) > np.hypot(error[:-1], error[1:])
        cvs.append(
            {
                "name": f"cv{k + 1}",
                "autocorrelation": [float(a) if math.isfinite(a) else None for a in values],
                f"implied_timescales_{unit}": [implied_timescales([a], t)[0] for a, t in zip(values, times)],
                "oscillating": bool(np.any(measured < -error) or np.any(rises)),
            }
        )
    return {
        f"lag_{unit}": times[lags.index(lag_frames)],
        f"lags_{unit}": times,
        "pairs": pairs.tolist(),
        "cvs": cvs,
        "oscillating_means": f"autocorrelation below -{OSCILLATION_SIGNIFICANCE:g} standard errors at a lag "
        "(Bartlett's, sqrt((1 + 2 x the sum of squares at every shorter lag) / pairs)), or rising from one lag to the "
        "next by more than the combined error: an oscillation, not a slow process",
    }


def oscillation_notes(kinetics: dict, k: int) -> dict[int, str]:
    """Which of the ``k`` slowest CVs of :func:`cv_kinetics` oscillate, each with its autocorrelations in words.

    Returns
    -------
    dict of int to str
        CV index (from 0) -> ``"cv2 oscillates (autocorrelation -0.54 at 0.5 ps, 0.33 at 1 ps, ...)"``.
    """
    unit = "ps" if "lags_ps" in kinetics else "frames"
    notes = {}
    for index, cv in enumerate(kinetics["cvs"][:k]):
        if cv["oscillating"]:
            values = ", ".join(
                f"{'n/a' if a is None else f'{a:.2f}'} at {lag:g} {unit}"
                for a, lag in zip(cv["autocorrelation"], kinetics[f"lags_{unit}"])
            )
            notes[index] = f"{cv['name']} oscillates (autocorrelation {values})"
    return notes
