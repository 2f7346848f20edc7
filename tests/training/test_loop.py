"""Training recovers exact answers of harmonic chains, resumes, and stops cleanly on divergence."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralct.errors import NeuralCTError
from neuralct.model.transformation import NeuralCanonicalTransformation
from neuralct.toys.hamiltonians import HarmonicChain
from neuralct.training.loop import TrainingDiverged, TrainingSettings, train
from neuralct.training.objectives import MaximumLikelihood, VariationalFreeEnergy, stiffest_mode_noise
from neuralct.workflows.train import fit_toy

DEFAULT = [{"type": "linear", "point": True}, {"type": "point", "n_layers": 4, "hidden": 32, "depth": 2}]
QUIET = dict(progress=False, validate_every=50)
#: The checkpoint of a `train` run of :func:`_small_chain_setup` with :data:`SMALL` and seed 3, stopped in its
#: fifth step: the state after step 4, with the loss of step 4 in the epoch under way. Written before the
#: training state was saved as one object; a run of that loop must still resume from it.
EARLIER_CHECKPOINT = Path(__file__).parents[1] / "fixtures" / "training_checkpoint.pt"
SMALL = dict(steps=6, batch_size=16, checkpoint_every=2, validate_every=3, progress=False)


@pytest.mark.parametrize(
    "n,kappa,masses",
    [(32, 1.0, None), (12, 2.5, None), (10, 0.5, [1.0, 4.0] * 5)],
    ids=["chain32", "chain12-stiff", "chain10-unequal-masses"],
)
def test_maximum_likelihood_recovers_every_frequency(n, kappa, masses):
    chain = HarmonicChain(n, kappa, masses)
    settings = TrainingSettings(steps=150, batch_size=256, learning_rate=1e-3, **QUIET)
    model, summary = fit_toy(chain, "ml", DEFAULT, settings, samples=60000, seed=1)
    errors = np.abs(np.array(summary["frequencies"]) / chain.frequencies() - 1)
    assert errors.max() < 0.02, errors.max()
    assert summary["frequencies"] == sorted(summary["frequencies"])
    # The exact harmonic density has NLL = n ln(2 pi) - sum ln w + n (per sample, reduced units).
    exact_nll = n * np.log(2 * np.pi) - np.log(chain.frequencies()).sum() + n
    assert abs(summary["final_loss"] - exact_nll) < 0.05 * n**0.5


@pytest.mark.parametrize(
    "n,kappa,masses",
    [(32, 1.0, None), (9, 3.0, [2.0, 1.0, 0.5] * 3)],
    ids=["chain32", "chain9-unequal-masses"],
)
def test_variational_training_recovers_frequencies_and_free_energy(n, kappa, masses):
    chain = HarmonicChain(n, kappa, masses)
    settings = TrainingSettings(steps=120, batch_size=256, learning_rate=5e-4, **QUIET)
    model, summary = fit_toy(chain, "variational", DEFAULT, settings, seed=2, eval_samples=20000)
    errors = np.abs(np.array(summary["frequencies"]) / chain.frequencies() - 1)
    assert errors.max() < 0.02, errors.max()
    assert abs(summary["free_energy"] - chain.free_energy()) < 0.05
    assert summary["free_energy"] >= chain.free_energy() - 4 * summary["free_energy_error"]


def test_variational_training_from_the_identity_finds_the_normal_modes():
    """No harmonic start: the optimiser alone must find rotation and frequencies."""
    chain = HarmonicChain(4, 1.0, [1.0, 2.0, 1.0, 3.0])
    settings = TrainingSettings(steps=1500, batch_size=256, learning_rate=2e-2, **QUIET)
    model, summary = fit_toy(chain, "variational", [{"type": "linear"}], settings, init="identity", seed=0)
    errors = np.abs(np.array(summary["frequencies"]) / chain.frequencies() - 1)
    assert errors.max() < 0.03, errors.max()
    assert abs(summary["free_energy"] - chain.free_energy()) < 0.02


def _ml_setup(seed=0):
    torch.manual_seed(seed)
    chain = HarmonicChain(4)
    q = torch.as_tensor(chain.sample(2000, seed=seed)[0])
    model = NeuralCanonicalTransformation(4, architecture=DEFAULT)
    model.initialize(q)
    return model, MaximumLikelihood(q[200:], q[:200])


def test_interrupted_training_resumes_to_the_same_result(tmp_path):
    settings = TrainingSettings(steps=60, batch_size=64, checkpoint_every=20, **QUIET)
    reference, objective = _ml_setup()
    uninterrupted = train(reference, objective, settings, seed=5, checkpoint=tmp_path / "reference.pt")

    model, objective = _ml_setup()

    def interrupt(step, loss):
        if step == 45:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, objective, settings, seed=5, checkpoint=tmp_path / "run.pt", on_step=interrupt)
    assert torch.load(tmp_path / "run.pt", weights_only=True)["step"] == 40
    resumed, objective = _ml_setup()
    result = train(resumed, objective, settings, seed=5, checkpoint=tmp_path / "run.pt")
    assert result.resumed_from_step == 40
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    # The epoch of steps 0-49 straddles the step-40 checkpoint: its mean loss is that of the uninterrupted run.
    assert result.history == uninterrupted.history
    assert result.samples_per_second > 0


@pytest.mark.parametrize(
    "name, value",
    [("steps", 40), ("batch_size", 16), ("learning_rate", 2e-3), ("warmup_fraction", 0.2), ("final_lr_fraction", 0.5)],
)
def test_resume_refuses_a_checkpoint_with_other_settings(tmp_path, name, value):
    model, objective = _ml_setup()
    train(model, objective, TrainingSettings(steps=20, batch_size=32, **QUIET), checkpoint=tmp_path / "c.pt")
    other = TrainingSettings(**{"steps": 20, "batch_size": 32, **QUIET, name: value})
    with pytest.raises(NeuralCTError, match=f"different {name};"):
        train(model, objective, other, checkpoint=tmp_path / "c.pt")


@pytest.mark.parametrize("name", ["steps", "batch_size", "learning_rate"])
def test_settings_refuse_a_zero(name):
    with pytest.raises(NeuralCTError, match=f"`{name}` must be"):
        TrainingSettings(**{name: 0})


class ExplodingObjective(MaximumLikelihood):
    def __init__(self, inner, at_step):
        self.inner, self.at_step, self.calls = inner, at_step, 0
        self.name = "exploding"

    def loss(self, model, batch_size, generator):
        self.calls += 1
        loss = self.inner.loss(model, batch_size, generator)
        return loss * float("nan") if self.calls > self.at_step else loss

    def validation_loss(self, model):
        return None


@pytest.mark.parametrize("validate_every", [50, 10])
def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, validate_every):
    """The step named is the first whose loss is NaN, in the first epoch or one that began at a validation (20)."""
    model, objective = _ml_setup()
    settings = TrainingSettings(
        steps=50, batch_size=32, checkpoint_every=10, progress=False, validate_every=validate_every
    )
    with pytest.raises(TrainingDiverged, match="step 25.*last good checkpoint is kept"):
        train(model, ExplodingObjective(objective, 25), settings, checkpoint=tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert state["step"] == 20
    assert all(torch.isfinite(value).all() for value in state["model"].values())


def test_nan_data_are_rejected():
    q = torch.randn(100, 3)
    q[7, 1] = float("nan")
    with pytest.raises(NeuralCTError, match="NaN"):
        MaximumLikelihood(q, None)


def test_variational_estimate_is_exact_for_the_exact_model():
    """With the exact map, ln rho + beta H is the same constant -ln Z for every sample."""
    chain = HarmonicChain(5, 1.5, [1, 2, 3, 2, 1])
    q = torch.as_tensor(chain.sample(200000, seed=0)[0])
    model = NeuralCanonicalTransformation(
        5, masses=torch.tensor(chain.masses), architecture=[{"type": "linear", "point": True}]
    )
    model.initialize(q)
    estimate = VariationalFreeEnergy(chain).estimate(model, n_samples=5000)
    assert abs(estimate["free_energy"] - chain.free_energy()) < 0.01
    assert estimate["effective_sample_size_fraction"] > 0.95


def test_maximum_likelihood_draws_momenta_at_the_models_temperature():
    """At kT = 2.5 with masses (1, 2, 5) and springs (0.5, 3, 20), the exact harmonic model's NLL with resampled
    momenta p ~ N(0, m kT) is n ln(2 pi) - sum ln w + n for w = sqrt(k / m): each reduced momentum is N(0, 1)."""
    kT = 2.5
    masses, springs = torch.tensor([1.0, 2.0, 5.0]), torch.tensor([0.5, 3.0, 20.0])
    q = torch.randn(120000, 3, generator=torch.Generator().manual_seed(0)) * torch.sqrt(kT / springs)
    model = NeuralCanonicalTransformation(3, masses=masses, kT=kT, architecture=[{"type": "linear", "point": True}])
    model.initialize(q[:100000])
    w = np.sqrt((springs / masses).numpy())
    assert np.allclose(model.frequencies.detach().numpy(), w, rtol=0.01)
    exact_nll = 3 * np.log(2 * np.pi) - np.log(w).sum() + 3
    objective = MaximumLikelihood(q[:100000], q[100000:])
    assert objective.validation_loss(model) == pytest.approx(exact_nll, abs=0.05)
    with torch.no_grad():
        training = objective.loss(model, 20000, torch.Generator().manual_seed(1)).item()
    assert training == pytest.approx(exact_nll, abs=0.05)


def test_the_kept_model_is_the_lowest_validation_state(tmp_path):
    """Few frames and a flexible model overfit; the returned state is the best one seen."""
    model, objective = _overfitting_setup()
    settings = TrainingSettings(
        steps=300, batch_size=40, learning_rate=1e-2, validate_every=20, checkpoint_every=100, progress=False
    )
    result = train(model, objective, settings, checkpoint=tmp_path / "c.pt")
    valid = result.history["valid_loss"]
    assert min(valid) < valid[-1]  # it did overfit, so keeping the best state matters
    assert result.best_step == result.history["step"][valid.index(min(valid))]
    assert abs(objective.validation_loss(model) - min(valid)) < 1e-9
    assert result.final_loss == min(valid)


def test_position_noise_is_a_fraction_of_the_stiffest_harmonic_amplitude():
    """For a harmonic chain the stiffest mode's thermal amplitude is sqrt(kT) / w_max (mass-weighted)."""
    masses = np.array([1.0, 4.0] * 4)
    chain = HarmonicChain(8, 2.0, masses)
    q = torch.as_tensor(chain.sample(40000, seed=3)[0])
    noise = stiffest_mode_noise(q, torch.as_tensor(masses), 0.3)
    expected = 0.3 / chain.frequencies().max() / np.sqrt(masses)
    assert np.allclose(noise.numpy(), expected, rtol=0.03)
    assert stiffest_mode_noise(q, torch.as_tensor(masses), 0.0) is None
    with pytest.raises(NeuralCTError, match="--position-noise"):
        stiffest_mode_noise(q, torch.as_tensor(masses), -0.1)


def test_position_noise_perturbs_training_batches_only():
    model, clean = _ml_setup()
    noisy = MaximumLikelihood(clean.q_train, clean.q_valid, position_noise=torch.full((4,), 0.5))
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert noisy.validation_loss(model) == clean.validation_loss(model)
    assert float(noisy.loss(model, 64, generator())) != float(clean.loss(model, 64, generator()))


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])
def test_fused_clipped_step_equals_clip_grad_norm_and_adam(max_norm):
    """The lean clipping and fused Adam call takes the steps ``clip_grad_norm_`` + ``Adam.step`` take, bit
    for bit, whether the clipping acts (max_norm 1e-3) or not."""
    import copy

    from neuralct.training.loop import _clip_and_step

    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 2))
    fused = copy.deepcopy(reference)
    optimizers = [torch.optim.Adam(net.parameters(), lr=1e-2, fused=True) for net in (reference, fused)]
    for _ in range(6):
        x = torch.randn(16, 5)
        for net, optimizer in zip((reference, fused), optimizers):
            optimizer.zero_grad(set_to_none=True)
            net(x).pow(2).sum().backward()
        norm = torch.nn.utils.clip_grad_norm_(list(reference.parameters()), max_norm)
        optimizers[0].step()
        fused_norm = _clip_and_step(optimizers[1], list(fused.parameters()), max_norm)
        assert torch.equal(norm, fused_norm)
        assert (float(norm) > max_norm) == (max_norm < 1)
    for mine, theirs in zip(fused.parameters(), reference.parameters()):
        assert torch.equal(mine, theirs)


def _small_chain_setup():
    torch.manual_seed(0)
    chain = HarmonicChain(2)
    q = torch.as_tensor(chain.sample(200, seed=0)[0])
    model = NeuralCanonicalTransformation(2, architecture=[{"type": "linear"}])
    model.initialize(q)
    return model, MaximumLikelihood(q[50:], q[:50])


def test_a_checkpoint_holds_the_whole_training_state(tmp_path):
    model, objective = _small_chain_setup()
    train(model, objective, TrainingSettings(**SMALL), seed=3, checkpoint=tmp_path / "c.pt")
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    assert set(saved) == set(torch.load(EARLIER_CHECKPOINT, weights_only=True))
    assert saved["step"] == 6 and saved["running"] == [] and saved["timing"]["steps"] == 6


def test_a_run_interrupted_before_the_state_was_one_object_resumes(tmp_path):
    checkpoint = tmp_path / "c.pt"
    shutil.copy(EARLIER_CHECKPOINT, checkpoint)
    saved = torch.load(checkpoint, weights_only=True)
    model, objective = _small_chain_setup()
    result = train(model, objective, TrainingSettings(**SMALL), seed=3, checkpoint=checkpoint)
    reference, objective = _small_chain_setup()
    uninterrupted = train(reference, objective, TrainingSettings(**SMALL), seed=3)
    assert saved["step"] == 4 and result.resumed_from_step == 4
    assert result.history["step"] == [3, 6] and result.history["train_loss"][0] == saved["history"]["train_loss"][0]
    # Model, optimiser, generator and the loss of step 4 came from the file: the uninterrupted run's result (to the
    # rounding of the machine that wrote the file).
    assert result.history["train_loss"][1] == pytest.approx(uninterrupted.history["train_loss"][1], rel=1e-9)
    for a, b in zip(model.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def _overfitting_setup():
    """Few frames and a flexible model: the validation loss is lowest early and rises as the model overfits."""
    torch.manual_seed(0)
    chain = HarmonicChain(6, 1.0, [1, 3, 1, 3, 1, 3])
    q = torch.as_tensor(chain.sample(2040, seed=4)[0])
    model = NeuralCanonicalTransformation(6, masses=torch.tensor(chain.masses), architecture=DEFAULT)
    model.initialize(q[:40])
    return model, MaximumLikelihood(q[:40], q[40:])


def test_a_resumed_run_keeps_the_best_state_found_before_its_checkpoint(tmp_path):
    """The lowest validation loss came before the checkpoint the run resumed from: the resumed run returns that
    state, its step and loss, as the uninterrupted run does."""
    settings = TrainingSettings(
        steps=60, batch_size=40, learning_rate=1e-2, validate_every=20, checkpoint_every=40, progress=False
    )
    reference, objective = _overfitting_setup()
    uninterrupted = train(reference, objective, settings, checkpoint=tmp_path / "reference.pt")
    assert uninterrupted.best_step < 40 < uninterrupted.history["step"][-1]

    def interrupt(step, loss):
        if step == 50:
            raise KeyboardInterrupt

    model, objective = _overfitting_setup()
    with pytest.raises(KeyboardInterrupt):
        train(model, objective, settings, checkpoint=tmp_path / "run.pt", on_step=interrupt)
    resumed, objective = _overfitting_setup()
    result = train(resumed, objective, settings, checkpoint=tmp_path / "run.pt")
    assert result.resumed_from_step == 40
    valid = result.history["valid_loss"]
    assert result.best_step == uninterrupted.best_step == result.history["step"][valid.index(min(valid))]
    assert result.final_loss == uninterrupted.final_loss == min(valid)
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_the_learning_rate_warms_up_linearly_then_decays_on_a_cosine_to_its_final_fraction():
    """100 steps, a warm-up fraction of 0.1 and a final fraction of 0.02: the factor rises by 1/10 a step to the peak
    at step 10, is halfway down the cosine at step 55 (0.02 + 0.98 / 2) and reaches 0.02 at the last step."""
    from neuralct.training.loop import _schedule

    factor = _schedule(TrainingSettings(steps=100, warmup_fraction=0.1, final_lr_fraction=0.02, progress=False))
    assert [factor(step) for step in range(10)] == pytest.approx([(step + 1) / 10 for step in range(10)])
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.02 + 0.98 / 2)
    assert factor(100) == pytest.approx(0.02)
    assert all(factor(step) > factor(step + 1) for step in range(10, 100))


def test_the_optimiser_steps_with_the_gradients_clipped_to_the_settings_norm():
    """After each step the gradients it used have total norm at most ``gradient_clip``; unclipped they are larger."""
    norms = {}
    for clip in (1e-3, 1e12):
        model, objective = _ml_setup()
        seen = norms.setdefault(clip, [])

        def capture(step, loss):
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            seen.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

        train(model, objective, TrainingSettings(steps=4, batch_size=64, gradient_clip=clip, **QUIET), on_step=capture)
    assert len(norms[1e-3]) == 4 and max(norms[1e-3]) <= 1e-3 * (1 + 1e-9)
    assert min(norms[1e12]) > 1e-2


def test_a_torch_file_that_is_no_checkpoint_is_refused(tmp_path):
    """A readable torch file of another kind (here a dict of a step and weights) is not resumed from."""
    model, objective = _ml_setup()
    torch.save({"step": 3, "model": model.state_dict()}, tmp_path / "c.pt")
    with pytest.raises(NeuralCTError, match="is not a neuralct checkpoint"):
        train(model, objective, TrainingSettings(steps=5, batch_size=16, **QUIET), checkpoint=tmp_path / "c.pt")


def test_the_training_loss_recorded_is_the_mean_over_the_steps_since_the_last_record():
    model, objective = _ml_setup()
    losses = []
    settings = TrainingSettings(steps=25, batch_size=16, progress=False, validate_every=10)
    result = train(model, objective, settings, on_step=lambda step, loss: losses.append(loss))
    assert result.history["step"] == [10, 20, 25]
    expected = [np.mean(losses[0:10]), np.mean(losses[10:20]), np.mean(losses[20:25])]
    assert result.history["train_loss"] == pytest.approx(expected, rel=1e-12)
    assert len(set(losses[20:25])) == 5
