"""When the Gaussians of a well-tempered bias land: at every multiple of the deposition interval, also when reports
come at intervals that are no multiple of it, and the one due at a report after that report's row."""

import math

import numpy as np
import pytest

from neuralct.units import kT_kj_per_mol
from neuralct.workflows.metadynamics import SeparateMetadynamics


def _resting_particle(frequency, height, gamma, temperature):
    """A particle of zero mass (it does not move: every Gaussian lands at x = 0, the 63rd of 125 grid points) under
    separate metadynamics on x."""
    import openmm as mm
    from openmm.app import Simulation, Topology
    from openmm.app.metadynamics import BiasVariable

    system = mm.System()
    system.addParticle(0.0)
    cv = mm.CustomExternalForce("x")
    cv.addParticle(0, [])
    metadynamics = SeparateMetadynamics(
        system, [BiasVariable(cv, -2.0, 2.0, 0.16)], temperature, gamma, height, frequency
    )
    topology = Topology()
    topology.addAtom("X", None, topology.addResidue("X", topology.addChain()))
    simulation = Simulation(topology, system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions([[0.0, 0.5, 0.0]])
    return metadynamics, simulation


def _bias_at_zero(metadynamics):
    grid = np.linspace(-2.0, 2.0, metadynamics.bias_grid.shape[1])
    return float(np.interp(0.0, grid, metadynamics.bias_grid[0]))


def _well_tempered(deposits, height, gamma, temperature):
    """The bias at the deposits' common centre after ``deposits`` well-tempered Gaussians."""
    kB_dT = kT_kj_per_mol(temperature) * (gamma - 1)
    bias = 0.0
    for _ in range(deposits):
        bias += height * math.exp(-bias / kB_dT)
    return bias


@pytest.mark.parametrize("report_steps, reports, deposits", [(3, 3, 4), (5, 4, 10), (2, 5, 5)])
def test_every_multiple_of_the_interval_deposits_whatever_the_report_interval(report_steps, reports, deposits):
    """Deposits every 2 steps, reports every ``report_steps``: the Gaussians of steps 2, 4, ... up to the last
    report's step all land, the one due at a report after its row (as a bias run's report does)."""
    height, gamma, temperature = 2.0, 5.0, 300.0
    metadynamics, simulation = _resting_particle(2, height, gamma, temperature)
    felt = []
    for _ in range(reports):
        metadynamics.advance(simulation, report_steps)
        felt.append(_bias_at_zero(metadynamics))
        metadynamics.deposit_if_due(simulation)
    assert simulation.currentStep == report_steps * reports
    assert _bias_at_zero(metadynamics) == pytest.approx(_well_tempered(deposits, height, gamma, temperature), rel=1e-9)
    # The row of each report holds the bias before the Gaussian due at its own step.
    for report, bias in enumerate(felt):
        before = ((report + 1) * report_steps - 1) // 2
        assert bias == pytest.approx(_well_tempered(before, height, gamma, temperature), rel=1e-9, abs=1e-12)
