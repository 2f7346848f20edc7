"""Solvated trajectories of other engines: the default selection is the solute's heavy atoms, with a note."""

import numpy as np
import pytest

from neuralct.cli import main
from neuralct.data import load_trajectories
from neuralct.errors import NeuralCTError

from tests.md.test_inputs import solvated_dipeptide, write_inputs

#: (trajectory suffix, topology suffix) as GROMACS, AMBER and CHARMM/NAMD users hold them.
ENGINES = [("xtc", "gro"), ("nc", "prmtop"), ("dcd", "psf")]


@pytest.fixture(scope="module")
def solvated(tmp_path_factory):
    """A solvated alanine dipeptide: its topology files and 20 jittered frames in each trajectory format."""
    import mdtraj as md
    import parmed

    folder = tmp_path_factory.mktemp("solvated")
    topology, system, positions = solvated_dipeptide()
    write_inputs(folder, topology, system, positions, "system")
    parmed.load_file(str(folder / "system.prmtop"), xyz=str(folder / "system.rst7")).save(str(folder / "system.psf"))
    first = md.load(str(folder / "system.pdb"))
    first.atom_slice(np.arange(22)).save_pdb(str(folder / "solute.pdb"))
    rng = np.random.default_rng(0)
    xyz = first.xyz + 0.005 * rng.normal(size=(20, *first.xyz.shape[1:]))
    frames = md.Trajectory(
        xyz.astype(np.float32),
        first.topology,
        time=np.arange(20) * 0.1,
        unitcell_lengths=np.repeat(first.unitcell_lengths, 20, axis=0),
        unitcell_angles=np.repeat(first.unitcell_angles, 20, axis=0),
    )
    for suffix, _ in ENGINES:
        frames.save(str(folder / f"traj.{suffix}"))
    return folder


@pytest.mark.parametrize("trajectory,topology", ENGINES)
def test_the_default_selection_is_the_heavy_atoms_of_the_solute(solvated, trajectory, topology):
    data = load_trajectories(solvated / f"traj.{trajectory}", topology=solvated / f"system.{topology}")
    assert data.atom_indices.size == 10 and {a.residue.name for a in data.selection_topology.atoms} == {
        "ACE",
        "ALA",
        "NME",
    }
    waters = sum(residue.is_water for residue in data.topology.residues)
    assert data.selection_note == (
        f"selection 'heavy': 10 of {data.topology.n_atoms} atoms in 3 residues; "
        f"left out {waters} water molecules, 2 ions, 12 other atoms"
    )


def test_a_selection_given_keeps_its_atoms(solvated):
    data = load_trajectories(solvated / "traj.xtc", topology=solvated / "system.gro", selection="protein")
    assert (
        data.atom_indices.size == 22 and "left out" in data.selection_note and "other atoms" not in data.selection_note
    )


def test_the_solute_topology_with_a_solvated_trajectory_is_one_line(solvated, tmp_path, capsys):
    with pytest.raises(NeuralCTError, match="has 22; give the topology of the whole simulated system"):
        load_trajectories(solvated / "traj.xtc", topology=solvated / "solute.pdb")
    out = tmp_path / "model"
    args = ["train", str(solvated / "traj.dcd"), "--top", str(solvated / "solute.pdb"), "--output", str(out)]
    assert main([*args, "--steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "traj.dcd has" in err and "solute.pdb has 22" in err, err
    assert not out.exists()
