"""Continuous-time symplectic flow: a learned separable Hamiltonian integrated by leapfrog."""

from __future__ import annotations

import torch

from .base import SymplecticFlow, join_phase_space, split_phase_space
from .coupling import mlp

__all__ = ["ContinuousSymplectic"]


class ContinuousSymplectic(SymplecticFlow):
    """Time-``duration`` flow of ``G(q, p) = T(p) + V(q)`` by Stormer-Verlet (leapfrog).

    ``T`` and ``V`` are scalar networks. Each leapfrog step is a composition of three
    shears, each exactly canonical, so the map is symplectic for any step size; the
    inverse is the same integrator run with the negative step (an adaptive Runge-Kutta
    integrator would be neither). Both networks start at zero, so the flow starts at the
    identity. ``log|det| = 0``.

    Parameters
    ----------
    dim : int
        Configuration dimension n.
    steps : int
        Number of fixed leapfrog steps.
    duration : float
        Integration time (the step is ``duration / steps``).
    hidden, depth : int
        Size of the networks ``T`` and ``V``.
    """

    def __init__(self, dim: int, steps: int = 4, duration: float = 1.0, hidden: int = 64, depth: int = 2):
        super().__init__(dim)
        if steps < 1:
            raise ValueError("steps must be at least 1")
        self.steps = int(steps)
        self.duration = float(duration)
        self.kinetic = mlp(dim, 1, hidden, depth, output_bias=False)
        self.potential = mlp(dim, 1, hidden, depth, output_bias=False)

    @staticmethod
    def _gradient(energy, at: torch.Tensor, create_graph: bool) -> torch.Tensor:
        if not at.requires_grad:
            at = at.detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(energy(at).sum(), at, create_graph=create_graph)
        return gradient

    def _integrate(self, x: torch.Tensor, step: float) -> torch.Tensor:
        q, p = split_phase_space(x)
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            for _ in range(self.steps):
                p = p - 0.5 * step * self._gradient(self.potential, q, create_graph)
                q = q + step * self._gradient(self.kinetic, p, create_graph)
                p = p - 0.5 * step * self._gradient(self.potential, q, create_graph)
        return join_phase_space(q, p)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._integrate(x, self.duration / self.steps), x.new_zeros(x.shape[:-1])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._integrate(z, -self.duration / self.steps), z.new_zeros(z.shape[:-1])
