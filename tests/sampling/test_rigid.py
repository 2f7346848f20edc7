"""The rigid-body volume element J(y) = |det A(y)|: derivation checked on a floppy triatomic."""

import math

import numpy as np
import pytest
import torch

from neuralct.data import RigidBodyFrame
from neuralct.sampling import (
    ChainState,
    HamiltonianMonteCarlo,
    MolecularPotential,
    eckart_matrix,
    rigid_body_log_jacobian,
    sample_chains,
)
from neuralct.sampling.diagnostics import mean_standard_error

# A bent triatomic B-A-C (A in the middle), energies in kT, lengths in nm, masses in amu.
MASSES = np.array([16.0, 1.0, 4.0])
BOND_LENGTH, BOND_STIFFNESS = 0.1, 2.0e3
ANGLE_0, ANGLE_STIFFNESS = math.radians(110.0), 4.0


def triatomic_energy(positions: torch.Tensor) -> torch.Tensor:
    """Two harmonic bonds from atom 0 and a harmonic angle at atom 0, kT; positions (batch, 3, 3) nm."""
    b1 = positions[:, 1] - positions[:, 0]
    b2 = positions[:, 2] - positions[:, 0]
    r1, r2 = b1.norm(dim=-1), b2.norm(dim=-1)
    cosine = ((b1 * b2).sum(-1) / (r1 * r2)).clamp(-1.0, 1.0)
    angle = torch.acos(cosine)
    bonds = 0.5 * BOND_STIFFNESS * ((r1 - BOND_LENGTH) ** 2 + (r2 - BOND_LENGTH) ** 2)
    return bonds + 0.5 * ANGLE_STIFFNESS * (angle - ANGLE_0) ** 2


def bond_angle(positions: torch.Tensor) -> torch.Tensor:
    b1 = positions[:, 1] - positions[:, 0]
    b2 = positions[:, 2] - positions[:, 0]
    return torch.acos(((b1 * b2).sum(-1) / (b1.norm(dim=-1) * b2.norm(dim=-1))).clamp(-1.0, 1.0))


def exact_angle_density(theta: np.ndarray) -> np.ndarray:
    """Cartesian Boltzmann marginal of the angle: the bonds separate, the volume element gives sin(theta)."""
    return np.sin(theta) * np.exp(-0.5 * ANGLE_STIFFNESS * (theta - ANGLE_0) ** 2)


def exact_mean_cosine() -> float:
    theta = np.linspace(0.0, math.pi, 200001)
    density = exact_angle_density(theta)
    return float(np.trapezoid(density * np.cos(theta), theta) / np.trapezoid(density, theta))


@pytest.fixture
def frame() -> RigidBodyFrame:
    reference = np.array(
        [
            [0.0, 0.0, 0.0],
            [BOND_LENGTH, 0.0, 0.0],
            [BOND_LENGTH * math.cos(ANGLE_0), BOND_LENGTH * math.sin(ANGLE_0), 0.0],
        ]
    )
    return RigidBodyFrame(reference, MASSES)


def random_internal(frame, n, scale=0.02, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, frame.dim, generator=generator)


def test_eckart_matrix_is_symmetric_and_log_jacobian_matches_slogdet(frame):
    y = random_internal(frame, 16).requires_grad_(True)
    A = eckart_matrix(frame, y)
    assert torch.allclose(A, A.transpose(-1, -2), atol=1e-12), "the Eckart condition makes A symmetric"
    log_j = rigid_body_log_jacobian(frame, y)
    assert torch.allclose(log_j, torch.linalg.slogdet(A)[1], atol=1e-12)
    # Differentiable: gradient against central finite differences.
    (gradient,) = torch.autograd.grad(log_j.sum(), y)
    h = 1e-6
    for k in range(frame.dim):
        shift = torch.zeros_like(y)
        shift[:, k] = h
        numeric = (rigid_body_log_jacobian(frame, y + shift) - rigid_body_log_jacobian(frame, y - shift)) / (2 * h)
        assert torch.allclose(gradient[:, k], numeric, atol=1e-6)


def test_domain_is_where_the_kabsch_fit_returns_the_frame(frame):
    """A positive definite <=> aligning x(y) again gives the identity rotation (the frame's own copy)."""
    y = random_internal(frame, 4000, scale=0.3, seed=1)
    inside = torch.isfinite(rigid_body_log_jacobian(frame, y))
    _, rotations = frame.align_torch(frame.from_internal(y))
    identity = (rotations - torch.eye(3)).abs().amax((-1, -2)) < 1e-8
    assert 0.05 < inside.double().mean() < 0.95, "the test must see both sides of the boundary"
    assert torch.equal(inside, identity)


def _angle_histogram_on_grid(frame, with_jacobian: bool, bins: np.ndarray) -> np.ndarray:
    """Quadrature over a grid in y of the density on y, binned by the bond angle."""
    y_samples = frame.to_internal(_cartesian_samples(20000))
    low, high = y_samples.min(0) - 0.02, y_samples.max(0) + 0.02
    axes = [torch.linspace(float(a), float(b), 60) for a, b in zip(low, high)]
    y = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, frame.dim)
    potential = MolecularPotential(frame, triatomic_energy, rigid_body_jacobian=with_jacobian)
    weight = torch.exp(-potential(y))
    if not with_jacobian:
        weight = torch.where(torch.isfinite(rigid_body_log_jacobian(frame, y)), weight, torch.zeros_like(weight))
    angle = bond_angle(frame.from_internal(y)).numpy()
    histogram, _ = np.histogram(angle, bins=bins, weights=weight.numpy())
    return histogram / histogram.sum()


def _cartesian_samples(n: int, seed: int = 0) -> np.ndarray:
    """Exact Cartesian Boltzmann samples: bonds, angle (by inverse CDF) and a uniform orientation."""
    rng = np.random.default_rng(seed)
    r = BOND_LENGTH + rng.standard_normal((n, 2)) / math.sqrt(BOND_STIFFNESS)
    grid = np.linspace(0.0, math.pi, 20001)
    cdf = np.cumsum(exact_angle_density(grid))
    theta = np.interp(rng.uniform(size=n), cdf / cdf[-1], grid)
    body = np.zeros((n, 3, 3))
    body[:, 1, 0] = r[:, 0]
    body[:, 2, 0] = r[:, 1] * np.cos(theta)
    body[:, 2, 1] = r[:, 1] * np.sin(theta)
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    rotation = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )
    return body @ rotation.transpose(0, 2, 1) + rng.standard_normal((n, 1, 3))


def test_quadrature_in_y_with_the_jacobian_gives_the_cartesian_angle_distribution(frame):
    bins = np.linspace(math.radians(30), math.radians(180), 16)
    exact = np.array(
        [np.trapezoid(exact_angle_density(t), t) for t in (np.linspace(a, b, 201) for a, b in zip(bins[:-1], bins[1:]))]
    )
    exact /= exact.sum()
    with_j = _angle_histogram_on_grid(frame, True, bins)
    without_j = _angle_histogram_on_grid(frame, False, bins)
    assert np.abs(with_j - exact).sum() < 0.01, np.abs(with_j - exact).sum()
    assert np.abs(without_j - exact).sum() > 0.05, np.abs(without_j - exact).sum()


@pytest.mark.slow
def test_hmc_in_internal_coordinates_needs_the_jacobian(frame):
    """HMC in y: <cos theta> agrees with the Cartesian value with J, and is off by many errors without."""
    exact = exact_mean_cosine()
    start = torch.as_tensor(frame.to_internal(_cartesian_samples(128, seed=3)))
    results = {}
    for with_jacobian in (True, False):
        potential = MolecularPotential(frame, triatomic_energy, rigid_body_jacobian=with_jacobian)
        kernel = HamiltonianMonteCarlo(potential, step_size=0.01, leapfrog_steps=8)
        generator = torch.Generator().manual_seed(7)
        _, y = sample_chains([kernel], ChainState.start(potential, start), 100, 1200, generator)
        cosine = torch.cos(bond_angle(frame.from_internal(y.reshape(-1, frame.dim)))).reshape(y.shape[:2]).numpy()
        results[with_jacobian] = (cosine.mean(), mean_standard_error(cosine))
    mean, error = results[True]
    assert abs(mean - exact) < 4 * error, (mean, exact, error)
    mean, error = results[False]
    assert abs(mean - exact) > 5 * error, (mean, exact, error)


H_ANGLE_0, H_ANGLE_STIFFNESS = math.radians(100.0), 3.0


def four_atom_energy(positions: torch.Tensor) -> torch.Tensor:
    """The triatomic plus a hydrogen (atom 3) on atom 0: a stiff bond and a soft angle to atom 1 (not to atom 2), kT."""
    bond = positions[:, 3] - positions[:, 0]
    to_one = positions[:, 1] - positions[:, 0]
    cosine = ((bond * to_one).sum(-1) / (bond.norm(dim=-1) * to_one.norm(dim=-1))).clamp(-1.0, 1.0)
    hydrogen = (
        0.5 * BOND_STIFFNESS * (bond.norm(dim=-1) - BOND_LENGTH) ** 2
        + 0.5 * H_ANGLE_STIFFNESS * (torch.acos(cosine) - H_ANGLE_0) ** 2
    )
    return triatomic_energy(positions[:, :3]) + hydrogen


def test_hmc_with_a_placed_hydrogen_gives_the_cartesian_distributions(frame):
    """Frame of atoms 0-2 (rigid-body term), a hydrogen on atom 0 at (r, theta, phi) about atom 2 (r^2 sin theta).

    Its angle to atom 1, which is not its placement axis, has the Cartesian marginal
    sin(alpha) exp(-k (alpha - alpha0)^2 / 2) whatever the triatomic does; the triatomic's angle keeps its own.
    """
    from neuralct.sampling.hydrogens import HydrogenPlacement

    placement = HydrogenPlacement(4, [0, 1, 2], np.array([[3, 0, 2, 1]]))
    potential = MolecularPotential(frame, four_atom_energy, hydrogens=placement)
    generator = torch.Generator().manual_seed(11)
    y = torch.as_tensor(frame.to_internal(_cartesian_samples(256, seed=5)))
    w = torch.stack(
        [
            torch.full((256,), BOND_LENGTH),
            torch.full((256,), 2.0),
            2 * math.pi * torch.rand(256, generator=generator, dtype=torch.float64),
        ],
        -1,
    )
    kernel = HamiltonianMonteCarlo(potential, step_size=0.01, leapfrog_steps=8, mass_matrix="curvature")
    _, points = sample_chains([kernel], ChainState.start(potential, torch.cat([y, w], 1)), 100, 300, generator)
    positions = potential.positions(points.reshape(-1, potential.dim))
    shape = points.shape[:2]
    hydrogen = positions[:, [0, 3, 1]]  # the angle 3-0-1
    observed = {
        "H-0-1": torch.cos(bond_angle(hydrogen)).reshape(shape).numpy(),
        "1-0-2": torch.cos(bond_angle(positions[:, :3])).reshape(shape).numpy(),
    }
    alpha = np.linspace(0.0, math.pi, 200001)
    h_density = np.sin(alpha) * np.exp(-0.5 * H_ANGLE_STIFFNESS * (alpha - H_ANGLE_0) ** 2)
    exact = {
        "H-0-1": float(np.trapezoid(h_density * np.cos(alpha), alpha) / np.trapezoid(h_density, alpha)),
        "1-0-2": exact_mean_cosine(),
    }
    for name, values in observed.items():
        error = mean_standard_error(values)
        assert abs(values.mean() - exact[name]) < 4 * error, (name, values.mean(), exact[name], error)
        assert error < 0.02, (name, error)
