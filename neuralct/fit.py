"""End-to-end fitting runs: build the model, train it, and collect the figures for summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .device import resolve_device
from .errors import NeuralCTError
from .model import NeuralCanonicalTransformation
from .toys import HarmonicChain
from .training import (
    MaximumLikelihood,
    TrainingSettings,
    VariationalFreeEnergy,
    harmonic_start,
    peak_memory_mb,
    train,
)

__all__ = ["architecture_from_options", "fit_toy", "DTYPES"]

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


def _relative_errors(learned: np.ndarray, exact: np.ndarray) -> np.ndarray:
    return np.abs(learned / exact - 1.0)


def fit_toy(
    system: HarmonicChain,
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
    system : HarmonicChain
        The toy system (exact sampler, energy, exact frequencies and free energy).
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
        n_valid = int(round(validation_fraction * samples))
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
    exact = system.frequencies()
    errors = _relative_errors(learned, exact)
    summary: dict[str, Any] = {
        "system": system.describe(),
        "mode": mode,
        "init": init,
        "frequencies": learned.tolist(),
        "exact_frequencies": exact.tolist(),
        "frequency_relative_errors": errors.tolist(),
        "frequency_max_relative_error": float(errors.max()),
        "final_loss": result.final_loss,
        "loss_unit": "nats per sample (reduced units)" if mode == "ml" else "kT",
        "exact_free_energy": system.free_energy(),
        "history": result.history,
        "steps": result.steps,
        "resumed_from_step": result.resumed_from_step,
        "training_seconds": result.wall_seconds,
        "samples_per_second": result.samples_per_second,
        "peak_memory_mb": peak_memory_mb(torch_device),
        "device": str(torch_device),
        "dtype": dtype,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if mode == "variational":
        summary.update(objective.estimate(model, n_samples=eval_samples, seed=seed + 1))
    model.metadata["summary"] = {key: summary[key] for key in ("final_loss", "frequencies")}
    return model, summary
