"""OpenMM potential energies as a differentiable torch function (gradient = -forces)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import NeuralCTError
from ..units import kT_kj_per_mol

__all__ = ["OpenMMEnergy", "openmm_energy"]


class _EnergyFunction(torch.autograd.Function):
    """Energies of a batch of configurations; backward uses the forces of the same evaluation."""

    @staticmethod
    def forward(ctx: Any, positions: torch.Tensor, model: "OpenMMEnergy") -> torch.Tensor:
        energies, forces = model.evaluate(positions.detach().cpu().numpy())
        ctx.save_for_backward(torch.from_numpy(forces).to(dtype=positions.dtype, device=positions.device))
        return torch.from_numpy(energies).to(dtype=positions.dtype, device=positions.device)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (forces,) = ctx.saved_tensors
        return -forces * grad_output[:, None, None], None


class OpenMMEnergy:
    """Potential energy of an OpenMM System as a torch function of positions in nm.

    Holds one OpenMM Context (Reference platform by default, double precision) and evaluates
    a batch one configuration after another. The autograd backward returns -forces (times the
    incoming gradient), so ``energy.sum().backward()`` gives forces without extra evaluations.

    Parameters
    ----------
    system : openmm.System, openmm.Context or neuralct.md.systems.MDSystem
        The system whose potential energy is evaluated (a Context is used as it is; its
        positions are overwritten).
    unit : {"kT", "kJ/mol"}
        Unit of the returned energies (kT at ``temperature``).
    temperature : float
        Temperature in K that defines kT.
    platform : str
        OpenMM platform for the Context.

    Examples
    --------
    >>> energy = OpenMMEnergy(build_system("alanine-dipeptide"), unit="kT")
    >>> u = energy(x)          # x: (batch, 22, 3) nm, u: (batch,) in kT
    """

    def __init__(self, system: Any, unit: str = "kT", temperature: float = 300.0, platform: str = "Reference"):
        import openmm as mm

        from .platform import make_context

        if unit not in ("kT", "kJ/mol"):
            raise NeuralCTError(f"unknown energy unit {unit!r}; use kT or kJ/mol")
        self.unit = unit
        self.temperature = temperature
        self.scale = 1.0 / kT_kj_per_mol(temperature) if unit == "kT" else 1.0
        if isinstance(system, mm.Context):
            self.context = system
        else:
            self.context = make_context(getattr(system, "system", system), mm.VerletIntegrator(0.001), platform)
        self.n_atoms = self.context.getSystem().getNumParticles()

    def evaluate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Energies and forces of a batch without autograd.

        Parameters
        ----------
        positions : np.ndarray, shape=(batch, n_atoms, 3) or (batch, 3 * n_atoms)
            Positions in nm.

        Returns
        -------
        energies : np.ndarray, shape=(batch,)
            Potential energies in ``self.unit``.
        forces : np.ndarray, shape=(batch, n_atoms, 3)
            Forces in ``self.unit`` per nm.
        """
        x = np.asarray(positions, dtype=np.float64).reshape(len(positions), -1, 3)
        if x.shape[1] != self.n_atoms:
            raise NeuralCTError(f"positions have {x.shape[1]} atoms but the system has {self.n_atoms}")
        energies = np.empty(len(x))
        forces = np.empty_like(x)
        for i, frame in enumerate(x):
            self.context.setPositions(frame)
            state = self.context.getState(getEnergy=True, getForces=True)
            energies[i] = state.getPotentialEnergy()._value
            forces[i] = state.getForces(asNumpy=True)._value
        return energies * self.scale, forces * self.scale

    def __call__(self, positions: torch.Tensor) -> torch.Tensor:
        """Energies of ``positions`` (batch, n_atoms, 3) or (batch, 3 * n_atoms) in nm; shape (batch,)."""
        return _EnergyFunction.apply(positions.reshape(positions.shape[0], -1, 3), self)


def openmm_energy(
    positions: torch.Tensor, system_or_energy: Any, unit: str = "kT", temperature: float = 300.0
) -> torch.Tensor:
    """Differentiable OpenMM potential energies of a batch of configurations.

    Parameters
    ----------
    positions : torch.Tensor, shape=(batch, n_atoms, 3) or (batch, 3 * n_atoms)
        Positions in nm.
    system_or_energy : OpenMMEnergy, openmm.Context, openmm.System or MDSystem
        An ``OpenMMEnergy`` or a Context (reused, fastest) or a system (a Reference Context is
        built per call).
    unit : {"kT", "kJ/mol"}
        Unit of the energies when a system is given.
    temperature : float
        Temperature in K defining kT when a system is given.

    Returns
    -------
    torch.Tensor, shape=(batch,)
        Potential energies; their gradient with respect to ``positions`` is -forces.
    """
    energy = (
        system_or_energy
        if isinstance(system_or_energy, OpenMMEnergy)
        else OpenMMEnergy(system_or_energy, unit, temperature)
    )
    return energy(positions)
