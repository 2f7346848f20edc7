"""The latent prior: independent harmonic oscillators at kT = 1 with learnable frequencies."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..flows.base import split_phase_space
from ..flows.frequency import FrequencyScaling

__all__ = ["HarmonicPrior"]


class HarmonicPrior(nn.Module):
    """Boltzmann density of ``K(Q, P) = sum_k (P_k^2 + w_k^2 Q_k^2) / 2`` at kT = 1.

    ``ln rho(Q, P) = sum_k [-(P_k^2 + w_k^2 Q_k^2)/2 + ln w_k - ln 2 pi]``, written as a
    :class:`~neuralct.flows.FrequencyScaling` layer followed by a standard normal.

    Parameters
    ----------
    dim : int
        Number of modes n (phase space of 2n entries).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = int(dim)
        self.frequency_layer = FrequencyScaling(dim)

    @property
    def frequencies(self) -> torch.Tensor:
        """``w``, shape (n,), in latent-mode order."""
        return self.frequency_layer.frequencies

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``ln rho(z)`` for latent points ``z = (Q, P)`` of shape (batch, 2n); returns (batch,)."""
        u, logdet = self.frequency_layer(z)
        return -0.5 * (u**2).sum(-1) - self.dim * math.log(2 * math.pi) + logdet

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        """The latent Hamiltonian ``K(Q, P)`` in kT, shape (batch,)."""
        Q, P = split_phase_space(z)
        return 0.5 * (P**2 + (self.frequencies * Q) ** 2).sum(-1)

    def sample(self, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact samples, shape (n_samples, 2n), differentiable in the frequencies."""
        reference = self.frequency_layer.log_frequencies
        u = torch.randn(n_samples, 2 * self.dim, generator=generator, dtype=reference.dtype, device=reference.device)
        return self.frequency_layer.inverse(u)[0]

    def free_energy(self) -> torch.Tensor:
        """``-ln Z = sum_k ln(w_k / 2 pi)`` of the latent oscillators (kT units)."""
        return (self.frequency_layer.log_frequencies - math.log(2 * math.pi)).sum()

    @torch.no_grad()
    def initialize(self, z: torch.Tensor) -> None:
        """Maximum-likelihood frequencies for latent samples ``z`` (batch, 2n)."""
        self.frequency_layer.initialize(z)
