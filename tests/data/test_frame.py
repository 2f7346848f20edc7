"""RigidBodyFrame: Kabsch alignment (including 180-degree rotations), internal coordinates, momenta."""

import io

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from neuralct.data.frame import RigidBodyFrame


@pytest.fixture
def molecule():
    rng = np.random.default_rng(0)
    reference = rng.normal(scale=0.2, size=(10, 3))
    masses = rng.uniform(1.0, 16.0, size=10)
    return reference, masses, RigidBodyFrame(reference, masses)


def rigidly_moved(x, seed, n=40):
    rotations = Rotation.random(n, random_state=seed).as_matrix()
    rotations[0] = Rotation.from_rotvec([0.0, 0.0, np.pi]).as_matrix()  # the 180-degree case
    rotations[1] = Rotation.from_rotvec(np.pi * np.array([1.0, 1.0, 0.0]) / np.sqrt(2)).as_matrix()
    shifts = np.random.default_rng(seed).normal(size=(n, 1, 3))
    return np.einsum("fab,fib->fia", rotations, x) + shifts


def test_rigid_motions_are_removed_exactly(molecule):
    reference, masses, frame = molecule
    wiggled = reference + 0.02 * np.random.default_rng(1).normal(size=(40, 10, 3))
    moved = rigidly_moved(wiggled, seed=2)
    y_moved, rotations = frame.to_internal(moved, return_rotations=True)
    np.testing.assert_allclose(y_moved, frame.to_internal(wiggled), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-12)
    # The reference itself, rotated by 180 degrees, fits back to zero RMSD.
    _, _, rmsd = frame.align(rigidly_moved(np.repeat(reference[None], 40, 0), seed=3))
    assert rmsd.max() < 1e-12


def test_rotations_are_the_weighted_svd_fit_of_scipy(molecule):
    """The quaternion fit gives the rotations of the SVD (Kabsch) fit, 180-degree turns included."""
    reference, masses, frame = molecule
    moved = rigidly_moved(reference + 0.05 * np.random.default_rng(12).normal(size=(40, 10, 3)), seed=13)
    _, rotations, _ = frame.align(moved)
    centred = moved - (masses @ moved / masses.sum())[:, None]
    expected = [Rotation.align_vectors(frame.reference.numpy(), x, weights=masses)[0].as_matrix() for x in centred]
    np.testing.assert_allclose(rotations, np.stack(expected), atol=1e-10)


def test_rmsd_equals_mdtraj_for_equal_masses(molecule):
    import mdtraj as md

    reference, _, _ = molecule
    frame = RigidBodyFrame(reference, np.ones(10))
    frames = rigidly_moved(reference + 0.05 * np.random.default_rng(4).normal(size=(40, 10, 3)), seed=5)
    _, _, rmsd = frame.align(frames)
    top = md.Topology()
    residue = top.add_residue("MOL", top.add_chain())
    for _ in range(10):
        top.add_atom("C", md.element.carbon, residue)
    expected = md.rmsd(
        md.Trajectory(frames.astype(np.float32), top),
        md.Trajectory(reference[None].astype(np.float32), top),
        precentered=False,
    )
    np.testing.assert_allclose(rmsd, expected, atol=1e-5)


def test_a_mirror_image_is_fitted_by_a_proper_rotation(molecule):
    reference, _, frame = molecule
    aligned, rotations, rmsd = frame.align(reference[None] * np.array([1.0, 1.0, -1.0]))
    assert np.linalg.det(rotations[0]) == pytest.approx(1.0)
    assert rmsd[0] > 0.01


def test_round_trip_and_eckart_conditions(molecule):
    reference, masses, frame = molecule
    x = rigidly_moved(reference + 0.03 * np.random.default_rng(6).normal(size=(40, 10, 3)), seed=7)
    aligned, _, _ = frame.align(x)
    y = frame.to_internal(x)
    assert y.shape == (40, 24)
    np.testing.assert_allclose(frame.from_internal(y), aligned, atol=1e-12)
    np.testing.assert_allclose(frame.basis.T @ frame.basis, np.eye(24), atol=1e-12)


def test_torch_version_matches_and_is_differentiable(molecule):
    reference, _, frame = molecule
    x = rigidly_moved(reference + 0.03 * np.random.default_rng(8).normal(size=(5, 10, 3)), seed=9, n=5)
    xt = torch.tensor(x, requires_grad=True)
    np.testing.assert_allclose(frame.to_internal_torch(xt).detach().numpy(), frame.to_internal(x), atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda p: frame.to_internal_torch(p)[:, :4], (xt[2:4].detach().clone().requires_grad_(),)
    )


def test_maxwell_boltzmann_momenta_become_unit_mass_gaussians(molecule):
    reference, masses, frame = molecule
    kT = 2.494
    rng = np.random.default_rng(10)
    momenta = rng.normal(size=(40000, 10, 3)) * np.sqrt(masses * kT)[:, None]
    rotations = Rotation.random(40000, random_state=11).as_matrix()
    p_y = frame.momenta_to_internal(momenta, rotations)
    covariance = np.cov(p_y.T) / kT
    np.testing.assert_allclose(np.diag(covariance), 1.0, atol=0.03)
    assert np.abs(covariance - np.diag(np.diag(covariance))).max() < 0.03
    np.testing.assert_allclose(frame.momenta_to_internal(frame.momenta_from_internal(p_y[:5])), p_y[:5], atol=1e-12)


def test_a_rotated_molecule_has_the_internal_momenta_of_the_unrotated_one(molecule):
    """Rotating a molecule with its momenta, as a change of lab frame does, leaves p_y unchanged."""
    _, masses, frame = molecule
    centred = frame.reference.numpy()
    rng = np.random.default_rng(14)
    momenta = rng.normal(size=(20, 10, 3)) * np.sqrt(masses)[:, None]
    turns = Rotation.random(20, random_state=15).as_matrix()
    positions = np.einsum("fab,ib->fia", turns, centred) + rng.normal(size=(20, 1, 3))
    lab_momenta = np.einsum("fab,fib->fia", turns, momenta)
    _, rotations = frame.to_internal(positions, return_rotations=True)
    np.testing.assert_allclose(
        frame.momenta_to_internal(lab_momenta, rotations), frame.momenta_to_internal(momenta), atol=1e-10
    )


def test_the_rmsd_of_a_uniformly_stretched_molecule_is_its_mass_weighted_stretch(molecule):
    """Scaling the reference by 1 + s about its centre of mass needs no rotation, and the mass-weighted RMSD is
    s sqrt(sum m r^2 / sum m), with unequal masses."""
    _, masses, frame = molecule
    centred = frame.reference.numpy()
    stretch = 0.05
    _, rotations, rmsd = frame.align((1.0 + stretch) * centred[None] + np.array([0.3, -0.2, 0.1]))
    np.testing.assert_allclose(rotations[0], np.eye(3), atol=1e-10)
    expected = stretch * np.sqrt(masses @ (centred**2).sum(axis=1) / masses.sum())
    assert rmsd[0] == pytest.approx(expected, rel=1e-10)


def test_state_dict_round_trip_with_weights_only(molecule):
    reference, _, frame = molecule
    buffer = io.BytesIO()
    torch.save(frame.state_dict(), buffer)
    buffer.seek(0)
    restored = RigidBodyFrame.from_state(torch.load(buffer, weights_only=True))
    x = reference[None] + 0.01
    np.testing.assert_allclose(restored.to_internal(x), frame.to_internal(x), atol=1e-12)
    np.testing.assert_array_equal(restored.basis.numpy(), frame.basis.numpy())
