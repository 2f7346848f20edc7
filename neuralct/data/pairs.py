"""Pairs of frames a lag apart within one trajectory: the lag in ps converted to frames once, split for validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import NeuralCTError

__all__ = ["LaggedPairs", "lag_in_frames", "lagged_pairs", "split_lagged_pairs"]


@dataclass(frozen=True)
class LaggedPairs:
    """Pairs of frames one lag apart within a trajectory, split into training and validation pairs.

    Attributes
    ----------
    train : (np.ndarray, np.ndarray), each shape=(n_train_pairs,)
        ``(i, j)`` indices into the concatenated frames of the pairs of two training frames,
        ``j = i + lag_frames``.
    valid : (np.ndarray, np.ndarray), each shape=(n_valid_pairs,), or None
        The same for the validation frames; None (or empty arrays): no validation pairs.
    lag_frames : int
        The lag in frames.
    lag_ps : float
        The same lag in ps (in the time unit of the positions for data without one).
    """

    train: tuple[np.ndarray, np.ndarray]
    valid: tuple[np.ndarray, np.ndarray] | None
    lag_frames: int
    lag_ps: float


def split_lagged_pairs(
    traj_lengths: Sequence[int],
    lag_ps: float,
    timestep_ps: float | None,
    train_index: np.ndarray,
    valid_index: np.ndarray,
    name: str = "`lag_ps`",
    no_timestep: str | None = None,
) -> LaggedPairs:
    """The pairs of training frames and of validation frames ``lag_ps`` apart.

    A pair belongs to a set when both its frames do; pairs never cross a trajectory
    boundary (:func:`lagged_pairs`) nor the cut of a split trajectory.

    Parameters
    ----------
    traj_lengths : sequence of int
        Frames per trajectory, in the order they are concatenated.
    lag_ps : float
        The lag in ps, a whole multiple of ``timestep_ps`` (:func:`lag_in_frames`).
    timestep_ps : float or None
        Time between frames in ps, None when unknown.
    train_index, valid_index : np.ndarray of int
        The training and the validation frames.
    name, no_timestep
        As in :func:`lag_in_frames`.

    Returns
    -------
    LaggedPairs
    """
    lag_frames = lag_in_frames(lag_ps, timestep_ps, name, no_timestep)
    first, second = lagged_pairs(traj_lengths, lag_frames)
    split = []
    for index in (train_index, valid_index):
        keep = np.isin(first, index) & np.isin(second, index)
        split.append((first[keep], second[keep]))
    return LaggedPairs(split[0], split[1], lag_frames, float(lag_ps))


def lag_in_frames(
    lag_ps: float, timestep_ps: float | None, name: str = "--lag-ps", no_timestep: str | None = None
) -> int:
    """A lag in ps as a whole number of frames ``timestep_ps`` apart; ``name`` names the lag in errors.

    The one place where a lag in ps becomes frames: it must be a whole multiple of the frame
    spacing (to 1e-6 relative, far below any spacing a user gives and far above the float64
    rounding of ``frames * timestep_ps``).

    Parameters
    ----------
    lag_ps : float
        The lag in ps.
    timestep_ps : float or None
        Time between frames in ps (:attr:`PhaseSpaceData.timestep_ps`), None when unknown.
    name : str
        The argument that gave the lag, in backquotes (``"`rank_lag_ps`"``), which the command
        line shows as its flag.
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
        raise NeuralCTError(f"{name} must be positive, got {lag_ps}")
    if timestep_ps is None or not timestep_ps > 0:
        why = no_timestep or "these files have no time stamps; give trajectories that record them"
        raise NeuralCTError(f"{name} needs the time between frames: {why}")
    frames = int(round(lag_ps / timestep_ps))
    if frames < 1 or abs(frames * timestep_ps - lag_ps) > 1e-6 * max(lag_ps, 1.0):
        raise NeuralCTError(
            f"{name} {lag_ps:g} is not a whole multiple of the {timestep_ps:g} ps between frames; use a multiple of it"
        )
    return frames


def lagged_pairs(traj_lengths: Sequence[int], lag_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, i + lag_frames) into concatenated trajectories that never cross a boundary.

    Parameters
    ----------
    traj_lengths : sequence of int
        Frames per trajectory, in the order they are concatenated.
    lag_frames : int
        Lag in frames (>= 0).

    Returns
    -------
    i, j : np.ndarray, shape=(n_pairs,)
        Frame indices with j = i + lag_frames in the same trajectory.
    """
    if lag_frames < 0:
        raise ValueError(f"lag_frames must be >= 0, got {lag_frames}")
    starts = np.concatenate([[0], np.cumsum(traj_lengths)[:-1]]).astype(int)
    first = [start + np.arange(max(length - lag_frames, 0)) for start, length in zip(starts, traj_lengths)]
    i = np.concatenate(first) if first else np.zeros(0, dtype=int)
    return i, i + lag_frames
