"""``neuralct simulate`` on the command line: outputs, and one-line errors that leave earlier outputs untouched."""

import json
from pathlib import Path

import numpy as np
import pytest

from neuralct.cli import main
from neuralct.data.netcdf import read_netcdf

from tests.commands import DYNAMICS_OPTIONS


def snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture
def finished_run(tmp_path):
    folder = tmp_path / "run"
    assert (
        main(
            [
                "simulate",
                "double-well",
                "--length-ns",
                "0.002",
                "--report-ps",
                "0.1",
                "--platform",
                "Reference",
                "--output",
                str(folder),
                "--no-progress",
            ]
        )
        == 0
    )
    return folder


def test_outputs(finished_run):
    names = set(p.name for p in finished_run.iterdir())
    assert {"replica-000.nc", "replica-000.chk.npz", "topology.pdb", "summary.json", "config.yaml"} <= names
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["frames"] == 20 and summary["platform"] == "Reference"


def test_rerun_of_a_finished_run_changes_no_frames(finished_run):
    before = (finished_run / "replica-000.nc").read_bytes()
    assert (
        main(
            [
                "simulate",
                "double-well",
                "--length-ns",
                "0.002",
                "--report-ps",
                "0.1",
                "--platform",
                "Reference",
                "--output",
                str(finished_run),
                "--no-progress",
            ]
        )
        == 0
    )
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
    status = main(
        [
            "simulate",
            args[0],
            "--length-ns",
            "0.002",
            "--report-ps",
            "0.1",
            *args[1:],
            "--output",
            str(finished_run),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith("neuralct simulate: error:") and message in err and "\n" not in err
    assert snapshot(finished_run) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["double-well", "--report-ps", "0.003"], "--report-ps 0.003 is not a whole number of 2.0 fs steps"),
        (["double-well", "--length-ns", "0.0001"], "--length-ns 0.0001 is shorter than one report interval"),
        (["double-well", "--add-hydrogens"], "--add-hydrogens applies to PDB structures only"),
        (["harmonic-chain", "--solvent", "obc2"], "--solvent obc2 applies to molecules only"),
    ],
)
def test_the_library_names_arguments_and_the_command_line_names_its_flags(tmp_path, capsys, args, message):
    assert main(["simulate", *args, "--output", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "`" not in err and "\n" not in err, err


def test_output_that_cannot_be_written(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    status = main(
        ["simulate", "double-well", "--length-ns", "0.002", "--output", str(blocker / "sub"), "--no-progress"]
    )
    err = capsys.readouterr().err.strip()
    assert status == 2 and "cannot create output folder" in err and "\n" not in err
    assert blocker.read_text() == "keep me"


PDB = Path(__file__).resolve().parents[2] / "systems" / "trialanine.pdb"


def edited_pdb(tmp_path, name, keep=lambda line: True, edit=lambda line: line):
    """The bundled tri-alanine PDB with atom lines filtered and edited."""

    def atoms(line):
        return line.startswith(("ATOM", "HETATM"))

    lines = [
        edit(line) if atoms(line) else line for line in PDB.read_text().splitlines() if not atoms(line) or keep(line)
    ]
    path = tmp_path / name
    path.write_text("\n".join(line for line in lines if not line.startswith("CONECT")) + "\n")
    return path


def hydrogen(line):
    return line[76:78].strip() == "H"


@pytest.mark.parametrize(
    "name, keep, edit, options, message",
    [
        ("no-h.pdb", lambda l: not hydrogen(l), lambda l: l, [], "has no hydrogen atoms; rerun with --add-hydrogens"),
        (
            "xyz.pdb",
            lambda l: True,
            lambda l: l[:17] + "XYZ" + l[20:] if l[22:26].strip() == "3" else l,
            [],
            "residue XYZ 3 of chain A is not a residue of force field",
        ),
        (
            "xyz.pdb",
            lambda l: True,
            lambda l: l[:17] + "XYZ" + l[20:] if l[22:26].strip() == "3" else l,
            ["--add-hydrogens"],
            "residue XYZ 3 of chain A is not a residue of force field",
        ),
        (
            "no-ha.pdb",
            lambda l: not (l[12:16].strip() == "HA" and l[22:26].strip() == "3"),
            lambda l: l,
            [],
            "residue ALA 3 of chain A does not match force field amber99sbildn.xml (missing atoms HA); "
            "rerun with --add-hydrogens",
        ),
        (
            "uncapped.pdb",
            lambda l: not hydrogen(l) and l[17:20] not in ("ACE", "NME"),
            lambda l: l,
            ["--add-hydrogens"],
            "residue ALA 4 of chain A",
        ),
    ],
)
def test_pdb_problems_name_the_residue_as_the_pdb_does(tmp_path, capsys, name, keep, edit, options, message):
    path = edited_pdb(tmp_path, name, keep, edit)
    status = main(
        [
            "simulate",
            str(path),
            *options,
            "--length-ns",
            "0.0002",
            "--report-ps",
            "0.1",
            "--output",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert status == 2 and message in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()


def test_add_hydrogens_completes_a_pdb_without_them(tmp_path):
    path = edited_pdb(tmp_path, "no-h.pdb", lambda l: not hydrogen(l))
    out = tmp_path / "out"
    assert (
        main(
            [
                "simulate",
                str(path),
                "--add-hydrogens",
                "--ph",
                "7",
                "--length-ns",
                "0.0002",
                "--report-ps",
                "0.1",
                "--equilibration-ps",
                "0",
                "--platform",
                "Reference",
                "--output",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_atoms"] == 42 and summary["system_settings"]["hydrogens_added_at_ph"] == 7.0
    assert (out / "topology.pdb").read_text().count(" H") > 0


def _replicas_apart_and_together(tmp_path, system_args):
    """Both replicas of one run into ``all/``, and each alone (``--replica-index``) into ``array/replica-00K/``."""
    common = [
        "simulate",
        *system_args,
        "--length-ns",
        "0.001",
        "--report-ps",
        "0.1",
        "--equilibration-ps",
        "0.1",
        "--replicas",
        "2",
        "--seed",
        "5",
        "--platform",
        "Reference",
        "--no-progress",
    ]
    assert main([*common, "--jobs", "1", "--output", str(tmp_path / "all")]) == 0
    for replica in range(2):
        assert main([*common, "--replica-index", str(replica), "--output", str(tmp_path / "array")]) == 0
    return tmp_path / "all", tmp_path / "array"


def test_a_job_array_is_refused_inside_the_folder_of_a_whole_run(tmp_path, capsys):
    together, _ = _replicas_apart_and_together(tmp_path, ["alanine-dipeptide"])
    before = sorted(p.name for p in together.iterdir())
    capsys.readouterr()
    options = ["--length-ns", "0.001", "--replicas", "2", "--replica-index", "1", "--output", str(together)]
    assert main(["simulate", "alanine-dipeptide", *options]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a run of its own; give the job array (--replica-index) another --output" in err, err
    assert len(err.splitlines()) == 1 and sorted(p.name for p in together.iterdir()) == before


@pytest.mark.parametrize(
    "system_args",
    [["alanine-dipeptide"], ["alanine-dipeptide", "--solvent", "tip3p", "--padding-nm", "0.6", "--cutoff-nm", "0.7"]],
    ids=["vacuum", "tip3p"],
)
def test_replicas_run_alone_give_the_frames_of_a_run_of_all_of_them(tmp_path, system_args):
    together, array = _replicas_apart_and_together(tmp_path, system_args)
    for replica in range(2):
        folder = array / f"replica-00{replica}"
        assert sorted(p.name for p in folder.glob("replica-*")) == sorted(
            p.name for p in together.glob(f"replica-00{replica}*")
        )
        a, b = read_netcdf(together / f"replica-00{replica}.nc"), read_netcdf(folder / f"replica-00{replica}.nc")
        assert np.array_equal(a.positions, b.positions) and np.array_equal(a.velocities, b.velocities)
        assert (a.box_vectors is None) == (b.box_vectors is None)
        assert a.box_vectors is None or np.array_equal(a.box_vectors, b.box_vectors)
        assert (folder / "topology.pdb").read_text().splitlines()[1:] == (
            (together / "topology.pdb").read_text().splitlines()[1:]
        )
        assert json.loads((folder / "summary.json").read_text())["settings"]["replica_index"] == replica
    first = read_netcdf(together / "replica-000.nc").positions
    assert not np.array_equal(first, read_netcdf(together / "replica-001.nc").positions)


def test_train_reads_the_replicas_of_a_job_array_together(tmp_path):
    common = ["simulate", "alanine-dipeptide", "--length-ns", "0.02", "--report-ps", "0.5", "--replicas", "3"]
    common += [
        "--equilibration-ps",
        "0.1",
        "--platform",
        "Reference",
        "--no-progress",
        "--output",
        str(tmp_path / "md"),
    ]
    for replica in range(3):
        assert main([*common, "--replica-index", str(replica)]) == 0
    paths = [str(tmp_path / "md" / f"replica-00{r}" / f"replica-00{r}.nc") for r in range(3)]
    small = ["--steps", "3", "--batch-size", "16", "--couplings", "1", "--hidden", "8", "--no-progress"]
    assert main(["train", *paths, *small, "--output", str(tmp_path / "model")]) == 0
    summary = json.loads((tmp_path / "model" / "summary.json").read_text())
    assert summary["trajectories"] == paths and summary["frames"] == 120


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_saves_every_running_replica_at_its_frame_under_way_and_starts_no_other(tmp_path, jobs):
    """SIGINT to the whole command (as a terminal sends it): exit 130 in one line; the frames since the
    last checkpoint are kept (checkpoints are 1000 s apart here); a replica not yet begun never starts; the
    rerun completes the run."""
    import os
    import signal
    import time

    from neuralct.io import ArrayCheckpoint

    from tests.commands import start_neuralct

    out = tmp_path / "interrupted"
    command = ["simulate", "alanine-dipeptide", "--length-ns", "0.4", "--report-ps", "0.8", "--replicas", "3"]
    command += ["--jobs", jobs, "--platform", "Reference", "--checkpoint-seconds", "1000", "--no-progress"]
    command += ["--equilibration-ps", "1", "--output", str(out)]
    run = start_neuralct(command, new_session=True)
    running = int(jobs)
    deadline = time.time() + 120
    while len(list(out.glob("replica-*.chk.npz"))) < running and run.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # into production: a replica runs 200,000 steps, 2-4 s on the Reference platform
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130 and err.strip() == "neuralct simulate: interrupted; rerun the same command to resume"
    for replica in range(3):
        trajectory, checkpoint = out / f"replica-00{replica}.nc", out / f"replica-00{replica}.chk.npz"
        if replica >= running:
            assert not trajectory.exists() and not checkpoint.exists()
            continue
        frames = len(read_netcdf(trajectory).time_ps)
        assert 0 < frames < 500 and ArrayCheckpoint.load(checkpoint, {"frames": int}, "")["frames"] == frames
    assert main([*command, "--jobs", "1"]) == 0  # the number of jobs does not change the frames
    for replica in range(3):
        times = read_netcdf(out / f"replica-00{replica}.nc").time_ps
        assert np.allclose(times, 0.8 * np.arange(1, 501), atol=1e-4)


def test_a_long_step_with_light_hydrogens_is_warned_of(tmp_path, capsys):
    """4 fs with hydrogens of 1.008 amu: a warning naming the remedy; with them at 1.5 amu, none."""
    common = ["simulate", "alanine-dipeptide", "--timestep-fs", "4", "--length-ns", "0.001", "--report-ps", "0.5"]
    common += ["--equilibration-ps", "0.1", "--platform", "Reference", "--no-progress"]
    assert main([*common, "--output", str(tmp_path / "light")]) == 0
    assert capsys.readouterr().err == (
        "warning: a 4 fs step with solute hydrogens of 1.008 amu may blow up or heat the run; give "
        "--hydrogen-mass-amu 1.5 or more (or a topology with repartitioned masses), or --timestep-fs 2\n"
    )
    assert main([*common, "--hydrogen-mass-amu", "1.5", "--output", str(tmp_path / "heavy")]) == 0
    assert capsys.readouterr().err == ""


def test_every_dynamics_option_reaches_the_simulation_settings():
    """Each option given on the command line, with a value other than its default, is the simulation's setting."""
    from dataclasses import asdict

    from neuralct.cli import build_parser
    from neuralct.cli.simulate import _settings

    given = {
        **DYNAMICS_OPTIONS,
        "platform": "CPU",
        "threads": 3,
        "seed": 9,
        "checkpoint_seconds": 5.0,
    }
    argv = ["simulate", "double-well"]
    for name, value in given.items():
        argv += ["--" + name.replace("_", "-"), str(value)]
    assert asdict(_settings(build_parser().parse_args(argv))) == given


class _Stop(Exception):
    pass


def test_every_system_option_reaches_the_system_builder(monkeypatch):
    """Each option that builds a system from a PDB, given with a value other than its default, is the builder's."""
    import neuralct.md.systems
    from neuralct.md.systems import WaterBox

    seen = {}

    def stopped(system, **options):
        seen.update(options, system=system)
        raise _Stop

    monkeypatch.setattr(neuralct.md.systems, "build_system", stopped)
    argv = ["simulate", "peptide.pdb", "--forcefield", "a.xml", "b.xml", "--solvent", "tip3p", "--add-hydrogens"]
    argv += ["--ph", "6.5", "--constraints", "none", "--hydrogen-mass-amu", "1.5", "--temperature", "310"]
    argv += ["--padding-nm", "1.4", "--ionic-strength-molar", "0.1", "--cutoff-nm", "0.9", "--pressure-bar", "2"]
    with pytest.raises(_Stop):
        main(argv)
    seen.pop("hydrogen_advice")
    assert seen == {
        "system": "peptide.pdb",
        "forcefield": ["a.xml", "b.xml"],
        "solvent": "tip3p",
        "add_hydrogens": True,
        "ph": 6.5,
        "constraints": "none",
        "hydrogen_mass_amu": 1.5,
        "temperature": 310.0,
        "water": WaterBox(padding_nm=1.4, ionic_strength_molar=0.1, cutoff_nm=0.9, pressure_bar=2.0),
    }


@pytest.mark.parametrize(
    "options, expected",
    [
        ([], {"constraints": None, "cutoff_nm": None, "pressure_bar": 1.0, "hydrogen_mass_amu": None}),
        (
            ["--constraints", "none", "--cutoff-nm", "0.9", "--pressure-bar", "2", "--hydrogen-mass-amu", "1.5"],
            {"constraints": "none", "cutoff_nm": 0.9, "pressure_bar": 2.0, "hydrogen_mass_amu": 1.5},
        ),
    ],
)
def test_every_option_that_reads_input_files_reaches_the_reader(monkeypatch, options, expected):
    """Input files prepared elsewhere keep their own constraints unless --constraints is given; the barostat's
    pressure is 1 bar unless --pressure-bar is."""
    import neuralct.md.inputs
    from neuralct.md.systems import WaterBox

    seen = {}

    def stopped(files, **given):
        seen.update(given, files=files)
        raise _Stop

    monkeypatch.setattr(neuralct.md.inputs, "read_system", stopped)
    with pytest.raises(_Stop):
        main(["simulate", "a.prmtop", "a.inpcrd", "--temperature", "310", "--save", "resname ALA", *options])
    assert WaterBox().pressure_bar == 1.0
    assert seen == {
        "files": ["a.prmtop", "a.inpcrd"],
        "include_dir": None,
        "solute": "resname ALA",
        "temperature": 310.0,
        **expected,
    }
