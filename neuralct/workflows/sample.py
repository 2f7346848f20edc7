"""``neuralct sample`` as a function: kernels for a target, chains with checkpoints, the report of what they measured.

The pieces are :mod:`neuralct.sampling`'s: the target (:mod:`~neuralct.sampling.targets`), the
kernels (:mod:`~neuralct.sampling.hmc`), where chains start and how they warm up
(:mod:`~neuralct.sampling.chains`), the figures (:mod:`~neuralct.sampling.diagnostics`) and the
memory a run needs (:mod:`~neuralct.sampling.resources`). This module runs them into a folder.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import NeuralCTError
from ..io import DamagedFile, atomic_savez, atomic_torch_save, torch_load_verified, write_json
from ..model.transformation import NeuralCanonicalTransformation
from ..sampling.chains import (
    Kernel,
    component_kernels,
    end_warmup_iteration,
    flow_basin_fractions,
    in_chunks,
    iterate,
    starting_points,
)
from ..sampling.diagnostics import (
    FLOW_REACH_FRACTION,
    R_HAT_LIMIT,
    TRAINING_DATA_DISAGREEMENT,
    CurvatureSum,
    basin_population,
    curvature_figures,
    flow_importance_weights,
    mark_against_training_data,
    mark_unreached,
    observable_efficiency,
    sampling_efficiency,
)
from ..sampling.hmc import ChainState, HamiltonianMonteCarlo, IndependenceMetropolis
from ..sampling.mixture import FlowMixture, choice_record
from ..sampling.resources import memory_needed
from ..sampling.targets import (
    LatentPotential,
    SamplingTarget,
    flow_draws_whole_configurations,
    ramachandran_angles,
)
from .memory import check_fits
from .model_for_sampling import check_model_for_sampling

__all__ = [
    "METHODS",
    "CHECKPOINT_FILE",
    "SamplingSettings",
    "check_method",
    "build_kernels",
    "check_memory",
    "run_sampling",
]


#: Sampling methods: independence moves from the flow mixed with latent HMC where the warm-up finds that they pay
#: (:class:`~neuralct.sampling.mixture.FlowMixture`), HMC in the flow's latent space, HMC in the model's physical
#: coordinates, independence moves from the flow, and independence moves alternating with latent HMC.
METHODS = ("auto", "latent-hmc", "hmc", "independence", "mixed")


CHECKPOINT_FILE = "checkpoint.pt"

#: Draws of the flow whose basins are compared with the chains' after sampling (no energy is evaluated for them).
FLOW_REACH_DRAWS = 1000


@dataclass
class SamplingSettings:
    """What a sampling run does (every field changes the result except ``checkpoint_every`` and ``progress``).

    ``leapfrog_steps`` ``"auto"`` chooses the HMC trajectory length in warm-up
    (:class:`~neuralct.sampling.hmc.HamiltonianMonteCarlo` with ``leapfrog_steps=None``).
    ``method`` ``"auto"`` measures Kish's ESS of the flow on ``kish_samples`` draws before the
    warm-up and mixes independence moves with latent HMC where they pay
    (:class:`~neuralct.sampling.mixture.FlowMixture`).
    """

    method: str = "auto"
    chains: int = 16
    samples: int = 1000
    warmup: int = 200
    step_size: float = 0.1
    leapfrog_steps: int | str = "auto"
    target_acceptance: float = 0.65
    mass_matrix: str = "curvature"
    kish_samples: int = 1000
    checkpoint_every: int = 100
    progress: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise NeuralCTError(f"`method` must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.mass_matrix not in HamiltonianMonteCarlo.MASS_MATRICES:
            raise NeuralCTError(
                f"`mass_matrix` must be one of {', '.join(HamiltonianMonteCarlo.MASS_MATRICES)}, "
                f"got {self.mass_matrix!r}"
            )
        if isinstance(self.leapfrog_steps, str) and self.leapfrog_steps != "auto":
            raise NeuralCTError(f"`leapfrog_steps` must be a whole number or auto, got {self.leapfrog_steps!r}")
        shortest = HamiltonianMonteCarlo.WARMUP_TO_CHOOSE_LENGTH
        if self.leapfrog_steps == "auto" and self.method != "independence" and self.warmup < shortest:
            raise NeuralCTError(
                f"`leapfrog_steps` auto needs `warmup` {shortest} or more (each trajectory length tried twice after "
                f"the masses are fitted half-way), got {self.warmup}; or give `leapfrog_steps` a number"
            )
        if self.mass_matrix == "curvature" and self.method != "independence" and self.warmup < 2:
            raise NeuralCTError(
                f"`mass_matrix` curvature needs `warmup` 2 or more (the masses are fitted half-way), "
                f"got {self.warmup}; or use `mass_matrix` unit"
            )


def check_method(method: str, target: SamplingTarget) -> None:
    """Refuse independence moves for a model that leaves hydrogens out: the flow cannot draw them."""
    if target.placed_dim and method in ("independence", "mixed"):
        raise NeuralCTError(
            f"`method` {method} draws whole configurations from the flow, but this model leaves "
            f"{target.description['placed_hydrogens']} hydrogens out; use `method` latent-hmc or hmc, "
            "or a model trained with `neuralct train --selection all`"
        )


def build_kernels(
    method: str, model: NeuralCanonicalTransformation, target: SamplingTarget, settings: SamplingSettings
) -> tuple[list[Kernel], Any]:
    """Kernels of ``method`` and the potential they sample (latent ``U(u)`` or physical ``U_phys``).

    ``auto`` is a :class:`~neuralct.sampling.mixture.FlowMixture` where the flow draws whole
    configurations, latent HMC alone where it does not (a model that leaves hydrogens out).
    """
    check_method(method, target)
    potential = target.potential if method == "hmc" else LatentPotential(model, target.potential)

    def hmc() -> HamiltonianMonteCarlo:
        return HamiltonianMonteCarlo(
            potential,
            settings.step_size,
            None if settings.leapfrog_steps == "auto" else settings.leapfrog_steps,
            settings.target_acceptance,
            mass_matrix=settings.mass_matrix,
        )

    if method == "independence":
        return [IndependenceMetropolis(potential)], potential
    if method == "mixed":
        return [IndependenceMetropolis(potential), hmc()], potential
    if method == "auto" and flow_draws_whole_configurations(model, target):
        return [FlowMixture(IndependenceMetropolis(potential), hmc())], potential
    return [hmc()], potential


def _measures_kish(model: NeuralCanonicalTransformation, target: SamplingTarget, settings: SamplingSettings) -> bool:
    """Whether a run measures Kish's ESS of the flow: asked for, and the flow draws whole configurations."""
    return bool(settings.kish_samples) and flow_draws_whole_configurations(model, target)


def check_memory(model: NeuralCanonicalTransformation, target: SamplingTarget, settings: SamplingSettings) -> None:
    """Refuse a run whose arrays would not fit in the memory the machine has free, before any work.

    Raises
    ------
    NeuralCTError
        Naming the memory needed, what needs most of it, the memory available and the argument to reduce
        (:func:`~neuralct.sampling.resources.memory_needed`).
    """
    needed = memory_needed(
        model,
        target,
        chains=settings.chains,
        samples=settings.samples,
        warmup=settings.warmup,
        kish_samples=settings.kish_samples,
    )
    check_fits(needed, f"sampling {settings.chains} chains for {settings.samples} samples")


@dataclass
class _Progress:
    """Where a run's chains are and what they recorded: what a checkpoint holds."""

    state: ChainState
    iteration: int = 0
    positions: list[torch.Tensor] = field(default_factory=list)
    energies: list[torch.Tensor] = field(default_factory=list)
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    start_evaluations: int = 0
    curvature: CurvatureSum = field(default_factory=CurvatureSum)
    #: Where the chains started (:func:`~neuralct.sampling.chains.starting_points`).
    start_source: str = ""

    def record(self) -> None:
        """Keep the current state as a sample (after warm-up)."""
        self.positions.append(self.state.position)
        self.energies.append(self.state.energy)
        self.curvature.add(self.state.energy, self.state.gradient)


@dataclass
class _Checkpoint:
    """A run's checkpoint file: the chains, the kernels' adaptation, the random stream and the run's timings."""

    path: Path
    kernels: list[Kernel]
    generator: torch.Generator
    point_shape: tuple[int, int]
    dtype: torch.dtype

    def save(self, progress: _Progress, wall_seconds: float, cpu_seconds: float) -> None:
        """Write ``progress`` atomically, with the seconds spent so far."""
        atomic_torch_save(
            {
                "iteration": progress.iteration,
                "position": progress.state.position,
                "energy": progress.state.energy,
                "gradient": progress.state.gradient,
                "generator": self.generator.get_state(),
                "kernels": [kernel.state_dict() for kernel in self.kernels],
                "positions": torch.stack(progress.positions)
                if progress.positions
                else torch.zeros(0, *self.point_shape, dtype=self.dtype),
                "energies": torch.stack(progress.energies)
                if progress.energies
                else torch.zeros(0, self.point_shape[0], dtype=self.dtype),
                "wall_seconds": wall_seconds,
                "cpu_seconds": cpu_seconds,
                "start_evaluations": progress.start_evaluations,
                "curvature_sum": progress.curvature.total,
                "curvature_count": progress.curvature.count,
                "start_source": progress.start_source,
            },
            self.path,
        )

    def load(self, warmup: int) -> _Progress:
        """The chains where the file left them; the kernels and the random stream are restored in place.

        Raises
        ------
        NeuralCTError
            If the file is damaged, or holds chains of another shape or another warm-up.
        """
        try:
            saved = torch_load_verified(self.path)
            progress = _Progress(
                ChainState(saved["position"], saved["energy"], saved["gradient"]),
                saved["iteration"],
                list(saved["positions"]),
                list(saved["energies"]),
                saved["wall_seconds"],
                saved["cpu_seconds"],
                saved["start_evaluations"],
                CurvatureSum(saved["curvature_sum"], saved["curvature_count"]),
                saved["start_source"],
            )
            self.generator.set_state(saved["generator"])
            for kernel, kernel_state in zip(self.kernels, saved["kernels"], strict=True):
                kernel.load_state_dict(kernel_state)
            # A file that loads but holds other chains would fail later, far from its cause.
            if (
                progress.state.position.shape != self.point_shape
                or len(progress.positions) != max(progress.iteration - warmup, 0)
                or any(p.shape != self.point_shape for p in progress.positions)
            ):
                raise ValueError("chains of another shape")
        except PermissionError:
            raise
        except DamagedFile as exc:
            raise NeuralCTError(
                f"checkpoint {self.path} is damaged: {exc}; rerun with --overwrite to start again"
            ) from None
        except Exception as exc:
            raise NeuralCTError(
                f"checkpoint {self.path} is damaged or incomplete ({type(exc).__name__}); "
                "rerun with --overwrite to start again"
            ) from None
        return progress


def _start_chains(
    model: NeuralCanonicalTransformation,
    target: SamplingTarget,
    settings: SamplingSettings,
    kernels: list[Kernel],
    potential: Any,
    generator: torch.Generator,
) -> _Progress:
    """Fresh chains at frames of the model's training trajectories or the flow's lowest-energy draws
    (:func:`~neuralct.sampling.chains.starting_points`).

    A :class:`~neuralct.sampling.mixture.FlowMixture` is then admitted or not by Kish's ESS of
    ``settings.kish_samples`` flow draws (none: not measured); those evaluations count with the
    starts'.
    """
    start, choosing, source = starting_points(model, target, settings.method, settings.chains, generator)
    state = ChainState.start(potential, start)
    if not bool(torch.isfinite(state.energy).all()):
        raise NeuralCTError(
            "the potential energy is not finite at the chains' starting points; the model does not match the system"
        )
    progress = _Progress(state, start_evaluations=choosing + settings.chains, start_source=source)
    for mixture in (kernel for kernel in kernels if isinstance(kernel, FlowMixture)):
        weights = None
        if settings.kish_samples:
            weights = flow_importance_weights(
                potential, model.dim, settings.kish_samples, generator, model.masses.dtype
            )
            progress.start_evaluations += settings.kish_samples
        mixture.admit(weights)
    return progress


def _run_chains(
    kernels: list[Kernel],
    progress: _Progress,
    generator: torch.Generator,
    settings: SamplingSettings,
    checkpoint: _Checkpoint,
) -> None:
    """Iterate the chains through warm-up and sampling, recording after warm-up, checkpointing as they go."""
    from tqdm import tqdm

    total = settings.warmup + settings.samples
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    with tqdm(
        total=total,
        initial=progress.iteration,
        desc=f"sample {settings.method}",
        unit="iteration",
        disable=not settings.progress,
        mininterval=0.5,
    ) as bar:
        while progress.iteration < total:
            warming = progress.iteration < settings.warmup
            progress.state = iterate(kernels, progress.state, generator, adapt=warming)
            progress.iteration += 1
            if warming:
                end_warmup_iteration(kernels, progress.iteration, settings.warmup)
            else:
                progress.record()
            if progress.iteration % settings.checkpoint_every == 0 or progress.iteration == total:
                checkpoint.save(
                    progress,
                    progress.wall_seconds + time.perf_counter() - wall_start,
                    progress.cpu_seconds + time.process_time() - cpu_start,
                )
            bar.update(1)
    progress.wall_seconds += time.perf_counter() - wall_start
    progress.cpu_seconds += time.process_time() - cpu_start


def run_sampling(
    model: NeuralCanonicalTransformation,
    target: SamplingTarget,
    settings: SamplingSettings,
    folder: Path,
    seed: int = 0,
    resume: bool = False,
    model_check: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the chains, checkpointing into ``folder``, and write samples, plots and summary.json.

    Chains start at random frames of the model's training trajectories, or else at the flow's
    lowest-energy draws (:func:`~neuralct.sampling.chains.starting_points`; summary.json:
    ``chain_starts``). A run found in ``folder/checkpoint.pt``
    (``resume``) continues where it stopped; the result is the same as an uninterrupted run.
    :func:`check_memory` tells beforehand whether the run fits in memory. The summary records,
    as ``model_for_sampling``, what the model lacks for sampling
    (:func:`~neuralct.workflows.model_for_sampling.check_model_for_sampling`): ``model_check``
    where the caller has it already, else checked here.

    Returns
    -------
    dict
        The summary written to ``folder/summary.json``.

    Raises
    ------
    NeuralCTError
        If the checkpoint to resume from is damaged or belongs to other settings.
    """
    kernels, potential = build_kernels(settings.method, model, target, settings)
    generator = torch.Generator().manual_seed(seed)
    checkpoint = _Checkpoint(
        folder / CHECKPOINT_FILE,
        kernels,
        generator,
        (settings.chains, model.dim + target.placed_dim),
        model.masses.dtype,
    )
    if resume and checkpoint.path.exists():
        progress = checkpoint.load(settings.warmup)
    else:
        progress = _start_chains(model, target, settings, kernels, potential, generator)
    _run_chains(kernels, progress, generator, settings, checkpoint)
    if model_check is None:
        model_check = check_model_for_sampling(model, target)
    return _report(model, target, settings, kernels, potential, progress, generator, folder, model_check)


def _to_physical(
    method: str, potential: Any, positions: torch.Tensor, energies: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampled points and potentials (of the kernels' ``potential``) to physical points and ``U_phys``.

    Shapes (batch, n) and (batch,), as given.
    """
    if method == "hmc":
        return positions, energies
    q, log_det = in_chunks(potential.to_physical, positions)
    return q, energies + log_det


def _run_figures(
    target: SamplingTarget, settings: SamplingSettings, kernels: list[Kernel], progress: _Progress
) -> dict[str, Any]:
    """What ran and what it cost: target, settings, kernels' statistics (of those that moved the recorded chains), step
    sizes and trajectory lengths (with how they were chosen), the kernel ``auto`` chose, evaluations and seconds."""
    parts = component_kernels(kernels)
    hmc = [kernel for kernel in parts if isinstance(kernel, HamiltonianMonteCarlo)]
    return {
        "target": target.description,
        "settings": {
            key: value for key, value in asdict(settings).items() if key not in ("progress", "checkpoint_every")
        },
        "kernels": {kernel.name: kernel.statistics.as_dict() for kernel in parts if kernel.statistics.proposals},
        "step_size": {kernel.name: kernel.step_size for kernel in hmc},
        "leapfrog_steps": {kernel.name: kernel.leapfrog_steps for kernel in hmc},
        **(
            {
                "leapfrog_choice": {
                    kernel.name: {
                        "expected_squared_jump_per_evaluation": {str(k): v for k, v in kernel.jump_rates().items()},
                        "note": "whitened coordinates, second half of the warm-up's records of each length; "
                        "the length with the most was kept",
                    }
                    for kernel in hmc
                }
            }
            if settings.leapfrog_steps == "auto"
            else {}
        ),
        **({"method_choice": _method_choice(kernels)} if settings.method == "auto" else {}),
        "energy_evaluations": sum(kernel.statistics.evaluations for kernel in parts),
        "warmup_energy_evaluations": sum(kernel.statistics.warmup_evaluations for kernel in parts)
        + progress.start_evaluations,
        "wall_seconds": progress.wall_seconds,
        "cpu_seconds": progress.cpu_seconds,
        "samples_order": "iteration-major arrays (samples, chains, ...); trajectory frames chain by chain",
    }


def _method_choice(kernels: list[Kernel]) -> dict[str, Any]:
    """What ``method`` auto chose (:meth:`~neuralct.sampling.mixture.FlowMixture.choice`): latent HMC alone, without
    a mixture, for a model whose flow does not draw whole configurations (it leaves hydrogens out)."""
    for kernel in kernels:
        if isinstance(kernel, FlowMixture):
            return kernel.choice()
    return choice_record(0, "placed_hydrogens")


def _observable_figures(
    beta_energy: np.ndarray, indicators: dict[str, np.ndarray], evaluations: int, cpu_seconds: float
) -> dict[str, Any]:
    """Efficiency of the potential energy and of each basin indicator, and the basins' populations.

    Every array has shape (samples, chains).
    """
    return {
        "potential_energy_kT": observable_efficiency(beta_energy, evaluations, cpu_seconds),
        "indicators": {
            name: sampling_efficiency(value, evaluations, cpu_seconds) for name, value in indicators.items()
        },
        "ess_per_evaluation_note": (
            "ESS over all chains divided by the energy-and-gradient evaluations of the sampling phase "
            "(warm-up excluded)"
        ),
        "populations": {name: basin_population(value) for name, value in indicators.items()},
        "populations_note": (
            "fraction of all recorded samples in each basin; its standard error is the larger of the "
            "autocorrelation estimate and the error of a two-state Markov chain with as many stays in the basin, "
            "so that a basin the chains entered rarely is not given a tight error; "
            "a basin no chain entered has no population, only an upper bound; flow_draws_fraction (for a flow that "
            f"draws configurations) is the share of {FLOW_REACH_DRAWS} draws of the flow in the basin, and a basin "
            f"the chains never entered (or left) while at least {FLOW_REACH_FRACTION:.0%} of the draws lie there "
            "(or outside) is marked not converged"
        ),
    }


def _curvature_figures(curvature: CurvatureSum) -> dict[str, Any]:
    """The spectrum of the mean curvature ``E[grad U grad U^T]`` over the recorded states."""
    return {
        **curvature_figures(np.linalg.eigvalsh(curvature.mean().cpu().numpy())),
        "states": curvature.count,
        "note": "E[grad U grad U^T] = E[Hessian of U] of the potential the chains sample, over the recorded states; "
        "in the latent space of an exact flow every eigenvalue is 1, and large ones bound the HMC step",
    }


def _convergence(summary: dict[str, Any], unreached: list[str], disagreeing: list[str]) -> dict[str, Any]:
    """The observables whose chains disagree (split R-hat above :data:`R_HAT_LIMIT`), that the chains never reached, or
    whose populations disagree with the model's training trajectories.

    ``unreached`` names the basins no chain entered (or left) while the flow's draws reach them
    (:func:`~neuralct.sampling.diagnostics.mark_unreached`); ``disagreeing`` those whose population
    is far from the training trajectories' (:func:`~neuralct.sampling.diagnostics.mark_against_training_data`).
    """
    observed = {"potential energy": summary["potential_energy_kT"], **summary["populations"]}
    return {
        "r_hat_limit": R_HAT_LIMIT,
        # Chains that do not move at all have an infinite R-hat (null in the figures): they count as not converged.
        "not_converged": [name for name, figures in observed.items() if figures.get("converged") is False],
        "unreached": unreached,
        "disagree_with_training_data": disagreeing,
        "note": "split R-hat of each observable over the chains; above the limit the chains disagree "
        "(stuck, or still drifting from their starts), and the observable's standard error is at least the "
        "spread between the chains' means, each chain counted as one sample. unreached: basins no chain entered "
        f"(or left) although at least {FLOW_REACH_FRACTION:.0%} of the flow's draws lie in them (or outside), "
        "also not converged. disagree_with_training_data: basins whose population in the chains is at least "
        f"{TRAINING_DATA_DISAGREEMENT:g} standard errors from that in the model's training trajectories "
        "(unbiased MD), also not converged",
    }


def _report(
    model: NeuralCanonicalTransformation,
    target: SamplingTarget,
    settings: SamplingSettings,
    kernels: list[Kernel],
    potential: Any,
    progress: _Progress,
    generator: torch.Generator,
    folder: Path,
    model_check: dict[str, Any],
) -> dict[str, Any]:
    """Write the samples, basin populations, plots and summary.json (with ``model_check`` as
    ``model_for_sampling``); return the summary."""
    positions, energies = torch.stack(progress.positions), torch.stack(progress.energies)
    n_samples, n_chains, dim = positions.shape
    q, u_phys = _to_physical(settings.method, potential, positions.reshape(-1, dim), energies.reshape(-1))
    beta_energy = target.energy_from_potential(q, u_phys).detach().reshape(n_samples, n_chains).cpu().numpy()
    indicators = {name: value.reshape(n_samples, n_chains) for name, value in target.indicators(q).items()}
    summary = _run_figures(target, settings, kernels, progress)
    summary.update(_observable_figures(beta_energy, indicators, summary["energy_evaluations"], progress.cpu_seconds))
    summary["mean_curvature"] = _curvature_figures(progress.curvature)
    summary["model_for_sampling"] = model_check
    summary["chain_starts"] = progress.start_source
    if target.placed_dim:
        summary["flow_importance_weights"] = "not defined: the model leaves out hydrogens that the flow does not draw"
    elif settings.method == "auto" and _measures_kish(model, target, settings):
        # Measured before the warm-up, where it chose the kernel.
        (mixture,) = (kernel for kernel in kernels if isinstance(kernel, FlowMixture))
        summary["flow_importance_weights"] = mixture.flow_weights
    elif _measures_kish(model, target, settings):
        summary["flow_importance_weights"] = flow_importance_weights(
            LatentPotential(model, target.potential), model.dim, settings.kish_samples, generator, model.masses.dtype
        )
    if model.flow.acts_on_configuration:
        fractions = flow_basin_fractions(model, target, FLOW_REACH_DRAWS, generator)
        unreached = [
            name
            for name, figures in summary["populations"].items()
            if mark_unreached(figures, fractions[name], FLOW_REACH_DRAWS)
        ]
    else:
        unreached = []
    # Unbiased MD of the same density, where the model recorded it (None for older models and biased data).
    training = (model.metadata.get("molecule") or {}).get("training_basins") or {"basins": {}}
    disagreeing = [
        name
        for name, figures in summary["populations"].items()
        if name not in unreached
        and name in training["basins"]
        and mark_against_training_data(figures, training["basins"][name])
    ]
    summary["convergence"] = _convergence(summary, unreached, disagreeing)
    q_array = q.detach().reshape(n_samples, n_chains, dim).cpu().numpy()
    if target.kind == "molecule":
        _write_molecular_outputs(target, q_array, summary, folder)
    else:
        atomic_savez(folder / "samples.npz", q=q_array, potential_energy_kT=beta_energy)
        summary["samples_file"] = "samples.npz (q: samples x chains x n, potential_energy_kT: samples x chains)"
    write_json(folder / "summary.json", summary)
    return summary


def _write_molecular_outputs(target: SamplingTarget, q: np.ndarray, summary: dict, folder: Path) -> None:
    """``samples.nc`` + ``topology.pdb`` (MDTraj and MDAnalysis read them) and the phi/psi histograms and plots.

    ``q`` has shape (samples, chains, n).
    """
    n_samples, n_chains, dim = q.shape
    chain_major = torch.as_tensor(q.transpose(1, 0, 2).reshape(-1, dim))
    frames = target.potential.positions(chain_major).detach().numpy()
    _write_trajectory(target, frames, n_samples, n_chains, folder)
    _write_phi_psi(target, frames, folder)
    summary["trajectory"] = "samples.nc (AMBER NetCDF, positions in the reference frame) with topology.pdb"


def _write_trajectory(target: SamplingTarget, frames: np.ndarray, n_samples: int, n_chains: int, folder: Path) -> None:
    """The sampled frames (n_frames, n_atoms, 3) in nm, chain by chain, as ``samples.nc`` with ``topology.pdb``."""
    from ..data.netcdf import CONTENT_ATTRIBUTE, SAMPLES_CONTENT, NetCDFFrames, write_netcdf
    from ..md.simulate import write_topology

    write_topology(target.md_system, folder)
    content = f"{SAMPLES_CONTENT}{n_chains} chains, {n_samples} each, chain by chain; time is the sample index"
    write_netcdf(
        folder / "samples.nc",
        NetCDFFrames(frames, None, np.arange(len(frames), dtype=np.float64), {CONTENT_ATTRIBUTE: content}),
    )


def _write_phi_psi(target: SamplingTarget, frames: np.ndarray, folder: Path) -> None:
    """Per residue with phi and psi: the free-energy plot of the sampled frames and their 10-degree histogram."""
    import mdtraj

    from ..analysis.plots import plot_fes

    topology = mdtraj.Topology.from_openmm(target.md_system.topology)
    edges = np.linspace(-180.0, 180.0, 37)
    histograms = {}
    for label, phi, psi in ramachandran_angles(topology, frames):
        histograms[label], _, _ = np.histogram2d(np.degrees(phi), np.degrees(psi), bins=[edges, edges])
        plot_fes(
            np.degrees(phi),
            np.degrees(psi),
            folder / f"phi_psi_free_energy_{label.replace(':', '_')}.png",
            labels=(rf"$\phi$ {label} (degrees)", rf"$\psi$ {label} (degrees)"),
        )
    if histograms:
        atomic_savez(folder / "phi_psi_histogram.npz", edges_deg=edges, **histograms)
