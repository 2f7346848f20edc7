"""The scripts in examples/ run end to end (small sizes) and print what their docstrings promise."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    """Run ``examples/name`` with ``args`` in ``cwd``; its standard output (a failure shows stderr)."""
    # One thread each: the examples' small networks gain nothing from more, and the machine may be shared.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_train_harmonic_chain_prints_frequencies_and_reloads_the_model(tmp_path):
    output = run_example(
        "train_harmonic_chain.py",
        *("--atoms", "4", "--samples", "2000", "--steps", "30", "--output", "chain.pt"),
        cwd=tmp_path,
    )
    largest = float(output.split("largest relative error:")[1].split("%")[0])
    assert largest < 10
    assert "reloaded frequencies identical: True" in output
    assert (tmp_path / "chain.pt").exists()


def test_project_trajectory_writes_a_colvar_file_of_every_frame(alanine_model, tmp_path):
    model_path, trajectories = alanine_model
    output = run_example(
        "project_trajectory.py", str(model_path), trajectories[-1], "--colvar", "cvs.colvar", cwd=tmp_path
    )
    lines = (tmp_path / "cvs.colvar").read_text().splitlines()
    assert lines[0] == "#! FIELDS time cv1 cv2"
    rows = np.loadtxt(lines[1:], ndmin=2)
    assert rows.shape[1] == 3 and np.all(np.isfinite(rows))
    assert f"{len(rows)} frames of 22 atoms" in output
    assert "cv1" in output and "cv2" in output


def test_metadynamics_on_the_exported_force_runs_in_plain_openmm(alanine_model, tmp_path):
    model_path, _ = alanine_model
    output = run_example(
        "metadynamics_openmm.py", str(model_path), "--length-ps", "2", "--report-ps", "1", cwd=tmp_path
    )
    assert "MD steps per second" in output
    assert "free-energy estimate spans" in output
