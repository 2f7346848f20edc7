"""Running kernels on a batch of chains: where they start, warm-up with adaptation, then fixed kernels in turn."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import torch

from ..errors import NeuralCTError
from ..model.transformation import NeuralCanonicalTransformation
from .hmc import ChainState, HamiltonianMonteCarlo
from .mixture import FlowMixture
from .targets import LatentPotential, SamplingTarget

__all__ = [
    "Kernel",
    "START_CANDIDATES_PER_CHAIN",
    "WARMUP_SCHEDULE",
    "EVALUATION_CHUNK",
    "in_chunks",
    "flow_draws",
    "training_frames",
    "starting_points",
    "flow_basin_fractions",
    "warm_up",
    "end_warmup_iteration",
    "iterate",
    "sample_chains",
    "component_kernels",
]

#: Flow draws per chain from which the starting points are picked (see :func:`starting_points`).
START_CANDIDATES_PER_CHAIN = 8

#: How chains start and warm up (:func:`starting_points`, :func:`end_warmup_iteration`), recorded with a run's
#: settings so that a folder warmed up otherwise is not resumed.
WARMUP_SCHEDULE = (
    "start: random frames of the model's training trajectories, else the lowest-energy eighth of flow draws; "
    "relax 1/4, fit masses 1/4, adapt step 1/2"
)

#: Points per evaluation without gradients of many points at once (the starting draws, the recorded samples): the
#: memory of the flow's intermediate arrays stays bounded whatever the numbers of chains and samples are.
EVALUATION_CHUNK = 1024


class Kernel(Protocol):
    """A Markov kernel on a batch of chains (see :mod:`neuralct.sampling.hmc`)."""

    name: str

    def step(self, state: ChainState, generator: torch.Generator | None = None, adapt: bool = False) -> ChainState: ...


def iterate(
    kernels: Sequence[Kernel], state: ChainState, generator: torch.Generator | None = None, adapt: bool = False
) -> ChainState:
    """One iteration: each kernel once, in order. A composition of invariant kernels is invariant."""
    for kernel in kernels:
        state = kernel.step(state, generator, adapt=adapt)
    return state


def warm_up(
    kernels: Sequence[Kernel], state: ChainState, iterations: int, generator: torch.Generator | None = None
) -> ChainState:
    """``iterations`` adapting iterations (see :func:`end_warmup_iteration`); the kernels are fixed from here on."""
    for done in range(1, iterations + 1):
        state = iterate(kernels, state, generator, adapt=True)
        end_warmup_iteration(kernels, done, iterations)
    return state


def end_warmup_iteration(kernels: Sequence[Kernel], done: int, iterations: int) -> None:
    """After warm-up iteration ``done`` of ``iterations``: fit HMC mass matrices half-way, freeze step sizes at the end.

    For ``mass_matrix="curvature"`` the first quarter lets the chains relax from their starts
    (its curvature is discarded: ``E[grad U grad U^T]`` is the mean Hessian only at
    equilibrium), the second quarter collects the curvature of the visited states, and the
    second half adapts the step size to the fitted masses. A
    :class:`~neuralct.sampling.mixture.FlowMixture` passes these to its HMC and, at the end,
    fixes its independence moves per trajectory from what its second half measured.
    """
    for kernel in kernels:
        if isinstance(kernel, (HamiltonianMonteCarlo, FlowMixture)):
            if done == iterations // 4 and iterations // 4 < iterations // 2:
                kernel.discard_curvature()
            if done == iterations // 2:
                kernel.fit_mass_matrix()
            if done == iterations:
                kernel.freeze()


def sample_chains(
    kernels: Sequence[Kernel], state: ChainState, warmup: int, samples: int, generator: torch.Generator | None = None
) -> tuple[ChainState, torch.Tensor]:
    """Warm up, then record the positions after each of ``samples`` iterations.

    Returns
    -------
    state : ChainState
        The final state.
    positions : torch.Tensor, shape=(samples, chains, n)
        Recorded positions in the kernels' space.
    """
    state = warm_up(kernels, state, warmup, generator)
    recorded = []
    for _ in range(samples):
        state = iterate(kernels, state, generator)
        recorded.append(state.position)
    return state, torch.stack(recorded)


def component_kernels(kernels: Sequence[Kernel]) -> list[Kernel]:
    """The kernels that move the chains, each with its own statistics: a mixture's components in place of it."""
    return [part for kernel in kernels for part in (kernel.components if isinstance(kernel, FlowMixture) else [kernel])]


def in_chunks(
    function: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], points: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """``function(points)`` without gradients, :data:`EVALUATION_CHUNK` rows at a time; rows must be independent."""
    with torch.no_grad():
        parts = [
            function(points[start : start + EVALUATION_CHUNK]) for start in range(0, len(points), EVALUATION_CHUNK)
        ]
    return tuple(torch.cat(columns) for columns in zip(*parts))


def flow_draws(
    model: NeuralCanonicalTransformation, target: SamplingTarget, n: int, generator: torch.Generator
) -> torch.Tensor:
    """``n`` latent points ``u ~ N(0, I)`` of ``model``, each followed by the hydrogens the model leaves out.

    The hydrogens are where the system's structure has them (``target.placed_start``).

    Returns
    -------
    torch.Tensor, shape=(n, model.dim + target.placed_dim)
        In the model's dtype.
    """
    draws = torch.randn(n, model.dim, generator=generator, dtype=model.masses.dtype)
    return torch.cat([draws, target.placed_start.to(draws.dtype).expand(n, -1)], dim=1)


def training_frames(
    model: NeuralCanonicalTransformation, target: SamplingTarget, n: int, generator: torch.Generator
) -> tuple[np.ndarray | None, str]:
    """``n`` frames drawn at random from the model's training and validation trajectories, where they can be read.

    Unbiased MD frames are equilibrium configurations spread over the basins as the density
    spreads them: chains started there sit in different basins, so that chains which do not move
    between basins disagree and split R-hat says so. Only molecules, only the trajectories the model
    records (``metadata["molecule"]``) that are still there, only frames of every atom of the target
    (read with the topology :func:`~neuralct.data.loading.topology_file` finds, else the system's)
    without a periodic box, and only unbiased ones: not for a model that records no basins of its frames (weighted,
    rescaled or ``bias`` frames, :func:`~neuralct.workflows.train.training_basins`).

    Returns
    -------
    frames : np.ndarray, shape=(n, n_atoms, 3), or None
        Positions of the whole system, nm; drawn without replacement where there are ``n`` or more frames.
    source : str
        Where they came from, or why there are none.
    """
    import mdtraj

    from ..data.loading import read_with_mdtraj, topology_file

    molecule = model.metadata.get("molecule") or {}
    if target.kind != "molecule" or not model.flow.acts_on_configuration:
        return None, "not a molecule with a configuration flow"
    if molecule.get("training_basins") is None:
        return None, "the model records no unbiased training frames: trained on biased ones, or before they were"
    paths = list(molecule.get("training_trajectories", [])) + list(molecule.get("validation_trajectories", []))
    # A file without its own topology or one beside it (another engine's DCD or XTC) is read with the system's.
    system_topology = mdtraj.Topology.from_openmm(target.md_system.topology)
    n_atoms = system_topology.n_atoms
    pieces = []
    for path in paths:
        try:
            frames = read_with_mdtraj(path, topology_file(Path(path), None) or system_topology)
        except Exception:
            return None, f"{path} cannot be read"
        if frames.n_atoms != n_atoms:
            return None, f"{path} holds {frames.n_atoms} atoms, the system {n_atoms}"
        if frames.unitcell_vectors is not None:
            return None, f"{path} holds a periodic box: its molecules may be torn across it"
        pieces.append(frames.xyz)
    if not pieces:
        return None, "the model records no training trajectories"
    frames = np.concatenate(pieces).astype(np.float64)
    if len(frames) >= n:
        index = torch.randperm(len(frames), generator=generator)[:n]
    else:
        index = torch.randint(len(frames), (n,), generator=generator)
    return frames[index.numpy()], f"{n} random frames of the {len(paths)} training and validation trajectories"


def starting_points(
    model: NeuralCanonicalTransformation, target: SamplingTarget, method: str, chains: int, generator: torch.Generator
) -> tuple[torch.Tensor, int, str]:
    """Where the chains start: random frames of the model's training trajectories, else the ``chains`` lowest-energy
    of ``8 chains`` draws from the flow.

    Frames of unbiased MD (:func:`training_frames`) are equilibrium configurations spread over the
    basins: chains that then never change basin disagree, and split R-hat flags them (on tri-alanine
    chains started at the flow's lowest-energy draws all sat in ALA3's major psi basin and agreed, at
    0.999 against 0.93 from MD; started at MD frames they gave 0.91-0.93, benchmarks/README.md, B4).
    Without such frames (toys, older models, biased data, files moved) the flow's draws are used,
    hydrogens the model leaves out where the system's structure has them.

    A start far from equilibrium is costly in a latent space: a chain started in a steep,
    squeezed region (the model's mean configuration, with every methyl group's hydrogens
    averaged onto its axis, or one clashing draw) can stay there for the whole run, and its
    gradients would dominate the curvature mass matrix. The lowest-energy draws of the flow are
    typical configurations. Models whose flow also moves momenta have no configuration-space
    inverse; their physical chains start at the mean configuration.

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        The model whose flow is drawn from.
    target : SamplingTarget
        What the chains sample.
    method : str
        ``"hmc"`` starts in physical coordinates, every other method in the latent space.
    chains : int
        Number of chains.
    generator : torch.Generator
        Random stream of the draws.

    Returns
    -------
    start : torch.Tensor, shape=(chains, n)
        Latent points for the latent methods, physical configurations for ``hmc``.
    evaluations : int
        Potential evaluations spent choosing them (each training frame's energy is checked).
    source : str
        Where they came from.

    Raises
    ------
    NeuralCTError
        If fewer than ``chains`` draws have a finite energy.
    """
    if not model.flow.acts_on_configuration:
        placed = target.placed_start.to(model.masses.dtype).expand(chains, -1)
        return torch.cat([model.position_offset.expand(chains, model.dim), placed], dim=1), 0, "the mean configuration"
    latent = LatentPotential(model, target.potential)
    frames, why = training_frames(model, target, chains, generator)
    checked = 0
    if frames is not None:
        points = target.potential.coordinates(frames).to(model.masses.dtype)
        with torch.no_grad():
            (energy,) = in_chunks(lambda q: (target.potential(q),), points)
        checked = len(points)
        # Frames the system does not match (atoms in another order, a molecule torn across a box) are not starts.
        if bool(torch.isfinite(energy).all()):
            if method != "hmc":
                with torch.no_grad():
                    points = latent.to_latent(points)
            return points, checked, why
        why = "a training frame has no finite energy in this system"
    draws = flow_draws(model, target, START_CANDIDATES_PER_CHAIN * chains, generator)
    (energy,) = in_chunks(lambda u: (latent(u),), draws)
    finite = int(torch.isfinite(energy).sum())
    if finite < chains:
        raise NeuralCTError(
            f"only {finite} of {len(draws)} configurations drawn from the flow have a finite energy; "
            "the model does not match the system"
        )
    start = draws[torch.argsort(torch.nan_to_num(energy, nan=torch.inf))[:chains]]
    if method == "hmc":
        with torch.no_grad():
            start = latent.to_physical(start)[0]
    source = f"the {chains} lowest-energy of {len(draws)} draws of the flow ({why})"
    return start, checked + len(draws), source


def flow_basin_fractions(
    model: NeuralCanonicalTransformation, target: SamplingTarget, n: int, generator: torch.Generator
) -> dict[str, float]:
    """Fraction of ``n`` draws of the flow in each of ``target``'s basins: where the model's training trajectories went.

    No energy is evaluated: each draw (:func:`flow_draws`) is mapped to a configuration and its
    basin indicators are read. ``model``'s flow must act on configurations.

    Returns
    -------
    dict of str to float
        Each of ``target.indicators`` averaged over the draws.
    """
    to_physical = LatentPotential(model, target.potential).to_physical
    (q,) = in_chunks(lambda u: (to_physical(u)[0],), flow_draws(model, target, n, generator))
    return {name: float(np.mean(value)) for name, value in target.indicators(q).items()}
