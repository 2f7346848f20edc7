"""``method`` auto's kernel: admitted by Kish's ESS, measured in warm-up, frozen into a cycle of moves."""

import math

import numpy as np
import pytest
import torch

from neuralct.sampling import ChainState, HamiltonianMonteCarlo, IndependenceMetropolis, ToyPotential, warm_up
from neuralct.sampling.diagnostics import effective_sample_size, flow_importance_weights
from neuralct.sampling.mixture import INDEPENDENCE_MOVE_CANDIDATES, FlowMixture, cycle_ess_per_evaluation
from neuralct.toys.hamiltonians import CurvedDoubleWell, HarmonicChain


@pytest.mark.parametrize(
    "independence_correlation,hmc_correlation,moves,hmc_evaluations",
    [(0.5, 0.9, 0, 10), (0.5, 0.9, 4, 10), (0.2, 0.95, 8, 5), (0.9, 0.3, 2, 3)],
)
def test_the_modelled_ess_is_that_of_an_autoregressive_chain_with_those_correlations(
    independence_correlation, hmc_correlation, moves, hmc_evaluations
):
    """Chains whose every move keeps the observable with its correlation, recorded after each move: their measured
    ESS per evaluation is the model's (to the error of the autocorrelation estimate)."""
    rng = np.random.default_rng(0)
    factors = np.array([hmc_correlation] + [independence_correlation] * moves)
    samples, chains = 4000 * len(factors), 64
    x = rng.standard_normal(chains)
    series = np.empty((samples, chains))
    for t in range(samples):
        rho = factors[t % len(factors)]
        x = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(chains)
        series[t] = x
    evaluations = chains * samples // len(factors) * (hmc_evaluations + moves)
    measured = effective_sample_size(series) / evaluations
    modelled = cycle_ess_per_evaluation(independence_correlation, hmc_correlation, moves, hmc_evaluations)
    assert measured == pytest.approx(modelled, rel=0.1)


def test_the_model_pays_for_independence_moves_only_when_they_decorrelate():
    # HMC alone: an AR(1) chain's (1 - rho) / ((1 + rho) L).
    assert cycle_ess_per_evaluation(0.5, 0.8, 0, 10) == pytest.approx(0.2 / 1.8 / 10)
    # Moves that never change the state cost evaluations and give nothing; moves that draw fresh states pay.
    useless = [cycle_ess_per_evaluation(1.0, 0.8, moves, 10) for moves in INDEPENDENCE_MOVE_CANDIDATES]
    fresh = [cycle_ess_per_evaluation(0.0, 0.8, moves, 10) for moves in INDEPENDENCE_MOVE_CANDIDATES]
    assert useless == sorted(useless, reverse=True) and fresh == sorted(fresh)
    assert cycle_ess_per_evaluation(1.0, 1.0, 4, 10) == 0.0


def _mixture(potential, dim, kish_samples=2000, seed=0, mass_matrix="unit"):
    mixture = FlowMixture(
        IndependenceMetropolis(potential),
        HamiltonianMonteCarlo(potential, step_size=0.2, leapfrog_steps=5, mass_matrix=mass_matrix),
    )
    generator = torch.Generator().manual_seed(seed)
    weights = flow_importance_weights(potential, dim, kish_samples, generator) if kish_samples else None
    return mixture, weights, generator


def _warm_up(mixture, system, generator, iterations=40):
    start = torch.as_tensor(system.sample(64, seed=1)[0])
    warm_up([mixture], ChainState.start(mixture.hmc.potential, start), iterations, generator)
    return mixture.choice()


@pytest.mark.parametrize("centre", [0.0, 4.0])
def test_the_measured_correlation_of_a_trajectory_is_that_of_the_leapfrog_rotation(centre):
    """On N(c, I) with unit masses, L = 8 leapfrog steps of 0.1 (no jitter) rotate (x - c, p) by theta per step,
    cos theta = 1 - eps^2 / 2: x' = cos(L theta) x + eps sin(L theta) / sin(theta) p, so E|x' - x|^2 per coordinate
    is (1 - cos)^2 + eps^2 sin^2 / sin^2 theta and the correlation rho = 1 - E|x' - x|^2 / (2 var x) is 0.696
    (cos(L eps) = 0.697 for the exact flow), wherever the centre c is: the spread is a variance, not a second moment.
    Fresh draws from the flow, N(0, I), have rho = 0 on N(0, I)."""

    def potential(x):
        return 0.5 * ((x - centre) ** 2).sum(-1)

    step, length = 0.1, 8
    mixture = FlowMixture(
        IndependenceMetropolis(potential),
        HamiltonianMonteCarlo(potential, step_size=step, leapfrog_steps=length, jitter=0.0, random_length=False),
    )
    mixture.admit({"kish_ess_fraction": 1.0})
    generator = torch.Generator().manual_seed(0)
    state = ChainState.start(potential, centre + torch.randn(256, 3, generator=generator))
    for _ in range(50):
        mixture.hmc.adaptation.log_step = math.log(step)  # the step stays fixed: only the correlation is measured
        state = mixture.step(state, generator, adapt=True)
    mixture.freeze()
    theta = math.acos(1 - step**2 / 2)
    cos, sin = math.cos(length * theta), math.sin(length * theta)
    expected = 1 - ((1 - cos) ** 2 + step**2 * sin**2 / math.sin(theta) ** 2) / 2
    assert expected == pytest.approx(0.696, abs=1e-3)
    assert mixture.measured["hmc_correlation"] == pytest.approx(expected, abs=0.02)
    if centre == 0.0:
        assert mixture.measured["independence_correlation"] == pytest.approx(0.0, abs=0.02)


def test_a_flow_close_to_the_target_mixes_independence_moves_in():
    """N(0, I) drawn for a harmonic chain of unit springs (Kish's fraction about 0.75): independence moves pay."""
    system = HarmonicChain(2, kappa=1.0)
    mixture, weights, generator = _mixture(ToyPotential(system), system.dim)
    mixture.admit(weights)
    choice = _warm_up(mixture, system, generator)
    model = choice["measured"]["ess_per_evaluation_model"]
    assert choice["chosen"] == "mixed" and choice["reason"] == "warmup_measured"
    assert choice["kish_ess_fraction"] == weights["kish_ess_fraction"] > 0.5
    assert mixture.independence_moves > 0 and model[str(mixture.independence_moves)] == max(model.values()) > model["0"]
    assert choice["measured"]["independence_acceptance"] > 0.5


def test_a_weak_flow_leaves_latent_hmc_alone_without_trying_its_moves():
    """N(0, I) drawn for a double well of narrow valleys (Kish's fraction about 0.015): not one independence move,
    not even in warm-up."""
    system = CurvedDoubleWell(barrier=8.0, stiffness=100.0)
    mixture, weights, generator = _mixture(ToyPotential(system), system.dim)
    mixture.admit(weights)
    choice = _warm_up(mixture, system, generator)
    assert choice["chosen"] == "latent-hmc" and choice["reason"] == "kish_below_minimum"
    assert choice["kish_ess_fraction"] < choice["min_kish_ess_fraction"] and choice["measured"] is None
    assert mixture.independence_moves == 0 and mixture.independence.statistics.warmup_evaluations == 0
    assert mixture.hmc.statistics.warmup_evaluations > 0


def test_the_warm_up_measures_what_kish_cannot_tell():
    """Admitted on a Kish fraction that overrates the flow, N(0, I) drawn for a chain of stiff springs is measured
    not to pay: HMC with the fitted masses decorrelates it in a trajectory, the flow's draws are hardly accepted."""
    system = HarmonicChain(3, kappa=30.0)
    mixture, weights, generator = _mixture(ToyPotential(system), system.dim, mass_matrix="curvature")
    assert weights["kish_ess_fraction"] < 0.03
    mixture.admit({**weights, "kish_ess_fraction": 0.5})
    choice = _warm_up(mixture, system, generator)
    assert mixture.independence.statistics.warmup_evaluations == 40 * 64
    assert choice["reason"] == "warmup_measured" and choice["chosen"] == "latent-hmc"
    assert choice["measured"]["independence_acceptance"] < 0.05 and mixture.independence_moves == 0


def test_without_kish_samples_the_flow_is_not_measured_and_latent_hmc_runs_alone():
    system = HarmonicChain(2, kappa=1.0)
    mixture, weights, generator = _mixture(ToyPotential(system), system.dim, kish_samples=0)
    mixture.admit(weights)
    choice = _warm_up(mixture, system, generator)
    assert choice["reason"] == "kish_not_measured" and choice["chosen"] == "latent-hmc"
    assert choice["kish_ess_fraction"] is None and mixture.independence.statistics.warmup_evaluations == 0


def test_the_frozen_cycle_is_one_trajectory_then_the_chosen_independence_moves():
    system = HarmonicChain(2, kappa=1.0)
    mixture, weights, generator = _mixture(ToyPotential(system), system.dim)
    mixture.admit(weights)
    _warm_up(mixture, system, generator)
    moves = mixture.independence_moves
    state = ChainState.start(mixture.hmc.potential, torch.as_tensor(system.sample(8, seed=2)[0]))
    for _ in range(3 * (moves + 1)):
        state = mixture.step(state, generator)
    assert mixture.hmc.statistics.proposals == 3 * 8 and mixture.independence.statistics.proposals == 3 * moves * 8
    assert mixture.phase == 0


def test_the_warm_up_records_are_kept_in_the_whitened_coordinates_of_the_fitted_masses():
    """Records from before the masses are fitted are forgotten; after, with M = L L^T, a move's squared jump is
    du^T M du and the chains' spread the trace of M Cov(u): the metric in which HMC is unit-mass HMC."""

    def potential(x):
        return 0.5 * ((x @ torch.tensor([[4.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.5]])) * x).sum(-1)

    mixture = FlowMixture(
        IndependenceMetropolis(potential),
        HamiltonianMonteCarlo(potential, step_size=0.2, leapfrog_steps=3, mass_matrix="curvature"),
    )
    mixture.admit({"kish_ess_fraction": 1.0})
    generator = torch.Generator().manual_seed(2)
    state = ChainState.start(potential, torch.randn(128, 3, generator=generator))
    for _ in range(5):
        state = mixture.step(state, generator, adapt=True)
    assert mixture.records.independence.moves == 5 * 128 and mixture.records.states == 5 * 128
    mixture.fit_mass_matrix()
    L = mixture.hmc.mass_cholesky
    assert L is not None and not torch.equal(L, torch.eye(3))
    assert mixture.records.independence.moves == 0 and not mixture.records.hmc and mixture.records.states == 0
    M = L @ L.T
    moved = mixture._measured_step(mixture.independence, state, generator)
    jump = moved.position - state.position
    assert mixture.records.independence.moves == 128 and mixture.records.independence.accepted > 0
    expected = float(torch.einsum("bi,ij,bj->", jump, M, jump))
    assert mixture.records.independence.squared == pytest.approx(expected, rel=1e-12)
    final = mixture.step(moved, generator, adapt=True)
    assert mixture.records.states == 128
    covariance = torch.cov(final.position.T, correction=0)
    assert mixture.records.variance_trace() == pytest.approx(float(torch.trace(M @ covariance)), rel=1e-10)
