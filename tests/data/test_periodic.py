"""One unwrapping rule: the loader's NumPy routine, the exported torch CVs and their NumPy twin agree with MDTraj."""

from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
import torch

import neuralct
from neuralct.data.netcdf import NetCDFFrames, read_netcdf, write_netcdf
from neuralct.data.periodic import (
    NEIGHBOUR_SHIFTS,
    SpanningTree,
    box_vectors,
    half_narrowest_width,
    make_whole,
    minimum_image,
    model_tree,
    molecules_of,
    reduced_box,
    selection_tree,
    spanning_tree,
    torn_bond,
)
from neuralct.export import NumpyCollectiveVariables, collective_variables

BOXES = {
    "orthorhombic": md.utils.lengths_and_angles_to_box_vectors(2.5, 2.4, 2.6, 90.0, 90.0, 90.0),
    # a rhombic dodecahedron (xy-square), as GROMACS writes it
    "triclinic": md.utils.lengths_and_angles_to_box_vectors(2.6, 2.6, 2.6, 60.0, 60.0, 90.0),
    # no angle a right one: b leaves the xz plane and c has every component (gamma != 90 degrees)
    "generic": md.utils.lengths_and_angles_to_box_vectors(2.6, 2.7, 2.8, 80.0, 75.0, 65.0),
}
#: Edge lengths (nm) and angles (degrees) of boxes as a trajectory file stores them: BOXES', a truncated
#: octahedron's (GROMACS's, angles arccos(1/3) and its supplement) and the other rhombic dodecahedron's.
LENGTHS_AND_ANGLES = {
    "orthorhombic": (2.5, 2.4, 2.6, 90.0, 90.0, 90.0),
    "triclinic": (2.6, 2.6, 2.6, 60.0, 60.0, 90.0),
    "generic": (2.6, 2.7, 2.8, 80.0, 75.0, 65.0),
    "truncated-octahedron": (3.0, 3.0, 3.0, 70.52877936550931, 109.47122063449069, 70.52877936550931),
    "hexagonal-dodecahedron": (2.6, 2.6, 2.6, 60.0, 60.0, 60.0),  # GROMACS's xy-hexagon form
}


def wrapped_atoms(xyz: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Every atom of ``xyz`` (frames, n, 3) moved into the box (3, 3) on its own, as an engine writes raw coordinates.

    The frames are first moved so that the box's origin cuts through the molecule.
    """
    moved = xyz - xyz.mean(axis=1, keepdims=True)
    fractional = moved @ np.linalg.inv(box)
    return (fractional - np.floor(fractional)) @ box


def relative(positions: np.ndarray) -> np.ndarray:
    """Positions (frames, n, 3) relative to each frame's first atom: the same for any lattice translation."""
    return positions - positions[:, :1]


@pytest.fixture(scope="module")
def molecule(alanine_model):
    """The conftest model, its whole frames (all atoms, nm) and its topology."""
    model_path, paths = alanine_model
    traj = md.load(paths[0], top=str(Path(paths[0]).parent / "topology.pdb"))
    return neuralct.load(model_path), traj.xyz.astype(np.float64), traj.topology


@pytest.mark.parametrize("shape", sorted(BOXES))
def test_loader_export_and_mdtraj_make_the_same_whole_molecule(molecule, shape):
    model, whole, topology = molecule
    box = np.asarray(BOXES[shape], dtype=np.float64)
    boxes = np.broadcast_to(box, (len(whole), 3, 3))
    wrapped = wrapped_atoms(whole, box)
    bonds = np.array([(a.index, b.index) for a, b in topology.bonds])
    assert np.linalg.norm(wrapped[:, bonds[:, 0]] - wrapped[:, bonds[:, 1]], axis=-1).max() > 1.0  # torn

    atoms, tree = selection_tree(topology, np.arange(topology.n_atoms), wrapped[0], box)
    loader = make_whole(wrapped[:, atoms], boxes, tree)
    reference = md.Trajectory(wrapped.astype(np.float32), topology)
    reference.unitcell_vectors = boxes.astype(np.float32)
    mdtraj_whole = reference.make_molecules_whole().xyz
    np.testing.assert_allclose(relative(loader), relative(whole), atol=1e-9)
    np.testing.assert_allclose(relative(mdtraj_whole), relative(whole), atol=2e-5)  # float32 in MDTraj

    cvs = collective_variables(model, 2, select=False)
    fast = NumpyCollectiveVariables(cvs)
    selected = np.asarray(model.metadata["molecule"]["atom_indices"])
    torn = wrapped[:, selected]
    torch_whole = cvs.make_whole(torch.as_tensor(torn), torch.as_tensor(box)).numpy()
    numpy_whole = make_whole(torn, box, fast.tree)
    np.testing.assert_allclose(relative(torch_whole), relative(whole[:, selected]), atol=1e-9)
    np.testing.assert_allclose(relative(numpy_whole), relative(whole[:, selected]), atol=1e-9)
    expected = np.array([fast(frame, [0, 1])[0] for frame in whole[:, selected]])
    np.testing.assert_allclose([fast(frame, [0, 1], box)[0] for frame in torn], expected, atol=1e-8)
    scripted = torch.jit.script(cvs)
    np.testing.assert_allclose(scripted(torch.as_tensor(torn), torch.as_tensor(box)).numpy(), expected, atol=1e-8)


@pytest.mark.parametrize("shape", sorted(LENGTHS_AND_ANGLES))
def test_box_vectors_from_lengths_and_angles_are_mdtrajs(shape, tmp_path):
    """The rows a, b, c of a box given by |a|, |b|, |c|, alpha, beta, gamma are MDTraj's, also after a NetCDF file
    (angstrom and degrees, as AMBER stores them) is written and read back."""
    *lengths, alpha, beta, gamma = LENGTHS_AND_ANGLES[shape]
    expected = np.array(md.utils.lengths_and_angles_to_box_vectors(*lengths, alpha, beta, gamma), dtype=np.float64)
    np.testing.assert_allclose(box_vectors(np.array(lengths), np.array([alpha, beta, gamma])), expected, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(expected, axis=1), lengths, rtol=1e-12)
    frames = NetCDFFrames(np.zeros((2, 1, 3)), None, np.array([0.0, 1.0]), {}, box_vectors=np.stack([expected] * 2))
    write_netcdf(tmp_path / "box.nc", frames)
    np.testing.assert_allclose(read_netcdf(tmp_path / "box.nc").box_vectors, frames.box_vectors, atol=1e-9)


def test_a_box_is_reduced_to_the_same_lattice():
    box = np.array([[2.0, 0.0, 0.0], [1.7, 2.1, 0.0], [-1.3, 1.5, 2.2]])
    reduced = reduced_box(box)
    assert abs(reduced[1, 0]) <= 1.0 and abs(reduced[2, 0]) <= 1.0 and abs(reduced[2, 1]) <= reduced[1, 1] / 2
    integer = np.linalg.solve(box.T, reduced.T).T  # each reduced vector in the old basis
    np.testing.assert_allclose(integer, np.round(integer), atol=1e-12)
    assert abs(round(np.linalg.det(np.round(integer)))) == 1


def test_a_tree_puts_each_atom_after_its_parent_and_refuses_a_cycle():
    tree = SpanningTree([-1, 0, 1, 0, 3, -1, 5])
    position = {int(atom): i for i, atom in enumerate(tree.order)}
    assert all(position[int(p)] < position[a] for a, p in enumerate(tree.parents) if p >= 0)
    assert [len(atoms) for atoms, _ in tree.levels] == [3, 2]
    with pytest.raises(ValueError, match="cycle"):
        SpanningTree([-1, 2, 1])


def two_chains(atoms_each: int) -> md.Topology:
    """Two molecules, each a chain of ``atoms_each`` bonded carbons."""
    topology = md.Topology()
    for _ in range(2):
        residue = topology.add_residue("MOL", topology.add_chain())
        atoms = [topology.add_atom(f"C{i}", md.element.carbon, residue) for i in range(atoms_each)]
        for a, b in zip(atoms, atoms[1:]):
            topology.add_bond(a, b)
    return topology


def test_separate_molecules_join_at_their_first_selected_atoms():
    """Two copies of a chain: each is made whole along its bonds, the second placed nearest the first."""
    topology = two_chains(4)
    chain = np.array([[0.0, 0.0, 0.0], [0.15, 0.0, 0.0], [0.3, 0.0, 0.0], [0.45, 0.0, 0.0]])
    whole = np.concatenate([chain, chain + [0.5, 0.3, 0.0]])[None] + 0.9
    box = np.eye(3) * 2.0
    wrapped = np.where(whole > 1.0, whole - 2.0, whole)
    atoms, tree = selection_tree(topology, np.array([1, 2, 5, 6]), wrapped[0], box)
    np.testing.assert_array_equal(atoms, np.arange(8))
    result = make_whole(wrapped, box, tree)
    np.testing.assert_allclose(relative(result), relative(whole), atol=1e-12)


@pytest.mark.parametrize("shape", sorted(BOXES))
def test_the_exported_cvs_place_a_second_molecule_where_the_loader_does(shape):
    """Two molecules more than half a box apart: no tree through their closest atoms (the reference's shortest
    edges) gives the loader's placement; the model's tree (each molecule's own, joined at first atoms) does."""
    topology = two_chains(5)
    box = np.asarray(BOXES[shape], dtype=np.float64)
    rng = np.random.default_rng(5)
    chain = np.cumsum(rng.normal(scale=0.09, size=(5, 3)), axis=0)
    # In the reference the first molecule's last atom lies next to the second's last: their closest pair.
    reference = np.concatenate([chain, chain[::-1] + (chain[-1] - chain[0]) + [0.2, 0.0, 0.0]])
    selected = np.array([0, 1, 3, 4, 5, 6, 8, 9])
    molecules = molecules_of(topology, selected)
    assert molecules == [0, 0, 0, 0, 1, 1, 1, 1]
    tree = model_tree(reference[selected], molecules)
    assert tree.parents[4] == 0 and (tree.parents[:4] < 4).all() and (tree.parents[5:] >= 4).all()
    for shift in rng.uniform(-1.5, 1.5, size=(20, 3)):  # the second molecule anywhere in the box, or beyond
        frame = np.concatenate([chain, chain + shift])[None] + 0.3
        fractional = frame @ np.linalg.inv(box)
        wrapped = (fractional - np.floor(fractional)) @ box
        atoms, loader_tree = selection_tree(topology, selected, wrapped[0], box)
        loader = make_whole(wrapped[:, atoms], box, loader_tree)[:, selected]
        exported = make_whole(wrapped[:, selected], box, tree)
        np.testing.assert_allclose(relative(exported), relative(loader), atol=1e-12)
        scripted = cvs_tree_whole(wrapped[:, selected], box, tree)
        np.testing.assert_allclose(relative(scripted), relative(loader), atol=1e-12)
        # The second molecule at the image of its first atom nearest the first molecule's, as PLUMED places it.
        first_to_first = loader[0, 4] - loader[0, 0]
        assert np.linalg.norm(first_to_first) == pytest.approx(nearest_image_length(first_to_first, box), abs=1e-12)
    # A model without the record treats its atoms as one molecule (as before).
    np.testing.assert_array_equal(model_tree(reference).parents, spanning_tree(reference).parents)


def nearest_image_length(displacement: np.ndarray, box: np.ndarray) -> float:
    """The length of the shortest of ``displacement`` (3,) plus any lattice vector of ``box`` (3, 3) with
    coefficients from -4 to 4 in its reduced basis, nm (by brute force)."""
    span = np.arange(-4, 5)
    shifts = np.stack(np.meshgrid(span, span, span), axis=-1).reshape(-1, 3) @ reduced_box(box)
    return float(np.linalg.norm(displacement + shifts, axis=1).min())


@pytest.mark.parametrize("shape", sorted(LENGTHS_AND_ANGLES))
def test_the_minimum_image_is_the_shortest_at_any_length(shape):
    """Displacements up to twice the box, in a cube, two rhombic dodecahedra, a truncated octahedron and a box
    without a right angle: the image is the shortest one (a lattice translation of the displacement), including
    beyond half the narrowest width, where subtracting the box vectors in turn alone can miss it."""
    *lengths, alpha, beta, gamma = LENGTHS_AND_ANGLES[shape]
    box = reduced_box(box_vectors(np.array(lengths), np.array([alpha, beta, gamma])))
    displacements = np.random.default_rng(1).uniform(-6.0, 6.0, size=(400, 3))
    images = minimum_image(displacements, box)
    coefficients = np.linalg.solve(box.T, (images - displacements).T)
    np.testing.assert_allclose(coefficients, np.round(coefficients), atol=1e-9)
    brute = [nearest_image_length(d, box) for d in displacements]
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), brute, atol=1e-12)
    longer = np.linalg.norm(images, axis=1) > half_narrowest_width(box)
    assert longer.any() and not (np.linalg.norm(images, axis=1) > np.linalg.norm(box, axis=1).max()).any()


def cvs_tree_whole(positions: np.ndarray, box: np.ndarray, tree: SpanningTree) -> np.ndarray:
    """The torch rule of :meth:`CollectiveVariables.make_whole` on ``tree`` (its placement loop, run here)."""
    from neuralct.export.cv import CollectiveVariables

    holder = type("Tree", (), {})()
    atoms, parents, holder.tree_level_ends = tree.flat_levels()
    holder.tree_level_atoms, holder.tree_level_parents = torch.as_tensor(atoms), torch.as_tensor(parents)
    holder.neighbour_shifts = torch.as_tensor(NEIGHBOUR_SHIFTS)
    whole = CollectiveVariables.make_whole(holder, torch.as_tensor(positions), torch.as_tensor(box))
    return whole.numpy()


def test_a_topology_without_bonds_takes_the_shortest_minimum_image_tree():
    """The tree of the first frame's minimum-image distances is the one of the whole molecule."""
    rng = np.random.default_rng(3)
    whole = np.cumsum(rng.normal(scale=0.08, size=(12, 3)), axis=0) + 1.0
    box = np.asarray(BOXES["triclinic"], dtype=np.float64)
    fractional = whole @ np.linalg.inv(box)
    wrapped = (fractional - np.floor(fractional + 0.4)) @ box
    np.testing.assert_array_equal(spanning_tree(wrapped, box).parents, spanning_tree(whole).parents)
    topology = md.Topology()
    residue = topology.add_residue("MOL", topology.add_chain())
    for i in range(12):
        topology.add_atom(f"C{i}", md.element.carbon, residue)
    atoms, tree = selection_tree(topology, np.arange(11, -1, -1), wrapped, box)
    np.testing.assert_array_equal(atoms, np.arange(12))
    np.testing.assert_allclose(relative(make_whole(wrapped[None], box, tree)), relative(whole[None]), atol=1e-12)


def test_a_chain_longer_than_half_the_box_is_joined_by_its_shortest_edges():
    """A zigzag chain of 12 atoms 0.153 nm apart, 1.65 nm long in a 3 nm box, without bonds: the distance tree is
    the chain itself (each atom's parent its predecessor), so no edge is longer than half the box and the wrapped
    chain comes out whole."""
    index = np.arange(12)
    whole = np.column_stack([0.15 * index, 0.03 * (index % 2), np.zeros(12)])[None] + 0.2
    box = np.eye(3) * 3.0
    wrapped = np.mod(whole - [0.9, 0.0, 0.0], 3.0)  # the box's face cuts the chain
    tree = spanning_tree(wrapped[0], box)
    np.testing.assert_array_equal(tree.parents, [-1, *range(11)])
    np.testing.assert_allclose(relative(make_whole(wrapped, box, tree)), relative(whole), atol=1e-12)


@pytest.mark.parametrize("shape", sorted(BOXES))
def test_a_residue_without_bonds_beside_bonded_ones_is_one_molecule(shape):
    """A chain whose bonds the topology has and a 4-atom ligand without any (a PDB without CONECT records) 1.0-1.6 nm
    away, each atom wrapped into the box on its own: the ligand is one molecule, made whole and placed at the image of
    its first atom nearest the chain's first atom (atom by atom, each ligand atom took its own image)."""
    topology = two_chains(5)
    chain = topology.chain(1)
    ligand = topology.add_residue("LIG", topology.add_chain())
    for i in range(4):
        topology.add_atom(f"C{i}", md.element.carbon, ligand)
    box = np.asarray(BOXES[shape], dtype=np.float64)
    rng = np.random.default_rng(11)
    selected = np.array([0, 1, 2, 3, 4, 10, 11, 12, 13])
    assert chain.n_atoms == 5 and molecules_of(topology, selected) == [0] * 5 + [1] * 4
    from neuralct.data.loading import _selection_note

    assert "1 selected residue(s) have no bonds in the topology (LIG" in _selection_note(topology, selected, "x")
    assert "no bonds" not in _selection_note(topology, selected[:5], "x")
    for _ in range(10):
        first = np.cumsum(rng.normal(scale=0.09, size=(10, 3)), axis=0)  # the two bonded chains
        direction = rng.normal(size=3)
        centre = first[0] + rng.uniform(1.0, 1.6) * direction / np.linalg.norm(direction)
        whole = np.concatenate([first, centre + rng.normal(scale=0.08, size=(4, 3))])[None]
        fractional = whole @ np.linalg.inv(box)
        wrapped = (fractional - np.floor(fractional)) @ box
        atoms, tree = selection_tree(topology, selected, wrapped[0], box)
        placed = make_whole(wrapped[:, atoms], box, tree)[0, np.searchsorted(atoms, selected)]
        lig = placed[5:]
        np.testing.assert_allclose(lig - lig[0], whole[0, 10:] - whole[0, 10], atol=1e-12)  # whole
        first_to_first = lig[0] - placed[0]
        assert np.linalg.norm(first_to_first) == pytest.approx(nearest_image_length(first_to_first, box), abs=1e-12)


def test_a_torn_bond_is_found_and_mostly_long_bonds_are_another_molecule(molecule):
    _, whole, topology = molecule
    atoms = np.arange(topology.n_atoms)
    assert torn_bond(whole, topology, atoms) is None
    torn = whole.copy()
    torn[5:, 10] += [2.5, 0.0, 0.0]  # one atom at the other side of the box from frame 5 on
    length, frame, first, second = torn_bond(torn, topology, atoms)
    assert frame == 5 and length > 2.0 and 10 in (first, second)
    scattered = np.random.default_rng(0).normal(scale=2.0, size=whole.shape)  # a wrong topology's frames
    assert torn_bond(scattered, topology, atoms) is None
