"""``neuralct bias``: well-tempered metadynamics on learned CVs and on phi/psi, reweighting, transitions, resume,
bad input."""

import json
import math
import re
from pathlib import Path

import mdtraj
import numpy as np
import pytest

import neuralct
from neuralct.analysis import read_colvar
from neuralct.analysis.fes import free_energy_2d
from neuralct.analysis.reweighting import count_transitions, reweighting_offset
from neuralct.cli import main
from neuralct.errors import NeuralCTError, RunBrokeDown
from neuralct.md.systems import build_system
from neuralct.model.molecular import project_positions
from neuralct.units import kT_kj_per_mol
from neuralct.workflows.bias import BiasSettings, run_metadynamics
from neuralct.workflows.metadynamics import joint_grid_points

from tests.commands import DYNAMICS_OPTIONS

SHORT = ["--length-ns", "0.004", "--no-progress"]
FRAMES = ["--report-ps", "0.1", "--bias-every", "5"]


def test_transitions_are_counted_between_core_sets():
    phi = np.array([-2.0, -1.0, 0.0, 0.2, -0.1, 0.7, 1.0, 0.3, 2.5, 1.2, -0.6, -2.0, 0.6])
    # A A . . . B B . (outside) B A A B: A->B, B->A, A->B
    assert count_transitions(phi) == 3
    assert count_transitions(np.array([-1.0, 0.0, -2.0])) == 0


def test_reweighting_offset_of_a_flat_bias_is_the_bias():
    kT = 2.5
    assert reweighting_offset(np.full((30, 20), 7.0), 8.0, kT, periodic=False) == pytest.approx(7.0, abs=1e-12)
    grid = np.linspace(-3, 3, 61)
    bias = 4.0 * np.exp(-(grid**2))
    gamma = 6.0
    top = np.sum(np.exp(gamma / (gamma - 1) * bias / kT))
    bottom = np.sum(np.exp(bias / kT / (gamma - 1)))
    assert reweighting_offset(bias, gamma, kT, periodic=False) == pytest.approx(kT * math.log(top / bottom), rel=1e-12)


def test_settings_errors_name_the_argument_and_the_intervals_that_work():
    with pytest.raises(NeuralCTError) as error:
        BiasSettings(report_ps=0.5).validate()
    assert str(error.value) == (
        "`report_ps` 0.5 is not a whole number of 4 x 2.0 fs bias steps; the nearest that work: 0.496 or 0.504 ps"
    )
    with pytest.raises(NeuralCTError, match="^`bias_factor` must be > 1, got 1.0$"):
        BiasSettings(bias_factor=1.0).validate()


def test_bias_on_learned_cvs_writes_everything_and_resumes(alanine_model, tmp_path):
    model_path, _ = alanine_model
    out = tmp_path / "learned"
    assert (
        main(["bias", str(model_path), "--cvs", "2", "--grid-margin", "0.5", *SHORT, *FRAMES, "--output", str(out)])
        == 0
    )
    fields, table = read_colvar(out / "COLVAR")
    assert fields == ["time", "cv1", "cv2", "phi", "psi", "bias", "rbias"] and len(table) == 40
    assert np.allclose(table[:, 0], 0.1 * np.arange(1, 41))
    # A Gaussian every 1 ps, after that frame's report: the frames up to 1 ps felt no bias, later ones do.
    bias = table[:, fields.index("bias")]
    assert np.all(bias[:10] == 0) and np.all(bias[10:] > -1e-9) and np.any(bias[10:] > 0.01)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cvs"] == ["cv1", "cv2"] and summary["steps_per_second"] > 0
    assert summary["grids"][0]["range_source"].startswith("training frames")
    for name in (
        "trajectory.nc",
        "topology.pdb",
        "bias.npy",
        "fes.npy",
        "fes.png",
        "fes_phi_psi_reweighted.npy",
        "fes_phi_psi_reweighted.png",
        "config.yaml",
    ):
        assert (out / name).exists(), name
    grid = np.load(out / "bias.npy")
    assert grid.shape == tuple(g["grid_points"] for g in reversed(summary["grids"]))
    # The joint grid of two learned CVs has 2 points per Gaussian width, not OpenMM's 5.
    assert [g["grid_points"] for g in summary["grids"]] == [
        joint_grid_points(g["min"], g["max"], g["width"]) for g in summary["grids"]
    ]
    assert (
        main(["bias", str(model_path), "--cvs", "2", "--grid-margin", "0.5", *SHORT, *FRAMES, "--output", str(out)])
        == 0
    )  # finished: nothing to do

    retrain = [
        "train",
        str(out / "trajectory.nc"),
        "--steps",
        "5",
        "--batch-size",
        "16",
        "--couplings",
        "2",
        "--hidden",
        "16",
        "--no-progress",
    ]
    # The loop's retraining: the time-lagged objective on the biased frames (one file, its last 20% held out),
    # biased again.
    assert main(retrain + ["--lag-ps", "0.2", "--vamp-weight", "10", "--output", str(tmp_path / "lagged")]) == 0
    assert len(json.loads((tmp_path / "lagged" / "summary.json").read_text())["relaxation_times_ps"]) == 24
    assert (
        main(
            [
                "bias",
                str(tmp_path / "lagged" / "model.pt"),
                "--grid-margin",
                "2",
                *SHORT,
                *FRAMES,
                "--output",
                str(tmp_path / "again"),
            ]
        )
        == 0
    )
    assert read_colvar(tmp_path / "again" / "COLVAR")[0] == ["time", "cv1", "phi", "psi", "bias", "rbias"]
    (tmp_path / "w.txt").write_text("1\n2\n")
    assert main(retrain + ["--weights", str(tmp_path / "w.txt"), "--output", str(tmp_path / "badweights")]) == 2
    assert not (tmp_path / "badweights").exists()

    model = neuralct.load(model_path)
    settings = dict(length_ns=0.002, n_cvs=1, seed=3, checkpoint_seconds=0.0)
    part = tmp_path / "part"
    part.mkdir()
    run_metadynamics(build_system("alanine-dipeptide"), model, part, BiasSettings(**settings), progress=False)
    _, first = read_colvar(part / "COLVAR")
    run_metadynamics(
        build_system("alanine-dipeptide"),
        model,
        part,
        BiasSettings(**(settings | {"length_ns": 0.004})),
        progress=False,
    )
    _, resumed = read_colvar(part / "COLVAR")
    assert len(resumed) == 4 and np.array_equal(resumed[:2], first) and np.allclose(resumed[:, 0], [1, 2, 3, 4])


def test_phi_psi_reference_run_reweights_and_counts(alanine_model, tmp_path, capsys):
    out = tmp_path / "phipsi"
    assert (
        main(["bias", str(alanine_model[0]), "--cv", "phi,psi", "--bias-every", "1", *SHORT, "--output", str(out)]) == 0
    )
    fields, table = read_colvar(out / "COLVAR")
    assert fields == ["time", "phi", "psi", "bias", "rbias"] and len(table) == 4
    assert np.all(np.abs(table[:, 1:3]) <= math.pi)
    # Time counts from the end of the equilibration, which deposits nothing: the first row, 1 ps on, holds no bias
    # (its own Gaussian, due at its step, comes after it).
    assert np.array_equal(table[:, 0], [1.0, 2.0, 3.0, 4.0]) and table[0, 3] == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["phi_transitions"] == count_transitions(table[:, 1])
    assert "Tiwary-Parrinello" in summary["reweighting"]
    # 4 ps from the minimised structure never reach phi > 0.5: no free energy, and the reason.
    assert summary["delta_F_phi_positive_minus_negative_kj"] is None and summary["delta_F_standard_error_kj"] is None
    assert "never entered core set B" in summary["delta_F_not_computed_because"]
    assert "F(phi>0) - F(phi<0) not computed: phi never entered core set B" in capsys.readouterr().out
    surface = np.load(out / "fes_phi_psi_reweighted.npy")
    described = summary["bias_files"]["fes_phi_psi_reweighted.npy"]
    assert (
        surface.shape == (40, 40)
        and "kJ/mol" in described
        and "first index phi, second psi" in described
        and "[-pi, pi] rad" in described
    )
    # Each bin's block standard error beside it: NaN where the surface has no frames, and everywhere
    # when the weight of so short a run sits in fewer than 2 blocks.
    # Tiwary-Parrinello weights exp((V - c(t))/kT) from rbias, not exp(V/kT) from the bias: c(t) grows between frames.
    kT = kT_kj_per_mol(summary["settings"]["temperature"])
    bias, rbias = table[:, 3], table[:, 4]
    assert np.ptp(bias - rbias) > 0.01
    angles = ((-math.pi, math.pi), (-math.pi, math.pi))
    expected, _, _ = free_energy_2d(
        table[:, 1], table[:, 2], bins=40, kT=kT, range=angles, weights=np.exp((rbias - rbias.max()) / kT)
    )
    np.testing.assert_allclose(surface, expected, rtol=1e-9, atol=1e-9)
    errors = np.load(out / "fes_phi_psi_reweighted_error.npy")
    assert "standard error" in summary["bias_files"]["fes_phi_psi_reweighted_error.npy"]
    assert errors.shape == (40, 40) and np.all(np.isnan(errors[np.isnan(surface)]))
    assert np.all(np.isnan(errors)) or np.array_equal(np.isnan(errors), np.isnan(surface))


def test_bad_input_is_one_line_and_leaves_nothing(alanine_model, tmp_path, capsys):
    model_path = alanine_model[0]
    model = neuralct.load(model_path)
    narrow = tmp_path / "narrow.pt"
    value = float(project_positions(model, build_system("alanine-dipeptide").positions[None], 1)[0, 0])
    model.metadata["cv_ranges"] = [
        {"min": value - 1e-4, "max": value + 1e-4, "p01": value - 1e-4, "p99": value + 1e-4}
    ] * model.dim
    model.save(narrow)
    pdb = build_system("alanine-dipeptide").settings["pdb"]
    no_hydrogens = tmp_path / "no-hydrogens.pdb"
    no_hydrogens.write_text(
        "".join(
            line
            for line in Path(pdb).read_text().splitlines(keepends=True)
            if not (line.startswith(("ATOM", "HETATM")) and line[76:78].strip() == "H")
        )
    )
    toy = tmp_path / "toy"
    assert (
        main(
            [
                "train",
                "--toy",
                "harmonic-chain",
                "-p",
                "n=4",
                "--steps",
                "5",
                "--samples",
                "200",
                "--no-progress",
                "--output",
                str(toy),
            ]
        )
        == 0
    )
    capsys.readouterr()
    cases = [
        (
            ["bias", str(toy / "model.pt"), *SHORT, "--output", str(tmp_path / "a")],
            "not trained on molecular trajectories",
        ),
        (
            ["bias", str(model_path), "harmonic-chain", *SHORT, "--output", str(tmp_path / "b")],
            "atoms but the model was trained on a system of 22",
        ),
        (["bias", str(model_path), "--cvs", "3", *SHORT, "--output", str(tmp_path / "c")], "--cvs must be 1 or 2"),
        (["bias", str(model_path), "--height-kj", "-1", *SHORT, "--output", str(tmp_path / "d")], "--height-kj"),
        (["bias", str(narrow), "--grid-margin", "0", *SHORT, "--output", str(tmp_path / "e")], "left its grid"),
        (
            ["bias", str(model_path), "--width-fraction", "0", *SHORT, "--output", str(tmp_path / "f")],
            "--width-fraction: must be a number > 0 and < 1",
        ),
        (
            ["bias", str(model_path), "--platform", "Bogus", *SHORT, "--output", str(tmp_path / "g")],
            "--platform 'Bogus' is not an OpenMM platform of this installation; use one of Reference",
        ),
        (
            ["bias", str(model_path), "--report-ps", "0.5", *SHORT, "--output", str(tmp_path / "h")],
            "the nearest that work: 0.496 or 0.504 ps",
        ),
        (
            ["bias", str(model_path), str(no_hydrogens), *SHORT, "--output", str(tmp_path / "i")],
            "has no hydrogen atoms; give the topology.pdb that `neuralct simulate` wrote",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    for name in "abcdfghi":
        assert not (tmp_path / name).exists()
    assert not (tmp_path / "e" / "summary.json").exists() and not (tmp_path / "e" / "COLVAR").exists()


@pytest.mark.parametrize("failure", ["left its grid", "blew up"])
def test_a_run_that_fails_keeps_the_reports_before_it(alanine_model, tmp_path, monkeypatch, capsys, failure):
    from neuralct.md.simulate import check_sane
    from neuralct.workflows import bias

    checked = []

    def leave_at_the_third_report(values, variables, names, simulation):
        checked.append(1)
        if len(checked) == 3:
            raise neuralct.errors.RunBrokeDown("cv1 = 9 left its grid", "a stand-in's advice")

    def blow_up_at_the_third_report(positions, temperature, settings, frame):
        checked.extend([1] if isinstance(frame, int) else [])  # a report's frame, not the equilibration
        check_sane(positions, 1e9 if len(checked) == 3 else temperature, settings, frame)

    if failure == "left its grid":
        monkeypatch.setattr(bias, "_check_inside", leave_at_the_third_report)
    else:  # the real test of the kinetic temperature, handed an impossible one
        monkeypatch.setattr(bias, "check_sane", blow_up_at_the_third_report)
    out = tmp_path / "failed"
    assert main(["bias", str(alanine_model[0]), "--cvs", "2", *SHORT, "--report-ps", "0.8", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        failure in err
        and "the 2 reports before it are in COLVAR and trajectory.nc" in err
        and len(err.splitlines()) == 1
    )
    fields, table = read_colvar(out / "COLVAR")
    assert fields == ["time", "cv1", "cv2", "phi", "psi", "bias", "rbias"] and table.shape == (2, 7)
    assert mdtraj.load(str(out / "trajectory.nc"), top=str(out / "topology.pdb")).n_frames == 2
    assert not (out / "summary.json").exists()


def test_a_frozen_bias_acts_unchanged_and_its_frames_reweight_statically(alanine_model, tmp_path, capsys):
    model_path, _ = alanine_model
    first, frozen = tmp_path / "metadynamics", tmp_path / "frozen"
    # Both runs start at the minimised structure (no equilibration), so that the second visits the first one's bias.
    grid = ["--grid-margin", "0.5", "--pace-ps", "0.5", "--equilibration-ps", "0"]
    assert main(["bias", str(model_path), *grid, *SHORT, *FRAMES, "--output", str(first)]) == 0
    bias = np.load(first / "bias.npy")
    assert bias.max() > 1.0  # eight Gaussians deposited
    command = ["bias", str(model_path), *grid, *SHORT, *FRAMES, "--seed", "3", "--frozen-bias", str(first)]
    assert main([*command, "--output", str(frozen)]) == 0
    printed = capsys.readouterr()
    assert f"ns biased on cv1 (the frozen bias of {first}, exact weights): " in printed.out
    # The first run's command with --frozen-bias added runs; its deposition pace is said to do nothing.
    assert printed.err.strip() == (
        "warning: --pace-ps shape the Gaussians deposited; under a frozen bias none is, so they do nothing"
    )
    # Nothing deposited: the grid is the earlier run's, to the bit.
    assert np.array_equal(np.load(frozen / "bias.npy"), bias)
    summary = json.loads((frozen / "summary.json").read_text())
    assert summary["settings"]["frozen_bias_from"] == str(first)
    assert summary["reweighting"].startswith("static: w = exp((V(s) - c)/kT)")
    fields, table = read_colvar(frozen / "COLVAR")
    cv, applied, offset = (table[:, fields.index(name)] for name in ("cv1", "bias", "rbias"))
    # The bias of each frame is the earlier grid at the frame's CV from the first report on, and c is constant.
    low, high, points = (summary["grids"][0][key] for key in ("min", "max", "grid_points"))
    np.testing.assert_allclose(applied, np.interp(cv, np.linspace(low, high, points), bias), atol=0.05)
    assert np.ptp(applied) > 0.5 and np.ptp(applied - offset) < 1e-6

    # Interrupted and resumed, a frozen run is the uninterrupted one, bias and frames, to the bit.
    model, system = neuralct.load(model_path), build_system("alanine-dipeptide")
    settings = dict(
        length_ns=0.002, grid_margin=0.5, pace_ps=0.5, report_ps=0.1, bias_every=5, seed=4, checkpoint_seconds=0.0
    )
    settings |= {"frozen_bias_from": str(first)}
    whole, part = tmp_path / "whole", tmp_path / "part"
    whole.mkdir(), part.mkdir()
    run_metadynamics(system, model, whole, BiasSettings(**(settings | {"length_ns": 0.004})), progress=False)
    run_metadynamics(system, model, part, BiasSettings(**settings), progress=False)
    run_metadynamics(system, model, part, BiasSettings(**(settings | {"length_ns": 0.004})), progress=False)
    # The runs shared one system: each added its bias to a copy of the System, not to it.
    assert system.system.getNumForces() == build_system("alanine-dipeptide").system.getNumForces()
    assert np.array_equal(read_colvar(part / "COLVAR")[1], read_colvar(whole / "COLVAR")[1])
    assert np.array_equal(np.load(part / "bias.npy"), bias)

    # Equilibration is the same MD under the starting bias, unrecorded: a run equilibrated 0.2 ps longer starts
    # where the other is 0.2 ps (two reports) on, to the bit, with its time counted from zero. (With one integrator:
    # OpenMM's multiple-time-step one draws other random numbers after an energy is read, as each report does.)
    short, long = tmp_path / "short", tmp_path / "long"
    short.mkdir(), long.mkdir()
    settings |= {"platform": "Reference", "length_ns": 0.001, "bias_every": 1}
    run_metadynamics(system, model, short, BiasSettings(**(settings | {"equilibration_ps": 0.1})), progress=False)
    run_metadynamics(system, model, long, BiasSettings(**(settings | {"equilibration_ps": 0.3})), progress=False)
    early, later = read_colvar(short / "COLVAR")[1], read_colvar(long / "COLVAR")[1]
    np.testing.assert_allclose(early[:, 0], later[:, 0])
    np.testing.assert_allclose(early[:2, 0], [0.1, 0.2])
    assert np.array_equal(early[2:, 1:], later[:-2, 1:])
    frames = [mdtraj.load(str(folder / "trajectory.nc"), top=str(folder / "topology.pdb")) for folder in (short, long)]
    assert np.array_equal(frames[0].xyz[2:], frames[1].xyz[:-2])

    # A bias on other grids, a folder without a finished run, a damaged bias: one line each, nothing written.
    capsys.readouterr()
    wider = command[:2] + ["--grid-margin", "1.0"] + command[4:]
    assert main([*wider, "--output", str(tmp_path / "wider")]) == 2
    assert "biased other CVs, grids or kind of bias than this run" in capsys.readouterr().err
    # Another Gaussian width: the same bounds, other grid points, which the line names.
    narrower = [*command, "--width-fraction", "0.03", "--output", str(tmp_path / "narrower")]
    assert main(narrower) == 2 and "Gaussian width included" in capsys.readouterr().err
    command[-1] = str(tmp_path / "nothing")
    assert main([*command, "--output", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip().endswith("holds no finished bias run: no summary.json or bias.npy")
    (first / "bias.npy").write_bytes((first / "bias.npy").read_bytes()[:100])
    command[-1] = str(first)
    assert main([*command, "--output", str(tmp_path / "damaged")]) == 2
    assert "bias.npy cannot be read" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("wider", "none", "damaged"))


def test_a_continued_bias_starts_from_the_earlier_one_and_keeps_growing(alanine_model, tmp_path, capsys):
    model_path, _ = alanine_model
    first, continued = tmp_path / "metadynamics", tmp_path / "continued"
    grid = ["bias", str(model_path), "--grid-margin", "0.5", "--pace-ps", "0.5", *SHORT, *FRAMES]
    assert main([*grid, "--output", str(first)]) == 0
    bias = np.load(first / "bias.npy")
    assert main([*grid, "--seed", "3", "--continue-bias", str(first), "--output", str(continued)]) == 0
    assert f"ns biased on cv1 (continuing the bias of {first}): " in capsys.readouterr().out
    grown = np.load(continued / "bias.npy")
    # The earlier bias with eight more Gaussians: nowhere lower, higher where the run went.
    assert np.all(grown >= bias - 1e-9) and np.max(grown - bias) > 0.5
    summary = json.loads((continued / "summary.json").read_text())
    assert summary["settings"]["continued_bias_from"] == str(first)
    assert summary["ended_early"] is None  # it ran its length
    assert summary["reweighting"].endswith(f"the bias continued from the final one of {first}")
    fields, table = read_colvar(continued / "COLVAR")
    cv, applied = (table[:, fields.index(name)] for name in ("cv1", "bias"))
    # Before its first deposition (0.5 ps) the run feels the earlier bias alone.
    low, high, points = (summary["grids"][0][key] for key in ("min", "max", "grid_points"))
    np.testing.assert_allclose(applied[:4], np.interp(cv[:4], np.linspace(low, high, points), bias), atol=0.05)
    assert np.ptp(applied) > 0.5
    # An earlier bias held fixed and continued at once: one line, nothing written.
    both = [*grid, "--frozen-bias", str(first), "--continue-bias", str(first), "--output", str(tmp_path / "both")]
    assert main(both) == 2
    assert "either holds an earlier bias fixed (--frozen-bias) or continues it" in capsys.readouterr().err
    assert main([*grid, "--continue-bias", str(tmp_path / "nothing"), "--output", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"neuralct bias: error: --continue-bias {tmp_path / 'nothing'} holds no finished bias run: no summary.json or "
        "bias.npy"
    )
    assert not (tmp_path / "both").exists() and not (tmp_path / "none").exists()


def test_a_run_that_leaves_its_grid_stops_or_ends_there_with_the_results_of_the_frames_before_it(
    alanine_model, tmp_path
):
    model_path, _ = alanine_model
    model, system = neuralct.load(model_path), build_system("alanine-dipeptide")
    # The grid is the training range itself and every 0.1 ps a 50 kJ/mol Gaussian: the CV leaves it within reports.
    settings = dict(length_ns=0.004, grid_margin=0.0, height_kj=50.0, pace_ps=0.1, report_ps=0.1, bias_every=5)
    stopped, ended = tmp_path / "stopped", tmp_path / "ended"
    stopped.mkdir(), ended.mkdir()
    with pytest.raises(RunBrokeDown, match=r"^cv1 = \S+ left its grid .*; rerun with a larger `grid_margin`") as error:
        run_metadynamics(system, model, stopped, BiasSettings(**settings), progress=False)
    reports = len(read_colvar(stopped / "COLVAR")[1])
    assert str(error.value).endswith(f"; the {reports} reports before it are in COLVAR and trajectory.nc")
    assert not (stopped / "summary.json").exists()
    summary = run_metadynamics(system, model, ended, BiasSettings(**settings, end_at_breakdown=True), progress=False)
    fields, table = read_colvar(ended / "COLVAR")
    # The same run up to the exit (one seed, the Reference platform), its results over the frames before it.
    assert np.array_equal(table, read_colvar(stopped / "COLVAR")[1]) and 0 < len(table) < 40
    assert re.fullmatch(
        rf"cv1 = \S+ left its grid \[\S+, \S+\] at step \d+ after {len(table)} reports", summary["ended_early"]
    )
    assert summary["ns_simulated"] == pytest.approx(len(table) * 1e-4)
    assert summary["md_steps_this_run"] == len(table) * 50  # 10 bias steps of 5 MD steps per report
    low, high = summary["grids"][0]["min"], summary["grids"][0]["max"]
    assert np.all((low <= table[:, fields.index("cv1")]) & (table[:, fields.index("cv1")] <= high))
    assert len(mdtraj.load(str(ended / "trajectory.nc"), top=str(ended / "topology.pdb"))) == len(table)
    # The summary on disk says so too.
    assert json.loads((ended / "summary.json").read_text())["ended_early"] == summary["ended_early"]


@pytest.mark.parametrize("command", ["bias", "sample"])
def test_a_system_of_another_solvent_than_the_training_frames_is_one_line(alanine_model, tmp_path, capsys, command):
    """The model's frames were simulated in vacuum (their simulate run says so): OBC2 here would be another system."""
    model_path = alanine_model[0]
    assert neuralct.load(model_path).metadata["molecule"]["training_solvent"] == "vacuum"
    out = tmp_path / command
    argv = [command, str(model_path), "alanine-dipeptide", "--solvent", "obc2", "--no-progress", "--output", str(out)]
    assert main(argv) == 2 and not out.exists()
    err = capsys.readouterr().err.strip()
    expected = "is in implicit solvent (OBC2), but the model was trained on frames simulated in vacuum"
    assert len(err.splitlines()) == 1 and expected in err and "--solvent" in err, err


def test_auto_runs_a_molecule_without_a_box_on_the_fastest_platform_and_a_resumed_run_on_its_checkpoints(tmp_path):
    """The probe's fastest platform (measured, not assumed); a run resumes on the platform that wrote its
    checkpoint, whatever is asked; an older checkpoint's on the platform asked, or the Reference platform that
    version's auto ran it on."""
    from neuralct.io import ArrayCheckpoint
    from neuralct.workflows.bias import run_platform

    tri = build_system("trialanine", solvent="obc2")
    name, why = run_platform(BiasSettings(), tri)
    rates = dict(re.findall(r"(\w+) (\d+)", why.split("steps/s: ")[1]))
    assert name == max(rates, key=lambda platform: int(rates[platform])) and set(rates) >= {"Reference", "CPU"}
    checkpoint = tmp_path / "checkpoint.npz"
    ArrayCheckpoint({"platform": "CPU", "step": 4}, {}).save(checkpoint)
    assert run_platform(BiasSettings(), tri, checkpoint) == ("CPU", "the platform of the run's checkpoint")
    # The checkpoint loads on no other platform than its own: asked for another, a resumed run keeps its own.
    assert run_platform(BiasSettings(platform="Reference"), tri, checkpoint) == (
        "CPU",
        "the platform of the run's checkpoint (not Reference, as asked)",
    )
    ArrayCheckpoint({"step": 4}, {}).save(checkpoint)
    assert run_platform(BiasSettings(), tri, checkpoint)[0] == "Reference"
    assert run_platform(BiasSettings(platform="CPU"), tri, checkpoint) == ("CPU", "as asked")


def test_a_learned_cvs_gaussians_follow_its_bulk_and_its_grid_covers_every_training_frame(alanine_model):
    """A CV whose training frames reach far beyond its bulk (min -2, max 3, 1st-99th percentile -1 to 1): the Gaussian
    is a fraction of the bulk's width (1st-99th percentile), and the grid spans the whole range widened by
    ``grid_margin`` of it on each side. phi and psi lie on periodic grids over [-pi, pi]."""
    from neuralct.workflows import bias

    model, system = neuralct.load(alanine_model[0]), build_system("alanine-dipeptide")
    model.metadata["cv_ranges"] = [{"min": -2.0, "max": 3.0, "p01": -1.0, "p99": 1.0}] * model.dim
    settings = BiasSettings(width_fraction=0.1, grid_margin=0.5)
    variables, names, grids = bias._bias_variables(settings, model, system, {}, False)
    assert names == ["cv1"] and grids[0]["width"] == pytest.approx(0.1 * 2.0, rel=1e-12)
    assert (grids[0]["min"], grids[0]["max"]) == pytest.approx((-2.0 - 2.5, 3.0 + 2.5), rel=1e-12)
    variable = variables[0]
    assert not variable.periodic
    assert (variable.minValue, variable.maxValue, variable.biasWidth) == pytest.approx((-4.5, 5.5, 0.2), rel=1e-12)

    torsions = bias.backbone_torsions(system.topology, BiasSettings(cv="phi,psi"))
    variables, names, grids = bias._bias_variables(BiasSettings(cv="phi,psi"), model, system, torsions, False)
    assert names == ["phi", "psi"] and all(variable.periodic for variable in variables)
    assert all((g["min"], g["max"]) == (-math.pi, math.pi) for g in grids)


def test_the_equilibration_reports_and_depositions_last_their_time_at_any_bias_step():
    """Every interval given in ps is that long in simulation time, whatever the multiple time step."""
    for bias_every in (1, 4, 5):
        settings = BiasSettings(
            timestep_fs=2.0, bias_every=bias_every, equilibration_ps=10.0, report_ps=1.0, pace_ps=2.0, length_ns=0.01
        )
        settings.validate()
        step = settings.outer_step_ps
        assert step == pytest.approx(0.002 * bias_every, rel=1e-12)
        assert settings.equilibration_steps * step == pytest.approx(10.0, rel=1e-12)
        assert settings.steps_per_report * step == pytest.approx(1.0, rel=1e-12)
        assert settings.steps_per_deposit * step == pytest.approx(2.0, rel=1e-12)
        assert settings.n_reports == 10


def test_a_run_at_another_temperature_reweights_and_records_its_frames_at_its_own_kt(alanine_model, tmp_path):
    """At 400 K the offset c(t) in rbias is Tiwary and Parrinello's at 400 K's kT (computed here from the written grid
    after its one Gaussian), and the frames carry 400 K for retraining."""
    from neuralct.data.netcdf import TEMPERATURE_ATTRIBUTE, read_netcdf

    out = tmp_path / "hot"
    argv = ["bias", str(alanine_model[0]), "--cv", "phi,psi", "--bias-every", "1", "--temperature", "400"]
    argv += ["--length-ns", "0.002", "--report-ps", "0.1", "--pace-ps", "1.5", "--height-kj", "10"]
    argv += ["--width-rad", "1", "--no-progress", "--output", str(out)]
    assert main(argv) == 0
    fields, table = read_colvar(out / "COLVAR")
    time_ps, applied, rbias = table[:, 0], table[:, fields.index("bias")], table[:, fields.index("rbias")]
    after = time_ps > 1.5 + 1e-9
    assert after.sum() == 5 and np.all(applied[~after] == 0) and np.all(rbias[~after] == 0)
    kT, gamma = kT_kj_per_mol(400.0), 8.0
    grid = np.load(out / "bias.npy")[:-1, :-1]  # periodic: the last point repeats the first
    offset = kT * math.log(np.sum(np.exp(gamma / (gamma - 1) * grid / kT)) / np.sum(np.exp(grid / ((gamma - 1) * kT))))
    assert abs(offset - reweighting_offset(grid, gamma, kT_kj_per_mol(300.0), periodic=False)) > 0.1
    np.testing.assert_allclose(rbias[after], applied[after] - offset, rtol=0, atol=1e-6)
    assert float(read_netcdf(out / "trajectory.nc").attributes[TEMPERATURE_ATTRIBUTE]) == 400.0


def test_every_bias_option_reaches_the_runs_settings():
    """Each option of `neuralct bias` given with a value other than its default is the run's setting (the phi/psi
    reference needs no model, and --bias-every given needs no system)."""
    from dataclasses import asdict

    from neuralct.cli import build_parser
    from neuralct.cli.bias import _settings

    given = {
        "cv": "phi",
        "cvs": 2,
        **DYNAMICS_OPTIONS,
        "height_kj": 2.0,
        "width_fraction": 0.1,
        "width_rad": 0.2,
        "bias_factor": 6.0,
        "pace_ps": 0.5,
        "grid_margin": 2.0,
        "bias_every": 2,
        "platform": "CPU",
        "threads": 3,
        "cv_force": "python",
        "seed": 9,
        "checkpoint_seconds": 5.0,
        "frozen_bias": "earlier-run",
    }
    argv = ["bias", "model.pt", "--separate-biases", "--allow-oscillating-cvs"]
    for name, value in given.items():
        argv += ["--" + name.replace("_", "-"), str(value)]
    settings = asdict(_settings(build_parser().parse_args(argv), None, None))
    renamed = {"cvs": "n_cvs", "frozen_bias": "frozen_bias_from"}
    expected = {renamed.get(name, name): value for name, value in given.items()}
    assert settings == {
        **asdict(BiasSettings()),
        **expected,
        "separate_biases": True,
        "allow_oscillating_cvs": True,
    }
