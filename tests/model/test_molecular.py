"""A model's atoms found in a system's topology by their names, whatever file the names come from."""

import mdtraj
import numpy as np
import pytest

from neuralct.data import load_trajectories
from neuralct.errors import NeuralCTError
from neuralct.model.molecular import molecule_atoms


def _molecule(topology) -> dict:
    """The molecule description a model of every atom of ``topology`` records."""
    return {
        "n_atoms": topology.n_atoms,
        "atom_indices": list(range(topology.n_atoms)),
        "atom_names": [f"{atom.residue.name}:{atom.name}" for atom in topology.atoms],
    }


def test_a_run_inputs_force_field_names_and_the_pdb_names_of_its_gro_are_one_system(gromacs_run):
    """GROMACS keeps AMBER's names (NME's methyl carbon CH3), MDTraj reads the .gro into the PDB's (C)."""
    run_input = load_trajectories(gromacs_run / "solute.xtc", topology=gromacs_run / "solute.tpr", selection="all")
    gro = mdtraj.load_topology(str(gromacs_run / "solute.gro"))
    differing = [(a.name, b.name) for a, b in zip(run_input.topology.atoms, gro.atoms) if a.name != b.name]
    assert ("CH3", "C") in differing  # the names do differ between the two files
    np.testing.assert_array_equal(molecule_atoms(_molecule(run_input.topology), gro, "solute.gro"), np.arange(22))
    np.testing.assert_array_equal(molecule_atoms(_molecule(gro), run_input.topology, "solute.tpr"), np.arange(22))


def test_another_atom_at_a_models_place_is_refused_with_both_names(gromacs_run):
    gro = mdtraj.load_topology(str(gromacs_run / "solute.gro"))
    molecule = _molecule(gro)
    molecule["atom_names"][8], molecule["atom_names"][10] = molecule["atom_names"][10], molecule["atom_names"][8]
    with pytest.raises(NeuralCTError, match=r"atom 8 is ALA:CA where the model was trained on a system with ALA:CB"):
        molecule_atoms(molecule, gro, "solute.gro")
