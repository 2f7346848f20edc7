"""Independence moves from the flow mixed with latent HMC, in the proportion that the warm-up measures to pay most.

A flow whose importance weights are good enough draws whole configurations that a Metropolis
test accepts often: such global moves cost one energy evaluation each and can cross barriers
that an HMC trajectory of ``L`` evaluations does not. :class:`FlowMixture` is the kernel of
``neuralct sample --method auto``: admitted by Kish's ESS fraction of the flow's weights, it
measures both moves in the warm-up, chooses how many independence moves follow each latent HMC
trajectory, and keeps that cycle fixed for sampling.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .hmc import ChainState, HamiltonianMonteCarlo, IndependenceMetropolis

__all__ = [
    "INDEPENDENCE_MOVE_CANDIDATES",
    "MIN_KISH_FRACTION",
    "CHOICE_RULE",
    "FlowMixture",
    "cycle_ess_per_evaluation",
    "choice_record",
]

#: Independence moves per latent HMC trajectory that the warm-up chooses from.
INDEPENDENCE_MOVE_CANDIDATES = (0, 1, 2, 4, 8)

#: Kish's ESS fraction of the flow's importance weights below which no independence move is tried. The acceptance
#: of independence moves is about this fraction: below 1 in 30, a fresh configuration from the flow costs more
#: evaluations than the longest HMC trajectory tried (32 leapfrog steps), and the warm-up would spend them for nothing.
MIN_KISH_FRACTION = 0.03

#: How the kernel is chosen, recorded with a run's settings so that a folder that chose otherwise is not resumed.
CHOICE_RULE = (
    f"flow admitted at Kish ESS fraction >= {MIN_KISH_FRACTION}; warm-up: one independence move then one latent HMC "
    "trajectory per iteration, both measured after the mass matrix is fitted; sampling: one trajectory then k "
    f"independence moves, each move recorded, k in {', '.join(map(str, INDEPENDENCE_MOVE_CANDIDATES))} with the "
    "most modelled ESS per evaluation"
)


def cycle_ess_per_evaluation(
    independence_correlation: float, hmc_correlation: float, moves: int, hmc_evaluations: float
) -> float:
    """Modelled ESS per energy evaluation of the cycle "one HMC trajectory, then ``moves`` independence moves".

    Every move is recorded. Each move is modelled as keeping an observable with its correlation
    ``rho`` (an autoregressive chain whose coefficient depends on the move), so the correlation
    of two records is the product of the ``rho`` of the moves between them. Averaged over the
    cycle's phases, the integrated autocorrelation time is ``tau = 1 + 2/n sum_s sum_l
    prod rho``, and the ESS per evaluation ``n / (tau (hmc_evaluations + moves))`` for ``n =
    moves + 1`` records per cycle (an independence move costs one evaluation).

    Parameters
    ----------
    independence_correlation, hmc_correlation : float
        ``rho`` of one independence move and of one HMC trajectory, in [0, 1].
    moves : int
        Independence moves per trajectory.
    hmc_evaluations : float
        Energy evaluations per trajectory (its leapfrog steps).

    Returns
    -------
    float
        Effective samples per evaluation per chain; 0 for a cycle that never decorrelates (``rho`` 1 throughout).
    """
    factors = [hmc_correlation] + [independence_correlation] * moves
    cycle = math.prod(factors)
    if cycle >= 1.0:
        return 0.0
    lag_sums = 0.0
    for phase in range(len(factors)):
        product, within_cycle = 1.0, 0.0
        for lag in range(len(factors)):
            product *= factors[(phase + lag) % len(factors)]
            within_cycle += product
        lag_sums += within_cycle / (1.0 - cycle)
    tau = 1.0 + 2.0 * lag_sums / len(factors)
    return len(factors) / (tau * (hmc_evaluations + moves))


def choice_record(
    moves: int, reason: str, kish_fraction: float | None = None, measured: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What ``method`` auto chose and why, as plain data for summary.json.

    Parameters
    ----------
    moves : int
        Independence moves per HMC trajectory; 0 is latent HMC alone.
    reason : {"placed_hydrogens", "kish_not_measured", "kish_below_minimum", "warmup_did_not_measure", \
"warmup_measured"}
        What decided: a model that leaves hydrogens out (its flow cannot draw whole
        configurations), no Kish draws, a Kish fraction below :data:`MIN_KISH_FRACTION`, a
        warm-up too short to measure the moves, or the warm-up's measurements.
    kish_fraction : float or None
        Kish's ESS fraction of the flow's importance weights, where measured.
    measured : dict or None
        What the warm-up measured and modelled (:meth:`FlowMixture.freeze`), where it did.
    """
    return {
        "chosen": "mixed" if moves else "latent-hmc",
        "independence_moves_per_hmc_trajectory": moves,
        "reason": reason,
        "kish_ess_fraction": kish_fraction,
        "min_kish_ess_fraction": MIN_KISH_FRACTION,
        "measured": measured,
        "note": CHOICE_RULE,
    }


@dataclass
class _JumpSums:
    """Squared jumps of one move in the whitened coordinates: their sum, the moves, accepted ones and evaluations."""

    squared: float = 0.0
    moves: int = 0
    accepted: int = 0
    evaluations: int = 0

    def add(self, squared: torch.Tensor, moved: torch.Tensor, evaluations: int) -> None:
        """Add one step of all chains: squared jumps (chains,), which moved (chains,), the evaluations spent."""
        self.squared += float(squared.sum())
        self.moves += len(squared)
        self.accepted += int(moved.sum())
        self.evaluations += int(evaluations)


@dataclass
class _WarmupRecords:
    """What the warm-up's second half measured: jumps of each move and the spread of the chains (whitened)."""

    independence: _JumpSums = field(default_factory=_JumpSums)
    #: Trajectory length -> its jumps.
    hmc: dict[int, _JumpSums] = field(default_factory=dict)
    states: int = 0
    position_sum: torch.Tensor | None = None
    square_sum: torch.Tensor | None = None

    def add_states(self, whitened: torch.Tensor) -> None:
        """Add the chains' whitened positions (chains, n)."""
        finite = whitened[torch.isfinite(whitened).all(-1)]
        self.states += len(finite)
        position_sum, square_sum = finite.sum(0), (finite**2).sum(0)
        self.position_sum = position_sum if self.position_sum is None else self.position_sum + position_sum
        self.square_sum = square_sum if self.square_sum is None else self.square_sum + square_sum

    def variance_trace(self) -> float:
        """Sum over coordinates of the chains' variance; nan before two states."""
        if self.states < 2:
            return float("nan")
        mean = self.position_sum / self.states
        return float((self.square_sum / self.states - mean**2).sum())

    def state_dict(self) -> dict:
        """The sums as plain data (for checkpoints)."""
        return {
            "independence": asdict(self.independence),
            "hmc": {length: asdict(sums) for length, sums in self.hmc.items()},
            "states": self.states,
            "position_sum": self.position_sum,
            "square_sum": self.square_sum,
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> "_WarmupRecords":
        """The records of :meth:`state_dict`."""
        return cls(
            _JumpSums(**state["independence"]),
            {length: _JumpSums(**sums) for length, sums in state["hmc"].items()},
            state["states"],
            state["position_sum"],
            state["square_sum"],
        )


class FlowMixture:
    """Latent HMC with independence moves from the flow, as many per trajectory as the warm-up finds to pay most.

    :meth:`admit` takes Kish's ESS fraction of the flow's importance weights (measured before
    the warm-up, :func:`~neuralct.sampling.diagnostics.flow_importance_weights`): below
    :data:`MIN_KISH_FRACTION` (or not measured) the kernel is latent HMC alone. An admitted flow
    gets one independence move before each HMC trajectory of the warm-up; after the mass
    matrix is fitted, both moves' realised squared jumps are recorded in the HMC's whitened
    coordinates ``v = L^T u``, with the chains' spread there. :meth:`freeze` turns them into
    correlations per move, ``rho = 1 - E[|v' - v|^2] / (2 tr Cov v)`` (clipped to [0, 1]: the
    correlation of an autoregressive chain whose steps have that mean squared size), and keeps
    the number of independence moves per trajectory of :data:`INDEPENDENCE_MOVE_CANDIDATES`
    with the most :func:`cycle_ess_per_evaluation`; 0 is latent HMC alone.

    After the warm-up each :meth:`step` is one move of the fixed cycle "one HMC trajectory,
    then ``independence_moves`` independence moves", so that every move is recorded. Each move
    leaves ``exp(-U)`` invariant and the cycle is fixed (the position in it is part of the
    chains' state), so the recorded chains are exact.

    Parameters
    ----------
    independence : IndependenceMetropolis
        Independence moves from the flow, on the latent potential.
    hmc : HamiltonianMonteCarlo
        Latent HMC on the same potential (its step size, masses and length adapt as they would alone).
    """

    name = "auto"

    def __init__(self, independence: IndependenceMetropolis, hmc: HamiltonianMonteCarlo):
        self.independence = independence
        self.hmc = hmc
        #: Kish's figures of the flow (:func:`~neuralct.sampling.diagnostics.flow_importance_weights`); None: not
        #: measured.
        self.flow_weights: dict[str, Any] | None = None
        self.admitted = False
        #: Independence moves per HMC trajectory: chosen by :meth:`freeze`, 0 (latent HMC alone) until then.
        self.independence_moves = 0
        #: The move of the cycle the next :meth:`step` makes: 0 the trajectory, then the independence moves.
        self.phase = 0
        self.records = _WarmupRecords()
        #: What :meth:`freeze` measured and modelled; None before.
        self.measured: dict[str, Any] | None = None

    @property
    def components(self) -> tuple[IndependenceMetropolis, HamiltonianMonteCarlo]:
        """The two kernels, with their own statistics."""
        return self.independence, self.hmc

    def admit(self, flow_weights: dict[str, Any] | None) -> None:
        """Let independence moves into the warm-up if Kish's ESS fraction of ``flow_weights`` reaches the minimum.

        ``flow_weights`` are :func:`~neuralct.sampling.diagnostics.flow_importance_weights`'s
        figures, None where they were not measured (then latent HMC alone).
        """
        self.flow_weights = flow_weights
        fraction = None if flow_weights is None else flow_weights["kish_ess_fraction"]
        self.admitted = fraction is not None and fraction >= MIN_KISH_FRACTION

    def step(self, state: ChainState, generator: torch.Generator | None = None, adapt: bool = False) -> ChainState:
        """In warm-up (``adapt``): an independence move if admitted, then a trajectory, both measured. After: the
        cycle's next move."""
        if adapt:
            if self.admitted:
                state = self._measured_step(self.independence, state, generator)
            state = self._measured_step(self.hmc, state, generator)
            self.records.add_states(self._whitened(state.position))
            return state
        kernel = self.hmc if self.phase == 0 else self.independence
        self.phase = (self.phase + 1) % (self.independence_moves + 1)
        return kernel.step(state, generator)

    def _whitened(self, points: torch.Tensor) -> torch.Tensor:
        """Points or jumps (chains, n) in the HMC's whitened coordinates ``v = L^T u``."""
        return points if self.hmc.mass_cholesky is None else points @ self.hmc.mass_cholesky

    def _measured_step(self, kernel: Any, state: ChainState, generator: torch.Generator | None) -> ChainState:
        """One adapting step of ``kernel``, its squared jumps recorded."""
        evaluations = kernel.statistics.warmup_evaluations
        new_state = kernel.step(state, generator, adapt=True)
        jump = self._whitened(new_state.position - state.position)
        squared = torch.nan_to_num((jump**2).sum(-1), nan=0.0, posinf=0.0)
        if kernel is self.hmc:
            sums = self.records.hmc.setdefault(self.hmc.leapfrog_steps, _JumpSums())
        else:
            sums = self.records.independence
        sums.add(squared, squared > 0, kernel.statistics.warmup_evaluations - evaluations)
        return new_state

    def discard_curvature(self) -> None:
        """The HMC's :meth:`~neuralct.sampling.hmc.HamiltonianMonteCarlo.discard_curvature`."""
        self.hmc.discard_curvature()

    def fit_mass_matrix(self) -> None:
        """Fit the HMC's masses and start the records afresh: they are kept in the new whitened coordinates."""
        self.hmc.fit_mass_matrix()
        self.records = _WarmupRecords()

    def freeze(self) -> None:
        """End warm-up: freeze the HMC, then fix the independence moves per trajectory from the records."""
        self.hmc.freeze()
        self.phase = 0
        self.measured = self._measure() if self.admitted else None
        if self.measured is not None:
            model = self.measured["ess_per_evaluation_model"]
            self.independence_moves = max(INDEPENDENCE_MOVE_CANDIDATES, key=lambda moves: model[str(moves)])

    def _measure(self) -> dict[str, Any] | None:
        """Correlations per move from the records and the modelled ESS per evaluation of each candidate; None where
        the records do not tell (no record of the frozen length, no spread of the chains)."""
        independence = self.records.independence
        trajectories = self.records.hmc.get(self.hmc.leapfrog_steps)
        spread = 2.0 * self.records.variance_trace()
        if not independence.moves or trajectories is None or not trajectories.moves or not spread > 0:
            return None
        independence_jump = independence.squared / independence.moves
        hmc_jump = trajectories.squared / trajectories.moves
        hmc_evaluations = trajectories.evaluations / trajectories.moves
        independence_correlation = min(max(1.0 - independence_jump / spread, 0.0), 1.0)
        hmc_correlation = min(max(1.0 - hmc_jump / spread, 0.0), 1.0)
        return {
            "independence_acceptance": independence.accepted / independence.moves,
            "independence_squared_jump": independence_jump,
            "hmc_squared_jump": hmc_jump,
            "hmc_evaluations_per_trajectory": hmc_evaluations,
            "twice_variance_trace": spread,
            "independence_correlation": independence_correlation,
            "hmc_correlation": hmc_correlation,
            "ess_per_evaluation_model": {
                str(moves): cycle_ess_per_evaluation(independence_correlation, hmc_correlation, moves, hmc_evaluations)
                for moves in INDEPENDENCE_MOVE_CANDIDATES
            },
        }

    def choice(self) -> dict[str, Any]:
        """What was chosen and why, as plain data for summary.json (after :meth:`freeze`)."""
        fraction = None if self.flow_weights is None else self.flow_weights["kish_ess_fraction"]
        if self.flow_weights is None:
            reason = "kish_not_measured"
        elif not self.admitted:
            reason = "kish_below_minimum"
        elif self.measured is None:
            reason = "warmup_did_not_measure"
        else:
            reason = "warmup_measured"
        return choice_record(self.independence_moves, reason, fraction, self.measured)

    def state_dict(self) -> dict:
        """Both kernels, the flow's figures, the choice, the cycle's position and the records (for checkpoints)."""
        return {
            "independence": self.independence.state_dict(),
            "hmc": self.hmc.state_dict(),
            "flow_weights": self.flow_weights,
            "admitted": self.admitted,
            "independence_moves": self.independence_moves,
            "phase": self.phase,
            "records": self.records.state_dict(),
            "measured": self.measured,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        self.independence.load_state_dict(state["independence"])
        self.hmc.load_state_dict(state["hmc"])
        self.flow_weights = state["flow_weights"]
        self.admitted = state["admitted"]
        self.independence_moves = state["independence_moves"]
        self.phase = state["phase"]
        self.records = _WarmupRecords.from_state_dict(state["records"])
        self.measured = state["measured"]
