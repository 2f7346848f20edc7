"""Neural point transformation: a bijection of configuration space lifted to phase space."""

from __future__ import annotations

import torch

from .base import SymplecticFlow, join_phase_space, split_phase_space
from .coupling import CouplingStack

__all__ = ["PointTransformation"]


class PointTransformation(SymplecticFlow):
    """``Q = F(q)``, ``P = (dF/dq)^-T p``: the canonical lift of a bijection ``F``.

    The lift comes from the type-2 generating function ``F2(q, P) = P . F(q)`` (Li et al.,
    PRX 10, 021020, 2020). The momentum maps never form or invert a Jacobian: ``F`` is a
    stack of affine couplings, whose Jacobians are block triangular, and momenta are carried
    through it layer by layer in closed form (:meth:`CouplingStack.forward_with_momenta`):

    - forward: ``P = (dF/dq)^-T p``, a diagonal scaling and one conditioner VJP per coupling;
    - inverse: ``p = (dF/dq)^T P``, the same in reverse order.

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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Q, P = self.bijection.forward_with_momenta(*split_phase_space(x))
        return join_phase_space(Q, P), x.new_zeros(x.shape[:-1])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, p = self.bijection.inverse_with_momenta(*split_phase_space(z))
        return join_phase_space(q, p), z.new_zeros(z.shape[:-1])

    def configuration_forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bijection(q)

    def configuration_inverse(self, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bijection.inverse(Q)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        self.bijection.initialize(split_phase_space(x)[0])
