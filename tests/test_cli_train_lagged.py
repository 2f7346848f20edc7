"""``neuralct train --lag-ps``: the time-lagged objective on the command line, good input and bad."""

import json

import numpy as np
import pytest

import neuralct
from neuralct.cli import main


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory):
    md = tmp_path_factory.mktemp("alanine-lagged") / "md"
    assert main(["simulate", "alanine-dipeptide", "--length-ns", "0.03", "--report-ps", "0.5", "--replicas", "3",
                 "--equilibration-ps", "1", "--platform", "Reference", "--no-progress", "--output", str(md)]) == 0
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
        assert main(["analyze", str(out / "model.pt"), *trajectories, "--modes", "3", "--output", str(tmp_path / "analysis")]) == 0
        analysis = json.loads((tmp_path / "analysis" / "summary.json").read_text())
        assert analysis["latent_dynamics"]["relaxation_times_ps"] == pytest.approx(times[:3], rel=1e-6)


def test_vamp2_term_is_recorded(trajectories, tmp_path):
    out = tmp_path / "vamp"
    assert main(["train", *trajectories, "--lag-ps", "1", "--vamp-weight", "5", *SMALL, "--output", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["vamp2_term"] == {"weight": 5.0, "modes": 2}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lag-ps", "0.7"], "whole multiple"),
        (["--lag-ps", "-1"], "--lag-ps: must be a finite number > 0"),
        (["--lag-ps", "1", "--layers", "linear"], "point-transformation"),
        (["--vamp-weight", "5"], "--vamp-weight needs --lag-ps"),
        (["--lag-ps", "1", "--vamp-weight", "-1"], "--vamp-weight: must be a finite number >= 0"),
    ],
)
def test_bad_lags_are_one_line_errors(trajectories, tmp_path, capsys, extra, message):
    assert main(["train", *trajectories, *SMALL, *extra, "--output", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_toys_have_no_lag(tmp_path, capsys):
    assert main(["train", "--toy", "harmonic-chain", "-p", "n=4", "--lag-ps", "1", "--output", str(tmp_path / "toy")]) == 2
    assert "--lag-ps needs trajectories" in capsys.readouterr().err
