"""The exported plumed.dat run by a real PLUMED (`plumed driver`) gives the CVs of `neuralct analyze` in any box.

Runs where a PLUMED built with LibTorch is found: `plumed` on PATH, or next to ``PLUMED_KERNEL``
(``../shared/tools/build-plumed`` builds one); skipped otherwise, as the openmm-torch test is
without openmmtorch.
"""

import os
import shutil
import subprocess
from pathlib import Path

import mdtraj
import numpy as np
import pytest
import torch

import neuralct
from neuralct.cli import main
from neuralct.model.molecular import project_positions

K = 2
FRAMES = 8


def _plumed() -> str | None:
    """The `plumed` executable: on PATH, or beside the kernel that PLUMED_KERNEL names (build tree or install)."""
    kernel = os.environ.get("PLUMED_KERNEL")
    candidates = [shutil.which("plumed")]
    if kernel:
        candidates += [str(Path(kernel).parent / "plumed"), str(Path(kernel).parent.parent / "bin" / "plumed")]
    return next((path for path in candidates if path and os.access(path, os.X_OK)), None)


def _environment(plumed: str) -> dict[str, str]:
    """The environment with the folders of PLUMED's libraries searched (a build tree keeps them beside `plumed`)."""
    folders = [str(Path(plumed).parent)]
    if os.environ.get("PLUMED_KERNEL"):
        folders.append(str(Path(os.environ["PLUMED_KERNEL"]).parent))
    return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join([*folders, os.environ.get("LD_LIBRARY_PATH", "")])}


@pytest.fixture(scope="module")
def plumed():
    path = _plumed()
    if path is None:
        pytest.skip("no PLUMED: put `plumed` on PATH or set PLUMED_KERNEL")
    check = subprocess.run(
        [path, "--no-mpi", "config", "has", "libtorch"], env=_environment(path), capture_output=True, text=True
    )
    if check.returncode != 0:
        pytest.skip(f"{path} is built without LibTorch (./configure --enable-libtorch --enable-modules=pytorch)")
    return path


#: Boxes (rows are box vectors, nm, OpenMM's reduced form): a 3 nm cube, a triclinic cell and one narrower than the
#: molecule.
BOXES = {
    "cube": np.diag([3.0, 3.0, 3.0]),
    "triclinic": np.array([[3.0, 0.0, 0.0], [0.8, 2.9, 0.0], [-0.6, 1.0, 2.8]]),
    "narrow triclinic": np.array([[0.72, 0.0, 0.0], [0.25, 0.68, 0.0], [-0.2, 0.3, 0.75]]),
}


def _copies(positions: np.ndarray, box: np.ndarray) -> dict[str, np.ndarray]:
    """Copies of frames (n, atoms, 3) that are the same molecules in a periodic ``box``.

    ``straddling``: whole, centred on the plane x = a_x / 2 where PLUMED's POSITION (without NOPBC) would move the
    atoms past it by a box vector; ``wrapped``: each atom moved into the unit cell on its own, the molecule centred on
    a corner, so it is torn across every face; ``translated``: whole, moved by whole box vectors.
    """
    centred = positions - positions.mean(1, keepdims=True)
    fractional = centred @ np.linalg.inv(box)
    return {
        "straddling": centred + box.sum(0) / 2,
        "wrapped": centred - np.floor(fractional) @ box,
        "translated": centred + np.array([2.0, -1.0, 3.0]) @ box,
    }


def _write_xyz(path: Path, frames: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Frames (positions (atoms, 3) nm, box (3, 3) nm) as the xyz `plumed driver` reads: the box on line 2."""
    lines = []
    for positions, box in frames:
        lines += [str(len(positions)), " ".join(f"{value:.10f}" for value in box.ravel())]
        lines += [f"X {x:.10f} {y:.10f} {z:.10f}" for x, y, z in positions]
    path.write_text("\n".join(lines) + "\n")


def test_plumed_driver_gives_the_cvs_of_analyze_on_whole_wrapped_and_translated_frames(plumed, alanine_model, tmp_path):
    model_path, paths = alanine_model
    folder = tmp_path / "cvs"
    argv = ["export", str(model_path), "--cvs", str(K), "--plumed-stride", "1", "--plumed-format", "%.10g"]
    assert main([*argv, "--output", str(folder)]) == 0
    positions = mdtraj.load(paths[0], top=str(Path(paths[0]).parent / "topology.pdb")).xyz[:FRAMES].astype(np.float64)
    model = neuralct.load(model_path)
    expected = project_positions(model, positions, K)
    cases = [(shape, kind, copy) for shape, box in BOXES.items() for kind, copy in _copies(positions, box).items()]
    _write_xyz(folder / "frames.xyz", [(frame, BOXES[shape]) for shape, _, copy in cases for frame in copy])

    run = subprocess.run(
        [plumed, "--no-mpi", "driver", "--plumed", "plumed.dat", "--ixyz", "frames.xyz"],
        cwd=folder,
        env=_environment(plumed),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    colvar = np.loadtxt(folder / "COLVAR", comments="#")
    assert colvar.shape == (len(cases) * FRAMES, 1 + K)

    cv1 = torch.jit.load(str(folder / "cv1.pt"))
    for index, (shape, kind, copy) in enumerate(cases):
        got = colvar[index * FRAMES : (index + 1) * FRAMES, 1:]
        # PYTORCH_MODEL runs in float32: positions of a few nm carry 1e-7 relative rounding.
        assert np.abs(got - expected).max() < 5e-6, (shape, kind, np.abs(got - expected).max())
        torchscript = cv1(torch.tensor(copy), torch.tensor(BOXES[shape])).numpy()
        assert np.abs(got[:, 0] - torchscript).max() < 5e-6, (shape, kind)


@pytest.mark.parametrize(
    "selection",
    [
        "resname ALA and name N CA CB C",  # torn across the box in 3 of the 8 frames
        # and a water 1.8-2.0 nm away, beyond half the box's narrowest width (1.02 nm)
        "(resname ALA and name N CA C) or index 412",
    ],
)
def test_plumed_driver_gives_the_cvs_of_analyze_on_a_gromacs_dodecahedron_with_the_solute_torn(
    plumed, gromacs_run, tmp_path, selection
):
    """GROMACS's own XTC of a rhombic dodecahedron (box read by PLUMED from the file), the solute wrapped atom by
    atom: the CVs of a model of the alanine's backbone and CB, and of one with a distant water beside them (placed
    at its nearest image, as PLUMED's WHOLEMOLECULES places it), as `analyze` gives them."""
    small = ["--steps", "20", "--couplings", "1", "--hidden", "16", "--no-progress", "--seed", "0"]
    small += ["--selection", selection]
    whole, split, run_input = (
        str(gromacs_run / name) for name in ("dodecahedron_whole.xtc", "dodecahedron_split.xtc", "dodecahedron.tpr")
    )
    assert main(["train", whole, split, "--top", run_input, *small, "--output", str(tmp_path / "model")]) == 0
    folder = tmp_path / "cvs"
    argv = ["export", str(tmp_path / "model" / "model.pt"), "--cvs", str(K), "--plumed-stride", "1"]
    assert main([*argv, "--plumed-format", "%.10g", "--output", str(folder)]) == 0
    assert (
        main(
            [
                "analyze",
                str(tmp_path / "model" / "model.pt"),
                split,
                "--top",
                run_input,
                "--no-progress",
                "--output",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    expected = np.loadtxt(tmp_path / "a" / "dodecahedron_split.colvar")[:, 1 : 1 + K]

    run = subprocess.run(
        [plumed, "--no-mpi", "driver", "--plumed", "plumed.dat", "--mf_xtc", split, "--natoms", "1627"],
        cwd=folder,
        env=_environment(plumed),
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    got = np.loadtxt(folder / "COLVAR", comments="#")[:, 1:]
    assert got.shape == expected.shape == (8, K)
    assert np.abs(got - expected).max() < 5e-6
