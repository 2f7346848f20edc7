"""End-to-end fitting runs: build the model, train it, and collect the figures for summary.json."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .device import resolve_device
from .errors import NeuralCTError
from .lagged import LaggedLikelihood, lag_in_frames, split_lagged_pairs
from .model import NeuralCanonicalTransformation
from .toys import CurvedDoubleWell, HarmonicChain
from .training import (
    MaximumLikelihood,
    TrainingSettings,
    VariationalFreeEnergy,
    harmonic_start,
    peak_memory_mb,
    train,
)

__all__ = ["architecture_from_options", "check_enough_samples", "fit_toy", "fit_trajectories", "split_trajectories", "DTYPES"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}

_LAYER_NAMES = ("linear", "linear-point", "point", "continuous")


def architecture_from_options(layers: str, couplings: int, hidden: int, depth: int, leapfrog_steps: int) -> list[dict[str, Any]]:
    """Translate the CLI's ``--layers`` list (e.g. ``linear-point,point``) into layer specs."""
    specs = []
    for name in (item.strip() for item in layers.split(",") if item.strip()):
        if name == "linear":
            specs.append({"type": "linear", "point": False})
        elif name == "linear-point":
            specs.append({"type": "linear", "point": True})
        elif name == "point":
            specs.append({"type": "point", "n_layers": couplings, "hidden": hidden, "depth": depth})
        elif name == "continuous":
            specs.append({"type": "continuous", "steps": leapfrog_steps, "hidden": hidden, "depth": depth})
        else:
            raise NeuralCTError(f"--layers: unknown layer {name!r}; use a comma-separated list of {', '.join(_LAYER_NAMES)}")
    if not specs:
        raise NeuralCTError("--layers is empty; name at least one layer")
    return specs


def _run_figures(model, result, settings: TrainingSettings, device: torch.device, dtype: str) -> dict[str, Any]:
    """What every training summary reports about the run itself."""
    return {
        "history": result.history,
        "steps": result.steps,
        "batch_size": settings.batch_size,
        "resumed_from_step": result.resumed_from_step,
        "kept_step": result.best_step or result.steps,
        "kept_state": "lowest validation loss" if result.best_step else "last step",
        "training_seconds": result.wall_seconds,
        "samples_per_second": result.samples_per_second,
        "peak_memory_mb": peak_memory_mb(device),
        "device": str(device),
        "dtype": dtype,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "architecture": model.architecture,
    }


def fit_toy(
    system: HarmonicChain | CurvedDoubleWell,
    mode: str,
    architecture: list[dict[str, Any]],
    settings: TrainingSettings,
    *,
    samples: int = 50000,
    validation_fraction: float = 0.1,
    init: str = "auto",
    dtype: str = "float64",
    device: str = "auto",
    seed: int = 0,
    eval_samples: int = 20000,
    checkpoint: Path | None = None,
) -> tuple[NeuralCanonicalTransformation, dict[str, Any]]:
    """Train on a toy system, by maximum likelihood from exact samples or variationally.

    Parameters
    ----------
    system : HarmonicChain or CurvedDoubleWell
        The toy system (exact sampler, energy, exact free energy; exact frequencies if harmonic).
    mode : {"ml", "variational"}
    init : {"auto", "data", "harmonic", "identity"}
        ``auto`` is ``data`` (normal modes of the samples) for maximum likelihood and
        ``harmonic`` (normal modes of the Hessian at q = 0) for variational training.

    Returns
    -------
    model, summary
        The trained model and the figures for ``summary.json`` (frequencies ascending,
        final loss, exact references, and for variational runs the free energy in kT).
    """
    if mode not in ("ml", "variational"):
        raise NeuralCTError(f"--mode must be ml or variational, got {mode!r}")
    if init not in ("auto", "data", "harmonic", "identity"):
        raise NeuralCTError(f"--init must be auto, data, harmonic or identity, got {init!r}")
    if init == "auto":
        init = "data" if mode == "ml" else "harmonic"
    if init == "data" and mode != "ml":
        raise NeuralCTError("--init data needs samples: use it with --mode ml")
    if not 0 <= validation_fraction < 1:
        raise NeuralCTError("--validation-fraction must be in [0, 1)")
    if mode == "ml":
        n_valid = int(round(validation_fraction * samples))
        check_enough_samples(samples - n_valid, None, system.dim, "samples", "raise --samples")
    torch_device = resolve_device(device)
    torch_dtype = DTYPES[dtype]
    torch.manual_seed(seed)
    model = NeuralCanonicalTransformation(
        system.dim,
        masses=torch.as_tensor(system.masses, dtype=torch_dtype),
        kT=system.kT,
        architecture=architecture,
        metadata={"system": system.describe(), "mode": mode},
    ).to(device=torch_device, dtype=torch_dtype)

    generator = torch.Generator(device=torch_device).manual_seed(seed)
    if mode == "ml":
        q, _ = system.sample(samples, seed=seed)
        q = torch.as_tensor(q, dtype=torch_dtype, device=torch_device)
        q_train, q_valid = q[n_valid:], (q[:n_valid] if n_valid else None)
        objective = MaximumLikelihood(q_train, q_valid)
        if init == "data":
            model.initialize(q_train, generator=generator)
    else:
        objective = VariationalFreeEnergy(system)
        if init == "harmonic":
            harmonic_start(model, system, seed=seed)
    result = train(model, objective, settings, seed=seed, checkpoint=checkpoint)

    learned = model.frequencies.detach().cpu().double().numpy()
    summary: dict[str, Any] = {
        "system": system.describe(),
        "mode": mode,
        "init": init,
        "frequencies": learned.tolist(),
        "final_loss": result.final_loss,
        "loss_unit": "nats per sample (reduced units)" if mode == "ml" else "kT",
        "exact_free_energy": system.free_energy(),
        **_run_figures(model, result, settings, torch_device, dtype),
    }
    if isinstance(system, HarmonicChain):
        # Only a harmonic system has exact frequencies to compare with.
        exact = system.frequencies()
        errors = np.abs(learned / exact - 1.0)
        summary.update(exact_frequencies=exact.tolist(), frequency_relative_errors=errors.tolist(), frequency_max_relative_error=float(errors.max()))
    if mode == "variational":
        summary.update(objective.estimate(model, n_samples=eval_samples, seed=seed + 1))
    model.metadata["summary"] = {key: summary[key] for key in ("final_loss", "frequencies")}
    return model, summary


def _lagged_figures(model: NeuralCanonicalTransformation, objective: LaggedLikelihood, lag_ps: float) -> dict[str, Any]:
    """What a time-lagged run reports besides the common figures."""
    return {
        "objective": "time-lagged likelihood: ln rho(x_t) + ln p_tau(T(x_t+tau) | T(x_t)), latent Langevin oscillators",
        "lagged_term": "configuration only (momenta resampled)" if objective.configuration_only else "phase space (recorded momenta)",
        "lag_ps": lag_ps,
        "vamp2_term": {"weight": objective.vamp_weight, "modes": objective.vamp_modes} if objective.vamp_weight else None,
        "lagged_pairs": {"train": len(objective.train_pairs[0]), "validation": 0 if objective.valid_pairs is None else len(objective.valid_pairs[0])},
        "mode_order": "relaxation time, longest first",
        "frictions_per_ps": (model.frictions / model.time_unit).detach().cpu().double().tolist(),
        "relaxation_times_ps": (model.relaxation_times * model.time_unit).detach().cpu().double().tolist(),
        "loss_unit": "nats per lagged pair (reduced units)",
    }


def check_enough_samples(n_train: int, n_valid: int | None, dim: int, what: str, advice: str) -> None:
    """Refuse, before any work, data too few for the split: the training set must exceed the dimension.

    With ``n_train <= dim`` the data covariance that starts the model (normal modes of the
    positions) is singular and the learned frequencies are meaningless.

    Parameters
    ----------
    n_train, n_valid : int
        Training and validation sizes after the split (``n_valid`` None: no validation set required).
    dim : int
        Configuration dimension n.
    """
    if n_train <= dim:
        raise NeuralCTError(f"only {n_train} training {what} for {dim} coordinates (need more than {dim}); {advice}")
    if n_valid is not None and n_valid < 1:
        raise NeuralCTError(f"no validation {what} are left after the split; {advice}")


def split_trajectories(traj_lengths: list[int], validation_trajectories: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Frame indices of training and held-out validation data, split by whole trajectories.

    With a single trajectory the last 20 % of its frames (a contiguous block, never
    shuffled frames) are held out instead.

    Returns
    -------
    train_index, valid_index : np.ndarray of int
    description : str
        How the split was made (for summary.json).
    """
    starts = np.concatenate([[0], np.cumsum(traj_lengths)[:-1]]).astype(int)
    if len(traj_lengths) == 1:
        n = traj_lengths[0]
        cut = int(round(0.8 * n))
        return np.arange(cut), np.arange(cut, n), "single trajectory: last 20% of frames held out as a contiguous block"
    if not 1 <= validation_trajectories < len(traj_lengths):
        raise NeuralCTError(
            f"--validation-trajectories must be between 1 and {len(traj_lengths) - 1} for {len(traj_lengths)} trajectories"
        )
    held = list(range(len(traj_lengths) - validation_trajectories, len(traj_lengths)))
    index = [np.arange(starts[k], starts[k] + traj_lengths[k]) for k in range(len(traj_lengths))]
    train_index = np.concatenate([index[k] for k in range(len(traj_lengths)) if k not in held])
    valid_index = np.concatenate([index[k] for k in held])
    return train_index, valid_index, f"trajectories {held} held out (of {len(traj_lengths)})"


def fit_trajectories(
    data,
    architecture: list[dict[str, Any]],
    settings: TrainingSettings,
    *,
    selection: str = "heavy",
    validation_trajectories: int = 1,
    momenta: str = "resample",
    lag_ps: float | None = None,
    vamp_weight: float = 0.0,
    dtype: str = "float32",
    device: str = "auto",
    seed: int = 0,
    checkpoint: Path | None = None,
) -> tuple[NeuralCanonicalTransformation, dict[str, Any]]:
    """Maximum-likelihood training on molecular trajectories, validated once per epoch.

    Positions are aligned and reduced to the 3N - 6 internal coordinates of
    :class:`~neuralct.data.RigidBodyFrame` (the six rigid-body directions are projected
    out, so the likelihood is bounded); these have unit mass, so momenta are
    Maxwell-Boltzmann ``N(0, kT)`` draws, fresh for every minibatch by default.

    Parameters
    ----------
    data : neuralct.data.PhaseSpaceData
        Loaded trajectories.
    momenta : {"resample", "recorded"}
        Fresh Maxwell-Boltzmann momenta every minibatch, or the recorded on-step ones.
    lag_ps : float, optional
        Train on pairs ``(x_t, x_t+lag)`` with the time-lagged objective of
        :mod:`neuralct.lagged` (latent Langevin dynamics, modes ranked by relaxation time):
        the phase-space transition density with recorded momenta, the configuration-only
        one with resampled momenta. None: maximum likelihood on single frames.
    vamp_weight : float
        With ``lag_ps``: weight of an added VAMP-2 term of the two slowest latent positions.

    Returns
    -------
    model, summary
    """
    from .molecular import molecule_metadata

    if momenta not in ("resample", "recorded"):
        raise NeuralCTError(f"--momenta must be resample or recorded, got {momenta!r}")
    if momenta == "recorded" and data.momenta_source != "recorded":
        raise NeuralCTError("--momenta recorded needs trajectories with on-step velocities (as `neuralct simulate` writes)")
    if vamp_weight and lag_ps is None:
        raise NeuralCTError("--vamp-weight needs --lag-ps (the VAMP-2 term scores pairs of frames a lag apart)")
    torch_device = resolve_device(device)
    torch_dtype = DTYPES[dtype]
    torch.manual_seed(seed)
    train_index, valid_index, split = split_trajectories(list(data.traj_lengths), validation_trajectories)
    check_enough_samples(len(train_index), len(valid_index), data.frame.dim, "frames", "give longer trajectories, a smaller --stride or fewer atoms (--selection)")
    steps_per_epoch = max(1, math.ceil(len(train_index) / settings.batch_size))
    settings = dataclasses.replace(settings, validate_every=steps_per_epoch)
    y = torch.as_tensor(data.internal_positions(), dtype=torch_dtype, device=torch_device)
    p = torch.as_tensor(data.internal_momenta(), dtype=torch_dtype, device=torch_device) if momenta == "recorded" else None
    model = NeuralCanonicalTransformation(
        y.shape[1],
        masses=torch.ones(y.shape[1], dtype=torch_dtype),
        kT=data.kT,
        architecture=architecture,
        time_unit=1.0,
        metadata={"molecule": molecule_metadata(data, selection), "mode": "ml"},
        latent_dynamics=lag_ps is not None,
    ).to(device=torch_device, dtype=torch_dtype)
    generator = torch.Generator(device=torch_device).manual_seed(seed)
    model.initialize(y[train_index], generator=generator)
    if lag_ps is None:
        objective = MaximumLikelihood(
            y[train_index], y[valid_index], None if p is None else p[train_index], None if p is None else p[valid_index]
        )
    else:
        lag_frames = lag_in_frames(lag_ps, data.timestep_ps)
        train_pairs, valid_pairs = split_lagged_pairs(list(data.traj_lengths), lag_frames, train_index, valid_index)
        objective = LaggedLikelihood(y, p, train_pairs, valid_pairs, lag=lag_frames * data.timestep_ps / model.time_unit, vamp_weight=vamp_weight)
        objective.initialize_frictions(model, seed=seed)
    result = train(model, objective, settings, seed=seed, checkpoint=checkpoint)
    summary: dict[str, Any] = {
        "mode": "ml",
        "trajectories": [str(path) for path in data.paths],
        "frames": int(data.n_frames),
        "selection": selection,
        "atoms_selected": int(len(data.atom_indices)),
        "dimension": int(y.shape[1]),
        "rigid_body": "aligned (mass-weighted Kabsch fit in float64); 6 rigid-body directions projected out: 3N-6 internal coordinates of unit mass",
        "max_fit_rmsd_nm": float(np.max(data.rmsd)),
        "momenta": "Maxwell-Boltzmann, fresh every minibatch" if p is None else "recorded on-step velocities",
        "temperature_K": float(data.temperature),
        "validation": split,
        "frequencies": model.frequencies.detach().cpu().double().tolist(),
        "frequency_unit": "rad/ps",
        "final_loss": result.final_loss,
        "loss_unit": "nats per frame (reduced units)",
        "steps_per_epoch": steps_per_epoch,
        "train_nll": result.history["train_loss"],
        "validation_nll": result.history["valid_loss"],
        "nll_recorded": "once per epoch (a pass's worth of minibatches over the training frames); train_nll is the mean over the epoch's minibatches",
        **_run_figures(model, result, settings, torch_device, dtype),
    }
    if lag_ps is not None:
        summary.update(_lagged_figures(model, objective, lag_ps))
    model.metadata["summary"] = {key: summary[key] for key in ("final_loss", "frequencies", "validation")}
    model.metadata["history"] = result.history
    paths = [str(Path(path).resolve()) for path in data.paths]
    bounds = np.cumsum([0] + list(data.traj_lengths))
    model.metadata["molecule"]["training_trajectories"] = [path for path, start in zip(paths, bounds[:-1]) if start in set(train_index.tolist())]
    model.metadata["molecule"]["validation_trajectories"] = [path for path, start in zip(paths, bounds[:-1]) if start in set(valid_index.tolist())]
    return model, summary
