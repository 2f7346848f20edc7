"""``neuralct train --lag-ps``: the time-lagged objective on the command line, good input and bad."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import neuralct
from neuralct.cli import main
from neuralct.workflows import objective


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    md = tmp_path_factory.mktemp("alanine-lagged") / "md"
    assert (
        main(
            [
                "simulate",
                "alanine-dipeptide",
                "--length-ns",
                "0.03",
                "--report-ps",
                "0.5",
                "--replicas",
                "3",
                "--equilibration-ps",
                "1",
                "--platform",
                "Reference",
                "--no-progress",
                "--output",
                str(md),
            ]
        )
        == 0
    )
    return sorted(str(p) for p in md.glob("replica-*.nc"))


SMALL = ["--steps", "10", "--batch-size", "16", "--couplings", "2", "--hidden", "8", "--no-progress"]


@pytest.mark.parametrize("momenta, term", [("recorded", "phase space"), ("resample", "configuration only")])
def test_lagged_training_ranks_modes_by_relaxation_time(trajectories, tmp_path, momenta, term):
    out = tmp_path / "lagged"
    assert main(["train", *trajectories, "--lag-ps", "1", "--momenta", momenta, *SMALL, "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lag_ps"] == 1.0 and term in summary["lagged_term"]
    # 60 frames per trajectory, lag 2 frames: 2 x 58 training pairs, 58 validation pairs, none across trajectories.
    assert summary["lagged_pairs"] == {"train": 116, "validation": 58}
    times = np.array(summary["relaxation_times_ps"])
    assert np.all(times[1:] <= times[:-1]) and np.all(np.array(summary["frictions_per_ps"]) > 0)
    model = neuralct.load(out / "model.pt")
    assert model.dynamics is not None
    assert np.allclose(model.relaxation_times.detach().numpy(), times, rtol=1e-6)
    if momenta == "recorded":
        assert (
            main(
                [
                    "analyze",
                    str(out / "model.pt"),
                    *trajectories,
                    "--modes",
                    "3",
                    "--output",
                    str(tmp_path / "analysis"),
                ]
            )
            == 0
        )
        analysis = json.loads((tmp_path / "analysis" / "summary.json").read_text())
        assert analysis["latent_dynamics"]["relaxation_times_ps"] == pytest.approx(times[:3], rel=1e-6)


def test_vamp2_term_is_recorded(trajectories, tmp_path):
    out = tmp_path / "vamp"
    assert main(["train", *trajectories, "--lag-ps", "1", "--vamp-weight", "5", *SMALL, "--output", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["vamp2_term"] == {"weight": 5.0, "modes": 2, "lags_ps": [1.0]}
    modes = tmp_path / "modes"
    options = ["--lag-ps", "1", "--vamp-weight", "5", "--vamp-modes", "3"]
    assert main(["train", *trajectories, *options, *SMALL, "--output", str(modes)]) == 0
    summary = json.loads((modes / "summary.json").read_text())
    assert summary["vamp2_term"] == {"weight": 5.0, "modes": 3, "lags_ps": [1.0]}
    assert summary["objective"]["vamp_modes"] == 3 and "on the 3 slowest CVs" in summary["objective"]["description"]
    several = tmp_path / "several"
    assert (
        main(
            [
                "train",
                *trajectories,
                "--lag-ps",
                "1",
                "--vamp-weight",
                "5",
                "--vamp-lags-ps",
                "1.5",
                "0.5",
                *SMALL,
                "--output",
                str(several),
            ]
        )
        == 0
    )
    assert json.loads((several / "summary.json").read_text())["vamp2_term"] == {
        "weight": 5.0,
        "modes": 2,
        "lags_ps": [0.5, 1.5],
    }
    # Other VAMP-2 lags are another run: refused, not resumed.
    assert (
        main(
            [
                "train",
                *trajectories,
                "--lag-ps",
                "1",
                "--vamp-weight",
                "5",
                "--vamp-lags-ps",
                "0.5",
                *SMALL,
                "--output",
                str(several),
            ]
        )
        == 2
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lag-ps", "0.7"], "whole multiple"),
        (["--lag-ps", "-1"], "--lag-ps: must be a finite number > 0"),
        (["--lag-ps", "1", "--momenta", "resample", "--layers", "linear"], "point-transformation"),
        (["--objective", "density", "--vamp-weight", "5"], "--vamp-weight sets the kinetic objective"),
        (["--lag-ps", "1", "--vamp-weight", "-1"], "--vamp-weight: must be a finite number >= 0"),
        (["--rank-lag-ps", "0.7"], "--rank-lag-ps 0.7 is not a whole multiple"),
        (["--rank-lag-ps", "1", "--lag-ps", "1"], "ranked by relaxation time already"),
        (["--rank-lag-ps", "40"], "fewer than 2 pairs"),
        (
            ["--lag-ps", "1", "--vamp-weight", "5", "--vamp-lags-ps", "0.7"],
            "--vamp-lags-ps 0.7 is not a whole multiple",
        ),
        (["--lag-ps", "1", "--vamp-lags-ps", "1"], "--vamp-lags-ps needs --vamp-weight"),
        (["--lag-ps", "1", "--vamp-modes", "3"], "--vamp-modes needs --vamp-weight"),
        (["--objective", "density", "--vamp-modes", "3"], "--vamp-modes sets the kinetic objective"),
        (["--lag-ps", "1", "--vamp-weight", "5", "--vamp-modes", "0"], "--vamp-modes: must be a positive integer"),
        (["--lag-ps", "1", "--vamp-weight", "5", "--vamp-modes", "500"], "--vamp-modes 500 is more than the"),
        (["--lag-ps", "1", "--vamp-weight", "5", "--vamp-lags-ps", "0.5", "40"], "at every VAMP-2 lag"),
        (
            ["--lag-ps", "1", "--vamp-weight", "5", "--vamp-lags-ps", "0.5", "nan"],
            "--vamp-lags-ps: must be a finite number > 0",
        ),
    ],
)
def test_bad_lags_are_one_line_errors(trajectories, tmp_path, capsys, extra, message):
    assert main(["train", *trajectories, *SMALL, *extra, "--output", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


MODEL_V2 = str(Path(__file__).parents[1] / "fixtures" / "model_v2.pt")


@pytest.mark.parametrize(
    "command, options, message",
    [
        (["train"], ["--lag-ps", "0.7"], "--lag-ps 0.7 is not a whole multiple of the 0.5 ps between frames"),
        (["train"], ["--validation-trajectories", "3"], "--validation-trajectories must be between 1 and 2 for 3"),
        (["train"], ["--objective", "density", "--lag-ps", "1"], "--lag-ps sets the kinetic objective; drop it or"),
        (["analyze", MODEL_V2], ["--modes", "1"], "--modes must be at least 2"),
        (["analyze", MODEL_V2], ["--modes", "500"], "--modes is 500, but the model has"),
        (
            ["train"],
            ["--temperature", "350"],
            "ran at 300 K, as its run recorded, not at the 350 K given; leave --temperature out to take the files' own",
        ),
    ],
)
def test_library_errors_reach_the_command_line_as_its_flags(trajectories, tmp_path, capsys, command, options, message):
    """The library names its arguments (`lag_ps`); the command line shows each as its flag, before any work."""
    out = tmp_path / "refused"
    assert main([*command, *trajectories, *options, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"neuralct {command[0]}: error: ") and message in err, err
    assert "`" not in err and len(err.splitlines()) == 1 and not out.exists(), err


@pytest.mark.parametrize(
    "option", [["--lag-ps", "1"], ["--vamp-weight", "5"], ["--vamp-lags-ps", "1"], ["--momenta", "recorded"]]
)
def test_toys_have_no_lag(tmp_path, capsys, option):
    assert main(["train", "--toy", "harmonic-chain", "-p", "n=4", *option, "--output", str(tmp_path / "toy")]) == 2
    assert f"{option[0]} needs trajectories" in capsys.readouterr().err
    assert not (tmp_path / "toy").exists()


def test_ranking_by_autocorrelation_orders_the_cvs_by_the_data_autocorrelation(trajectories, tmp_path):
    by_frequency, ranked = tmp_path / "frequency", tmp_path / "ranked"
    assert main(["train", *trajectories, *SMALL, "--output", str(by_frequency)]) == 0
    assert main(["train", *trajectories, *SMALL, "--rank-lag-ps", "1", "--output", str(ranked)]) == 0
    ranking = json.loads((ranked / "summary.json").read_text())["mode_ranking"]
    plain, model = neuralct.load(by_frequency / "model.pt"), neuralct.load(ranked / "model.pt")
    assert ranking["by"] == "autocorrelation" and ranking["lag_ps"] == 1.0
    assert sorted(ranking["order"]) == list(range(model.dim)) and ranking["order"] == model.mode_order().tolist()
    assert np.all(np.diff(ranking["autocorrelation"]) <= 0)
    # The same flow (same seed and data); its latent positions recomputed here from the training frames.
    import mdtraj

    from neuralct.model.molecular import project_positions

    train = [
        path
        for path in trajectories
        if str(Path(path).resolve()) in model.metadata["molecule"]["training_trajectories"]
    ]
    Q = [
        project_positions(plain, mdtraj.load(path, top=str(Path(path).parent / "topology.pdb")).xyz.astype(np.float64))
        for path in train
    ]
    mean, variance = np.concatenate(Q).mean(0), np.concatenate(Q).var(0)
    lagged = np.concatenate([(q[:-2] - mean) * (q[2:] - mean) for q in Q]).mean(0) / variance
    frequency_order = plain.mode_order().tolist()
    expected = [lagged[frequency_order.index(mode)] for mode in ranking["order"]]
    assert np.allclose(ranking["autocorrelation"], expected, atol=1e-4)
    assert np.allclose(model.frequencies.detach().numpy(), plain.prior.frequencies.detach().numpy()[ranking["order"]])
    assert ranking["order"] != frequency_order  # the two rankings differ here, so the test tells them apart


def test_a_damaged_mode_ranking_is_refused_at_load(trajectories, tmp_path):
    import torch

    out = tmp_path / "ranked"
    assert main(["train", *trajectories, *SMALL, "--rank-lag-ps", "1", "--output", str(out)]) == 0
    contents = torch.load(out / "model.pt", weights_only=True)
    contents["mode_ranking"]["order"][0] = contents["mode_ranking"]["order"][1]
    torch.save(contents, tmp_path / "damaged.pt")
    with pytest.raises(neuralct.errors.NeuralCTError, match="mode_ranking.order must be a permutation"):
        neuralct.load(tmp_path / "damaged.pt")


def test_retraining_on_a_bias_run_reported_every_0_4_ps_takes_a_2_ps_lag(trajectories, tmp_path):
    """The README's loop: `neuralct bias --report-ps 0.4`, then `train trajectory.nc --lag-ps 2 --vamp-weight 100`.

    The frames are written as `neuralct bias` writes them (float32 time stamps of step x outer
    step, no velocities); 300 of them reach 120 ps, where float32 intervals of 0.4 ps read as
    0.3999939 to 0.4000015 ps.
    """
    from neuralct.data.netcdf import MASSES_ATTRIBUTE, NetCDFFrames, read_netcdf, write_netcdf

    frames = [read_netcdf(path) for path in trajectories]
    positions = np.concatenate([f.positions for f in frames] * 2)[:300]
    run = tmp_path / "bias1"
    run.mkdir()
    (run / "topology.pdb").write_bytes((Path(trajectories[0]).parent / "topology.pdb").read_bytes())
    outer_step_ps, steps_per_report = 0.008, 50
    time_ps = np.arange(1, 301) * steps_per_report * outer_step_ps
    write_netcdf(
        run / "trajectory.nc",
        NetCDFFrames(
            positions, None, time_ps, {"neuralct_biased": 1, MASSES_ATTRIBUTE: frames[0].attributes[MASSES_ATTRIBUTE]}
        ),
    )
    out = tmp_path / "model2"
    assert (
        main(
            ["train", str(run / "trajectory.nc"), "--lag-ps", "2", "--vamp-weight", "100", *SMALL, "--output", str(out)]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    # One trajectory: its first 240 frames train, its last 60 validate; a lag of 5 frames inside each part.
    assert summary["lag_ps"] == 2.0 and summary["lagged_pairs"] == {"train": 235, "validation": 55}
    assert "configuration only" in summary["lagged_term"]


def test_the_default_objective_is_chosen_from_the_data_printed_and_recorded(
    trajectories, tmp_path, capsys, monkeypatch
):
    """Too few pairs: maximum likelihood, and why; where enough: the kinetic objective with its lag from the data."""
    out = tmp_path / "default"
    assert main(["train", *trajectories, *SMALL, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objective"]["objective"] == "density" and "lag_ps" not in summary
    assert "objective: density (maximum likelihood on single frames): only" in printed
    monkeypatch.setattr("neuralct.workflows.objective.MIN_KINETIC_PAIRS", 50)
    out = tmp_path / "kinetic"
    assert main(["train", *trajectories, *SMALL, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    chosen = summary["objective"]
    assert chosen["objective"] == "kinetic" and chosen["momenta"] == "recorded" and chosen["vamp_weight"] == 100
    assert summary["lag_ps"] == chosen["lag_ps"] and summary["vamp2_term"]["lags_ps"] == chosen["vamp_lags_ps"]
    assert "phase space" in summary["lagged_term"]
    assert neuralct.load(out / "model.pt").metadata["objective"] == chosen
    assert "objective: kinetic (time-lagged, lag" in printed and "--objective density for maximum likelihood" in printed


def test_the_steps_and_learning_rate_left_open_are_the_chosen_objectives(trajectories, tmp_path, capsys, monkeypatch):
    """The kinetic objective with its lag chosen from the data trains on its own schedule unless given; what ran is
    printed and in config.yaml."""
    from neuralct.training.loop import TrainingSettings
    from neuralct.workflows.objective import KINETIC_LEARNING_RATE, ObjectiveChoice

    quick = ObjectiveChoice("kinetic", "recorded", 1.0, lag_from_data=True)
    assert quick.schedule() == (objective.KINETIC_STEPS, KINETIC_LEARNING_RATE)
    # A given lag, and maximum likelihood, keep the schedule they always had.
    for choice in (
        ObjectiveChoice("kinetic", "recorded", 1.0, reason="lag given"),
        ObjectiveChoice("density", "resample"),
    ):
        assert choice.schedule() == (TrainingSettings.steps, TrainingSettings.learning_rate)
    monkeypatch.setattr(objective, "MIN_KINETIC_PAIRS", 50)
    monkeypatch.setattr(objective, "KINETIC_STEPS", 4)
    small = [option for option in SMALL if option not in ("--steps", "10")]
    for extra, expected in (([], (4, KINETIC_LEARNING_RATE)), (["--learning-rate", "0.002"], (4, 0.002))):
        out = tmp_path / f"run{len(extra)}"
        assert main(["train", *trajectories, *small, *extra, "--output", str(out)]) == 0
        printed = capsys.readouterr().out
        config = yaml.safe_load((out / "config.yaml").read_text())
        assert (config["steps"], config["learning_rate"]) == expected
        assert f"training: 4 steps at a peak learning rate of {expected[1]:g}" in printed
        assert json.loads((out / "summary.json").read_text())["history"]["step"][-1] == 4
    out = tmp_path / "given"
    assert main(["train", *trajectories, *SMALL, "--learning-rate", "0.002", "--output", str(out)]) == 0
    assert "training:" not in capsys.readouterr().out


def test_the_toys_refuse_the_kinetic_objective(tmp_path, capsys):
    assert (
        main(["train", "--toy", "harmonic-chain", "-p", "n=4", "--objective", "kinetic", "--output", str(tmp_path)])
        == 2
    )
    assert "--objective kinetic needs trajectories" in capsys.readouterr().err


def test_a_dcd_without_time_takes_a_lag_in_ps_once_its_frame_spacing_is_given(plain_openmm_alanine, tmp_path, capsys):
    data = plain_openmm_alanine
    argv = ["train", str(data / "A.dcd"), "--top", str(data / "ala2.pdb"), "--lag-ps", "0.2", *SMALL]
    assert main([*argv, "--output", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "A.dcd holds no time stamps" in err and err.endswith("(--frame-ps)\n")
    assert main([*argv, "--frame-ps", "0.1", "--output", str(tmp_path / "model")]) == 0
    summary = json.loads((tmp_path / "model" / "summary.json").read_text())
    # 200 frames, the last 20 % validating: a lag of 2 frames leaves 158 and 38 pairs.
    assert summary["objective"]["lag_ps"] == 0.2 and summary["lagged_pairs"] == {"train": 158, "validation": 38}
    # The XTC's own stamps (0.1 ps) decide: a spacing that disagrees is refused.
    xtc = ["train", str(data / "B.xtc"), "--top", str(data / "ala2.pdb"), "--lag-ps", "0.2", *SMALL]
    assert main([*xtc, "--frame-ps", "0.5", "--output", str(tmp_path / "disagree")]) == 2
    assert "stamped 0.1 ps apart, not the 0.5 ps --frame-ps gives" in capsys.readouterr().err
    analyzed = tmp_path / "analysis"
    argv = ["analyze", str(tmp_path / "model" / "model.pt"), str(data / "A.dcd"), "--top", str(data / "ala2.pdb")]
    assert main([*argv, "--frame-ps", "0.1", "--no-progress", "--output", str(analyzed)]) == 0
    # analyze's own lag, 10 frames, is in ps: 1 ps.
    assert json.loads((analyzed / "summary.json").read_text())["cv_kinetics"]["lag_ps"] == 1.0


def test_a_diverging_kinetic_training_is_one_line(trajectories, tmp_path, capsys):
    """A learning rate far too large: the CVs turn non-finite and the VAMP-2 term cannot be computed."""
    out = tmp_path / "diverged"
    argv = ["train", *trajectories, "--lag-ps", "1", "--vamp-weight", "100", "--learning-rate", "10", "--steps", "30"]
    assert main([*argv, "--batch-size", "16", "--no-progress", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training diverged at step" in err and "--learning-rate" in err, err
