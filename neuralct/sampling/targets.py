"""Potentials to sample: the Boltzmann density in physical coordinates and pulled back to a flow's latent space."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..data import RigidBodyFrame
from ..model import NeuralCanonicalTransformation
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
    """``U(y) = beta E(x(y)) - ln J(y)``: the Boltzmann density on the internal coordinates of a frame.

    ``x(y)`` are the aligned positions of :meth:`RigidBodyFrame.from_internal` and ``J`` the
    rigid-body volume element (:func:`~neuralct.sampling.rigid.rigid_body_log_jacobian`);
    without ``J`` the density is not the Cartesian Boltzmann distribution pushed onto y.

    Parameters
    ----------
    frame : RigidBodyFrame
        Defines y; its atoms are all atoms of the system, in the system's order.
    energy : callable
        Positions (batch, n_atoms, 3) in nm to energies (batch,) in kT, differentiable
        (e.g. :class:`neuralct.md.energy.OpenMMEnergy` with ``unit="kT"``).
    rigid_body_jacobian : bool
        Include ``-ln J(y)`` (True for exact sampling; False only to measure its effect).
    """

    def __init__(self, frame: RigidBodyFrame, energy: Callable[[torch.Tensor], torch.Tensor], rigid_body_jacobian: bool = True):
        self.frame = frame
        self.energy = energy
        self.rigid_body_jacobian = bool(rigid_body_jacobian)

    def positions(self, y: torch.Tensor) -> torch.Tensor:
        """Aligned positions (batch, n_atoms, 3) in nm of internal coordinates (batch, 3 n_atoms - 6)."""
        return self.frame.from_internal(y)

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        """``U(y)`` in kT, shape (batch,); ``+inf`` outside the frame's domain."""
        energy = self.energy(self.positions(y))
        if not self.rigid_body_jacobian:
            return energy
        log_jacobian = rigid_body_log_jacobian(self.frame, y)
        # Outside the domain the density is zero; keep the energy's NaN out of the gradient there.
        return torch.where(torch.isfinite(log_jacobian), energy - log_jacobian, torch.full_like(energy, torch.inf))


class LatentPotential:
    """``U(u) = U_phys(g(u)) - ln|det dg/du|``: a physical potential pulled back through a flow.

    ``g`` is :meth:`NeuralCanonicalTransformation.configuration_from_latent`: the inverse of
    the configuration part of the flow (point transformations and the frequency layer, each
    with its own log-determinant) followed by the model's units. Sampling ``exp(-U(u))`` and
    mapping by ``g`` samples ``exp(-U_phys)`` exactly, whatever the flow's quality.

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        A model whose flow acts on configurations (point transformations only).
    physical_potential : callable
        ``U_phys`` in kT on the model's physical configurations (batch, n) -> (batch,).
    """

    def __init__(self, model: NeuralCanonicalTransformation, physical_potential: Callable[[torch.Tensor], torch.Tensor]):
        model.require_configuration_flow()
        self.model = model
        self.physical_potential = physical_potential

    def to_physical(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q = g(u)`` and ``ln|det dg/du|``, shapes (batch, n) and (batch,)."""
        return self.model.configuration_from_latent(u)

    def to_latent(self, q: torch.Tensor) -> torch.Tensor:
        """``u = g^-1(q)``, shape (batch, n) (to start chains from configurations)."""
        return self.model.configuration_to_latent(q)[0]

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """``U(u)`` in kT, shape (batch,)."""
        q, log_det = self.to_physical(u)
        return self.physical_potential(q) - log_det
