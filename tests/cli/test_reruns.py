"""Reruns never mix runs, one writer per output folder, and every bad value is one line (every command)."""

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import neuralct
from neuralct.cli import build_parser, main
from neuralct.cli.options import NUMERIC_TYPES, positive_float, positive_fraction, positive_int
from neuralct.cli.runs import LOCK_FILE
from neuralct.data.netcdf import read_netcdf
from neuralct.md.simulate import SimulationSettings, run_simulation
from neuralct.md.systems import build_system

from tests.cli.test_runs import HOLD_LOCK

REPO = Path(__file__).resolve().parents[2]
MD = ["--report-ps", "0.5", "--equilibration-ps", "0.2", "--platform", "Reference", "--no-progress"]
SMALL_MODEL = ["--steps", "4", "--batch-size", "16", "--couplings", "1", "--hidden", "8", "--no-progress"]


def snapshot(folder):
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file()
    }


def one_line_error(capsys, command):
    err = capsys.readouterr().err
    assert err.startswith(f"neuralct {command}: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# -- every numeric option of every command, on the command line and in a config file ----------

#: Positional arguments that let each command's parser reach its options.
POSITIONALS = {
    "simulate": ["double-well"],
    "analyze": ["model.pt", "traj.nc"],
    "export": ["model.pt"],
    "bias": ["model.pt"],
    "sample": ["model.pt"],
    "explore": ["alanine-dipeptide"],
}


def _subcommands():
    parser = build_parser()
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return subparsers.choices


def _numeric_options():
    return [
        (command, action)
        for command, sub in _subcommands().items()
        for action in sub._actions
        if action.type in NUMERIC_TYPES
    ]


def test_every_numeric_option_uses_a_checked_type():
    unchecked = [
        f"{command} {action.option_strings[0]}"
        for command, sub in _subcommands().items()
        for action in sub._actions
        if action.type in (int, float)
    ]
    assert not unchecked
    assert len(_numeric_options()) >= 30


def _bad_values(kind):
    values = ["-1", "nan", "inf", "-inf", "1e999", "abc"]
    return values + (["0"] if kind in (positive_int, positive_float, positive_fraction) else [])


@pytest.mark.parametrize(
    "command, action", _numeric_options(), ids=lambda x: x if isinstance(x, str) else x.option_strings[0]
)
def test_bad_numbers_are_refused_before_any_work(tmp_path, capsys, command, action):
    out = tmp_path / "out"
    option = action.option_strings[0]
    for value in _bad_values(action.type):
        status = main([command, *POSITIONALS.get(command, []), f"{option}={value}", "--output", str(out)])
        err = capsys.readouterr().err
        assert status == 2, (option, value)
        assert err.count("\n") == 1 and f"argument {option}" in err and "must be" in err and "Traceback" not in err, err
        assert not out.exists()


@pytest.mark.parametrize(
    "command, action", _numeric_options(), ids=lambda x: x if isinstance(x, str) else x.option_strings[0]
)
def test_bad_config_values_are_refused_before_any_work(tmp_path, capsys, command, action):
    out = tmp_path / "out"
    config = tmp_path / "config.yaml"
    # [1, -2]: a list is refused where one number is wanted, and -2 where several are.
    for value in ("abc", [1, -2], True, -1, float("nan"), {"a": 1}):
        config.write_text(yaml.safe_dump({action.dest: value}))
        status = main([command, *POSITIONALS.get(command, []), "--config", str(config), "--output", str(out)])
        err = one_line_error(capsys, command)
        assert status == 2 and f"config file {config}: {action.dest}: must be" in err, err
        assert not out.exists()


# -- simulate --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alanine(tmp_path_factory):
    """Three short alanine dipeptide trajectories (60 frames each), a model trained on two, and a short simulation."""
    folder = tmp_path_factory.mktemp("reruns")
    assert (
        main(
            [
                "simulate",
                "alanine-dipeptide",
                "--length-ns",
                "0.03",
                "--replicas",
                "3",
                *MD,
                "--output",
                str(folder / "md"),
            ]
        )
        == 0
    )
    paths = sorted(str(p) for p in (folder / "md").glob("replica-*.nc"))
    assert main(["train", *paths[:2], *SMALL_MODEL, "--output", str(folder / "model")]) == 0
    return folder, paths


@pytest.mark.parametrize(
    "change, message",
    [
        (["--solvent", "obc2"], "other openmm_system, solvent;"),
        (["--constraints", "none"], "other constraints, openmm_system;"),
        (["--seed", "1"], "other seed;"),
        (["--temperature", "310"], "other temperature;"),
        (["--replicas", "2"], "other replicas;"),
        (["--save", "not element H"], "other saved_atoms;"),
    ],
)
def test_simulate_with_other_settings_is_refused_and_changes_nothing(alanine, capsys, change, message):
    folder, _ = alanine
    before = snapshot(folder / "md")
    assert (
        main(
            [
                "simulate",
                "alanine-dipeptide",
                "--length-ns",
                "0.03",
                "--replicas",
                "3",
                *MD,
                *change,
                "--output",
                str(folder / "md"),
            ]
        )
        == 2
    )
    err = one_line_error(capsys, "simulate")
    assert message in err and "--overwrite" in err
    assert snapshot(folder / "md") == before


def test_a_selection_of_the_same_atoms_is_the_same_run(alanine):
    """In vacuum the default saves every atom: `--save all` reruns the finished run; its frames stay as they were."""
    folder, _ = alanine
    frames = {name: data for name, data in snapshot(folder / "md").items() if name.endswith(".nc")}
    argv = ["simulate", "alanine-dipeptide", "--length-ns", "0.03", "--replicas", "3", *MD, "--save", "all"]
    assert main([*argv, "--output", str(folder / "md")]) == 0
    assert {name: data for name, data in snapshot(folder / "md").items() if name.endswith(".nc")} == frames


def test_another_system_into_a_folder_is_refused_and_overwrite_leaves_no_stale_topology(tmp_path, capsys):
    out = tmp_path / "md"
    assert main(["simulate", "harmonic-chain", "--length-ns", "0.001", *MD, "--output", str(out)]) == 0
    before = snapshot(out)
    assert main(["simulate", "alanine-dipeptide", "--length-ns", "0.001", *MD, "--output", str(out)]) == 2
    assert "other openmm_system, saved_atoms, system;" in one_line_error(capsys, "simulate")
    assert snapshot(out) == before
    assert (
        main(["simulate", "alanine-dipeptide", "--length-ns", "0.001", *MD, "--overwrite", "--output", str(out)]) == 0
    )
    topology = (out / "topology.pdb").read_text()
    assert sum(line.startswith(("ATOM", "HETATM")) for line in topology.splitlines()) == 22
    assert read_netcdf(out / "replica-000.nc").positions.shape[1] == 22


def test_a_fresh_simulation_replaces_a_stale_topology(tmp_path):
    """The library itself: a topology.pdb without checkpoints (a failed run of another system) is rewritten."""
    (tmp_path / "topology.pdb").write_text("stale\n")
    run_simulation(
        build_system("double-well"),
        tmp_path,
        SimulationSettings(length_ns=0.0005, report_ps=0.1, equilibration_ps=0.0, platform="Reference"),
        progress=False,
    )
    assert (tmp_path / "topology.pdb").read_text() != "stale\n"


def test_a_blown_up_simulation_says_what_to_change(tmp_path, capsys):
    status = main(
        [
            "simulate",
            "alanine-dipeptide",
            "--length-ns",
            "0.002",
            "--report-ps",
            "0.2",
            "--timestep-fs",
            "20",
            "--equilibration-ps",
            "0.4",
            "--platform",
            "Reference",
            "--no-progress",
            "--output",
            str(tmp_path / "md"),
        ]
    )
    warning, err = capsys.readouterr().err.splitlines()  # the step was warned of, then the one-line error
    assert warning.startswith("warning: a 20 fs step with solute hydrogens of 1.008 amu may blow up")
    assert err.startswith("neuralct simulate: error:") and "Traceback" not in err
    assert status == 2 and "blew up" in err and "smaller --timestep-fs (now 20 fs)" in err and "--temperature" in err


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path, capsys):
    out = tmp_path / "md"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out / LOCK_FILE)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["simulate", "double-well", "--length-ns", "0.001", *MD, "--seed", "2", "--output", str(out)]) == 2
        assert "in use by another neuralct run" in one_line_error(capsys, "simulate")
        assert {p.name for p in out.iterdir()} == {LOCK_FILE}
    finally:
        holder.kill()
        holder.wait()
    assert main(["simulate", "double-well", "--length-ns", "0.001", *MD, "--seed", "2", "--output", str(out)]) == 0


@pytest.mark.slow
def test_two_concurrent_simulations_into_one_folder_one_is_refused(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "neuralct",
        "simulate",
        "alanine-dipeptide",
        "--length-ns",
        "0.05",
        *MD,
        "--output",
        str(tmp_path / "md"),
    ]
    first = subprocess.Popen(
        [*command, "--seed", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 60
    while not (tmp_path / "md" / "run.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run([*command, "--seed", "2"], env=env, capture_output=True, text=True)
    assert first.wait() == 0
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert "in use by another neuralct run" in second.stderr or "other seed" in second.stderr
    assert json.loads((tmp_path / "md" / "run.json").read_text())["settings"]["seed"] == 1


def test_a_rerun_removes_what_a_killed_atomic_write_left(tmp_path):
    out = tmp_path / "md"
    assert main(["simulate", "double-well", "--length-ns", "0.001", *MD, "--output", str(out)]) == 0
    stale = out / ".replica-000.nc.x1y2z3_w.tmp"
    stale.write_bytes(b"half a trajectory")
    before = (out / "replica-000.nc").read_bytes()
    assert main(["simulate", "double-well", "--length-ns", "0.001", *MD, "--output", str(out)]) == 0
    assert not stale.exists() and (out / "replica-000.nc").read_bytes() == before


@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_output_files_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        assert main(["simulate", "double-well", "--length-ns", "0.001", *MD, "--output", str(tmp_path / "md")]) == 0
    finally:
        os.umask(previous)
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "md").iterdir()}
    assert {
        "replica-000.nc",
        "replica-000.chk.npz",
        "topology.pdb",
        "summary.json",
        "config.yaml",
        "run.json",
        LOCK_FILE,
    } <= set(modes)
    assert set(modes.values()) == {0o666 & ~umask}, modes


# -- train and analyze -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ("other trajectories", "input files"),
        (["--seed", "1"], "other seed;"),
        (["--dtype", "float64"], "other dtype;"),
        (["--stride", "2"], "other stride;"),
        (["--selection", "all"], "other selection;"),
        (["--hidden", "16"], "other hidden;"),
        (["--couplings", "2"], "other couplings;"),
    ],
)
def test_train_with_other_data_or_settings_is_refused_and_changes_nothing(alanine, capsys, change, message):
    folder, paths = alanine
    before = snapshot(folder / "model")
    inputs = [paths[0], paths[2]] if change == "other trajectories" else paths[:2]
    extra = [] if change == "other trajectories" else change
    assert main(["train", *inputs, *SMALL_MODEL, *extra, "--output", str(folder / "model")]) == 2
    err = one_line_error(capsys, "train")
    assert message in err and "--overwrite" in err
    assert snapshot(folder / "model") == before


def test_train_refuses_a_trajectory_changed_in_place(alanine, tmp_path, capsys):
    folder, paths = alanine
    copies = [tmp_path / Path(p).name for p in paths[:2]]
    for source, copy in zip(paths, copies):
        copy.write_bytes(Path(source).read_bytes())
    (tmp_path / "topology.pdb").write_bytes((Path(paths[0]).parent / "topology.pdb").read_bytes())
    out = tmp_path / "model"
    assert main(["train", *map(str, copies), *SMALL_MODEL, "--output", str(out)]) == 0
    before = snapshot(out)
    copies[1].write_bytes(Path(paths[2]).read_bytes())
    assert main(["train", *map(str, copies), *SMALL_MODEL, "--output", str(out)]) == 2
    assert "content of input file(s) replica-001.nc" in one_line_error(capsys, "train")
    assert snapshot(out) == before
    assert main(["train", *map(str, copies), *SMALL_MODEL, "--overwrite", "--output", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["resumed_from_step"] == 0


def test_trajectories_too_short_to_train_on_are_refused_before_any_work(tmp_path, capsys):
    md = tmp_path / "md"
    assert (
        main(["simulate", "alanine-dipeptide", "--length-ns", "0.002", "--replicas", "2", *MD, "--output", str(md)])
        == 0
    )
    paths = sorted(str(p) for p in md.glob("replica-*.nc"))
    assert main(["train", *paths, *SMALL_MODEL, "--output", str(tmp_path / "model")]) == 2
    assert "only 4 training frames for 24 coordinates" in one_line_error(capsys, "train")
    assert not (tmp_path / "model").exists()


def test_analyze_reruns_resume_or_are_refused_and_a_lag_too_long_leaves_nothing(alanine, tmp_path, capsys):
    folder, paths = alanine
    model = str(folder / "model" / "model.pt")
    out = tmp_path / "analysis"
    assert main(["analyze", model, *paths, "--lag-ps", "100", "--output", str(out)]) == 2
    assert "not shorter than the shortest scored segment" in one_line_error(capsys, "analyze")
    assert not out.exists()
    assert main(["analyze", model, *paths, "--lag-ps", "1", "--modes", "3", "--output", str(out)]) == 0
    before = snapshot(out)
    assert main(["analyze", model, *paths, "--lag-ps", "2", "--modes", "3", "--output", str(out)]) == 2
    assert "other lag_ps;" in one_line_error(capsys, "analyze")
    assert snapshot(out) == before


def test_quickstart_refuses_a_lag_longer_than_the_trajectories(tmp_path, capsys):
    assert main(["quickstart", "--length-ns", "0.001", "--lag-ps", "2", "--output", str(tmp_path / "q")]) == 2
    assert "--lag-ps 2 is not shorter than a quarter of the trajectories" in one_line_error(capsys, "quickstart")
    assert not (tmp_path / "q").exists()


# -- resume after SIGKILL --------------------------------------------------------------------

TOY = [
    "train",
    "--toy",
    "harmonic-chain",
    "-p",
    "n=4",
    "--samples",
    "2000",
    "--steps",
    "200",
    "--batch-size",
    "32",
    "--hidden",
    "8",
    "--couplings",
    "2",
    "--checkpoint-every",
    "30",
    "--no-progress",
]

#: Figures of the run itself, not of its result.
RUN_FIGURES = ("training_seconds", "samples_per_second", "peak_memory_mb", "resumed_from_step")


def test_training_killed_and_resumed_has_the_summary_and_history_of_an_uninterrupted_run(tmp_path):
    """Checkpoints every 30 steps, validation every 100: the kill leaves an epoch straddling the checkpoint."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    killed = subprocess.Popen(
        [sys.executable, "-m", "neuralct", *TOY, "--output", str(tmp_path / "killed")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    step, deadline = 0, time.time() + 240
    while time.time() < deadline and step < 60:
        try:
            step = torch.load(checkpoint, weights_only=True)["step"] if checkpoint.exists() else 0
        except Exception:  # noqa: BLE001 - the file may be replaced while it is read
            step = 0
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    step = torch.load(checkpoint, weights_only=True)["step"]
    assert 0 < step < 200 and step % 100 != 0, "killed mid-way, in an epoch of validation"
    torch.set_default_dtype(torch.float32)  # as in the killed process (the test suite's default is float64)
    assert main([*TOY, "--output", str(tmp_path / "full")]) == 0
    assert main([*TOY, "--output", str(tmp_path / "killed")]) == 0
    a, b = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("full", "killed"))
    assert b["resumed_from_step"] == step and b["samples_per_second"] > 0
    assert {k: v for k, v in a.items() if k not in RUN_FIGURES} == {k: v for k, v in b.items() if k not in RUN_FIGURES}
    assert a["history"] == b["history"] and len(a["history"]["step"]) == 2
    model_a, model_b = neuralct.load(tmp_path / "full" / "model.pt"), neuralct.load(tmp_path / "killed" / "model.pt")
    assert all(torch.equal(x, y) for x, y in zip(model_a.state_dict().values(), model_b.state_dict().values()))


def test_a_run_killed_after_its_last_step_reports_its_real_rate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TOY, "--output", str(out)]) == 0
    first = json.loads((out / "summary.json").read_text())
    # As if killed between the last checkpoint and writing model.pt: the rerun trains no step, and says what it writes.
    (out / "model.pt").unlink()
    (out / "summary.json").unlink()
    capsys.readouterr()
    assert main([*TOY, "--output", str(out)]) == 0
    said = "model.pt, summary.json missing or changed since the run finished; writing them again from the final"
    assert said in capsys.readouterr().out
    second = json.loads((out / "summary.json").read_text())
    assert second["resumed_from_step"] == 200
    assert second["samples_per_second"] == pytest.approx(first["samples_per_second"], rel=0.5)
    assert second["history"] == first["history"]
    assert np.isfinite(second["training_seconds"]) and second["training_seconds"] > 0


# -- a finished run's outputs: restored where the command writes them again, refused otherwise ----


def test_a_finished_export_restores_a_deleted_or_edited_file(alanine, tmp_path, capsys):
    folder, _ = alanine
    out = tmp_path / "export"
    command = ["export", str(folder / "model" / "model.pt"), "--cvs", "1", "--output", str(out)]
    assert main(command) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "cv1.pt").unlink()
    (out / "plumed.dat").write_text((out / "plumed.dat").read_text().replace("STRIDE=", "STRIDE=1"))
    capsys.readouterr()
    assert main(command) == 0
    assert "cv1.pt, plumed.dat missing or changed since the run finished; writing them again from the model" in (
        capsys.readouterr().out
    )
    restored = json.loads((out / "manifest.json").read_text())
    assert restored["sha256"]["plumed.dat"] == manifest["sha256"]["plumed.dat"]
    for name, digest in restored["sha256"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    assert main(command) == 0
    assert "already holds this export" in capsys.readouterr().out


def test_a_finished_simulation_restores_its_topology_and_refuses_a_changed_trajectory(alanine, capsys):
    folder, _ = alanine
    md = folder / "md"
    command = ["simulate", "alanine-dipeptide", "--length-ns", "0.03", "--replicas", "3", *MD, "--output", str(md)]
    original = (md / "replica-001.nc").read_bytes()
    topology = (md / "topology.pdb").read_bytes()
    (md / "summary.json").unlink()
    (md / "topology.pdb").write_bytes(topology[: len(topology) // 2])  # a damaged topology is written again, too
    capsys.readouterr()
    assert main(command) == 0  # the summary is written again
    assert (md / "summary.json").exists() and (md / "topology.pdb").read_bytes() == topology
    said = "summary.json, topology.pdb missing or changed since the run finished; writing them again from the system"
    assert said in capsys.readouterr().out
    # An intact topology is left as it is: OpenMM dates a PDB, and the runs trained on it record its content.
    written = (md / "topology.pdb").stat().st_mtime_ns
    assert main(command) == 0 and (md / "topology.pdb").stat().st_mtime_ns == written
    try:
        (md / "replica-001.nc").write_bytes(original[:-64] + bytes(64))
        before = snapshot(md)
        assert main(command) == 2
        err = one_line_error(capsys, "simulate")
        assert (
            "replica-001.nc of the finished `neuralct simulate` run is missing or changed" in err
            and "--overwrite" in err
        )
        assert snapshot(md) == before
    finally:
        (md / "replica-001.nc").write_bytes(original)


def test_a_finished_training_restores_its_model_but_refuses_a_changed_checkpoint(alanine, tmp_path, capsys):
    folder, paths = alanine
    out = tmp_path / "model"
    command = ["train", *paths[:2], *SMALL_MODEL, "--output", str(out)]
    assert main(command) == 0
    weights = (out / "model.pt").read_bytes()
    (out / "model.pt").write_bytes(weights[:100])
    assert main(command) == 0
    assert (out / "model.pt").read_bytes() == weights
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    checkpoint["step"] = checkpoint["step"] - 1
    torch.save(checkpoint, out / "checkpoint.pt")
    assert main(command) == 2
    assert "checkpoint.pt of the finished `neuralct train` run is missing or changed" in one_line_error(capsys, "train")


def test_a_finished_analysis_writes_a_deleted_output_again(alanine, tmp_path):
    folder, paths = alanine
    out = tmp_path / "analysis"
    command = [
        "analyze",
        str(folder / "model" / "model.pt"),
        *paths,
        "--modes",
        "2",
        "--lag-ps",
        "1",
        "--output",
        str(out),
    ]
    assert main(command) == 0
    colvar = (out / "replica-002.colvar").read_bytes()
    (out / "replica-002.colvar").unlink()
    assert main(command) == 0
    assert (out / "replica-002.colvar").read_bytes() == colvar


def test_overwrite_of_an_export_keeps_a_users_notes(alanine, tmp_path, capsys):
    folder, _ = alanine
    out = tmp_path / "export"
    command = ["export", str(folder / "model" / "model.pt"), "--cvs", "1", "--output", str(out)]
    assert main(command) == 0
    (out / "notes.txt").write_text("which CV I biased")
    (out / "runs").mkdir()
    before = snapshot(out)
    assert main(["export", str(folder / "model" / "model.pt"), "--cvs", "2", "--overwrite", "--output", str(out)]) == 2
    err = one_line_error(capsys, "export")
    assert "neuralct did not write (notes.txt, runs/)" in err
    assert snapshot(out) == before


def test_a_finished_bias_run_writes_deleted_results_again_from_its_checkpoint(alanine_model, tmp_path, capsys):
    model, _ = alanine_model
    out = tmp_path / "bias"
    command = [
        "bias",
        str(model),
        "--cv",
        "phi,psi",
        "--length-ns",
        "0.004",
        "--report-ps",
        "0.4",
        "--pace-ps",
        "0.4",
        "--no-progress",
        "--output",
        str(out),
    ]
    assert main(command) == 0
    colvar, fes = (out / "COLVAR").read_bytes(), (out / "fes.npy").read_bytes()
    (out / "COLVAR").unlink()
    (out / "fes.npy").write_bytes(fes[:-8])
    capsys.readouterr()
    assert main(command) == 0
    assert "COLVAR, fes.npy missing or changed since the run finished" in capsys.readouterr().out
    assert (out / "COLVAR").read_bytes() == colvar and (out / "fes.npy").read_bytes() == fes
    (out / "checkpoint.npz").write_bytes((out / "checkpoint.npz").read_bytes()[:-16])
    before = snapshot(out)
    assert main(command) == 2
    assert "checkpoint.npz of the finished `neuralct bias` run is missing or changed" in one_line_error(capsys, "bias")
    assert snapshot(out) == before


def test_an_interrupted_trainings_damaged_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    command = [*TOY[:-3], "--steps", "60", "--checkpoint-every", "30", "--no-progress", "--output", str(out)]
    assert main(command) == 0
    # As if killed before it finished: no outputs recorded, the checkpoint is resumed from.
    identity = json.loads((out / "run.json").read_text())
    identity.pop("outputs")
    (out / "run.json").write_text(json.dumps(identity))
    with zipfile.ZipFile(out / "checkpoint.pt") as archive:
        largest = max(archive.infolist(), key=lambda info: info.file_size)  # a tensor's bytes
    data = bytearray((out / "checkpoint.pt").read_bytes())
    header = largest.header_offset  # the local header: 30 bytes, then the name and extra field
    name_length, extra_length = (
        int.from_bytes(data[header + 26 : header + 28], "little"),
        int.from_bytes(data[header + 28 : header + 30], "little"),
    )
    offset = header + 30 + name_length + extra_length
    data[offset : offset + 64] = bytes(b ^ 0xFF for b in data[offset : offset + 64])
    (out / "checkpoint.pt").write_bytes(bytes(data))
    assert main(command) == 2
    err = one_line_error(capsys, "train")
    assert "checkpoint.pt is damaged: the CRC-32 checksum of its entry" in err and "--overwrite" in err


def test_a_bias_interrupted_in_its_equilibration_says_a_rerun_starts_it_again(alanine, tmp_path, capsys, monkeypatch):
    """Ctrl-C before the first checkpoint: exit 130, nothing left, and the line does not promise a resume."""
    import contextlib
    import threading

    import neuralct.workflows.bias

    @contextlib.contextmanager
    def pressed():
        event = threading.Event()
        event.set()
        yield event

    monkeypatch.setattr(neuralct.workflows.bias, "sigint_held", pressed)
    folder, _ = alanine
    out = tmp_path / "bias"
    command = ["bias", str(folder / "model" / "model.pt"), "--length-ns", "0.002", "--platform", "Reference"]
    assert main([*command, "--no-progress", "--output", str(out)]) == 130
    said = capsys.readouterr().err
    assert said == (
        "neuralct bias: interrupted during the equilibration, before its first checkpoint; rerun the same command to "
        "start again\n"
    )
    assert not out.exists()
