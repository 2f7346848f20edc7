"""The rotated double well as a benchmark with exact answers for kinetically slow CVs.

The bundled system ``rotated-double-well`` (:func:`neuralct.md.systems.rotated_double_well_system`)
hides a known barrier coordinate ``u_0 = R[0] . x`` among harmonic coordinates. Its
trajectories are used without alignment (the potential is not rotation invariant): the
flattened Cartesian positions and on-step momenta are the phase-space data. The reference
answer is the slowest implied timescale of a fine-grid Markov model of ``u_0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..analysis.kinetics import msm_implied_timescale
from ..data.loading import frame_spacing
from ..data.netcdf import read_netcdf
from ..data.pairs import lag_in_frames, split_lagged_pairs
from ..errors import NeuralCTError
from ..md.systems import rotated_double_well_rotation
from ..model.transformation import DEFAULT_ARCHITECTURE, NeuralCanonicalTransformation
from ..training.loop import TrainingSettings, train
from ..training.objectives import LaggedLikelihood, MaximumLikelihood
from ..units import kT_kj_per_mol

__all__ = ["ToyTrajectories", "load_toy_trajectories", "fit_toy_trajectories", "score_slow_coordinate"]


class ToyTrajectories:
    """Flattened positions (nm) and on-step momenta (amu nm/ps) of ``neuralct simulate`` toy runs.

    Attributes
    ----------
    q, p : np.ndarray, shape=(n_frames, 3N)
        Concatenated over trajectories.
    lengths : list of int
        Frames per trajectory.
    masses : np.ndarray, shape=(3N,)
        amu per coordinate.
    timestep_ps : float
        Time between frames.
    barrier : np.ndarray, shape=(n_frames,)
        The known slow coordinate ``u_0`` in nm.
    """

    def __init__(self, q, p, lengths, masses, timestep_ps, barrier):
        self.q, self.p, self.lengths, self.masses, self.timestep_ps, self.barrier = (
            q,
            p,
            list(lengths),
            masses,
            timestep_ps,
            barrier,
        )

    def lag_frames(self, lag_ps: float) -> int:
        """``lag_ps`` as a whole number of frames (:func:`neuralct.data.pairs.lag_in_frames`)."""
        return lag_in_frames(lag_ps, self.timestep_ps, "`lag_ps`")

    def frames(self, trajectories: Sequence[int]) -> np.ndarray:
        """Indices of the frames of the given trajectories."""
        starts = np.concatenate([[0], np.cumsum(self.lengths)]).astype(int)
        return np.concatenate([np.arange(starts[k], starts[k + 1]) for k in trajectories])

    def per_trajectory(self, values: np.ndarray, trajectories: Sequence[int]) -> list[np.ndarray]:
        """``values`` (one row per frame) cut into the given trajectories."""
        return [values[self.frames([k])] for k in trajectories]


def load_toy_trajectories(folder: str | Path) -> ToyTrajectories:
    """Read the ``replica-*.nc`` files a ``neuralct simulate rotated-double-well`` run wrote.

    Raises
    ------
    NeuralCTError
        If the folder holds no trajectories of that system or their velocities are not on-step.
    """
    import json

    folder = Path(folder)
    paths = sorted(folder.glob("replica-*.nc"))
    summary = folder / "summary.json"
    if not paths or not summary.is_file():
        raise NeuralCTError(f"{folder} holds no `neuralct simulate rotated-double-well` output; run that first")
    recorded = json.loads(summary.read_text())
    if recorded.get("system") != "rotated-double-well":
        raise NeuralCTError(f"{folder} holds a {recorded.get('system')!r} run, not rotated-double-well")
    settings = recorded["system_settings"]
    frames = [read_netcdf(path) for path in paths]
    if not all(f.velocities is not None and f.attributes.get("neuralct_velocities_on_step") for f in frames):
        raise NeuralCTError(f"{folder}: the trajectories need on-step velocities")
    q = np.concatenate([f.positions.reshape(len(f.positions), -1) for f in frames])
    masses = np.full(q.shape[1], float(settings["mass_amu"]))
    p = np.concatenate([f.velocities.reshape(len(f.positions), -1) for f in frames]) * masses
    rotation = rotated_double_well_rotation(int(settings["n_particles"]), int(settings["rotation_seed"]))
    timestep, note = frame_spacing([f.time_ps for f in frames], [path.name for path in paths])
    if timestep is None:
        raise NeuralCTError(f"{folder}: {note}")
    return ToyTrajectories(q, p, [len(f.positions) for f in frames], masses, timestep, q @ rotation[0])


def fit_toy_trajectories(
    data: ToyTrajectories,
    train_trajectories: Sequence[int],
    valid_trajectories: Sequence[int],
    settings: TrainingSettings,
    lag_ps: float | None,
    momenta: str = "recorded",
    architecture=DEFAULT_ARCHITECTURE,
    seed: int = 0,
) -> NeuralCanonicalTransformation:
    """Train on the toy by maximum likelihood (``lag_ps`` None) or with the time-lagged objective at ``lag_ps``.

    ``lag_ps`` is a whole number of frames; ``momenta``: ``recorded`` (phase-space lagged term)
    or ``resample`` (configuration-only).
    """
    torch.manual_seed(seed)
    q = torch.as_tensor(data.q, dtype=torch.float32)
    p = torch.as_tensor(data.p, dtype=torch.float32)
    train_index, valid_index = data.frames(train_trajectories), data.frames(valid_trajectories)
    model = NeuralCanonicalTransformation(
        q.shape[1],
        masses=torch.as_tensor(data.masses, dtype=torch.float32),
        kT=kT_kj_per_mol(300.0),
        architecture=architecture,
        latent_dynamics=lag_ps is not None,
    ).to(torch.float32)
    model.initialize(q[train_index], generator=torch.Generator().manual_seed(seed))
    if lag_ps is None:
        objective = MaximumLikelihood(q[train_index], q[valid_index])
    else:
        pairs = split_lagged_pairs(data.lengths, lag_ps, data.timestep_ps, train_index, valid_index)
        objective = LaggedLikelihood(q, p if momenta == "recorded" else None, pairs)
        objective.initialize_frictions(model, seed=seed)
    train(model, objective, settings, seed=seed)
    return model


def score_slow_coordinate(
    model: NeuralCanonicalTransformation,
    data: ToyTrajectories,
    test_trajectories: Sequence[int],
    lag_ps: float,
    bins: int = 100,
) -> dict[str, Any]:
    """How well the slowest learned CV recovers the barrier coordinate on the test trajectories.

    Returns
    -------
    dict
        ``correlation`` (Pearson r of CV 1 with ``u_0`` on the test frames),
        ``timescale_cv_ps`` and ``timescale_reference_ps`` (fine-grid MSMs of CV 1 and of
        ``u_0`` on the test trajectories at ``lag_ps``, a whole number of frames; None for a CV 1 that relaxes
        faster than the lag), their ratio, and the reference on all trajectories
        (``timescale_reference_all_ps``); for a model with dynamics its
        own relaxation time of mode 1.
    """
    with torch.no_grad():
        cv = model.cv(torch.as_tensor(data.q, dtype=model.masses.dtype), k=1).double().numpy()[:, 0]
    test = data.frames(test_trajectories)
    lag_frames = data.lag_frames(lag_ps)
    reference = msm_implied_timescale(data.per_trajectory(data.barrier, test_trajectories), lag_frames, lag_ps, bins)
    try:
        learned = msm_implied_timescale(data.per_trajectory(cv, test_trajectories), lag_frames, lag_ps, bins)
    except NeuralCTError:
        learned = None  # CV 1 relaxes faster than the lag: no slow coordinate at all
    every = range(len(data.lengths))
    result = {
        "correlation": float(np.corrcoef(cv[test], data.barrier[test])[0, 1]),
        "lag_ps": lag_ps,
        "timescale_cv_ps": learned,
        "timescale_reference_ps": reference,
        "timescale_ratio": None if learned is None else learned / reference,
        "timescale_reference_all_ps": msm_implied_timescale(
            data.per_trajectory(data.barrier, every), lag_frames, lag_ps, bins
        ),
    }
    if model.dynamics is not None:
        result["model_relaxation_time_ps"] = float(model.relaxation_times[0].detach()) * model.time_unit
    return result
