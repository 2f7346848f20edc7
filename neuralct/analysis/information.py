"""Dependence between a collective variable and a backbone angle: mutual information and circular correlation."""

from __future__ import annotations

import numpy as np

from ..errors import NeuralCTError

__all__ = ["mutual_information", "circular_correlation"]


def _paired_1d(x: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check that ``x`` and ``angle`` are finite 1-D arrays of one length and return them as float64."""
    x = np.asarray(x, dtype=np.float64)
    angle = np.asarray(angle, dtype=np.float64)
    if x.ndim != 1 or angle.shape != x.shape:
        raise NeuralCTError(
            f"expected two 1-D arrays of one length, got shapes {x.shape} and {angle.shape}; "
            "pass one CV column and one angle per frame"
        )
    if x.size < 3:
        raise NeuralCTError(f"need at least 3 frames to measure a dependence, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(angle))):
        raise NeuralCTError("the CV or the angle contains NaN or infinite values; drop those frames first")
    return x, angle


def _equal_count_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """Bin index in ``[0, bins)`` of each value, with bin edges at the empirical quantiles.

    Tied values always share a bin (so a discrete variable fills fewer bins).
    """
    edges = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.searchsorted(edges, values, side="right")


def _periodic_bins(angle: np.ndarray, bins: int) -> np.ndarray:
    """Bin index in ``[0, bins)`` of each angle (radians), equal-width bins over one period."""
    wrapped = np.mod(angle + np.pi, 2.0 * np.pi)
    return np.minimum((wrapped * (bins / (2.0 * np.pi))).astype(np.int64), bins - 1)


def mutual_information(x: np.ndarray, angle: np.ndarray, bins: int = 24, periodic: bool = True) -> float:
    """Mutual information between a real-valued CV and an angle, in nats.

    Estimator: plug-in mutual information of the 2-D histogram with ``bins``
    equal-count (quantile) bins on ``x`` and ``bins`` equal-width periodic bins
    over one turn on ``angle``, with the Miller-Madow bias correction of each
    entropy, which gives ``I = I_plugin + (B_x + B_a - B_xa - 1) / (2 N)``
    where ``B`` counts the non-empty bins and ``N`` the frames. What remains
    is the discretisation bias (a downward bias for a smooth dependence, shrinking
    as ``bins`` grows) and a sampling bias of order ``(bins - 1)^2 / (2 N)`` that
    the correction removes to first order for independent frames. Correlated
    frames (a trajectory) inflate the sampling noise; the estimate is still
    consistent.

    Parameters
    ----------
    x : np.ndarray, shape=(n_frames,)
        The CV (any units; only the ranks matter).
    angle : np.ndarray, shape=(n_frames,)
        The angle in radians (any branch; it is wrapped). With ``periodic=False``
        it is treated as a second real variable and binned by quantiles like ``x``.
    bins : int
        Number of bins along each axis.
    periodic : bool
        Whether ``angle`` is periodic with period 2 pi.

    Returns
    -------
    float
        Mutual information in nats (not clipped at 0: a slightly negative value
        means no detectable dependence).
    """
    x, angle = _paired_1d(x, angle)
    if not (isinstance(bins, (int, np.integer)) and bins >= 2):
        raise NeuralCTError(f"bins must be an integer >= 2, got {bins!r}")
    ix = _equal_count_bins(x, bins)
    ia = _periodic_bins(angle, bins) if periodic else _equal_count_bins(angle, bins)
    n = x.size
    joint = np.bincount(ix * bins + ia, minlength=bins * bins).reshape(bins, bins) / n
    px = joint.sum(axis=1)
    pa = joint.sum(axis=0)
    nz = joint > 0
    plug_in = float(np.sum(joint[nz] * np.log(joint[nz] / np.outer(px, pa)[nz])))
    correction = (np.count_nonzero(px) + np.count_nonzero(pa) - np.count_nonzero(nz) - 1) / (2.0 * n)
    return float(plug_in + correction)


def circular_correlation(x: np.ndarray, angle: np.ndarray) -> float:
    """Circular-linear correlation coefficient between a real CV and an angle.

    Mardia (1976), Biometrika 63, 403: with the Pearson correlations
    ``r_xc = corr(x, cos a)``, ``r_xs = corr(x, sin a)`` and ``r_cs = corr(cos a, sin a)``,
    ``R^2 = (r_xc^2 + r_xs^2 - 2 r_xc r_xs r_cs) / (1 - r_cs^2)``: the squared
    multiple correlation of ``x`` on ``(cos a, sin a)``. It is 1 exactly when
    ``x = A cos(a - a0) + B`` and about ``2 / n`` for independent samples.

    Parameters
    ----------
    x : np.ndarray, shape=(n_frames,)
        The CV.
    angle : np.ndarray, shape=(n_frames,)
        The angle in radians.

    Returns
    -------
    float
        ``R`` in [0, 1] (dimensionless); 0 when ``x`` or the angle does not vary.
    """
    x, angle = _paired_1d(x, angle)
    centred = x - x.mean()
    total = float(centred @ centred)
    if not total > 0:
        return 0.0
    # The least-squares fit gives R^2 also where cos a and sin a are collinear (an angle that takes two opposite
    # values), where the closed form above divides 0 by 0.
    design = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    design -= design.mean(axis=0)
    coefficients = np.linalg.lstsq(design, centred, rcond=None)[0]
    residual = centred - design @ coefficients
    return float(np.sqrt(np.clip(1.0 - float(residual @ residual) / total, 0.0, 1.0)))
