"""OpenMM energies as a torch autograd function: gradient = -forces = finite differences."""

import numpy as np
import pytest
import torch

from neuralct.md.energy import OpenMMEnergy, openmm_energy
from neuralct.md.systems import build_system
from neuralct.units import kT_kj_per_mol


@pytest.fixture(scope="module")
def alanine():
    return build_system("alanine-dipeptide")


def perturbed(system, batch, scale=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return torch.tensor(system.positions[None] + scale * rng.normal(size=(batch, system.n_atoms, 3)))


def test_gradient_is_minus_openmm_forces(alanine):
    import openmm as mm

    energy = OpenMMEnergy(alanine, unit="kJ/mol")
    x = perturbed(alanine, 3).requires_grad_()
    u = energy(x)
    u.sum().backward()
    context = mm.Context(alanine.system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    for k in range(3):
        context.setPositions(x[k].detach().numpy())
        state = context.getState(getEnergy=True, getForces=True)
        assert u[k].item() == pytest.approx(state.getPotentialEnergy()._value, rel=1e-12)
        np.testing.assert_allclose(x.grad[k].numpy(), -state.getForces(asNumpy=True)._value, rtol=1e-10, atol=1e-10)


def test_gradient_matches_finite_differences(alanine):
    energy = OpenMMEnergy(alanine, unit="kT")
    x = perturbed(alanine, 1)[0]
    y = x[None].clone().requires_grad_()
    energy(y).sum().backward()
    h = 1e-5
    rng = np.random.default_rng(1)
    for atom, axis in zip(rng.integers(0, 22, 8), rng.integers(0, 3, 8)):
        plus, minus = x.clone(), x.clone()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        fd = (energy(plus[None]) - energy(minus[None])).item() / (2 * h)
        assert y.grad[0, atom, axis].item() == pytest.approx(fd, rel=1e-5, abs=1e-4)


def test_units_shapes_and_grad_output(alanine):
    x = perturbed(alanine, 4)
    kj = openmm_energy(x, alanine, unit="kJ/mol")
    kt = openmm_energy(x.reshape(4, -1), alanine, unit="kT", temperature=310.0)
    assert kj.shape == (4,)
    np.testing.assert_allclose(kt.numpy(), kj.numpy() / kT_kj_per_mol(310.0), rtol=1e-12)
    # backward scales the forces by the incoming gradient of each configuration
    flat = x.reshape(4, -1).clone().requires_grad_()
    weights = torch.tensor([0.0, 1.0, -2.0, 0.5])
    (openmm_energy(flat, alanine, unit="kJ/mol") * weights).sum().backward()
    unweighted = x.clone().requires_grad_()
    openmm_energy(unweighted, alanine, unit="kJ/mol").sum().backward()
    assert flat.grad.shape == (4, 66)
    np.testing.assert_allclose(
        flat.grad.numpy(), (weights[:, None, None] * unweighted.grad).reshape(4, -1).numpy(), rtol=1e-12
    )
    assert torch.all(flat.grad[0] == 0) and not torch.all(flat.grad[1] == 0)


def test_works_for_toys_and_float32():
    chain = build_system("harmonic-chain")
    x = torch.zeros(2, chain.n_atoms, 3, dtype=torch.float32, requires_grad=True)
    u = openmm_energy(x, chain)
    u.sum().backward()
    assert u.dtype == torch.float32 and torch.all(u == 0) and torch.all(x.grad == 0)


def test_atom_count_mismatch_is_an_error(alanine):
    from neuralct.errors import NeuralCTError

    with pytest.raises(NeuralCTError, match="atoms"):
        openmm_energy(torch.zeros(1, 21, 3), alanine)
