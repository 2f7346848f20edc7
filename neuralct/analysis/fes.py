"""Free-energy surfaces F = -kT ln P from histograms of one or two CVs."""

from __future__ import annotations

import numpy as np

from ..errors import NeuralCTError
from .reweighting import block_population_errors, kish_blocks

__all__ = ["free_energy_1d", "free_energy_2d", "free_energy_2d_errors"]


def _free_energy(counts: np.ndarray, kT: float) -> np.ndarray:
    """``-kT ln P`` of a histogram, shifted to a minimum of 0, NaN where a bin is empty."""
    if not np.any(counts > 0):
        raise NeuralCTError("the histogram is empty: no frames fall inside the range; widen the range")
    with np.errstate(divide="ignore"):
        free = -kT * np.log(counts / counts.sum())
    free[counts <= 0] = np.nan
    return free - np.nanmin(free)


def _check(kT: float, weights: np.ndarray | None, n: int) -> np.ndarray | None:
    """Validate ``kT`` and the optional frame weights."""
    if not kT > 0:
        raise NeuralCTError(f"kT must be positive, got {kT}")
    if weights is None:
        return None
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n,) or np.any(weights < 0) or not np.all(np.isfinite(weights)):
        raise NeuralCTError(f"weights must be finite, non-negative and one per frame ({n}), got shape {weights.shape}")
    return weights


def free_energy_1d(
    x: np.ndarray,
    bins: int = 60,
    kT: float = 1.0,
    range: tuple[float, float] | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Free-energy profile of one CV from a histogram.

    Parameters
    ----------
    x : np.ndarray, shape=(n_frames,)
        CV values.
    bins : int
        Number of equal-width bins.
    kT : float
        Thermal energy in the units wanted for F: 1.0 gives F in kT,
        ``neuralct.units.kT_kj_per_mol(T)`` gives kJ/mol.
    range : (float, float), optional
        Histogram range; default the data's.
    weights : np.ndarray, shape=(n_frames,), optional
        Frame weights (e.g. reweighting factors of a biased run).

    Returns
    -------
    free_energy : np.ndarray, shape=(bins,)
        F in the units of ``kT``, minimum 0, NaN in empty bins.
    edges : np.ndarray, shape=(bins + 1,)
        Bin edges in the units of ``x``.
    """
    x = np.asarray(x, dtype=np.float64)
    weights = _check(kT, weights, x.shape[0])
    counts, edges = np.histogram(x, bins=bins, range=range, weights=weights)
    return _free_energy(counts.astype(np.float64), kT), edges


def free_energy_2d(
    x: np.ndarray,
    y: np.ndarray,
    bins: int | tuple[int, int] = 60,
    kT: float = 1.0,
    range: tuple[tuple[float, float], tuple[float, float]] | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Free-energy surface of two CVs from a 2-D histogram.

    Parameters
    ----------
    x, y : np.ndarray, shape=(n_frames,)
        CV values.
    bins : int or (int, int)
        Number of equal-width bins along x and y.
    kT : float
        Thermal energy in the units wanted for F (1.0: F in kT).
    range : ((float, float), (float, float)), optional
        Histogram range along x and y; default the data's.
    weights : np.ndarray, shape=(n_frames,), optional
        Frame weights.

    Returns
    -------
    free_energy : np.ndarray, shape=(bins_x, bins_y)
        F in the units of ``kT``, first index along x, minimum 0, NaN in empty bins.
    x_edges, y_edges : np.ndarray, shape=(bins_x + 1,) and (bins_y + 1,)
        Bin edges.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.shape != x.shape:
        raise NeuralCTError(f"x and y must be 1-D arrays of one length, got shapes {x.shape} and {y.shape}")
    weights = _check(kT, weights, x.shape[0])
    counts, x_edges, y_edges = np.histogram2d(x, y, bins=bins, range=range, weights=weights)
    return _free_energy(counts, kT), x_edges, y_edges


def free_energy_2d_errors(
    x: np.ndarray,
    y: np.ndarray,
    bins: int | tuple[int, int],
    kT: float,
    range: tuple[tuple[float, float], tuple[float, float]],
    weights: np.ndarray | None = None,
    blocks: int = 10,
) -> np.ndarray:
    """Block standard errors of the free energy of every bin of :func:`free_energy_2d`'s surface.

    The frames, in time order, are cut into ``blocks`` contiguous blocks; each bin's weighted
    population p has the block standard error of
    :func:`~neuralct.analysis.reweighting.block_population_errors`, and its free energy -kT ln p the
    error kT sigma_p / p (to first order). Blocks, not frames, because consecutive frames are correlated.

    Parameters
    ----------
    x, y : np.ndarray, shape=(n_frames,)
        CV values, in time order.
    bins, kT, range, weights
        As for :func:`free_energy_2d` (``range`` required: every block is binned alike).
    blocks : int
        Contiguous blocks (at least 2).

    Returns
    -------
    np.ndarray, shape=(bins_x, bins_y)
        The standard error of F in the units of ``kT``; NaN in empty bins, and everywhere when the
        weight sits in fewer than 2 blocks (Kish's effective number) or the frames are fewer than
        the blocks.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    weights = _check(kT, weights, x.shape[0])
    weights = np.ones_like(x) if weights is None else weights
    parts = list(zip(np.array_split(x, blocks), np.array_split(y, blocks), np.array_split(weights, blocks)))
    hits = np.array([np.histogram2d(xb, yb, bins=bins, range=range, weights=wb)[0] for xb, yb, wb in parts])
    block_weights = np.array([wb.sum() for _, _, wb in parts])
    errors = np.full(hits.shape[1:], np.nan)
    if len(x) < blocks or block_weights.sum() <= 0 or kish_blocks(block_weights) < 2:
        return errors
    population = hits.sum(axis=0) / block_weights.sum()
    filled = population > 0
    errors[filled] = kT * block_population_errors(block_weights, hits)[filled] / population[filled]
    return errors
