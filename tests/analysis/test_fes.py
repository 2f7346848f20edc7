"""Free-energy profiles and surfaces against a Boltzmann distribution with a known free energy."""

import numpy as np
import pytest

from neuralct.analysis.fes import free_energy_1d, free_energy_2d


def test_harmonic_well_gives_a_parabola_in_kT():
    rng = np.random.default_rng(0)
    x = rng.normal(size=400000)  # Boltzmann distribution of U = x^2 / 2 at kT = 1
    free, edges = free_energy_1d(x, bins=40, range=(-2.0, 2.0))
    centres = 0.5 * (edges[1:] + edges[:-1])
    np.testing.assert_allclose(free, centres**2 / 2 - np.min(centres**2 / 2), atol=0.05)


def test_units_follow_kT_minimum_is_zero_and_empty_bins_are_nan():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-2.0, 0.3, 3000), rng.normal(2.0, 0.3, 1000)])
    free_kT, edges = free_energy_1d(x, bins=30, range=(-4.0, 4.0))
    free_kj, _ = free_energy_1d(x, bins=30, range=(-4.0, 4.0), kT=2.494)
    np.testing.assert_allclose(free_kj, 2.494 * free_kT)
    assert np.nanmin(free_kT) == 0.0
    assert np.isnan(free_kT[np.argmin(np.abs(0.5 * (edges[1:] + edges[:-1])))])  # the empty barrier top
    # Basin free-energy difference: ln(3000 / 1000) = 1.10 kT.
    left = -np.log(np.nansum(np.exp(-free_kT[:15])))
    right = -np.log(np.nansum(np.exp(-free_kT[15:])))
    assert right - left == pytest.approx(np.log(3.0), abs=0.1)


def test_two_dimensional_surface_and_weights():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2, 1000000))
    free, x_edges, y_edges = free_energy_2d(x, y, bins=10, range=((-2, 2), (-1, 1)))
    assert free.shape == (10, 10)
    xc = 0.5 * (x_edges[1:] + x_edges[:-1])
    yc = 0.5 * (y_edges[1:] + y_edges[:-1])
    expected = (xc[:, None] ** 2 + yc[None, :] ** 2) / 2
    np.testing.assert_allclose(free, expected - expected.min(), atol=0.15)
    # Reweighting by exp(+x^2/4) turns the x profile from x^2/2 into x^2/4.
    reweighted, _, _ = free_energy_2d(x, y, bins=10, range=((-2, 2), (-1, 1)), weights=np.exp(x**2 / 4))
    expected = (xc[:, None] ** 2 / 2 + yc[None, :] ** 2) / 2
    np.testing.assert_allclose(reweighted, expected - expected.min(), atol=0.15)
