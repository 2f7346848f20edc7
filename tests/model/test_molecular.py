"""A model's atoms found in a system's topology by their names, whatever file the names come from."""

from types import SimpleNamespace

import mdtraj
import numpy as np
import pytest

from neuralct.data import load_trajectories
from neuralct.errors import NeuralCTError
from neuralct.model.molecular import (
    check_topology,
    check_training_solvent,
    molecule_atoms,
    project_internal,
    selected_atoms_in,
)


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


def test_a_part_that_holds_the_models_atoms_at_their_own_indices_is_read_there_though_a_copy_matches_further_on(
    gromacs_run,
):
    """Two copies of the molecule, the model's atoms in the second: a part of both copies holds them at their own
    indices (shift 0), and the first copy matches 22 atoms earlier; the atoms at their own indices are the model's."""
    solute = mdtraj.load_topology(str(gromacs_run / "solute.gro"))
    second = np.arange(solute.n_atoms) + solute.n_atoms
    two_copies = solute.join(solute).join(_waters(2))
    np.testing.assert_array_equal(selected_atoms_in(_model_of(two_copies, second), solute.join(solute), "part"), second)


def test_trajectories_of_another_atom_count_are_refused_though_the_models_atoms_match_by_name(gromacs_run):
    """``check_topology`` wants the model's own system: the same molecule with one more water is another system."""
    solute = mdtraj.load_topology(str(gromacs_run / "solute.gro"))
    model = _model_of(solute, np.arange(solute.n_atoms))
    check_topology(model, solute, "solute.gro")
    with pytest.raises(NeuralCTError, match="with water has 25 atoms but the model was trained on a system of 22") as e:
        check_topology(model, solute.join(_waters(1)), "with water")
    assert "larger system" not in str(e.value)
    # A model of the whole box for the solute alone: train again on the solute's frames.
    boxed = _model_of(solute.join(_waters(1)), np.arange(solute.n_atoms))
    with pytest.raises(NeuralCTError, match=r"of 25; use .* trained again on frames of this system alone"):
        check_topology(boxed, solute, "the solute")


def test_a_system_of_another_kind_of_solvent_than_the_training_frames_is_refused():
    """Known and different kinds are refused; the same kind (any water model) and unknown kinds pass."""
    model = SimpleNamespace(metadata={"molecule": {"training_solvent": "explicit water"}})
    for solvent in ("tip3p", "TIP4PEW", None, 3):
        check_training_solvent(model, {"solvent": solvent}, "system.yaml")
    check_training_solvent(SimpleNamespace(metadata={"molecule": {}}), {"solvent": "vacuum"}, "system.yaml")
    for solvent, kind in (("vacuum", "vacuum"), ("obc2", r"implicit solvent \(OBC2\)")):
        with pytest.raises(NeuralCTError, match=f"^system.yaml is in {kind}, but the model was trained on frames "):
            check_training_solvent(model, {"solvent": solvent}, "system.yaml")


def test_the_cvs_of_a_model_that_mixes_positions_and_momenta_are_taken_at_zero_momentum():
    """Latent positions ``Q(q, p)`` of a flow with momentum-mixing layers are CVs at ``p = 0``."""
    import torch

    from tests.model.test_transformation import MIXED, random_model

    model = random_model(MIXED)
    q = torch.randn(7, model.dim)
    Q, _ = model.encode(q, torch.zeros_like(q))
    assert not torch.allclose(model.encode(q, torch.ones_like(q))[0], Q)  # the momenta do change Q
    np.testing.assert_allclose(project_internal(model, q.numpy(), 2, chunk=3), Q[:, :2].detach().numpy(), atol=1e-12)
