"""``neuralct explore`` on the command line: a tiny loop end to end, bad input in one line, reruns into one folder."""

import json

import pytest

import neuralct.workflows.explore
from neuralct.cli import main
from neuralct.errors import NeuralCTError
from neuralct.io import write_json

TINY = [
    "explore",
    "alanine-dipeptide",
    "--replicas",
    "2",
    "--unbiased-ns",
    "0.02",
    "--round-ns",
    "0.04",
    "--max-rounds",
    "1",
    "--train-steps",
    "10",
    "--platform",
    "Reference",
    "--allow-oscillating-cvs",
    "--device",
    "cpu",
    "--no-progress",
]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("neuralct explore: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_explore_runs_the_loop_and_prints_a_line_per_round_and_the_result(tmp_path, capsys):
    out = tmp_path / "explore"
    assert main([*TINY, "--output", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    summary = json.loads((out / "summary.json").read_text())
    assert [entry["round"] for entry in summary["rounds"]] == [0, 1]
    assert printed[-3].startswith("round 0, unbiased MD at 300 K (0.04 ns): ") and "trained: density" in printed[-3]
    assert printed[-2].startswith("round 1, metadynamics on the slowest CV (0.04 ns): ")
    # One metadynamics round has nothing to compare with: the loop says it did not converge, and why.
    assert not summary["converged"] and printed[-1].startswith("did not converge in 1 round(s)")
    assert f"{summary['rounds'][1]['phi_transitions_per_ns']:.1f} phi transitions per ns" in printed[-1]
    assert summary["final_model"] == str(out / "round-0" / "model" / "model.pt")
    for name in ("round-0/md/replica-001.nc", "round-1/bias/COLVAR", "export/manifest.json", "config.yaml"):
        assert (out / name).exists(), name
    # A finished run's rerun restores what it writes again: the export and the pooled free energy.
    colvar = (out / "round-1" / "bias" / "COLVAR").read_bytes()
    (out / "export" / "cv1.pt").unlink()
    assert main([*TINY, "--output", str(out)]) == 0
    assert (out / "export" / "cv1.pt").is_file() and (out / "round-1" / "bias" / "COLVAR").read_bytes() == colvar


@pytest.mark.parametrize(
    "options, message",
    [
        (["--replicas", "1"], "--replicas must be at least 2: the last one validates the first model"),
        (["--round-ns", "0.005"], "--round-ns 0.005 leaves fewer than 2 frames (2 ps, the retraining lag)"),
        (["--max-rounds", "0"], "--max-rounds: must be a positive integer"),
        (["--round-ns", "0.02"], "a round of --round-ns 0.02 would train on 16 frames for 24 coordinates"),
        (["--unbiased-ns", "0.005"], "round 0 would train on 10 frames (1 replicas of --unbiased-ns 0.005)"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, options, message):
    out = tmp_path / "explore"
    assert main([*TINY, *options, "--output", str(out)]) == 2
    assert message in _one_line_error(capsys)
    assert not out.exists()


def test_an_unknown_system_is_one_line(tmp_path, capsys):
    assert main(["explore", "no-such-system", "--output", str(tmp_path / "explore")]) == 2
    assert "no-such-system" in _one_line_error(capsys)


def test_a_rerun_goes_on_with_the_same_options_and_is_refused_with_others(tmp_path, capsys, monkeypatch):
    out = tmp_path / "explore"
    runs = []

    def interrupted(md_system, settings, output, announce):
        """A loop stopped by an error after its first step wrote something."""
        runs.append(settings)
        write_json(output / "partial.json", {"rounds": []})
        raise NeuralCTError("stopped")

    monkeypatch.setattr(neuralct.workflows.explore, "run_explore", interrupted)
    assert main([*TINY, "--output", str(out)]) == 2 and main([*TINY, "--output", str(out)]) == 2
    assert len(runs) == 2 and runs[0] == runs[1]
    capsys.readouterr()
    before = (out / "run.json").read_bytes()
    assert main([*TINY, "--tolerance-kj", "0.5", "--output", str(out)]) == 2
    assert "holds a `neuralct explore` run with other tolerance_kj;" in _one_line_error(capsys)
    assert len(runs) == 2 and (out / "run.json").read_bytes() == before
    # The platform changes how fast the runs go, not what they give: the same run goes on.
    assert main([*TINY[:-6], "--platform", "auto", *TINY[-4:], "--output", str(out)]) == 2
    assert len(runs) == 3


def test_given_data_that_ran_at_another_temperature_than_round_zero_are_refused_in_one_line(tmp_path, capsys):
    md = tmp_path / "md"
    simulate = ["simulate", "alanine-dipeptide", "--length-ns", "0.002", "--report-ps", "0.1", "--replicas", "2"]
    assert main([*simulate, "--platform", "Reference", "--no-progress", "--output", str(md)]) == 0
    given = ["--data", str(md / "replica-000.nc"), str(md / "replica-001.nc")]
    out = tmp_path / "explore"
    own_md = TINY[:2] + TINY[6:]
    assert main([*own_md, *given, "--unbiased-temperature", "600", "--output", str(out)]) == 2
    error = _one_line_error(capsys)
    assert "replica-000.nc ran at 300 K, as its run recorded, not at the 600 K given; the data are round 0, " in error
    assert error.endswith("which runs at --unbiased-temperature (default --temperature): give theirs\n"), error
    assert not out.exists()


def test_given_data_replace_round_zeros_md_and_their_options_are_checked_in_one_line(
    tmp_path, capsys, plain_openmm_alanine
):
    data = plain_openmm_alanine
    given = ["--data", str(data / "A.dcd"), str(data / "B.xtc"), "--top", str(data / "ala2.pdb")]
    out = tmp_path / "explore"
    assert main([*TINY, *given, "--frame-ps", "0.1", "--output", str(out)]) == 2
    assert "--replicas and --unbiased-ns size round 0's own MD, which --data replaces" in _one_line_error(capsys)
    assert main([*TINY, "--top", str(data / "ala2.pdb"), "--output", str(out)]) == 2
    assert "--top describes --data files, and no --data was given" in _one_line_error(capsys)
    own_md = TINY[:2] + TINY[6:]
    assert main([*own_md, *given, "--output", str(out)]) == 2
    assert "A.dcd holds no time stamps; " in (error := _one_line_error(capsys)) and error.endswith("(--frame-ps)\n")
    assert main(["explore", "trialanine", "--solvent", "vacuum", *given, "--frame-ps", "0.1", "-o", str(out)]) == 2
    assert "system trialanine has 42 atoms but the --data are of a system of 22" in _one_line_error(capsys)
    assert not out.exists()
    assert main([*own_md, *given, "--frame-ps", "0.1", "--output", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-3].startswith("round 0, the given unbiased trajectories at 300 K (0.04 ns): ")
    identity = json.loads((out / "run.json").read_text())
    assert [item["name"] for item in identity["inputs"]] == ["A.dcd", "B.xtc", "ala2.pdb"]


def test_every_loop_option_reaches_the_loops_settings(tmp_path, capsys, monkeypatch):
    """Each option given with a value other than its default is the loop's setting."""
    runs = []

    def stopped(md_system, settings, output, announce):
        runs.append(settings)
        raise NeuralCTError("stopped")

    monkeypatch.setattr(neuralct.workflows.explore, "run_explore", stopped)
    given = {
        "temperature": 310.0,
        "unbiased_temperature": 320.0,
        "freeze_rate_per_ns": 20.0,
        "retrain_time": "rescaled",
        "tolerance_kj": 0.5,
        "threads": 2,
        "seed": 4,
    }
    options = [word for name, value in given.items() for word in ("--" + name.replace("_", "-"), str(value))]
    assert main([*TINY, *options, "--output", str(tmp_path / "explore")]) == 2
    assert "stopped" in _one_line_error(capsys)
    (settings,) = runs
    assert {name: getattr(settings, name) for name in given} == given
    # And those of TINY.
    assert (settings.replicas, settings.unbiased_ns, settings.round_ns, settings.max_rounds) == (2, 0.02, 0.04, 1)
    assert (settings.train_steps, settings.platform, settings.device, settings.progress) == (
        10,
        "Reference",
        "cpu",
        False,
    )
    assert settings.allow_oscillating_cvs
