"""The toy systems' exact answers are right."""

import math

import numpy as np
import pytest
import torch

from neuralct.errors import NeuralCTError
from neuralct.toys import HarmonicChain, make_toy_system


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
