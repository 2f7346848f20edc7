"""``neuralct sample`` as a function: the target of a model, chains with checkpoints, and what they measured."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import NeuralCTError
from ..io import DamagedFile, atomic_savez, atomic_torch_save, torch_load_verified, write_json
from ..model.transformation import NeuralCanonicalTransformation
from ..sampling.chains import end_warmup_iteration, iterate
from ..sampling.diagnostics import (
    R_HAT_LIMIT,
    CurvatureSum,
    basin_population,
    curvature_figures,
    kish_effective_sample_size,
    observable_efficiency,
    sampling_efficiency,
    split_r_hat,
)
from ..sampling.hmc import ChainState, HamiltonianMonteCarlo, IndependenceMetropolis
from ..sampling.resources import evaluation_bytes_per_row
from ..sampling.targets import LatentPotential, SamplingTarget, ramachandran_angles
from .memory import check_fits

__all__ = [
    "METHODS",
    "CHECKPOINT_FILE",
    "SamplingSettings",
    "check_method",
    "build_kernels",
    "START_CANDIDATES_PER_CHAIN",
    "WARMUP_SCHEDULE",
    "starting_points",
    "EVALUATION_CHUNK",
    "KISH_CHUNK",
    "EVALUATION_OVERHEAD",
    "CHAIN_ARRAYS",
    "RECORD_COPIES",
    "POSITION_COPIES",
    "AUTOCORRELATION_FLOATS",
    "REPORT_BYTES",
    "ITERATION_BYTES",
    "WARMUP_ITERATION_BYTES",
    "KISH_COPIES",
    "memory_needed",
    "check_memory",
    "run_sampling",
]


#: Sampling methods: HMC in the flow's latent space, HMC in the model's physical coordinates,
#: independence moves from the flow, and independence moves alternating with latent HMC.
METHODS = ("latent-hmc", "hmc", "independence", "mixed")


CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class SamplingSettings:
    """What a sampling run does (every field changes the result except ``checkpoint_every`` and ``progress``)."""

    method: str = "latent-hmc"
    chains: int = 16
    samples: int = 1000
    warmup: int = 200
    step_size: float = 0.1
    leapfrog_steps: int = 10
    target_acceptance: float = 0.65
    mass_matrix: str = "curvature"
    kish_samples: int = 1000
    checkpoint_every: int = 100
    progress: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise NeuralCTError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.mass_matrix not in HamiltonianMonteCarlo.MASS_MATRICES:
            raise NeuralCTError(
                f"--mass-matrix must be one of {', '.join(HamiltonianMonteCarlo.MASS_MATRICES)}, got {self.mass_matrix!r}"
            )
        if self.mass_matrix == "curvature" and self.method != "independence" and self.warmup < 2:
            raise NeuralCTError(
                f"--mass-matrix curvature needs --warmup 2 or more (the masses are fitted half-way), got {self.warmup}; or use --mass-matrix unit"
            )


def check_method(method: str, target: SamplingTarget) -> None:
    """Refuse independence moves for a model that leaves hydrogens out: the flow cannot draw them."""
    if target.placed_dim and method in ("independence", "mixed"):
        raise NeuralCTError(
            f"--method {method} draws whole configurations from the flow, but this model leaves {target.description['placed_hydrogens']} hydrogens out; "
            "use --method latent-hmc or hmc, or a model trained with --selection all"
        )


def build_kernels(
    method: str, model: NeuralCanonicalTransformation, target: SamplingTarget, settings: SamplingSettings
):
    """Kernels of ``method`` and the potential they sample (latent ``U(u)`` or physical ``U_phys``)."""
    check_method(method, target)
    if method == "hmc":
        potential = target.potential
    else:
        potential = LatentPotential(model, target.potential)
    hmc = lambda steps: HamiltonianMonteCarlo(
        potential, settings.step_size, steps, settings.target_acceptance, mass_matrix=settings.mass_matrix
    )  # noqa: E731
    kernels = {
        "hmc": lambda: [hmc(settings.leapfrog_steps)],
        "latent-hmc": lambda: [hmc(settings.leapfrog_steps)],
        "independence": lambda: [IndependenceMetropolis(potential)],
        "mixed": lambda: [IndependenceMetropolis(potential), hmc(settings.leapfrog_steps)],
    }[method]()
    return kernels, potential


#: Flow draws per chain from which the starting points are picked (see :func:`starting_points`).
START_CANDIDATES_PER_CHAIN = 8


#: How chains start and warm up (:func:`starting_points`, :func:`~neuralct.sampling.chains.end_warmup_iteration`),
#: recorded with a run's settings so that a folder warmed up otherwise is not resumed.
WARMUP_SCHEDULE = "start: lowest-energy eighth of flow draws; relax 1/4, fit masses 1/4, adapt step 1/2"


def starting_points(
    model: NeuralCanonicalTransformation, target: SamplingTarget, method: str, chains: int, generator: torch.Generator
) -> tuple[torch.Tensor, int]:
    """Where the chains start: the ``chains`` lowest-energy of ``8 chains`` draws from the flow.

    Hydrogens the model leaves out start where the system's structure has them.

    A start far from equilibrium is costly in a latent space: a chain started in a steep,
    squeezed region (the model's mean configuration, with every methyl group's hydrogens
    averaged onto its axis, or one clashing draw) can stay there for the whole run, and its
    gradients would dominate the curvature mass matrix. The lowest-energy draws of the flow are
    diverse, typical configurations. Models whose flow also moves momenta have no
    configuration-space inverse; their physical chains start at the mean configuration.

    Returns
    -------
    start : torch.Tensor, shape=(chains, n)
        Latent points for the latent methods, physical configurations for ``hmc``.
    evaluations : int
        Potential evaluations spent choosing them.

    Raises
    ------
    NeuralCTError
        If fewer than ``chains`` draws have a finite energy.
    """
    placed = target.placed_start.to(model.masses.dtype)
    if not model.flow.acts_on_configuration:
        return torch.cat([model.position_offset.expand(chains, model.dim), placed.expand(chains, -1)], dim=1), 0
    latent = LatentPotential(model, target.potential)
    draws = torch.randn(START_CANDIDATES_PER_CHAIN * chains, model.dim, generator=generator, dtype=model.masses.dtype)
    draws = torch.cat([draws, placed.expand(len(draws), -1)], dim=1)
    (energy,) = _in_chunks(lambda u: (latent(u),), draws)
    finite = int(torch.isfinite(energy).sum())
    if finite < chains:
        raise NeuralCTError(
            f"only {finite} of {len(draws)} configurations drawn from the flow have a finite energy; the model does not match the system"
        )
    start = draws[torch.argsort(torch.nan_to_num(energy, nan=torch.inf))[:chains]]
    if method == "hmc":
        with torch.no_grad():
            start = latent.to_physical(start)[0]
    return start, len(draws)


#: Points per evaluation without gradients of many points at once (the starting draws, the recorded samples): the
#: memory of the flow's intermediate arrays stays bounded whatever --chains and --samples are.
EVALUATION_CHUNK = 1024


def _in_chunks(
    function: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], points: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """``function(points)`` without gradients, :data:`EVALUATION_CHUNK` rows at a time; rows must be independent."""
    with torch.no_grad():
        parts = [
            function(points[start : start + EVALUATION_CHUNK]) for start in range(0, len(points), EVALUATION_CHUNK)
        ]
    return tuple(torch.cat(columns) for columns in zip(*parts))


def _to_physical(method: str, potential, positions: torch.Tensor, energies: torch.Tensor):
    """Sampled points and potentials (of the kernels' ``potential``) to physical points and ``U_phys`` (batch, n), (batch,)."""
    if method == "hmc":
        return positions, energies
    q, log_det = _in_chunks(potential.to_physical, positions)
    return q, energies + log_det


#: Flow draws per chunk of Kish's importance weights.
KISH_CHUNK = 256


def _measures_kish(model: NeuralCanonicalTransformation, target: SamplingTarget, settings: SamplingSettings) -> bool:
    """Whether a run measures Kish's ESS of the flow: asked for, and the flow draws whole configurations."""
    return bool(settings.kish_samples) and not target.placed_dim and model.flow.acts_on_configuration


def _kish(
    model: NeuralCanonicalTransformation,
    target: SamplingTarget,
    n: int,
    generator: torch.Generator,
    chunk: int = KISH_CHUNK,
) -> dict[str, float]:
    """Kish's ESS of the flow's importance weights ``w = exp(-U_phys(g(u))) |det dg/du| / N(u)`` for ``u ~ N(0, I)``."""
    latent = LatentPotential(model, target.potential)
    log_weights = []
    for start in range(0, n, chunk):
        u = torch.randn(min(chunk, n - start), model.dim, generator=generator, dtype=model.masses.dtype)
        with torch.no_grad():
            energy = latent(u)
        log_weights.append((-energy + 0.5 * (u**2).sum(-1)).cpu())
    log_weights = torch.cat(log_weights).numpy()
    ess = kish_effective_sample_size(log_weights)
    return {
        "kish_ess": ess,
        "kish_ess_fraction": ess / n,
        "flow_samples": n,
        "nonfinite_weights": int((~np.isfinite(log_weights)).sum()),
    }


#: Peak memory of an energy-and-gradient evaluation per byte that autograd saves for the backward pass (those
#: tensors, the gradients of the pass and the forward's temporaries): 1.3 to 2.2 measured on toy and alanine models.
EVALUATION_OVERHEAD = 3.0


#: Arrays of shape (chains, n) alive in one HMC step: position, gradient, momenta, proposal and row-selected copies.
CHAIN_ARRAYS = 16


#: Copies of each recorded point and energy alive at once, at worst: the recorded lists, their stack, the serialised
#: checkpoint and its bytes, the physical points of the report (freed memory is not always returned to the system).
RECORD_COPIES = 8


#: Copies of each recorded sample's atomic positions in the report: the frame's and the placed hydrogens' temporaries,
#: the dihedrals, the written frames (6 to 10 kB per alanine dipeptide sample measured, 12.5 kB counted with its point).
POSITION_COPIES = 16


#: Floats per recorded sample in the autocorrelation of an observable (an FFT zero-padded to up to 4 times its length, complex).
AUTOCORRELATION_FLOATS = 16


#: Bytes of the report whatever its size: the plotting library and the writers of the files.
REPORT_BYTES = 64e6


#: Bytes per recorded iteration beyond its numbers: the tensor objects in the recorded lists (measured 1.1 kB).
ITERATION_BYTES = 2048


#: Bytes per warm-up iteration: a float of the step-size history, and its copy in a checkpoint.
WARMUP_ITERATION_BYTES = 64


#: Copies of Kish's log-weights alive at once (the chunks, their concatenation, the array).
KISH_COPIES = 4


def memory_needed(
    model: NeuralCanonicalTransformation, target: SamplingTarget, settings: SamplingSettings
) -> dict[str, tuple[float, str]]:
    """A generous estimate of the memory a run's large arrays take, in bytes, by what holds them.

    The memory of one energy-and-gradient evaluation per point is measured on a few points
    (:func:`~neuralct.sampling.resources.evaluation_bytes_per_row`, times
    :data:`EVALUATION_OVERHEAD`); the rest is counted from the settings: the chains' batch and
    their starting draws, the recorded samples (with their atomic positions for molecules) and
    their copies at a checkpoint and in the report, Kish's flow samples, the warm-up's history.

    Returns
    -------
    dict of str to (float, str)
        What holds the memory -> (bytes, the options that scale it).
    """
    float_bytes = model.masses.element_size()
    dim = model.dim + target.placed_dim
    atoms = target.description["atoms"] if target.kind == "molecule" else 0
    configuration_flow = model.flow.acts_on_configuration
    if configuration_flow:
        # The latent potential costs the most: the flow, then the physical potential.
        potential, point = LatentPotential(model, target.potential), torch.zeros(1, model.dim, dtype=model.masses.dtype)
    else:
        potential, point = target.potential, model.position_offset[None]
    point = torch.cat([point, target.placed_start.to(point.dtype)], dim=1)
    row = EVALUATION_OVERHEAD * evaluation_bytes_per_row(potential, point)
    chains, samples = settings.chains, settings.samples
    draws = START_CANDIDATES_PER_CHAIN * chains if configuration_flow else 0
    recorded = samples * chains
    needed = {
        "the chains": (
            chains * (row + CHAIN_ARRAYS * dim * float_bytes)
            + draws * (dim + 2) * float_bytes
            + min(draws, EVALUATION_CHUNK) * row,
            "--chains",
        ),
        "the recorded samples": (
            recorded * float_bytes * ((dim + 1) * RECORD_COPIES + 3 * atoms * POSITION_COPIES + AUTOCORRELATION_FLOATS)
            + samples * ITERATION_BYTES
            + min(recorded, EVALUATION_CHUNK) * row
            + REPORT_BYTES,
            "--samples or --chains",
        ),
        "the warm-up": (settings.warmup * WARMUP_ITERATION_BYTES, "--warmup"),
    }
    if _measures_kish(model, target, settings):
        needed["Kish's flow samples"] = (
            settings.kish_samples * float_bytes * KISH_COPIES + min(settings.kish_samples, KISH_CHUNK) * row,
            "--kish-samples",
        )
    return needed


def check_memory(model: NeuralCanonicalTransformation, target: SamplingTarget, settings: SamplingSettings) -> None:
    """Refuse a run whose arrays would not fit in the memory the machine has free (:func:`memory_needed`), before any work.

    Raises
    ------
    NeuralCTError
        Naming the memory needed, what needs most of it, the memory available and the option to reduce.
    """
    check_fits(
        memory_needed(model, target, settings), f"sampling {settings.chains} chains for {settings.samples} samples"
    )


def run_sampling(
    model: NeuralCanonicalTransformation,
    target: SamplingTarget,
    settings: SamplingSettings,
    folder: Path,
    seed: int = 0,
    resume: bool = False,
) -> dict[str, Any]:
    """Run the chains, checkpointing into ``folder``, and write samples, plots and summary.json.

    Chains start at the lowest-energy draws of the flow (:func:`starting_points`). A run found
    in ``folder/checkpoint.pt`` (``resume``) continues where it
    stopped; the result is the same as an uninterrupted run. :func:`check_memory` tells
    beforehand whether the run fits in memory.

    Returns
    -------
    dict
        The summary written to ``folder/summary.json``.

    Raises
    ------
    NeuralCTError
        If the checkpoint to resume from is damaged or belongs to other settings.
    """
    from tqdm import tqdm

    dtype = model.masses.dtype
    kernels, potential = build_kernels(settings.method, model, target, settings)
    generator = torch.Generator().manual_seed(seed)
    checkpoint_path = folder / CHECKPOINT_FILE
    if resume and checkpoint_path.exists():
        try:
            saved = torch_load_verified(checkpoint_path)
            state = ChainState(saved["position"], saved["energy"], saved["gradient"])
            generator.set_state(saved["generator"])
            for kernel, kernel_state in zip(kernels, saved["kernels"], strict=True):
                kernel.load_state_dict(kernel_state)
            done, positions, energies = saved["iteration"], list(saved["positions"]), list(saved["energies"])
            wall, cpu, start_evaluations = saved["wall_seconds"], saved["cpu_seconds"], saved["start_evaluations"]
            curvature = CurvatureSum(saved["curvature_sum"], saved["curvature_count"])
            # A file that loads but holds other chains would fail later, far from its cause.
            point_shape = (settings.chains, model.dim + target.placed_dim)
            if (
                state.position.shape != point_shape
                or len(positions) != max(done - settings.warmup, 0)
                or any(p.shape != point_shape for p in positions)
            ):
                raise ValueError("chains of another shape")
        except PermissionError:
            raise
        except DamagedFile as exc:
            raise NeuralCTError(
                f"checkpoint {checkpoint_path} is damaged: {exc}; rerun with --overwrite to start again"
            ) from None
        except Exception as exc:
            raise NeuralCTError(
                f"checkpoint {checkpoint_path} is damaged or incomplete ({type(exc).__name__}); rerun with --overwrite to start again"
            ) from None
    else:
        start, choosing = starting_points(model, target, settings.method, settings.chains, generator)
        state = ChainState.start(potential, start)
        if not bool(torch.isfinite(state.energy).all()):
            raise NeuralCTError(
                "the potential energy is not finite at the chains' starting points; the model does not match the system"
            )
        done, positions, energies, wall, cpu, start_evaluations = 0, [], [], 0.0, 0.0, choosing + settings.chains
        curvature = CurvatureSum()
    total = settings.warmup + settings.samples
    wall_start, cpu_start = time.perf_counter(), time.process_time()

    def save_checkpoint() -> None:
        atomic_torch_save(
            {
                "iteration": done,
                "position": state.position,
                "energy": state.energy,
                "gradient": state.gradient,
                "generator": generator.get_state(),
                "kernels": [kernel.state_dict() for kernel in kernels],
                "positions": torch.stack(positions)
                if positions
                else torch.zeros(0, settings.chains, model.dim + target.placed_dim, dtype=dtype),
                "energies": torch.stack(energies) if energies else torch.zeros(0, settings.chains, dtype=dtype),
                "wall_seconds": wall + time.perf_counter() - wall_start,
                "cpu_seconds": cpu + time.process_time() - cpu_start,
                "start_evaluations": start_evaluations,
                "curvature_sum": curvature.total,
                "curvature_count": curvature.count,
            },
            checkpoint_path,
        )

    with tqdm(
        total=total,
        initial=done,
        desc=f"sample {settings.method}",
        unit="iteration",
        disable=not settings.progress,
        mininterval=0.5,
    ) as bar:
        while done < total:
            warming = done < settings.warmup
            state = iterate(kernels, state, generator, adapt=warming)
            done += 1
            if warming:
                end_warmup_iteration(kernels, done, settings.warmup)
            else:
                positions.append(state.position)
                energies.append(state.energy)
                curvature.add(state.energy, state.gradient)
            if done % settings.checkpoint_every == 0 or done == total:
                save_checkpoint()
            bar.update(1)
    wall += time.perf_counter() - wall_start
    cpu += time.process_time() - cpu_start
    return _report(
        model,
        target,
        settings,
        kernels,
        potential,
        torch.stack(positions),
        torch.stack(energies),
        folder,
        wall,
        cpu,
        start_evaluations,
        generator,
        curvature,
    )


def _report(
    model,
    target,
    settings,
    kernels,
    potential,
    positions,
    energies,
    folder,
    wall,
    cpu,
    start_evaluations,
    generator,
    curvature,
) -> dict[str, Any]:
    """Write the samples, basin populations, plots and summary.json; return the summary."""
    n_samples, n_chains, dim = positions.shape
    q, u_phys = _to_physical(settings.method, potential, positions.reshape(-1, dim), energies.reshape(-1))
    beta_energy = target.energy_from_potential(q, u_phys).detach().reshape(n_samples, n_chains).cpu().numpy()
    indicators = {name: value.reshape(n_samples, n_chains) for name, value in target.indicators(q).items()}
    evaluations = sum(kernel.statistics.evaluations for kernel in kernels)
    warmup_evaluations = sum(kernel.statistics.warmup_evaluations for kernel in kernels) + start_evaluations
    summary: dict[str, Any] = {
        "target": target.description,
        "settings": {
            key: value for key, value in asdict(settings).items() if key not in ("progress", "checkpoint_every")
        },
        "kernels": {kernel.name: kernel.statistics.as_dict() for kernel in kernels},
        "step_size": {kernel.name: kernel.step_size for kernel in kernels if isinstance(kernel, HamiltonianMonteCarlo)},
        "energy_evaluations": evaluations,
        "warmup_energy_evaluations": warmup_evaluations,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "samples_order": "iteration-major arrays (samples, chains, ...); trajectory frames chain by chain",
        "potential_energy_kT": observable_efficiency(beta_energy, evaluations, cpu),
        "indicators": {name: sampling_efficiency(value, evaluations, cpu) for name, value in indicators.items()},
        "ess_per_evaluation_note": "ESS over all chains divided by the energy-and-gradient evaluations of the sampling phase (warm-up excluded)",
        "populations": {name: basin_population(value) for name, value in indicators.items()},
        "populations_note": (
            "fraction of all recorded samples in each basin; its standard error is the larger of the autocorrelation estimate and the error "
            "of a two-state Markov chain with as many stays in the basin, so that a basin the chains entered rarely is not given a tight error; "
            "a basin no chain entered has no population, only an upper bound"
        ),
        "mean_curvature": {
            **curvature_figures(np.linalg.eigvalsh(curvature.mean().cpu().numpy())),
            "states": curvature.count,
            "note": "E[grad U grad U^T] = E[Hessian of U] of the potential the chains sample, over the recorded states; "
            "in the latent space of an exact flow every eigenvalue is 1, and large ones bound the HMC step",
        },
    }
    observables = {"potential energy": beta_energy, **indicators}
    summary["convergence"] = {
        "r_hat_limit": R_HAT_LIMIT,
        # Chains that do not move at all have an infinite R-hat (null in the figures): they count as not converged.
        "not_converged": [name for name, series in observables.items() if split_r_hat(series) > R_HAT_LIMIT],
        "note": "split R-hat of each observable over the chains; above the limit the chains disagree (stuck, or still drifting from their starts)",
    }
    if target.placed_dim:
        summary["flow_importance_weights"] = "not defined: the model leaves out hydrogens that the flow does not draw"
    elif _measures_kish(model, target, settings):
        summary["flow_importance_weights"] = _kish(model, target, settings.kish_samples, generator)
    q_array = q.detach().reshape(n_samples, n_chains, dim).cpu().numpy()
    if target.kind == "molecule":
        _write_molecular_outputs(target, q_array, summary, folder)
    else:
        atomic_savez(folder / "samples.npz", q=q_array, potential_energy_kT=beta_energy)
        summary["samples_file"] = "samples.npz (q: samples x chains x n, potential_energy_kT: samples x chains)"
    write_json(folder / "summary.json", summary)
    return summary


def _write_molecular_outputs(target: SamplingTarget, q: np.ndarray, summary: dict, folder: Path) -> None:
    """``samples.nc`` + ``topology.pdb`` (MDTraj and MDAnalysis read them) and the phi/psi histograms and free-energy plots."""
    import mdtraj

    from ..analysis.plots import plot_fes
    from ..data.netcdf import NetCDFFrames, write_netcdf
    from ..md.simulate import write_topology

    n_samples, n_chains, dim = q.shape
    chain_major = torch.as_tensor(q.transpose(1, 0, 2).reshape(-1, dim))
    frames = target.potential.positions(chain_major).detach().numpy()
    write_topology(target.md_system, folder)
    write_netcdf(
        folder / "samples.nc",
        NetCDFFrames(
            frames,
            None,
            np.arange(len(frames), dtype=np.float64),
            {
                "neuralct_content": f"samples of {n_chains} chains, {n_samples} each, chain by chain; time is the sample index"
            },
        ),
    )
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
    summary["trajectory"] = "samples.nc (AMBER NetCDF, positions in the reference frame) with topology.pdb"
