"""Choosing the OpenMM platform: ``auto``'s rule, and a probe that tells a run that blew up from a fast one."""

from types import SimpleNamespace

import numpy as np
import pytest

from neuralct.errors import NeuralCTError
from neuralct.md.platform import automatic_platform, available_platforms, fastest_platform


def test_auto_runs_a_periodic_system_on_the_cpu_platform_without_a_probe():
    # No System to probe: the rule alone must answer (a probe of an unminimised box can blow up on every platform).
    box = SimpleNamespace(periodic=True, system=None, positions=None)
    name, rates, choice = automatic_platform(box, 300.0, 1.0, 4.0, None)
    assert (name, rates) == ("CPU", None) and "periodic" in choice


def _stiff_bond():
    """Two atoms of 1 amu joined by a bond of 1e7 kJ/mol/nm^2 (omega 4,500 / ps): a step of 4 fs diverges, one of
    0.1 fs does not."""
    import openmm as mm

    system = mm.System()
    bond = mm.HarmonicBondForce()
    for _ in range(2):
        system.addParticle(1.0)
    bond.addBond(0, 1, 0.1, 1e7)
    system.addForce(bond)
    return system, np.array([[0.0, 0.0, 0.0], [0.11, 0.0, 0.0]])


def test_a_probe_that_blows_up_on_every_platform_is_refused_naming_each_reason():
    import openmm as mm

    system, positions = _stiff_bond()
    with pytest.raises(NeuralCTError) as refused:
        fastest_platform(system, positions, lambda: mm.LangevinMiddleIntegrator(300, 1, 0.004), probe_seconds=0.05)
    message = str(refused.value)
    assert message.startswith("no OpenMM platform could run this system (")
    assert all(f"{name}: " in message for name in available_platforms())


def test_a_probe_of_a_sane_system_times_every_platform():
    import openmm as mm

    system, positions = _stiff_bond()
    name, rates = fastest_platform(
        system, positions, lambda: mm.LangevinMiddleIntegrator(300, 1, 0.0001), probe_seconds=0.05
    )
    assert set(rates) == set(available_platforms()) and rates[name] == max(rates.values()) > 0
