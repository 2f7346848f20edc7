"""Time-lagged canonical objective: latent oscillators with linear Langevin dynamics.

Each latent oscillator k follows the underdamped Langevin equation of a harmonic
oscillator at kT = 1 (reduced units):

    dQ = P dt,    dP = -w^2 Q dt - gamma P dt + sqrt(2 gamma) dW,

a linear (Ornstein-Uhlenbeck) process in phase space with drift ``A = [[0, 1], [-w^2,
-gamma]]`` and stationary covariance ``Sigma = diag(1/w^2, 1)``, the Boltzmann density of
the latent prior. Over a lag ``tau`` its transition density is exactly Gaussian: mean
``exp(A tau) z_0`` and covariance ``Sigma - exp(A tau) Sigma exp(A tau)^T``. Because the
map ``z = T(x)`` is canonical, the pair density of data is
``ln p(x_t, x_t+tau) = ln rho(x_t) + sum_k ln p_tau(z_k(t+tau) | z_k(t))`` with no
Jacobian. Modes are ranked by their relaxation time, not by their frequency.

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

import numpy as np
import torch
from torch import nn

from .data.loading import lagged_pairs
from .errors import NeuralCTError
from .flows.base import join_phase_space, split_phase_space

__all__ = [
    "LatentLangevin",
    "LaggedLikelihood",
    "ou_drift",
    "ou_transition",
    "ou_mode_log_transition",
    "relaxation_times",
    "split_lagged_pairs",
    "rank_by_autocorrelation",
    "batch_vamp2",
    "nested_vamp2",
]


def ou_drift(frequencies: torch.Tensor, frictions: torch.Tensor) -> torch.Tensor:
    """Drift matrices ``A_k = [[0, 1], [-w_k^2, -gamma_k]]``, shape (n, 2, 2)."""
    A = torch.zeros(frequencies.shape + (2, 2), dtype=frequencies.dtype, device=frequencies.device)
    A[..., 0, 1] = 1.0
    A[..., 1, 0] = -frequencies**2
    A[..., 1, 1] = -frictions
    return A


def ou_transition(frequencies: torch.Tensor, frictions: torch.Tensor, lag: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Propagator and covariance of the latent Langevin process over ``lag``.

    Parameters
    ----------
    frequencies, frictions : torch.Tensor, shape=(n,)
        ``w_k`` and ``gamma_k`` in reduced units (rad and 1 per model time unit).
    lag : float
        ``tau`` in model time units.

    Returns
    -------
    propagator : torch.Tensor, shape=(n, 2, 2)
        ``exp(A tau)``, the conditional mean is ``propagator @ z_0``.
    covariance : torch.Tensor, shape=(n, 2, 2)
        ``Sigma - exp(A tau) Sigma exp(A tau)^T`` with ``Sigma = diag(1/w^2, 1)``.
    """
    propagator = torch.linalg.matrix_exp(ou_drift(frequencies, frictions) * lag)
    stationary = torch.diag_embed(torch.stack([frequencies**-2, torch.ones_like(frequencies)], -1))
    covariance = stationary - propagator @ stationary @ propagator.transpose(-1, -2)
    return propagator, covariance


def ou_mode_log_transition(
    z0: torch.Tensor, z1: torch.Tensor, frequencies: torch.Tensor, frictions: torch.Tensor, lag: float, configuration_only: bool = False
) -> torch.Tensor:
    """``ln p_tau(z_k(t+tau) | z_k(t))`` of every mode, shape (batch, n).

    Computed in float64 (the covariance is a small difference for short lags).

    Parameters
    ----------
    z0, z1 : torch.Tensor, shape=(batch, 2n)
        Latent points ``(Q, P)`` at ``t`` and ``t + tau`` (with ``configuration_only``
        only their ``Q`` halves are used).
    frequencies, frictions : torch.Tensor, shape=(n,)
    lag : float
        ``tau`` in model time units.
    configuration_only : bool
        The density of ``Q_k(t+tau)`` given ``Q_k(t)`` alone (momenta at ``t`` marginalised
        over their Maxwell-Boltzmann law).
    """
    w, gamma = frequencies.double(), frictions.double()
    Q0, P0 = (part.double() for part in split_phase_space(z0))
    Q1, P1 = (part.double() for part in split_phase_space(z1))
    propagator, covariance = ou_transition(w, gamma, lag)
    if configuration_only:
        correlation = propagator[:, 0, 0]
        variance = (1.0 - correlation**2) / w**2
        residual = Q1 - correlation * Q0
        log_p = -0.5 * residual**2 / variance - 0.5 * torch.log(2 * math.pi * variance)
        return log_p.to(z0.dtype)
    r_Q = Q1 - propagator[:, 0, 0] * Q0 - propagator[:, 0, 1] * P0
    r_P = P1 - propagator[:, 1, 0] * Q0 - propagator[:, 1, 1] * P0
    c_QQ, c_QP, c_PP = covariance[:, 0, 0], covariance[:, 0, 1], covariance[:, 1, 1]
    determinant = c_QQ * c_PP - c_QP**2
    quadratic = (c_PP * r_Q**2 - 2 * c_QP * r_Q * r_P + c_QQ * r_P**2) / determinant
    log_p = -0.5 * quadratic - 0.5 * torch.log(determinant) - math.log(2 * math.pi)
    return log_p.to(z0.dtype)


def relaxation_times(frequencies: torch.Tensor, frictions: torch.Tensor) -> torch.Tensor:
    """Slowest relaxation time ``1 / min_i |Re lambda_i(A)|`` of each mode, shape (n,).

    Underdamped (``gamma < 2 w``): ``2 / gamma``; overdamped: ``(gamma + sqrt(gamma^2 - 4
    w^2)) / (2 w^2)``, about ``gamma / w^2`` for strong friction.
    """
    discriminant = (frictions**2 - 4 * frequencies**2).clamp_min(0.0)
    overdamped = (frictions + discriminant.sqrt()) / (2 * frequencies**2)
    return torch.where(frictions < 2 * frequencies, 2.0 / frictions, overdamped)


def nested_vamp2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over j of the VAMP-2 score of the first j functions, j = 1..k.

    VAMP-2 of k functions does not change when they are mixed linearly; the nested sum
    does: it rewards the first function for being the slowest alone, the first two for
    being the slowest pair, and so on, which keeps the slowest CV first.

    Parameters
    ----------
    x, y : torch.Tensor, shape=(batch, k)
    """
    return torch.stack([batch_vamp2(x[:, :j], y[:, :j]) for j in range(1, x.shape[1] + 1)]).mean()


def batch_vamp2(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """Differentiable VAMP-2 score of the pairs ``(x_t, y_t+tau)``, constant function excluded.

    ``|| C00^-1/2 C01 C11^-1/2 ||_F^2`` of the mean-free instantaneous, time-lagged and
    cross covariances (Wu & Noe 2020); any square roots give the same norm, so Cholesky
    factors are used. ``ridge`` (relative to the mean variance) keeps small batches regular.

    Parameters
    ----------
    x, y : torch.Tensor, shape=(batch, k)
    """
    x, y = (values.double() - values.double().mean(0) for values in (x, y))
    n, k = x.shape
    eye = torch.eye(k, dtype=x.dtype, device=x.device)

    def cholesky(values):
        covariance = values.T @ values / (n - 1)
        return torch.linalg.cholesky(covariance + ridge * covariance.diagonal().mean() * eye)

    cross = x.T @ y / (n - 1)
    whitened = torch.linalg.solve_triangular(cholesky(x), cross, upper=False)
    whitened = torch.linalg.solve_triangular(cholesky(y), whitened.T, upper=False).T
    return (whitened**2).sum()


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
        self, z0: torch.Tensor, z1: torch.Tensor, frequencies: torch.Tensor, lag: float, configuration_only: bool = False, grid: int = 81
    ) -> None:
        """Per mode, the friction of highest lagged likelihood on a grid ``gamma / w`` in [1e-2, 1e4].

        The modes are independent given ``T``, so this is the exact maximum over the grid
        for the current map; it starts training near the right relaxation time.
        """
        ratios = torch.logspace(-2, 4, grid, dtype=torch.float64, device=frequencies.device)
        w = frequencies.double()
        scores = torch.stack(
            [ou_mode_log_transition(z0, z1, w, ratio * w, lag, configuration_only).double().mean(0) for ratio in ratios]
        )
        best = ratios[scores.argmax(0)] * w
        self.log_frictions.copy_(best.log().to(self.log_frictions.dtype))


class LaggedLikelihood:
    """``-E_pairs[ln rho(x_t) + sum_k ln p_tau(z_k(t+tau) | z_k(t))]`` per pair (nats, reduced units).

    Parameters
    ----------
    q : torch.Tensor, shape=(frames, n)
        Physical positions of all frames (training and validation).
    p : torch.Tensor, shape=(frames, n), optional
        Recorded on-step momenta: the full phase-space transition density is used. None:
        momenta of ``x_t`` are drawn fresh from Maxwell-Boltzmann every minibatch and the
        lagged term is the configuration-only one (needs a flow of point transformations).
    train_pairs, valid_pairs : tuple of np.ndarray
        Index pairs ``(i, j)`` with ``j`` a lag after ``i`` in the same trajectory
        (:func:`neuralct.data.lagged_pairs`); ``valid_pairs`` may be None.
    lag : float
        ``tau`` in model time units.
    vamp_weight : float
        Weight of an added VAMP-2 term of the ``vamp_modes`` slowest latent positions
        (minibatch estimate, nested so that the order of the modes counts,
        :func:`nested_vamp2`): the loss becomes ``-ln p - weight * VAMP-2``. 0 (default) is
        the pure likelihood.
    vamp_modes : int
        Number of slowest modes (by relaxation time) in the VAMP-2 term.
    vamp_pairs : list of (train_pairs, valid_pairs), optional
        Index pairs of the VAMP-2 term, one entry per lag; the term is the mean of the
        scores at these lags, each on its own minibatch. None: the pairs of the transition
        density (the one lag ``lag``).
    """

    name = "lagged-likelihood"

    def __init__(
        self, q: torch.Tensor, p: torch.Tensor | None, train_pairs, valid_pairs, lag: float, vamp_weight: float = 0.0, vamp_modes: int = 2,
        vamp_pairs: list | None = None,
    ):
        for label, values in (("position", q), ("momentum", p)):
            if values is not None and not bool(torch.isfinite(values).all()):
                raise NeuralCTError(f"{label} data contain NaN or infinite values; clean or drop those frames")
        if len(train_pairs[0]) < 2:
            raise NeuralCTError("need at least 2 lagged training pairs; use a shorter --lag-ps or longer trajectories")
        as_index = lambda pairs: None if pairs is None or len(pairs[0]) == 0 else tuple(torch.as_tensor(np.asarray(a), device=q.device) for a in pairs)
        self.q, self.p, self.lag = q, p, float(lag)
        self.train_pairs, self.valid_pairs = as_index(train_pairs), as_index(valid_pairs)
        self.configuration_only = p is None
        if not vamp_weight >= 0:
            raise NeuralCTError(f"--vamp-weight must be >= 0, got {vamp_weight}")
        self.vamp_weight, self.vamp_modes = float(vamp_weight), int(vamp_modes)
        if vamp_pairs is None:
            self.vamp_pairs = None
        else:
            for train, _ in vamp_pairs:
                if len(train[0]) < 2:
                    raise NeuralCTError("need at least 2 training pairs at every VAMP-2 lag; use shorter --vamp-lags-ps or longer trajectories")
            self.vamp_pairs = [(as_index(train), as_index(valid)) for train, valid in vamp_pairs]
            if self.valid_pairs is not None and any(valid is None for _, valid in self.vamp_pairs):
                raise NeuralCTError("a --vamp-lags-ps lag leaves no validation pairs; use shorter lags or longer validation trajectories")
        self._valid_noise_seed = 12345

    def _check(self, model) -> None:
        if model.dynamics is None:
            raise NeuralCTError("the lagged objective needs a model with latent dynamics (NeuralCanonicalTransformation(..., latent_dynamics=True))")
        if self.configuration_only and not model.flow.acts_on_configuration:
            raise NeuralCTError("the configuration-only lagged term needs point-transformation layers (linear-point, point); or use recorded momenta")

    def latent_pairs(self, model, i: torch.Tensor, j: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latent ``z_t``, ``z_t+tau`` (batch, 2n) in mode order and ``ln|det|`` of the maps, (batch,).

        The log-determinant is the flow's at ``x_t`` plus, configuration-only, the
        configuration flow's at ``q_t+tau``.
        """
        q0, q1 = self.q[i], self.q[j]
        if self.configuration_only:
            thermal = torch.sqrt(model.masses * model.kT)
            p0 = torch.randn(q0.shape, generator=generator, dtype=q0.dtype, device=q0.device) * thermal
            z0, logdet = model.flow(model.to_reduced(q0, p0))
            Q1, logdet_1 = model.flow.configuration_forward((q1 - model.position_offset) * model._position_scale())
            return z0, join_phase_space(Q1, torch.zeros_like(Q1)), logdet + logdet_1
        z, logdet = model.flow(torch.cat([model.to_reduced(q0, self.p[i]), model.to_reduced(q1, self.p[j])]))
        return z[: len(i)], z[len(i) :], logdet[: len(i)] + logdet[len(i) :]

    def pair_log_likelihood(self, model, i: torch.Tensor, j: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``ln rho(x_t) + ln p_tau(x_t+tau | x_t)`` of each pair in reduced units, shape (batch,)."""
        return self._pair_terms(model, i, j, generator)[0]

    def _pair_terms(self, model, i, j, generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z0, z1, logdet = self.latent_pairs(model, i, j, generator)
        transition = ou_mode_log_transition(
            z0, z1, model.prior.frequencies, model.dynamics.frictions, self.lag, self.configuration_only
        ).sum(-1)
        return model.prior.log_prob(z0) + logdet + transition, z0, z1

    def loss(self, model, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        self._check(model)
        first, second = self.train_pairs
        pick = torch.randint(len(first), (batch_size,), generator=generator, device=generator.device)
        log_p, z0, z1 = self._pair_terms(model, first[pick], second[pick], generator)
        loss = -log_p.mean()
        if self.vamp_weight > 0:
            slowest = model._mode_order()[: self.vamp_modes]
            if self.vamp_pairs is None:
                scores = [nested_vamp2(split_phase_space(z0)[0][:, slowest], split_phase_space(z1)[0][:, slowest])]
            else:
                scores = []
                for (i, j), _ in self.vamp_pairs:
                    pick = torch.randint(len(i), (batch_size,), generator=generator, device=generator.device)
                    y0, y1, _ = self.latent_pairs(model, i[pick], j[pick], generator)
                    scores.append(nested_vamp2(split_phase_space(y0)[0][:, slowest], split_phase_space(y1)[0][:, slowest]))
            loss = loss - self.vamp_weight * torch.stack(scores).mean().to(loss.dtype)
        return loss

    def validation_loss(self, model, chunk: int = 4096) -> float | None:
        """The loss on all validation pairs (fixed momentum draws; VAMP-2 term over all of them)."""
        if self.valid_pairs is None:
            return None
        self._check(model)
        generator = torch.Generator(device=self.q.device).manual_seed(self._valid_noise_seed)
        first, second = self.valid_pairs
        slowest = model._mode_order()[: self.vamp_modes]
        total, starts, ends = 0.0, [], []
        for start in range(0, len(first), chunk):
            with torch.no_grad():
                log_p, z0, z1 = self._pair_terms(model, first[start : start + chunk], second[start : start + chunk], generator)
            total += float(log_p.sum())
            starts.append(split_phase_space(z0)[0][:, slowest])
            ends.append(split_phase_space(z1)[0][:, slowest])
        loss = -total / len(first)
        if self.vamp_weight > 0:
            if self.vamp_pairs is None:
                scores = [float(nested_vamp2(torch.cat(starts), torch.cat(ends)))]
            else:
                scores = [self._validation_vamp2(model, valid, slowest, generator, chunk) for _, valid in self.vamp_pairs]
            loss -= self.vamp_weight * float(np.mean(scores))
        return loss

    @torch.no_grad()
    def _validation_vamp2(self, model, pairs, slowest: torch.Tensor, generator: torch.Generator, chunk: int) -> float:
        """Nested VAMP-2 of the slowest latent positions over all of ``pairs``."""
        starts, ends = [], []
        for start in range(0, len(pairs[0]), chunk):
            z0, z1, _ = self.latent_pairs(model, pairs[0][start : start + chunk], pairs[1][start : start + chunk], generator)
            starts.append(split_phase_space(z0)[0][:, slowest])
            ends.append(split_phase_space(z1)[0][:, slowest])
        return float(nested_vamp2(torch.cat(starts), torch.cat(ends)))

    @torch.no_grad()
    def initialize_frictions(self, model, max_pairs: int = 20000, seed: int = 0) -> None:
        """Start the frictions at their per-mode grid optimum for the model's current map."""
        self._check(model)
        first, second = self.train_pairs
        generator = torch.Generator(device=self.q.device).manual_seed(seed)
        stride = max(1, len(first) // max_pairs)
        z0, z1, _ = self.latent_pairs(model, first[::stride], second[::stride], generator)
        model.dynamics.initialize(z0, z1, model.prior.frequencies, self.lag, self.configuration_only)


def split_lagged_pairs(
    traj_lengths: list[int], lag_frames: int, train_index: np.ndarray, valid_index: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Lagged index pairs of the training and the validation frames.

    A pair belongs to a set when both its frames do; pairs never cross a trajectory
    boundary (:func:`neuralct.data.lagged_pairs`) nor the cut of a split trajectory.

    Returns
    -------
    train_pairs, valid_pairs : tuple of np.ndarray
        ``(i, j)`` index arrays into the concatenated frames, ``j = i + lag_frames``.
    """
    first, second = lagged_pairs(traj_lengths, lag_frames)
    split = []
    for index in (train_index, valid_index):
        keep = np.isin(first, index) & np.isin(second, index)
        split.append((first[keep], second[keep]))
    return split[0], split[1]


def rank_by_autocorrelation(model, y: np.ndarray, traj_lengths: list[int], train_index: np.ndarray, lag_frames: int, lag_ps: float) -> dict:
    """Order the latent modes of a trained model by their autocorrelation at a lag, most autocorrelated first.

    A kinetic ranking for a maximum-likelihood model, whose own order (by frequency) says
    how soft a mode is, not how slowly it relaxes. On trajectories biased along some CVs the
    bias has sped up the motions it acts on, so the most autocorrelated mode is the slowest
    motion left: the CV to bias next.

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        Trained, with a flow of point transformations.
    y : np.ndarray, shape=(n_frames, dim)
        Internal coordinates of all frames, trajectories concatenated in time order.
    traj_lengths : list of int
        Frames per trajectory.
    train_index : np.ndarray
        The training frames: only pairs of two training frames count.
    lag_frames : int
        The lag in frames; ``lag_ps`` is the same lag in ps (recorded).

    Returns
    -------
    dict
        ``{"by": "autocorrelation", "lag_ps", "order", "autocorrelation"}``: ``order`` lists
        the flow's mode indices, most autocorrelated first, with their autocorrelations;
        stored as ``model.metadata["mode_ranking"]``, where ``_mode_order`` reads it.
    """
    from .molecular import project_internal

    first, second = lagged_pairs(traj_lengths, lag_frames)
    inside = np.isin(first, train_index) & np.isin(second, train_index)
    first, second = first[inside], second[inside]
    if len(first) < 2:
        raise NeuralCTError(f"--rank-lag-ps {lag_ps} leaves fewer than 2 pairs of training frames that far apart; use a shorter lag or longer trajectories")
    current = model._mode_order().cpu().numpy()
    Q = project_internal(model, y)
    centred = Q - Q[train_index].mean(0)
    autocorrelation = (centred[first] * centred[second]).mean(0) / centred[train_index].var(0)
    ranked = np.argsort(-autocorrelation, kind="stable")
    return {"by": "autocorrelation", "lag_ps": float(lag_ps), "order": [int(i) for i in current[ranked]], "autocorrelation": [float(a) for a in autocorrelation[ranked]]}
