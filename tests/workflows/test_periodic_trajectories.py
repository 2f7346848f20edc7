"""Periodic trajectories: whole, wrapped atom by atom, shifted by box vectors or in a triclinic box, the same CVs and
models; a torn molecule without a box is refused."""

from pathlib import Path

import mdtraj as md
import numpy as np
import pytest

import neuralct
from neuralct.analysis.colvar import read_colvar
from neuralct.cli import main
from neuralct.data import load_trajectories
from neuralct.errors import NeuralCTError
from neuralct.model.molecular import internal_coordinates, project_internal

CUBE = np.eye(3) * 2.5
TRICLINIC = np.asarray(md.utils.lengths_and_angles_to_box_vectors(2.6, 2.6, 2.6, 60.0, 60.0, 90.0), dtype=np.float64)


def atoms_wrapped(xyz: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Each atom of ``xyz`` (frames, n, 3) moved into ``box`` on its own, the box's origin inside the molecule."""
    fractional = (xyz - xyz.mean(axis=1, keepdims=True)) @ np.linalg.inv(box)
    return (fractional - np.floor(fractional)) @ box


def save(path: Path, xyz: np.ndarray, topology, box: np.ndarray | None) -> Path:
    """``xyz`` (frames, n, 3) as a trajectory file, with ``box`` (3, 3) on every frame when given."""
    traj = md.Trajectory(xyz.astype(np.float32), topology, time=0.5 * np.arange(1, len(xyz) + 1))
    if box is not None:
        traj.unitcell_vectors = np.broadcast_to(box, (len(xyz), 3, 3)).astype(np.float32)
    getattr(traj, "save_" + path.suffix[1:])(str(path))
    return path


@pytest.fixture(scope="module")
def copies(alanine_model, tmp_path_factory):
    """The conftest model, its topology, and copies of one of its trajectories, by name."""
    model_path, paths = alanine_model
    topology_path = Path(paths[0]).parent / "topology.pdb"
    traj = md.load(paths[0], top=str(topology_path))
    # Positions on a grid of 2^-16 nm: wrapping by a box of 2.5 nm is then exact in float32 (the CVs are float32).
    whole = np.round(traj.xyz.astype(np.float64) * 2**16) / 2**16 + 1.25
    shifts = np.random.default_rng(0).integers(-2, 3, size=(len(whole), 1, 3)) @ CUBE
    folder = tmp_path_factory.mktemp("periodic")
    files = {
        "whole": save(folder / "whole.dcd", whole, traj.topology, CUBE),
        "atoms-wrapped": save(folder / "wrapped.dcd", atoms_wrapped(whole, CUBE), traj.topology, CUBE),
        "translated": save(folder / "translated.dcd", whole + shifts, traj.topology, CUBE),
        "triclinic": save(folder / "triclinic.dcd", atoms_wrapped(whole, TRICLINIC), traj.topology, TRICLINIC),
        "triclinic-xtc": save(folder / "triclinic.xtc", atoms_wrapped(whole, TRICLINIC), traj.topology, TRICLINIC),
        "torn-without-box": save(folder / "torn.dcd", atoms_wrapped(whole, CUBE), traj.topology, None),
    }
    return model_path, topology_path, files


def projected(model, path: Path, topology: Path, backend: str = "auto") -> np.ndarray:
    """The two slowest CVs of the frames of ``path`` through the loader, as ``analyze`` computes them."""
    data = load_trajectories(path, topology=topology, selection="all", momenta="resample", backend=backend)
    return project_internal(model, internal_coordinates(model, data.positions), 2)


@pytest.mark.parametrize(
    "name, backend, tolerance",
    [
        ("atoms-wrapped", "mdtraj", 2e-6),
        ("atoms-wrapped", "mdanalysis", 1e-5),
        ("translated", "mdtraj", 2e-6),
        ("triclinic", "mdtraj", 1e-4),
        ("triclinic-xtc", "mdtraj", 1e-2),  # XTC keeps 1e-3 nm
    ],
)
def test_periodic_copies_give_the_cvs_of_the_whole_molecule(copies, name, backend, tolerance):
    model_path, topology, files = copies
    model = neuralct.load(model_path)
    expected = projected(model, files["whole"], topology)
    np.testing.assert_allclose(projected(model, files[name], topology, backend), expected, atol=tolerance)


def test_analyze_writes_the_same_colvar_for_a_wrapped_trajectory(copies, tmp_path):
    model_path, topology, files = copies
    cvs = {}
    for name in ("whole", "atoms-wrapped"):
        output = tmp_path / name
        assert main(["analyze", str(model_path), str(files[name]), "--top", str(topology), "-o", str(output)]) == 0
        (colvar,) = output.glob("*.colvar")
        cvs[name] = read_colvar(colvar)
    np.testing.assert_allclose(cvs["atoms-wrapped"][1], cvs["whole"][1], atol=1e-6)


def test_training_on_a_wrapped_trajectory_gives_the_model_of_the_whole_one(copies, tmp_path):
    model_path, topology, files = copies
    models = {}
    for name in ("whole", "atoms-wrapped"):
        output = tmp_path / name
        arguments = ["train", str(files[name]), "--top", str(topology), "--steps", "5", "--batch-size", "16"]
        assert main([*arguments, "--couplings", "1", "--hidden", "8", "--no-progress", "-o", str(output)]) == 0
        models[name] = neuralct.load(output / "model.pt")
    whole, wrapped = models["whole"], models["atoms-wrapped"]
    np.testing.assert_allclose(
        wrapped.frequencies.detach().numpy(), whole.frequencies.detach().numpy(), rtol=1e-4
    )  # float32 training
    frames = load_trajectories(files["whole"], topology=topology, selection="all", momenta="resample").positions
    np.testing.assert_allclose(
        project_internal(wrapped, internal_coordinates(wrapped, frames), 2),
        project_internal(whole, internal_coordinates(whole, frames), 2),
        atol=1e-4,
    )


def test_a_model_trained_in_a_box_exports_cvs_that_need_the_box(copies, tmp_path):
    """TorchForce passes no box unless told to: a periodic model's cv1.pt refuses to run without one."""
    import torch

    model_path, topology, files = copies
    arguments = ["train", str(files["atoms-wrapped"]), "--top", str(topology), "--steps", "2", "--batch-size", "16"]
    assert main([*arguments, "--couplings", "1", "--hidden", "8", "--no-progress", "-o", str(tmp_path / "m")]) == 0
    model = neuralct.load(tmp_path / "m" / "model.pt")
    assert model.metadata["molecule"]["periodic"] is True
    assert main(["export", str(tmp_path / "m" / "model.pt"), "--output", str(tmp_path / "e")]) == 0
    module = torch.jit.load(str(tmp_path / "e" / "cv1.pt"))
    frame = md.load(str(files["atoms-wrapped"]), top=str(topology))[0]
    positions = torch.tensor(frame.xyz[0], dtype=torch.float64)
    with pytest.raises(torch.jit.Error, match="box"):
        module(positions)
    box = torch.tensor(frame.unitcell_vectors[0], dtype=torch.float64)
    whole = md.load(str(files["whole"]), top=str(topology))[0].xyz.astype(np.float64)
    expected = project_internal(model, internal_coordinates(model, whole), 1)
    np.testing.assert_allclose(module(positions, box).detach().numpy(), expected[0, 0], atol=1e-5)


def test_a_torn_molecule_without_a_box_is_refused(copies):
    _, topology, files = copies
    with pytest.raises(
        NeuralCTError, match=r"torn.dcd: bonded atoms .* nm apart in frame \d+ and the file holds no periodic box"
    ):
        load_trajectories(files["torn-without-box"], topology=topology)


@pytest.mark.parametrize("command", ["analyze", "train"])
def test_the_command_line_refuses_it_in_one_line_and_writes_nothing(copies, tmp_path, capsys, command):
    model_path, topology, files = copies
    output = tmp_path / "out"
    model = [str(model_path)] if command == "analyze" else []
    status = main([command, *model, str(files["torn-without-box"]), "--top", str(topology), "-o", str(output)])
    assert status == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1
    assert "split across the box" in message and "gmx trjconv -pbc mol" in message
    assert not output.exists() or not any(output.iterdir())
