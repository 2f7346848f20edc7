"""Training: maximum likelihood on phase-space samples and variational free energy."""

from __future__ import annotations

import math
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from . import distributed
from .errors import NeuralCTError
from .io import DamagedFile, atomic_torch_save, torch_load_verified
from .model import NeuralCanonicalTransformation

__all__ = [
    "TrainingSettings",
    "TrainingResult",
    "TrainingDiverged",
    "MaximumLikelihood",
    "VariationalFreeEnergy",
    "Hamiltonian",
    "train",
    "harmonic_start",
    "peak_memory_mb",
    "weighted_resample",
    "stiffest_mode_noise",
]

CHECKPOINT_FORMAT = "neuralct.checkpoint"


class TrainingDiverged(NeuralCTError):
    """The loss or its gradient stopped being finite."""


class Hamiltonian(Protocol):
    """What variational training needs of a system: energies in kT and masses."""

    kT: float
    masses: Any

    def energy(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor: ...

    def potential(self, q: torch.Tensor) -> torch.Tensor: ...


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
                raise NeuralCTError(f"--{name.replace('_', '-')} must be a positive integer")
        if not self.learning_rate > 0:
            raise NeuralCTError("--learning-rate must be positive")


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


class MaximumLikelihood:
    """``-E_data[ln rho(q, p)]`` per sample, in reduced units (nats).

    Momenta are drawn fresh from Maxwell-Boltzmann for every minibatch (exact for a
    separable Hamiltonian, where momenta are independent of positions), unless
    on-step momenta are given.

    Parameters
    ----------
    q_train, q_valid : torch.Tensor, shape=(frames, n)
        Physical positions (the validation set should be held-out trajectories).
    p_train, p_valid : torch.Tensor, shape=(frames, n), optional
        Recorded on-step momenta; None resamples them.
    w_train, w_valid : torch.Tensor, shape=(frames,), optional
        Frame weights (e.g. ``exp(V/kT)`` of a biased run): weighted maximum likelihood,
        ``-sum_i w_i ln rho(x_i) / sum_i w_i``. Minibatches are drawn with probability
        proportional to ``w`` (an unbiased estimate of the weighted loss); the validation
        loss is the weighted mean.
    position_noise : torch.Tensor, shape=(n,), optional
        Standard deviation of Gaussian noise added to the training positions of every
        minibatch (physical units; see :func:`stiffest_mode_noise`), a regulariser for small
        datasets. Validation positions are never perturbed.
    """

    name = "maximum-likelihood"

    def __init__(self, q_train: torch.Tensor, q_valid: torch.Tensor | None = None, p_train=None, p_valid=None, w_train=None, w_valid=None, position_noise: torch.Tensor | None = None):
        for label, values in (("training", q_train), ("validation", q_valid), ("training momenta", p_train), ("validation momenta", p_valid), ("training weights", w_train), ("validation weights", w_valid)):
            if values is not None and not bool(torch.isfinite(values).all()):
                raise NeuralCTError(f"{label} data contain NaN or infinite values; clean or drop those frames")
        if len(q_train) < 2:
            raise NeuralCTError("need at least 2 training frames")
        self.q_train, self.q_valid, self.p_train, self.p_valid = q_train, q_valid, p_train, p_valid
        self.w_train, self.w_valid = w_train, w_valid
        self.position_noise = position_noise
        self._valid_noise_seed = 12345

    @staticmethod
    def _negative_log_likelihood(model, q, p, generator) -> torch.Tensor:
        if p is None:
            thermal = torch.sqrt(model.masses * model.kT)
            p = torch.randn(q.shape, generator=generator, dtype=q.dtype, device=q.device) * thermal
        return -model.log_prob_reduced(model.to_reduced(q, p))

    def loss(self, model: NeuralCanonicalTransformation, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        if self.w_train is None:
            index = torch.randint(len(self.q_train), (batch_size,), generator=generator, device=generator.device)
        else:
            index = torch.multinomial(self.w_train, batch_size, replacement=True, generator=generator)
        p = None if self.p_train is None else self.p_train[index]
        q = self.q_train[index]
        if self.position_noise is not None:
            q = q + torch.randn(q.shape, generator=generator, dtype=q.dtype, device=q.device) * self.position_noise
        return self._negative_log_likelihood(model, q, p, generator).mean()

    def validation_loss(self, model: NeuralCanonicalTransformation, chunk: int = 1024) -> float | None:
        """Mean NLL on the validation set with fixed momentum draws (comparable across steps).

        ``chunk`` frames at a time: on one CPU thread B1's 4,000 held-out frames take 2.4x less
        time in chunks of 1,024 than of 2,048 or 4,096 (75 vs 180 ms, measured; the chunk's
        intermediates stay small).
        """
        if self.q_valid is None or len(self.q_valid) == 0:
            return None
        generator = torch.Generator(device=self.q_valid.device).manual_seed(self._valid_noise_seed)
        weights = torch.ones(len(self.q_valid), dtype=self.q_valid.dtype, device=self.q_valid.device) if self.w_valid is None else self.w_valid
        total = 0.0
        for start in range(0, len(self.q_valid), chunk):
            q = self.q_valid[start : start + chunk]
            p = None if self.p_valid is None else self.p_valid[start : start + chunk]
            with torch.no_grad():
                total += float((weights[start : start + chunk] * self._negative_log_likelihood(model, q, p, generator)).sum())
        return total / float(weights.sum())


def stiffest_mode_noise(q: torch.Tensor, masses: torch.Tensor, fraction: float) -> torch.Tensor | None:
    """Per-coordinate noise, shape (n,): ``fraction`` of the thermal amplitude of the stiffest mode.

    Isotropic in mass-weighted coordinates ``sqrt(m) q`` with standard deviation ``fraction``
    times the smallest principal standard deviation of the data there (the stiffest normal
    mode, ``sqrt(kT) / w_max`` for a harmonic system). Smoothing the data at a fraction of the
    smallest length scale it has keeps the model from resolving single frames, while every
    mode's variance grows by at most ``fraction^2`` (a bias of at most ``fraction^2 / 2`` nats
    per mode). None when ``fraction`` is 0.

    Parameters
    ----------
    q : torch.Tensor, shape=(frames, n)
        Training positions.
    masses : torch.Tensor, shape=(n,)
    fraction : float
        Noise over the stiffest mode's amplitude, >= 0.
    """
    if not fraction >= 0:
        raise NeuralCTError(f"--position-noise must be >= 0, got {fraction}")
    if fraction == 0:
        return None
    weighted = (q * masses.sqrt()).double()
    smallest_variance = torch.linalg.eigvalsh(torch.cov(weighted.T).reshape(q.shape[1], q.shape[1]))[0].clamp_min(0)
    return (fraction * smallest_variance.sqrt() / masses.double().sqrt()).to(q.dtype)


class VariationalFreeEnergy:
    """``E_{x ~ rho}[ln rho(x) + beta H(x)] >= -ln Z`` with reparameterised model samples.

    Parameters
    ----------
    system : Hamiltonian
        Gives ``energy(q, p)`` in kT for physical coordinates.
    """

    name = "variational"

    def __init__(self, system: Hamiltonian):
        self.system = system

    def per_sample(self, model: NeuralCanonicalTransformation, n_samples: int, generator: torch.Generator) -> torch.Tensor:
        """``ln rho(x) + beta H(x)`` for fresh model samples, shape (n_samples,)."""
        x, log_prob = model.sample_reduced(n_samples, generator)
        q, p = model.from_reduced(x)
        return log_prob + model.reduction_log_det() + self.system.energy(q, p)

    def loss(self, model, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return self.per_sample(model, batch_size, generator).mean()

    def validation_loss(self, model, chunk: int = 4096) -> float | None:
        return None

    def estimate(self, model, n_samples: int = 20000, chunk: int = 2000, seed: int = 0) -> dict[str, float]:
        """Variational free energy (kT) with its standard error, from ``n_samples`` draws.

        Also the importance-sampling estimate ``-ln mean(exp(-(ln rho + beta H)))`` of
        ``-ln Z`` and Kish's effective sample size fraction of the weights.
        """
        generator = torch.Generator(device=model.masses.device).manual_seed(seed)
        values = []
        for start in range(0, n_samples, chunk):
            with torch.no_grad():
                values.append(self.per_sample(model, min(chunk, n_samples - start), generator).double())
        values = torch.cat(values)
        log_w = -values
        log_mean_w = torch.logsumexp(log_w, 0) - math.log(len(values))
        ess = torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)) / len(values)
        return {
            "free_energy": float(values.mean()),
            "free_energy_error": float(values.std() / math.sqrt(len(values))),
            "importance_sampling_free_energy": float(-log_mean_w),
            "effective_sample_size_fraction": float(ess),
            "samples": len(values),
        }


def weighted_resample(q: torch.Tensor, weights: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """``len(q)`` frames drawn with replacement with probability proportional to ``weights`` (all of ``q`` when None).

    Gives the data-dependent start of a weighted fit the statistics (mean, covariance) of
    the weighted data without changing the layers' initialisation code.
    """
    if weights is None:
        return q
    return q[torch.multinomial(weights, len(q), replacement=True, generator=generator)]


def harmonic_start(model: NeuralCanonicalTransformation, system: Hamiltonian, n_samples: int = 20000, seed: int = 0) -> None:
    """Start a variational run from the harmonic approximation of ``system`` at ``q = 0``.

    Draws configurations from ``N(0, kT H^-1)``, ``H`` the Hessian of the potential
    (normal-mode analysis), and initialises the model on them as on data.

    Raises
    ------
    NeuralCTError
        If the Hessian is not positive definite (``q = 0`` is not a minimum).
    """
    dtype = model.masses.dtype
    zero = torch.zeros(1, model.dim, dtype=dtype, device=model.masses.device)
    hessian = torch.autograd.functional.hessian(lambda q: system.potential(q).sum(), zero).reshape(model.dim, model.dim)
    eigenvalues, vectors = torch.linalg.eigh(hessian.double())
    if not bool((eigenvalues > 0).all()):
        raise NeuralCTError("the Hessian at q = 0 is not positive definite; use --init identity")
    generator = torch.Generator(device=zero.device).manual_seed(seed)
    xi = torch.randn(n_samples, model.dim, generator=generator, dtype=torch.float64, device=zero.device)
    q = (xi / eigenvalues.sqrt()) @ vectors.T * math.sqrt(system.kT)
    model.initialize(q.to(dtype), generator=generator)


def _schedule(settings: TrainingSettings) -> Callable[[int], float]:
    warmup = max(1, int(settings.warmup_fraction * settings.steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, settings.steps - warmup))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return settings.final_lr_fraction + (1 - settings.final_lr_fraction) * cosine

    return factor


def _check_finite(value: torch.Tensor, what: str, step: int, checkpoint: Path | None) -> None:
    if not bool(torch.isfinite(value).all()):
        kept = f"the last good checkpoint is kept at {checkpoint}" if checkpoint and checkpoint.exists() else "no checkpoint was written yet"
        raise TrainingDiverged(
            f"training diverged at step {step}: the {what} became {float(value)}; {kept}; lower --learning-rate or use --dtype float64"
        )


def _checked_mean(losses: list[torch.Tensor], norms: list[torch.Tensor], first_step: int, checkpoint: Path | None) -> float:
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
        with_grad, grads, [state["exp_avg"] for state in states], [state["exp_avg_sq"] for state in states], [], steps,
        lr=group["lr"], beta1=group["betas"][0], beta2=group["betas"][1], weight_decay=group["weight_decay"], eps=group["eps"],
        amsgrad=False, maximize=False, grad_scale=None, found_inf=None,
    )
    return norm


def train(
    model: NeuralCanonicalTransformation,
    objective: MaximumLikelihood | VariationalFreeEnergy,
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

    Inside a torch.distributed process group (see :mod:`neuralct.distributed`) training
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
    device = model.masses.device
    parameters = list(model.parameters()) if parameters is None else parameters
    # The fused kernel updates every parameter in one pass (CPU and CUDA), same algorithm as the loop.
    optimizer = torch.optim.Adam(parameters, lr=settings.learning_rate, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(settings))
    generator = torch.Generator(device=device).manual_seed(seed + distributed.rank())
    history: dict[str, list[float]] = {"step": [], "train_loss": [], "valid_loss": []}
    best: dict[str, Any] = {"loss": math.inf, "step": None, "model": None}
    start_step = 0
    # The losses and gradient norms since the last validation stay on the device (no host sync
    # per step) and are checked when read: before every validation and every checkpoint. They
    # and the training time of earlier runs cross a checkpoint, so a resumed run's history and
    # rate equal an uninterrupted run's.
    running: list[torch.Tensor] = []
    norms: list[torch.Tensor] = []
    earlier = {"seconds": 0.0, "steps": 0}
    if checkpoint is not None and checkpoint.exists():
        start_step = _resume(checkpoint, model, optimizer, scheduler, generator, history, best, settings, running, norms, earlier)
    batch_loss = distributed.data_parallel_loss(model, objective)
    from tqdm.auto import tqdm

    show = settings.progress and distributed.is_main_process()
    bar = tqdm(total=settings.steps, initial=start_step, disable=not show, desc=objective.name, unit="step", leave=False)
    t0 = time.perf_counter()
    step = start_step
    for step in range(start_step, settings.steps):
        optimizer.zero_grad(set_to_none=True)
        loss = batch_loss(settings.batch_size, generator)
        # The mean over processes: every process sees the same value and stops together.
        running.append(distributed.mean_over_processes(loss.detach()))
        loss.backward()
        norms.append(_clip_and_step(optimizer, parameters, settings.gradient_clip))
        scheduler.step()
        if on_step is not None:
            on_step(step, float(running[-1]))
        done = step + 1
        validate = done % settings.validate_every == 0 or done == settings.steps
        save = checkpoint is not None and (done % settings.checkpoint_every == 0 or done == settings.steps)
        if validate or save:
            train_loss = _checked_mean(running, norms, done - len(running), checkpoint)
        if validate:
            history["step"].append(done)
            history["train_loss"].append(train_loss)
            valid = objective.validation_loss(model)
            history["valid_loss"].append(float("nan") if valid is None else valid)
            if valid is not None and valid < best["loss"]:
                best.update(loss=valid, step=done, model={key: value.detach().clone() for key, value in model.state_dict().items()})
            bar.set_postfix(loss=f"{history['train_loss'][-1]:.4g}", valid="-" if valid is None else f"{valid:.4g}")
            running.clear()
            norms.clear()
        bar.update(1)
        if save:
            timing = {"seconds": earlier["seconds"] + time.perf_counter() - t0, "steps": earlier["steps"] + done - start_step}
            _save_checkpoint(checkpoint, model, optimizer, scheduler, generator, history, best, settings, done, running, norms, timing)
    bar.close()
    elapsed = earlier["seconds"] + time.perf_counter() - t0
    trained = earlier["steps"] + settings.steps - start_step
    final = history["valid_loss"][-1] if history["valid_loss"] and not math.isnan(history["valid_loss"][-1]) else None
    if settings.keep_best and best["model"] is not None:
        model.load_state_dict(best["model"])
        final = best["loss"]
    return TrainingResult(
        final_loss=history["train_loss"][-1] if final is None else final,
        best_step=best["step"] if settings.keep_best else None,
        history=history,
        steps=settings.steps,
        wall_seconds=elapsed,
        samples_per_second=trained * settings.batch_size * distributed.world_size() / elapsed if elapsed > 0 and trained else 0.0,
        resumed_from_step=start_step,
    )


def _save_checkpoint(path, model, optimizer, scheduler, generator, history, best, settings, step, running, norms, timing):
    generators = distributed.gather_generator_states(generator)
    if not distributed.is_main_process():
        return
    atomic_torch_save(
        {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generators": generators,
            "history": history,
            "best": best,
            "settings": asdict(settings),
            "running": [float(loss) for loss in running],
            "norms": [float(norm) for norm in norms],
            "timing": timing,
        },
        path,
    )


def _resume(path, model, optimizer, scheduler, generator, history, best, settings, running, norms, earlier) -> int:
    try:
        state = torch_load_verified(path)
    except DamagedFile as exc:
        raise NeuralCTError(f"checkpoint {path} is damaged: {exc}; delete it (or rerun with --overwrite) to start afresh") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise NeuralCTError(f"{path} is not a neuralct checkpoint; delete it to start afresh")
    saved = dict(state["settings"])
    current = asdict(settings)
    changed = sorted(key for key in ("steps", "batch_size", "learning_rate", "warmup_fraction", "final_lr_fraction") if saved.get(key) != current[key])
    if changed:
        raise NeuralCTError(f"checkpoint {path} was written with different {', '.join(changed)}; use the same settings or another --output")
    generators = state["generators"]
    if len(generators) != distributed.world_size():
        raise NeuralCTError(
            f"checkpoint {path} was written by {len(generators)} process(es), this run has {distributed.world_size()}; "
            "resume with the same number of processes or use another --output"
        )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise NeuralCTError(f"checkpoint {path} belongs to a different model; use another --output") from None
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    own = generators[distributed.rank()]
    generator.set_state(own.cpu() if generator.device.type == "cpu" else own)
    history.update(state["history"])
    best.update(state["best"])
    # Stored as floats: exact for the model's float32 or float64 losses and norms.
    dtype, device = model.masses.dtype, model.masses.device
    running.extend(torch.tensor(value, dtype=dtype, device=device) for value in state.get("running", []))
    norms.extend(torch.tensor(value, dtype=dtype, device=device) for value in state.get("norms", []))
    earlier.update(state.get("timing", {}))
    return int(state["step"])
