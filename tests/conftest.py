"""Shared test settings: float64 by default, fixed seeds, and a skip for CUDA-only tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def float64_and_seed():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(1234)
    yield
    torch.set_default_dtype(previous)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device available")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def alanine_model(tmp_path_factory):
    """A tiny model of alanine dipeptide (heavy atoms) trained in seconds on short MD: (model, trajectory paths)."""
    from neuralct.cli import main

    root = tmp_path_factory.mktemp("alanine-model")
    assert (
        main(
            [
                "simulate",
                "alanine-dipeptide",
                "--length-ns",
                "0.02",
                "--report-ps",
                "0.5",
                "--replicas",
                "2",
                "--platform",
                "Reference",
                "--no-progress",
                "--output",
                str(root / "md"),
            ]
        )
        == 0
    )
    paths = sorted(str(p) for p in (root / "md").glob("replica-*.nc"))
    assert (
        main(
            [
                "train",
                *paths,
                "--steps",
                "20",
                "--batch-size",
                "32",
                "--couplings",
                "2",
                "--hidden",
                "16",
                "--no-progress",
                "--output",
                str(root / "model"),
            ]
        )
        == 0
    )
    return root / "model" / "model.pt", paths


@pytest.fixture(scope="session")
def plain_openmm_alanine(tmp_path_factory):
    """Alanine dipeptide simulated by plain OpenMM, not neuralct: ala2.pdb, A.dcd and B.xtc (20 ps each, 0.1 ps frames).

    Positions only; the DCD holds no time stamps, the XTC float32 ones (amber99sb-ildn, vacuum,
    HBonds, LangevinMiddle at 300 K, 2 fs).
    """
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    from neuralct.md.systems import systems_dir

    folder = tmp_path_factory.mktemp("plain-openmm")
    pdb = app.PDBFile(str(systems_dir() / "alanine_dipeptide.pdb"))
    system = app.ForceField("amber99sbildn.xml").createSystem(
        pdb.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds
    )
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds)
    integrator.setRandomNumberSeed(7)
    simulation = app.Simulation(pdb.topology, system, integrator, openmm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(pdb.positions)
    simulation.minimizeEnergy()
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 7)
    with open(folder / "ala2.pdb", "w") as handle:
        app.PDBFile.writeFile(pdb.topology, simulation.context.getState(getPositions=True).getPositions(), handle)
    for name, reporter in (("A.dcd", app.DCDReporter), ("B.xtc", app.XTCReporter)):
        simulation.reporters = [reporter(str(folder / name), 50)]
        simulation.step(10_000)
    return folder


@pytest.fixture(scope="session")
def gromacs_run(tmp_path_factory):
    """A copy of tests/fixtures/gromacs (files GROMACS wrote; see its README): MDAnalysis writes an index beside
    each trajectory it reads, which must not land in the repository."""
    import shutil
    from pathlib import Path

    folder = tmp_path_factory.mktemp("gromacs") / "run"
    shutil.copytree(Path(__file__).parent / "fixtures" / "gromacs", folder)
    return folder
