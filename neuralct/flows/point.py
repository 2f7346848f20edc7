"""Neural point transformation: a bijection of configuration space lifted to phase space."""

from __future__ import annotations

import torch

from .base import SymplecticFlow, join_phase_space, split_phase_space, vector_jacobian_product
from .coupling import CouplingStack

__all__ = ["PointTransformation"]


class PointTransformation(SymplecticFlow):
    """``Q = F(q)``, ``P = (dF/dq)^-T p``: the canonical lift of a bijection ``F``.

    The lift comes from the type-2 generating function ``F2(q, P) = P . F(q)`` (Li et al.,
    PRX 10, 021020, 2020). Each momentum map is one vector-Jacobian product, never an
    explicit Jacobian inverse:

    - forward: ``P = (dF^-1/dQ)^T p``, the product of ``p`` with the Jacobian of ``F^-1`` at ``Q``;
    - inverse: ``p = (dF/dq)^T P``, the product of ``P`` with the Jacobian of ``F`` at ``q``.

    ``log|det| = 0`` on phase space; :meth:`configuration_forward` gives ``F`` with its
    own log-determinant for sampling in configuration space.

    Parameters
    ----------
    dim : int
        Configuration dimension n.
    n_layers, hidden, depth, scale_bound
        Architecture of the coupling stack ``F`` (see :class:`CouplingStack`).
    """

    acts_on_configuration = True

    def __init__(self, dim: int, n_layers: int = 4, hidden: int = 64, depth: int = 2, scale_bound: float = 2.0):
        super().__init__(dim)
        self.bijection = CouplingStack(dim, n_layers, hidden, depth, scale_bound)

    @staticmethod
    def _map_and_pull_back(map_, at: torch.Tensor, cotangent: torch.Tensor, create_graph: bool):
        """``(map(at), cotangent^T d map / d at)``, both tracked for further gradients when asked."""
        if not at.requires_grad:
            at = at.detach().requires_grad_(True)
        image, _ = map_(at)
        return image, vector_jacobian_product(image, at, cotangent, create_graph)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, p = split_phase_space(x)
        training_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            Q, _ = self.bijection(q)
            _, P = self._map_and_pull_back(self.bijection.inverse, Q, p, training_graph)
        if not training_graph:
            Q = Q.detach()
        return join_phase_space(Q, P), x.new_zeros(x.shape[:-1])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Q, P = split_phase_space(z)
        training_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            q, _ = self.bijection.inverse(Q)
            _, p = self._map_and_pull_back(self.bijection, q, P, training_graph)
        if not training_graph:
            q = q.detach()
        return join_phase_space(q, p), z.new_zeros(z.shape[:-1])

    def configuration_forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bijection(q)

    def configuration_inverse(self, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bijection.inverse(Q)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        self.bijection.initialize(split_phase_space(x)[0])
