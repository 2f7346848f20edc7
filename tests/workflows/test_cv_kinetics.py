"""Each CV's autocorrelation and implied timescales: measured in train and analyze, in the export manifest, and an
oscillating CV refused by bias unless allowed."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

import neuralct
from neuralct.analysis.kinetics import cv_kinetics
from neuralct.cli import main
from neuralct.cli.analyze import oscillation_lines

from tests.workflows.test_bias import FRAMES, SHORT

FIXTURES = Path(__file__).parents[1] / "fixtures"


def _ar1(coefficient: float, n: int, seed: int) -> np.ndarray:
    """An AR(1) process x_t = a x_t-1 + noise, started in equilibrium: autocorrelation a^k at lag k."""
    rng = np.random.default_rng(seed)
    x = np.empty(n)
    x[0] = rng.normal() / math.sqrt(1 - coefficient**2)
    noise = rng.normal(size=n)
    for t in range(1, n):
        x[t] = coefficient * x[t - 1] + noise[t]
    return x


def test_an_ar1_process_has_autocorrelation_a_to_the_lag_and_timescale_minus_one_over_ln_a():
    a, dt = 0.9, 0.5
    series = [_ar1(a, 100_000, seed)[:, None] for seed in (0, 1)]
    kinetics = cv_kinetics(series, 4, dt)
    assert kinetics["lags_ps"] == [1.0, 2.0, 4.0] and kinetics["lag_ps"] == 2.0
    cv = kinetics["cvs"][0]
    assert np.allclose(cv["autocorrelation"], [a**2, a**4, a**8], atol=0.01)
    assert np.allclose(cv["implied_timescales_ps"], -dt / math.log(a), rtol=0.03)
    assert cv["oscillating"] is False


def test_a_cosine_is_flagged_as_oscillating_and_a_lag_of_one_frame_has_no_half():
    t = np.arange(20_000) * 0.5
    cosine = np.cos(2 * math.pi * t / 1.7)[:, None]
    kinetics = cv_kinetics([cosine], 2, 0.5)
    assert kinetics["cvs"][0]["oscillating"] is True
    assert kinetics["cvs"][0]["implied_timescales_ps"][0] is None  # negative at 0.5 ps: no timescale
    assert cv_kinetics([cosine], 1, None)["lags_frames"] == [1.0, 2.0]


def test_a_few_frames_of_noise_flag_nothing():
    rng = np.random.default_rng(3)
    assert not any(cv["oscillating"] for cv in cv_kinetics([rng.normal(size=(40, 6))], 4, 0.5)["cvs"])


def test_the_negative_tail_of_a_slow_process_in_a_finite_sample_is_no_oscillation():
    """Past its relaxation a slow CV's sample autocorrelation wanders below zero by more than white noise's error.

    Bartlett's error, which grows with the correlation at shorter lags, flags none of 100 slow AR(1) series of
    2,000 frames (the data of a 2 ns trajectory at 1 ps frames); white noise's 1 / sqrt(pairs) flags several.
    """
    flagged, white_noise_flags = 0, 0
    for seed in range(100):
        kinetics = cv_kinetics([_ar1(0.8, 2000, seed)[:, None]], 10, 1.0)
        flagged += kinetics["cvs"][0]["oscillating"]
        values, error = np.array(kinetics["cvs"][0]["autocorrelation"]), 3 / np.sqrt(kinetics["pairs"])
        white_noise_flags += bool(np.any(values < -error) or np.any(np.diff(values) > np.hypot(error[:-1], error[1:])))
    assert flagged <= 1 and white_noise_flags >= 5


def test_oscillation_lines_say_what_oscillates_and_what_to_bias():
    kinetics = {
        "lags_ps": [0.5, 1.0, 2.0],
        "cvs": [
            {"name": "cv1", "autocorrelation": [0.9, 0.8, 0.6], "oscillating": False},
            {"name": "cv2", "autocorrelation": [-0.54, 0.33, 0.1], "oscillating": True},
        ],
    }
    assert oscillation_lines(kinetics) == [
        "cv2 oscillates (autocorrelation -0.54 at 0.5 ps, 0.33 at 1 ps, 0.10 at 2 ps): not a slow process; "
        "bias cv1 alone"
    ]
    kinetics["cvs"][0]["oscillating"] = True
    assert [line.endswith("not a slow process") for line in oscillation_lines(kinetics)] == [True, True]


def test_train_records_the_kinetics_of_every_cv_in_the_model_and_its_summary(alanine_model):
    model_path, _ = alanine_model
    summary = json.loads((model_path.parent / "summary.json").read_text())["cv_kinetics"]
    model = neuralct.load(model_path)
    assert model.metadata["cv_kinetics"] == summary  # the model file round-trips it (its checksum covers it)
    assert len(summary["cvs"]) == model.dim and summary["lags_ps"] == [1.0, 2.0, 4.0]
    assert summary["lag_choice"].startswith("default: 10 frames")
    for cv in summary["cvs"]:
        assert len(cv["autocorrelation"]) == 3 and isinstance(cv["oscillating"], bool)


def test_the_manifest_carries_each_cvs_kinetics_and_an_old_model_still_exports(alanine_model, tmp_path):
    model_path, _ = alanine_model
    stored = neuralct.load(model_path).metadata["cv_kinetics"]
    assert main(["export", str(model_path), "--cvs", "2", "--output", str(tmp_path / "new")]) == 0
    cvs = json.loads((tmp_path / "new" / "manifest.json").read_text())["cvs"]
    for cv, kinetics in zip(cvs, stored["cvs"]):
        assert cv["oscillating"] == kinetics["oscillating"]
        assert cv["cv_kinetics"]["autocorrelation"] == kinetics["autocorrelation"]
        assert cv["cv_kinetics"]["lags_ps"] == stored["lags_ps"]
    assert "cv_kinetics" not in neuralct.load(FIXTURES / "model_v2.pt").metadata
    assert main(["export", str(FIXTURES / "model_v2.pt"), "--cvs", "2", "--output", str(tmp_path / "old")]) == 0
    assert all("oscillating" not in cv for cv in json.loads((tmp_path / "old" / "manifest.json").read_text())["cvs"])


def test_bias_refuses_an_oscillating_second_cv_unless_allowed(alanine_model, tmp_path, capsys):
    model_path, _ = alanine_model
    model = neuralct.load(model_path)
    second = model.metadata["cv_kinetics"]["cvs"][1]
    second.update(autocorrelation=[-0.54, 0.33, 0.1], oscillating=True)
    model.metadata["cv_kinetics"]["cvs"][0]["oscillating"] = False
    marked = tmp_path / "model.pt"
    model.save(marked)
    out = tmp_path / "bias"
    capsys.readouterr()
    assert main(["bias", str(marked), "--cvs", "2", *SHORT, *FRAMES, "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cv2 oscillates (autocorrelation -0.54 at 1 ps" in err
    assert "bias cv1 alone (--cvs 1)" in err and "--allow-oscillating-cvs" in err
    assert not out.exists()
    assert (
        main(["bias", str(marked), "--cvs", "2", "--allow-oscillating-cvs", *SHORT, *FRAMES, "--output", str(out)]) == 0
    )
    assert json.loads((out / "summary.json").read_text())["settings"]["allow_oscillating_cvs"] is True


@pytest.mark.parametrize("lag", [None, "1"])
def test_analyze_reports_each_cvs_kinetics_and_marks_an_oscillating_one(alanine_model, tmp_path, capsys, lag):
    model_path, paths = alanine_model
    out = tmp_path / "analysis"
    argv = ["analyze", str(model_path), *paths, "--no-progress", "--output", str(out)]
    assert main([*argv, *(["--lag-ps", lag] if lag else [])]) == 0
    kinetics = json.loads((out / "summary.json").read_text())["cv_kinetics"]
    assert kinetics["lag_ps"] == (2.0 if lag is None else 1.0) and len(kinetics["cvs"]) == 6
    printed = capsys.readouterr().out
    for line in oscillation_lines(kinetics):
        assert line in printed
