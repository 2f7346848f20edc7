"""Pairs of frames a lag apart, within one trajectory: the lag in ps converted to frames once, and split for validation."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import NeuralCTError

__all__ = ["split_lagged_pairs"]


def split_lagged_pairs(
    traj_lengths: list[int], lag_frames: int, train_index: np.ndarray, valid_index: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Lagged index pairs of the training and the validation frames.

    A pair belongs to a set when both its frames do; pairs never cross a trajectory
    boundary (:func:`neuralct.data.lagged_pairs`) nor the cut of a split trajectory.

    Returns
    -------
    train_pairs, valid_pairs : tuple of np.ndarray
        ``(i, j)`` index arrays into the concatenated frames, ``j = i + lag_frames``.
    """
    first, second = lagged_pairs(traj_lengths, lag_frames)
    split = []
    for index in (train_index, valid_index):
        keep = np.isin(first, index) & np.isin(second, index)
        split.append((first[keep], second[keep]))
    return split[0], split[1]


def lag_in_frames(
    lag_ps: float, timestep_ps: float | None, option: str = "--lag-ps", no_timestep: str | None = None
) -> int:
    """A lag in ps as a whole number of frames ``timestep_ps`` apart; ``option`` names it in errors.

    The one place where a lag in ps becomes frames: it must be a whole multiple of the frame
    spacing (to 1e-6 relative, far below any spacing a user gives and far above the float64
    rounding of ``frames * timestep_ps``).

    Parameters
    ----------
    lag_ps : float
        The lag in ps.
    timestep_ps : float or None
        Time between frames in ps (:attr:`PhaseSpaceData.timestep_ps`), None when unknown.
    option : str
        The option or argument that gave the lag.
    no_timestep : str, optional
        Why ``timestep_ps`` is None (:attr:`PhaseSpaceData.timestep_note`).

    Returns
    -------
    int
        The lag in frames (>= 1).

    Raises
    ------
    NeuralCTError
        If the lag is not positive, the spacing is unknown, or the lag is not a whole multiple of it.
    """
    if not lag_ps > 0:
        raise NeuralCTError(f"{option} must be positive, got {lag_ps}")
    if timestep_ps is None or not timestep_ps > 0:
        raise NeuralCTError(
            f"{option} needs the time between frames: {no_timestep or 'these files have no time stamps; give trajectories that record them'}"
        )
    frames = int(round(lag_ps / timestep_ps))
    if frames < 1 or abs(frames * timestep_ps - lag_ps) > 1e-6 * max(lag_ps, 1.0):
        raise NeuralCTError(
            f"{option} {lag_ps:g} is not a whole multiple of the {timestep_ps:g} ps between frames; use a multiple of it"
        )
    return frames


def lagged_pairs(traj_lengths: Sequence[int], lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, i + lag) into concatenated trajectories that never cross a boundary.

    Parameters
    ----------
    traj_lengths : sequence of int
        Frames per trajectory, in the order they are concatenated.
    lag : int
        Lag in frames (>= 0).

    Returns
    -------
    i, j : np.ndarray, shape=(n_pairs,)
        Frame indices with j = i + lag in the same trajectory.
    """
    if lag < 0:
        raise ValueError(f"lag must be >= 0, got {lag}")
    starts = np.concatenate([[0], np.cumsum(traj_lengths)[:-1]]).astype(int)
    first = [start + np.arange(max(length - lag, 0)) for start, length in zip(starts, traj_lengths)]
    i = np.concatenate(first) if first else np.zeros(0, dtype=int)
    return i, i + lag
