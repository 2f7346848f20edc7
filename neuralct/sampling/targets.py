"""Potentials to sample: the Boltzmann density in physical coordinates and pulled back to a flow's latent space."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..data import RigidBodyFrame
from ..model import NeuralCanonicalTransformation
from .hydrogens import HydrogenPlacement
from .rigid import rigid_body_log_jacobian

__all__ = ["ToyPotential", "MolecularPotential", "LatentPotential"]


class ToyPotential:
    """``beta U(q)`` of a toy system (:mod:`neuralct.toys`), analytic in torch, in kT.

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
        self, frame: RigidBodyFrame, energy: Callable[[torch.Tensor], torch.Tensor], rigid_body_jacobian: bool = True,
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

    def __init__(self, model: NeuralCanonicalTransformation, physical_potential: Callable[[torch.Tensor], torch.Tensor]):
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
