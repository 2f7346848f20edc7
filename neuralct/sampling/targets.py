"""Potentials to sample: the Boltzmann density in physical coordinates and pulled back to a flow's latent space."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..data import RigidBodyFrame
from ..errors import NeuralCTError
from ..model.transformation import NeuralCanonicalTransformation
from .hydrogens import HydrogenPlacement
from .rigid import rigid_body_log_jacobian

__all__ = [
    "ToyPotential",
    "MolecularPotential",
    "LatentPotential",
    "SamplingTarget",
    "flow_draws_whole_configurations",
    "toy_target",
    "refuse_explicit_solvent",
    "ramachandran_angles",
    "basin_indicators",
    "molecular_target",
]


class ToyPotential:
    """``beta U(q)`` of a toy system (:mod:`neuralct.toys.hamiltonians`), analytic in torch, in kT.

    Parameters
    ----------
    system : toy system
        Anything with ``potential(q)`` in energy units and ``kT``.
    """

    def __init__(self, system: Any):
        self.system = system

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        """Energies in kT, shape (batch,), of configurations (batch, n)."""
        return self.system.potential(q) / self.system.kT


class MolecularPotential:
    """``U(y, w) = beta E(x(y, w)) - ln J(y) - ln J_H(w)``: the Boltzmann density on a frame's internal coordinates.

    ``y`` are the internal coordinates of the frame's atoms, whose aligned positions are
    :meth:`RigidBodyFrame.from_internal`, and ``J`` their rigid-body volume element
    (:func:`~neuralct.sampling.rigid.rigid_body_log_jacobian`); without ``J`` the density is not
    the Cartesian Boltzmann distribution pushed onto y. Hydrogens the frame leaves out are placed
    by their internal coordinates ``w`` (:class:`~neuralct.sampling.hydrogens.HydrogenPlacement`)
    with volume element ``J_H``. A point is ``(y, w)`` concatenated: ``w`` is empty when the
    frame has every atom.

    Parameters
    ----------
    frame : RigidBodyFrame
        Defines y; its atoms are the system's atoms in the system's order, or (with
        ``hydrogens``) the atoms ``hydrogens.model_atoms``.
    energy : callable
        Positions (batch, n_atoms, 3) in nm to energies (batch,) in kT, differentiable
        (e.g. :class:`neuralct.md.energy.OpenMMEnergy` with ``unit="kT"``).
    rigid_body_jacobian : bool
        Include ``-ln J(y)`` (True for exact sampling; False only to measure its effect).
    hydrogens : HydrogenPlacement or None
        The hydrogens the frame leaves out.
    """

    def __init__(
        self,
        frame: RigidBodyFrame,
        energy: Callable[[torch.Tensor], torch.Tensor],
        rigid_body_jacobian: bool = True,
        hydrogens: HydrogenPlacement | None = None,
    ):
        self.frame = frame
        self.energy = energy
        self.rigid_body_jacobian = bool(rigid_body_jacobian)
        self.hydrogens = hydrogens

    @property
    def dim(self) -> int:
        """Coordinates of a point: the frame's, then 3 per placed hydrogen."""
        return self.frame.dim + (self.hydrogens.dim if self.hydrogens is not None else 0)

    def positions(self, point: torch.Tensor) -> torch.Tensor:
        """Aligned positions (batch, n_atoms, 3) in nm of points (batch, dim), in the system's atom order."""
        aligned = self.frame.from_internal(point[:, : self.frame.dim])
        if self.hydrogens is None:
            return aligned
        return self.hydrogens.place(aligned, point[:, self.frame.dim :])

    def coordinates(self, positions: np.ndarray) -> torch.Tensor:
        """Points (batch, dim) of frames (batch, n_atoms, 3) in nm of the whole system, in any orientation."""
        positions = np.asarray(positions, dtype=np.float64)
        if self.hydrogens is None:
            return torch.as_tensor(self.frame.to_internal(positions))
        y = torch.as_tensor(self.frame.to_internal(positions[:, self.hydrogens.model_atoms.numpy()]))
        return torch.cat([y, self.hydrogens.internal(torch.as_tensor(positions))], dim=1)

    def __call__(self, point: torch.Tensor) -> torch.Tensor:
        """``U`` in kT, shape (batch,); ``+inf`` outside the coordinates' domain."""
        energy = self.energy(self.positions(point))
        log_volume = self.log_volume(point)
        # Outside the domain the density is zero; keep the energy's NaN out of the gradient there.
        return torch.where(torch.isfinite(log_volume), energy - log_volume, torch.full_like(energy, torch.inf))

    def log_volume(self, point: torch.Tensor) -> torch.Tensor:
        """``ln J(y) + ln J_H(w)``, the volume terms of the density, shape (batch,); ``-inf`` outside the domain."""
        log_volume = torch.zeros(len(point), dtype=point.dtype, device=point.device)
        if self.rigid_body_jacobian:
            log_volume = log_volume + rigid_body_log_jacobian(self.frame, point[:, : self.frame.dim])
        if self.hydrogens is not None:
            log_volume = log_volume + self.hydrogens.log_jacobian(point[:, self.frame.dim :])
        return log_volume


class LatentPotential:
    """``U(u) = U_phys(g(u)) - ln|det dg/du|``: a physical potential pulled back through a flow.

    ``g`` is :meth:`NeuralCanonicalTransformation.configuration_from_latent`: the inverse of
    the configuration part of the flow (point transformations and the frequency layer, each
    with its own log-determinant) followed by the model's units. Sampling ``exp(-U(u))`` and
    mapping by ``g`` samples ``exp(-U_phys)`` exactly, whatever the flow's quality.
    Coordinates of a point beyond the model's ``dim`` (placed hydrogens,
    :class:`~neuralct.sampling.hydrogens.HydrogenPlacement`) are not the model's: ``g`` is the
    identity on them.

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        A model whose flow acts on configurations (point transformations only).
    physical_potential : callable
        ``U_phys`` in kT on physical points (batch, n) -> (batch,), ``n >= model.dim``.
    """

    def __init__(
        self, model: NeuralCanonicalTransformation, physical_potential: Callable[[torch.Tensor], torch.Tensor]
    ):
        model.require_configuration_flow()
        self.model = model
        self.physical_potential = physical_potential

    def to_physical(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q = g(u)`` and ``ln|det dg/du|``, shapes (batch, n) and (batch,)."""
        q, log_det = self.model.configuration_from_latent(u[:, : self.model.dim])
        return torch.cat([q, u[:, self.model.dim :]], dim=1), log_det

    def to_latent(self, q: torch.Tensor) -> torch.Tensor:
        """``u = g^-1(q)``, shape (batch, n) (to start chains from configurations)."""
        return torch.cat([self.model.configuration_to_latent(q[:, : self.model.dim])[0], q[:, self.model.dim :]], dim=1)

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """``U(u)`` in kT, shape (batch,)."""
        q, log_det = self.to_physical(u)
        return self.physical_potential(q) - log_det


@dataclass
class SamplingTarget:
    """The Boltzmann distribution a model is sampled against.

    Attributes
    ----------
    kind : {"toy", "molecule"}
    potential : callable
        ``U_phys`` in kT on the model's physical configurations (batch, n) -> (batch,).
    energy_from_potential : callable
        ``(q, U_phys) -> beta E``: the potential energy in kT from the sampled potential (they
        differ by the rigid-body term for molecules), without new energy evaluations.
    indicators : callable
        Configurations (batch, n) to a dict of named 0/1 arrays (batch,): basin indicators.
    description : dict
        Plain data naming the system for summary.json.
    md_system : MDSystem or None
        The molecular system (topology for the written trajectory); None for toys.
    placed_start : torch.Tensor, shape=(1, n_placed)
        Starting internal coordinates of the hydrogens the model leaves out (taken from the
        system's structure); shape (1, 0) when the model has every atom.
    """

    kind: str
    potential: Callable[[torch.Tensor], torch.Tensor]
    energy_from_potential: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    indicators: Callable[[torch.Tensor], dict[str, np.ndarray]]
    description: dict
    md_system: Any = None
    placed_start: torch.Tensor = field(default_factory=lambda: torch.zeros(1, 0, dtype=torch.float64))

    @property
    def placed_dim(self) -> int:
        """Coordinates of placed hydrogens at the end of each physical point."""
        return self.placed_start.shape[1]


def flow_draws_whole_configurations(model: NeuralCanonicalTransformation, target: SamplingTarget) -> bool:
    """Whether the flow draws every coordinate of ``target``'s configurations, so that its importance weights exist.

    Not for a flow that also moves momenta (it has no configuration-space inverse), nor for a
    model that leaves hydrogens out (the flow does not draw them).
    """
    return not target.placed_dim and model.flow.acts_on_configuration


def toy_target(model: NeuralCanonicalTransformation) -> SamplingTarget:
    """The toy system a toy model was trained on (from its metadata), with its analytic potential.

    Raises
    ------
    NeuralCTError
        If the model was not trained on a toy system.
    """
    from ..toys.hamiltonians import TOY_SYSTEMS, make_toy_system

    described = dict(model.metadata.get("system") or {})
    name = described.pop("name", None)
    if name not in TOY_SYSTEMS:
        raise NeuralCTError(
            "this model was trained neither on a toy system nor on molecular trajectories; it has nothing to sample"
        )
    system = make_toy_system(name, described)

    def indicators(q: torch.Tensor) -> dict[str, np.ndarray]:
        # The first coordinate separates the double well's basins; for the chain it is one atom's side.
        return {"x1 > 0": (q[:, 0] > 0).cpu().numpy().astype(np.float64)}

    return SamplingTarget("toy", ToyPotential(system), lambda q, u: u, indicators, system.describe())


def ramachandran_angles(topology, positions: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(residue label, phi, psi)`` in radians of every residue with both angles, atoms from the topology.

    Parameters
    ----------
    topology : mdtraj.Topology
    positions : np.ndarray, shape=(n_frames, n_atoms, 3)
        Positions in nm.
    """
    from ..analysis.dihedrals import dihedral_angles, find_dihedrals, ramachandran_residues

    dihedrals = find_dihedrals(topology)
    angles = dihedral_angles(positions, dihedrals)
    return [(residue.label, angles[:, i], angles[:, j]) for residue, i, j in ramachandran_residues(dihedrals)]


def basin_indicators(topology, positions: np.ndarray) -> dict[str, np.ndarray]:
    """0/1 indicators per frame and residue: ``phi > 0``, ``psi`` in the alpha band, each Ramachandran region.

    The alpha band of ``psi`` is (-120, 50) deg.

    Parameters
    ----------
    topology : mdtraj.Topology
    positions : np.ndarray, shape=(n_frames, n_atoms, 3)
        Positions in nm.

    Returns
    -------
    dict of str to np.ndarray, shape=(n_frames,)
        Keys name the indicator and the residue, e.g. ``phi > 0 (ALA2)``; empty without a backbone.
    """
    from ..analysis.states import STATE_NAMES, conformational_states

    found = {}
    for label, phi, psi in ramachandran_angles(topology, positions):
        found[f"phi > 0 ({label})"] = (phi > 0).astype(np.float64)
        found[f"psi in (-120, 50) deg ({label})"] = ((psi > math.radians(-120)) & (psi < math.radians(50))).astype(
            np.float64
        )
        states = conformational_states(phi, psi)
        found.update(
            {f"{name} ({label})": (states == index).astype(np.float64) for index, name in enumerate(STATE_NAMES)}
        )
    return found


def refuse_explicit_solvent(topology: Any, periodic: bool, source: str) -> None:
    """Refuse a system in explicit solvent (OpenMM ``topology``; ``periodic``: it has a box): the flow draws the
    solute's coordinates, not the solvent's."""
    from ..md.systems import solute_atoms

    solvent = topology.getNumAtoms() - len(solute_atoms(topology))
    if solvent:
        raise NeuralCTError(
            f"{source} is in explicit solvent ({solvent} water and ion atoms): the flow models the "
            "solute alone, and exact sampling would need the solvent's coordinates too; sample the solute in "
            "implicit solvent or vacuum (a bundled system or PDB with `solvent` obc2, or input files of the solute "
            "alone), or run `neuralct bias` in the explicit water"
        )
    if periodic:
        raise NeuralCTError(
            f"{source} holds no solvent but has a periodic box (a .gro always holds one), so the molecule would feel "
            "its own periodic images: sampling takes a system without a box; give the molecule as a PDB (with its "
            "force field), AMBER input files without a box, or an OpenMM System without periodic forces"
        )


def molecular_target(model: NeuralCanonicalTransformation, md_system, source: str) -> SamplingTarget:
    """The Boltzmann distribution of ``md_system`` on the model's internal coordinates, ``exp(-beta E) J``.

    A model of every atom samples its own coordinates. A model that leaves hydrogens out (e.g.
    ``--selection heavy``) samples them too: each is placed on the model's atoms by its bond
    length, angle and dihedral (:mod:`neuralct.sampling.hydrogens`), appended to the model's
    coordinates, with their volume element in the density.

    Raises
    ------
    NeuralCTError
        If the system is in explicit solvent, the model leaves out an atom that is not a hydrogen
        bonded to one of its atoms (sampling needs every atom's energy), or the system has constraints.
    """
    import mdtraj

    from ..md.energy import OpenMMEnergy
    from ..model.molecular import check_topology, rigid_body_frame, training_forcefield_note

    refuse_explicit_solvent(md_system.topology, md_system.periodic, source)
    molecule = model.metadata["molecule"]
    topology = mdtraj.Topology.from_openmm(md_system.topology)
    check_topology(model, topology, source)
    hydrogens = None
    if molecule["atom_indices"] != list(range(topology.n_atoms)):
        try:
            hydrogens = HydrogenPlacement.from_topology(topology, molecule["atom_indices"])
        except NeuralCTError as error:
            raise NeuralCTError(
                f"the model covers {len(molecule['atom_indices'])} of the {topology.n_atoms} atoms of {source} "
                f"(selection {molecule['selection']!r}), and {error}"
            ) from None
    if md_system.system.getNumConstraints():
        raise NeuralCTError(
            f"{source} has {md_system.system.getNumConstraints()} constraints; HMC samples unconstrained coordinates: "
            "build it with constraints none"
        )
    temperature = float(molecule["temperature_K"])
    potential = MolecularPotential(
        rigid_body_frame(model), OpenMMEnergy(md_system, unit="kT", temperature=temperature), hydrogens=hydrogens
    )

    def energy_from_potential(point: torch.Tensor, u_phys: torch.Tensor) -> torch.Tensor:
        return u_phys + potential.log_volume(point)

    def indicators(point: torch.Tensor) -> dict[str, np.ndarray]:
        return basin_indicators(topology, potential.positions(point).detach().cpu().numpy())

    description = {
        "system": md_system.name,
        "solvent": md_system.settings.get("solvent"),
        "atoms": topology.n_atoms,
        "temperature_K": temperature,
        "dimension": potential.dim,
        "placed_hydrogens": hydrogens.count if hydrogens is not None else 0,
    }
    if isinstance(md_system.settings.get("forcefield"), list):
        description["forcefield"] = md_system.settings["forcefield"]
    note = training_forcefield_note(model, md_system.settings, source)
    if note is not None:
        description["forcefield_note"] = note
    placed_start = potential.coordinates(md_system.positions[None])[:, potential.frame.dim :]
    return SamplingTarget(
        "molecule",
        potential,
        energy_from_potential,
        indicators,
        description,
        md_system=md_system,
        placed_start=placed_start,
    )
