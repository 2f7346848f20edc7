"""Choosing the OpenMM platform: ``auto``'s rule, and a probe that tells a run that blew up from a fast one."""

from types import SimpleNamespace

import numpy as np
import pytest

from neuralct.errors import NeuralCTError
from neuralct.md import platform
from neuralct.md.platform import automatic_platform, available_platforms, fastest_platform


def test_auto_runs_a_periodic_system_on_the_cpu_platform_unprobed_where_it_is_the_only_other(monkeypatch):
    # No System to probe: the rule alone must answer.
    monkeypatch.setattr(platform, "available_platforms", lambda: ["Reference", "CPU"])
    box = SimpleNamespace(periodic=True, system=None, positions=None)
    name, rates, choice = automatic_platform(box, 300.0, 1.0, 4.0, None)
    assert (name, rates) == ("CPU", None) and "periodic" in choice


def test_auto_probes_every_platform_but_reference_for_a_periodic_system_and_says_why_none_ran(monkeypatch):
    probed = []

    def probe(system, positions, make_integrator, *, threads=None, platforms=None):
        probed.append(platforms)
        if len(probed) >= 2:
            raise NeuralCTError("no OpenMM platform could run this system (CPU: a reason; CUDA: another)")
        return "CUDA", {"CPU": 100.0, "CUDA": 900.0}

    monkeypatch.setattr(platform, "available_platforms", lambda: ["Reference", "CPU", "CUDA"])
    monkeypatch.setattr(platform, "fastest_platform", probe)
    box = SimpleNamespace(periodic=True, system=None, positions=None)
    assert automatic_platform(box, 300.0, 1.0, 2.0, None)[:2] == ("CUDA", {"CPU": 100.0, "CUDA": 900.0})
    name, rates, choice = automatic_platform(box, 300.0, 1.0, 2.0, None)
    assert probed == [["CPU", "CUDA"]] * 2 and (name, rates) == ("CPU", None) and "CUDA: another" in choice
    vacuum = SimpleNamespace(periodic=False, system=None, positions=None)
    assert automatic_platform(vacuum, 300.0, 1.0, 2.0, None)[0] == "Reference"  # the third probe fails too
    assert probed[-1] == ["Reference", "CPU", "CUDA"]


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


def test_a_platform_that_cannot_open_a_context_is_named_with_openmm_s_reason():
    import openmm as mm

    system, positions = _stiff_bond()
    name, rates = fastest_platform(
        system,
        positions,
        lambda: mm.LangevinMiddleIntegrator(300, 1, 0.0001),
        probe_seconds=0.05,
        platforms=["NoSuchPlatform", "Reference"],
    )
    assert name == "Reference" and set(rates) == {"Reference"}
    with pytest.raises(NeuralCTError) as refused:
        fastest_platform(
            system, positions, lambda: mm.LangevinMiddleIntegrator(300, 1, 0.0001), platforms=["NoSuchPlatform"]
        )
    message = str(refused.value)
    assert message.startswith("no OpenMM platform could run this system (NoSuchPlatform: ")
    assert "NoSuchPlatform" in message.partition(": ")[2] and "\n" not in message
