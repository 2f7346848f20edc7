"""``neuralct analyze`` checks its frames against the model's training data, and converts lags exactly."""

import json

import pytest

import neuralct
from neuralct.analysis.training_match import compare_with_training
from neuralct.cli import main
from neuralct.data.netcdf import read_netcdf
from neuralct.model.molecular import project_positions


@pytest.fixture(scope="module")
def inputs(alanine_model, tmp_path_factory):
    """The conftest model, a trajectory it never saw, and a 22-particle harmonic chain (as many atoms as alanine)."""
    model_path, seen = alanine_model
    root = tmp_path_factory.mktemp("analysis-inputs")
    assert (
        main(
            [
                "simulate",
                "alanine-dipeptide",
                "--length-ns",
                "0.02",
                "--report-ps",
                "0.5",
                "--seed",
                "11",
                "--platform",
                "Reference",
                "--no-progress",
                "--output",
                str(root / "unseen"),
            ]
        )
        == 0
    )
    system = root / "chain22.yaml"
    system.write_text("kind: harmonic-chain\nn: 22\nkappa_kT_per_nm2: 1.0\nmass_amu: 1.0\n")
    assert (
        main(
            [
                "simulate",
                str(system),
                "--length-ns",
                "0.01",
                "--report-ps",
                "0.1",
                "--platform",
                "Reference",
                "--no-progress",
                "--output",
                str(root / "chain"),
            ]
        )
        == 0
    )
    return model_path, seen, root / "unseen" / "replica-000.nc", root / "chain" / "replica-000.nc"


def test_frames_of_another_system_read_with_the_models_topology_are_flagged(inputs, tmp_path, capsys):
    model_path, seen, _, chain = inputs
    topology = str(seen[0]).replace("replica-000.nc", "topology.pdb")
    out = tmp_path / "wrong"
    assert main(["analyze", str(model_path), str(chain), "--top", topology, "--no-progress", "--output", str(out)]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "unlike the training data" in warning[0] and "--top" in warning[0]
    check = json.loads((out / "summary.json").read_text())["input_check"]
    assert check["frames"] == 100 and check["warning"] == warning[0][len("warning: ") :]
    assert (
        check["rmsd_nm"]["frames_above"] == 100 and check["rmsd_nm"]["median"] > 10 * check["rmsd_nm"]["training_max"]
    )
    assert check["cv_range"]["frames_beyond"] == 100


def test_frames_of_the_same_molecule_the_model_never_saw_pass(inputs, tmp_path, capsys):
    model_path, seen, unseen, _ = inputs
    out = tmp_path / "right"
    assert (
        main(["analyze", str(model_path), *seen, str(unseen), "--blocks", "2", "--no-progress", "--output", str(out)])
        == 0
    )
    assert "warning" not in capsys.readouterr().err
    check = json.loads((out / "summary.json").read_text())["input_check"]
    assert check["warning"] is None and check["frames"] == 120
    assert check["rmsd_nm"]["frames_above"] == 0 and check["rmsd_nm"]["max"] < 1.5 * check["rmsd_nm"]["training_max"]
    assert check["cv_range"]["frames_beyond"] == 0


def test_a_model_without_the_training_figures_skips_those_tests(inputs):
    model_path, _, unseen, _ = inputs
    model = neuralct.load(model_path)
    del model.metadata["training_rmsd_nm"], model.metadata["cv_ranges"]
    positions = read_netcdf(unseen).positions
    check = compare_with_training(model, positions, project_positions(model, positions, 2))
    assert "skipped" in check["rmsd_nm"] and "skipped" in check["cv_range"] and check["warning"] is None


def test_analyze_lag_must_be_a_whole_number_of_frames(inputs, tmp_path, capsys):
    model_path, seen, unseen, _ = inputs
    # Frames every 0.5 ps: 0.7 ps is refused (it was rounded to one frame), 1.5 ps is three frames.
    assert (
        main(
            [
                "analyze",
                str(model_path),
                *seen,
                str(unseen),
                "--lag-ps",
                "0.7",
                "--no-progress",
                "--output",
                str(tmp_path / "a"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "--lag-ps 0.7 is not a whole multiple of the 0.5 ps between frames" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "a").exists()
    assert (
        main(
            [
                "analyze",
                str(model_path),
                *seen,
                str(unseen),
                "--lag-ps",
                "1.5",
                "--blocks",
                "2",
                "--no-progress",
                "--output",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["lag_frames"] == 3 and summary["lag_ps"] == 1.5


def test_a_trajectory_without_time_stamps_is_scored_at_a_lag_in_frames(inputs, tmp_path, capsys):
    """DCD holds no time: the scores use a lag in frames, and say so, instead of inventing 1 ps between frames."""
    import mdtraj

    model_path, seen, unseen, _ = inputs
    topology = str(seen[0]).replace("replica-000.nc", "topology.pdb")
    dcd = tmp_path / "unseen.dcd"
    mdtraj.load(str(unseen), top=topology).save_dcd(str(dcd))
    out = tmp_path / "dcd"
    assert (
        main(
            [
                "analyze",
                str(model_path),
                str(dcd),
                "--top",
                topology,
                "--blocks",
                "2",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lag_ps"] is None and "unseen.dcd holds no time stamps" in summary["time_step_unknown_because"]
    printed = capsys.readouterr().out
    assert f"VAMP-2 (2 CVs, lag {summary['lag_frames']} frames, 2 scored segments)" in printed
    assert "note: lags and times in frames, not ps: " in printed and "(--frame-ps)" in printed
    assert (
        main(
            [
                "analyze",
                str(model_path),
                str(dcd),
                "--top",
                topology,
                "--lag-ps",
                "1",
                "--no-progress",
                "--output",
                str(tmp_path / "dcd-lag"),
            ]
        )
        == 2
    )
    assert "--lag-ps needs the time between frames" in capsys.readouterr().err


def test_a_single_structure_gets_its_cvs_and_no_scores(inputs, tmp_path, capsys):
    """A PDB is one frame: its CVs are written, the scores skipped with the reason (no lag to score at)."""
    import mdtraj

    model_path, seen, unseen, _ = inputs
    topology = str(seen[0]).replace("replica-000.nc", "topology.pdb")
    mdtraj.load(str(unseen), top=topology)[5].save_pdb(str(tmp_path / "one.pdb"))
    out = tmp_path / "one"
    assert main(["analyze", str(model_path), str(tmp_path / "one.pdb"), "--no-progress", "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "has no lag to score at" in summary["skipped"]["scores"] and "caveat" not in summary["split"]
    cvs = project_positions(neuralct.load(model_path), mdtraj.load(str(tmp_path / "one.pdb")).xyz.astype(float), 2)
    written = [float(value) for value in (out / "one.colvar").read_text().splitlines()[1].split()[1:3]]
    assert written == pytest.approx(cvs[0], abs=1e-5)  # the PDB's 1e-4 nm rounding, read twice the same way


def test_the_frames_temperature_is_the_files_record_the_models_or_the_one_given(inputs, tmp_path, capsys):
    """Another engine's files record no temperature: the model's is taken, or --temperature; a record is checked."""
    import mdtraj

    model_path, seen, unseen, _ = inputs
    topology = str(seen[0]).replace("replica-000.nc", "topology.pdb")
    mdtraj.load(str(unseen), top=topology).save_xtc(str(tmp_path / "plain.xtc"))
    trained_at = neuralct.load(model_path).metadata["molecule"]["temperature_K"]
    runs = {
        "record": ([str(unseen)], "recorded in the files", read_netcdf(unseen).attributes["neuralct_temperature_K"]),
        "model": ([str(tmp_path / "plain.xtc"), "--top", topology], "the model's training temperature", trained_at),
        "given": ([str(tmp_path / "plain.xtc"), "--top", topology, "--temperature", "350"], "given", 350.0),
    }
    for name, (argv, source, temperature) in runs.items():
        assert main(["analyze", str(model_path), *argv, "--no-progress", "--output", str(tmp_path / name)]) == 0
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert (summary["temperature_source"], summary["temperature_K"]) == (source, pytest.approx(temperature))
    argv = ["analyze", str(model_path), str(unseen), "--temperature", "350", "--output", str(tmp_path / "clash")]
    assert main(argv) == 2 and "ran at 300 K, as its run recorded, not at the 350 K given" in capsys.readouterr().err


def test_frames_recorded_at_another_temperature_are_analysed_at_theirs(inputs, tmp_path):
    """The frames' kT (the free energy of their CVs) is that of the temperature their file records, 350 K here, not
    the model's training temperature."""
    import dataclasses
    import shutil

    from neuralct.data.netcdf import TEMPERATURE_ATTRIBUTE, write_netcdf
    from neuralct.workflows.analyze import analyze_trajectories

    model_path, _, unseen, _ = inputs
    model = neuralct.load(model_path)
    assert model.metadata["molecule"]["temperature_K"] == 300.0
    frames = read_netcdf(unseen)
    hot = tmp_path / "hot" / "replica-000.nc"
    hot.parent.mkdir()
    shutil.copy(unseen.parent / "topology.pdb", hot.parent / "topology.pdb")
    write_netcdf(hot, dataclasses.replace(frames, attributes=frames.attributes | {TEMPERATURE_ATTRIBUTE: 350.0}))
    summary = analyze_trajectories(model, [str(hot)], tmp_path / "recorded")
    assert summary["temperature_K"] == 350.0 and summary["temperature_source"] == "recorded in the files"
