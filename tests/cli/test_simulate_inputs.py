"""`neuralct simulate` on systems prepared elsewhere: AMBER and GROMACS input files written by ParmEd."""

import mdtraj as md
import numpy as np
import pytest

from neuralct.cli import main

from tests.md.test_inputs import solvated_dipeptide, vacuum_dipeptide, write_inputs

SHORT = ["--length-ns", "0.001", "--report-ps", "0.1", "--equilibration-ps", "0.1", "--no-progress"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prepared")
    write_inputs(folder, *vacuum_dipeptide(), "vacuum")
    write_inputs(folder, *solvated_dipeptide(), "water")
    return folder


def test_an_amber_system_in_vacuum_is_simulated_from_its_files(inputs, tmp_path):
    out = tmp_path / "amber"
    files = [str(inputs / "vacuum.prmtop"), str(inputs / "vacuum.rst7")]
    assert main(["simulate", *files, "--platform", "Reference", *SHORT, "--output", str(out)]) == 0
    traj = md.load(str(out / "replica-000.nc"), top=str(out / "topology.pdb"))
    assert traj.n_atoms == 22 and traj.n_frames == 10 and traj.unitcell_vectors is None


@pytest.mark.parametrize("files", [("water.prmtop", "water.rst7"), ("water.top", "water.gro")])
def test_a_solvated_system_records_its_solute_with_the_box(inputs, tmp_path, files):
    out = tmp_path / "water"
    paths = [str(inputs / name) for name in files]
    assert main(["simulate", *paths, "--platform", "CPU", "--timestep-fs", "1", *SHORT, "--output", str(out)]) == 0
    traj = md.load(str(out / "replica-000.nc"), top=str(out / "topology.pdb"))
    assert traj.n_atoms == 22 and traj.n_frames == 10
    assert traj.unitcell_lengths is not None and np.all(np.abs(traj.unitcell_lengths - 2.2) < 0.2)


def test_options_that_build_a_system_are_refused_with_input_files(inputs, tmp_path, capsys):
    out = tmp_path / "refused"
    files = [str(inputs / "vacuum.prmtop"), str(inputs / "vacuum.rst7")]
    assert main(["simulate", *files, "--solvent", "tip3p", *SHORT, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--solvent" in err and len(err.strip().splitlines()) == 1 and not out.exists()
