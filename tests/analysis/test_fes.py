"""Free-energy profiles and surfaces against a Boltzmann distribution with a known free energy."""

import numpy as np
import pytest

from neuralct.analysis.fes import free_energy_1d, free_energy_2d, free_energy_2d_errors


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


def test_block_errors_of_a_surface_match_the_binomial_error_of_independent_frames():
    # Independent frames spread evenly over 2 x 2 bins: each bin's population p = 1/4 has the standard
    # error sqrt(p (1 - p) / N), so F = -kT ln p has kT sqrt((1 - p) / (N p)).
    rng = np.random.default_rng(7)
    n, kT = 40000, 2.5
    x, y = rng.uniform(0, 2, n), rng.uniform(0, 2, n)
    errors = free_energy_2d_errors(x, y, bins=2, kT=kT, range=((0, 2), (0, 2)), blocks=20)
    expected = kT * np.sqrt(0.75 / (n * 0.25))
    assert errors.shape == (2, 2) and np.mean(errors) == pytest.approx(expected, rel=0.2)
    # Weights that scale every frame alike change nothing.
    scaled = free_energy_2d_errors(x, y, bins=2, kT=kT, range=((0, 2), (0, 2)), weights=np.full(n, 3.0), blocks=20)
    np.testing.assert_allclose(scaled, errors, rtol=1e-12)


def test_block_errors_of_a_surface_by_hand_and_nan_where_they_cannot_be_had():
    x = np.array([0.1, 0.2, 1.5, 0.3, 1.7, 1.2, 0.4, 0.6])
    y = np.array([0.1, 1.5, 0.2, 0.3, 1.1, 0.4, 0.2, 1.9])
    w = np.array([1.0, 2.0, 1.0, 3.0, 3.0, 2.0, 1.0, 1.0])
    errors = free_energy_2d_errors(x, y, bins=2, kT=1.0, range=((0, 2), (0, 2)), weights=w, blocks=2)
    # Bin (0, 0) holds frames 0, 3 (block 1: 4 of 7) and 6 (block 2: 1 of 7).
    block_w, block_h = np.array([7.0, 7.0]), np.array([4.0, 1.0])
    p = block_h.sum() / block_w.sum()
    n = block_w.sum() ** 2 / np.sum(block_w**2)
    spread = np.sum(block_w * (block_h / block_w - p) ** 2) / block_w.sum()
    assert errors[0, 0] == pytest.approx(np.sqrt(n / (n - 1) * spread / n) / p, rel=1e-12)
    assert np.isnan(errors[1, 1]) == (not np.any((x > 1) & (y > 1)))
    # All the weight in one block: no error to give.
    lopsided = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    assert np.all(np.isnan(free_energy_2d_errors(x, y, 2, 1.0, ((0, 2), (0, 2)), weights=lopsided, blocks=2)))
