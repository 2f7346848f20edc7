"""Frequency layer: scales latent positions by learnable frequencies, next to the prior."""

from __future__ import annotations

import torch
from torch import nn

from .base import SymplecticFlow, join_phase_space, split_phase_space

__all__ = ["FrequencyScaling"]


class FrequencyScaling(SymplecticFlow):
    """``(Q, P) -> (w Q, P)`` with learnable ``w_k = exp(log_w_k) > 0``.

    Not canonical: the one layer with a non-zero, constant ``log|det| = sum_k ln w_k``.
    After it, a harmonic oscillator ``(P^2 + w^2 Q^2) / 2`` becomes a standard normal.
    Frequencies live in log space, which conditions soft and stiff modes alike.

    Parameters
    ----------
    dim : int
        Number of modes n.
    """

    def __init__(self, dim: int):
        super().__init__(dim)
        self.log_frequencies = nn.Parameter(torch.zeros(dim))

    @property
    def frequencies(self) -> torch.Tensor:
        """``w``, shape (n,), in the order of the latent modes (not sorted)."""
        return self.log_frequencies.exp()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Q, P = split_phase_space(z)
        logdet = self.log_frequencies.sum().expand(z.shape[:-1])
        return join_phase_space(Q * self.frequencies, P), logdet

    def inverse(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Q, P = split_phase_space(u)
        logdet = (-self.log_frequencies.sum()).expand(u.shape[:-1])
        return join_phase_space(Q / self.frequencies, P), logdet

    @torch.no_grad()
    def initialize(self, z: torch.Tensor) -> None:
        """Set ``w_k = 1 / std(Q_k)``, the maximum-likelihood value for fixed ``Q``."""
        Q = split_phase_space(z)[0]
        std = Q.double().std(0).clamp_min(1e-12)
        self.log_frequencies.copy_((-std.log()).to(self.log_frequencies.dtype))
