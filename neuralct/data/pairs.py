"""Pairs of frames a lag apart within one trajectory, split for validation.

In simulation time the lag in ps is converted to frames once (:func:`lag_in_frames`). Under a
bias the slow process runs faster than it would unbiased, and by how much changes with the bias:
:func:`rescaled_lagged_pairs` counts the lag in rescaled time ``dt' = dt exp(beta V)`` instead
(Bonati, Piccini and Parrinello, PNAS 118, e2113533118, 2021; the pairing of Yang and Parrinello,
JCTC 14, 2889, 2018): a frame lasts ``dt exp(w)`` of rescaled time, and the pair ``(i, j)``
weighs the rescaled time during which frame ``j`` is seen one lag after frame ``i``. Under
well-tempered metadynamics ``w = (V - c(t))/kT``, the frame's reweighting exponent (the ``rbias``
column of a COLVAR): with ``V`` alone the bias's growth over the run would make its last frames
last longest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import NeuralCTError

__all__ = [
    "LaggedPairs",
    "RescaledTime",
    "lag_in_frames",
    "lagged_pairs",
    "rescaled_lagged_pairs",
    "split_lagged_pairs",
]

#: The most rescaled-time pairs one lag may give (:func:`rescaled_lagged_pairs`; a frame whose rescaled time spans
#: many of its neighbours' pairs with each of them), under the 2^24 categories of ``torch.multinomial``.
MAX_RESCALED_PAIRS = 16_000_000


@dataclass(frozen=True)
class RescaledTime:
    """The bias of a run, by which every lag of a fit on its frames counts rescaled time.

    Attributes
    ----------
    log_rates : np.ndarray, shape=(n_frames,)
        ``w = (V - c(t))/kT`` of each frame: frame ``k`` lasts ``dt exp(w[k])`` of rescaled time
        (:func:`rescaled_lagged_pairs`).
    source : str
        Where the bias came from (e.g. the COLVAR), for summary.json.
    """

    log_rates: np.ndarray
    source: str


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
        The lag in frames (0 for pairs in rescaled time, whose frames are no fixed number apart).
    lag_ps : float
        The same lag in ps (in the time unit of the positions for data without one).
    train_weights, valid_weights : np.ndarray, shape=(n_train_pairs,) and (n_valid_pairs,), or None
        Weights of the pairs (rescaled time, :func:`rescaled_lagged_pairs`); None: equal weights.
    """

    train: tuple[np.ndarray, np.ndarray]
    valid: tuple[np.ndarray, np.ndarray] | None
    lag_frames: int
    lag_ps: float
    train_weights: np.ndarray | None = None
    valid_weights: np.ndarray | None = None

    def start_weights(self, frames: np.ndarray) -> np.ndarray | None:
        """The weight of each of ``frames`` as the training pairs count it: the rescaled time it starts pairs for.

        The distribution the weighted pairs sample, unbiased for pairs in rescaled time (each frame
        weighted by the time ``dt exp(w)`` it lasts, but at the end of a trajectory, whose last
        frames start fewer pairs), which the model's data-dependent start should see instead of the
        biased frames.

        Parameters
        ----------
        frames : np.ndarray of int, shape=(n,)
            Indices into the concatenated frames (e.g. the training frames).

        Returns
        -------
        np.ndarray, shape=(n,), or None
            None for pairs of equal weight: every frame counts the same.
        """
        if self.train_weights is None:
            return None
        starts = np.bincount(self.train[0], weights=self.train_weights, minlength=int(np.max(frames)) + 1)
        return starts[frames]


def split_lagged_pairs(
    traj_lengths: Sequence[int],
    lag_ps: float,
    timestep_ps: float | None,
    train_index: np.ndarray,
    valid_index: np.ndarray,
    name: str = "`lag_ps`",
    no_timestep: str | None = None,
    log_rates: np.ndarray | None = None,
) -> LaggedPairs:
    """The pairs of training frames and of validation frames ``lag_ps`` apart.

    A pair belongs to a set when both its frames do; pairs never cross a trajectory
    boundary (:func:`lagged_pairs`) nor the cut of a split trajectory.

    Parameters
    ----------
    traj_lengths : sequence of int
        Frames per trajectory, in the order they are concatenated.
    lag_ps : float
        The lag in ps, a whole multiple of ``timestep_ps`` (:func:`lag_in_frames`); any positive
        lag in rescaled time.
    timestep_ps : float or None
        Time between frames in ps, None when unknown.
    train_index, valid_index : np.ndarray of int
        The training and the validation frames.
    name, no_timestep
        As in :func:`lag_in_frames`.
    log_rates : np.ndarray, shape=(n_frames,), optional
        ``ln(dt' / dt)`` of each frame (:func:`rescaled_lagged_pairs`): the lag is then rescaled
        time and the pairs are weighted by the rescaled time they span.

    Returns
    -------
    LaggedPairs
    """
    if log_rates is None:
        lag_frames = lag_in_frames(lag_ps, timestep_ps, name, no_timestep)
        first, second = lagged_pairs(traj_lengths, lag_frames)
        spans = None
    else:
        _check_lag(lag_ps, timestep_ps, name, no_timestep)
        lag_frames = 0
        first, second, spans = rescaled_lagged_pairs(traj_lengths, log_rates, timestep_ps, lag_ps)
    split, weights = [], []
    for index in (train_index, valid_index):
        keep = np.isin(first, index) & np.isin(second, index)
        split.append((first[keep], second[keep]))
        weights.append(None if spans is None else spans[keep])
    return LaggedPairs(split[0], split[1], lag_frames, float(lag_ps), *weights)


def rescaled_lagged_pairs(
    traj_lengths: Sequence[int], log_rates: np.ndarray, timestep_ps: float, lag_ps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of frames ``lag_ps`` apart in rescaled time, each weighted by the rescaled time it spans.

    Frame ``k`` of a trajectory lasts ``d_k = timestep_ps exp(log_rates[k])`` of rescaled time,
    from ``T_k = d_0 + ... + d_(k-1)`` to ``T_(k+1)``. Frame ``i`` is followed one lag later by
    every frame ``j`` whose interval overlaps ``[T_i + lag, T_(i+1) + lag)``, for the length of the
    overlap: the weight of ``(i, j)``. The weights of the pairs that start at ``i`` add up to
    ``d_i`` (less where the trajectory ends first), the unbiased weight of frame ``i``. A frame
    longer than the lag is paired with itself: the system stays there. Pairs never cross a
    trajectory boundary. With ``log_rates`` all 0 these are :func:`lagged_pairs` (weights
    ``timestep_ps``) when ``lag_ps`` is a whole number of frames.

    Parameters
    ----------
    traj_lengths : sequence of int
        Frames per trajectory, in the order they are concatenated.
    log_rates : np.ndarray, shape=(n_frames,)
        ``ln(dt' / dt)`` of each frame: ``(V - c(t))/kT`` under well-tempered metadynamics.
    timestep_ps : float
        Simulation time between frames, ps.
    lag_ps : float
        The lag in rescaled time, ps.

    Returns
    -------
    i, j : np.ndarray of int, shape=(n_pairs,)
        Frame indices into the concatenated trajectories.
    weights : np.ndarray, shape=(n_pairs,)
        Rescaled time of each pair, ps.

    Raises
    ------
    NeuralCTError
        If ``log_rates`` has the wrong length or values that are not finite, or the pairs would be
        more than :data:`MAX_RESCALED_PAIRS`.
    """
    log_rates = np.asarray(log_rates, dtype=np.float64)
    if log_rates.shape != (int(np.sum(traj_lengths)),) or not np.isfinite(log_rates).all():
        raise NeuralCTError(
            f"the bias of each frame: {log_rates.shape[0]} values for {int(np.sum(traj_lengths))} frames, or values "
            "that are not finite; give the COLVAR of the run that wrote the trajectory"
        )
    firsts, seconds, overlaps = [], [], []
    start = 0
    for length in traj_lengths:
        durations = timestep_ps * np.exp(log_rates[start : start + length])
        bounds = np.concatenate([[0.0], np.cumsum(durations)])
        low, high = bounds[:-1] + lag_ps, bounds[1:] + lag_ps
        # The frames whose intervals hold the shifted interval's ends, clipped to the trajectory.
        begin = np.searchsorted(bounds, low, side="right") - 1
        end = np.minimum(np.searchsorted(bounds, high, side="left") - 1, length - 1)
        counts = np.where(begin < length, end - begin + 1, 0)
        if int(counts.sum()) + sum(len(i) for i in firsts) > MAX_RESCALED_PAIRS:
            raise NeuralCTError(
                f"a lag of {lag_ps:g} ps in rescaled time gives more than {MAX_RESCALED_PAIRS} pairs of frames; "
                "use a shorter lag"
            )
        i = np.repeat(np.arange(length), counts)
        j = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(begin, counts)
        overlap = np.minimum(high[i], bounds[j + 1]) - np.maximum(low[i], bounds[j])
        # Rounding of the bounds leaves slivers of overlap with the neighbours of a frame the lag ends on exactly.
        keep = overlap > 1e-9 * timestep_ps
        firsts.append(start + i[keep])
        seconds.append(start + j[keep])
        overlaps.append(overlap[keep])
        start += length
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(overlaps)


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
    _check_lag(lag_ps, timestep_ps, name, no_timestep)
    frames = int(round(lag_ps / timestep_ps))
    if frames < 1 or abs(frames * timestep_ps - lag_ps) > 1e-6 * max(lag_ps, 1.0):
        raise NeuralCTError(
            f"{name} {lag_ps:g} is not a whole multiple of the {timestep_ps:g} ps between frames; use a multiple of it"
        )
    return frames


def _check_lag(lag_ps: float, timestep_ps: float | None, name: str, no_timestep: str | None) -> None:
    """Refuse a lag that is not positive, or frames whose spacing is unknown (``no_timestep`` says why)."""
    if not lag_ps > 0:
        raise NeuralCTError(f"{name} must be positive, got {lag_ps}")
    if timestep_ps is None or not timestep_ps > 0:
        why = no_timestep or "these files have no time stamps; give trajectories that record them"
        raise NeuralCTError(f"{name} needs the time between frames: {why}")


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
