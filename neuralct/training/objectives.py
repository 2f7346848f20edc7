"""Training objectives: maximum likelihood, variational free energy, the time-lagged likelihood and its VAMP-2 term."""

from __future__ import annotations

import math
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from ..data.pairs import LaggedPairs
from ..errors import NeuralCTError
from ..flows.base import join_phase_space, split_phase_space
from ..model.dynamics import ou_mode_log_transition
from ..model.transformation import NeuralCanonicalTransformation

__all__ = ["nested_vamp2", "batch_vamp2", "LaggedLikelihood"]


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
    A covariance that has no Cholesky factor (CVs that are not finite: a diverging training)
    gives NaN, which the training loop reports as a divergence, rather than an exception here.

    Parameters
    ----------
    x, y : torch.Tensor, shape=(batch, k)
    """
    x, y = (values.double() - values.double().mean(0) for values in (x, y))
    n, k = x.shape
    eye = torch.eye(k, dtype=x.dtype, device=x.device)

    def cholesky(values):
        covariance = values.T @ values / (n - 1)
        factor, info = torch.linalg.cholesky_ex(covariance + ridge * covariance.diagonal().mean() * eye)
        return factor + torch.where(info > 0, torch.nan, 0.0)

    cross = x.T @ y / (n - 1)
    whitened = torch.linalg.solve_triangular(cholesky(x), cross, upper=False)
    whitened = torch.linalg.solve_triangular(cholesky(y), whitened.T, upper=False).T
    return (whitened**2).sum()


#: Slowest modes in the VAMP-2 term of :class:`LaggedLikelihood` unless told: the CV pair that B2 scores.
VAMP_MODES = 2


def _same_pairs(a: tuple[torch.Tensor, ...] | None, b: tuple[torch.Tensor, ...] | None) -> bool:
    """Whether two sets of index pairs are the same pairs in the same order (None only equals None)."""
    if a is None or b is None:
        return a is None and b is None
    return all(x.shape == y.shape and bool(torch.equal(x, y)) for x, y in zip(a, b))


def _as_weights(weights: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    """Pair weights as a float64 tensor on ``device`` (None stays None)."""
    return None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64), device=device)


def _draw(count: int, weights: torch.Tensor | None, size: int, generator: torch.Generator) -> torch.Tensor:
    """``size`` indices of ``count`` pairs: uniform, or in proportion to ``weights`` (with replacement)."""
    if weights is None:
        return torch.randint(count, (size,), generator=generator, device=generator.device)
    return torch.multinomial(weights, size, replacement=True, generator=generator)


def _fixed_draw(
    pairs: tuple[torch.Tensor, torch.Tensor] | None, weights: np.ndarray | None, seed: int = 2024
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Weighted validation pairs as one draw in proportion to their weights, as many as there are pairs."""
    if pairs is None or weights is None:
        return pairs
    first, second = pairs
    generator = torch.Generator(device=first.device).manual_seed(seed)
    pick = _draw(len(first), _as_weights(weights, first.device), len(first), generator)
    return first[pick], second[pick]


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
    pairs : LaggedPairs
        Training and validation pairs of frames ``tau = pairs.lag_ps`` apart in the same
        trajectory (:func:`neuralct.data.pairs.split_lagged_pairs`); the transition density
        takes ``tau`` in the model's time unit (:meth:`lag_time`). Weighted pairs (rescaled
        time, :func:`neuralct.data.pairs.rescaled_lagged_pairs`) are drawn into each
        minibatch in proportion to their weights; the validation pairs are one such draw, as many
        as there are pairs, fixed for the run.
    vamp_weight : float
        Weight of an added VAMP-2 term of the ``vamp_modes`` slowest latent positions
        (minibatch estimate, nested so that the order of the modes counts,
        :func:`nested_vamp2`): the loss becomes ``-ln p - weight * VAMP-2``. 0 (default) is
        the pure likelihood.
    vamp_modes : int
        Number of slowest modes (by relaxation time) in the VAMP-2 term.
    vamp_pairs : sequence of LaggedPairs, optional
        Pairs of the VAMP-2 term, one entry per lag; the term is the mean of the scores at
        these lags. A lag whose pairs are ``pairs`` scores the transition density's minibatch;
        another lag scores the pairs that start at the same frames (those with a partner that
        far ahead in their trajectory's training frames), so that the flow sees each start once.
        None: ``pairs`` (the one lag of the transition density).
    """

    name = "lagged-likelihood"

    def __init__(
        self,
        q: torch.Tensor,
        p: torch.Tensor | None,
        pairs: LaggedPairs,
        vamp_weight: float = 0.0,
        vamp_modes: int = VAMP_MODES,
        vamp_pairs: Sequence[LaggedPairs] | None = None,
    ):
        for label, values in (("position", q), ("momentum", p)):
            if values is not None and not bool(torch.isfinite(values).all()):
                raise NeuralCTError(f"{label} data contain NaN or infinite values; clean or drop those frames")
        if len(pairs.train[0]) < 2:
            raise NeuralCTError("need at least 2 lagged training pairs; use a shorter `lag_ps` or longer trajectories")

        def as_index(index_pairs):
            if index_pairs is None or len(index_pairs[0]) == 0:
                return None
            return tuple(torch.as_tensor(np.asarray(a), device=q.device) for a in index_pairs)

        self.q, self.p, self.lag_ps = q, p, float(pairs.lag_ps)
        self.train_pairs = as_index(pairs.train)
        self.valid_pairs = _fixed_draw(as_index(pairs.valid), pairs.valid_weights)
        self.train_weights = _as_weights(pairs.train_weights, q.device)
        self.configuration_only = p is None
        if not vamp_weight >= 0:
            raise NeuralCTError(f"`vamp_weight` must be >= 0, got {vamp_weight}")
        if not vamp_modes >= 1:
            raise NeuralCTError(f"`vamp_modes` must be at least 1, got {vamp_modes}")
        self.vamp_weight, self.vamp_modes = float(vamp_weight), int(vamp_modes)
        # Per VAMP-2 lag, the partner at that lag of every frame that starts one of its training pairs (-1: none),
        # so that its minibatch shares the transition pairs' first frames; None for a lag whose pairs are the
        # transition's (it scores the transition minibatch itself).
        self._vamp_partners: list[torch.Tensor | None] = []
        if vamp_pairs is None:
            self.vamp_pairs = None
        else:
            for lagged in vamp_pairs:
                if len(lagged.train[0]) < 2:
                    raise NeuralCTError(
                        "need at least 2 training pairs at every VAMP-2 lag; use shorter `vamp_lags_ps` or longer "
                        "trajectories"
                    )
            self.vamp_pairs = [
                (as_index(lagged.train), _fixed_draw(as_index(lagged.valid), lagged.valid_weights))
                for lagged in vamp_pairs
            ]
            self._vamp_weights = [_as_weights(lagged.train_weights, q.device) for lagged in vamp_pairs]
            for (train, valid), lagged in zip(self.vamp_pairs, vamp_pairs):
                partner = None
                if not (_same_pairs(train, self.train_pairs) and _same_pairs(valid, self.valid_pairs)):
                    partner = torch.full((len(q),), -1, dtype=train[0].dtype, device=q.device)
                    # A frame has several partners in rescaled time: those lags draw pairs of their own.
                    if lagged.train_weights is None:
                        partner[train[0]] = train[1]
                self._vamp_partners.append(partner)
            if self.valid_pairs is not None and any(valid is None for _, valid in self.vamp_pairs):
                raise NeuralCTError(
                    "a `vamp_lags_ps` lag leaves no validation pairs; use shorter lags or longer validation "
                    "trajectories"
                )
        self._valid_noise_seed = 12345

    def lag_time(self, model) -> float:
        """``tau`` in the model's time unit: the pairs' lag in ps over ``model.time_unit`` (ps for molecules)."""
        return self.lag_ps / model.time_unit

    def _check(self, model) -> None:
        if model.dynamics is None:
            raise NeuralCTError(
                "the lagged objective needs a model with latent dynamics "
                "(NeuralCanonicalTransformation(..., latent_dynamics=True))"
            )
        if self.configuration_only and not model.flow.acts_on_configuration:
            raise NeuralCTError(
                "the configuration-only lagged term needs point-transformation layers (linear-point, point); "
                "or use recorded momenta"
            )

    def latent_pairs(
        self, model, i: torch.Tensor, j: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latent ``z_t``, ``z_t+tau`` (batch, 2n) in mode order and ``ln|det|`` of the maps, (batch,).

        The log-determinant is the flow's at ``x_t`` plus, configuration-only, the
        configuration flow's at ``q_t+tau``.
        """
        z0, (z1,), logdet = self._latent(model, i, [j], generator)
        return z0, z1, logdet

    def _latent(
        self, model, starts: torch.Tensor, ends: list[torch.Tensor], generator: torch.Generator
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Latent points of the frames ``starts`` and of each set of frames in ``ends``, in one pass of the flow.

        Returns ``z`` of the starts (batch, 2n), ``z`` of each end set (its length, 2n) and ``ln|det|``
        of the maps at the starts and the first end set (:meth:`latent_pairs`), shape (batch,).
        """
        sizes = [len(end) for end in ends]
        q0 = self.q[starts]
        if self.configuration_only:
            thermal = torch.sqrt(model.masses * model.kT)
            p0 = torch.randn(q0.shape, generator=generator, dtype=q0.dtype, device=q0.device) * thermal
            z0, logdet = model.flow(model.to_reduced(q0, p0))
            q1 = self.q[torch.cat(ends)]
            Q1, logdet_1 = model.flow.configuration_forward((q1 - model.position_offset) * model.position_scale())
            z1 = join_phase_space(Q1, torch.zeros_like(Q1))
            return z0, list(z1.split(sizes)), logdet + logdet_1[: sizes[0]]
        frames = torch.cat([starts, *ends])
        z, logdet = model.flow(model.to_reduced(self.q[frames], self.p[frames]))
        z0, *z1 = z.split([len(starts), *sizes])
        return z0, z1, logdet[: len(starts)] + logdet[len(starts) : len(starts) + sizes[0]]

    def _pair_terms(self, model, i, j, generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z0, z1, logdet = self.latent_pairs(model, i, j, generator)
        return self._log_likelihood(model, z0, z1, logdet), z0, z1

    def _log_likelihood(self, model, z0, z1, logdet) -> torch.Tensor:
        """``ln rho(x_t) + ln p_tau(x_t+tau | x_t)`` of latent pairs at the transition lag, shape (batch,)."""
        transition = ou_mode_log_transition(
            z0, z1, model.prior.frequencies, model.dynamics.frictions, self.lag_time(model), self.configuration_only
        ).sum(-1)
        return model.prior.log_prob(z0) + logdet + transition

    def loss(self, model, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        self._check(model)
        # A minibatch of transition pairs; every other VAMP-2 lag is scored on the pairs from the same first frames
        # (those that have a partner at that lag), and all frames go through the flow in one pass. A lag that leaves
        # fewer than half of them (a lag longer than the transition's on short trajectories) draws its own.
        first, second = self.train_pairs
        pick = _draw(len(first), self.train_weights, batch_size, generator)
        starts = first[pick]
        ends, shared = [second[pick]], {}
        if self.vamp_weight > 0:
            for k, partner in enumerate(self._vamp_partners):
                if partner is not None:
                    end = partner[starts]
                    kept = end >= 0
                    if 2 * int(kept.sum()) >= batch_size:
                        shared[k] = (kept, len(ends))
                        ends.append(end[kept])
        z0, z1, logdet = self._latent(model, starts, ends, generator)
        loss = -self._log_likelihood(model, z0, z1[0], logdet).mean()
        if self.vamp_weight > 0:
            slowest = model.mode_order()[: self.vamp_modes]
            pairs = [(z0, z1[0])] if self.vamp_pairs is None else []
            for k, partner in enumerate(self._vamp_partners):
                if partner is None:
                    pairs.append((z0, z1[0]))
                elif k in shared:
                    kept, index = shared[k]
                    pairs.append((z0[kept], z1[index]))
                else:
                    i, j = self.vamp_pairs[k][0]
                    own = _draw(len(i), self._vamp_weights[k], batch_size, generator)
                    pairs.append(self.latent_pairs(model, i[own], j[own], generator)[:2])
            scores = [
                nested_vamp2(split_phase_space(start)[0][:, slowest], split_phase_space(end)[0][:, slowest])
                for start, end in pairs
            ]
            loss = loss - self.vamp_weight * torch.stack(scores).mean().to(loss.dtype)
        return loss

    def validation_loss(self, model, chunk: int = 4096) -> float | None:
        """The loss on all validation pairs (fixed momentum draws; VAMP-2 term over all of them)."""
        if self.valid_pairs is None:
            return None
        self._check(model)
        generator = torch.Generator(device=self.q.device).manual_seed(self._valid_noise_seed)
        first, second = self.valid_pairs
        slowest = model.mode_order()[: self.vamp_modes]
        total, starts, ends = 0.0, [], []
        for start in range(0, len(first), chunk):
            with torch.no_grad():
                log_p, z0, z1 = self._pair_terms(
                    model, first[start : start + chunk], second[start : start + chunk], generator
                )
            total += float(log_p.sum())
            starts.append(split_phase_space(z0)[0][:, slowest])
            ends.append(split_phase_space(z1)[0][:, slowest])
        loss = -total / len(first)
        if self.vamp_weight > 0:
            if self.vamp_pairs is None:
                scores = [float(nested_vamp2(torch.cat(starts), torch.cat(ends)))]
            else:
                transition = float(nested_vamp2(torch.cat(starts), torch.cat(ends)))
                scores = [
                    transition if partner is None else self._validation_vamp2(model, valid, slowest, generator, chunk)
                    for (_, valid), partner in zip(self.vamp_pairs, self._vamp_partners)
                ]
            loss -= self.vamp_weight * float(np.mean(scores))
        return loss

    @torch.no_grad()
    def _validation_vamp2(self, model, pairs, slowest: torch.Tensor, generator: torch.Generator, chunk: int) -> float:
        """Nested VAMP-2 of the slowest latent positions over all of ``pairs``."""
        starts, ends = [], []
        for start in range(0, len(pairs[0]), chunk):
            z0, z1, _ = self.latent_pairs(
                model, pairs[0][start : start + chunk], pairs[1][start : start + chunk], generator
            )
            starts.append(split_phase_space(z0)[0][:, slowest])
            ends.append(split_phase_space(z1)[0][:, slowest])
        return float(nested_vamp2(torch.cat(starts), torch.cat(ends)))

    @torch.no_grad()
    def initialize_frictions(self, model, max_pairs: int = 20000, seed: int = 0) -> None:
        """Start the frictions at their per-mode grid optimum for the model's current map."""
        self._check(model)
        first, second = self.train_pairs
        generator = torch.Generator(device=self.q.device).manual_seed(seed)
        if self.train_weights is None:
            pick = torch.arange(0, len(first), max(1, len(first) // max_pairs), device=first.device)
        else:
            pick = _draw(len(first), self.train_weights, min(len(first), max_pairs), generator)
        z0, z1, _ = self.latent_pairs(model, first[pick], second[pick], generator)
        model.dynamics.initialize(z0, z1, model.prior.frequencies, self.lag_time(model), self.configuration_only)


class Objective(Protocol):
    """What the training loop needs of an objective: a minibatch loss and a validation loss.

    :class:`MaximumLikelihood`, :class:`VariationalFreeEnergy` and :class:`LaggedLikelihood`
    are the three; each loss is a scalar in nats per sample (per pair for the lagged one).
    """

    #: Shown on the progress bar.
    name: str

    def loss(
        self, model: NeuralCanonicalTransformation, batch_size: int, generator: torch.Generator
    ) -> torch.Tensor: ...

    def validation_loss(self, model: NeuralCanonicalTransformation) -> float | None: ...


class Hamiltonian(Protocol):
    """What variational training needs of a system: energies in kT and masses."""

    kT: float
    masses: Any

    def energy(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor: ...

    def potential(self, q: torch.Tensor) -> torch.Tensor: ...


class MaximumLikelihood:
    """``-E_data[ln rho(q, p)]`` per sample, in reduced units (nats).

    Momenta are drawn fresh from Maxwell-Boltzmann for every minibatch (exact for a
    separable Hamiltonian, where momenta are independent of positions), unless
    on-step momenta are given.

    Parameters
    ----------
    q_train, q_valid : torch.Tensor, shape=(frames, n)
        Physical positions (the validation set should be held-out trajectories).
    p_train, p_valid : torch.Tensor, shape=(frames, n), optional
        Recorded on-step momenta; None resamples them.
    w_train, w_valid : torch.Tensor, shape=(frames,), optional
        Frame weights (e.g. ``exp(V/kT)`` of a biased run): weighted maximum likelihood,
        ``-sum_i w_i ln rho(x_i) / sum_i w_i``. Minibatches are drawn with probability
        proportional to ``w`` (an unbiased estimate of the weighted loss); the validation
        loss is the weighted mean.
    position_noise : torch.Tensor, shape=(n,), optional
        Standard deviation of Gaussian noise added to the training positions of every
        minibatch (physical units; see :func:`stiffest_mode_noise`), a regulariser for small
        datasets. Validation positions are never perturbed.
    """

    name = "maximum-likelihood"

    def __init__(
        self,
        q_train: torch.Tensor,
        q_valid: torch.Tensor | None = None,
        p_train=None,
        p_valid=None,
        w_train=None,
        w_valid=None,
        position_noise: torch.Tensor | None = None,
    ):
        for label, values in (
            ("training", q_train),
            ("validation", q_valid),
            ("training momenta", p_train),
            ("validation momenta", p_valid),
            ("training weights", w_train),
            ("validation weights", w_valid),
        ):
            if values is not None and not bool(torch.isfinite(values).all()):
                raise NeuralCTError(f"{label} data contain NaN or infinite values; clean or drop those frames")
        if len(q_train) < 2:
            raise NeuralCTError("need at least 2 training frames")
        self.q_train, self.q_valid, self.p_train, self.p_valid = q_train, q_valid, p_train, p_valid
        self.w_train, self.w_valid = w_train, w_valid
        self.position_noise = position_noise
        self._valid_noise_seed = 12345

    @staticmethod
    def _negative_log_likelihood(model, q, p, generator) -> torch.Tensor:
        if p is None:
            thermal = torch.sqrt(model.masses * model.kT)
            p = torch.randn(q.shape, generator=generator, dtype=q.dtype, device=q.device) * thermal
        return -model.log_prob_reduced(model.to_reduced(q, p))

    def loss(self, model: NeuralCanonicalTransformation, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        if self.w_train is None:
            index = torch.randint(len(self.q_train), (batch_size,), generator=generator, device=generator.device)
        else:
            index = torch.multinomial(self.w_train, batch_size, replacement=True, generator=generator)
        p = None if self.p_train is None else self.p_train[index]
        q = self.q_train[index]
        if self.position_noise is not None:
            q = q + torch.randn(q.shape, generator=generator, dtype=q.dtype, device=q.device) * self.position_noise
        return self._negative_log_likelihood(model, q, p, generator).mean()

    def validation_loss(self, model: NeuralCanonicalTransformation, chunk: int = 1024) -> float | None:
        """Mean NLL on the validation set with fixed momentum draws (comparable across steps).

        ``chunk`` frames at a time, so that the chunk's intermediates stay small (on one CPU thread
        B1's 4,000 held-out frames take 60-66 ms in chunks of 1,024, 2,048 or 4,096 alike).
        """
        if self.q_valid is None or len(self.q_valid) == 0:
            return None
        generator = torch.Generator(device=self.q_valid.device).manual_seed(self._valid_noise_seed)
        weights = (
            torch.ones(len(self.q_valid), dtype=self.q_valid.dtype, device=self.q_valid.device)
            if self.w_valid is None
            else self.w_valid
        )
        total = 0.0
        for start in range(0, len(self.q_valid), chunk):
            q = self.q_valid[start : start + chunk]
            p = None if self.p_valid is None else self.p_valid[start : start + chunk]
            with torch.no_grad():
                total += float(
                    (weights[start : start + chunk] * self._negative_log_likelihood(model, q, p, generator)).sum()
                )
        return total / float(weights.sum())


def stiffest_mode_noise(q: torch.Tensor, masses: torch.Tensor, fraction: float) -> torch.Tensor | None:
    """Per-coordinate noise, shape (n,): ``fraction`` of the thermal amplitude of the stiffest mode.

    Isotropic in mass-weighted coordinates ``sqrt(m) q`` with standard deviation ``fraction``
    times the smallest principal standard deviation of the data there (the stiffest normal
    mode, ``sqrt(kT) / w_max`` for a harmonic system). Smoothing the data at a fraction of the
    smallest length scale it has keeps the model from resolving single frames, while every
    mode's variance grows by at most ``fraction^2`` (a bias of at most ``fraction^2 / 2`` nats
    per mode). None when ``fraction`` is 0.

    Parameters
    ----------
    q : torch.Tensor, shape=(frames, n)
        Training positions.
    masses : torch.Tensor, shape=(n,)
    fraction : float
        Noise over the stiffest mode's amplitude, >= 0.
    """
    if not fraction >= 0:
        raise NeuralCTError(f"--position-noise must be >= 0, got {fraction}")
    if fraction == 0:
        return None
    weighted = (q * masses.sqrt()).double()
    smallest_variance = torch.linalg.eigvalsh(torch.cov(weighted.T).reshape(q.shape[1], q.shape[1]))[0].clamp_min(0)
    return (fraction * smallest_variance.sqrt() / masses.double().sqrt()).to(q.dtype)


class VariationalFreeEnergy:
    """``E_{x ~ rho}[ln rho(x) + beta H(x)] >= -ln Z`` with reparameterised model samples.

    Parameters
    ----------
    system : Hamiltonian
        Gives ``energy(q, p)`` in kT for physical coordinates.
    """

    name = "variational"

    def __init__(self, system: Hamiltonian):
        self.system = system

    def per_sample(
        self, model: NeuralCanonicalTransformation, n_samples: int, generator: torch.Generator
    ) -> torch.Tensor:
        """``ln rho(x) + beta H(x)`` for fresh model samples, shape (n_samples,)."""
        x, log_prob = model.sample_reduced(n_samples, generator)
        q, p = model.from_reduced(x)
        return log_prob + model.reduction_log_det() + self.system.energy(q, p)

    def loss(self, model, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return self.per_sample(model, batch_size, generator).mean()

    def validation_loss(self, model, chunk: int = 4096) -> float | None:
        return None

    def estimate(self, model, n_samples: int = 20000, chunk: int = 2000, seed: int = 0) -> dict[str, float]:
        """Variational free energy (kT) with its standard error, from ``n_samples`` draws.

        Also the importance-sampling estimate ``-ln mean(exp(-(ln rho + beta H)))`` of
        ``-ln Z`` and Kish's effective sample size fraction of the weights.
        """
        generator = torch.Generator(device=model.masses.device).manual_seed(seed)
        values = []
        for start in range(0, n_samples, chunk):
            with torch.no_grad():
                values.append(self.per_sample(model, min(chunk, n_samples - start), generator).double())
        values = torch.cat(values)
        log_w = -values
        log_mean_w = torch.logsumexp(log_w, 0) - math.log(len(values))
        ess = torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)) / len(values)
        return {
            "free_energy": float(values.mean()),
            "free_energy_error": float(values.std() / math.sqrt(len(values))),
            "importance_sampling_free_energy": float(-log_mean_w),
            "effective_sample_size_fraction": float(ess),
            "samples": len(values),
        }


def weighted_resample(q: torch.Tensor, weights: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """``len(q)`` frames drawn with replacement with probability proportional to ``weights`` (all of ``q`` when None).

    Gives the data-dependent start of a weighted fit the statistics (mean, covariance) of
    the weighted data without changing the layers' initialisation code.
    """
    if weights is None:
        return q
    return q[torch.multinomial(weights, len(q), replacement=True, generator=generator)]


def harmonic_start(
    model: NeuralCanonicalTransformation, system: Hamiltonian, n_samples: int = 20000, seed: int = 0
) -> None:
    """Start a variational run from the harmonic approximation of ``system`` at ``q = 0``.

    Draws configurations from ``N(0, kT H^-1)``, ``H`` the Hessian of the potential
    (normal-mode analysis), and initialises the model on them as on data.

    Raises
    ------
    NeuralCTError
        If the Hessian is not positive definite (``q = 0`` is not a minimum).
    """
    dtype = model.masses.dtype
    zero = torch.zeros(1, model.dim, dtype=dtype, device=model.masses.device)
    hessian = torch.autograd.functional.hessian(lambda q: system.potential(q).sum(), zero).reshape(model.dim, model.dim)
    eigenvalues, vectors = torch.linalg.eigh(hessian.double())
    if not bool((eigenvalues > 0).all()):
        raise NeuralCTError("the Hessian at q = 0 is not positive definite; use `init` identity")
    generator = torch.Generator(device=zero.device).manual_seed(seed)
    xi = torch.randn(n_samples, model.dim, generator=generator, dtype=torch.float64, device=zero.device)
    q = (xi / eigenvalues.sqrt()) @ vectors.T * math.sqrt(system.kT)
    model.initialize(q.to(dtype), generator=generator)
