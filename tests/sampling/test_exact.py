"""Latent HMC and independence moves are exact whatever the flow: checked on toys with a deliberately poor flow."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import stats

from neuralct.sampling import (
    ChainState,
    HamiltonianMonteCarlo,
    IndependenceMetropolis,
    LatentPotential,
    ToyPotential,
    iterate,
    sample_chains,
    warm_up,
)
from neuralct.sampling.chains import flow_basin_fractions
from neuralct.sampling.diagnostics import flow_importance_weights, mean_standard_error
from neuralct.sampling.mixture import FlowMixture
from neuralct.sampling.targets import toy_target
from neuralct.toys.hamiltonians import CurvedDoubleWell, HarmonicChain
from neuralct.training.loop import TrainingSettings
from neuralct.workflows.train import fit_toy

ARCHITECTURE = [{"type": "linear", "point": True}, {"type": "point", "n_layers": 4, "hidden": 16, "depth": 2}]


def poor_model(system, steps=40, seed=0):
    """A flow trained far too briefly: visibly not the Boltzmann distribution."""
    settings = TrainingSettings(steps=steps, batch_size=128, progress=False, validate_every=1000, checkpoint_every=1000)
    model, _ = fit_toy(
        system,
        "ml",
        ARCHITECTURE,
        settings,
        samples=1000,
        validation_fraction=0.0,
        dtype="float64",
        device="cpu",
        seed=seed,
    )
    with torch.no_grad():  # move the couplings off the identity so every log-det term is exercised
        generator = torch.Generator().manual_seed(seed)
        for parameter in model.flow.layers[1].parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def double_well():
    torch.set_default_dtype(torch.float64)
    system = CurvedDoubleWell()
    return system, poor_model(system)


@pytest.fixture(scope="module")
def chain():
    torch.set_default_dtype(torch.float64)
    system = HarmonicChain(6, masses=[1.0, 2.0, 1.0, 3.0, 1.0, 0.5])
    return system, poor_model(system)


def kernels_for(method, potential):
    if method == "latent-hmc":
        return [HamiltonianMonteCarlo(potential, step_size=0.2, leapfrog_steps=5)]
    if method == "latent-hmc-auto":
        # Masses, step and trajectory length all adapted in warm-up, then frozen.
        return [HamiltonianMonteCarlo(potential, step_size=0.2, leapfrog_steps=None, mass_matrix="curvature")]
    if method == "independence":
        return [IndependenceMetropolis(potential)]
    return [IndependenceMetropolis(potential), HamiltonianMonteCarlo(potential, step_size=0.2, leapfrog_steps=3)]


@pytest.mark.parametrize("toy", ["double_well", "chain"])
def test_every_log_det_term_is_the_slogdet_of_the_autograd_jacobian(toy, request):
    system, model = request.getfixturevalue(toy)
    u = torch.randn(5, system.dim)
    q, log_det = model.configuration_from_latent(u)
    back, log_det_forward = model.configuration_to_latent(q)
    assert torch.allclose(back, u, atol=1e-10, rtol=0)
    assert torch.allclose(log_det, -log_det_forward, atol=1e-10)
    for row in range(len(u)):
        jacobian = torch.autograd.functional.jacobian(lambda v: model.configuration_from_latent(v[None])[0][0], u[row])
        assert abs(log_det[row] - torch.linalg.slogdet(jacobian)[1]) < 1e-10
    # Each layer's own term: the flow's configuration map and the frequency layer.
    for layer in model.flow.layers:
        Q = torch.randn(3, system.dim)
        image, layer_log_det = layer.configuration_inverse(Q)
        for row in range(3):
            jacobian = torch.autograd.functional.jacobian(lambda v: layer.configuration_inverse(v[None])[0][0], Q[row])
            assert abs(layer_log_det[row] - torch.linalg.slogdet(jacobian)[1]) < 1e-10
    frequency_layer = model.prior.frequency_layer
    z = torch.randn(2 * system.dim)
    jacobian = torch.autograd.functional.jacobian(lambda v: frequency_layer.inverse(v[None])[0][0], z)
    assert abs(frequency_layer.inverse(z[None])[1][0] - torch.linalg.slogdet(jacobian)[1]) < 1e-10


def test_the_poor_flow_is_poor(double_well):
    """Otherwise the exactness tests below prove nothing about the Metropolis correction."""
    system, model = double_well
    with torch.no_grad():
        q, _ = model.configuration_from_latent(torch.randn(20000, 2, generator=torch.Generator().manual_seed(0)))
    x_grid, x_cdf = system.x_cdf()
    assert stats.kstest(q[:, 0].numpy(), lambda v: np.interp(v, x_grid, x_cdf)).pvalue < 1e-6
    assert abs((q[:, 0] > 0).double().mean().item() - system.population_positive_x()) > 0.03


def test_flow_basin_fractions_are_where_the_flow_draws_go_not_the_boltzmann_populations(double_well):
    """Each draw is mapped by the flow; the hydrogens a model leaves out are appended unchanged."""
    system, model = double_well
    target = replace(toy_target(model), placed_start=torch.tensor([[3.0]]))
    seen = []

    def indicators(q):
        seen.append(q.shape)
        return {"x > 0": (q[:, 0] > 0).double().numpy(), "placed": (q[:, -1] == 3.0).double().numpy()}

    target.indicators = indicators
    fractions = flow_basin_fractions(model, target, 3000, torch.Generator().manual_seed(4))
    with torch.no_grad():
        q, _ = model.configuration_from_latent(torch.randn(3000, 2, generator=torch.Generator().manual_seed(4)))
    assert fractions["x > 0"] == (q[:, 0] > 0).double().mean().item()
    assert abs(fractions["x > 0"] - system.population_positive_x()) > 0.03, "the poor flow's share, not the truth"
    assert fractions["placed"] == 1.0 and seen == [(3000, 3)]


def _flow_potential(u):
    """The flow's own density in latent space, N(0, I): a wrong target (negative control)."""
    return 0.5 * (u**2).sum(-1)


def _exact_then_kernel(system, model, method, n_chains, iterations, seed, wrong_target=False):
    """Adapt on exact samples, then apply the frozen kernel ``iterations`` times to fresh exact samples."""
    potential = _flow_potential if wrong_target else LatentPotential(model, ToyPotential(system))
    kernels = kernels_for(method, potential)
    generator = torch.Generator().manual_seed(seed)
    start = torch.as_tensor(system.sample(n_chains, seed=seed)[0])
    with torch.no_grad():
        u = LatentPotential(model, ToyPotential(system)).to_latent(start)
    warm_up(kernels, ChainState.start(potential, u[:512]), 30, generator)
    state = ChainState.start(potential, u)
    for _ in range(iterations):
        state = iterate(kernels, state, generator)
    with torch.no_grad():
        q, _ = model.configuration_from_latent(state.position)
    return start.numpy(), q.numpy(), kernels


@pytest.mark.parametrize("method", ["latent-hmc", "latent-hmc-auto", "independence", "mixed"])
def test_kernel_leaves_the_double_well_boltzmann_distribution_invariant(double_well, method):
    """Independent chains from exact samples stay exact: KS of x and y, basin population (4 sigma)."""
    system, model = double_well
    _, q, kernels = _exact_then_kernel(system, model, method, 20000, 3, seed=1)
    x_grid, x_cdf = system.x_cdf()
    assert stats.kstest(q[:, 0], lambda v: np.interp(v, x_grid, x_cdf)).pvalue > 1e-3
    population = (q[:, 0] > 0).mean()
    exact = system.population_positive_x()
    assert abs(population - exact) < 4 * math.sqrt(exact * (1 - exact) / len(q))
    moments = system.moments()
    assert abs(q[:, 1].mean() - moments["mean_y"]) < 4 * math.sqrt(moments["var_y"] / len(q))
    assert all(kernel.statistics.accepted > 0.05 * kernel.statistics.proposals for kernel in kernels), (
        "the chains must move"
    )
    if method == "latent-hmc-auto":
        assert kernels[0].leapfrog_steps in HamiltonianMonteCarlo.LEAPFROG_CANDIDATES


@pytest.mark.parametrize("method", ["latent-hmc", "independence"])
def test_detailed_balance_on_binned_pairs(double_well, method):
    """x ~ pi, x' ~ K(x, .): detailed balance makes the joint law of (x, x') symmetric (Bowker's test),
    and the same kernel aimed at the flow's density instead of Boltzmann visibly breaks it."""
    system, model = double_well

    def bowker_pvalue(wrong_target):
        start, end, _ = _exact_then_kernel(system, model, method, 20000, 1, seed=2, wrong_target=wrong_target)
        edges = np.quantile(start[:, 0], np.linspace(0, 1, 7)[1:-1])
        counts = np.zeros((6, 6))
        np.add.at(counts, (np.digitize(start[:, 0], edges), np.digitize(end[:, 0], edges)), 1)
        upper = np.triu_indices(6, 1)
        total = counts[upper] + counts.T[upper]
        used = total > 0
        statistic = ((counts[upper] - counts.T[upper])[used] ** 2 / total[used]).sum()
        return stats.chi2.sf(statistic, used.sum())

    assert bowker_pvalue(False) > 1e-3
    assert bowker_pvalue(True) < 1e-6


@pytest.mark.parametrize("method", ["latent-hmc", "latent-hmc-auto", "independence"])
def test_harmonic_chain_normal_modes_stay_exact(chain, method):
    """Every normal-mode coordinate of the chain stays N(0, 1/w^2) after the kernel (KS and variance)."""
    system, model = chain
    _, q, _ = _exact_then_kernel(system, model, method, 20000, 3, seed=3)
    eigenvalues, vectors = system._normal_modes()
    modes = (q * np.sqrt(system.masses)) @ vectors * np.sqrt(eigenvalues)
    for k in range(system.dim):
        assert stats.kstest(modes[:, k], "norm").pvalue > 1e-4
        assert abs(modes[:, k].var() - 1.0) < 4 * math.sqrt(2.0 / len(modes))


@pytest.mark.parametrize(
    "method",
    [pytest.param("latent-hmc", marks=pytest.mark.slow), "independence", pytest.param("mixed", marks=pytest.mark.slow)],
)
def test_chains_from_the_flow_converge_to_the_double_well_populations(double_well, method):
    """From the flow's own (wrong) distribution the chains reach the exact basin population and moments."""
    system, model = double_well
    potential = LatentPotential(model, ToyPotential(system))
    kernels = kernels_for(method, potential)
    generator = torch.Generator().manual_seed(4)
    start = ChainState.start(potential, torch.randn(256, 2, generator=generator))
    _, u = sample_chains(kernels, start, 60, 200, generator)
    with torch.no_grad():
        q, _ = model.configuration_from_latent(u.reshape(-1, 2))
    q = q.reshape(u.shape).numpy()
    basin = (q[..., 0] > 0).astype(float)
    exact = system.population_positive_x()
    assert abs(basin.mean() - exact) < 4 * mean_standard_error(basin) + 0.005, (
        basin.mean(),
        exact,
        mean_standard_error(basin),
    )
    moments = system.moments()
    assert abs(q[..., 0].mean() - moments["mean_x"]) < 4 * mean_standard_error(q[..., 0]) + 0.01
    assert abs(q[..., 0].var() / moments["var_x"] - 1) < 0.1


@pytest.mark.parametrize(
    "case,mixes",
    [
        # The briefly trained flow of the double well: Kish's ESS fraction about 0.2, good enough for global moves.
        ("trained flow, double well", True),
        # N(0, I) drawn for a double well of narrow valleys: Kish's ESS fraction about 0.015.
        ("identity flow, narrow double well", False),
    ],
)
def test_the_kernel_chosen_by_auto_leaves_the_double_well_boltzmann_distribution_invariant(double_well, case, mixes):
    """``method`` auto: admitted by Kish's ESS, measured and frozen in warm-up, then a fixed cycle of moves, each
    recorded; from exact samples, every move of two whole cycles keeps x, y and the basin population exact."""
    if mixes:
        system, model = double_well
        potential = LatentPotential(model, ToyPotential(system))
    else:
        system = CurvedDoubleWell(barrier=8.0, stiffness=100.0)
        potential = ToyPotential(system)  # the identity flow: latent points are physical ones, drawn from N(0, I)
    mixture = FlowMixture(
        IndependenceMetropolis(potential),
        HamiltonianMonteCarlo(potential, step_size=0.2, leapfrog_steps=None, mass_matrix="curvature"),
    )
    generator = torch.Generator().manual_seed(5)
    mixture.admit(flow_importance_weights(potential, system.dim, 2000, generator))
    to_latent = potential.to_latent if mixes else (lambda q: q)
    with torch.no_grad():
        warm_start = to_latent(torch.as_tensor(system.sample(256, seed=6)[0]))
        start = to_latent(torch.as_tensor(system.sample(20000, seed=7)[0]))
    warm_up([mixture], ChainState.start(potential, warm_start), 40, generator)
    choice = mixture.choice()
    assert (choice["chosen"] == "mixed") is mixes and (mixture.independence_moves > 0) is mixes, choice
    assert choice["reason"] == ("warmup_measured" if mixes else "kish_below_minimum"), choice
    state = ChainState.start(potential, start)
    x_grid, x_cdf = system.x_cdf()
    exact = system.population_positive_x()
    moments = system.moments()
    for _ in range(2 * (mixture.independence_moves + 1)):
        state = iterate([mixture], state, generator)
        with torch.no_grad():
            q = (potential.to_physical(state.position)[0] if mixes else state.position).numpy()
        assert stats.kstest(q[:, 0], lambda v: np.interp(v, x_grid, x_cdf)).pvalue > 1e-4
        assert abs((q[:, 0] > 0).mean() - exact) < 4.5 * math.sqrt(exact * (1 - exact) / len(q))
        assert abs(q[:, 1].mean() - moments["mean_y"]) < 4.5 * math.sqrt(moments["var_y"] / len(q))
    for kernel in mixture.components:
        moved = kernel.statistics.proposals > 0
        assert moved is (kernel is mixture.hmc or mixes)
        assert not moved or kernel.statistics.accepted > 0.05 * kernel.statistics.proposals, "the chains must move"


def test_a_toy_potential_is_the_potential_energy_in_units_of_kt():
    """``beta U``: a spring of constant 4 at kT = 2.5 has 4 q^2 / 2 / 2.5 = 0.2, 0.8 and 3.2 at q = 0.5, 1, -2."""

    class Spring:
        kT = 2.5

        def potential(self, q):
            return 0.5 * 4.0 * (q**2).sum(-1)

    q = torch.tensor([[0.5], [1.0], [-2.0]], dtype=torch.float64)
    assert torch.allclose(ToyPotential(Spring())(q), torch.tensor([0.2, 0.8, 3.2], dtype=torch.float64), rtol=1e-12)


def test_a_flow_that_leaves_coordinates_out_has_no_importance_weights(double_well):
    """Kish's weights need the flow's density of every coordinate: not defined once hydrogens are placed beside it."""
    from neuralct.sampling.targets import flow_draws_whole_configurations

    _, model = double_well
    target = toy_target(model)
    assert flow_draws_whole_configurations(model, target)
    assert not flow_draws_whole_configurations(model, replace(target, placed_start=torch.zeros(1, 3)))
