"""The time-lagged objective as physics: the latent Ornstein-Uhlenbeck process and its learning."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

import neuralct
from neuralct.data import lagged_pairs
from neuralct.data.pairs import LaggedPairs, lag_in_frames, split_lagged_pairs
from neuralct.errors import NeuralCTError
from neuralct.flows import symplectic_form
from neuralct.model.dynamics import (
    LatentLangevin,
    mean_log_transition,
    ou_drift,
    ou_mode_log_transition,
    ou_transition,
    relaxation_times,
)
from neuralct.model.transformation import NeuralCanonicalTransformation
from neuralct.training.loop import TrainingSettings, train
from neuralct.training.objectives import LaggedLikelihood, batch_vamp2, nested_vamp2

from tests.flows.test_flows import randomize

# An underdamped and an overdamped oscillator (reduced units).
W = torch.tensor([1.3, 0.4], dtype=torch.float64)
GAMMA = torch.tensor([0.5, 3.0], dtype=torch.float64)


def sylvester_exponential(A: np.ndarray, t: float) -> np.ndarray:
    """exp(A t) of a 2x2 matrix with distinct eigenvalues from Sylvester's formula (complex arithmetic)."""
    l1, l2 = np.linalg.eigvals(A)
    e1, e2 = np.exp(l1 * t), np.exp(l2 * t)
    return np.real((l1 * e2 - l2 * e1) / (l1 - l2) * np.eye(2) + (e1 - e2) / (l1 - l2) * A)


@pytest.mark.parametrize("lag", [0.05, 0.7, 4.0])
def test_transition_moments_match_the_analytic_solution(lag):
    """Mean: exp(A tau) from Sylvester's formula. Covariance: the SDE's noise integral (Van Loan's block exp)."""
    propagator, covariance = ou_transition(W, GAMMA, lag)
    for k in range(2):
        A = ou_drift(W, GAMMA)[k].numpy()
        assert np.allclose(propagator[k].numpy(), sylvester_exponential(A, lag), atol=1e-12)
        # Cov = int_0^tau exp(A s) D exp(A s)^T ds with the fluctuation-dissipation noise D = diag(0, 2 gamma),
        # kT = 1.
        D = np.diag([0.0, 2 * GAMMA[k].item()])
        block = scipy.linalg.expm(np.block([[-A, D], [np.zeros((2, 2)), A.T]]) * lag)
        noise = block[2:, 2:].T @ block[:2, 2:]
        assert np.allclose(covariance[k].numpy(), noise, atol=1e-12)


def test_boltzmann_density_is_stationary():
    """Sigma solves the Lyapunov equation A Sigma + Sigma A^T + D = 0; chained transitions keep it."""
    for k in range(2):
        A = ou_drift(W, GAMMA)[k].numpy()
        sigma = np.diag([1 / W[k].item() ** 2, 1.0])
        assert np.allclose(A @ sigma + sigma @ A.T + np.diag([0.0, 2 * GAMMA[k].item()]), 0.0, atol=1e-12)
    propagator, covariance = ou_transition(W, GAMMA, 0.9)
    rng = np.random.default_rng(0)
    n = 50000
    z = np.stack([rng.normal(size=(n, 2)) / W.numpy(), rng.normal(size=(n, 2))], -1)  # (walkers, mode, [Q, P])
    for _ in range(20):
        noise = np.einsum("kab,nkb->nka", np.linalg.cholesky(covariance.numpy()), rng.normal(size=(n, 2, 2)))
        z = np.einsum("kab,nkb->nka", propagator.numpy(), z) + noise
    for k in range(2):
        expected = np.diag([1 / W[k].item() ** 2, 1.0])
        assert np.allclose(np.cov(z[:, k].T), expected, atol=6 * np.sqrt(2 / n) * expected.max())


def test_transition_density_matches_a_direct_simulation_of_the_sde():
    """Walkers from a fixed start, integrated with fine BAOAB steps, end with the Gaussian's moments."""
    lag, steps, walkers = 1.5, 600, 40000
    dt = lag / steps
    rng = np.random.default_rng(1)
    start = np.array([[0.8, -0.5], [2.0, 0.3]])  # (mode, [Q, P])
    w, gamma = W.numpy(), GAMMA.numpy()
    Q = np.broadcast_to(start[:, 0], (walkers, 2)).copy()
    P = np.broadcast_to(start[:, 1], (walkers, 2)).copy()
    decay = np.exp(-gamma * dt)
    for _ in range(steps):
        P -= 0.5 * dt * w**2 * Q
        Q += 0.5 * dt * P
        P = decay * P + np.sqrt(1 - decay**2) * rng.normal(size=P.shape)
        Q += 0.5 * dt * P
        P -= 0.5 * dt * w**2 * Q
    propagator, covariance = ou_transition(W, GAMMA, lag)
    for k in range(2):
        sample = np.stack([Q[:, k], P[:, k]], 1)
        mean = propagator[k].numpy() @ start[k]
        cov = covariance[k].numpy()
        standard_error = np.sqrt(np.diag(cov) / walkers)
        assert np.all(np.abs(sample.mean(0) - mean) < 5 * standard_error)
        assert np.allclose(np.cov(sample.T), cov, atol=0.03 * cov.max())
    # The log-density is that of the bivariate normal of these moments.
    z0 = torch.tensor(np.concatenate([start[:, 0], start[:, 1]]))[None]
    z1 = torch.tensor(np.concatenate([Q[:5], P[:5]], 1))
    log_p = ou_mode_log_transition(z0.expand(5, -1), z1, W, GAMMA, lag)
    for k in range(2):
        normal = torch.distributions.MultivariateNormal(
            propagator[k] @ z0[0, [k, 2 + k]], covariance_matrix=covariance[k]
        )
        assert torch.allclose(log_p[:, k], normal.log_prob(z1[:, [k, 2 + k]]), atol=1e-10)


def test_configuration_only_density_is_the_marginal_of_the_phase_space_one():
    """Q(t+tau) | Q(t): the phase-space transition averaged over Maxwell-Boltzmann P(t), integrated over P(t+tau)."""
    lag = 0.8
    z0 = torch.tensor([[0.7, -1.1, 0.0, 0.0]])
    Q1 = torch.tensor([[0.2, 1.5]])
    P_grid = torch.linspace(-8, 8, 801)
    p0, p1 = torch.meshgrid(P_grid, P_grid, indexing="ij")
    points = torch.stack([p0.reshape(-1), p1.reshape(-1)], 1)
    for k in range(2):
        start = z0.repeat(len(points), 1)
        start[:, 2 + k] = points[:, 0]
        end = torch.cat([Q1.repeat(len(points), 1), torch.zeros(len(points), 2)], 1)
        end[:, 2 + k] = points[:, 1]
        joint = (
            ou_mode_log_transition(start, end, W, GAMMA, lag)[:, k]
            - 0.5 * points[:, 0] ** 2
            - 0.5 * math.log(2 * math.pi)
        )
        marginal = joint.exp().sum() * (P_grid[1] - P_grid[0]) ** 2
        expected = ou_mode_log_transition(
            z0, torch.cat([Q1, torch.zeros(1, 2)], 1), W, GAMMA, lag, configuration_only=True
        )[0, k]
        assert abs(marginal.log().item() - expected.item()) < 1e-6


@pytest.mark.parametrize("configuration_only", [False, True])
def test_mean_transition_from_second_moments_is_the_mean_over_pairs(configuration_only):
    """The moment form of the mean log-density equals the plain mean for every parameter set, and the
    friction start it serves is the grid point of highest mean likelihood."""
    generator = torch.Generator().manual_seed(3)
    z0 = torch.randn(5000, 4, generator=generator, dtype=torch.float64) * torch.tensor(
        [2.0, 0.5, 1.0, 1.0], dtype=torch.float64
    )
    z1 = 0.6 * z0 + 0.3 * torch.randn(5000, 4, generator=generator, dtype=torch.float64) + 0.1
    frictions = torch.tensor([[0.01, 0.2], [1.0, 3.0], [40.0, 900.0]], dtype=torch.float64)
    for lag in (0.01, 0.8, 5.0):
        fast = mean_log_transition(z0, z1, W.expand(3, -1), frictions, lag, configuration_only)
        plain = torch.stack(
            [ou_mode_log_transition(z0, z1, W, gamma, lag, configuration_only).mean(0) for gamma in frictions]
        )
        assert torch.allclose(fast, plain, rtol=1e-9, atol=1e-9)
    dynamics = LatentLangevin(2).double()
    dynamics.initialize(z0, z1, W, 0.8, configuration_only, grid=41)
    ratios = torch.logspace(-2, 4, 41, dtype=torch.float64)
    plain = torch.stack(
        [ou_mode_log_transition(z0, z1, W, ratio * W, 0.8, configuration_only).mean(0) for ratio in ratios]
    )
    assert torch.allclose(dynamics.frictions, ratios[plain.argmax(0)] * W)


def test_relaxation_times_are_those_of_the_drift_eigenvalues():
    times = relaxation_times(W, GAMMA)
    for k in range(2):
        eigenvalues = np.linalg.eigvals(ou_drift(W, GAMMA)[k].numpy())
        assert times[k].item() == pytest.approx(1 / np.abs(eigenvalues.real).min(), rel=1e-12)


POINT = [{"type": "linear", "point": True}, {"type": "point", "n_layers": 2, "hidden": 8}]


def test_model_with_dynamics_stays_canonical_and_sorts_by_relaxation_time(tmp_path):
    model = NeuralCanonicalTransformation(
        3, masses=torch.tensor([1.0, 2.0, 5.0]), kT=2.5, architecture=POINT, time_unit=0.5, latent_dynamics=True
    )
    randomize(model, 0.2)
    with torch.no_grad():
        model.prior.frequency_layer.log_frequencies.copy_(torch.tensor([0.1, -0.5, 0.6]))
        model.dynamics.log_frictions.copy_(torch.tensor([3.0, -1.0, 0.2]))
    times = model.relaxation_times
    assert torch.all(times[1:] <= times[:-1])
    # Relaxation order differs from frequency order here: the stiff, strongly damped mode is the slowest.
    assert not torch.equal(model.frequencies, torch.sort(model.frequencies).values)
    q, p = torch.randn(5, 3), torch.randn(5, 3)
    Q, P = model.encode(q, p)
    q_back, p_back = model.decode(Q, P)
    assert torch.allclose(q_back, q, atol=1e-10) and torch.allclose(p_back, p, atol=1e-10)
    assert torch.allclose(model.cv(q), Q, atol=1e-12)
    J = symplectic_form(3)
    x0 = torch.cat([q[0], p[0]])
    M = torch.autograd.functional.jacobian(lambda x: torch.cat(model.encode(x[:3][None], x[3:][None]), -1)[0], x0)
    assert torch.allclose(M.T @ J @ M, J / (model.kT * model.time_unit), atol=1e-10)
    model.save(tmp_path / "model.pt")
    loaded = neuralct.load(tmp_path / "model.pt")
    assert torch.equal(loaded.frictions, model.frictions) and torch.equal(loaded.cv(q), model.cv(q))


def test_configuration_only_pairs_draw_maxwell_boltzmann_momenta_at_the_models_temperature():
    """Without recorded momenta the start's momenta are drawn from Maxwell-Boltzmann, p ~ N(0, m kT): at kT = 2.5
    and masses (1, 2, 5) the reduced momenta p / sqrt(m kT), which an identity flow passes on, are N(0, I)."""
    from neuralct.flows.base import split_phase_space

    masses = torch.tensor([1.0, 2.0, 5.0])
    model = NeuralCanonicalTransformation(
        3, masses=masses, kT=2.5, architecture=[{"type": "linear", "point": True}], latent_dynamics=True
    )
    x = torch.randn(4, 6)
    assert torch.equal(model.flow(x)[0], x)  # a linear layer not yet initialised is the identity
    q = torch.randn(50001, 3)
    pairs = lagged_pairs([len(q)], 1)
    objective = LaggedLikelihood(q, None, LaggedPairs(pairs, None, 1, 1.0))
    with torch.no_grad():
        z0, _, _ = objective.latent_pairs(model, *objective.train_pairs, torch.Generator().manual_seed(0))
    momenta = split_phase_space(z0)[1].numpy()
    assert np.allclose(momenta.mean(0), 0.0, atol=0.02)
    assert np.allclose(np.cov(momenta.T), np.eye(3), atol=0.03), np.cov(momenta.T)


def test_model_without_dynamics_is_unchanged(tmp_path):
    model = NeuralCanonicalTransformation(3, architecture=POINT)
    assert model.dynamics is None and model.frictions is None and model.relaxation_times is None
    assert not any("dynamics" in key for key in model.state_dict())
    model.save(tmp_path / "model.pt")
    assert neuralct.load(tmp_path / "model.pt").dynamics is None


def harmonic_langevin_trajectory(
    stiffness: np.ndarray, friction: float, dt: float, frames: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact discretisation of unit-mass Langevin dynamics in U = q^T K q / 2, kT = 1: positions, on-step momenta."""
    n = len(stiffness)
    drift = np.block([[np.zeros((n, n)), np.eye(n)], [-stiffness, -friction * np.eye(n)]])
    stationary = scipy.linalg.block_diag(np.linalg.inv(stiffness), np.eye(n))
    propagator = scipy.linalg.expm(drift * dt)
    noise = np.linalg.cholesky(stationary - propagator @ stationary @ propagator.T)
    rng = np.random.default_rng(seed)
    x = np.empty((frames, 2 * n))
    x[0] = np.linalg.cholesky(stationary) @ rng.normal(size=2 * n)
    for t in range(1, frames):
        x[t] = propagator @ x[t - 1] + noise @ rng.normal(size=2 * n)
    return x[:, :n], x[:, n:]


@pytest.mark.parametrize("momenta, tolerance", [("recorded", 0.05), ("resample", 0.2)])
def test_learning_recovers_frequencies_and_friction_of_a_harmonic_system(momenta, tolerance):
    """Rotated harmonic oscillators with isotropic friction: every normal mode is an OU process (w_k, gamma).

    With recorded momenta the phase-space transition density is fitted; with resampled ones
    the configuration-only term, which sees the friction through the autocorrelation of Q alone
    and pins it less tightly (measured: 0.2% and 0.4% off with recorded momenta, 6% and 17%
    configuration-only, on these 30000 frames).
    """
    frequencies, friction, dt = np.array([0.5, 2.0]), 0.8, 0.25
    rotation = np.array([[np.cos(0.6), -np.sin(0.6)], [np.sin(0.6), np.cos(0.6)]])
    stiffness = rotation @ np.diag(frequencies**2) @ rotation.T
    q, p = harmonic_langevin_trajectory(stiffness, friction, dt, 40000, seed=3)
    lag_frames = 2
    pairs = lagged_pairs([30000, 10000], lag_frames)
    train_mask = pairs[1] < 30000
    train_pairs = (pairs[0][train_mask], pairs[1][train_mask])
    valid_pairs = (pairs[0][~train_mask], pairs[1][~train_mask])
    model = NeuralCanonicalTransformation(2, architecture=[{"type": "linear", "point": True}], latent_dynamics=True)
    model.initialize(torch.tensor(q[:30000]), generator=torch.Generator().manual_seed(0))
    recorded = torch.tensor(p) if momenta == "recorded" else None
    objective = LaggedLikelihood(
        torch.tensor(q), recorded, LaggedPairs(train_pairs, valid_pairs, lag_frames, lag_frames * dt)
    )
    objective.initialize_frictions(model)
    train(
        model,
        objective,
        TrainingSettings(steps=300, batch_size=1024, learning_rate=3e-3, validate_every=50, progress=False),
    )
    learned_w = np.sort(model.frequencies.detach().numpy())
    assert np.allclose(learned_w, frequencies, rtol=0.02)
    assert np.allclose(model.frictions.detach().numpy(), friction, rtol=tolerance)
    # The slow relaxation comes first: gamma/2 for both underdamped modes, so ties are allowed.
    assert model.relaxation_times[0] >= model.relaxation_times[1]


@pytest.mark.parametrize("momenta", ["recorded", "resample"])
def test_vamp2_term_over_several_lags_is_the_mean_of_the_scores_at_each_lag(momenta):
    """The validation loss is the pair likelihood minus the weight times the mean nested VAMP-2 over the lags,

    each computed here directly from the flow's latent positions; one lag equal to the transition
    lag gives the single-lag term, and the minibatch loss sees every lag (its gradient reaches the flow).
    """
    from neuralct.flows.base import split_phase_space

    stiffness = np.array([[1.0, 0.3], [0.3, 0.25]])
    q, p = harmonic_langevin_trajectory(stiffness, 0.8, 0.25, 3000, seed=5)
    q, p = torch.tensor(q), torch.tensor(p)
    recorded = p if momenta == "recorded" else None

    def pairs(lag_frames):
        return split_lagged_pairs([2000, 1000], lag_frames * 0.25, 0.25, np.arange(2000), np.arange(2000, 3000))

    model = NeuralCanonicalTransformation(2, architecture=POINT, latent_dynamics=True).double()
    model.initialize(q[:2000], generator=torch.Generator().manual_seed(0))
    randomize(model, scale=0.2)
    transition = pairs(2)
    plain = LaggedLikelihood(q, recorded, transition)
    several = LaggedLikelihood(q, recorded, transition, vamp_weight=3.0, vamp_pairs=[pairs(1), pairs(2), pairs(4)])
    single = LaggedLikelihood(q, recorded, transition, vamp_weight=3.0)
    as_single = LaggedLikelihood(q, recorded, transition, vamp_weight=3.0, vamp_pairs=[pairs(2)])
    with torch.no_grad():
        z, _ = model.flow(model.to_reduced(q, p))
    Q = split_phase_space(z)[0][:, model.mode_order()[:2]]
    scores = [float(nested_vamp2(Q[lagged.valid[0]], Q[lagged.valid[1]])) for lagged in (pairs(1), pairs(2), pairs(4))]
    assert several.validation_loss(model) == pytest.approx(
        plain.validation_loss(model) - 3.0 * np.mean(scores), rel=1e-10, abs=1e-10
    )
    assert as_single.validation_loss(model) == pytest.approx(single.validation_loss(model), rel=1e-12)
    # The lag of the transition density scores its own minibatch: the same loss as the single-lag term, from the
    # same draws. Every minibatch goes through the flow in one pass per step.
    same = [term.loss(model, 64, torch.Generator().manual_seed(7)) for term in (as_single, single)]
    assert float(same[0]) == float(same[1])
    if momenta == "recorded":
        # The minibatch loss from its draws, computed here: transition pairs (2 frames), and the pairs of 1 and of
        # 4 frames that start at the same frames, where the trajectory's training frames reach that far.
        pick = torch.randint(len(transition.train[0]), (64,), generator=torch.Generator().manual_seed(1))
        starts = torch.as_tensor(transition.train[0])[pick]
        log_p, _, _ = plain._pair_terms(model, starts, torch.as_tensor(transition.train[1])[pick], None)
        minibatch = []
        for lagged in (pairs(1), pairs(2), pairs(4)):
            partner = dict(zip(lagged.train[0].tolist(), lagged.train[1].tolist()))
            kept = [start for start in starts.tolist() if start in partner]
            assert len(kept) >= 60
            minibatch.append(float(nested_vamp2(Q[kept], Q[[partner[start] for start in kept]])))
        expected = -float(log_p.mean()) - 3.0 * np.mean(minibatch)
        assert float(several.loss(model, 64, torch.Generator().manual_seed(1))) == pytest.approx(expected, rel=1e-10)
    passes = []
    hook = model.flow.register_forward_hook(lambda *_: passes.append(1))
    several.loss(model, 64, torch.Generator().manual_seed(1))
    hook.remove()
    assert len(passes) == 1
    assert len(set(np.round(scores, 6))) == 3  # the lags differ, so the mean is not one lag's score
    loss = several.loss(model, 64, torch.Generator().manual_seed(1))
    loss.backward()
    assert torch.isfinite(loss) and all(
        torch.isfinite(w.grad).all() for w in model.flow.parameters() if w.grad is not None
    )
    with pytest.raises(NeuralCTError, match="every VAMP-2 lag"):
        LaggedLikelihood(q, recorded, transition, vamp_weight=1.0, vamp_pairs=[pairs(1), pairs(2500)])
    # 1500 frames: pairs inside the 2000 training frames, none inside the 1000 validation ones.
    with pytest.raises(NeuralCTError, match="leaves no validation pairs"):
        LaggedLikelihood(q, recorded, transition, vamp_weight=1.0, vamp_pairs=[pairs(1), pairs(1500)])


def test_a_vamp_lag_that_few_transition_starts_reach_draws_its_own_minibatch():
    """Pairs 1500 frames apart start at only a quarter of the frames that start transition pairs: that lag is scored
    on a minibatch of its own (a second pass of the flow), not on the few shared starts."""
    stiffness = np.array([[1.0, 0.3], [0.3, 0.25]])
    q, p = (torch.tensor(a) for a in harmonic_langevin_trajectory(stiffness, 0.8, 0.25, 3000, seed=5))
    transition = split_lagged_pairs([2000, 1000], 0.5, 0.25, np.arange(2000), np.arange(2000, 3000))
    long = LaggedPairs(
        (np.arange(500), np.arange(1500, 2000)), (np.arange(2000, 2100), np.arange(2900, 3000)), 1500, 375.0
    )
    model = NeuralCanonicalTransformation(2, architecture=POINT, latent_dynamics=True).double()
    model.initialize(q[:2000], generator=torch.Generator().manual_seed(0))
    randomize(model, scale=0.2)
    objective = LaggedLikelihood(q, p, transition, vamp_weight=3.0, vamp_pairs=[transition, long])
    passes = []
    hook = model.flow.register_forward_hook(lambda *_: passes.append(1))
    loss = objective.loss(model, 64, torch.Generator().manual_seed(2))
    hook.remove()
    assert len(passes) == 2
    loss.backward()
    assert torch.isfinite(loss) and all(
        torch.isfinite(w.grad).all() for w in model.flow.parameters() if w.grad is not None
    )


def test_lagged_objective_rejects_models_it_cannot_train():
    q = torch.randn(10, 2)
    objective = LaggedLikelihood(q, None, LaggedPairs(lagged_pairs([10], 1), None, 1, 1.0))
    with pytest.raises(NeuralCTError, match="latent dynamics"):
        objective.loss(NeuralCanonicalTransformation(2, architecture=POINT), 4, torch.Generator())
    mixed = NeuralCanonicalTransformation(2, architecture=[{"type": "linear"}], latent_dynamics=True)
    with pytest.raises(NeuralCTError, match="point-transformation"):
        objective.loss(mixed, 4, torch.Generator())


def test_lag_in_frames_needs_a_whole_multiple_of_the_frame_time():
    assert lag_in_frames(2.0, 0.5) == 4
    # Spacings and lags that are not binary fractions: 0.3 / 0.1 is 2.9999999999999996 in float64.
    for step in (0.1, 0.3, 0.7, 0.4):
        for frames in (1, 2, 3, 5, 7, 10, 30, 1000):
            assert lag_in_frames(float(f"{frames * step:.10g}"), step) == frames
    for lag, step in ((0.7, 0.5), (0.2, 0.5), (0.25, 0.1), (0.05, 0.1), (-1.0, 0.5), (1.0, None)):
        with pytest.raises(NeuralCTError, match="--lag-ps"):
            lag_in_frames(lag, step)


def test_split_lagged_pairs_converts_the_lag_once_and_keeps_each_pair_inside_one_part():
    """Two trajectories of 10 and 6 frames 0.5 ps apart, the last 3 frames of the first held out."""
    pairs = split_lagged_pairs([10, 6], 1.0, 0.5, np.r_[0:7, 10:16], np.arange(7, 10))
    assert isinstance(pairs, LaggedPairs) and pairs.lag_frames == 2 and pairs.lag_ps == 1.0
    first, second = pairs.train
    assert first.tolist() == [0, 1, 2, 3, 4, 10, 11, 12, 13] and np.array_equal(second, first + 2)
    assert pairs.valid[0].tolist() == [7] and pairs.valid[1].tolist() == [9]
    # Errors name the argument that gave the lag, as the command line translates it to its flag.
    with pytest.raises(NeuralCTError, match="^`vamp_lags_ps` 0.7 is not a whole multiple of the 0.5 ps between frames"):
        split_lagged_pairs([10, 6], 0.7, 0.5, np.arange(16), np.arange(0), "`vamp_lags_ps`")


def two_ar1_processes(seed: int, frames: int = 40000) -> np.ndarray:
    """Two independent stationary AR(1) processes of unit variance, autocorrelations 0.8 and 0.5: (frames, 2)."""
    rng = np.random.default_rng(seed)
    c = np.array([0.8, 0.5])
    x = np.empty((frames, 2))
    x[0] = rng.normal(size=2)
    for t in range(1, frames):
        x[t] = c * x[t - 1] + np.sqrt(1 - c**2) * rng.normal(size=2)
    return x


def test_batch_vamp2_is_deeptimes_score_and_differentiable():
    """On pairs of two AR(1) processes (autocorrelations 0.8, 0.5), VAMP-2 is 0.8^2 + 0.5^2, as deeptime computes."""
    from deeptime.decomposition import VAMP

    x = two_ar1_processes(seed=2)
    mixed = x @ np.array([[1.0, 0.4], [-0.3, 2.0]])
    first, second = torch.tensor(mixed[:-1], requires_grad=True), torch.tensor(mixed[1:])
    score = batch_vamp2(first, second, ridge=0.0)
    reference = VAMP(dim=2).fit((mixed[:-1], mixed[1:])).fetch_model().score(r=2) - 1.0
    assert score.item() == pytest.approx(reference, abs=1e-3)
    assert score.item() == pytest.approx(0.8**2 + 0.5**2, abs=0.02)
    score.backward()
    assert torch.isfinite(first.grad).all()
    # The nested score sees the order: slow process first gives (0.8^2 + (0.8^2 + 0.5^2)) / 2, fast first less.
    slow_first = nested_vamp2(torch.tensor(x[:-1]), torch.tensor(x[1:]))
    fast_first = nested_vamp2(torch.tensor(x[:-1, ::-1].copy()), torch.tensor(x[1:, ::-1].copy()))
    assert slow_first.item() == pytest.approx((0.8**2 + 0.8**2 + 0.5**2) / 2, abs=0.02)
    assert fast_first.item() == pytest.approx((0.5**2 + 0.8**2 + 0.5**2) / 2, abs=0.02)


def test_batch_vamp2_excludes_the_constant_function_so_an_offset_changes_nothing():
    """VAMP-2 of mean-free functions: shifting x by (3, -5) and y by (-2, 7) leaves the score, and deeptime's
    score of the shifted pairs (constant singular value 1 removed) is still 0.8^2 + 0.5^2."""
    from deeptime.decomposition import VAMP

    x = two_ar1_processes(seed=5)
    first, second = x[:-1], x[1:]
    shifted_first, shifted_second = first + np.array([3.0, -5.0]), second + np.array([-2.0, 7.0])
    centred = batch_vamp2(torch.tensor(first), torch.tensor(second), ridge=0.0).item()
    shifted = batch_vamp2(torch.tensor(shifted_first), torch.tensor(shifted_second), ridge=0.0).item()
    assert shifted == pytest.approx(centred, abs=1e-10)
    reference = VAMP(dim=2).fit((shifted_first, shifted_second)).fetch_model().score(r=2) - 1.0
    assert shifted == pytest.approx(reference, abs=1e-3)
    assert shifted == pytest.approx(0.8**2 + 0.5**2, abs=0.02)


def test_a_vamp2_of_non_finite_cvs_is_nan_not_an_exception():
    """A diverging training's CVs give a NaN score, which the loop reports as a divergence in one line."""
    values = torch.randn(64, 2, dtype=torch.float64)
    values[3, 1] = torch.nan
    assert torch.isnan(batch_vamp2(values, torch.randn(64, 2, dtype=torch.float64)))


def test_the_vamp2_term_scores_as_many_slowest_modes_as_asked():
    """With ``vamp_modes`` k the term is the nested VAMP-2 score of the k slowest latent positions (of three)."""
    from neuralct.flows.base import split_phase_space

    stiffness = np.array([[1.0, 0.3, 0.0], [0.3, 0.25, 0.05], [0.0, 0.05, 2.5]])
    q, p = harmonic_langevin_trajectory(stiffness, 0.8, 0.25, 3000, seed=6)
    q = torch.tensor(q)
    transition = split_lagged_pairs([2000, 1000], 0.5, 0.25, np.arange(2000), np.arange(2000, 3000))
    model = NeuralCanonicalTransformation(3, architecture=POINT, latent_dynamics=True).double()
    model.initialize(q[:2000], generator=torch.Generator().manual_seed(0))
    randomize(model, scale=0.2)
    with torch.no_grad():
        z, _ = model.flow(model.to_reduced(q, torch.zeros_like(q)))
    order = model.mode_order()
    plain = LaggedLikelihood(q, None, transition).validation_loss(model)
    scores = []
    for k in (1, 2, 3):
        Q = split_phase_space(z)[0][:, order[:k]]
        score = float(nested_vamp2(Q[transition.valid[0]], Q[transition.valid[1]]))
        term = LaggedLikelihood(q, None, transition, vamp_weight=3.0, vamp_modes=k)
        assert term.validation_loss(model) == pytest.approx(plain - 3.0 * score, rel=1e-10, abs=1e-10)
        scores.append(score)
    # Each further mode adds its own score: the three terms differ.
    assert scores[0] < scores[1] < scores[2]
    assert LaggedLikelihood(q, None, transition, vamp_weight=3.0).vamp_modes == 2
    with pytest.raises(NeuralCTError, match="`vamp_modes` must be at least 1"):
        LaggedLikelihood(q, None, transition, vamp_weight=3.0, vamp_modes=0)
