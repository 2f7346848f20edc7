"""The model as physics: exact densities, canonical latent variables, files."""

import math

import pytest
import torch

import neuralct
from neuralct.errors import NeuralCTError
from neuralct.flows import symplectic_form
from neuralct.model.transformation import NeuralCanonicalTransformation
from neuralct.toys.hamiltonians import HarmonicChain

from tests.flows.test_flows import randomize

N = 3
MIXED = [
    {"type": "linear"},
    {"type": "point", "n_layers": 2, "hidden": 8},
    {"type": "continuous", "steps": 2, "hidden": 8},
]
POINT = [{"type": "linear", "point": True}, {"type": "point", "n_layers": 2, "hidden": 8}]


def random_model(architecture, masses=(1.0, 2.0, 12.0), kT=2.5, time_unit=0.5):
    model = NeuralCanonicalTransformation(
        N, masses=torch.tensor(masses), kT=kT, architecture=architecture, time_unit=time_unit
    )
    randomize(model, 0.2)
    with torch.no_grad():
        model.position_offset.normal_()
    return model


def test_linear_model_density_is_the_exact_gaussian():
    """A linear map pulls the harmonic prior back to a Gaussian; units included."""
    model = random_model([{"type": "linear"}])
    M = model.flow.layers[0].matrix()
    scale = torch.cat([torch.sqrt(model.masses / model.kT) / model.time_unit, 1 / torch.sqrt(model.masses * model.kT)])
    w = model.prior.frequencies
    latent_cov = torch.diag(torch.cat([1 / w**2, torch.ones(N)]))
    A = M @ torch.diag(scale)
    cov = torch.linalg.inv(A) @ latent_cov @ torch.linalg.inv(A).T
    mean = torch.cat([model.position_offset, torch.zeros(N)])
    reference = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    x = reference.sample((50,))
    q, p = x[:, :N], x[:, N:]
    assert torch.allclose(model.log_prob(q, p), reference.log_prob(x), atol=1e-10)


def test_density_integrates_to_one_in_two_dimensions():
    model = NeuralCanonicalTransformation(
        1, masses=torch.tensor([3.0]), kT=0.7, architecture=[{"type": "continuous", "steps": 2, "hidden": 8}]
    )
    randomize(model, 0.3)
    grid = torch.linspace(-12, 12, 401)
    q, p = torch.meshgrid(grid, grid, indexing="ij")
    density = model.log_prob(q.reshape(-1, 1), p.reshape(-1, 1)).exp()
    total = density.sum() * (grid[1] - grid[0]) ** 2
    assert abs(total.item() - 1.0) < 1e-3


@pytest.mark.parametrize("architecture", [MIXED, POINT])
def test_encode_is_canonical_sorted_and_inverted_by_decode(architecture):
    model = random_model(architecture)
    q, p = torch.randn(6, N), torch.randn(6, N)
    Q, P = model.encode(q, p)
    q_back, p_back = model.decode(Q, P)
    assert torch.allclose(q_back, q, atol=1e-10) and torch.allclose(p_back, p, atol=1e-10)
    assert torch.all(model.frequencies[1:] >= model.frequencies[:-1])
    # Latent Hamiltonian equals the prior energy of the unsorted latent point.
    z, _ = model.flow(model.to_reduced(q, p))
    K = 0.5 * (P**2 + (model.frequencies * Q) ** 2).sum(-1)
    assert torch.allclose(K, model.prior.energy(z), atol=1e-10)
    # encode is exactly symplectic up to the constant conformal factor of the units: M^T J M = J / (kT tau).
    J = symplectic_form(N)
    x0 = torch.cat([q[0], p[0]])
    M = torch.autograd.functional.jacobian(
        lambda x: torch.cat(model.encode(x[:N].unsqueeze(0), x[N:].unsqueeze(0)), -1).squeeze(0), x0
    )
    assert torch.allclose(M.T @ J @ M, J / (model.kT * model.time_unit), atol=1e-10)


def test_cv_is_a_function_of_positions_for_point_models():
    model = random_model(POINT)
    q = torch.randn(5, N)
    Q, _ = model.encode(q, torch.randn(5, N))
    assert torch.allclose(model.cv(q), Q, atol=1e-12)
    assert torch.allclose(model.cv(q, k=2), Q[:, :2], atol=1e-12)
    mixed = random_model(MIXED)
    with pytest.raises(NeuralCTError):
        mixed.cv(q)
    p = torch.randn(5, N)
    assert torch.allclose(mixed.cv(q, p=p), mixed.encode(q, p)[0])


def test_the_api_takes_one_point_arrays_and_other_dtypes_and_refuses_other_widths(tmp_path):
    """A notebook user's inputs: one point (n,), numpy arrays, float32 data for a float64 model and the
    reverse; a width of 1 would broadcast against the model's n coordinates, so it is refused."""
    import numpy as np

    model = random_model(POINT)
    q, p = torch.randn(4, N), torch.randn(4, N)
    Q, P = model.encode(q, p)
    one_Q, one_P = model.encode(q[0], p[0])
    assert one_Q.shape == (N,) and torch.equal(one_Q, Q[0]) and torch.equal(one_P, P[0])
    assert model.log_prob(q[0], p[0]).shape == () and torch.equal(model.log_prob(q[0], p[0]), model.log_prob(q, p)[0])
    assert torch.equal(model.cv(q[0], k=2), model.cv(q, k=2)[0])
    assert torch.allclose(torch.stack(model.decode(one_Q, one_P)), torch.stack([q[0], p[0]]), atol=1e-10)
    assert torch.equal(model.cv(q.numpy()), model.cv(q)) and torch.equal(model.cv(q.tolist()), model.cv(q))
    # Gradients through one point: the Jacobian of the CVs in positions.
    jacobian = torch.autograd.functional.jacobian(lambda x: model.cv(x), q[0])
    assert torch.allclose(
        jacobian[:, 0], (model.cv(q[0] + torch.tensor([1e-6, 0, 0])) - model.cv(q[0])) / 1e-6, atol=1e-4
    )
    single = random_model(POINT).float()
    assert single.cv(q).dtype == torch.float32 and torch.allclose(single.cv(q), single.cv(q.float()))
    assert model.cv(q.float()).dtype == torch.float64
    for call in (lambda: model.cv(torch.zeros(3, 1)), lambda: model.encode(torch.zeros(3, 1), p)):
        with pytest.raises(NeuralCTError, match=r"^`q` has shape \(3, 1\); this model takes \(3,\) or \(batch, 3\)$"):
            call()
    with pytest.raises(NeuralCTError, match=r"^`P` has shape \(2, 2, 3\)"):
        model.decode(Q, torch.zeros(2, 2, N))
    for k in (0, N + 1, -1, 1.5, True):
        with pytest.raises(NeuralCTError, match=f"give a whole number from 1 to {N}"):
            model.cv(q, k=k)
    assert torch.equal(model.cv(q, k=np.int64(2)), model.cv(q, k=2))
    if not torch.cuda.is_available():
        model.save(tmp_path / "model.pt")
        with pytest.raises(NeuralCTError, match="this torch sees no CUDA GPU; load the model on 'cpu'"):
            neuralct.load(tmp_path / "model.pt", device="cuda")
    with pytest.raises(NeuralCTError, match="is not a torch device"):
        neuralct.load(tmp_path / "model.pt", device="gpu0")


def test_samples_follow_the_model_density():
    """Samples of a linear model have the covariance its density says."""
    model = random_model([{"type": "linear"}])
    q, p = model.sample(200000, torch.Generator().manual_seed(0))
    x = torch.cat([q, p], 1)
    M = model.flow.layers[0].matrix()
    scale = torch.cat([torch.sqrt(model.masses / model.kT) / model.time_unit, 1 / torch.sqrt(model.masses * model.kT)])
    A = torch.linalg.inv(M @ torch.diag(scale))
    w = model.prior.frequencies
    expected = A @ torch.diag(torch.cat([1 / w**2, torch.ones(N)])) @ A.T
    assert torch.allclose(torch.cov(x.T), expected, rtol=0.05, atol=0.02 * expected.abs().max().item())


def test_data_start_is_exact_for_a_harmonic_chain():
    chain = HarmonicChain(6, kappa=2.0, masses=[1, 2, 3, 1, 2, 3])
    q, _ = chain.sample(100000, seed=3)
    model = NeuralCanonicalTransformation(6, masses=torch.tensor(chain.masses), architecture=POINT)
    model.initialize(torch.tensor(q))
    errors = (model.frequencies / torch.tensor(chain.frequencies()) - 1).abs()
    assert errors.max() < 0.01


@pytest.mark.parametrize("architecture", [MIXED, POINT])
def test_save_and_load_reproduce_the_model(architecture, tmp_path):
    model = random_model(architecture)
    model.metadata["note"] = "kept"
    model.save(tmp_path / "model.pt")
    loaded = neuralct.load(tmp_path / "model.pt")
    q, p = torch.randn(4, N), torch.randn(4, N)
    assert torch.equal(model.log_prob(q, p), loaded.log_prob(q, p))
    assert torch.equal(model.frequencies, loaded.frequencies)
    assert loaded.metadata["note"] == "kept" and loaded.kT == model.kT


def test_load_rejects_foreign_and_corrupt_files(tmp_path):
    with pytest.raises(NeuralCTError, match="does not exist"):
        neuralct.load(tmp_path / "missing.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(NeuralCTError, match="cannot be read"):
        neuralct.load(tmp_path / "corrupt.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(NeuralCTError, match="not a neuralct model"):
        neuralct.load(tmp_path / "foreign.pt")
    model = random_model(POINT)
    model.save(tmp_path / "model.pt")
    contents = torch.load(tmp_path / "model.pt", weights_only=True)
    contents["architecture"] = [{"type": "linear"}]
    torch.save(contents, tmp_path / "tampered.pt")
    with pytest.raises(NeuralCTError, match="does not match"):
        neuralct.load(tmp_path / "tampered.pt")


def test_free_energy_of_the_prior():
    model = random_model(POINT)
    expected = sum(math.log(w / (2 * math.pi)) for w in model.prior.frequencies.tolist())
    assert abs(model.prior.free_energy().item() - expected) < 1e-12


def _molecule_metadata():
    """A valid record of a 3-atom molecule (3 N - 6 = 3 internal coordinates, as N above)."""
    from neuralct.data.frame import RigidBodyFrame

    frame = RigidBodyFrame(
        torch.tensor([[0.0, 0.0, 0.0], [0.15, 0.0, 0.0], [0.2, 0.12, 0.0]]).numpy(), [12.0, 14.0, 16.0]
    )
    return {
        "kind": "molecule",
        "n_atoms": 5,
        "selection": "heavy",
        "atom_indices": [0, 2, 4],
        "atom_names": ["ALA:C", "ALA:N", "ALA:O"],
        "temperature_K": 300.0,
        "frame": frame.state_dict(),
    }


def _set(path):
    """A tampering that puts ``value`` at ``path`` (keys, then a callable making the value from the old one)."""
    *keys, make = path

    def tamper(contents):
        target = contents
        for key in keys[:-1]:
            target = target[key]
        if make is del_:
            del target[keys[-1]]
        else:
            target[keys[-1]] = make(target[keys[-1]])

    return tamper


def del_(old):
    return None


TAMPERINGS = {
    "missing state_dict": (["state_dict", del_], "missing state_dict"),
    "dim as text": (["dim", lambda old: "3"], "dim must be a positive integer"),
    "negative dim": (["dim", lambda old: -3], "dim must be a positive integer"),
    "NaN kT": (["kT", lambda old: float("nan")], "kT must be a finite positive number"),
    "zero time unit": (["time_unit", lambda old: 0.0], "time_unit must be a finite positive number"),
    "architecture not a list": (["architecture", lambda old: "linear"], "architecture must be a non-empty list"),
    "unknown layer": (["architecture", lambda old: [{"type": "magic"}]], "architecture layer 0 must be a dict"),
    "negative width": (
        ["architecture", lambda old: [old[0], dict(old[1], hidden=-8)]],
        "hidden must be true, false or a positive integer",
    ),
    "fewer layers": (["architecture", lambda old: old[:1]], "does not match its own architecture"),
    "NaN weight": (
        ["state_dict", "flow.layers.0.A", lambda old: old * float("nan")],
        "flow.layers.0.A holds NaN or infinite values",
    ),
    "weight as a list": (
        ["state_dict", "flow.layers.0.A", lambda old: old.tolist()],
        "flow.layers.0.A must be a tensor",
    ),
    "weight of another shape": (
        ["state_dict", "flow.layers.0.A", lambda old: old[:1]],
        "does not match its own architecture",
    ),
    "masses of another shape": (
        ["state_dict", "masses", lambda old: old[:2]],
        "masses must be floating-point of shape (3,)",
    ),
    "negative mass": (["state_dict", "masses", lambda old: -old], "masses must be positive"),
    "mixed dtypes": (["state_dict", "position_offset", lambda old: old.float()], "share one dtype"),
    "metadata as a list": (["metadata", lambda old: []], "metadata must be a mapping"),
    "atom index out of range": (["metadata", "molecule", "atom_indices", lambda old: [0, 2, 9]], "atom_indices"),
    "atom index equal to the atom count": (
        ["metadata", "molecule", "atom_indices", lambda old: [0, 2, 5]],
        "atom_indices must list at least 3 atom indices below n_atoms",
    ),
    "missing frame basis": (["metadata", "molecule", "frame", "basis", del_], "frame.basis must be a finite tensor"),
    "a massless atom in the frame": (
        ["metadata", "molecule", "frame", "masses", lambda old: old * torch.tensor([1.0, 0.0, 1.0])],
        "frame.masses must be positive",
    ),
    "frame basis of another shape": (
        ["metadata", "molecule", "frame", "basis", lambda old: old[:, :2]],
        "frame.basis must be a finite tensor",
    ),
    "ranking without autocorrelations": (
        ["metadata", lambda old: {**old, "mode_ranking": {"order": [2, 0, 1], "lag_ps": 1.0}}],
        "mode_ranking.autocorrelation must list 3",
    ),
    "ranking that repeats a mode": (
        ["metadata", lambda old: {**old, "mode_ranking": {"order": [0, 0, 1], "autocorrelation": [0.9, 0.5, 0.1]}}],
        "mode_ranking.order must be a permutation of 0..2",
    ),
    "ranking without a lag": (
        ["metadata", lambda old: {**old, "mode_ranking": {"order": [2, 0, 1], "autocorrelation": [0.9, 0.5, 0.1]}}],
        "mode_ranking.lag_ps",
    ),
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_tampered_model_files_are_refused_in_one_line(tmp_path, name):
    path, message = TAMPERINGS[name]
    model = random_model(POINT)
    model.metadata["molecule"] = _molecule_metadata()
    model.save(tmp_path / "model.pt")
    assert neuralct.load(tmp_path / "model.pt").metadata["molecule"]["n_atoms"] == 5  # the untampered file loads
    contents = torch.load(tmp_path / "model.pt", weights_only=True)
    _set(path)(contents)
    torch.save(contents, tmp_path / "tampered.pt")
    with pytest.raises(NeuralCTError) as error:
        neuralct.load(tmp_path / "tampered.pt")
    text = str(error.value)
    assert message in text and "tampered.pt" in text and "\n" not in text, text


@pytest.mark.parametrize("architecture", [MIXED, POINT])
def test_decode_inverts_encode_for_modes_in_a_cyclic_order(architecture):
    """A ranking whose order is a 3-cycle (not its own inverse): CV k is the flow's mode ``order[k]``, and decode
    puts each latent mode back where the flow has it."""
    from neuralct.model.transformation import ModeRanking

    model = random_model(architecture)
    model.mode_ranking = ModeRanking("autocorrelation", 1.0, (1, 2, 0), (0.9, 0.5, 0.1))
    q, p = torch.randn(6, N), torch.randn(6, N)
    Q, P = model.encode(q, p)
    z, _ = model.flow(model.to_reduced(q, p))
    assert torch.allclose(Q, z[:, [1, 2, 0]], atol=1e-12) and torch.allclose(P, z[:, [N + 1, N + 2, N]], atol=1e-12)
    q_back, p_back = model.decode(Q, P)
    assert torch.allclose(q_back, q, atol=1e-10) and torch.allclose(p_back, p, atol=1e-10)
