"""The toy with a known slow coordinate: the lagged objective finds the barrier, frequency ranking does not."""

import numpy as np
import pytest

from neuralct.errors import NeuralCTError
from neuralct.md.simulate import SimulationSettings, run_simulation
from neuralct.md.systems import build_system, rotated_double_well_rotation, rotated_double_well_system
from neuralct.toys.slow_double_well import fit_toy_trajectories, load_toy_trajectories, score_slow_coordinate
from neuralct.training.loop import TrainingSettings
from neuralct.units import kT_kj_per_mol

LAG_PS = 5.0  # 10 frames


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rotated-double-well")
    settings = SimulationSettings(
        length_ns=2.0, timestep_fs=5.0, report_ps=0.5, equilibration_ps=10.0, platform="Reference", threads=1, seed=11
    )
    run_simulation(build_system("rotated-double-well"), folder, settings, replicas=3, progress=False)
    return load_toy_trajectories(folder)


def test_openmm_energy_is_the_rotated_double_well():
    import openmm as mm
    import openmm.unit as unit

    system = build_system("rotated-double-well")
    context = mm.Context(system.system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    x = np.random.default_rng(0).normal(size=(3, 3))
    context.setPositions(x)
    energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    rotation = rotated_double_well_rotation(3, 7)
    u = rotation @ x.ravel()
    stiffness = np.array(system.settings["stiffness_kT_per_nm2"])
    expected = kT_kj_per_mol(300.0) * (3.0 * (u[0] ** 2 - 1) ** 2 + 0.5 * (stiffness * u[1:] ** 2).sum())
    assert energy == pytest.approx(expected, rel=1e-10)
    assert np.allclose(rotation @ rotation.T, np.eye(9), atol=1e-12)
    with pytest.raises(NeuralCTError, match="stiffnesses"):
        rotated_double_well_system(stiffness_kT_per_nm2=[1.0, 2.0])


def test_lagged_objective_recovers_the_barrier_coordinate_and_its_timescale(toy_data):
    settings = TrainingSettings(steps=200, batch_size=256, validate_every=100, progress=False)
    lagged = fit_toy_trajectories(toy_data, [0], [1], settings, LAG_PS)
    score = score_slow_coordinate(lagged, toy_data, [2], LAG_PS)
    assert abs(score["correlation"]) >= 0.95
    assert abs(score["timescale_ratio"] - 1) <= 0.2
    # The learned friction of the fast harmonic modes is the heat bath's, 1/ps.
    fast = lagged.frictions[2:].detach().numpy()
    assert np.median(fast) == pytest.approx(1.0, rel=0.15)
    # Ranked by softness (maximum likelihood), the slowest CV is the soft, fast harmonic coordinate instead.
    softest = fit_toy_trajectories(toy_data, [0], [1], settings, None)
    assert abs(score_slow_coordinate(softest, toy_data, [2], LAG_PS)["correlation"]) < 0.5
