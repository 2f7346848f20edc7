"""Markov chain Monte Carlo kernels on a batch of chains: Hamiltonian Monte Carlo and independence Metropolis.

Every kernel leaves ``exp(-U(x))`` invariant for a potential ``U`` in kT (a differentiable
function of a batch of points). Chains are rows of a batch and never interact. A non-finite
potential or gradient anywhere along a proposal makes that proposal a rejection, counted in
the kernel's statistics; it never stops the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .diagnostics import CurvatureSum

__all__ = ["ChainState", "HamiltonianMonteCarlo", "IndependenceMetropolis", "KernelStatistics", "evaluate_potential"]

#: A potential energy in kT: points of shape (batch, n) to energies of shape (batch,).
Potential = Callable[[torch.Tensor], torch.Tensor]


def evaluate_potential(potential: Potential, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``U(x)`` and ``dU/dx`` of a batch; non-finite rows get ``U = +inf``.

    Parameters
    ----------
    potential : callable
        Points (batch, n) to energies (batch,) in kT; rows must be independent.
    x : torch.Tensor, shape=(batch, n)

    Returns
    -------
    energy : torch.Tensor, shape=(batch,)
        ``+inf`` where the energy or any gradient component is not finite.
    gradient : torch.Tensor, shape=(batch, n)
    """
    if len(x) == 0:
        return x.new_zeros(0), torch.zeros_like(x)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        energy = potential(x)
        finite = torch.isfinite(energy)
        # Rows are independent, so the gradient of the sum over finite rows is each row's gradient.
        (gradient,) = torch.autograd.grad(torch.where(finite, energy, torch.zeros_like(energy)).sum(), x)
    finite = finite & torch.isfinite(gradient).all(-1)
    energy = torch.where(finite, energy.detach(), torch.full_like(energy.detach(), torch.inf))
    return energy, torch.where(finite[:, None], gradient, torch.zeros_like(gradient))


@dataclass
class ChainState:
    """Positions of a batch of chains with their cached potential and gradient.

    Attributes
    ----------
    position : torch.Tensor, shape=(chains, n)
    energy : torch.Tensor, shape=(chains,)
        ``U(position)`` in kT.
    gradient : torch.Tensor, shape=(chains, n)
    """

    position: torch.Tensor
    energy: torch.Tensor
    gradient: torch.Tensor

    @classmethod
    def start(cls, potential: Potential, position: torch.Tensor) -> "ChainState":
        """Evaluate the potential at starting positions (one evaluation per chain)."""
        energy, gradient = evaluate_potential(potential, position)
        return cls(position.detach(), energy, gradient)

    def update(
        self, accepted: torch.Tensor, position: torch.Tensor, energy: torch.Tensor, gradient: torch.Tensor
    ) -> "ChainState":
        """The state with the rows of ``accepted`` (bool, (chains,)) replaced by the proposal."""
        keep = accepted[:, None]
        return ChainState(
            torch.where(keep, position, self.position),
            torch.where(accepted, energy, self.energy),
            torch.where(keep, gradient, self.gradient),
        )


@dataclass
class KernelStatistics:
    """What a kernel did: proposals, acceptances, non-finite rejections, potential evaluations."""

    proposals: int = 0
    accepted: int = 0
    nonfinite: int = 0
    evaluations: int = 0
    warmup_evaluations: int = 0
    acceptance_probability_sum: float = 0.0

    def record(
        self, accept_probability: torch.Tensor, accepted: torch.Tensor, nonfinite: torch.Tensor, evaluations: int
    ) -> None:
        """Add one step of all chains: acceptance probabilities, accepted and non-finite masks (chains,)."""
        self.proposals += int(accepted.numel())
        self.accepted += int(accepted.sum())
        self.nonfinite += int(nonfinite.sum())
        self.evaluations += int(evaluations)
        self.acceptance_probability_sum += float(accept_probability.sum())

    def as_dict(self) -> dict[str, float | int]:
        """Plain numbers for summary.json (acceptance rate = accepted / proposals)."""
        rate = self.accepted / self.proposals if self.proposals else float("nan")
        return {
            "proposals": self.proposals,
            "accepted": self.accepted,
            "acceptance_rate": rate,
            "mean_acceptance_probability": self.acceptance_probability_sum / self.proposals
            if self.proposals
            else float("nan"),
            "nonfinite_rejections": self.nonfinite,
            "energy_evaluations": self.evaluations,
            "warmup_energy_evaluations": self.warmup_evaluations,
        }


def _metropolis(log_ratio: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept with probability ``min(1, exp(log_ratio))``; NaN counts as a rejection."""
    log_ratio = torch.nan_to_num(log_ratio, nan=-torch.inf)
    probability = torch.exp(torch.clamp(log_ratio, max=0.0))
    uniform = torch.rand(log_ratio.shape, generator=generator, dtype=log_ratio.dtype, device=log_ratio.device)
    return probability, uniform < probability


@dataclass
class _DualAveraging:
    """Nesterov dual averaging of ``ln(step size)`` towards a target acceptance (Hoffman & Gelman, JMLR 15, 1593, 2014).

    The frozen value is the mean of ``ln(step size)`` over the second half of the warm-up:
    in short warm-ups the paper's weighted average still remembers the first, far-off steps.
    """

    log_step: float
    target: float
    shrinkage_centre: float = field(init=False)
    iteration: int = 0
    error_sum: float = 0.0
    history: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.shrinkage_centre = math.log(10.0) + self.log_step

    def update(self, acceptance: float, gamma: float = 0.05, t0: float = 10.0) -> None:
        self.iteration += 1
        self.error_sum += self.target - acceptance
        t = self.iteration
        self.log_step = self.shrinkage_centre - math.sqrt(t) / gamma * self.error_sum / (t + t0)
        self.history.append(self.log_step)

    def frozen_log_step(self) -> float:
        """``ln(step size)`` to sample with after warm-up."""
        if not self.history:
            return self.log_step
        return sum(self.history[len(self.history) // 2 :]) / len(self.history[len(self.history) // 2 :])


class HamiltonianMonteCarlo:
    """Leapfrog trajectories with a constant mass matrix and a Metropolis test on ``H = U + p^T M^-1 p / 2``.

    The step size is one for all chains, adapted by dual averaging of the mean acceptance
    probability during warm-up (:meth:`step` with ``adapt=True``) and then frozen at its
    late-warm-up average by :meth:`freeze`: after warm-up the kernel is a fixed Markov kernel, so
    the chains are exact. Each trajectory scales the step by a random factor in
    ``[1 - jitter, 1 + jitter]`` (drawn independently of the state, so reversibility holds),
    which breaks the periodic orbits of fixed-length trajectories in near-harmonic wells. With
    ``random_length`` (the default) each trajectory also takes a number of leapfrog steps drawn
    uniformly from 1 to ``2 L - 1`` (mean ``L``), one draw for all chains, independent of the state:
    the kernel is a mixture of reversible kernels, each exact. A fixed length lands many directions
    near half a period, where a quadratic observable such as the potential energy returns to its
    start (on alanine dipeptide the random length gave 1.2-1.6x the potential energy's effective
    samples per evaluation and 1.2-1.5x the psi basins', benchmark B4).

    With ``leapfrog_steps=None`` the trajectory length is chosen in warm-up too: the adapting
    trajectories cycle through :attr:`LEAPFROG_CANDIDATES`, each recording its expected squared
    jump distance in the whitened coordinates (acceptance probability times the squared
    displacement, Pasarica & Gelman, Statistica Sinica 20, 343, 2010) per potential evaluation,
    and :meth:`freeze` fixes the length with the most over the second half of those records
    (after the mass matrix is fitted). It is fixed before sampling, like the step size.

    The mass matrix is the identity (``mass_matrix="unit"``) or, with ``"curvature"``, the
    mean curvature ``M = E[grad U grad U^T]`` (= ``E[Hessian of U]`` under ``exp(-U)``) of the
    states visited in the second quarter of the warm-up (see
    :func:`~neuralct.sampling.chains.end_warmup_iteration`), set by :meth:`fit_mass_matrix`; the step
    size is then adapted afresh. With ``M = L L^T`` the kernel is unit-mass HMC in
    ``v = L^T x``, where the mean curvature is the identity: a constant linear change of
    variables, so the Metropolis test needs no Jacobian, and ``M`` is fixed before sampling.

    Parameters
    ----------
    potential : callable
        ``U`` in kT, (batch, n) -> (batch,).
    step_size : float
        Leapfrog step (starting value when adapted).
    leapfrog_steps : int or None
        Steps per trajectory; each costs one potential-and-gradient evaluation per chain. None:
        chosen in warm-up from :attr:`LEAPFROG_CANDIDATES` (see above).
    target_acceptance : float
        Mean acceptance probability aimed at during warm-up.
    jitter : float
        Relative range of the random step-size factor, in [0, 1).
    random_length : bool
        Draw each trajectory's number of steps uniformly from 1 to ``2 leapfrog_steps - 1``; False: always
        ``leapfrog_steps``.
    mass_matrix : {"unit", "curvature"}
        The identity, or the mean curvature of the second quarter of the warm-up.
    """

    name = "hmc"
    MASS_MATRICES = ("unit", "curvature")
    #: Pseudo-count of the diagonal mixed into a fitted mass matrix (keeps it positive definite
    #: when few states were seen).
    MASS_SHRINKAGE = 10.0
    #: Trajectory lengths tried in warm-up when ``leapfrog_steps`` is None.
    LEAPFROG_CANDIDATES = (1, 2, 4, 8, 16, 32)
    #: The shortest warm-up that chooses the length: every candidate twice in the second half (after the masses).
    WARMUP_TO_CHOOSE_LENGTH = 4 * len(LEAPFROG_CANDIDATES)

    def __init__(
        self,
        potential: Potential,
        step_size: float = 0.1,
        leapfrog_steps: int | None = 10,
        target_acceptance: float = 0.65,
        jitter: float = 0.1,
        mass_matrix: str = "unit",
        random_length: bool = True,
    ):
        adaptive = leapfrog_steps is None
        if not step_size > 0 or (not adaptive and leapfrog_steps < 1):
            raise ValueError("need step_size > 0 and leapfrog_steps >= 1 (or None: chosen in warm-up)")
        if not 0 < target_acceptance < 1 or not 0 <= jitter < 1:
            raise ValueError("need 0 < target_acceptance < 1 and 0 <= jitter < 1")
        if mass_matrix not in self.MASS_MATRICES:
            raise ValueError(f"mass_matrix must be one of {', '.join(self.MASS_MATRICES)}, got {mass_matrix!r}")
        self.potential = potential
        self.step_size = float(step_size)
        #: Records of the warm-up's trajectory lengths: length -> [jump distance per evaluation, ...]; None: fixed.
        self.jump_records: dict[int, list[float]] | None = (
            {length: [] for length in self.LEAPFROG_CANDIDATES} if adaptive else None
        )
        self.leapfrog_steps = self.LEAPFROG_CANDIDATES[0] if adaptive else int(leapfrog_steps)
        self.jitter = float(jitter)
        self.random_length = bool(random_length)
        self.target_acceptance = float(target_acceptance)
        self.mass_matrix = mass_matrix
        #: Lower Cholesky factor ``L`` of the mass matrix ``M = L L^T``; None: unit masses.
        self.mass_cholesky: torch.Tensor | None = None
        self._curvature = CurvatureSum()
        self.adaptation = _DualAveraging(math.log(step_size), target_acceptance)
        self.statistics = KernelStatistics()

    def freeze(self) -> None:
        """End warm-up: fix the step size (see :class:`_DualAveraging`) and, if adapted, the trajectory length.

        No-op without warm-up iterations. The length is the candidate with the most expected
        squared jump distance per evaluation over the second half of its records.
        """
        if self.adaptation.history:
            self.step_size = math.exp(self.adaptation.frozen_log_step())
        rates = self.jump_rates()
        if rates:
            self.leapfrog_steps = max(rates, key=rates.get)

    def jump_rates(self) -> dict[int, float]:
        """Mean expected squared jump distance per evaluation of each trajectory length tried (second half of its
        records), in whitened coordinates; empty for a fixed length or before any record."""
        if self.jump_records is None:
            return {}
        late = {length: records[len(records) // 2 :] for length, records in self.jump_records.items()}
        return {length: sum(records) / len(records) for length, records in late.items() if records}

    def discard_curvature(self) -> None:
        """Forget the curvature collected so far (the states of a relaxation from the chains' starts)."""
        self._curvature = CurvatureSum()

    def fit_mass_matrix(self) -> None:
        """Set ``M`` to the mean curvature seen so far in warm-up and restart the step-size adaptation.

        ``M = (1 - s) E[g g^T] + s D`` over the gradients ``g`` of the states after each
        warm-up step, with ``D`` the diagonal of ``E[g g^T]`` and ``s = c / (count + c)``,
        ``c`` = :attr:`MASS_SHRINKAGE`. Shrinking towards the diagonal, not towards a multiple
        of the identity, keeps the fit equivariant under a rescaling of coordinates: with
        coordinates of very different curvature (bond lengths in nm next to angles, or next to a
        flow's whitened latent variables) a multiple of the identity would make the soft ones
        heavy. A coordinate whose gradient was always zero gets the mean of the others' diagonal.
        No-op for unit masses, before any warm-up step, and where every gradient seen was zero
        (a flat potential has no curvature to fit: the masses stay the identity).
        """
        if self.mass_matrix != "curvature" or self._curvature.count == 0:
            return
        mean, count = self._curvature.mean(), self._curvature.count
        diagonal = mean.diagonal()
        if not diagonal.mean() > 0:
            return
        diagonal = torch.where(diagonal > 0, diagonal, diagonal[diagonal > 0].mean())
        shrink = self.MASS_SHRINKAGE / (count + self.MASS_SHRINKAGE)
        self.mass_cholesky = torch.linalg.cholesky((1 - shrink) * mean + shrink * torch.diag(diagonal))
        # In v = L^T x the curvature is about the identity: start from a step for a unit Gaussian.
        self.adaptation = _DualAveraging(math.log(len(mean) ** -0.25), self.target_acceptance)
        self._curvature = CurvatureSum()
        if self.jump_records is not None:
            # Jumps measured with the old masses say nothing about the new ones.
            self.jump_records = {length: [] for length in self.jump_records}

    def _to_velocity(self, momentum: torch.Tensor) -> torch.Tensor:
        """``M^-1 p`` with ``p = L xi``: ``L^-T xi`` (rows of a batch)."""
        if self.mass_cholesky is None:
            return momentum
        return torch.linalg.solve_triangular(self.mass_cholesky.T, momentum.T, upper=True).T

    def _to_whitened_force(self, gradient: torch.Tensor) -> torch.Tensor:
        """``L^-1 grad U``: the gradient in ``v = L^T x`` (rows of a batch)."""
        if self.mass_cholesky is None:
            return gradient
        return torch.linalg.solve_triangular(self.mass_cholesky, gradient.T, upper=False).T

    def _trajectory(self, state: ChainState, momentum: torch.Tensor, step: torch.Tensor, steps: int):
        """``steps`` leapfrog steps from ``state`` with whitened momenta ``xi`` (``p = L xi``).

        Chains stop (and will be rejected) at the first non-finite value.
        """
        position, energy, gradient = state.position, state.energy, state.gradient
        alive = torch.isfinite(energy)
        momentum = momentum - 0.5 * step * self._to_whitened_force(gradient)
        evaluations = 0
        for index in range(steps):
            position = torch.where(alive[:, None], position + step * self._to_velocity(momentum), position)
            rows = alive.nonzero().flatten()
            new_energy, new_gradient = evaluate_potential(self.potential, position[rows])
            evaluations += len(rows)
            energy = energy.index_put((rows,), new_energy)
            gradient = gradient.index_put((rows,), new_gradient)
            alive = alive & torch.isfinite(energy)
            kick = 0.5 if index == steps - 1 else 1.0
            momentum = torch.where(alive[:, None], momentum - kick * step * self._to_whitened_force(gradient), momentum)
        return position, momentum, energy, gradient, alive, evaluations

    def step(self, state: ChainState, generator: torch.Generator | None = None, adapt: bool = False) -> ChainState:
        """One trajectory per chain and its Metropolis test; with ``adapt``, adapt the step size (and the trajectory
        length), collect curvature."""
        step_size = math.exp(self.adaptation.log_step) if adapt else self.step_size
        if adapt and self.jump_records is not None:
            self.leapfrog_steps = self.LEAPFROG_CANDIDATES[self.adaptation.iteration % len(self.LEAPFROG_CANDIDATES)]
        chains = len(state.position)
        factor = 1.0 + self.jitter * (
            2.0 * torch.rand(chains, 1, generator=generator, dtype=state.position.dtype, device=state.position.device)
            - 1.0
        )
        momentum = torch.randn(
            state.position.shape, generator=generator, dtype=state.position.dtype, device=state.position.device
        )
        steps = self.leapfrog_steps
        if self.random_length:
            steps = int(torch.randint(1, 2 * steps, (1,), generator=generator, device=state.position.device))
        position, new_momentum, energy, gradient, alive, evaluations = self._trajectory(
            state, momentum, step_size * factor, steps
        )
        log_ratio = state.energy + 0.5 * (momentum**2).sum(-1) - energy - 0.5 * (new_momentum**2).sum(-1)
        log_ratio = torch.where(alive, log_ratio, torch.full_like(log_ratio, -torch.inf))
        probability, accepted = _metropolis(log_ratio, generator)
        if adapt and self.jump_records is not None:
            self._record_jump(state.position, position, probability, evaluations)
        state = state.update(accepted, position, energy, gradient)
        if adapt:
            self.adaptation.update(float(probability.mean()))
            self.statistics.warmup_evaluations += evaluations
            if self.mass_matrix == "curvature" and self.mass_cholesky is None:
                self._curvature.add(state.energy, state.gradient)
        else:
            self.statistics.record(probability, accepted, ~alive, evaluations)
        return state

    def _record_jump(
        self, start: torch.Tensor, proposal: torch.Tensor, probability: torch.Tensor, evaluations: int
    ) -> None:
        """Record the expected squared jump distance per evaluation of this trajectory length (whitened coordinates)."""
        jump = proposal - start
        if self.mass_cholesky is not None:
            jump = jump @ self.mass_cholesky
        squared = torch.nan_to_num((jump**2).sum(-1), nan=0.0, posinf=0.0)
        expected = float((probability * squared).mean())
        self.jump_records[self.leapfrog_steps].append(expected / max(evaluations / len(start), 1.0))

    def state_dict(self) -> dict:
        """Step size, trajectory length, mass matrix, adaptation and statistics as plain data (for checkpoints)."""
        return {
            "step_size": self.step_size,
            "leapfrog_steps": self.leapfrog_steps,
            "jump_records": self.jump_records,
            "adaptation": vars(self.adaptation).copy(),
            "statistics": vars(self.statistics).copy(),
            "mass_cholesky": self.mass_cholesky,
            "curvature_sum": self._curvature.total,
            "curvature_count": self._curvature.count,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        self.step_size = state["step_size"]
        # Checkpoints written before the trajectory length could be adapted hold neither entry.
        self.leapfrog_steps = state.get("leapfrog_steps", self.leapfrog_steps)
        self.jump_records = state.get("jump_records", self.jump_records)
        vars(self.adaptation).update(state["adaptation"])
        vars(self.statistics).update(state["statistics"])
        self.mass_cholesky = state["mass_cholesky"]
        self._curvature = CurvatureSum(state["curvature_sum"], state["curvature_count"])


class IndependenceMetropolis:
    """Proposals drawn independently of the state from ``N(0, I)``, accepted with the exact density ratio.

    In the latent space of a flow (``u`` of
    :meth:`~neuralct.model.NeuralCanonicalTransformation.configuration_to_latent`) the prior's
    configuration marginal is ``N(0, I)``, so drawing ``u'`` is drawing from the flow. The
    importance weight of a point is ``ln w(u) = -U(u) + |u|^2 / 2`` and the move is accepted
    with ``min(1, w(u') / w(u))``: exact for any flow, efficient when the flow is good.

    Parameters
    ----------
    potential : callable
        ``U`` in kT on the latent space, (batch, n) -> (batch,).
    """

    name = "independence"

    def __init__(self, potential: Potential):
        self.potential = potential
        self.statistics = KernelStatistics()

    @staticmethod
    def log_weight(state: ChainState) -> torch.Tensor:
        """``ln w = -U + |u|^2 / 2`` of each chain, shape (chains,)."""
        return -state.energy + 0.5 * (state.position**2).sum(-1)

    def step(self, state: ChainState, generator: torch.Generator | None = None, adapt: bool = False) -> ChainState:
        """One independent proposal per chain and its Metropolis test (nothing to adapt)."""
        proposal = ChainState.start(
            self.potential,
            torch.randn(
                state.position.shape, generator=generator, dtype=state.position.dtype, device=state.position.device
            ),
        )
        log_weight = self.log_weight(proposal)
        probability, accepted = _metropolis(log_weight - self.log_weight(state), generator)
        if adapt:
            self.statistics.warmup_evaluations += len(proposal.position)
        else:
            self.statistics.record(probability, accepted, ~torch.isfinite(proposal.energy), len(proposal.position))
        return state.update(accepted, proposal.position, proposal.energy, proposal.gradient)

    def state_dict(self) -> dict:
        """Statistics as plain data (for checkpoints)."""
        return {"statistics": vars(self.statistics).copy()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        vars(self.statistics).update(state["statistics"])
