"""Time-lagged canonical objective: latent oscillators with linear Langevin dynamics.

Each latent oscillator k follows the underdamped Langevin equation of a harmonic
oscillator at kT = 1 (reduced units):

    dQ = P dt,    dP = -w^2 Q dt - gamma P dt + sqrt(2 gamma) dW,

a linear (Ornstein-Uhlenbeck) process in phase space with drift ``A = [[0, 1], [-w^2,
-gamma]]`` and stationary covariance ``Sigma = diag(1/w^2, 1)``, the Boltzmann density of
the latent prior. Over a lag ``tau`` (``lag_time``, in the model's time unit) its transition
density is exactly Gaussian: mean ``exp(A tau) z_0`` and covariance
``Sigma - exp(A tau) Sigma exp(A tau)^T``. Because the map ``z = T(x)`` is canonical, the
pair density of data is ``ln p(x_t, x_t+tau) = ln rho(x_t) + sum_k ln p_tau(z_k(t+tau) | z_k(t))``
with no Jacobian. Modes are ranked by their relaxation time, not by their frequency.

With resampled momenta the lagged term is the configuration-only one: the joint law of
``(Q_k(t), Q_k(t+tau))`` under the same process, ``Q(t+tau) | Q(t) ~ N(c Q(t), (1 - c^2)
/ w^2)`` with ``c = exp(A tau)_QQ`` the autocorrelation, pulled back to configuration
space with the log-determinant of the configuration flow.

Optionally a VAMP-2 term of the slowest latent positions is added to the likelihood
(``vamp_weight``), at the transition lag or averaged over several lags (``vamp_pairs``):
it scores the slow CVs directly, which the Gaussian transition model of each mode does
not (measured in benchmarks/README.md, B2).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..flows.base import split_phase_space

__all__ = [
    "ou_drift",
    "ou_transition",
    "ou_mode_log_transition",
    "mean_log_transition",
    "relaxation_times",
    "LatentLangevin",
]


def ou_drift(frequencies: torch.Tensor, frictions: torch.Tensor) -> torch.Tensor:
    """Drift matrices ``A_k = [[0, 1], [-w_k^2, -gamma_k]]``, shape (n, 2, 2)."""
    A = torch.zeros(frequencies.shape + (2, 2), dtype=frequencies.dtype, device=frequencies.device)
    A[..., 0, 1] = 1.0
    A[..., 1, 0] = -(frequencies**2)
    A[..., 1, 1] = -frictions
    return A


def ou_transition(
    frequencies: torch.Tensor, frictions: torch.Tensor, lag_time: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Propagator and covariance of the latent Langevin process over ``lag_time``.

    Parameters
    ----------
    frequencies, frictions : torch.Tensor, shape=(n,)
        ``w_k`` and ``gamma_k`` in reduced units (rad and 1 per model time unit).
    lag_time : float
        ``tau`` in model time units (:attr:`NeuralCanonicalTransformation.time_unit`, ps for molecules).

    Returns
    -------
    propagator : torch.Tensor, shape=(n, 2, 2)
        ``exp(A tau)``, the conditional mean is ``propagator @ z_0``.
    covariance : torch.Tensor, shape=(n, 2, 2)
        ``Sigma - exp(A tau) Sigma exp(A tau)^T`` with ``Sigma = diag(1/w^2, 1)``.
    """
    propagator = torch.linalg.matrix_exp(ou_drift(frequencies, frictions) * lag_time)
    stationary = torch.diag_embed(torch.stack([frequencies**-2, torch.ones_like(frequencies)], -1))
    covariance = stationary - propagator @ stationary @ propagator.transpose(-1, -2)
    return propagator, covariance


def ou_mode_log_transition(
    z0: torch.Tensor,
    z1: torch.Tensor,
    frequencies: torch.Tensor,
    frictions: torch.Tensor,
    lag_time: float,
    configuration_only: bool = False,
) -> torch.Tensor:
    """``ln p_tau(z_k(t+tau) | z_k(t))`` of every mode, shape (batch, n).

    Computed in float64 (the covariance is a small difference for short lags).

    Parameters
    ----------
    z0, z1 : torch.Tensor, shape=(batch, 2n)
        Latent points ``(Q, P)`` at ``t`` and ``t + tau`` (with ``configuration_only``
        only their ``Q`` halves are used).
    frequencies, frictions : torch.Tensor, shape=(n,)
    lag_time : float
        ``tau`` in model time units (ps for molecules).
    configuration_only : bool
        The density of ``Q_k(t+tau)`` given ``Q_k(t)`` alone (momenta at ``t`` marginalised
        over their Maxwell-Boltzmann law).
    """
    w, gamma = frequencies.double(), frictions.double()
    Q0, P0 = (part.double() for part in split_phase_space(z0))
    Q1, P1 = (part.double() for part in split_phase_space(z1))
    propagator, covariance = ou_transition(w, gamma, lag_time)
    if configuration_only:
        correlation = propagator[:, 0, 0]
        return _position_log_density(correlation, w, (Q1 - correlation * Q0) ** 2).to(z0.dtype)
    r_Q = Q1 - propagator[:, 0, 0] * Q0 - propagator[:, 0, 1] * P0
    r_P = P1 - propagator[:, 1, 0] * Q0 - propagator[:, 1, 1] * P0
    return _phase_log_density(covariance, r_Q**2, r_Q * r_P, r_P**2).to(z0.dtype)


def _position_log_density(correlation: torch.Tensor, w: torch.Tensor, square: torch.Tensor) -> torch.Tensor:
    """``ln N(r; 0, (1 - c^2) / w^2)`` of residuals ``r = Q_1 - c Q_0`` given as ``r^2`` (or its mean)."""
    variance = (1.0 - correlation**2) / w**2
    return -0.5 * square / variance - 0.5 * torch.log(2 * math.pi * variance)


def _phase_log_density(
    covariance: torch.Tensor, square_Q: torch.Tensor, product: torch.Tensor, square_P: torch.Tensor
) -> torch.Tensor:
    """``ln N(r; 0, C)`` of residuals ``r = (r_Q, r_P)`` given as ``r_Q^2``, ``r_Q r_P``, ``r_P^2`` (or their means),
    ``C`` the transition covariance, shape (..., 2, 2)."""
    c_QQ, c_QP, c_PP = covariance[..., 0, 0], covariance[..., 0, 1], covariance[..., 1, 1]
    determinant = c_QQ * c_PP - c_QP**2
    quadratic = (c_PP * square_Q - 2 * c_QP * product + c_QQ * square_P) / determinant
    return -0.5 * quadratic - 0.5 * torch.log(determinant) - math.log(2 * math.pi)


def mean_log_transition(
    z0: torch.Tensor,
    z1: torch.Tensor,
    frequencies: torch.Tensor,
    frictions: torch.Tensor,
    lag_time: float,
    configuration_only: bool = False,
) -> torch.Tensor:
    """The mean over pairs of :func:`ou_mode_log_transition`, for many parameter sets at once.

    The Gaussian log-density is quadratic in the pair, so its mean needs only each mode's
    second moments of ``(Q_0, P_0, Q_1, P_1)``, formed once in float64; every parameter set
    then costs O(n) instead of a pass over the pairs.

    Parameters
    ----------
    z0, z1 : torch.Tensor, shape=(batch, 2n)
        Latent points at ``t`` and ``t + tau``.
    frequencies, frictions : torch.Tensor, shape=(..., n)
        Parameter sets (leading dimensions broadcast), reduced units.
    lag_time : float
        ``tau`` in model time units.
    configuration_only : bool
        As in :func:`ou_mode_log_transition`.

    Returns
    -------
    torch.Tensor, shape=(..., n), float64
        ``mean_pairs ln p_tau(z_k(t+tau) | z_k(t))`` of every mode for every parameter set.
    """
    w, gamma = torch.broadcast_tensors(frequencies.double(), frictions.double())
    Q0, P0 = (part.double() for part in split_phase_space(z0))
    Q1, P1 = (part.double() for part in split_phase_space(z1))
    propagator, covariance = ou_transition(w, gamma, lag_time)
    if configuration_only:
        pairs = torch.stack([Q0, Q1], -1)
        moments = torch.einsum("bni,bnj->nij", pairs, pairs) / len(pairs)
        correlation = propagator[..., 0, 0]
        mean_square = moments[:, 1, 1] - 2 * correlation * moments[:, 0, 1] + correlation**2 * moments[:, 0, 0]
        return _position_log_density(correlation, w, mean_square)
    pairs = torch.stack([Q0, P0, Q1, P1], -1)
    moments = torch.einsum("bni,bnj->nij", pairs, pairs) / len(pairs)
    # The residual (r_Q, r_P) = z_1 - exp(A tau) z_0 is R @ (Q0, P0, Q1, P1), R = [-exp(A tau), I].
    identity = torch.eye(2, dtype=torch.float64, device=w.device).expand(propagator.shape)
    residual_map = torch.cat([-propagator, identity], -1)
    second = residual_map @ moments @ residual_map.transpose(-1, -2)
    return _phase_log_density(covariance, second[..., 0, 0], second[..., 0, 1], second[..., 1, 1])


def relaxation_times(frequencies: torch.Tensor, frictions: torch.Tensor) -> torch.Tensor:
    """Slowest relaxation time ``1 / min_i |Re lambda_i(A)|`` of each mode, shape (n,).

    Underdamped (``gamma < 2 w``): ``2 / gamma``; overdamped: ``(gamma + sqrt(gamma^2 - 4
    w^2)) / (2 w^2)``, about ``gamma / w^2`` for strong friction.
    """
    discriminant = (frictions**2 - 4 * frequencies**2).clamp_min(0.0)
    overdamped = (frictions + discriminant.sqrt()) / (2 * frequencies**2)
    return torch.where(frictions < 2 * frequencies, 2.0 / frictions, overdamped)


class LatentLangevin(nn.Module):
    """Learned frictions ``gamma_k = exp(log_gamma_k) > 0`` of the latent oscillators.

    Parameters
    ----------
    dim : int
        Number of modes n.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.log_frictions = nn.Parameter(torch.zeros(dim))

    @property
    def frictions(self) -> torch.Tensor:
        """``gamma``, shape (n,), in latent-mode order (1 per model time unit)."""
        return self.log_frictions.exp()

    @torch.no_grad()
    def initialize(
        self,
        z0: torch.Tensor,
        z1: torch.Tensor,
        frequencies: torch.Tensor,
        lag_time: float,
        configuration_only: bool = False,
        grid: int = 81,
    ) -> None:
        """Per mode, the friction of highest lagged likelihood on a grid ``gamma / w`` in [1e-2, 1e4].

        ``z0``, ``z1`` are latent points ``lag_time`` (model time units) apart, shape (batch, 2n).

        The modes are independent given ``T``, so this is the exact maximum over the grid
        for the current map; it starts training near the right relaxation time.
        """
        ratios = torch.logspace(-2, 4, grid, dtype=torch.float64, device=frequencies.device)
        w = frequencies.double().expand(grid, -1)
        scores = mean_log_transition(z0, z1, w, ratios[:, None] * w, lag_time, configuration_only)
        best = ratios[scores.argmax(0)] * frequencies.double()
        self.log_frictions.copy_(best.log().to(self.log_frictions.dtype))
