"""``neuralct simulate`` on the command line: outputs, and one-line errors that leave earlier outputs untouched."""

import json

import pytest

from neuralct.cli import main


def snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture
def finished_run(tmp_path):
    folder = tmp_path / "run"
    assert main(["simulate", "double-well", "--length-ns", "0.002", "--report-ps", "0.1", "--platform", "Reference", "--output", str(folder), "--no-progress"]) == 0
    return folder


def test_outputs(finished_run):
    names = set(p.name for p in finished_run.iterdir())
    assert {"replica-000.nc", "replica-000.chk.npz", "topology.pdb", "summary.json", "config.yaml"} <= names
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["frames"] == 20 and summary["platform"] == "Reference"


def test_rerun_of_a_finished_run_changes_no_frames(finished_run):
    before = (finished_run / "replica-000.nc").read_bytes()
    assert main(["simulate", "double-well", "--length-ns", "0.002", "--report-ps", "0.1", "--platform", "Reference", "--output", str(finished_run), "--no-progress"]) == 0
    assert (finished_run / "replica-000.nc").read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["no-such-system"], "unknown system"),
        (["missing.pdb"], "does not exist"),
        (["alanine-dipeptide", "--forcefield", "no-such-ff.xml"], "cannot load force field"),
        (["double-well", "--report-ps", "0.003"], "whole number"),
        (["double-well", "--platform", "NoSuchPlatform"], "not available"),
        (["double-well", "--temperature", "310"], "other openmm_system, temperature;"),
    ],
)
def test_bad_input_is_a_one_line_error_and_leaves_outputs_untouched(finished_run, capsys, args, message):
    before = snapshot(finished_run)
    status = main(["simulate", args[0], "--length-ns", "0.002", "--report-ps", "0.1", *args[1:], "--output", str(finished_run), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith("neuralct simulate: error:") and message in err and "\n" not in err
    assert snapshot(finished_run) == before


def test_output_that_cannot_be_written(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    status = main(["simulate", "double-well", "--length-ns", "0.002", "--output", str(blocker / "sub"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "cannot create output folder" in err and "\n" not in err
    assert blocker.read_text() == "keep me"
