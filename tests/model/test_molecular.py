"""A model's atoms found in a system's topology by their names, whatever file the names come from."""

from types import SimpleNamespace

import mdtraj
import numpy as np
import pytest

from neuralct.data import load_trajectories
from neuralct.errors import NeuralCTError
from neuralct.model.molecular import molecule_atoms, selected_atoms_in


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


def _waters(count: int):
    topology = mdtraj.Topology()
    chain = topology.add_chain()
    for _ in range(count):
        residue = topology.add_residue("HOH", chain)
        for name, symbol in (("O", "O"), ("H1", "H"), ("H2", "H")):
            topology.add_atom(name, mdtraj.element.get_by_symbol(symbol), residue)
    return topology


def _model_of(system, selected) -> SimpleNamespace:
    """A stand-in for a model of ``system`` whose CVs read its atoms ``selected``."""
    names = [f"{system.atom(int(i)).residue.name}:{system.atom(int(i)).name}" for i in selected]
    molecule = {"kind": "molecule", "n_atoms": system.n_atoms, "atom_indices": list(selected), "atom_names": names}
    return SimpleNamespace(metadata={"molecule": molecule})


def test_a_part_of_the_models_system_holds_its_atoms_at_one_place(gromacs_run):
    """Water first: the solute saved alone holds the atoms shifted by the waters before it; solute first: at their
    indices; two copies of the molecule after the water: refused, since either could be the model's."""
    solute = mdtraj.load_topology(str(gromacs_run / "solute.gro"))
    heavy = np.array([atom.index for atom in solute.atoms if atom.element.symbol != "H"])
    water_first = _waters(5).join(solute)
    np.testing.assert_array_equal(selected_atoms_in(_model_of(water_first, heavy + 15), solute, "part"), heavy)
    solute_first = solute.join(_waters(5))
    np.testing.assert_array_equal(selected_atoms_in(_model_of(solute_first, heavy), solute, "part"), heavy)

    two_copies = _waters(5).join(solute).join(solute).join(_waters(2))
    pair = solute.join(solute)
    with pytest.raises(NeuralCTError, match="holds the model's atoms at 2 places"):
        selected_atoms_in(_model_of(two_copies, heavy + 37), pair, "part")
    np.testing.assert_array_equal(selected_atoms_in(_model_of(two_copies, heavy + 15), pair, "part"), heavy)
