"""Hydrogens placed by bond length, angle and dihedral on a heavy-atom model: geometry, volume element and density."""

import mdtraj
import numpy as np
import pytest
import torch
from scipy import stats

from neuralct.data import RigidBodyFrame
from neuralct.errors import NeuralCTError
from neuralct.md.energy import OpenMMEnergy
from neuralct.md.systems import build_system
from neuralct.sampling import ChainState, HamiltonianMonteCarlo, iterate, warm_up
from neuralct.sampling.hydrogens import HydrogenPlacement
from neuralct.sampling.rigid import rigid_body_log_jacobian
from neuralct.sampling.targets import MolecularPotential


@pytest.fixture(scope="module")
def alanine():
    """Alanine dipeptide without constraints, 6 distorted and rotated copies of its structure, and its heavy atoms."""
    system = build_system("alanine-dipeptide", constraints="none")
    topology = mdtraj.Topology.from_openmm(system.topology)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(6):
        rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        frames.append(
            (system.positions + rng.normal(scale=0.005, size=system.positions.shape)) @ rotation.T + rng.normal(size=3)
        )
    heavy = [atom.index for atom in topology.atoms if atom.element.symbol != "H"]
    return system, topology, np.array(frames), heavy


def test_internal_coordinates_are_mdtrajs_and_place_the_hydrogens_back(alanine):
    _, topology, frames, heavy = alanine
    placement = HydrogenPlacement.from_topology(topology, heavy)
    assert placement.count == 12 and placement.dim == 36
    positions = torch.as_tensor(frames)
    internal = placement.internal(positions).reshape(6, 12, 3).numpy()
    anchors = np.array(heavy)[placement.anchors.numpy()]
    h = placement.hydrogens.numpy()
    traj = mdtraj.Trajectory(frames, topology)
    assert np.allclose(internal[..., 0], mdtraj.compute_distances(traj, np.c_[h, anchors[:, 0]]), atol=1e-6)
    assert np.allclose(internal[..., 1], mdtraj.compute_angles(traj, np.c_[h, anchors[:, :2]]), atol=1e-5)
    wrapped = np.angle(np.exp(1j * (internal[..., 2] - mdtraj.compute_dihedrals(traj, np.c_[h, anchors]))))
    assert np.abs(wrapped).max() < 1e-5
    # Every methyl hydrogen hangs on its carbon, with the carbon's heavy neighbour as B.
    names = {
        (topology.atom(int(k)).residue.name, topology.atom(int(k)).name): topology.atom(int(a)).name
        for k, a in zip(h, anchors[:, 0])
    }
    assert names[("ALA", "HB1")] == "CB" and names[("ACE", "H1")] == "CH3" and names[("ALA", "HA")] == "CA"
    # Placing from the heavy atoms and the internal coordinates gives the frames back (float64).
    placed = placement.place(positions[:, heavy], torch.as_tensor(internal.reshape(6, 36)))
    assert torch.allclose(placed, positions, atol=1e-12)


def test_log_jacobian_is_the_slogdet_of_the_placement(alanine):
    _, topology, frames, heavy = alanine
    placement = HydrogenPlacement.from_topology(topology, heavy)
    positions = torch.as_tensor(frames[:2])
    internal = placement.internal(positions)
    for k in range(2):
        jacobian = torch.autograd.functional.jacobian(
            lambda w: placement.place(positions[k : k + 1, heavy], w)[0, placement.hydrogens].reshape(-1),
            internal[k : k + 1],
        )
        sign, logdet = torch.linalg.slogdet(jacobian.reshape(36, 36))
        assert sign != 0 and torch.allclose(logdet, placement.log_jacobian(internal[k : k + 1])[0], atol=1e-10)
    outside = internal[:1].clone()
    outside[0, 0] = -0.1
    assert placement.log_jacobian(outside)[0] == -torch.inf


def test_a_hydrogen_sampled_by_internal_coordinates_has_the_cartesian_distribution():
    """One hydrogen in a Cartesian Gaussian well beside its anchors: HMC on (r, theta, phi) needs -ln(r^2 sin theta)."""
    anchors = torch.tensor([[[0.0, 0.0, 0.0], [0.15, 0.0, 0.0], [0.2, 0.12, 0.0]]], dtype=torch.float64)
    placement = HydrogenPlacement(4, [0, 1, 2], np.array([[3, 0, 1, 2]]))
    centre, width = torch.tensor([0.02, 0.05, 0.06], dtype=torch.float64), 0.04

    def cartesian(w):
        return placement.place(anchors.expand(len(w), 3, 3), w)[:, 3]

    def energy(w, volume=True):
        value = ((cartesian(w) - centre) ** 2).sum(-1) / (2 * width**2)
        return value - placement.log_jacobian(w) if volume else value

    generator = torch.Generator().manual_seed(1)
    exact = centre + width * torch.randn(4000, 3, generator=generator, dtype=torch.float64)
    positions = torch.cat([anchors.expand(4000, 3, 3), exact[:, None]], dim=1)

    def observables(x):
        return [x[:, 0].norm(dim=-1), x[:, 2], x[:, 1] / x[:, 0].norm(dim=-1)]  # |H - A|, z, cos of H-A-B

    reference = observables(exact)
    results = {}
    for volume in (True, False):
        potential = lambda w, volume=volume: energy(w, volume)  # noqa: E731
        kernel = HamiltonianMonteCarlo(potential, step_size=0.05, leapfrog_steps=5, mass_matrix="curvature")
        state = warm_up([kernel], ChainState.start(potential, placement.internal(positions)), 40, generator)
        for _ in range(40):
            state = iterate([kernel], state, generator)
        sampled = observables(cartesian(state.position))
        results[volume] = min(stats.ks_2samp(a.numpy(), b.numpy()).pvalue for a, b in zip(sampled, reference))
    assert results[True] > 1e-3, results
    assert results[False] < 1e-8, results


def test_molecular_potential_with_placed_hydrogens_is_the_cartesian_density(alanine):
    system, topology, frames, heavy = alanine
    placement = HydrogenPlacement.from_topology(topology, heavy)
    masses = np.array([atom.element.mass for atom in topology.atoms])[heavy]
    frame = RigidBodyFrame(frames[0, heavy], masses)
    energy = OpenMMEnergy(system, unit="kT", temperature=300.0)
    potential = MolecularPotential(frame, energy, hydrogens=placement)
    point = potential.coordinates(frames)
    assert point.shape == (6, frame.dim + 36) and potential.dim == frame.dim + 36
    positions = potential.positions(point)
    # The same molecule, rotated into the frame: every interatomic distance is kept.
    distances = lambda x: torch.cdist(torch.as_tensor(x), torch.as_tensor(x))  # noqa: E731
    assert torch.allclose(distances(positions), distances(frames), atol=1e-9)
    y, w = point[:, : frame.dim], point[:, frame.dim :]
    expected = energy(torch.as_tensor(frames)) - rigid_body_log_jacobian(frame, y) - placement.log_jacobian(w)
    assert torch.allclose(potential(point), expected, rtol=1e-9, atol=1e-6)


def test_an_atom_left_out_that_is_not_a_hydrogen_is_refused(alanine):
    _, topology, _, heavy = alanine
    backbone = [k for k in heavy if topology.atom(k).name in ("N", "CA", "C")]
    with pytest.raises(NeuralCTError, match="is not a hydrogen bonded to one of its atoms"):
        HydrogenPlacement.from_topology(topology, backbone)
