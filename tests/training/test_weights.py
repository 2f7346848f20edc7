"""Weighted maximum likelihood: biased samples with weights exp(V/kT) recover the unbiased physics."""

import numpy as np
import pytest
import torch

from neuralct.cli import main
from neuralct.model.transformation import NeuralCanonicalTransformation
from neuralct.toys.hamiltonians import HarmonicChain
from neuralct.training.loop import TrainingSettings, train
from neuralct.training.objectives import MaximumLikelihood, weighted_resample


def _fit(q, w, start_weights, steps=150, seed=0):
    model = NeuralCanonicalTransformation(q.shape[1], architecture=[{"type": "linear", "point": True}])
    generator = torch.Generator().manual_seed(seed)
    model.initialize(weighted_resample(q, start_weights, generator), generator=generator)
    objective = MaximumLikelihood(
        q[:-2000], q[-2000:], w_train=None if w is None else w[:-2000], w_valid=None if w is None else w[-2000:]
    )
    train(
        model, objective, TrainingSettings(steps=steps, batch_size=512, learning_rate=1e-2, progress=False), seed=seed
    )
    return model.frequencies.detach().numpy()


def test_weighted_fit_of_biased_harmonic_samples_recovers_the_unbiased_frequencies():
    target = HarmonicChain(4, kappa=1.0)
    alpha = 0.4
    # The bias V = -alpha U flattens the landscape: samples of the chain with springs (1 - alpha).
    biased = HarmonicChain(4, kappa=1.0 - alpha)
    q = torch.as_tensor(biased.sample(20000, seed=7)[0])
    log_w = alpha * -target.potential(q)  # w = exp(V / kT) with V = -alpha U, kT = 1
    w = torch.exp(log_w - log_w.max())
    exact = target.frequencies()
    weighted = _fit(q, w, w)
    assert np.max(np.abs(weighted / exact - 1)) < 0.05, (weighted, exact)
    unweighted = _fit(q, None, None)
    assert np.allclose(unweighted / exact, np.sqrt(1 - alpha), rtol=0.05)  # what ignoring the weights gives
    # The weighted loss alone, from the unweighted (wrong) start, moves the frequencies to the unbiased ones.
    loss_only = _fit(q, w, None, steps=300)
    assert np.max(np.abs(loss_only / exact - 1)) < 0.05, (loss_only, exact)


def test_validation_loss_is_the_weighted_mean():
    q = torch.randn(300, 3)
    w = torch.rand(300)
    model = NeuralCanonicalTransformation(3, architecture=[{"type": "linear", "point": True}])
    model.initialize(q)
    objective = MaximumLikelihood(q[:100], q[100:], w_train=w[:100], w_valid=w[100:])
    generator = torch.Generator().manual_seed(MaximumLikelihood(q[:100], q[100:])._valid_noise_seed)
    per_frame = MaximumLikelihood._negative_log_likelihood(model, q[100:], None, generator).detach()
    assert abs(objective.validation_loss(model) - float((w[100:] * per_frame).sum() / w[100:].sum())) < 1e-10


def _write_weights(path, values):
    path.write_text("".join(f"{v:.17g}\n" for v in values))
    return path


@pytest.mark.parametrize(
    "weights, frames, precision",
    [
        ("first training frame", "held-out validation frames", False),
        ("first validation frame", "training frames", False),
        # exp(-120) of the largest weight: above zero in float64, zero in float32 (smallest 1.4e-45).
        ("validation at exp(-120)", "held-out validation frames", True),
    ],
)
def test_weights_that_leave_a_side_without_weight_are_one_line_errors(
    alanine_model, tmp_path, capsys, weights, frames, precision
):
    """The conftest data: two trajectories of 40 frames, the second held out for validation."""
    _, paths = alanine_model
    values = np.zeros(80)
    if weights == "first training frame":
        values[0] = 1.0
    elif weights == "first validation frame":
        values[40] = 1.0
    else:
        values[:40], values[40:] = 1.0, np.exp(-120.0)
    path = _write_weights(tmp_path / "w.txt", values)
    out = tmp_path / "model"
    assert main(["train", *paths, "--weights", str(path), "--steps", "2", "--no-progress", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--weights {path}: the {frames} carry no weight" in err, err
    assert ("--dtype float64" in err) == precision
    assert not out.exists()
    if precision:
        assert (
            main(
                [
                    "train",
                    *paths,
                    "--weights",
                    str(path),
                    "--dtype",
                    "float64",
                    "--steps",
                    "2",
                    "--no-progress",
                    "--output",
                    str(out),
                ]
            )
            == 0
        )


def test_a_bias_too_large_to_reweight_is_a_one_line_error(alanine_model, tmp_path, capsys):
    """A COLVAR whose rbias puts one training frame 10^5 kJ/mol above all others: every other weight is exp(-40000)."""
    from neuralct.analysis import write_colvar

    _, paths = alanine_model
    rbias = np.zeros(80)
    rbias[3] = 1e5
    write_colvar(tmp_path / "COLVAR", 0.5 * np.arange(1, 81), rbias[:, None], ["rbias"])
    assert (
        main(
            [
                "train",
                *paths,
                "--bias-colvar",
                str(tmp_path / "COLVAR"),
                "--steps",
                "2",
                "--no-progress",
                "--output",
                str(tmp_path / "m"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1
        and f"--bias-colvar {tmp_path / 'COLVAR'}: the held-out validation frames carry no weight" in err
    ), err


@pytest.mark.parametrize(
    "content, stride, message",
    [
        ("zeros", 1, "holds only zeros; give the frames to train on a positive weight"),
        (
            "80 ones",
            2,
            "has 80 values for the 40 frames loaded; give one weight per loaded frame "
            "(with --stride N, one for every N-th frame",
        ),
        ("missing", 1, "does not exist or is not a file; check the path"),
    ],
)
def test_weights_files_that_cannot_weigh_the_frames_say_why(alanine_model, tmp_path, capsys, content, stride, message):
    _, paths = alanine_model
    path = tmp_path / "w.txt"
    if content == "zeros":
        _write_weights(path, np.zeros(80))
    elif content == "80 ones":
        _write_weights(path, np.ones(80))
    out = tmp_path / "model"
    assert (
        main(
            [
                "train",
                *paths,
                "--weights",
                str(path),
                "--stride",
                str(stride),
                "--steps",
                "2",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--weights {path} {message}" in err, err
    assert not out.exists()


def test_a_config_files_weights_of_a_number_names_the_missing_file(alanine_model, tmp_path, capsys):
    _, paths = alanine_model
    config = tmp_path / "c.yaml"
    config.write_text("weights: 5\n")
    assert (
        main(
            ["train", *paths, "--config", str(config), "--steps", "2", "--no-progress", "--output", str(tmp_path / "m")]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err == "neuralct train: error: --weights 5 does not exist or is not a file; check the path", err
