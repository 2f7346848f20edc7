"""End-to-end fitting runs: build the model, train it, and collect the figures for summary.json."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..data.loading import PhaseSpaceData
from ..data.pairs import LaggedPairs, RescaledTime
from ..errors import NeuralCTError
from ..io import sha256
from ..model.transformation import ModeRanking, NeuralCanonicalTransformation
from ..toys.hamiltonians import CurvedDoubleWell, HarmonicChain
from ..training.device import float32_matmul_precision, resolve_device, training_threads
from ..training.loop import TrainingResult, TrainingSettings, peak_memory_mb, train
from ..training.objectives import (
    VAMP_MODES,
    LaggedLikelihood,
    MaximumLikelihood,
    VariationalFreeEnergy,
    harmonic_start,
    stiffest_mode_noise,
    weighted_resample,
)

__all__ = [
    "architecture_from_options",
    "check_enough_samples",
    "check_frame_weights",
    "fit_frames",
    "fit_toy",
    "fit_trajectories",
    "prepare_trajectory_fit",
    "rank_by_autocorrelation",
    "run_trajectory_fit",
    "split_trajectories",
    "training_cv_kinetics",
    "TrajectoryFit",
    "training_memory_needed",
    "validation_interval",
    "DTYPES",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}

_LAYER_NAMES = ("linear", "linear-point", "point", "continuous")

#: Share of the training time validation may take.
VALIDATION_BUDGET = 0.05
#: CPU time of the validation NLL of one frame (no gradients, chunks of 1024) over that of one
#: training sample (batch 200, loss and backward), measured on B1 with one CPU thread: 0.22-0.25
#: since the couplings' backward pass is written by hand (0.27 with chunks of 4096; 0.09-0.20
#: before the hand-written backward pass).
VALIDATION_COST_PER_FRAME = 0.25


def validation_interval(batch_size: int, validation_frames: int, at_least: int) -> int:
    """Steps between validation passes: ``at_least``, or more so that validating ``validation_frames``
    frames costs at most :data:`VALIDATION_BUDGET` of the training time.

    A fixed number of steps, not a measured time: an interrupted run resumes to the same history.
    """
    return max(at_least, math.ceil(VALIDATION_COST_PER_FRAME * validation_frames / (VALIDATION_BUDGET * batch_size)))


def architecture_from_options(
    layers: str, couplings: int, hidden: int, depth: int, leapfrog_steps: int
) -> list[dict[str, Any]]:
    """Translate a comma-separated list of layer names (e.g. ``linear-point,point``) into layer specs."""
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
            raise NeuralCTError(
                f"`layers`: unknown layer {name!r}; use a comma-separated list of {', '.join(_LAYER_NAMES)}"
            )
    if not specs:
        raise NeuralCTError("`layers` is empty; name at least one layer")
    return specs


#: Copies of the network's parameters training keeps: the weights, their gradients, Adam's two
#: moments, the kept best state and the checkpoint's serialised copies.
_PARAMETER_COPIES = 8
#: Numbers a training step keeps per minibatch row per output of the network's linear layers (plus
#: four per coordinate): 9.6 measured for the default network on a 32-coordinate chain (29 kB per
#: row in float32, from the peak memory of `neuralct train` at batch sizes 256 to 65536), doubled
#: for other architectures.
_ACTIVATIONS_PER_UNIT = 16


def training_memory_needed(
    dim: int, architecture: list[dict[str, Any]], batch_size: int, dtype: str, toy_samples: int = 0
) -> dict[str, tuple[float, str]]:
    """Bytes training needs for its large parts, an upper estimate made before anything is built.

    The network's size follows from three tiny copies of it (hidden widths 1, 2 and 3): the
    parameter count of fully connected layers is quadratic in the width, the number of their
    outputs linear, so the three fix both exactly at any width.

    Parameters
    ----------
    dim : int
        Coordinates of the model.
    architecture : list of dict
        Layer specs (:func:`architecture_from_options`).
    batch_size : int
        Minibatch rows.
    dtype : {"float32", "float64"}
        Training precision.
    toy_samples : int
        Exact samples a toy draws (float64 positions and momenta), 0 for trajectories.

    Returns
    -------
    dict of str to (float, str)
        Each part's bytes and the arguments that scale it, for :func:`neuralct.workflows.memory.check_fits`.
    """

    def counts(width: int) -> tuple[int, int]:
        specs = [dict(spec, hidden=width) if "hidden" in spec else spec for spec in architecture]
        model = NeuralCanonicalTransformation(dim, masses=torch.ones(dim, dtype=torch.float64), architecture=specs)
        return sum(p.numel() for p in model.parameters()), sum(
            m.out_features for m in model.modules() if isinstance(m, nn.Linear)
        )

    (p1, u1), (p2, u2), (p3, _) = counts(1), counts(2), counts(3)
    width = max([spec["hidden"] for spec in architecture if "hidden" in spec], default=1)
    a = (p3 - 2 * p2 + p1) / 2
    b = p2 - p1 - 3 * a
    parameters = a * width**2 + b * width + (p1 - a - b)
    units = u1 + (u2 - u1) * (width - 1)
    itemsize = 8 if dtype == "float64" else 4
    needed = {
        "the network, its gradients and optimizer state": (
            _PARAMETER_COPIES * parameters * itemsize,
            "`hidden`, `depth` or `couplings`",
        ),
        "a minibatch's activations": (
            _ACTIVATIONS_PER_UNIT * batch_size * (units + 4 * dim) * itemsize,
            "`batch_size`",
        ),
    }
    if toy_samples:
        needed["the toy's exact samples"] = (4 * toy_samples * dim * 8, "`samples`")
    return needed


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
    matmul_precision: str = "highest",
    position_noise: float = 0.0,
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
    matmul_precision : {"highest", "high"}
        float32 matrix-product precision during training (``high``: TF32 on CUDA).
    position_noise : float
        Noise on the training samples (maximum likelihood only), a fraction of the stiffest
        mode's amplitude (see :func:`~neuralct.training.objectives.stiffest_mode_noise`).

    Returns
    -------
    model, summary
        The trained model and the figures for ``summary.json`` (frequencies in mode order,
        final loss, exact references, and for variational runs the free energy in kT).
    """
    if mode not in ("ml", "variational"):
        raise NeuralCTError(f"`mode` must be ml or variational, got {mode!r}")
    if init not in ("auto", "data", "harmonic", "identity"):
        raise NeuralCTError(f"`init` must be auto, data, harmonic or identity, got {init!r}")
    if init == "auto":
        init = "data" if mode == "ml" else "harmonic"
    if init == "data" and mode != "ml":
        raise NeuralCTError("`init` data needs samples: use it with `mode` ml")
    if not 0 <= validation_fraction < 1:
        raise NeuralCTError("`validation_fraction` must be in [0, 1)")
    if mode == "ml":
        n_valid = int(round(validation_fraction * samples))
        check_enough_samples(samples - n_valid, None, system.dim, "samples", "raise `samples`")
    if position_noise and mode != "ml":
        raise NeuralCTError("`position_noise` perturbs training samples: use it with `mode` ml")
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
        objective = MaximumLikelihood(
            q_train, q_valid, position_noise=stiffest_mode_noise(q_train, model.masses, position_noise)
        )
        if init == "data":
            model.initialize(q_train, generator=generator)
    else:
        objective = VariationalFreeEnergy(system)
        if init == "harmonic":
            harmonic_start(model, system, seed=seed)
    with float32_matmul_precision(matmul_precision), training_threads(model.dim, torch_device):
        result = train(model, objective, settings, seed=seed, checkpoint=checkpoint)

    learned = model.frequencies.detach().cpu().double().numpy()
    summary: dict[str, Any] = {
        "system": system.describe(),
        "mode": mode,
        "init": init,
        "position_noise": position_noise,
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
        summary.update(
            exact_frequencies=exact.tolist(),
            frequency_relative_errors=errors.tolist(),
            frequency_max_relative_error=float(errors.max()),
        )
    if mode == "variational":
        summary.update(objective.estimate(model, n_samples=eval_samples, seed=seed + 1))
    model.metadata["summary"] = {key: summary[key] for key in ("final_loss", "frequencies")}
    return model, summary


def _lagged_figures(
    model: NeuralCanonicalTransformation, objective: LaggedLikelihood, fit: TrajectoryFit
) -> dict[str, Any]:
    """What a time-lagged run reports besides the common figures."""
    lag_ps = fit.lagged.lag_ps
    return {
        "objective": "time-lagged likelihood: ln rho(x_t) + ln p_tau(T(x_t+tau) | T(x_t)), latent Langevin oscillators",
        "lagged_term": "configuration only (momenta resampled)"
        if objective.configuration_only
        else "phase space (recorded momenta)",
        "lag_ps": lag_ps,
        "vamp2_term": {
            "weight": objective.vamp_weight,
            "modes": objective.vamp_modes,
            "lags_ps": [pairs.lag_ps for pairs in fit.vamp_pairs] if fit.vamp_pairs else [lag_ps],
        }
        if objective.vamp_weight
        else None,
        "lagged_pairs": {
            "train": len(objective.train_pairs[0]),
            "validation": 0 if objective.valid_pairs is None else len(objective.valid_pairs[0]),
        },
        "time": "simulation time" if fit.rescaled_time is None else _rescaled_time_record(fit),
        "mode_order": "relaxation time, longest first",
        "frictions_per_ps": (model.frictions / model.time_unit).detach().cpu().double().tolist(),
        "relaxation_times_ps": (model.relaxation_times * model.time_unit).detach().cpu().double().tolist(),
        "loss_unit": "nats per lagged pair (reduced units)",
    }


def _rescaled_time_record(fit: TrajectoryFit) -> dict[str, Any]:
    """How the lags of ``fit`` were rescaled, and how evenly the weights of its training pairs spread."""
    weights = fit.lagged.train_weights
    return {
        "rescaled": "dt' = dt exp(w), w each frame's log weight (V - c(t))/kT: the lag is unbiased time, each pair "
        "weighted by the rescaled time it spans",
        "bias_from": fit.rescaled_time.source,
        "training_pairs_kish_fraction": float(weights.sum() ** 2 / (weights**2).sum() / len(weights)),
        "rescaled_ns_of_training_pairs": float(weights.sum() / 1000.0),
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
        raise NeuralCTError(f"only {n_train} training {what} for {dim} coordinates (need more than {dim})", advice)
    if n_valid is not None and n_valid < 1:
        raise NeuralCTError(f"no validation {what} are left after the split", advice)


def check_frame_weights(
    weights: np.ndarray, traj_lengths: list[int], validation_trajectories: int, dtype: str, source: str
) -> None:
    """Refuse, before any work, frame weights that leave the training or the validation frames without weight.

    Weighted maximum likelihood draws training frames in proportion to their weight and
    validates with the weighted mean over the held-out frames: both need weight in the
    training ``dtype`` (weights below 1e-45 of the largest are zero in float32).

    Parameters
    ----------
    weights : np.ndarray, shape=(n_frames,)
        Normalised frame weights.
    traj_lengths, validation_trajectories
        As in :func:`split_trajectories`.
    dtype : {"float32", "float64"}
        The training precision.
    source : str
        Where the weights come from (e.g. the file), for the error.
    """
    train_index, valid_index, split = split_trajectories(traj_lengths, validation_trajectories)
    needs = {
        "training frames": "no minibatch can be drawn from them",
        "held-out validation frames": "their weighted mean, the validation loss, is undefined",
    }
    for (frames, why), index in zip(needs.items(), (train_index, valid_index)):
        if bool(torch.as_tensor(weights[index], dtype=DTYPES[dtype]).sum() > 0):
            continue
        precision = (
            f" in {dtype} (`dtype` float64 keeps weights down to 1e-308 of the largest)"
            if weights[index].sum() > 0
            else ""
        )
        raise NeuralCTError(
            f"{source}: the {frames} carry no weight{precision} ({split}), so {why}; give them weight, or hold out "
            "trajectories such that training and validation frames both have some (`validation_trajectories` holds "
            "out the last ones)"
        )


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
            f"`validation_trajectories` must be between 1 and {len(traj_lengths) - 1} for {len(traj_lengths)} "
            "trajectories"
        )
    held = list(range(len(traj_lengths) - validation_trajectories, len(traj_lengths)))
    index = [np.arange(starts[k], starts[k] + traj_lengths[k]) for k in range(len(traj_lengths))]
    train_index = np.concatenate([index[k] for k in range(len(traj_lengths)) if k not in held])
    valid_index = np.concatenate([index[k] for k in held])
    return train_index, valid_index, f"trajectories {held} held out (of {len(traj_lengths)})"


def fit_frames(
    y: np.ndarray,
    kT: float,
    architecture: list[dict[str, Any]],
    settings: TrainingSettings,
    *,
    train_index: np.ndarray,
    valid_index: np.ndarray | None = None,
    p: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    pairs: LaggedPairs | None = None,
    vamp_weight: float = 0.0,
    vamp_modes: int = VAMP_MODES,
    vamp_pairs: Sequence[LaggedPairs] | None = None,
    dtype: str = "float32",
    device: str = "auto",
    seed: int = 0,
    checkpoint: Path | None = None,
    metadata: dict[str, Any] | None = None,
    matmul_precision: str = "highest",
    position_noise: float = 0.0,
) -> tuple[NeuralCanonicalTransformation, TrainingResult, torch.device, Any]:
    """Train on frames of unit-mass coordinates (e.g. internal coordinates).

    The molecule-independent core of :func:`fit_trajectories`, usable on prepared arrays alone:
    maximum likelihood on single frames (optionally weighted), or the time-lagged objective of
    :class:`neuralct.training.objectives.LaggedLikelihood` on pairs of frames.

    Parameters
    ----------
    y : np.ndarray, shape=(n_frames, dim)
        Positions (unit masses).
    kT : float
        Thermal energy in the energy unit of ``y`` (kJ/mol for internal coordinates in sqrt(amu) nm).
    train_index, valid_index : np.ndarray of int
        Frames that train and that validate (``valid_index`` None or empty: no validation).
    p : np.ndarray, shape=(n_frames, dim), optional
        Recorded momenta; None draws Maxwell-Boltzmann momenta fresh for every minibatch.
    weights : np.ndarray, shape=(n_frames,), optional
        Frame weights of biased data (weighted maximum likelihood, weighted start).
    pairs : LaggedPairs, optional
        Training and validation pairs of frames of ``y`` a lag apart
        (:func:`neuralct.data.pairs.split_lagged_pairs`): train with the time-lagged objective
        instead of maximum likelihood on single frames.
    vamp_weight : float
        With ``pairs``: weight of an added VAMP-2 term of the ``vamp_modes`` slowest latent positions.
    vamp_modes : int
        Slowest latent positions in the VAMP-2 term.
    vamp_pairs : sequence of LaggedPairs, optional
        Pairs of the VAMP-2 term, one entry per lag (averaged); None: ``pairs``.
    matmul_precision : {"highest", "high"}
        float32 matrix-product precision during training (``high``: TF32 on CUDA).
    position_noise : float
        Noise on the training positions, as a fraction of the stiffest mode's thermal
        amplitude (see :func:`~neuralct.training.objectives.stiffest_mode_noise`); 0 for none.

    Returns
    -------
    model, result, device, objective
        The trained model, what the run measured, the torch device it ran on and the objective.
    """
    if weights is not None and pairs is not None:
        raise NeuralCTError("frame weights (`weights`) go with single-frame maximum likelihood only; drop `lag_ps`")
    if position_noise and pairs is not None:
        raise NeuralCTError("`position_noise` perturbs single frames: drop it with `lag_ps`")
    torch_device = resolve_device(device)
    torch_dtype = DTYPES[dtype]
    torch.manual_seed(seed)

    def tensor(values):
        return None if values is None else torch.as_tensor(values, dtype=torch_dtype, device=torch_device)

    def rows(values, index):
        return (
            None
            if values is None or index is None or len(index) == 0
            else values[torch.as_tensor(index, device=torch_device)]
        )

    y_all, p_all, w_all = tensor(y), tensor(p), tensor(weights)
    y_train, y_valid = rows(y_all, train_index), rows(y_all, valid_index)
    if y_valid is not None:
        settings = dataclasses.replace(
            settings, validate_every=validation_interval(settings.batch_size, len(y_valid), settings.validate_every)
        )
    dim = y_all.shape[1]
    model = NeuralCanonicalTransformation(
        dim,
        masses=torch.ones(dim, dtype=torch_dtype),
        kT=kT,
        architecture=architecture,
        time_unit=1.0,
        metadata=metadata,
        latent_dynamics=pairs is not None,
    ).to(device=torch_device, dtype=torch_dtype)
    generator = torch.Generator(device=torch_device).manual_seed(seed)
    # Pairs in rescaled time weigh each frame by the time it lasts unbiased: the start sees the frames so weighted,
    # in float64 as the objective draws its pairs (exp((V - c)/kT) passes float32's range beyond 88 kT).
    if pairs is None:
        start_weights = rows(w_all, train_index)
    else:
        frame_weights = pairs.start_weights(train_index)
        start_weights = (
            None if frame_weights is None else torch.as_tensor(frame_weights, dtype=torch.float64, device=torch_device)
        )
    model.initialize(weighted_resample(y_train, start_weights, generator), generator=generator)
    if pairs is None:
        noise = stiffest_mode_noise(y_train, model.masses, position_noise)
        objective = MaximumLikelihood(
            y_train,
            y_valid,
            rows(p_all, train_index),
            rows(p_all, valid_index),
            rows(w_all, train_index),
            rows(w_all, valid_index),
            position_noise=noise,
        )
    else:
        objective = LaggedLikelihood(
            y_all, p_all, pairs, vamp_weight=vamp_weight, vamp_modes=vamp_modes, vamp_pairs=vamp_pairs
        )
        objective.initialize_frictions(model, seed=seed)
    with float32_matmul_precision(matmul_precision), training_threads(model.dim, torch_device):
        result = train(model, objective, settings, seed=seed, checkpoint=checkpoint)
    return model, result, torch_device, objective


@dataclass(frozen=True)
class TrajectoryFit:
    """A checked fit on trajectories: the frames that train and validate, and the pairs of frames its lags make.

    Made by :func:`prepare_trajectory_fit`, run by :func:`run_trajectory_fit`.

    Attributes
    ----------
    data : neuralct.data.PhaseSpaceData
        The trajectories.
    selection : str
        The atom selection of ``data`` as the user gave it (recorded in the model).
    momenta : {"resample", "recorded"}
        Fresh Maxwell-Boltzmann momenta every minibatch, or the recorded on-step ones.
    train_index, valid_index : np.ndarray of int
        The training and the held-out validation frames (:func:`split_trajectories`).
    split : str
        How they were split (for summary.json).
    lagged : LaggedPairs or None
        The pairs of the time-lagged objective; None: maximum likelihood on single frames.
    vamp_weight : float
        Weight of the VAMP-2 term of the time-lagged objective.
    vamp_modes : int
        Slowest latent positions in the VAMP-2 term.
    vamp_pairs : tuple of LaggedPairs or None
        The pairs of the VAMP-2 term, one entry per lag, the shortest first; None: ``lagged``.
    rank_pairs : LaggedPairs or None
        The pairs whose autocorrelation ranks the trained model's modes (:func:`rank_by_autocorrelation`);
        None: the model ranks them itself.
    weights : np.ndarray, shape=(n_frames,), or None
        Frame weights of biased data.
    dtype : {"float32", "float64"}
        Training precision.
    rescaled_time : RescaledTime or None
        The bias that makes the lags rescaled time; None: the lags are simulation time.
    """

    data: PhaseSpaceData
    selection: str
    momenta: str
    train_index: np.ndarray
    valid_index: np.ndarray
    split: str
    lagged: LaggedPairs | None
    vamp_weight: float
    vamp_modes: int
    vamp_pairs: tuple[LaggedPairs, ...] | None
    rank_pairs: LaggedPairs | None
    weights: np.ndarray | None
    dtype: str
    rescaled_time: RescaledTime | None = None


def fit_trajectories(
    data: PhaseSpaceData,
    architecture: list[dict[str, Any]],
    settings: TrainingSettings,
    *,
    selection: str = "heavy",
    validation_trajectories: int = 1,
    momenta: str = "resample",
    lag_ps: float | None = None,
    vamp_weight: float = 0.0,
    vamp_modes: int = VAMP_MODES,
    vamp_lags_ps: list[float] | None = None,
    dtype: str = "float32",
    device: str = "auto",
    seed: int = 0,
    checkpoint: Path | None = None,
    weights: np.ndarray | None = None,
    matmul_precision: str = "highest",
    position_noise: float = 0.0,
    rank_lag_ps: float | None = None,
    weights_source: str = "the frame weights",
    rescaled_time: RescaledTime | None = None,
) -> tuple[NeuralCanonicalTransformation, dict[str, Any]]:
    """Maximum-likelihood training on molecular trajectories, validated on held-out ones.

    Positions are aligned and reduced to the 3N - 6 internal coordinates of
    :class:`~neuralct.data.RigidBodyFrame` (the six rigid-body directions are projected
    out, so the likelihood is bounded); these have unit mass, so momenta are
    Maxwell-Boltzmann ``N(0, kT)`` draws, fresh for every minibatch by default.
    :func:`prepare_trajectory_fit` then :func:`run_trajectory_fit`: a caller that must refuse
    bad options before any work (the command line) calls the two itself.

    Parameters
    ----------
    data : neuralct.data.PhaseSpaceData
        Loaded trajectories.
    architecture, settings
        As in :func:`run_trajectory_fit`.

    The other arguments are those of :func:`prepare_trajectory_fit` (what to fit) and of
    :func:`run_trajectory_fit` (how to run it).

    Returns
    -------
    model, summary
    """
    fit = prepare_trajectory_fit(
        data,
        selection=selection,
        validation_trajectories=validation_trajectories,
        momenta=momenta,
        lag_ps=lag_ps,
        vamp_weight=vamp_weight,
        vamp_modes=vamp_modes,
        vamp_lags_ps=vamp_lags_ps,
        rank_lag_ps=rank_lag_ps,
        weights=weights,
        weights_source=weights_source,
        dtype=dtype,
        rescaled_time=rescaled_time,
    )
    return run_trajectory_fit(
        fit,
        architecture,
        settings,
        device=device,
        seed=seed,
        checkpoint=checkpoint,
        matmul_precision=matmul_precision,
        position_noise=position_noise,
    )


def prepare_trajectory_fit(
    data: PhaseSpaceData,
    *,
    selection: str = "heavy",
    validation_trajectories: int = 1,
    momenta: str = "resample",
    lag_ps: float | None = None,
    vamp_weight: float = 0.0,
    vamp_modes: int = VAMP_MODES,
    vamp_lags_ps: Sequence[float] | None = None,
    rank_lag_ps: float | None = None,
    weights: np.ndarray | None = None,
    weights_source: str = "the frame weights",
    dtype: str = "float32",
    rescaled_time: RescaledTime | None = None,
) -> TrajectoryFit:
    """Check the options of a fit on trajectories and split the frames and pairs, before any work.

    Every lag is a whole number of frames (:func:`neuralct.data.pairs.lag_in_frames`). Whether
    enough frames are left to train is checked when the fit runs (:func:`run_trajectory_fit`).

    Parameters
    ----------
    data : neuralct.data.PhaseSpaceData
        Loaded trajectories.
    selection : str
        The atom selection of ``data`` as the user gave it (recorded in the model).
    validation_trajectories : int
        The last trajectories, held out for validation (:func:`split_trajectories`).
    momenta : {"resample", "recorded"}
        Fresh Maxwell-Boltzmann momenta every minibatch, or the recorded on-step ones.
    lag_ps : float, optional
        Train on pairs ``(x_t, x_t+lag_ps)`` with the time-lagged objective of
        :class:`neuralct.training.objectives.LaggedLikelihood` (latent Langevin dynamics, modes
        ranked by relaxation time): the phase-space transition density with recorded momenta,
        the configuration-only one with resampled momenta. None: maximum likelihood on single frames.
    vamp_weight : float
        With ``lag_ps``: weight of an added VAMP-2 term of the ``vamp_modes`` slowest latent positions.
    vamp_modes : int
        Slowest latent positions in the VAMP-2 term (at least 1).
    vamp_lags_ps : sequence of float, optional
        With ``vamp_weight``: the lags of the VAMP-2 term, whose scores are averaged. None: ``lag_ps`` alone.
    rank_lag_ps : float, optional
        Rank the trained model's modes by their autocorrelation at this lag on the training
        trajectories (:func:`rank_by_autocorrelation`) instead of by frequency; not with
        ``lag_ps``, which ranks by relaxation time already.
    weights : np.ndarray, shape=(n_frames,), optional
        Frame weights of biased data (weighted maximum likelihood, weighted start).
    weights_source : str
        Where ``weights`` come from (e.g. the file), for errors.
    dtype : {"float32", "float64"}
        Training precision.
    rescaled_time : RescaledTime, optional
        The bias of the frames' run: every lag is then rescaled time, ``dt' = dt exp((V - c(t))/kT)``,
        and the pairs are weighted by the rescaled time they span
        (:func:`neuralct.data.pairs.rescaled_lagged_pairs`). Needs ``lag_ps``.

    Returns
    -------
    TrajectoryFit

    Raises
    ------
    NeuralCTError
        For options that do not go together, a lag that is no whole number of frames or leaves
        too few pairs, or weights that leave the training or the validation frames without any.
    """
    _check_objective_options(data, momenta, lag_ps, vamp_weight, vamp_modes, vamp_lags_ps, rank_lag_ps)
    train_index, valid_index, split = split_trajectories(list(data.traj_lengths), validation_trajectories)
    if weights is not None:
        check_frame_weights(weights, list(data.traj_lengths), validation_trajectories, dtype, weights_source)

    if rescaled_time is not None:
        if lag_ps is None:
            raise NeuralCTError("a lag in rescaled time needs `lag_ps` (pairs of frames that far apart)")
        if weights is not None or rank_lag_ps is not None:
            raise NeuralCTError("rescaled time weights the lagged pairs: drop the frame weights and `rank_lag_ps`")

    def pairs(lag_ps: float | None, name: str) -> LaggedPairs | None:
        if lag_ps is None:
            return None
        log_rates = None if rescaled_time is None else rescaled_time.log_rates
        return data.split_lagged_pairs(lag_ps, train_index, valid_index, name, log_rates)

    rank_pairs = pairs(rank_lag_ps, "`rank_lag_ps`")
    if rank_pairs is not None and len(rank_pairs.train[0]) < 2:
        raise NeuralCTError(
            f"`rank_lag_ps` {rank_lag_ps} leaves fewer than 2 pairs of training frames that far apart; "
            "use a shorter lag or longer trajectories"
        )
    return TrajectoryFit(
        data=data,
        selection=selection,
        momenta=momenta,
        train_index=train_index,
        valid_index=valid_index,
        split=split,
        lagged=pairs(lag_ps, "`lag_ps`"),
        vamp_weight=vamp_weight,
        vamp_modes=vamp_modes,
        vamp_pairs=tuple(pairs(vamp_lag_ps, "`vamp_lags_ps`") for vamp_lag_ps in sorted(set(vamp_lags_ps)))
        if vamp_lags_ps
        else None,
        rank_pairs=rank_pairs,
        weights=weights,
        dtype=dtype,
        rescaled_time=rescaled_time,
    )


def _check_objective_options(
    data: PhaseSpaceData,
    momenta: str,
    lag_ps: float | None,
    vamp_weight: float,
    vamp_modes: int,
    vamp_lags_ps: Sequence[float] | None,
    rank_lag_ps: float | None,
) -> None:
    """Refuse momenta the trajectories do not have, and lag options that do not go together."""
    if momenta not in ("resample", "recorded"):
        raise NeuralCTError(f"`momenta` must be resample or recorded, got {momenta!r}")
    if momenta == "recorded" and data.momenta_source != "recorded":
        why = f" ({data.momenta_note})" if data.momenta_note else ""
        raise NeuralCTError(
            f"`momenta` recorded needs trajectories with velocities (as `neuralct simulate` writes){why}"
        )
    if vamp_weight and lag_ps is None:
        raise NeuralCTError("`vamp_weight` needs `lag_ps` (the VAMP-2 term scores pairs of frames a lag apart)")
    if vamp_lags_ps and not vamp_weight:
        raise NeuralCTError("`vamp_lags_ps` needs `vamp_weight` (the lags of the VAMP-2 term)")
    if not vamp_modes >= 1:
        raise NeuralCTError(f"`vamp_modes` must be at least 1, got {vamp_modes}")
    if vamp_modes != VAMP_MODES and not vamp_weight:
        raise NeuralCTError("`vamp_modes` needs `vamp_weight` (the modes of the VAMP-2 term)")
    if vamp_weight and vamp_modes > data.frame.dim:
        raise NeuralCTError(
            f"`vamp_modes` {vamp_modes} is more than the {data.frame.dim} latent positions of the selection"
        )
    if rank_lag_ps is not None and lag_ps is not None:
        raise NeuralCTError(
            "`rank_lag_ps` ranks the modes of a maximum-likelihood model; with `lag_ps` they are ranked by "
            "relaxation time already: drop one"
        )


def run_trajectory_fit(
    fit: TrajectoryFit,
    architecture: list[dict[str, Any]],
    settings: TrainingSettings,
    *,
    device: str = "auto",
    seed: int = 0,
    checkpoint: Path | None = None,
    matmul_precision: str = "highest",
    position_noise: float = 0.0,
) -> tuple[NeuralCanonicalTransformation, dict[str, Any]]:
    """Train the model a :class:`TrajectoryFit` describes, rank its modes if asked, and collect its summary.

    Refuses first a training set not larger than the dimension (:func:`check_enough_samples`).

    Parameters
    ----------
    fit : TrajectoryFit
        From :func:`prepare_trajectory_fit`.
    architecture : list of dict
        Layer specs (:func:`architecture_from_options`).
    settings : TrainingSettings
        Steps, batch size, learning rate, checkpoints.
    device, seed, checkpoint, matmul_precision, position_noise
        As in :func:`fit_frames`.

    Returns
    -------
    model, summary
        The trained model (its metadata recording the molecule, the training and validation
        trajectories, the CV ranges and the training history) and the figures for summary.json.
    """
    from ..model.molecular import molecule_metadata

    data = fit.data
    check_enough_samples(
        len(fit.train_index),
        len(fit.valid_index),
        data.frame.dim,
        "frames",
        "give longer trajectories, a smaller `stride` or fewer atoms (`selection`)",
    )
    y = data.internal_positions()
    p = data.internal_momenta() if fit.momenta == "recorded" else None
    model, result, torch_device, objective = fit_frames(
        y,
        data.kT,
        architecture,
        settings,
        train_index=fit.train_index,
        valid_index=fit.valid_index,
        p=p,
        weights=fit.weights,
        pairs=fit.lagged,
        vamp_weight=fit.vamp_weight,
        vamp_modes=fit.vamp_modes,
        vamp_pairs=fit.vamp_pairs,
        dtype=fit.dtype,
        device=device,
        seed=seed,
        checkpoint=checkpoint,
        metadata={"molecule": molecule_metadata(data, fit.selection), "mode": "ml"},
        matmul_precision=matmul_precision,
        position_noise=position_noise,
    )
    if fit.rank_pairs is not None:
        model.mode_ranking = rank_by_autocorrelation(model, y, fit.rank_pairs, fit.train_index)
    summary = _trajectory_summary(fit, model, result, objective, settings, torch_device, position_noise)
    summary["cv_kinetics"] = training_cv_kinetics(model, y, fit)
    _record_training(model, fit, y, result.history, summary)
    return model, summary


def _trajectory_summary(
    fit: TrajectoryFit,
    model: NeuralCanonicalTransformation,
    result: TrainingResult,
    objective: Any,
    settings: TrainingSettings,
    device: torch.device,
    position_noise: float,
) -> dict[str, Any]:
    """The figures of a trained fit on trajectories for summary.json."""
    data = fit.data
    summary: dict[str, Any] = {
        "mode": "ml",
        "trajectories": [str(path) for path in data.paths],
        "frames": int(data.n_frames),
        "selection": fit.selection,
        "atoms_selected": int(len(data.atom_indices)),
        "dimension": int(data.frame.dim),
        "rigid_body": "aligned (mass-weighted Kabsch fit in float64); 6 rigid-body directions projected out: "
        "3N-6 internal coordinates of unit mass",
        "max_fit_rmsd_nm": float(np.max(data.rmsd)),
        "momenta": _momenta_text(fit),
        "position_noise": position_noise,
        "temperature_K": float(data.temperature),
        "validation": fit.split,
        "frequencies": model.frequencies.detach().cpu().double().tolist(),
        "frequency_unit": "rad/ps",
        "final_loss": result.final_loss,
        "loss_unit": "nats per frame (reduced units)",
        "steps_per_epoch": max(1, math.ceil(len(fit.train_index) / settings.batch_size)),
        "train_nll": result.history["train_loss"],
        "validation_nll": result.history["valid_loss"],
        "nll_recorded": (
            f"at the steps of history.step: every {settings.validate_every} steps or more, so that validation takes "
            f"at most {VALIDATION_BUDGET:.0%} of the training time; train_nll is the mean over the minibatches since "
            "the previous record"
        ),
        **_run_figures(model, result, settings, device, fit.dtype),
    }
    if fit.lagged is not None:
        summary.update(_lagged_figures(model, objective, fit))
    if model.mode_ranking is not None:
        summary["mode_ranking"] = model.mode_ranking.as_dict()
    return summary


def _momenta_text(fit: TrajectoryFit) -> str:
    """What momenta trained, for summary.json."""
    if fit.momenta != "recorded":
        return "Maxwell-Boltzmann, fresh every minibatch"
    if fit.data.velocities_on_step:
        return "recorded on-step velocities"
    return f"recorded velocities ({fit.data.momenta_note})"


def _record_training(
    model: NeuralCanonicalTransformation,
    fit: TrajectoryFit,
    y: np.ndarray,
    history: dict[str, list],
    summary: dict[str, Any],
) -> None:
    """Store in the model's metadata what analysis and export read of its training.

    The summary's key figures, the range and the kinetics of every CV on the training frames, the steepness of the
    slowest on them (:func:`~neuralct.export.cv.cv_steepness`, also put in ``summary``), the RMSD of the
    training frames to the reference (what :mod:`neuralct.analysis.training_match` compares
    new frames with), the training history, which trajectories trained and validated it, the
    bond constraints each training trajectory was simulated with where ``neuralct simulate`` recorded them,
    and each backbone basin's population over the frames (:func:`training_basins`).
    """
    from ..analysis.training_match import marked_frames
    from ..export.cv import STEEPNESS_CVS, cv_steepness
    from ..model.molecular import internal_coordinates, latent_ranges, solvent_kind
    from .model_for_sampling import recorded_constraints, recorded_system_settings

    data, train_index = fit.data, fit.train_index
    model.metadata["summary"] = {key: summary[key] for key in ("final_loss", "frequencies", "validation")}
    model.metadata["cv_ranges"] = latent_ranges(model, y[train_index])
    spans = [cv["p99"] - cv["p01"] for cv in model.metadata["cv_ranges"][:STEEPNESS_CVS]]
    # Layers that mix momenta in give CVs that are no functions of the positions: nothing to bias, no steepness.
    model.metadata["cv_steepness"] = summary["cv_steepness_spans_per_nm"] = (
        cv_steepness(model, data.positions[train_index], np.array(spans)) if model.flow.acts_on_configuration else None
    )
    model.metadata["cv_kinetics"] = summary["cv_kinetics"]
    model.metadata["training_rmsd_nm"] = {
        "median": float(np.median(data.rmsd[train_index])),
        "max": float(np.max(data.rmsd[train_index])),
    }
    model.metadata["history"] = history
    paths = [str(Path(path).resolve()) for path in data.paths]
    starts = np.cumsum([0] + list(data.traj_lengths))[:-1]
    for role, index in (("training_trajectories", train_index), ("validation_trajectories", fit.valid_index)):
        frames = set(index.tolist())
        model.metadata["molecule"][role] = [path for path, start in zip(paths, starts) if start in frames]
    # By content too, so that `analyze` knows these frames under another name (a copy, a moved folder),
    # and by some of their frames (a rerun with the same seed that stopped earlier, a copy in another format).
    model.metadata["molecule"]["trajectory_sha256"] = {path: sha256(path) for path in paths}
    own_atoms = np.arange(data.positions.shape[1])
    model.metadata["molecule"]["frame_marks"] = {
        path: torch.as_tensor(
            internal_coordinates(
                model, data.positions[start : start + length][marked_frames(length, model.dim, len(paths))], own_atoms
            ),
            dtype=torch.float32,
        )
        for path, start, length in zip(paths, starts, data.traj_lengths)
    }
    # What `neuralct sample` checks, kept in the model so that it survives the files moving (None: not recorded).
    trained_paths = model.metadata["molecule"]["training_trajectories"]
    model.metadata["molecule"]["training_constraints"] = {path: recorded_constraints(path)[0] for path in trained_paths}
    model.metadata["molecule"]["training_basins"] = training_basins(fit)
    # The kind of solvent of the frames, where every training trajectory's simulate run records it (bias, sample check).
    recorded = [recorded_system_settings(path)[0] or {} for path in trained_paths]
    kinds = [solvent_kind(settings.get("solvent")) for settings in recorded]
    model.metadata["molecule"]["training_solvent"] = (
        kinds[0] if kinds and None not in kinds and len(set(kinds)) == 1 else None
    )
    # And its force field's files, where every run names the same (`sample` says when it samples another).
    fields = [settings.get("forcefield") for settings in recorded]
    model.metadata["molecule"]["training_forcefield"] = (
        fields[0] if fields and isinstance(fields[0], list) and all(field == fields[0] for field in fields) else None
    )


def training_basins(fit: TrajectoryFit) -> dict[str, Any] | None:
    """Each backbone basin's population over a fit's frames, training and validation, for ``neuralct sample`` to check.

    Unbiased MD of the density the model's chains sample gives populations to compare theirs with
    (:func:`~neuralct.sampling.diagnostics.mark_against_training_data`). None where the frames are
    not that: weighted or rescaled (biased) frames, or a trajectory that records biased frames or lies
    beside a COLVAR (a ``neuralct bias`` run, learned from in simulation time). A molecule without a
    backbone has no basins.

    Returns
    -------
    dict or None
        ``basins``: per basin of :func:`~neuralct.sampling.targets.basin_indicators`, its
        ``fraction``, ``standard_error`` and ``stays``
        (:func:`~neuralct.sampling.diagnostics.trajectory_basin_fractions`); ``note``.
    """
    from ..sampling.diagnostics import trajectory_basin_fractions
    from ..sampling.targets import basin_indicators

    data = fit.data
    if fit.weights is not None or fit.rescaled_time is not None:
        return None
    if data.biased or any((Path(path).parent / "COLVAR").is_file() for path in data.paths):
        return None
    return {
        "basins": trajectory_basin_fractions(
            basin_indicators(data.selection_topology, data.positions), list(data.traj_lengths)
        ),
        "note": f"every frame of the {len(data.traj_lengths)} training and validation trajectories, taken as unbiased "
        "MD at the model's temperature; the standard error is the larger of the stays' and the trajectories' spread",
    }


def training_cv_kinetics(model: NeuralCanonicalTransformation, y: np.ndarray, fit: TrajectoryFit) -> dict[str, Any]:
    """Every CV's autocorrelation and implied timescales on the training frames, and whether it oscillates.

    At the training lag (``lag_ps``, else ``rank_lag_ps``, else the lag ``neuralct analyze``
    takes by default: :func:`neuralct.workflows.analyze.default_lag_frames`), half of it and
    twice it (:func:`neuralct.analysis.kinetics.cv_kinetics`).

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        Trained (and ranked).
    y : np.ndarray, shape=(n_frames, dim)
        Internal coordinates of all frames, trajectories concatenated in time order.
    fit : TrajectoryFit
        The fit that trained ``model``.

    Returns
    -------
    dict
        :func:`~neuralct.analysis.kinetics.cv_kinetics` of every CV, with ``lag_choice``.
    """
    from ..analysis.kinetics import cv_kinetics
    from ..model.molecular import project_internal
    from .analyze import DEFAULT_LAG_FRAMES, default_lag_frames

    series = training_series(project_internal(model, y), fit.data.traj_lengths, fit.train_index)
    given = fit.lagged or fit.rank_pairs
    if given is not None and fit.rescaled_time is None:
        lag_frames = given.lag_frames
        choice = f"--{'lag-ps' if fit.lagged else 'rank-lag-ps'} {given.lag_ps:g}"
    else:
        lag_frames = default_lag_frames([(k, 0, len(values)) for k, values in enumerate(series)])
        choice = f"default: {DEFAULT_LAG_FRAMES} frames, at most a tenth of the shortest training trajectory"
        if fit.rescaled_time is not None:
            choice += " (the training lag is rescaled time, no whole number of frames)"
    return {**cv_kinetics(series, lag_frames, fit.data.timestep_ps), "lag_choice": choice}


def training_series(values: np.ndarray, traj_lengths: Sequence[int], train_index: np.ndarray) -> list[np.ndarray]:
    """The rows of ``values`` (one per frame, trajectories concatenated) of the training frames, one array per
    trajectory (a trajectory's training frames are consecutive: :func:`split_trajectories`)."""
    bounds = np.cumsum([0, *traj_lengths])
    training = np.zeros(bounds[-1], dtype=bool)
    training[train_index] = True
    return [values[a:b][training[a:b]] for a, b in zip(bounds[:-1], bounds[1:]) if training[a:b].any()]


def rank_by_autocorrelation(
    model: NeuralCanonicalTransformation, y: np.ndarray, pairs: LaggedPairs, train_index: np.ndarray
) -> ModeRanking:
    """Order the latent modes of a trained model by their autocorrelation at a lag, most autocorrelated first.

    A kinetic ranking for a maximum-likelihood model, whose own order (by frequency) says
    how soft a mode is, not how slowly it relaxes. On trajectories biased along some CVs the
    bias has sped up the motions it acts on, so the most autocorrelated mode is the slowest
    motion left: the CV to bias next.

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        Trained, with a flow of point transformations, ranked by frequency.
    y : np.ndarray, shape=(n_frames, dim)
        Internal coordinates of all frames, trajectories concatenated in time order.
    pairs : LaggedPairs
        Pairs of frames of ``y`` the lag apart: only those of two training frames
        (``pairs.train``) count.
    train_index : np.ndarray
        The training frames (their mean and variance normalise the autocorrelation).

    Returns
    -------
    ModeRanking
        The flow's mode indices, most autocorrelated first, with their autocorrelations at
        ``pairs.lag_ps``; the train workflow sets it as ``model.mode_ranking``.
    """
    from ..model.molecular import project_internal

    first, second = pairs.train
    current = model.mode_order().cpu().numpy()
    Q = project_internal(model, y)
    centred = Q - Q[train_index].mean(0)
    autocorrelation = (centred[first] * centred[second]).mean(0) / centred[train_index].var(0)
    ranked = np.argsort(-autocorrelation, kind="stable")
    return ModeRanking(
        by="autocorrelation",
        lag_ps=float(pairs.lag_ps),
        order=tuple(int(i) for i in current[ranked]),
        autocorrelation=tuple(float(a) for a in autocorrelation[ranked]),
    )
