"""The HMC kernel's mechanics.

Exact on a Gaussian, step size frozen after warm-up, non-finite energies rejected and counted.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from neuralct.sampling import ChainState, HamiltonianMonteCarlo, iterate, sample_chains, warm_up
from neuralct.sampling.diagnostics import (
    CurvatureSum,
    curvature_spectrum,
    effective_sample_size,
    integrated_autocorrelation_time,
    kish_effective_sample_size,
    split_r_hat,
)

PRECISIONS = torch.tensor([1.0, 25.0, 0.25])


def gaussian(x):
    return 0.5 * (PRECISIONS * x**2).sum(-1)


@pytest.mark.parametrize("random_length", [True, False])
def test_plain_hmc_keeps_an_anisotropic_gaussian_exact(random_length):
    kernel = HamiltonianMonteCarlo(gaussian, step_size=0.1, leapfrog_steps=6, random_length=random_length)
    generator = torch.Generator().manual_seed(0)
    exact = lambda n: torch.randn(n, 3, generator=generator) / PRECISIONS.sqrt()  # noqa: E731
    warm_up([kernel], ChainState.start(gaussian, exact(256)), 40, generator)
    state = ChainState.start(gaussian, exact(20000))
    for _ in range(3):
        state = iterate([kernel], state, generator)
    standardised = (state.position * PRECISIONS.sqrt()).numpy()
    for k in range(3):
        assert stats.kstest(standardised[:, k], "norm").pvalue > 1e-3
    assert kernel.statistics.accepted > 0.4 * kernel.statistics.proposals, "the chains must move"


def test_step_size_adapts_in_warm_up_only():
    kernel = HamiltonianMonteCarlo(
        gaussian, step_size=1.0, leapfrog_steps=4, target_acceptance=0.7, random_length=False
    )
    generator = torch.Generator().manual_seed(1)
    state = ChainState.start(gaussian, torch.randn(64, 3, generator=generator))
    state = warm_up([kernel], state, 100, generator)
    frozen = kernel.step_size
    assert frozen < 0.5, "a step of 1 is unstable for precision 25: adaptation must shrink it"
    assert kernel.statistics.proposals == 0 and kernel.statistics.warmup_evaluations == 100 * 64 * 4
    for _ in range(20):
        state = iterate([kernel], state, generator)
    assert kernel.step_size == frozen
    # Near the stability limit (step 0.4) the acceptance is a steep function of the step, so the
    # frozen average step lands above the target acceptance, not on it.
    assert frozen < 0.4 and 0.6 < kernel.statistics.accepted / kernel.statistics.proposals < 0.99
    assert kernel.statistics.evaluations == 20 * 64 * 4


def test_trajectory_length_is_chosen_in_warm_up_and_then_fixed():
    """A 50-D unit Gaussian: a step near 1 / 50^(1/4) needs several steps to reach the far side of the well
    (a quarter period, pi / 2), so one leapfrog step is a poor trajectory and the longest ones waste evaluations."""
    standard = lambda x: 0.5 * (x**2).sum(-1)  # noqa: E731
    kernel = HamiltonianMonteCarlo(
        standard, step_size=0.3, leapfrog_steps=None, mass_matrix="unit", random_length=False
    )
    generator = torch.Generator().manual_seed(4)
    state = warm_up([kernel], ChainState.start(standard, torch.randn(128, 50, generator=generator)), 120, generator)
    rates = kernel.jump_rates()
    assert set(rates) == set(HamiltonianMonteCarlo.LEAPFROG_CANDIDATES)
    chosen = kernel.leapfrog_steps
    assert rates[chosen] == max(rates.values()) and 2 <= chosen <= 16, rates
    # Reaching the far side beats one step's short, diffusive jump per evaluation (measured: 44 against 23), and
    # twice as long goes back near the start (8 steps: 8).
    assert rates[chosen] > 1.5 * rates[1] and rates[chosen] > 2 * rates[2 * chosen], rates
    copy = HamiltonianMonteCarlo(standard, leapfrog_steps=None)
    copy.load_state_dict(kernel.state_dict())
    assert copy.leapfrog_steps == chosen and copy.jump_rates() == rates
    for _ in range(10):
        state = iterate([kernel], state, generator)
    assert kernel.leapfrog_steps == chosen and kernel.statistics.evaluations == 10 * 128 * chosen


def test_a_random_trajectory_length_is_uniform_from_one_to_twice_the_mean_and_the_same_for_all_chains():
    """Each trajectory's steps are drawn from 1, ..., 2 L - 1 (mean L), one draw per trajectory for every chain."""
    kernel = HamiltonianMonteCarlo(gaussian, step_size=0.1, leapfrog_steps=5)
    generator = torch.Generator().manual_seed(3)
    state = ChainState.start(gaussian, torch.randn(8, 3, generator=generator))
    lengths = []
    for _ in range(2000):
        before = kernel.statistics.evaluations
        state = iterate([kernel], state, generator)
        evaluations = kernel.statistics.evaluations - before
        assert evaluations % 8 == 0  # every chain took the same number of steps
        lengths.append(evaluations // 8)
    counts = np.bincount(lengths, minlength=11)
    assert counts[0] == 0 and counts[10:].sum() == 0 and (counts[1:10] > 0).all()
    assert stats.chisquare(counts[1:10]).pvalue > 1e-3 and abs(np.mean(lengths) - 5) < 0.2


def test_nonfinite_energy_along_a_trajectory_is_a_counted_rejection():
    """A hard wall (U = inf beyond x = 1) and a NaN region: proposals crossing them are rejected, never a crash."""

    def walled(x):
        energy = 0.5 * (x**2).sum(-1)
        energy = torch.where(x[:, 0] > 1.0, torch.full_like(energy, torch.inf), energy)
        return torch.where(x[:, 0] < -1.5, torch.full_like(energy, torch.nan), energy)

    kernel = HamiltonianMonteCarlo(walled, step_size=0.5, leapfrog_steps=5)
    kernel.freeze()
    generator = torch.Generator().manual_seed(2)
    state = ChainState.start(walled, 0.5 * torch.rand(128, 2, generator=generator))
    for _ in range(20):
        state = iterate([kernel], state, generator)
    assert kernel.statistics.nonfinite > 0
    assert torch.isfinite(state.energy).all()
    assert ((state.position[:, 0] <= 1.0) & (state.position[:, 0] >= -1.5)).all()
    # Chains that stopped early cost fewer evaluations than full trajectories.
    assert kernel.statistics.evaluations < 20 * 128 * 5


def test_autocorrelation_time_of_an_ar1_process():
    rho = 0.8
    rng = np.random.default_rng(3)
    series = np.zeros((20000, 8))
    for t in range(1, len(series)):
        series[t] = rho * series[t - 1] + math.sqrt(1 - rho**2) * rng.standard_normal(8)
    exact = (1 + rho) / (1 - rho)
    assert abs(integrated_autocorrelation_time(series) / exact - 1) < 0.1
    assert abs(effective_sample_size(series) / (series.size / exact) - 1) < 0.1
    assert abs(integrated_autocorrelation_time(rng.standard_normal((5000, 4))) - 1) < 0.1


def test_kish_effective_sample_size():
    assert kish_effective_sample_size(np.zeros(50)) == 50
    assert abs(kish_effective_sample_size(np.array([0.0, -np.inf, -1000.0])) - 1) < 1e-12
    assert abs(kish_effective_sample_size(np.log([1.0, 3.0])) - 16 / 10) < 1e-12


def test_chains_are_independent_rows():
    """One chain's trajectory does not depend on the other chains in the batch: the same draws with the other chains
    started elsewhere give the first chain the same states."""
    kernel = HamiltonianMonteCarlo(gaussian, step_size=0.2, leapfrog_steps=3, jitter=0.0)
    kernel.freeze()
    start = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    moved = start.clone()
    moved[1:] += 5.0
    runs = [
        sample_chains([kernel], ChainState.start(gaussian, begin), 0, 20, torch.Generator().manual_seed(5))[1]
        for begin in (start, moved)
    ]
    assert runs[0].shape == (20, 4, 3)
    torch.testing.assert_close(runs[1][:, 0], runs[0][:, 0], rtol=0.0, atol=1e-12)
    assert not torch.allclose(runs[1][:, 1:], runs[0][:, 1:])


def test_chains_stuck_in_different_basins_have_a_long_autocorrelation_time():
    """Half the chains at 0, half at 1, each with small noise: no chain mixes, so tau must be of the run's length."""
    rng = np.random.default_rng(4)
    series = np.repeat([[0.0, 1.0] * 4], 2000, axis=0) + 0.01 * rng.standard_normal((2000, 8))
    assert integrated_autocorrelation_time(series) > 200


def test_split_r_hat_is_one_for_agreeing_chains_and_flags_stuck_or_drifting_ones():
    rng = np.random.default_rng(3)
    iid = rng.normal(size=(2000, 8))
    assert abs(split_r_hat(iid) - 1.0) < 0.01
    # Half the chains sit 2 standard deviations away. 16 halves of 1000 samples: their means, 8 at 0 and 8 at 2, have
    # variance 16 / 15 against 1 within: R-hat = sqrt(999 / 1000 + 16 / 15).
    stuck = iid + np.where(np.arange(8) < 4, 0.0, 2.0)
    assert split_r_hat(stuck) == pytest.approx(np.sqrt(0.999 + 16 / 15), rel=0.02)
    # Every chain drifts the same way: the chains agree with each other, the halves do not.
    drifting = iid + np.linspace(0.0, 3.0, 2000)[:, None]
    # Halves' means 0.75 and 2.25 (variance 16 / 15 * 0.5625 = 0.6), within each half 1 + 1.5**2 / 12:
    # sqrt(1 + 0.6 / 1.1875) = 1.23.
    assert split_r_hat(drifting) > 1.2
    assert np.isnan(split_r_hat(np.ones((100, 4)))) and np.isnan(split_r_hat(iid[:3]))


def test_curvature_spectrum_is_the_mean_hessian():
    """E[grad U grad U^T] = E[Hessian] under exp(-U): the precisions of a Gaussian, of a quartic well by quadrature."""
    generator = torch.Generator().manual_seed(3)
    x = (torch.randn(200000, 3, generator=generator, dtype=torch.float64) / PRECISIONS.double().sqrt()).requires_grad_(
        True
    )
    (gradient,) = torch.autograd.grad(gaussian(x).sum(), x)
    spectrum = curvature_spectrum(gradient.numpy())
    np.testing.assert_allclose(spectrum, np.sort(PRECISIONS.numpy()), rtol=0.02)
    running = CurvatureSum()
    for rows in torch.split(gradient, 30000):  # in pieces, one row non-finite: skipped
        energy = torch.zeros(len(rows), dtype=torch.float64)
        energy[0] = torch.inf
        running.add(energy, rows)
    kept = torch.cat([rows[1:] for rows in torch.split(gradient, 30000)])
    assert running.count == len(kept) and torch.allclose(running.mean(), kept.T @ kept / len(kept))
    with pytest.raises(ValueError):
        CurvatureSum().mean()
    # U = x^4: exact samples by inverting the CDF on a grid; E[U'^2] = E[U''] = 12 E[x^2]
    grid = np.linspace(-4, 4, 200001)
    density = np.exp(-(grid**4))
    cdf = np.cumsum(density) / density.sum()
    samples = np.interp(np.random.default_rng(0).random(200000), cdf, grid)
    mean_hessian = 12 * (grid**2 * density).sum() / density.sum()
    assert curvature_spectrum((4 * samples**3)[:, None])[0] == pytest.approx(mean_hessian, rel=0.02)
    with pytest.raises(ValueError):
        curvature_spectrum(np.array([[np.nan]]))


CORRELATED_PRECISION = torch.tensor([[30.0, 12.0, 0.0], [12.0, 6.0, 0.5], [0.0, 0.5, 0.3]], dtype=torch.float64)


def correlated_gaussian(x):
    return 0.5 * ((x @ CORRELATED_PRECISION) * x).sum(-1)


def test_curvature_mass_matrix_is_the_precision_and_keeps_a_correlated_gaussian_exact():
    """Condition number about 500: the fitted mass is the precision, the step grows, and samples stay exact."""
    generator = torch.Generator().manual_seed(6)
    covariance_cholesky = torch.linalg.cholesky(torch.linalg.inv(CORRELATED_PRECISION))
    exact = lambda n: torch.randn(n, 3, generator=generator, dtype=torch.float64) @ covariance_cholesky.T  # noqa: E731
    unit = HamiltonianMonteCarlo(correlated_gaussian, step_size=0.1, leapfrog_steps=4)
    curvature = HamiltonianMonteCarlo(correlated_gaussian, step_size=0.1, leapfrog_steps=4, mass_matrix="curvature")
    for kernel in (unit, curvature):
        warm_up([kernel], ChainState.start(correlated_gaussian, exact(256)), 60, generator)
    mass = curvature.mass_cholesky @ curvature.mass_cholesky.T
    assert torch.allclose(mass, CORRELATED_PRECISION, rtol=0.1, atol=0.3), mass
    assert unit.mass_cholesky is None
    assert curvature.step_size > 3 * unit.step_size, (curvature.step_size, unit.step_size)
    state = ChainState.start(correlated_gaussian, exact(20000))
    for _ in range(3):
        state = iterate([curvature], state, generator)
    standardised = (state.position @ torch.linalg.cholesky(CORRELATED_PRECISION)).numpy()  # N(0, I) if exact
    for k in range(3):
        assert stats.kstest(standardised[:, k], "norm").pvalue > 1e-3
    assert curvature.statistics.accepted > 0.4 * curvature.statistics.proposals


def test_curvature_mass_matrix_fits_coordinates_of_very_different_scales():
    """Curvatures 1e5, 1 and 1e-2 (a bond length in nm beside latent variables, a soft angle): each fitted to 20 %."""
    scales = torch.tensor([1e5, 1.0, 1e-2], dtype=torch.float64).sqrt()
    precision = CORRELATED_PRECISION / CORRELATED_PRECISION.diagonal().sqrt().outer(
        CORRELATED_PRECISION.diagonal().sqrt()
    )
    precision = precision * scales.outer(scales)  # the correlations of CORRELATED_PRECISION, on these scales

    def potential(x):
        return 0.5 * ((x @ precision) * x).sum(-1)

    generator = torch.Generator().manual_seed(2)
    exact = (
        torch.randn(1024, 3, generator=generator, dtype=torch.float64)
        @ torch.linalg.cholesky(torch.linalg.inv(precision)).T
    )
    kernel = HamiltonianMonteCarlo(potential, step_size=1e-3, leapfrog_steps=4, mass_matrix="curvature")
    warm_up([kernel], ChainState.start(potential, exact), 60, generator)
    mass = kernel.mass_cholesky @ kernel.mass_cholesky.T
    # Eigenvalues of P^-1 M: 1 for the precision. Shrinking towards a multiple of the identity adds
    # about 0.1 * 1e5 / 3 to the soft coordinate's 1e-2.
    relative = torch.linalg.eigvals(torch.linalg.solve(precision, mass)).real
    assert relative.min() > 0.8 and relative.max() < 1.25, relative


def test_curvature_of_the_relaxation_from_a_far_start_is_not_fitted():
    """Chains started 3000 kT up: the first quarter of the warm-up relaxes them and its huge gradients are discarded."""
    kernel = HamiltonianMonteCarlo(correlated_gaussian, step_size=0.1, leapfrog_steps=4, mass_matrix="curvature")
    far = torch.full((256, 3), 10.0, dtype=torch.float64)
    warm_up([kernel], ChainState.start(correlated_gaussian, far), 200, torch.Generator().manual_seed(0))
    mass = kernel.mass_cholesky @ kernel.mass_cholesky.T
    # Eigenvalues of P^-1 M: all 1 for the exact precision (about 400 with the relaxation's gradients kept).
    relative = torch.linalg.eigvals(torch.linalg.solve(CORRELATED_PRECISION, mass)).real
    assert relative.min() > 0.5 and relative.max() < 2.0, relative


def test_a_flat_potential_keeps_unit_masses():
    """No curvature to fit (every gradient zero): the masses stay the identity instead of a failed Cholesky."""
    flat = lambda x: torch.zeros(len(x), dtype=x.dtype) + 0.0 * x.sum(-1)  # noqa: E731
    kernel = HamiltonianMonteCarlo(flat, leapfrog_steps=2, mass_matrix="curvature")
    start = torch.zeros(8, 3, dtype=torch.float64)
    state = warm_up([kernel], ChainState.start(flat, start), 10, torch.Generator().manual_seed(0))
    assert kernel.mass_cholesky is None and torch.isfinite(state.position).all()


def test_leapfrog_with_a_mass_matrix_is_reversible_and_volume_preserving():
    """On a quartic, anharmonic potential: negating the final momentum retraces the path; the map's Jacobian has
    determinant 1."""

    def quartic(x):
        return 0.25 * (x**4).sum(-1) + 0.5 * ((x @ CORRELATED_PRECISION) * x).sum(-1)

    kernel = HamiltonianMonteCarlo(quartic, leapfrog_steps=7, mass_matrix="curvature")
    kernel.mass_cholesky = torch.linalg.cholesky(CORRELATED_PRECISION + torch.eye(3, dtype=torch.float64))

    def flow(x, xi):
        position, momentum, *_ = kernel._trajectory(
            ChainState.start(quartic, x), xi, torch.tensor(0.3, dtype=torch.float64), 7
        )
        return position, momentum

    x0 = torch.tensor([[0.3, -0.5, 1.1]], dtype=torch.float64)
    xi0 = torch.tensor([[0.7, 0.2, -1.3]], dtype=torch.float64)
    x1, xi1 = flow(x0, xi0)
    assert not torch.allclose(x1, x0, atol=1e-2), "the trajectory must move"
    x2, xi2 = flow(x1, -xi1)
    assert torch.allclose(x2, x0, atol=1e-12) and torch.allclose(-xi2, xi0, atol=1e-12)
    # Jacobian of (x, xi) -> (x', xi') by central differences
    point = torch.cat([x0, xi0], 1)[0]
    columns = []
    for k in range(6):
        shift = torch.zeros(6, dtype=torch.float64)
        shift[k] = 1e-6
        plus, minus = (torch.cat(flow((point + s)[None, :3], (point + s)[None, 3:]), 1)[0] for s in (shift, -shift))
        columns.append((plus - minus) / 2e-6)
    assert abs(float(torch.linalg.det(torch.stack(columns, 1))) - 1) < 1e-6


def test_a_jump_is_measured_in_the_metric_of_the_mass_matrix():
    """With masses M = L L^T the kernel is unit-mass HMC in v = L^T x: a jump dx is recorded as its acceptance
    probability times dx^T M dx (the squared distance there), per leapfrog step of the trajectory."""
    kernel = HamiltonianMonteCarlo(gaussian, leapfrog_steps=None, mass_matrix="curvature")
    L = torch.tensor([[2.0, 0.0, 0.0], [0.5, 1.0, 0.0], [-1.0, 0.3, 1.5]], dtype=torch.float64)
    kernel.mass_cholesky = L
    M = (L @ L.T).numpy()
    start = torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]], dtype=torch.float64)
    proposal = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    probability = torch.tensor([1.0, 0.25], dtype=torch.float64)
    kernel._record_jump(start, proposal, probability, evaluations=2 * 4)
    jumps = (proposal - start).numpy()
    squared = np.array([jump @ M @ jump for jump in jumps])  # dx^T M dx: 4 and 11.485
    expected = float((probability.numpy() * squared).mean()) / 4  # 2 chains, 4 steps each
    assert kernel.jump_records[kernel.leapfrog_steps] == [pytest.approx(expected, rel=1e-12)]


class _ForceFailsBelowMinusOne(torch.autograd.Function):
    """``|x|^2 / 2`` whose force is NaN where ``x_0 < -1``: a force field that fails where its energy does not."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return 0.5 * (x**2).sum(-1)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        force = grad[:, None] * x
        return torch.where(x[:, :1] < -1.0, torch.full_like(force, torch.nan), force)


def test_a_point_whose_gradient_is_not_finite_has_infinite_energy():
    """A finite energy with a NaN gradient is no point to integrate from: U = +inf and a zero gradient there, the
    other rows untouched (U = |x|^2 / 2, gradient x)."""
    from neuralct.sampling import evaluate_potential

    x = torch.tensor([[0.5, 0.2], [-2.0, 0.1], [0.3, -0.4]], dtype=torch.float64)
    energy, gradient = evaluate_potential(_ForceFailsBelowMinusOne.apply, x)
    assert energy[1] == torch.inf and torch.equal(gradient[1], torch.zeros(2, dtype=torch.float64))
    keep = torch.tensor([0, 2])
    assert torch.allclose(energy[keep], 0.5 * (x[keep] ** 2).sum(-1), rtol=1e-15)
    assert torch.allclose(gradient[keep], x[keep], rtol=1e-15)


def test_a_chain_outside_the_domain_moves_only_to_a_point_inside_it():
    """Independence moves from chains at U = +inf: a finite proposal is always accepted, an infinite one never (its
    density ratio 0 / 0 is a rejection, not a move between two points of zero density)."""
    from neuralct.sampling import IndependenceMetropolis

    def half_space(x):
        energy = 0.5 * (x**2).sum(-1)
        return torch.where(x[:, 0] > 0, energy, torch.full_like(energy, torch.inf))

    kernel = IndependenceMetropolis(half_space)
    start = -1.0 - torch.rand(512, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    state = ChainState.start(half_space, start)
    assert not torch.isfinite(state.energy).any()
    state = kernel.step(state, torch.Generator().manual_seed(1))
    moved = ~(state.position == start).all(-1)
    assert torch.equal(moved, torch.isfinite(state.energy)) and (state.position[moved, 0] > 0).all()
    assert 0.4 < moved.double().mean() < 0.6, "about half the proposals lie inside"
    assert kernel.statistics.accepted == int(moved.sum())


def test_a_coordinate_the_potential_ignores_still_gets_a_positive_mass():
    """A flat direction (its gradient always zero, e.g. a free rotor) next to curved ones: the fitted masses stay
    positive definite, the curved coordinates' masses are their precisions, the flat one's the shrinkage's share of
    theirs, and the chains keep moving."""

    def potential(x):
        return 0.5 * (4.0 * x[:, 0] ** 2 + x[:, 1] ** 2) + 0.0 * x[:, 2]

    generator = torch.Generator().manual_seed(3)
    start = torch.randn(256, 3, generator=generator, dtype=torch.float64) * torch.tensor([0.5, 1.0, 1.0])
    kernel = HamiltonianMonteCarlo(potential, step_size=0.2, leapfrog_steps=4, mass_matrix="curvature")
    state = warm_up([kernel], ChainState.start(potential, start), 40, generator)
    mass = kernel.mass_cholesky @ kernel.mass_cholesky.T
    assert torch.isfinite(mass).all() and torch.linalg.eigvalsh(mass).min() > 0
    assert torch.allclose(mass.diagonal()[:2], torch.tensor([4.0, 1.0], dtype=torch.float64), rtol=0.25)
    # Its mass is the shrinkage's share of the other coordinates' mean curvature (fitted on 10 x 256 states).
    shrink = kernel.MASS_SHRINKAGE / (10 * 256 + kernel.MASS_SHRINKAGE)
    assert float(mass[2, 2]) == pytest.approx(shrink * float(mass[0, 0] + mass[1, 1]) / 2, rel=1e-9)
    for _ in range(5):
        state = iterate([kernel], state, generator)
    assert torch.isfinite(state.position).all() and kernel.statistics.accepted > 0.4 * kernel.statistics.proposals


def test_warm_up_relaxes_a_quarter_fits_masses_on_the_second_and_adapts_the_step_in_the_second_half():
    """The schedule recorded with a run (WARMUP_SCHEDULE): of 40 warm-up iterations of 16 chains the masses are fitted
    to the curvature of iterations 11-20 (160 states) and the step is adapted afresh over iterations 21-40."""
    from neuralct.sampling.chains import WARMUP_SCHEDULE

    assert "relax 1/4, fit masses 1/4, adapt step 1/2" in WARMUP_SCHEDULE
    kernel = HamiltonianMonteCarlo(correlated_gaussian, step_size=0.1, leapfrog_steps=2, mass_matrix="curvature")
    fitted_on = []
    fit = kernel.fit_mass_matrix

    def recording_fit():
        fitted_on.append(kernel._curvature.count)
        fit()

    kernel.fit_mass_matrix = recording_fit
    start = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
    warm_up([kernel], ChainState.start(correlated_gaussian, start), 40, torch.Generator().manual_seed(1))
    assert fitted_on == [10 * 16] and kernel.mass_cholesky is not None
    assert kernel.adaptation.iteration == 20 and len(kernel.adaptation.history) == 20


def test_sample_chains_records_the_state_after_each_iteration():
    """The first record is one iteration after warm-up, not the warmed-up state; the last is the final state."""
    kernel = HamiltonianMonteCarlo(gaussian, step_size=0.2, leapfrog_steps=3)
    kernel.freeze()
    start = torch.randn(64, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    state, positions = sample_chains(
        [kernel], ChainState.start(gaussian, start), 0, 4, torch.Generator().manual_seed(5)
    )
    assert positions.shape == (4, 64, 3) and torch.equal(state.position, positions[-1])
    moved = ~(positions[0] == start).all(-1)
    assert int(moved.sum()) == kernel.statistics.accepted - int((~(positions[1:] == positions[:-1]).all(-1)).sum()), (
        "each recorded change is one accepted proposal"
    )


def test_the_memory_of_an_evaluation_is_what_autograd_saves_per_point():
    """``x^2`` saves its input for the backward pass, ``sin(x)^2`` the input and its sine: one and two float64 arrays
    of the point's size per point (each storage counted once, the batch-independent part cancelled)."""
    from neuralct.sampling.resources import evaluation_bytes_per_row

    n = 4096
    point = torch.zeros(1, n, dtype=torch.float64)
    one_array = evaluation_bytes_per_row(lambda x: 0.5 * (x**2).sum(-1), point)
    two_arrays = evaluation_bytes_per_row(lambda x: 0.5 * (torch.sin(x) ** 2).sum(-1), point)
    assert one_array == pytest.approx(8 * n, rel=0.01) and two_arrays == pytest.approx(16 * n, rel=0.01)
