"""Whole molecules from periodic coordinates: the one unwrapping rule of the loader and the exported CVs.

An MD engine may write each atom wrapped into the periodic box, so that a molecule near a face
of the box comes out torn in two. Every consumer of positions here makes molecules whole by
one rule, the parent-image rule:

- the atoms are joined by a spanning tree; each atom, taken after its parent, is moved to the
  periodic image of itself nearest its parent's already placed position (the roots stay where
  they are);
- the box is first brought to OpenMM's reduced form (``a`` along x, ``b`` in the xy plane,
  ``|b_x| <= a_x / 2``, ``|c_x| <= a_x / 2``, ``|c_y| <= b_y / 2``: the same lattice), in which
  subtracting whole multiples of ``c``, then ``b``, then ``a`` gives the minimum image of any
  vector shorter than half the narrowest width of the box, orthorhombic or triclinic; a longer one
  (to another molecule) is the shortest of that and its 26 neighbouring images
  (:func:`minimum_image`), the image PLUMED's ``WHOLEMOLECULES`` takes.

A whole molecule is unique up to a translation by a lattice vector when every tree edge is shorter
than half the box, so any such tree gives the same molecule up to that translation, which the
rigid-body fit removes. Where the tree comes from:

- the loader (:func:`selection_tree`) follows the topology's bonds (MDTraj): a bond never stretches,
  whereas a close contact between unbonded atoms can open to more than half the box later in a
  trajectory. The tree spans every atom of the molecules that hold selected atoms, so that a
  selection whose atoms are not bonded to each other (C-alpha atoms only) is joined through the
  atoms between them; a further molecule of the selection is placed by its first selected atom,
  at the image nearest the first selected atom of the selection. A topology without any bonds (one
  MDAnalysis builds from a coordinates file alone) falls back to the tree below on the first
  frame's minimum-image distances;
- the exported CVs (:class:`neuralct.export.CollectiveVariables`, and its NumPy twin which calls
  :func:`make_whole` here) know only the model's atoms, its reference structure, which is whole,
  and which molecule each atom belongs to (:func:`molecules_of`, recorded at training): their tree
  (:func:`model_tree`) is each molecule's shortest-edge spanning tree of the reference, with each
  further molecule's first atom placed nearest the first atom, as the loader places it. Several
  molecules are not one whole: how far apart they are is the loader's choice, which the CVs must
  share. The torch version stays torch, for TorchScript in openmm-torch and PLUMED, and follows the
  same rule (tested against this module and MDTraj's ``make_molecules_whole``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "SpanningTree",
    "box_vectors",
    "reduced_box",
    "minimum_image",
    "half_narrowest_width",
    "NEIGHBOUR_SHIFTS",
    "make_whole",
    "spanning_tree",
    "model_tree",
    "molecules_of",
    "selection_tree",
    "torn_bond",
    "unbonded_residues",
    "SPLIT_BOND_NM",
]

SPLIT_BOND_NM = 1.0
"""A bond longer than this (nm) is torn across a periodic box: bonds, coarse-grained and
elastic-network ones included, are shorter, and a torn one is nearly as long as the box, which is
at least twice the cutoff of the simulation."""


class SpanningTree:
    """A forest over ``n`` atoms given by each atom's parent, with its atoms grouped by depth.

    Parameters
    ----------
    parents : array_like of int, shape=(n,)
        The parent of each atom, -1 for a root.

    Attributes
    ----------
    parents : np.ndarray, shape=(n,)
    levels : list of (np.ndarray, np.ndarray)
        For depth 1, 2, ...: the atoms at that depth and their parents (one depth at a time can be
        placed at once).
    order : np.ndarray, shape=(n,)
        The roots, then the atoms depth by depth: every atom comes after its parent.
    """

    def __init__(self, parents: Any):
        self.parents = np.asarray(parents, dtype=np.int64)
        depth = np.where(self.parents < 0, 0, -1)
        self.levels = []
        while (depth < 0).any():
            ready = np.flatnonzero((depth < 0) & (depth[self.parents] == len(self.levels)))
            if ready.size == 0:
                raise ValueError("the parents do not form a tree: some atoms are on a cycle")
            depth[ready] = len(self.levels) + 1
            self.levels.append((ready, self.parents[ready]))
        self.order = np.concatenate([np.flatnonzero(self.parents < 0)] + [atoms for atoms, _ in self.levels])

    def flat_levels(self) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """:attr:`levels` in three flat parts (for the torch CVs): the atoms and their parents, depth after depth
        (two int64 arrays, shape (n - roots,)), and where each depth ends in them."""
        atoms = np.concatenate([np.zeros(0, dtype=np.int64), *(atoms for atoms, _ in self.levels)])
        parents = np.concatenate([np.zeros(0, dtype=np.int64), *(parents for _, parents in self.levels)])
        return atoms, parents, [int(end) for end in np.cumsum([len(atoms) for atoms, _ in self.levels])]


def box_vectors(lengths: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Box vectors as rows from the box's edge lengths and angles, ``a`` along x and ``b`` in the xy plane.

    Parameters
    ----------
    lengths : np.ndarray, shape=(..., 3)
        ``|a|, |b|, |c|`` in any length unit (the vectors are in the same).
    angles : np.ndarray, shape=(..., 3)
        ``alpha`` (between b and c), ``beta`` (a, c), ``gamma`` (a, b) in degrees.

    Returns
    -------
    np.ndarray, shape=(..., 3, 3)
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    cos_alpha, cos_beta, cos_gamma = np.moveaxis(np.cos(np.radians(np.asarray(angles, dtype=np.float64))), -1, 0)
    sin_gamma = np.sqrt(1.0 - cos_gamma**2)
    c_x = cos_beta
    c_y = (cos_alpha - cos_beta * cos_gamma) / sin_gamma
    unit = np.zeros(lengths.shape + (3,))
    unit[..., 0, 0] = 1.0
    unit[..., 1, 0], unit[..., 1, 1] = cos_gamma, sin_gamma
    unit[..., 2, 0], unit[..., 2, 1], unit[..., 2, 2] = c_x, c_y, np.sqrt(np.maximum(1.0 - c_x**2 - c_y**2, 0.0))
    return unit * lengths[..., None]


def reduced_box(box: np.ndarray) -> np.ndarray:
    """The box in OpenMM's reduced form, the same lattice (see the module docstring).

    Parameters
    ----------
    box : np.ndarray, shape=(..., 3, 3)
        Box vectors as rows, nm, ``a`` along x and ``b`` in the xy plane (as MDTraj, MDAnalysis
        and OpenMM give them).

    Returns
    -------
    np.ndarray, shape=(..., 3, 3)
    """
    box = np.array(box, dtype=np.float64)
    a, b, c = box[..., 0, :], box[..., 1, :], box[..., 2, :]
    c -= np.round(c[..., 1:2] / b[..., 1:2]) * b
    c -= np.round(c[..., 0:1] / a[..., 0:1]) * a
    b -= np.round(b[..., 0:1] / a[..., 0:1]) * a
    return box


#: The 27 lattice shifts (n_a, n_b, n_c) in {-1, 0, 1}^3 among which the minimum image of a displacement reduced
#: in a reduced box is (see :func:`minimum_image`).
NEIGHBOUR_SHIFTS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=np.float64)


def half_narrowest_width(box: np.ndarray) -> np.ndarray:
    """Half the smallest distance between opposite faces of ``box`` (..., 3, 3), nm: the radius within which the
    reduction of :func:`minimum_image` alone gives the minimum image. Shape (...)."""
    a, b, c = box[..., 0, :], box[..., 1, :], box[..., 2, :]
    volume = np.abs(np.einsum("...i,...i->...", a, np.cross(b, c)))
    areas = np.stack([np.linalg.norm(np.cross(*pair), axis=-1) for pair in ((b, c), (c, a), (a, b))], axis=-1)
    return 0.5 * volume / areas.max(axis=-1)


def minimum_image(displacement: np.ndarray, box: np.ndarray) -> np.ndarray:
    """``displacement`` (..., 3) shifted by whole box vectors to its minimum image in a reduced ``box`` (..., 3, 3), nm.

    Whole multiples of ``c``, then ``b``, then ``a`` are subtracted, which gives the minimum image of
    a displacement shorter than half the narrowest width of the box; one that is longer after it
    (two molecules far apart, or a triclinic box's corner) is compared with its 26 neighbouring
    images, as PLUMED's and GROMACS's distances in a triclinic box are, and the shortest is taken.
    """
    d = np.array(displacement, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    for axis in (2, 1, 0):
        d -= np.round(d[..., axis] / box[..., axis, axis])[..., None] * box[..., axis, :]
    far = np.linalg.norm(d, axis=-1) > np.broadcast_to(half_narrowest_width(box), d.shape[:-1])
    if far.any():
        candidates = d[far][:, None, :] + NEIGHBOUR_SHIFTS @ np.broadcast_to(box, d.shape[:-1] + (3, 3))[far]
        d[far] = candidates[np.arange(len(candidates)), np.argmin(np.linalg.norm(candidates, axis=-1), axis=1)]
    return d


def make_whole(positions: np.ndarray, box: np.ndarray, tree: SpanningTree) -> np.ndarray:
    """Each atom moved to the periodic image nearest its parent in ``tree`` (the parent-image rule).

    Parameters
    ----------
    positions : np.ndarray, shape=(..., n, 3)
        Positions in nm (one frame or many).
    box : np.ndarray, shape=(..., 3, 3)
        Box vectors as rows, nm (one box, or one per frame).
    tree : SpanningTree
        A tree over the ``n`` atoms.

    Returns
    -------
    np.ndarray, shape=(..., n, 3)
        Whole molecules, the roots in place.
    """
    box = reduced_box(box)[..., None, :, :]
    whole = np.array(positions, dtype=np.float64)
    for atoms, parents in tree.levels:
        anchor = whole[..., parents, :]
        whole[..., atoms, :] = anchor + minimum_image(whole[..., atoms, :] - anchor, box)
    return whole


def spanning_tree(positions: np.ndarray, box: np.ndarray | None = None) -> SpanningTree:
    """The shortest-edge spanning tree of ``positions`` (n, 3), nm, rooted at atom 0 (Prim's algorithm).

    With a ``box`` (3, 3) the distances are minimum-image ones, so a configuration torn across the
    box gives the tree of the whole one.
    """
    separation = positions[:, None] - positions[None]
    if box is not None:
        separation = minimum_image(separation, reduced_box(box))
    distance = np.linalg.norm(separation, axis=-1)
    n = len(positions)
    parents = np.full(n, -1)
    best, best_parent = distance[0].copy(), np.zeros(n, dtype=int)
    inside = np.zeros(n, dtype=bool)
    inside[0] = True
    for _ in range(n - 1):
        candidate = int(np.argmin(np.where(inside, np.inf, best)))
        parents[candidate] = best_parent[candidate]
        inside[candidate] = True
        closer = distance[candidate] < best
        best = np.where(closer, distance[candidate], best)
        best_parent = np.where(closer, candidate, best_parent)
    return SpanningTree(parents)


def model_tree(reference: np.ndarray, molecules: Any = None) -> SpanningTree:
    """The exported CVs' tree over a model's atoms: the loader's placement of molecules (see the module docstring).

    Parameters
    ----------
    reference : np.ndarray, shape=(n, 3)
        The model's reference structure (whole), nm.
    molecules : array_like of int, shape=(n,), optional
        The molecule of each atom (:func:`molecules_of`); None: one molecule (models that do not record it).

    Returns
    -------
    SpanningTree
        Within each molecule the shortest-edge spanning tree of the reference, rooted at its first
        atom; each further molecule's first atom hangs from atom 0.
    """
    molecules = np.zeros(len(reference), dtype=np.int64) if molecules is None else np.asarray(molecules)
    parents = np.full(len(reference), -1)
    for molecule in np.unique(molecules):
        members = np.flatnonzero(molecules == molecule)
        inner = spanning_tree(np.asarray(reference)[members]).parents
        parents[members[inner >= 0]] = members[inner[inner >= 0]]
        if members[0] != 0:
            parents[members[0]] = 0
    return SpanningTree(parents)


def molecules_of(topology: Any, atom_indices: np.ndarray) -> list[int] | None:
    """The molecule (bonded component of ``topology``) of each selected atom, numbered 0, 1, ... in the order
    of the selection; None for a topology without bonds (the loader then joins the atoms by distance)."""
    from scipy.sparse.csgraph import connected_components

    if topology.n_bonds == 0:
        return None
    _, component = connected_components(_bond_graph(topology), directed=False)
    _, first, numbered = np.unique(component[np.asarray(atom_indices)], return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return [int(rank[i]) for i in numbered]


def unbonded_residues(topology: Any) -> list:
    """The residues of several atoms of which none has a bond, in a ``topology`` (mdtraj) that has bonds (a ligand of a
    PDB without CONECT records beside a peptide whose bonds MDTraj knows); empty for a topology without any."""
    bonded = {atom.index for bond in topology.bonds for atom in bond}
    if not bonded:
        return []
    return [
        residue
        for residue in topology.residues
        if residue.n_atoms > 1 and not any(atom.index in bonded for atom in residue.atoms)
    ]


def _bond_graph(topology: Any) -> Any:
    """The topology's bonds as a symmetric sparse adjacency matrix (n_atoms, n_atoms).

    A residue of several atoms none of which has a bond (a ligand of a PDB without CONECT records
    beside a peptide whose bonds MDTraj knows) is one molecule: its atoms are joined to its first
    atom, which places each at its image nearest that one (a molecule is smaller than half the box).
    Taken atom by atom, such a ligand came out torn wherever it lay far from the selection's first atom.
    """
    from scipy.sparse import coo_matrix

    joined = [(residue.atom(0).index, atom.index) for residue in unbonded_residues(topology) for atom in residue.atoms]
    bonds = np.array([(a.index, b.index) for a, b in topology.bonds] + joined, dtype=np.int64).reshape(-1, 2)
    bonds = bonds[bonds[:, 0] != bonds[:, 1]]
    ones = np.ones(len(bonds))
    n = topology.n_atoms
    return coo_matrix((ones, (bonds[:, 0], bonds[:, 1])), shape=(n, n)).tocsr()


def selection_tree(
    topology: Any, atom_indices: np.ndarray, positions: np.ndarray, box: np.ndarray
) -> tuple[np.ndarray, SpanningTree]:
    """The atoms to make whole for a selection, and the loader's tree over them (see the module docstring).

    Parameters
    ----------
    topology : mdtraj.Topology
        The whole system.
    atom_indices : np.ndarray, shape=(n_sel,)
        The selected atoms.
    positions : np.ndarray, shape=(n_atoms, 3)
        One frame of the whole system, nm (used only by a topology without bonds).
    box : np.ndarray, shape=(3, 3)
        Its box vectors as rows, nm.

    Returns
    -------
    atoms : np.ndarray, shape=(n_spanned,)
        The atoms the tree spans, in the topology's order: every atom of the molecules that hold
        selected atoms.
    tree : SpanningTree
        Over ``atoms`` (indices into ``atoms``).
    """
    from scipy.sparse.csgraph import breadth_first_order, connected_components

    atom_indices = np.asarray(atom_indices, dtype=np.int64)
    if topology.n_bonds == 0:
        atoms = np.unique(atom_indices)
        return atoms, spanning_tree(positions[atoms], box)
    _, molecule = connected_components(_bond_graph(topology), directed=False)
    atoms = np.flatnonzero(np.isin(molecule, molecule[atom_indices]))
    local = np.searchsorted(atoms, atom_indices)
    graph = _bond_graph(topology)[atoms][:, atoms]
    parents = np.full(len(atoms), -1)
    reached = np.zeros(len(atoms), dtype=bool)
    for root in local:
        if reached[root]:
            continue
        order, predecessors = breadth_first_order(graph, int(root), directed=False, return_predecessors=True)
        parents[order[1:]] = predecessors[order[1:]]
        reached[order] = True
        if root != local[0]:
            parents[root] = local[0]
    return atoms, SpanningTree(parents)


def torn_bond(positions: np.ndarray, topology: Any, atom_indices: np.ndarray) -> tuple[float, int, int, int] | None:
    """The first bond between selected atoms torn across a periodic box, or None.

    A bond is torn when it is longer than :data:`SPLIT_BOND_NM` in a frame whose bonds are mostly
    (the median) shorter than half that: the topology fits the frame, but part of the molecule sits
    at the other side of the box. Frames whose bonds are mostly long are of another molecule than
    the topology's (a wrong topology), which is not a question of the box.

    Parameters
    ----------
    positions : np.ndarray, shape=(n_frames, n_sel, 3)
        The selected atoms, nm.
    topology : mdtraj.Topology
        The whole system.
    atom_indices : np.ndarray, shape=(n_sel,)
        The selected atoms.

    Returns
    -------
    (length, frame, first, second) or None
        The bond's length in nm, the frame, and its atoms (indices in the topology).
    """
    slot = {int(atom): i for i, atom in enumerate(atom_indices)}
    pairs = np.array(
        [(slot[a.index], slot[b.index]) for a, b in topology.bonds if a.index in slot and b.index in slot],
        dtype=np.int64,
    ).reshape(-1, 2)
    if not len(pairs):
        return None
    lengths = np.linalg.norm(positions[:, pairs[:, 0]] - positions[:, pairs[:, 1]], axis=-1)
    torn = (lengths.max(axis=1) > SPLIT_BOND_NM) & (np.median(lengths, axis=1) < SPLIT_BOND_NM / 2)
    if not torn.any():
        return None
    frame = int(np.argmax(torn))
    bond = int(np.argmax(lengths[frame]))
    first, second = pairs[bond]
    return float(lengths[frame, bond]), frame, int(atom_indices[first]), int(atom_indices[second])
