"""``neuralct bias`` in a periodic box of explicit water: simulate -> train -> analyze -> export -> bias -> train again.

The CV that the bias force computes inside OpenMM (molecule made whole across the box, the
model's solute found in the whole system) must be the CV that the model gives on the recorded
frames; the frames hold the solute with its box, so that the loop can learn from them again.
"""

import json

import mdtraj as md
import numpy as np
import pytest

from neuralct.cli import main
from neuralct.data.netcdf import read_netcdf
from neuralct.md.systems import WaterBox
from neuralct.model.molecular import project_positions
from neuralct.model.transformation import load

from tests.md.test_inputs import solvated_dipeptide, write_inputs

#: A small box (about 300 atoms) and 4 fs steps on hydrogens of 1.5 amu: the system of every run here.
SYSTEM = [
    "alanine-dipeptide",
    "--solvent",
    "tip3p",
    "--padding-nm",
    "0.6",
    "--cutoff-nm",
    "0.7",
    "--hydrogen-mass-amu",
    "1.5",
]

#: 4 ps of metadynamics, the bias every other 2 fs step, a Gaussian and a frame every 0.1 ps. The tiny models of a
#: few ps of 0.1 ps frames may have an oscillating slowest CV: these tests bias it all the same.
SHORT_BIAS = [
    "--allow-oscillating-cvs",
    "--length-ns",
    "0.004",
    "--timestep-fs",
    "2",
    "--bias-every",
    "2",
    "--pace-ps",
    "0.1",
    "--report-ps",
    "0.1",
    "--no-progress",
]

SMALL_MODEL = ["--steps", "20", "--batch-size", "16", "--couplings", "1", "--hidden", "8", "--no-progress"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """An unbiased TIP3P run, a model of its solute, and a learned-CV bias run of the same system."""
    root = tmp_path_factory.mktemp("bias_water")
    simulate = [
        "simulate",
        *SYSTEM,
        "--timestep-fs",
        "4",
        "--length-ns",
        "0.008",
        "--report-ps",
        "0.1",
        "--equilibration-ps",
        "0.4",
        "--platform",
        "CPU",
        "--no-progress",
        "--output",
        str(root / "md"),
    ]
    assert main(simulate) == 0
    assert main(["train", str(root / "md" / "replica-000.nc"), *SMALL_MODEL, "--output", str(root / "model")]) == 0
    model = str(root / "model" / "model.pt")
    assert main(["bias", model, *SYSTEM, *SHORT_BIAS, "--output", str(root / "bias")]) == 0
    return root


def test_the_bias_runs_in_the_box_with_the_python_force_on_the_cpu(chain):
    summary = json.loads((chain / "bias" / "summary.json").read_text())
    assert summary["platform"] == "CPU" and summary["platform_choice"].startswith("auto")
    assert summary["cv_force"] == "PythonForce" and summary["cv_force_choice"].startswith("auto")
    assert summary["ns_simulated"] == pytest.approx(0.004)
    assert 1.2 < min(summary["box_nm_last"]) < 1.8
    assert np.diag(summary["box_vectors_nm_last"]).tolist() == summary["box_nm_last"]


def test_the_frames_hold_the_solute_with_its_box(chain):
    frames = read_netcdf(chain / "bias" / "trajectory.nc")
    assert frames.positions.shape == (40, 22, 3) and frames.velocities is None
    assert frames.box_vectors.shape == (40, 3, 3)
    # The barostat moves the box from frame to frame.
    assert np.ptp(frames.box_vectors[:, 0, 0]) > 0
    assert len(frames.attributes["neuralct_masses_amu"]) == 22
    assert not (chain / "bias" / "system.xml").exists()
    assert md.load(str(chain / "bias" / "trajectory.nc"), top=str(chain / "bias" / "topology.pdb")).n_atoms == 22


def test_the_bias_force_computes_the_models_cv_of_the_recorded_frames(chain):
    """The CV inside OpenMM (PythonForce, whole system, PME box) equals the model's CV of the saved solute frames."""
    model = load(chain / "model" / "model.pt")
    frames = read_netcdf(chain / "bias" / "trajectory.nc")
    colvar = np.loadtxt(chain / "bias" / "COLVAR")
    expected = project_positions(model, frames.positions.astype(np.float64), k=1)[:, 0]
    # The frames are stored in float32 (AMBER NetCDF): 1e-7 relative in positions.
    np.testing.assert_allclose(colvar[:, 1], expected, atol=1e-5)


def test_analyze_gives_the_cvs_the_bias_force_computed(chain, tmp_path):
    """`analyze` of the biased solute frames (loader: whole molecules from the box) writes the bias run's CVs."""
    argv = ["analyze", str(chain / "model" / "model.pt"), str(chain / "bias" / "trajectory.nc")]
    assert main([*argv, "--lag-ps", "0.1", "--blocks", "2", "--output", str(tmp_path / "a")]) == 0
    analyzed = np.loadtxt(tmp_path / "a" / "trajectory.colvar")
    np.testing.assert_allclose(analyzed[:, 1], np.loadtxt(chain / "bias" / "COLVAR")[:, 1], atol=1e-5)


def test_the_exported_cvs_know_the_box(chain, tmp_path):
    """The model learned in a box: its TorchScript CV refuses to run without box vectors, and gives the CV with them."""
    import torch

    assert main(["export", str(chain / "model" / "model.pt"), "--output", str(tmp_path / "e")]) == 0
    module = torch.jit.load(str(tmp_path / "e" / "cv1.pt"))
    frames = read_netcdf(chain / "bias" / "trajectory.nc")
    positions, box = torch.tensor(frames.positions[3], dtype=torch.float64), torch.tensor(frames.box_vectors[3])
    with pytest.raises(torch.jit.Error, match=r"setUsesPeriodicBoundaryConditions\(True\)"):
        module(positions)
    assert float(module(positions, box)) == pytest.approx(np.loadtxt(chain / "bias" / "COLVAR")[3, 1], abs=1e-5)
    assert "NOPBC" in (tmp_path / "e" / "plumed.dat").read_text()


def test_the_biased_frames_train_again(chain, tmp_path):
    """The loop's second step: `train` reads the biased solute frames and their boxes."""
    assert main(["train", str(chain / "bias" / "trajectory.nc"), *SMALL_MODEL, "--output", str(tmp_path / "m")]) == 0
    assert load(tmp_path / "m" / "model.pt").metadata["molecule"]["periodic"]


def test_a_finished_run_rewrites_its_frames_and_boxes_from_its_checkpoint(chain, capsys):
    folder = chain / "bias"
    before = read_netcdf(folder / "trajectory.nc")
    (folder / "trajectory.nc").unlink()
    model = str(chain / "model" / "model.pt")
    assert main(["bias", model, *SYSTEM, *SHORT_BIAS, "--output", str(folder)]) == 0
    assert "trajectory.nc missing or changed since the run finished; writing it again" in capsys.readouterr().out
    after = read_netcdf(folder / "trajectory.nc")
    np.testing.assert_array_equal(after.positions, before.positions)
    np.testing.assert_array_equal(after.box_vectors, before.box_vectors)


def test_the_bias_starts_from_the_end_of_the_unbiased_run(chain, tmp_path):
    """The run's own System XML, its PDB and its final State: the equilibrated box, without building it again."""
    md_folder = chain / "md"
    files = [str(md_folder / name) for name in ("system.xml", "system.pdb", "replica-000.state.xml")]
    out = tmp_path / "from_state"
    argv = [
        "bias",
        str(chain / "model" / "model.pt"),
        *files,
        *SHORT_BIAS,
        "--length-ns",
        "0.001",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["platform"] == "CPU" and len(np.loadtxt(out / "COLVAR")) == 10


@pytest.mark.parametrize("files", [("water.prmtop", "water.rst7"), ("water.top", "water.gro")])
def test_an_amber_or_gromacs_box_of_the_same_solute_is_biased_from_its_files(chain, tmp_path, files):
    """Input files written by ParmEd: the model of the solute finds its atoms in the box (hydrogen masses alike)."""
    write_inputs(tmp_path, *solvated_dipeptide(), "water")
    files = [str(tmp_path / name) for name in files]
    out = tmp_path / "amber"
    argv = ["bias", str(chain / "model" / "model.pt"), *files, "--hydrogen-mass-amu", "1.5", *SHORT_BIAS]
    assert main([*argv, "--length-ns", "0.001", "--output", str(out)]) == 0
    assert read_netcdf(out / "trajectory.nc").positions.shape == (10, 22, 3)


def test_a_model_of_another_system_or_other_masses_is_one_line(chain, tmp_path, capsys):
    model = str(chain / "model" / "model.pt")
    cases = [
        (["trialanine", "--solvent", "tip3p", "--padding-nm", "0.6", "--cutoff-nm", "0.7"], "besides water and ions"),
        (SYSTEM[:-2], "masses of the model's atoms differ"),
    ]
    for index, (system, message) in enumerate(cases):
        out = tmp_path / str(index)
        assert main(["bias", model, *system, *SHORT_BIAS, "--output", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not out.exists()


def test_a_torch_force_that_cannot_serve_as_a_cv_here_is_one_line(chain, tmp_path, capsys):
    """Without openmm-torch (or where its TorchForce crashes inside a CustomCVForce) `--cv-force torch` is refused."""
    from neuralct.export.force import torch_force_in_cv_force_problem

    problem = torch_force_in_cv_force_problem()
    if problem is None:
        pytest.skip("openmm-torch's TorchForce works inside a CustomCVForce here")
    out = tmp_path / "torch"
    argv = ["bias", str(chain / "model" / "model.pt"), *SYSTEM, *SHORT_BIAS, "--cv-force", "torch"]
    assert main([*argv, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--cv-force torch: " in err and "use --cv-force python" in err, err
    assert not out.exists()


def test_the_bias_every_step_in_a_box_and_every_fourth_without():
    """auto: in a periodic box PME costs more than the CV (no multiple time steps); in vacuum the CV costs more."""
    from neuralct.md.systems import build_system
    from neuralct.workflows.bias import default_bias_every

    assert default_bias_every(build_system("alanine-dipeptide")) == 4
    water = build_system("alanine-dipeptide", solvent="tip3p", water=WaterBox(padding_nm=0.6, cutoff_nm=0.7))
    assert default_bias_every(water) == 1


@pytest.mark.parametrize("files", [("water.prmtop", "water.rst7"), ("water.top", "water.gro")])
def test_a_box_prepared_with_amber_or_gromacs_goes_through_the_whole_chain(tmp_path, files):
    """simulate -> train -> analyze -> export -> bias, every step from the same AMBER or GROMACS input files."""
    write_inputs(tmp_path, *solvated_dipeptide(), "water")
    system = [str(tmp_path / name) for name in files]
    md_run, model = tmp_path / "md", tmp_path / "model"
    simulate = ["simulate", *system, "--timestep-fs", "2", "--length-ns", "0.004", "--report-ps", "0.1"]
    simulate += ["--equilibration-ps", "0.1", "--platform", "CPU", "--no-progress", "--output", str(md_run)]
    assert main(simulate) == 0
    trajectory = str(md_run / "replica-000.nc")
    assert main(["train", trajectory, *SMALL_MODEL, "--output", str(model)]) == 0
    assert main(["analyze", str(model / "model.pt"), trajectory, "--output", str(tmp_path / "a")]) == 0
    assert main(["export", str(model / "model.pt"), "--output", str(tmp_path / "e")]) == 0
    assert json.loads((tmp_path / "e" / "manifest.json").read_text())["system"]["periodic"]
    bias = [
        "bias",
        str(model / "model.pt"),
        *system,
        *SHORT_BIAS,
        "--length-ns",
        "0.001",
        "--output",
        str(tmp_path / "b"),
    ]
    assert main(bias) == 0
    assert read_netcdf(tmp_path / "b" / "trajectory.nc").box_vectors.shape == (10, 3, 3)
