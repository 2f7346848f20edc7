"""``neuralct simulate`` in explicit water: what it writes, its one-line refusals, and `train` on what it wrote."""

import json

import numpy as np
import pytest

from neuralct.cli import main
from neuralct.data.netcdf import read_netcdf

#: A small box (about 300 atoms): 0.6 nm of padding around alanine dipeptide, a cutoff below half its width.
SMALL_BOX = ["--solvent", "tip3p", "--padding-nm", "0.6", "--cutoff-nm", "0.7"]


@pytest.fixture(scope="module")
def water_run(tmp_path_factory):
    """Two replicas of 4 ps in TIP3P with 4 fs steps on repartitioned hydrogens, frames every 0.1 ps."""
    folder = tmp_path_factory.mktemp("water") / "md"
    argv = [
        "simulate",
        "alanine-dipeptide",
        *SMALL_BOX,
        "--hydrogen-mass-amu",
        "1.5",
        "--timestep-fs",
        "4",
        "--length-ns",
        "0.004",
        "--report-ps",
        "0.1",
        "--equilibration-ps",
        "0.4",
        "--replicas",
        "2",
        "--jobs",
        "1",
        "--platform",
        "CPU",
        "--no-progress",
        "--output",
        str(folder),
    ]
    assert main(argv) == 0
    return folder


def test_the_trajectory_holds_the_solute_with_a_box_per_frame(water_run):
    import mdtraj as md

    frames = read_netcdf(water_run / "replica-000.nc")
    assert frames.positions.shape == frames.velocities.shape == (40, 22, 3)
    assert frames.box_vectors.shape == (40, 3, 3)
    # The frames follow the 0.4 ps of equilibration (constant volume, then pressure) every 0.1 ps.
    np.testing.assert_allclose(frames.time_ps, 0.1 * np.arange(1, 41), atol=1e-6)
    edges = np.diagonal(frames.box_vectors, axis1=1, axis2=2)
    # The barostat moves the box: its edges change from frame to frame, about the 1.56 nm it was built with.
    assert np.all(np.abs(edges - 1.56) < 0.1) and np.ptp(edges[:, 0]) > 0
    traj = md.load(str(water_run / "replica-000.nc"), top=str(water_run / "topology.pdb"))
    assert traj.n_atoms == 22 and traj.unitcell_vectors is not None
    np.testing.assert_allclose(traj.unitcell_vectors, frames.box_vectors, atol=1e-5)
    assert len(frames.attributes["neuralct_masses_amu"]) == 22
    assert (water_run / "topology.pdb").read_text().count("CRYST1") == 1


def test_the_whole_system_and_its_final_state_are_written(water_run):
    import openmm
    import openmm.app as app

    summary = json.loads((water_run / "summary.json").read_text())
    whole = app.PDBFile(str(water_run / "system.pdb"))
    assert whole.topology.getNumAtoms() == summary["n_atoms"] > 200 and summary["saved_atoms"] == 22
    assert whole.topology.getPeriodicBoxVectors() is not None
    system = openmm.XmlSerializer.deserialize((water_run / "system.xml").read_text())
    state = openmm.XmlSerializer.deserialize((water_run / "replica-001.state.xml").read_text())
    assert system.getNumParticles() == summary["n_atoms"]
    assert state.getPositions(asNumpy=True).shape == state.getVelocities(asNumpy=True).shape == (summary["n_atoms"], 3)
    # The state is that of the end of the run: its box is the last frame's (to the trajectory's precision).
    last = read_netcdf(water_run / "replica-001.nc").box_vectors[-1]
    np.testing.assert_allclose(state.getPeriodicBoxVectors(asNumpy=True)._value, last, atol=2e-2)
    assert summary["system_settings"]["hydrogen_mass_amu"] == 1.5
    assert summary["system_settings"]["water_box"]["cutoff_nm"] == 0.7
    assert summary["system_settings"]["dispersion_correction"] is True  # OpenMM's default with PME, recorded


def test_train_reads_the_saved_solute_trajectories(water_run, tmp_path):
    paths = [str(water_run / f"replica-00{r}.nc") for r in range(2)]
    small = ["--steps", "3", "--batch-size", "8", "--couplings", "1", "--hidden", "8", "--no-progress"]
    assert main(["train", *paths, *small, "--output", str(tmp_path / "model")]) == 0
    assert (tmp_path / "model" / "model.pt").is_file()


def _solvated_pdb(tmp_path, model):
    """Alanine dipeptide in a box of ``model`` water (3 or 4 sites) with its CRYST1, as a PDB file."""
    import openmm.app as app
    import openmm.unit as unit

    from neuralct.md.systems import systems_dir

    pdb = app.PDBFile(str(systems_dir() / "alanine_dipeptide.pdb"))
    forcefield = app.ForceField("amber99sbildn.xml", f"{model}.xml")
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addSolvent(forcefield, model=model, padding=1.2 * unit.nanometer)
    path = tmp_path / f"ala-{model}.pdb"
    with open(path, "w") as handle:
        app.PDBFile.writeFile(modeller.topology, modeller.positions, handle)
    return path


@pytest.mark.parametrize(
    "pdb_water, solvent, message",
    [
        ("tip3p", "tip4pew", "is not water model tip4pew (4 sites); give the --solvent of the PDB's water"),
        ("tip4pew", "tip3p", "is not water model tip3p (3 sites); give the --solvent of the PDB's water"),
    ],
)
def test_a_pdb_whose_water_is_not_the_model_is_one_line(tmp_path, capsys, pdb_water, solvent, message):
    path = _solvated_pdb(tmp_path, pdb_water)
    out = tmp_path / "out"
    argv = ["simulate", str(path), "--solvent", solvent, "--length-ns", "0.0002", "--report-ps", "0.1"]
    assert main([*argv, "--no-progress", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("neuralct simulate: error: PDB file") and message in err and "\n" not in err, err
    assert not out.exists()


def test_a_solvated_pdb_of_the_model_keeps_its_water_and_box(tmp_path):
    import openmm.app as app

    from neuralct.md.systems import build_system

    path = _solvated_pdb(tmp_path, "tip3p")
    built = build_system(str(path), solvent="tip3p")
    pdb = app.PDBFile(str(path))
    assert built.n_atoms == pdb.topology.getNumAtoms() and built.periodic
    assert built.settings["box_nm"] == pytest.approx([2.4, 2.4, 2.4], abs=1e-3)


def test_a_box_narrower_than_twice_the_cutoff_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["simulate", "alanine-dipeptide", "--solvent", "tip3p", "--padding-nm", "0.6"]
    assert main([*argv, "--no-progress", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        "the periodic box is 1.56 nm wide, narrower than twice the cutoff (1 nm) and 5% for the barostat to shrink "
        "it; give a larger --padding-nm or a "
        "smaller --cutoff-nm"
        in err
        and "\n" not in err
    ), err
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--padding-nm", "1.2"], "applies to explicit water only, not to --solvent vacuum"),
        (["--solvent", "opc", "--forcefield", "charmm36.xml"], "force field charmm36.xml ships no opc water"),
        (["--solvent", "tip3p", "--save", "resname XYZ"], "--save 'resname XYZ' selects no atom"),
        (["--replica-index", "2", "--replicas", "2"], "--replica-index 2 is not one of the --replicas (2: 0 to 1)"),
    ],
)
def test_water_options_that_cannot_apply_are_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["simulate", "alanine-dipeptide", *args, "--no-progress", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not out.exists()
