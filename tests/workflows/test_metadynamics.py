"""The two biases of ``neuralct bias``: the joint grid's interface to ``openmm.app.Metadynamics`` checked against the
energy OpenMM computes; separate biases (one well-tempered bias per CV, the force their sum): the grids, the force,
the well-tempered heights, the free energies they converge to, and ``neuralct bias --separate-biases`` end to end."""

import json
import math

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from neuralct.analysis import read_colvar
from neuralct.cli import main
from neuralct.units import kT_kj_per_mol
from neuralct.workflows.metadynamics import (
    JOINT_POINTS_PER_WIDTH,
    JointMetadynamics,
    SeparateMetadynamics,
    joint_grid_points,
    separate_offset,
)

SHORT = ["--length-ns", "0.004", "--no-progress", "--report-ps", "0.1", "--bias-every", "5"]


def _particle(potential: str = "0", mass: float = 12.0):
    """One particle in 3-D under ``potential`` (an expression of x, y, z in kJ/mol and nm), and its x, y CV forces."""
    import openmm as mm

    system = mm.System()
    system.addParticle(mass)
    force = mm.CustomExternalForce(potential)
    force.addParticle(0, [])
    system.addForce(force)
    cvs = []
    for axis in "xy":
        cv = mm.CustomExternalForce(axis)
        cv.addParticle(0, [])
        cvs.append(cv)
    return system, cvs


def _context(system, integrator=None):
    import openmm as mm

    integrator = integrator or mm.VerletIntegrator(0.001)
    return mm.Context(system, integrator, mm.Platform.getPlatformByName("Reference")), integrator


@pytest.mark.parametrize("kind", [JointMetadynamics, SeparateMetadynamics])
def test_the_grid_deposits_and_a_loaded_grid_are_the_bias_openmm_computes(kind):
    from openmm.app.metadynamics import BiasVariable

    system, cvs = _particle()
    variables = [BiasVariable(cvs[0], -2.0, 2.0, 0.2, gridWidth=201)]
    if kind is SeparateMetadynamics:
        variables.append(BiasVariable(cvs[1], -1.0, 3.0, 0.3, gridWidth=201))
    metadynamics = kind(system, variables, 300.0, 6.0, 1.5, 10)
    context, _ = _context(system)
    group = {metadynamics.force_group}
    assert group != {0} and metadynamics.height.value_in_unit(metadynamics.height.unit) == 1.5
    axes = [np.linspace(v.minValue, v.maxValue, 201) for v in variables]

    def energy_at(x, y):
        context.setPositions([[x, y, 0.0]])
        return context.getState(getEnergy=True, groups=group).getPotentialEnergy()._value

    def grid_at(grid, x, y):
        # OpenMM tabulates each grid as a natural cubic spline.
        rows = np.atleast_2d(grid)
        return sum(CubicSpline(axis, row, bc_type="natural")(s) for s, axis, row in zip((x, y), axes, rows))

    # A grid loaded (from a checkpoint or a frozen run) is the bias in the context, and what bias_grid returns.
    loaded = np.stack([np.sin(3.0 * axis) + 2.0 for axis in axes])
    metadynamics.set_bias_grid(loaded.reshape(metadynamics.bias_grid.shape), context)
    np.testing.assert_array_equal(np.atleast_2d(metadynamics.bias_grid), loaded)
    for x, y in ((0.31, 1.02), (-1.3, 0.2), (1.7, 2.6)):
        assert energy_at(x, y) == pytest.approx(grid_at(loaded, x, y), abs=1e-9)
    # A deposit adds its Gaussian to the grid and the context; a zero-height one changes nothing.
    metadynamics.deposit([0.5, 1.0][: len(variables)], 2.0, context)
    added = np.stack(
        [2.0 * np.exp(-0.5 * ((axis - c) / v.biasWidth) ** 2) for axis, c, v in zip(axes, (0.5, 1.0), variables)]
    )
    np.testing.assert_allclose(np.atleast_2d(metadynamics.bias_grid), loaded + added, rtol=0, atol=1e-12)
    before = energy_at(0.45, 1.1)
    metadynamics.deposit([0.0, 0.0][: len(variables)], 0.0, context)
    assert energy_at(0.45, 1.1) == before == pytest.approx(grid_at(loaded + added, 0.45, 1.1), abs=1e-9)


def _joint_grid_errors(points_per_width: float):
    """Energy (kJ/mol) and force (kJ/mol/nm) errors of a joint 2-D grid against the exact Gaussian sum.

    150 Gaussians (heights 0.3-1.2 kJ/mol) deposited about the origin of a grid 7 times a learned CV's
    data span wide, as ``neuralct bias --cvs 2`` makes it, read at 400 points off the grid's nodes.
    Returns the largest energy error, the largest force error and the rms of the exact force.
    """
    from openmm.app.metadynamics import BiasVariable

    rng = np.random.default_rng(4)
    widths = (0.05, 0.037)
    system, cvs = _particle()
    variables = [
        BiasVariable(cv, -3.5, 3.5, width, False, int(math.ceil(points_per_width * 7.0 / width)))
        for cv, width in zip(cvs, widths)
    ]
    metadynamics = JointMetadynamics(system, variables, 300.0, 8.0, 1.2, 500)
    context, _ = _context(system)
    centers = rng.normal(0.0, (0.5, 0.4), size=(150, 2))
    heights = rng.uniform(0.3, 1.2, 150)
    for center, height in zip(centers, heights):
        metadynamics.deposit(list(center), height, context)
    energy_errors, force_errors, forces = [], [], []
    for point in rng.normal(0.0, (0.6, 0.5), size=(400, 2)):
        context.setPositions([[point[0], point[1], 0.0]])
        state = context.getState(getEnergy=True, getForces=True, groups={metadynamics.force_group})
        scaled = (point - centers) / widths
        gaussians = heights * np.exp(-0.5 * (scaled**2).sum(axis=1))
        exact_force = (gaussians[:, None] * scaled / widths).sum(axis=0)
        energy_errors.append(abs(state.getPotentialEnergy()._value - gaussians.sum()))
        force_errors.append(np.linalg.norm(state.getForces(asNumpy=True)._value[0, :2] - exact_force))
        forces.append(np.linalg.norm(exact_force))
    return max(energy_errors), max(force_errors), float(np.sqrt(np.mean(np.square(forces))))


def test_the_coarse_joint_grid_of_two_cvs_is_the_exact_gaussian_sum_within_its_stated_error():
    assert joint_grid_points(-3.5, 3.5, 0.05) == math.ceil(JOINT_POINTS_PER_WIDTH * 7.0 / 0.05)
    energy_error, force_error, force_rms = _joint_grid_errors(JOINT_POINTS_PER_WIDTH)
    assert force_rms > 5.0
    assert energy_error < 0.002 and force_error < 0.03 * force_rms
    # The check can fail: one point per width is ten times off in the force.
    energy_error, force_error, force_rms = _joint_grid_errors(1.0)
    assert energy_error > 0.01 and force_error > 0.1 * force_rms


def test_one_separate_bias_is_openmms_metadynamics_on_that_cv():
    from openmm.app.metadynamics import BiasVariable

    grids = []
    for kind in (JointMetadynamics, SeparateMetadynamics):
        system, cvs = _particle()
        metadynamics = kind(system, [BiasVariable(cvs[0], -2.0, 2.0, 0.2)], 300.0, 6.0, 1.5, 10)
        context, _ = _context(system)
        context.setPositions([[0.37, 0.0, 0.0]])
        metadynamics.deposit([0.3], 1.5, context)
        metadynamics.deposit([-0.71], 0.6, context)
        energy = context.getState(getEnergy=True, groups={metadynamics.force_group}).getPotentialEnergy()
        grids.append((np.asarray(metadynamics.bias_grid).ravel(), energy._value))
    np.testing.assert_allclose(grids[1][0], grids[0][0], rtol=0, atol=1e-12)
    assert grids[1][1] == pytest.approx(grids[0][1], abs=1e-9) and grids[0][1] > 1.0


def test_the_force_is_the_sum_of_the_biases_and_minus_its_gradient():
    from openmm.app.metadynamics import BiasVariable

    system, cvs = _particle()
    width = 0.15
    metadynamics = SeparateMetadynamics(
        system, [BiasVariable(cvs[0], -2.0, 2.0, width), BiasVariable(cvs[1], -1.0, 3.0, width)], 300.0, 6.0, 1.0, 10
    )
    context, _ = _context(system)
    centres, heights = [0.2, 1.1], [2.0, 0.7]
    metadynamics.deposit(centres, heights, context)
    group = {metadynamics.force_group}

    def bias(x, y):
        return sum(h * math.exp(-0.5 * ((s - c) / width) ** 2) for s, c, h in zip((x, y), centres, heights))

    for x, y in ((0.31, 1.02), (0.05, 1.3), (-0.4, 0.9)):
        context.setPositions([[x, y, 0.5]])
        state = context.getState(getEnergy=True, getForces=True, groups=group)
        assert state.getPotentialEnergy()._value == pytest.approx(bias(x, y), rel=1e-3)
        # bias_at (the well-tempered heights) interpolates linearly on the grid: within 0.5 % of the spline here.
        assert metadynamics.bias_at([x, y]).sum() == pytest.approx(bias(x, y), rel=5e-3)
        force = state.getForces(asNumpy=True)._value[0]
        step = 1e-5
        for axis in range(3):
            shifted = []
            for sign in (1, -1):
                position = np.array([x, y, 0.5])
                position[axis] += sign * step
                context.setPositions([position])
                shifted.append(context.getState(getEnergy=True, groups=group).getPotentialEnergy()._value)
            assert force[axis] == pytest.approx(-(shifted[0] - shifted[1]) / (2 * step), abs=1e-4)
        context.setPositions([[x, y, 0.5]])


def test_each_bias_grows_by_the_well_tempered_rule_at_its_own_cv():
    from openmm.app import Simulation, Topology
    from openmm.app.metadynamics import BiasVariable

    # A particle of zero mass does not move: every deposit lands on the same grid points (x = 0 and y = 0.5, the
    # 63rd of 125).
    system, cvs = _particle(mass=0.0)
    height, gamma, temperature = 2.0, 5.0, 300.0
    metadynamics = SeparateMetadynamics(
        system,
        [BiasVariable(cvs[0], -2.0, 2.0, 0.16), BiasVariable(cvs[1], -1.5, 2.5, 0.4)],
        temperature,
        gamma,
        height,
        2,
    )
    topology = Topology()
    topology.addAtom("X", None, topology.addResidue("X", topology.addChain()))
    import openmm as mm

    simulation = Simulation(topology, system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions([[0.0, 0.5, 0.0]])
    simulation.context.setVelocitiesToTemperature(0.0)
    metadynamics.step(simulation, 10)
    kB_dT = kT_kj_per_mol(temperature) * (gamma - 1)
    expected = 0.0
    for _ in range(5):
        expected += height * math.exp(-expected / kB_dT)
    points = metadynamics.bias_grid.shape[1]
    for row, (low, high, value) in enumerate(((-2.0, 2.0, 0.0), (-1.5, 2.5, 0.5))):
        grid = np.linspace(low, high, points)
        assert np.interp(value, grid, metadynamics.bias_grid[row]) == pytest.approx(expected, rel=1e-9)
    # c(t) of separate biases is the joint-grid formula on their sum, V_1(s_1) + V_2(s_2) on the product grid.
    from neuralct.analysis.reweighting import reweighting_offset

    kT = kT_kj_per_mol(temperature)
    summed = metadynamics.bias_grid[1][:, None] + metadynamics.bias_grid[0][None, :]
    assert separate_offset(metadynamics.bias_grid, gamma, kT) == pytest.approx(
        reweighting_offset(summed, gamma, kT, False), rel=1e-10
    )
    free = metadynamics.getFreeEnergy()._value
    np.testing.assert_allclose(free, -gamma / (gamma - 1) * metadynamics.bias_grid, rtol=1e-12)


def test_separate_biases_converge_to_each_cvs_free_energy():
    """Two independent double wells, x tilted and y symmetric: each bias gives its own F(s > 0) - F(s < 0)."""
    import openmm as mm
    from openmm.app import Simulation, Topology
    from openmm.app.metadynamics import BiasVariable

    barrier, tilt, temperature, gamma = 12.0, 2.5, 300.0, 6.0
    system, cvs = _particle(f"{barrier}*(x^2-1)^2 + {tilt}*x + {barrier}*(y^2-1)^2 + 50*z^2", mass=1.0)
    metadynamics = SeparateMetadynamics(
        system,
        [BiasVariable(cvs[0], -1.8, 1.8, 0.1), BiasVariable(cvs[1], -1.8, 1.8, 0.1)],
        temperature,
        gamma,
        1.0,
        100,
    )
    topology = Topology()
    topology.addAtom("X", None, topology.addResidue("X", topology.addChain()))
    integrator = mm.LangevinMiddleIntegrator(temperature, 10.0, 0.002)
    integrator.setRandomNumberSeed(7)
    simulation = Simulation(topology, system, integrator, mm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions([[-1.0, -1.0, 0.0]])
    simulation.context.setVelocitiesToTemperature(temperature, 8)
    metadynamics.step(simulation, 2_000_000)  # 4 ns

    kT = kT_kj_per_mol(temperature)
    s = np.linspace(-1.8, 1.8, metadynamics.bias_grid.shape[1])
    free = metadynamics.getFreeEnergy()._value
    inside = np.abs(s) < 1.6  # the grid's ends are seldom visited

    def difference(f):
        weight = np.exp(-(f - f[inside].min()) / kT) * inside
        return -kT * math.log(weight[s > 0].sum() / weight[s < 0].sum())

    exact = [barrier * (s**2 - 1) ** 2 + tilt * s, barrier * (s**2 - 1) ** 2]
    assert difference(exact[0]) == pytest.approx(2 * tilt, abs=0.5)  # the tilt moves the wells' floors apart
    # Over 8 seeds the two differences came within 1.6 kJ/mol of the exact ones (0.6 kT), 7 of them within 1.0.
    for estimate, truth in zip(free, exact):
        assert difference(estimate) == pytest.approx(difference(truth), abs=2.0)
        # The barrier each bias filled: 14.5 kJ/mol along x from its lower well, 12 along y.
        top = np.argmin(np.abs(s))
        assert estimate[top] - estimate[inside].min() == pytest.approx(truth[top] - truth[inside].min(), abs=1.5)


def test_bias_with_separate_biases_on_three_learned_cvs(alanine_model, tmp_path, capsys):
    model_path, _ = alanine_model
    out, frozen = tmp_path / "separate", tmp_path / "frozen"
    command = ["bias", str(model_path), "--cvs", "3", "--separate-biases", "--allow-oscillating-cvs", "--grid-margin"]
    assert main([*command, "0.5", *SHORT, "--output", str(out)]) == 0
    fields, table = read_colvar(out / "COLVAR")
    assert fields == ["time", "cv1", "cv2", "cv3", "phi", "psi", "bias", "rbias"] and len(table) == 40
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["separate_biases"] and summary["cvs"] == ["cv1", "cv2", "cv3"]
    assert "the sum of each CV's one-dimensional c(t)" in summary["reweighting"]
    points = {grid["grid_points"] for grid in summary["grids"]}
    bias = np.load(out / "bias.npy")
    assert len(points) == 1 and bias.shape == (3, points.pop())
    assert np.all(bias.max(axis=1) > 0.5)  # each CV's bias grew
    for name in ("fes_cv1.png", "fes_cv2.png", "fes_cv3.png", "fes.npy"):
        assert (out / name).exists(), name

    # Frozen: the same separate biases act unchanged, the bias of every frame the sum of its rows there; a
    # joint-grid run cannot take them.
    assert main([*command, "0.5", *SHORT, "--frozen-bias", str(out), "--output", str(frozen)]) == 0
    assert np.array_equal(np.load(frozen / "bias.npy"), bias)
    grids = [np.linspace(g["min"], g["max"], g["grid_points"]) for g in summary["grids"]]
    _, table = read_colvar(frozen / "COLVAR")
    applied = sum(np.interp(table[:, 1 + i], grids[i], bias[i]) for i in range(3))
    np.testing.assert_allclose(table[:, fields.index("bias")], applied, rtol=0, atol=0.05)
    # Under the frozen separate biases c is constant: the sum over the CVs of Tiwary and Parrinello's one-dimensional
    # c = kT ln[sum exp(gamma/(gamma-1) V_i/kT) / sum exp(V_i/((gamma-1) kT))] of each row at the run's kT.
    kT, gamma = kT_kj_per_mol(300.0), 8.0
    offset = sum(
        kT * math.log(np.sum(np.exp(gamma / (gamma - 1) * row / kT)) / np.sum(np.exp(row / ((gamma - 1) * kT))))
        for row in bias
    )
    np.testing.assert_allclose(
        table[:, fields.index("bias")] - table[:, fields.index("rbias")], offset, rtol=0, atol=1e-6
    )
    capsys.readouterr()
    joint = ["bias", str(model_path), "--cvs", "2", "--grid-margin", "0.5", *SHORT, "--frozen-bias", str(out)]
    assert main([*joint, "--output", str(tmp_path / "joint")]) == 2
    assert "biased other CVs, grids or kind of bias than this run" in capsys.readouterr().err
    assert main(["bias", str(model_path), "--cvs", "3", *SHORT, "--output", str(tmp_path / "three")]) == 2
    assert "more take --separate-biases" in capsys.readouterr().err
    assert not (tmp_path / "joint").exists() and not (tmp_path / "three").exists()
