"""The toy systems' exact answers are right."""

import math

import numpy as np
import pytest
import torch

from neuralct.errors import NeuralCTError
from neuralct.toys.hamiltonians import HarmonicChain, make_toy_system


@pytest.mark.parametrize("n,kappa,mass", [(32, 1.0, 1.0), (7, 2.5, 1.0), (10, 0.3, 4.0)])
def test_equal_mass_frequencies_match_the_closed_form(n, kappa, mass):
    chain = HarmonicChain(n, kappa, masses=[mass] * n)
    k = np.arange(1, n + 1)
    expected = 2 * math.sqrt(kappa / mass) * np.sin(k * math.pi / (2 * (n + 1)))
    assert np.allclose(chain.frequencies(), expected, atol=1e-12)


def test_reference_free_energy_of_the_32_chain():
    assert abs(HarmonicChain(32).free_energy() - (-57.064)) < 5e-4


@pytest.mark.parametrize("masses", [None, [1.0, 3.0, 0.5, 2.0, 1.5]])
def test_free_energy_is_minus_log_of_the_gaussian_integral(masses):
    chain = HarmonicChain(5, 1.7, masses=masses)
    K = chain.stiffness_matrix()
    m = chain.masses
    log_Z = 5 * math.log(2 * math.pi) + 0.5 * np.log(m).sum() - 0.5 * np.linalg.slogdet(K)[1]
    assert abs(chain.free_energy() + log_Z) < 1e-12


def test_potential_is_the_quadratic_form_and_energy_adds_kinetic():
    chain = HarmonicChain(6, 1.3, masses=[1, 2, 3, 4, 5, 6])
    q, p = torch.randn(4, 6), torch.randn(4, 6)
    K = torch.tensor(chain.stiffness_matrix())
    assert torch.allclose(chain.potential(q), 0.5 * ((q @ K) * q).sum(-1))
    assert torch.allclose(chain.energy(q, p) - chain.potential(q), 0.5 * (p**2 / torch.tensor(chain.masses)).sum(-1))


def test_exact_sampler_has_the_boltzmann_covariances():
    chain = HarmonicChain(4, 2.0, masses=[1, 2, 1, 3])
    q, p = chain.sample(400000, seed=0)
    assert np.allclose(np.cov(q.T), np.linalg.inv(chain.stiffness_matrix()), atol=0.01)
    assert np.allclose(np.cov(p.T), np.diag(chain.masses), atol=0.03)


def test_bad_toy_names_and_parameters_are_rejected():
    with pytest.raises(NeuralCTError, match="unknown toy system"):
        make_toy_system("harmonic-ring")
    with pytest.raises(NeuralCTError, match="unknown parameter"):
        make_toy_system("harmonic-chain", {"n": 4, "spring": 1})
    with pytest.raises(NeuralCTError):
        make_toy_system("harmonic-chain", {"n": 4, "kappa": -1})
    with pytest.raises(NeuralCTError):
        make_toy_system("harmonic-chain", {"n": 3, "masses": [1, 2]})


@pytest.mark.parametrize(
    "name, parameters, message",
    [
        ("harmonic-chain", {}, "parameter(s) n must be given"),
        ("harmonic-chain", {"n": "abc"}, "n must be a finite number, got 'abc'"),
        ("harmonic-chain", {"n": True}, "n must be a finite number, got True"),
        ("harmonic-chain", {"n": 3, "masses": [1, "x", 2]}, "masses must be a list of finite numbers"),
        ("curved-double-well", {"barrier": "nan"}, "barrier must be a finite number, got 'nan'"),
        ("curved-double-well", {"tilt": float("inf")}, "tilt must be a finite number"),
    ],
)
def test_missing_or_non_numeric_toy_parameters_are_one_line_errors(name, parameters, message):
    with pytest.raises(NeuralCTError) as error:
        make_toy_system(name, parameters)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_curved_double_well_exact_answers_against_two_dimensional_quadrature():
    from neuralct.toys.hamiltonians import CurvedDoubleWell

    well = CurvedDoubleWell(barrier=2.5, tilt=0.7, stiffness=8.0, curvature=0.8)
    x = torch.linspace(-3.0, 3.0, 1201)
    y = torch.linspace(-3.0, 10.0, 2601)
    X, Y = torch.meshgrid(x, y, indexing="ij")
    weight = torch.exp(-well.potential(torch.stack([X, Y], -1).reshape(-1, 2))).reshape(X.shape)
    cell = float((x[1] - x[0]) * (y[1] - y[0]))
    z = float(weight.sum()) * cell
    assert abs(well.free_energy() - (-math.log(z * 2 * math.pi))) < 1e-6
    # The grid line x = 0 counts half to each basin (trapezoidal rule).
    positive = float(weight[x > 1e-9].sum() + 0.5 * weight[x.abs() < 1e-9].sum()) * cell / z
    assert abs(positive - well.population_positive_x()) < 1e-6
    moments = well.moments()
    assert abs(float((weight * X).sum()) * cell / z - moments["mean_x"]) < 1e-6
    mean_y = float((weight * Y).sum()) * cell / z
    assert abs(mean_y - moments["mean_y"]) < 1e-6
    assert abs(float((weight * (Y - mean_y) ** 2).sum()) * cell / z - moments["var_y"]) < 1e-6


def test_curved_double_well_sampler_is_exact():
    from scipy import stats

    from neuralct.toys.hamiltonians import CurvedDoubleWell

    well = CurvedDoubleWell()
    q, p = well.sample(50000, seed=0)
    grid, cdf = well.x_cdf()
    assert stats.kstest(q[:, 0], lambda v: np.interp(v, grid, cdf)).pvalue > 1e-3
    residual = (q[:, 1] - well.curvature * q[:, 0] ** 2) * math.sqrt(well.stiffness)
    assert stats.kstest(residual, "norm").pvalue > 1e-3
    assert stats.kstest(p.ravel(), "norm").pvalue > 1e-3


def test_curved_double_well_parameters_are_checked():
    with pytest.raises(NeuralCTError, match="barrier"):
        make_toy_system("curved-double-well", {"barrier": -1})
