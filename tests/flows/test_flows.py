"""Every flow obeys one contract, checked as physics in float64."""

import pytest
import torch

from neuralct.flows import (
    ContinuousSymplectic,
    FrequencyScaling,
    LinearSymplectic,
    PointTransformation,
    SymplecticSequential,
    symplectic_form,
)
from neuralct.flows.coupling import CouplingStack

DIM = 3


def randomize(module: torch.nn.Module, scale: float = 0.3) -> torch.nn.Module:
    """Move every parameter away from the identity start so the checks can fail.

    Coupling stacks' fixed ``loc`` and ``scale`` buffers (the data's mean and spread) move too, away
    from 0 and 1: there an exchange of ``* scale`` and ``/ scale`` changes nothing.
    """
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, scale)
        for stack in module.modules():
            if isinstance(stack, CouplingStack):
                stack.loc.normal_(0.0, 1.0)
                stack.scale.uniform_(0.3, 3.0)
    return module


def make(kind: str):
    if kind == "linear":
        return randomize(LinearSymplectic(DIM))
    if kind == "linear-point":
        return randomize(LinearSymplectic(DIM, point=True))
    if kind == "point":
        return randomize(PointTransformation(DIM, n_layers=4, hidden=16, depth=2))
    if kind == "continuous":
        return randomize(ContinuousSymplectic(DIM, steps=3, hidden=16, depth=2), 0.2)
    if kind == "composition":
        layers = [make(k) for k in ("linear", "point", "continuous", "linear-point", "point")]
        return SymplecticSequential(layers)
    raise ValueError(kind)


CANONICAL = ["linear", "linear-point", "point", "continuous", "composition"]


def jacobian(flow, x):
    return torch.autograd.functional.jacobian(lambda v: flow(v.unsqueeze(0))[0].squeeze(0), x)


@pytest.mark.parametrize("kind", CANONICAL)
def test_jacobian_is_symplectic(kind):
    flow = make(kind)
    J = symplectic_form(DIM)
    for x in torch.randn(4, 2 * DIM):
        M = jacobian(flow, x)
        assert torch.allclose(M.T @ J @ M, J, atol=1e-10, rtol=0), (M.T @ J @ M - J).abs().max()
        assert abs(torch.linalg.det(M).item() - 1.0) < 1e-10


@pytest.mark.parametrize("kind", CANONICAL)
def test_round_trip_and_zero_logdet(kind):
    flow = make(kind)
    x = torch.randn(64, 2 * DIM)
    z, logdet = flow(x)
    x_back, logdet_back = flow.inverse(z)
    assert (x_back - x).abs().max() <= 1e-10
    assert (flow(x_back)[0] - z).abs().max() <= 1e-10
    assert torch.all(logdet == 0) and torch.all(logdet_back == 0)
    assert logdet.shape == (64,)


@pytest.mark.parametrize("kind", CANONICAL)
def test_gradients_reach_every_parameter(kind):
    flow = make(kind)
    x = torch.randn(16, 2 * DIM)
    z, _ = flow(x)
    x_back, _ = flow.inverse(torch.randn(16, 2 * DIM))
    ((z**2).sum() + (x_back**2).sum()).backward()
    for name, parameter in flow.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", CANONICAL + ["frequency"])
def test_save_load_reproduces_outputs(kind, tmp_path):
    flow = randomize(FrequencyScaling(DIM)) if kind == "frequency" else make(kind)
    torch.save(flow.state_dict(), tmp_path / "flow.pt")
    clone = make(kind) if kind != "frequency" else FrequencyScaling(DIM)
    clone.load_state_dict(torch.load(tmp_path / "flow.pt", weights_only=True))
    x = torch.randn(8, 2 * DIM)
    assert torch.equal(flow(x)[0], clone(x)[0])
    assert torch.equal(flow.inverse(x)[0], clone.inverse(x)[0])


def test_frequency_layer_logdet_is_constant_and_exact():
    layer = randomize(FrequencyScaling(DIM))
    x = torch.randn(5, 2 * DIM)
    z, logdet = layer(x)
    M = jacobian(layer, x[0])
    assert torch.allclose(logdet, torch.linalg.slogdet(M)[1].expand(5), atol=1e-12)
    assert torch.allclose(layer.inverse(z)[0], x, atol=1e-12)
    assert torch.allclose(layer.inverse(z)[1], -logdet)


def test_point_transformation_momenta_match_explicit_jacobian_solve():
    flow = make("point")
    q, p = torch.randn(DIM), torch.randn(DIM)

    def F(v):
        return flow.bijection(v.unsqueeze(0))[0].squeeze(0)

    dF = torch.autograd.functional.jacobian(F, q)
    expected_P = torch.linalg.solve(dF.T, p)
    z, _ = flow(torch.cat([q, p]).unsqueeze(0))
    assert torch.allclose(z[0, :DIM], F(q), atol=1e-12)
    assert torch.allclose(z[0, DIM:], expected_P, atol=1e-10)
    x, _ = flow.inverse(z)
    assert torch.allclose(x[0, DIM:], dF.T @ expected_P, atol=1e-10)


@pytest.mark.parametrize("kind", ["linear-point", "point", "composition-point"])
def test_configuration_logdet_matches_autograd(kind):
    if kind == "composition-point":
        flow = SymplecticSequential([make("linear-point"), make("point")])
    else:
        flow = make(kind)
    assert flow.acts_on_configuration
    q = torch.randn(DIM)
    Q, logdet = flow.configuration_forward(q.unsqueeze(0))
    dF = torch.autograd.functional.jacobian(lambda v: flow.configuration_forward(v.unsqueeze(0))[0].squeeze(0), q)
    assert abs(logdet.item() - torch.linalg.slogdet(dF)[1].item()) < 1e-10
    q_back, logdet_back = flow.configuration_inverse(Q)
    assert torch.allclose(q_back[0], q, atol=1e-10)
    assert abs(logdet_back.item() + logdet.item()) < 1e-10
    z, _ = flow(torch.cat([q, torch.randn(DIM)]).unsqueeze(0))
    assert torch.allclose(z[0, :DIM], Q[0], atol=1e-12)


def test_mixing_layers_have_no_configuration_map():
    for kind in ("linear", "continuous", "composition"):
        flow = make(kind)
        assert not flow.acts_on_configuration
        with pytest.raises(NotImplementedError):
            flow.configuration_forward(torch.randn(2, DIM))


def test_flows_work_without_grad_mode():
    flow = make("composition")
    x = torch.randn(8, 2 * DIM)
    with torch.no_grad():
        z, _ = flow(x)
        x_back, _ = flow.inverse(z)
    assert not z.requires_grad and not x_back.requires_grad
    assert (x_back - x).abs().max() <= 1e-10


def test_layers_start_at_identity():
    x = torch.randn(8, 2 * DIM)
    for flow in (LinearSymplectic(DIM), PointTransformation(DIM), ContinuousSymplectic(DIM)):
        assert torch.allclose(flow(x)[0], x, atol=1e-14)


def test_closed_form_momentum_map_and_its_gradients_match_autograd():
    """Momenta and training gradients of the hand-written lift equal those of an autograd VJP.

    Reference: ``P = (dF^-1/dQ)^T p``, one autograd vector-Jacobian product through the
    inverse stack at ``Q = F(q)``, kept differentiable (create_graph) for the parameter gradients.
    """
    flow = make("point")
    q, p = torch.randn(32, DIM), torch.randn(32, DIM)

    def loss(z):
        return (z**2).sum() + z.sum()

    z, _ = flow(torch.cat([q, p], 1))
    closed_form = torch.autograd.grad(loss(z), list(flow.parameters()))
    Q, _ = flow.bijection(q)
    (P,) = torch.autograd.grad(flow.bijection.inverse(Q)[0], Q, p, create_graph=True)
    reference = torch.autograd.grad(loss(torch.cat([Q, P], 1)), list(flow.parameters()))
    assert torch.allclose(z, torch.cat([Q, P], 1), atol=1e-12)
    for mine, theirs in zip(closed_form, reference):
        assert torch.allclose(mine, theirs, atol=1e-10), (mine - theirs).abs().max()


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("depth", [1, 2])
def test_coupling_stack_backward_pass_matches_finite_differences(inverse, depth):
    """The hand-written backward pass of a coupling stack's map of positions and momenta (second
    derivatives of the conditioners included) against central finite differences, float64.

    Five couplings on 5 coordinates: interleaved splits, their complements and halves, so that
    blocks are swapped, merged and split again between couplings.
    """
    from neuralct.flows.coupling import _StackMomentumLift

    stack = randomize(CouplingStack(5, n_layers=5, hidden=6, depth=depth), 0.5)
    assert {relation for _, relation in stack._schedule(inverse)} == {"first", "complement", "other"}
    u, m = (torch.randn(4, 5, requires_grad=True) for _ in range(2))
    parameters = [parameter.detach().clone().requires_grad_(True) for parameter in stack._conditioner_parameters()]

    def lift(*tensors):
        return _StackMomentumLift.apply(stack, inverse, *tensors)

    assert torch.autograd.gradcheck(lift, (u, m, *parameters))


@pytest.mark.parametrize("kind", ["linear", "linear-point"])
def test_a_linear_map_set_up_in_float32_round_trips_exactly_once_cast_to_float64(kind):
    """The base rotation set in float32 is orthogonal only to its rounding: its inverse is solved for."""
    flow = make(kind).float()
    data = torch.randn(200, 2 * DIM) * torch.tensor([3.0, 1.0, 0.3] * 2) @ torch.linalg.qr(torch.randn(6, 6))[0]
    flow.initialize(data.float())
    randomize(flow)
    flow.double()
    assert (flow.base.T @ flow.base - torch.eye(2 * DIM)).abs().max() > 1e-9  # the float32 rounding is there
    x = torch.randn(64, 2 * DIM)
    assert (flow.inverse(flow(x)[0])[0] - x).abs().max() <= 1e-12
    if kind == "linear-point":
        q = x[:, :DIM]
        assert (flow.configuration_inverse(flow.configuration_forward(q)[0])[0] - q).abs().max() <= 1e-12


def test_initialisation_rotates_onto_the_principal_axes_and_feeds_each_layer_what_the_layers_before_it_make():
    """A linear point layer starts as the orthogonal, hence canonical, map onto the positions' principal axes, widest
    first (its own parameters reset); in a composition each layer is initialised on the data pushed through the
    layers before it: the coupling stack after the rotation is centred and scaled on the rotated positions."""
    axes = torch.linalg.qr(torch.randn(DIM, DIM))[0]
    q = (torch.randn(400, DIM) * torch.tensor([0.3, 3.0, 1.0])) @ axes.T + torch.tensor([1.0, -2.0, 0.5])
    x = torch.cat([q, torch.randn(400, DIM)], 1)
    linear = randomize(LinearSymplectic(DIM, point=True))
    point = PointTransformation(DIM, n_layers=2, hidden=8, depth=1)
    SymplecticSequential([linear, point]).initialize(x)
    J = symplectic_form(DIM)
    assert torch.allclose(linear.base.T @ J @ linear.base, J, atol=1e-12)
    assert torch.allclose(linear.matrix(), linear.base, atol=1e-12), "the rotation alone"
    Q = linear(x)[0][:, :DIM]
    covariance = torch.cov(Q.T)
    variances = covariance.diagonal()
    assert torch.allclose(covariance, torch.diag(variances), atol=1e-10), "principal axes"
    assert (variances[:-1] > variances[1:]).all() and torch.allclose(
        variances, torch.linalg.eigvalsh(torch.cov(q.T)).flip(0), rtol=1e-10
    )
    assert torch.allclose(point.bijection.loc, Q.mean(0), atol=1e-12)
    assert torch.allclose(point.bijection.scale, Q.std(0), rtol=1e-12)
