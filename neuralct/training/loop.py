"""The training loop: settings, checkpoints that resume exactly, divergence checks, and the result."""

from __future__ import annotations

import math
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import NeuralCTError
from ..io import DamagedFile, atomic_torch_save, torch_load_verified
from ..model.transformation import NeuralCanonicalTransformation
from . import distributed
from .objectives import Objective

__all__ = ["CHECKPOINT_FORMAT", "TrainingDiverged", "TrainingSettings", "TrainingResult", "peak_memory_mb", "train"]


CHECKPOINT_FORMAT = "neuralct.checkpoint"


class TrainingDiverged(NeuralCTError):
    """The loss or its gradient stopped being finite."""


@dataclass
class TrainingSettings:
    """Optimisation settings shared by both objectives.

    The learning rate warms up linearly over ``warmup_fraction`` of the steps, then
    decays on a cosine to ``final_lr_fraction`` of its peak. With ``keep_best`` the
    returned model is the state of the lowest validation loss (early stopping without
    stopping), when the objective has a validation set.
    """

    steps: int = 2000
    batch_size: int = 256
    learning_rate: float = 1e-3
    warmup_fraction: float = 0.05
    final_lr_fraction: float = 0.01
    gradient_clip: float = 100.0
    validate_every: int = 100
    checkpoint_every: int = 500
    keep_best: bool = True
    progress: bool = True

    def __post_init__(self):
        for name in ("steps", "batch_size", "validate_every", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise NeuralCTError(f"`{name}` must be a positive integer")
        if not self.learning_rate > 0:
            raise NeuralCTError("`learning_rate` must be positive")


@dataclass
class TrainingResult:
    """What a finished run measured (plain data, written to summary.json)."""

    final_loss: float
    history: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0
    wall_seconds: float = 0.0
    samples_per_second: float = 0.0
    resumed_from_step: int = 0
    best_step: int | None = None


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process (resident set, MB) or of the CUDA device's allocator."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _schedule(settings: TrainingSettings) -> Callable[[int], float]:
    """The learning rate's factor at each step: a linear warm-up, then a cosine down to ``final_lr_fraction``."""
    warmup = max(1, int(settings.warmup_fraction * settings.steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, settings.steps - warmup))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return settings.final_lr_fraction + (1 - settings.final_lr_fraction) * cosine

    return factor


def _check_finite(value: torch.Tensor, what: str, step: int, checkpoint: Path | None) -> None:
    """Stop with :class:`TrainingDiverged` if ``value`` (the ``what`` of ``step``) is not finite."""
    if not bool(torch.isfinite(value).all()):
        kept = (
            f"the last good checkpoint is kept at {checkpoint}"
            if checkpoint and checkpoint.exists()
            else "no checkpoint was written yet"
        )
        raise TrainingDiverged(
            f"training diverged at step {step}: the {what} became {float(value)}; {kept}; "
            "lower `learning_rate` or use `dtype` float64"
        )


def _checked_mean(
    losses: list[torch.Tensor], norms: list[torch.Tensor], first_step: int, checkpoint: Path | None
) -> float:
    """Mean of the steps' ``losses``, after checking them and the gradient ``norms`` (one host sync).

    Raises
    ------
    TrainingDiverged
        Naming the first step whose loss or gradient norm is not finite.
    """
    losses_, norms_ = torch.stack(losses), torch.stack(norms)
    finite = torch.isfinite(losses_) & torch.isfinite(norms_)
    if not bool(finite.all()):
        first = int(torch.nonzero(~finite)[0, 0])
        _check_finite(losses_[first], "loss", first_step + first, checkpoint)
        _check_finite(norms_[first], "gradient norm", first_step + first, checkpoint)
    return float(losses_.double().mean())


def _clip_and_step(optimizer: torch.optim.Adam, parameters: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip the gradients to total norm ``max_norm`` and take one step of ``optimizer`` (fused Adam).

    The same arithmetic as ``torch.nn.utils.clip_grad_norm_`` followed by ``optimizer.step()``, in
    four tensor calls once Adam's state exists (the first step goes that way and creates it):
    none of the optimiser's per-parameter bookkeeping in Python runs, which at batch 200 cost
    about as much as the fused kernel itself.

    Returns
    -------
    torch.Tensor
        The total gradient norm before clipping, a 0-d tensor on the device (no host sync).
    """
    with_grad = [parameter for parameter in parameters if parameter.grad is not None]
    states = [optimizer.state.get(parameter) for parameter in with_grad]
    if not all(states):
        norm = torch.nn.utils.clip_grad_norm_(with_grad, max_norm)
        optimizer.step()
        return norm
    (group,) = optimizer.param_groups
    grads = [parameter.grad for parameter in with_grad]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (norm + 1e-6)).clamp_(max=1.0))
    steps = [state["step"] for state in states]
    torch._foreach_add_(steps, 1)
    torch._fused_adam_(
        with_grad,
        grads,
        [state["exp_avg"] for state in states],
        [state["exp_avg_sq"] for state in states],
        [],
        steps,
        lr=group["lr"],
        beta1=group["betas"][0],
        beta2=group["betas"][1],
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        amsgrad=False,
        maximize=False,
        grad_scale=None,
        found_inf=None,
    )
    return norm


@dataclass
class _TrainingState:
    """What training carries from step to step, saved to a checkpoint and restored from it as a whole.

    Attributes
    ----------
    model : NeuralCanonicalTransformation
        The model trained.
    parameters : list of torch.nn.Parameter
        The parameters the optimiser updates (not saved: the model's state holds them).
    optimizer, scheduler
        Adam and its learning-rate schedule.
    generator : torch.Generator
        This process's stream of minibatches.
    step : int
        Steps done.
    history : dict of str to list of float
        ``step``, ``train_loss`` and ``valid_loss`` at every validation.
    best : dict
        The lowest validation loss so far, its ``step`` and the ``model`` state it was reached in.
    running, norms : list of torch.Tensor
        The losses and gradient norms since the last validation: they stay on the device (no host
        sync per step) and are checked when read, before every validation and every checkpoint.
        They cross a checkpoint, so a resumed run's history equals an uninterrupted run's.
    earlier : dict
        Training ``seconds`` and ``steps`` of earlier runs, so that a resumed run's rate is over all.
    resumed_from : int
        The step this run started from.
    clock_start : float
        ``time.perf_counter()`` when this run's first step began.
    """

    model: NeuralCanonicalTransformation
    parameters: list[torch.nn.Parameter]
    optimizer: torch.optim.Adam
    scheduler: torch.optim.lr_scheduler.LambdaLR
    generator: torch.Generator
    step: int = 0
    history: dict[str, list[float]] = field(default_factory=lambda: {"step": [], "train_loss": [], "valid_loss": []})
    best: dict[str, Any] = field(default_factory=lambda: {"loss": math.inf, "step": None, "model": None})
    running: list[torch.Tensor] = field(default_factory=list)
    norms: list[torch.Tensor] = field(default_factory=list)
    earlier: dict[str, float] = field(default_factory=lambda: {"seconds": 0.0, "steps": 0})
    resumed_from: int = 0
    clock_start: float = 0.0

    @classmethod
    def start(
        cls,
        model: NeuralCanonicalTransformation,
        parameters: list[torch.nn.Parameter],
        settings: TrainingSettings,
        seed: int,
    ) -> "_TrainingState":
        """The state before the first step: fused Adam, the schedule, this process's generator (``seed + rank``)."""
        # The fused kernel updates every parameter in one pass (CPU and CUDA), same algorithm as the loop.
        optimizer = torch.optim.Adam(parameters, lr=settings.learning_rate, fused=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(settings))
        generator = torch.Generator(device=model.masses.device).manual_seed(seed + distributed.rank())
        return cls(model, parameters, optimizer, scheduler, generator)

    def start_clock(self) -> None:
        """Mark where this run's own steps and time begin."""
        self.resumed_from, self.clock_start = self.step, time.perf_counter()

    def timing(self) -> dict[str, float]:
        """Training ``seconds`` and ``steps`` of every run so far, this one up to now."""
        return {
            "seconds": self.earlier["seconds"] + time.perf_counter() - self.clock_start,
            "steps": self.earlier["steps"] + self.step - self.resumed_from,
        }

    def save(self, path: Path, settings: TrainingSettings) -> None:
        """Write the state to ``path`` atomically (rank 0; every process joins in gathering the generators)."""
        timing = self.timing()
        generators = distributed.gather_generator_states(self.generator)
        if not distributed.is_main_process():
            return
        atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "step": self.step,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "generators": generators,
                "history": self.history,
                "best": self.best,
                "settings": asdict(settings),
                "running": [float(loss) for loss in self.running],
                "norms": [float(norm) for norm in self.norms],
                "timing": timing,
            },
            path,
        )

    def restore(self, path: Path, settings: TrainingSettings) -> None:
        """Continue from the checkpoint at ``path``, written by :meth:`save` with the same settings.

        Raises
        ------
        NeuralCTError
            If the file is damaged or no checkpoint, or was written with other settings, by another
            number of processes or for another model.
        """
        saved = _read_checkpoint(path, settings)
        try:
            self.model.load_state_dict(saved["model"])
        except RuntimeError:
            raise NeuralCTError(f"checkpoint {path} belongs to a different model; use another `output`") from None
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        own = saved["generators"][distributed.rank()]
        self.generator.set_state(own.cpu() if self.generator.device.type == "cpu" else own)
        self.history.update(saved["history"])
        self.best.update(saved["best"])
        # Stored as floats: exact for the model's float32 or float64 losses and norms.
        dtype, device = self.model.masses.dtype, self.model.masses.device
        self.running.extend(torch.tensor(value, dtype=dtype, device=device) for value in saved.get("running", []))
        self.norms.extend(torch.tensor(value, dtype=dtype, device=device) for value in saved.get("norms", []))
        self.earlier.update(saved.get("timing", {}))
        self.step = int(saved["step"])


def _read_checkpoint(path: Path, settings: TrainingSettings) -> dict[str, Any]:
    """The checkpoint at ``path``, checked: undamaged, of this format, settings and number of processes.

    Raises
    ------
    NeuralCTError
        Naming what keeps the run from resuming from it.
    """
    try:
        saved = torch_load_verified(path)
    except DamagedFile as exc:
        raise NeuralCTError(
            f"checkpoint {path} is damaged: {exc}; delete it (or rerun with `overwrite`) to start afresh"
        ) from None
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        raise NeuralCTError(f"{path} is not a neuralct checkpoint; delete it to start afresh")
    written, current = dict(saved["settings"]), asdict(settings)
    changed = sorted(
        key
        for key in ("steps", "batch_size", "learning_rate", "warmup_fraction", "final_lr_fraction")
        if written.get(key) != current[key]
    )
    if changed:
        raise NeuralCTError(
            f"checkpoint {path} was written with different {', '.join(changed)}; "
            "use the same settings or another `output`"
        )
    if len(saved["generators"]) != distributed.world_size():
        raise NeuralCTError(
            f"checkpoint {path} was written by {len(saved['generators'])} process(es), "
            f"this run has {distributed.world_size()}; resume with the same number of processes or use another `output`"
        )
    return saved


def train(
    model: NeuralCanonicalTransformation,
    objective: Objective,
    settings: TrainingSettings,
    seed: int = 0,
    checkpoint: Path | None = None,
    parameters: list[torch.nn.Parameter] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainingResult:
    """Minimise ``objective`` with Adam and a warm-up + cosine schedule.

    Checkpoints (model, optimiser, schedule, random state, history, the losses of the
    epoch in progress, training time so far) are written atomically to ``checkpoint``
    every ``settings.checkpoint_every`` steps and at the end; if the file exists the run
    resumes from it, with the history of an uninterrupted run, and ``wall_seconds`` and
    ``samples_per_second`` over the steps of all runs (the time of steps redone after a
    kill is not counted). A non-finite loss or gradient
    stops the run with :class:`TrainingDiverged` and leaves the last good checkpoint.

    Inside a torch.distributed process group (see :mod:`neuralct.training.distributed`) training
    is data-parallel: each process draws its own minibatches (generator seeded
    ``seed + rank``), DDP averages the gradients, so one step sees ``world_size *
    batch_size`` samples; losses are averaged over processes, only rank 0 writes the
    checkpoint, and a resumed run needs the same number of processes. Every process
    computes the validation loss (same parameters, same value): the others would wait
    for rank 0 at the next step anyway, and all keep the same history.

    Returns
    -------
    TrainingResult
        ``final_loss`` is the validation loss of the returned model when there is a
        validation set (else the last training loss); with ``settings.keep_best`` the
        model is left in its lowest-validation-loss state (``best_step``).
    """
    state = _TrainingState.start(model, list(model.parameters()) if parameters is None else parameters, settings, seed)
    if checkpoint is not None and checkpoint.exists():
        state.restore(checkpoint, settings)
    batch_loss = distributed.data_parallel_loss(model, objective)
    from tqdm.auto import tqdm

    show = settings.progress and distributed.is_main_process()
    bar = tqdm(
        total=settings.steps, initial=state.step, disable=not show, desc=objective.name, unit="step", leave=False
    )
    state.start_clock()
    for step in range(state.step, settings.steps):
        _optimisation_step(state, batch_loss, settings)
        if on_step is not None:
            on_step(step, float(state.running[-1]))
        state.step = done = step + 1
        validate = done % settings.validate_every == 0 or done == settings.steps
        save = checkpoint is not None and (done % settings.checkpoint_every == 0 or done == settings.steps)
        if validate or save:
            train_loss = _checked_mean(state.running, state.norms, done - len(state.running), checkpoint)
        if validate:
            _validate(state, objective, train_loss, bar)
        bar.update(1)
        if save:
            state.save(checkpoint, settings)
    bar.close()
    return _result(state, settings)


def _optimisation_step(
    state: _TrainingState, batch_loss: Callable[[int, torch.Generator], torch.Tensor], settings: TrainingSettings
) -> None:
    """One minibatch: its loss, the gradients, a clipped Adam step and the schedule's; the loss and norm are kept."""
    state.optimizer.zero_grad(set_to_none=True)
    loss = batch_loss(settings.batch_size, state.generator)
    # The mean over processes: every process sees the same value and stops together.
    state.running.append(distributed.mean_over_processes(loss.detach()))
    loss.backward()
    state.norms.append(_clip_and_step(state.optimizer, state.parameters, settings.gradient_clip))
    state.scheduler.step()


def _validate(state: _TrainingState, objective: Objective, train_loss: float, bar: Any) -> None:
    """Record the training loss since the last validation and the validation loss; keep the best model."""
    history = state.history
    history["step"].append(state.step)
    history["train_loss"].append(train_loss)
    valid = objective.validation_loss(state.model)
    history["valid_loss"].append(float("nan") if valid is None else valid)
    if valid is not None and valid < state.best["loss"]:
        state.best.update(
            loss=valid,
            step=state.step,
            model={key: value.detach().clone() for key, value in state.model.state_dict().items()},
        )
    bar.set_postfix(loss=f"{history['train_loss'][-1]:.4g}", valid="-" if valid is None else f"{valid:.4g}")
    state.running.clear()
    state.norms.clear()


def _result(state: _TrainingState, settings: TrainingSettings) -> TrainingResult:
    """The finished run's result; with ``keep_best`` the model is first put back in its best state."""
    timing = state.timing()
    history, best = state.history, state.best
    final = history["valid_loss"][-1] if history["valid_loss"] and not math.isnan(history["valid_loss"][-1]) else None
    if settings.keep_best and best["model"] is not None:
        state.model.load_state_dict(best["model"])
        final = best["loss"]
    return TrainingResult(
        final_loss=history["train_loss"][-1] if final is None else final,
        best_step=best["step"] if settings.keep_best else None,
        history=history,
        steps=settings.steps,
        wall_seconds=timing["seconds"],
        samples_per_second=timing["steps"] * settings.batch_size * distributed.world_size() / timing["seconds"]
        if timing["seconds"] > 0 and timing["steps"]
        else 0.0,
        resumed_from_step=state.resumed_from,
    )
