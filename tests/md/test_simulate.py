"""Langevin MD: thermostat temperature, Maxwell-Boltzmann velocities, trajectory files, resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neuralct.data.netcdf import read_netcdf
from neuralct.errors import NeuralCTError
from neuralct.md.replicas import default_jobs, plan_jobs, run_in_processes
from neuralct.md.simulate import (
    SimulationSettings,
    degrees_of_freedom,
    kinetic_temperature,
    run_simulation,
)
from neuralct.md.systems import build_system
from neuralct.units import kT_kj_per_mol

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def alanine_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ala")
    system = build_system("alanine-dipeptide")
    settings = SimulationSettings(length_ns=0.2, report_ps=0.1, equilibration_ps=5.0, platform="Reference", seed=3)
    summary = run_simulation(system, folder, settings, progress=False)
    return system, folder, summary


def test_kinetic_temperature_within_3_percent(alanine_run):
    system, folder, summary = alanine_run
    assert summary["frames"] == 2000 and summary["ns_simulated"] == pytest.approx(0.2)
    assert abs(summary["mean_kinetic_temperature_K"] - 300.0) < 0.03 * 300.0
    assert json.loads((folder / "summary.json").read_text())["frames"] == 2000
    for key in ("steps_per_second", "ns_per_day"):
        assert summary[key] > 0


def test_kinetic_energy_has_the_maxwell_boltzmann_distribution(alanine_run):
    """2 K / kT of on-step velocities follows a chi-square law with dof degrees of freedom."""
    system, folder, _ = alanine_run
    frames = read_netcdf(folder / "replica-000.nc")
    dof = degrees_of_freedom(system.system)
    x = dof * kinetic_temperature(frames.velocities, system.masses(), dof) / 300.0
    # On-step (averaged leapfrog) velocities are O((omega dt)^2) cool in the stiffest modes:
    # measured ~4% at 2 fs, so the mean is checked at 6%; the width of the distribution is that
    # of a chi-square with dof degrees of freedom (variance 2 dof), independent of the scale.
    assert x.mean() == pytest.approx(dof, rel=0.06)
    assert (x.var() / x.mean() ** 2) == pytest.approx(2.0 / dof, rel=0.25)


def test_harmonic_chain_velocity_components_are_maxwell_boltzmann(tmp_path):
    from scipy import stats

    system = build_system("harmonic-chain")
    settings = SimulationSettings(length_ns=0.2, report_ps=1.0, equilibration_ps=20.0, platform="Reference", seed=1)
    run_simulation(system, tmp_path, settings, progress=False)
    v = read_netcdf(tmp_path / "replica-000.nc").velocities
    z = (v * np.sqrt(system.masses() / kT_kj_per_mol(300.0))[None, :, None]).ravel()
    assert z.var() == pytest.approx(1.0, rel=0.03)
    assert abs(z.mean()) < 0.03
    assert stats.kstest(z[::7], "norm").pvalue > 1e-3


def test_trajectory_files_are_readable_by_mdtraj_and_mdanalysis(alanine_run):
    import MDAnalysis as mda
    import mdtraj as md

    system, folder, _ = alanine_run
    frames = read_netcdf(folder / "replica-000.nc")
    assert frames.attributes["neuralct_velocities_on_step"] == 1
    np.testing.assert_allclose(np.diff(frames.time_ps), 0.1, atol=1e-4)
    traj = md.load(str(folder / "replica-000.nc"), top=str(folder / "topology.pdb"))
    universe = mda.Universe(str(folder / "topology.pdb"), str(folder / "replica-000.nc"))
    assert traj.n_frames == len(universe.trajectory) == 2000
    universe.trajectory[1234]
    np.testing.assert_allclose(universe.atoms.positions / 10.0, traj.xyz[1234], atol=1e-6)
    np.testing.assert_allclose(universe.atoms.velocities / 10.0, frames.velocities[1234], atol=1e-5)


def _simulate(args, folder, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "neuralct", "simulate", *args, "--output", str(folder), "--no-progress"]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, **kwargs)


def test_killed_run_resumes_without_missing_or_duplicated_frames(tmp_path):
    args = [
        "alanine-dipeptide",
        "--length-ns",
        "0.4",
        "--report-ps",
        "0.1",
        "--platform",
        "Reference",
        "--checkpoint-seconds",
        "0.3",
        "--seed",
        "7",
    ]
    full = _simulate(args, tmp_path / "full")
    killed = _simulate(args, tmp_path / "killed")
    checkpoint = tmp_path / "killed" / "replica-000.chk.npz"
    deadline = time.time() + 120
    while time.time() < deadline:
        if checkpoint.exists() and int(np.load(checkpoint)["frames"]) >= 500:
            break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    frames_at_kill = int(np.load(checkpoint)["frames"])
    assert 0 < frames_at_kill < 4000, "the run must be killed mid-way"
    assert full.wait() == 0
    resumed = _simulate(args, tmp_path / "killed")
    assert resumed.wait() == 0, resumed.stderr.read().decode()
    a, b = read_netcdf(tmp_path / "full" / "replica-000.nc"), read_netcdf(tmp_path / "killed" / "replica-000.nc")
    assert a.positions.shape[0] == b.positions.shape[0] == 4000
    np.testing.assert_allclose(np.diff(b.time_ps), 0.1, atol=1e-4)
    assert b.time_ps[0] == pytest.approx(0.1, abs=1e-4)
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["replicas"][0]["resumed_from_frame"] == frames_at_kill
    # The checkpoint holds the random-number state: the resumed run is the uninterrupted one.
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-6)


def test_replicas_are_independent(tmp_path):
    system = build_system("double-well")
    settings = SimulationSettings(length_ns=0.01, report_ps=1.0, platform="Reference")
    summary = run_simulation(system, tmp_path, settings, replicas=2, jobs=1, progress=False)
    a, b = (read_netcdf(tmp_path / f"replica-00{r}.nc") for r in range(2))
    assert summary["frames"] == 20 and len(summary["replicas"]) == 2
    assert not np.allclose(a.positions, b.positions)


def _frames_done(folder, replicas):
    return [
        int(np.load(folder / f"replica-00{r}.chk.npz")["frames"]) if (folder / f"replica-00{r}.chk.npz").exists() else 0
        for r in range(replicas)
    ]


@pytest.mark.slow
def test_parallel_replicas_equal_sequential_ones_and_resume_after_a_kill(tmp_path):
    """Two replicas in two worker processes: killing the parent stops the workers, and the rerun ends
    with exactly the frames of an uninterrupted run of the replicas one after another."""
    args = [
        "alanine-dipeptide",
        "--length-ns",
        "0.1",
        "--report-ps",
        "0.1",
        "--platform",
        "Reference",
        "--replicas",
        "2",
        "--checkpoint-seconds",
        "0.3",
        "--seed",
        "11",
    ]
    sequential = _simulate(args + ["--jobs", "1"], tmp_path / "sequential")
    killed = _simulate(args + ["--jobs", "2"], tmp_path / "parallel")
    deadline = time.time() + 120
    while time.time() < deadline and min(_frames_done(tmp_path / "parallel", 2)) < 50:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    time.sleep(1.5)
    at_kill = _frames_done(tmp_path / "parallel", 2)
    time.sleep(1.5)
    assert _frames_done(tmp_path / "parallel", 2) == at_kill, "orphaned workers must stop"
    # A replica may finish before the other starts (process start-up under load): one mid-way is enough.
    assert min(at_kill) > 0 and min(at_kill) < 1000, "the run must be killed mid-way"
    assert sequential.wait() == 0
    resumed = _simulate(args + ["--jobs", "2"], tmp_path / "parallel")
    assert resumed.wait() == 0, resumed.stderr.read().decode()
    summary = json.loads((tmp_path / "parallel" / "summary.json").read_text())
    assert summary["settings"]["jobs"] == 2 and [r["resumed_from_frame"] for r in summary["replicas"]] == at_kill
    for replica in range(2):
        a = read_netcdf(tmp_path / "sequential" / f"replica-00{replica}.nc")
        b = read_netcdf(tmp_path / "parallel" / f"replica-00{replica}.nc")
        assert a.positions.shape[0] == b.positions.shape[0] == 1000
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-6)


IDLE_POOL = r"""
import os, time, multiprocessing
from concurrent.futures import ProcessPoolExecutor
from neuralct.md import replicas
if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    arguments = (context.Queue(), os.getpid(), context.Event())
    with ProcessPoolExecutor(1, mp_context=context, initializer=replicas._start_worker, initargs=arguments) as pool:
        pool.submit(time.sleep, 0.01).result()
        print(*pool._processes, flush=True)
        time.sleep(60)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads process states from /proc")
def test_an_idle_worker_of_a_killed_parent_exits():
    """A worker waiting for work sends no frames, so only the watchdog can end it once its parent is gone."""
    parent = subprocess.Popen([sys.executable, "-c", IDLE_POOL], stdout=subprocess.PIPE)
    (worker,) = (int(pid) for pid in parent.stdout.readline().split())
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def running(pid):
        try:
            state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
        except FileNotFoundError:
            return False
        return state not in ("Z", "X")

    deadline = time.time() + 10
    while running(worker) and time.time() < deadline:
        time.sleep(0.05)
    if running(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the orphaned idle worker kept running")


@pytest.mark.parametrize(
    "replicas, cores, jobs",
    [(1, 2, 1), (2, 2, 2), (3, 2, 3), (4, 2, 4), (5, 2, 2), (3, 16, 3), (40, 16, 16)],
)
def test_default_jobs_runs_up_to_two_replicas_per_core_at_once(replicas, cores, jobs):
    # 3 replicas on 2 cores as 3 jobs: no replica waits alone for a round of its own.
    assert default_jobs(replicas, cores) == jobs


def test_plan_jobs_shares_the_cores_between_the_jobs(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert plan_jobs(1, None, None) == (1, None)  # one job keeps the platform's default threads
    assert plan_jobs(3, None, None) == (3, 1)
    assert plan_jobs(2, 5, None) == (2, 2)  # never more jobs than replicas
    assert plan_jobs(3, 2, 3) == (2, 3)
    with pytest.raises(NeuralCTError, match="`replicas` must be >= 1, got 0"):
        plan_jobs(0, None, None)
    with pytest.raises(NeuralCTError, match="`jobs` must be >= 1, got 0"):
        plan_jobs(2, 0, None)


class _Tally:
    def __init__(self):
        self.frames = 0

    def update(self, n):
        self.frames += n


def _record_frames(frames, tag, progress, stop):
    for _ in range(frames):
        progress.update(1)
    return tag, os.getpid()


def test_worker_processes_report_every_frame_and_return_in_order():
    tally = _Tally()
    results = run_in_processes(_record_frames, [(3, "a"), (5, "b"), (2, "c")], 2, tally)
    assert [tag for tag, _ in results] == ["a", "b", "c"] and tally.frames == 10
    assert os.getpid() not in {pid for _, pid in results}


def test_settings_errors_name_the_argument():
    with pytest.raises(NeuralCTError, match="^`report_ps` 0.003 is not a whole number of 2.0 fs steps$"):
        SimulationSettings(report_ps=0.003).validate()
    with pytest.raises(NeuralCTError, match="^`threads` must be >= 1, got 0$"):
        SimulationSettings(threads=0).validate()


def test_degrees_of_freedom_of_the_solute_and_the_water_add_up_to_the_system():
    """Constraints and the centre-of-mass motion are shared between the parts, so the parts' dof sum to the whole."""
    from neuralct.md.systems import WaterBox, solute_atoms

    system = build_system("alanine-dipeptide", solvent="tip3p", water=WaterBox(padding_nm=0.6, cutoff_nm=0.7))
    solute = solute_atoms(system.topology)
    rest = np.setdiff1d(np.arange(system.n_atoms), solute)
    whole = degrees_of_freedom(system.system)
    assert whole == 3 * system.n_atoms - system.system.getNumConstraints() - 3
    parts = degrees_of_freedom(system.system, solute) + degrees_of_freedom(system.system, rest)
    assert parts == pytest.approx(whole, abs=1e-9)
    # 22 atoms, 12 hydrogen bonds constrained (each removes the hydrogen's share and its partner's)
    assert degrees_of_freedom(system.system, solute) == pytest.approx(
        66 - 12 - 3 * system.masses()[solute].sum() / system.masses().sum()
    )


def test_a_box_the_barostat_shrank_below_twice_the_cutoff_is_one_line():
    """OpenMM's exception from inside a step becomes the run's one-line breakdown, saying what to change."""
    import openmm as mm

    from neuralct.errors import RunBrokeDown
    from neuralct.md.simulate import divergence_as_error

    with pytest.raises(RunBrokeDown) as error:
        with divergence_as_error(SimulationSettings()):
            raise mm.OpenMMException("The periodic box size has decreased to less than twice the nonbonded cutoff.")
    assert len(str(error.value).splitlines()) == 1
    assert "barostat shrank the periodic box" in error.value.what and "smaller `cutoff_nm`" in str(error.value)
    with pytest.raises(mm.OpenMMException, match="something else"):
        with divergence_as_error(SimulationSettings()):
            raise mm.OpenMMException("something else")


def test_the_thermostat_holds_the_temperature_asked(tmp_path):
    """At 450 K, each velocity component of the harmonic chain has variance kT/m of 450 K, not of 300 K."""
    system = build_system("harmonic-chain", temperature=450.0)
    settings = SimulationSettings(
        temperature=450.0, length_ns=0.05, report_ps=0.5, equilibration_ps=10.0, platform="Reference", seed=2
    )
    summary = run_simulation(system, tmp_path, settings, progress=False)
    v = read_netcdf(tmp_path / "replica-000.nc").velocities
    z = (v * np.sqrt(system.masses() / kT_kj_per_mol(450.0))[None, :, None]).ravel()
    assert z.var() == pytest.approx(1.0, rel=0.06)
    assert summary["mean_kinetic_temperature_K"] == pytest.approx(450.0, rel=0.06)


def test_on_step_velocities_are_uncorrelated_with_the_positions(tmp_path):
    """An oscillator with omega dt = 0.2: the half-step velocity after x_n has correlation -omega dt / 2 with x_n
    (the force's kick), the on-step velocity none."""
    from neuralct.md.systems import harmonic_chain_system

    # One bead held by two springs: omega^2 = 2 kappa / m, kappa = 2000 kT/nm^2 at 300 K, m = 1 amu: 99.9 /ps.
    system = harmonic_chain_system(n=1, kappa_kT_per_nm2=2000.0, mass_amu=1.0)
    settings = SimulationSettings(length_ns=0.1, report_ps=0.03, equilibration_ps=1.0, platform="Reference", seed=5)
    run_simulation(system, tmp_path, settings, progress=False)
    frames = read_netcdf(tmp_path / "replica-000.nc")
    x, v = frames.positions.reshape(-1, 3), frames.velocities.reshape(-1, 3)
    correlation = np.mean([np.corrcoef(x[:, axis], v[:, axis])[0, 1] for axis in range(3)])
    # 3333 frames of 3 axes: a standard error of about 0.01, against the half-step velocity's -0.1.
    assert abs(correlation) < 0.04


def test_a_resumed_run_with_another_setting_is_refused(tmp_path):
    """A checkpoint continues only the run that wrote it: its frames must not be extended at another temperature."""
    system = build_system("double-well")
    settings = SimulationSettings(length_ns=0.005, report_ps=1.0, equilibration_ps=1.0, platform="Reference")
    run_simulation(system, tmp_path, settings, progress=False)
    for change in ({"temperature": 310.0}, {"friction_per_ps": 2.0}, {"seed": 1}):
        other = SimulationSettings(**{**settings.__dict__, **change})
        with pytest.raises(NeuralCTError, match=f"different settings \\({next(iter(change))}\\)"):
            run_simulation(system, tmp_path, other, progress=False)
    assert read_netcdf(tmp_path / "replica-000.nc").positions.shape[0] == 5


def test_the_constant_volume_equilibration_keeps_the_box_and_the_rest_runs_at_constant_pressure():
    """The first half of the equilibration runs without the barostat: at 1000 bar its box stays, the other shrinks."""
    import openmm as mm

    from neuralct.md.simulate import _make_integrator, _replica_systems
    from neuralct.md.systems import WaterBox

    built = build_system(
        "alanine-dipeptide", solvent="tip3p", water=WaterBox(padding_nm=0.6, cutoff_nm=0.7, pressure_bar=1000.0)
    )
    seeded, constant_volume = _replica_systems(built.system, 17)
    volumes = []
    for system in (constant_volume, seeded):
        context = mm.Context(system, _make_integrator(SimulationSettings(), 3), mm.Platform.getPlatformByName("CPU"))
        context.setPositions(built.positions)
        mm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
        context.setVelocitiesToTemperature(300.0, 4)
        start = context.getState().getPeriodicBoxVolume()._value
        context.getIntegrator().step(500)
        volumes.append(context.getState().getPeriodicBoxVolume()._value / start)
    assert volumes[0] == 1.0 and volumes[1] != 1.0


def test_frames_are_report_ps_apart_when_the_steps_per_frame_is_a_rounded_quotient(tmp_path):
    """1.001 ps of 1 fs steps is 1001 steps, though 1.001 * 1000 / 1 falls just below 1001 in floating point."""
    system = build_system("double-well")
    settings = SimulationSettings(
        length_ns=0.005005, timestep_fs=1.0, report_ps=1.001, equilibration_ps=0.1, platform="Reference"
    )
    summary = run_simulation(system, tmp_path, settings, progress=False)
    frames = read_netcdf(tmp_path / "replica-000.nc")
    assert summary["frames"] == 5
    np.testing.assert_allclose(frames.time_ps, 1.001 * np.arange(1, 6), atol=1e-6)


def test_frames_written_after_the_last_checkpoint_are_dropped_and_the_resumed_run_is_the_uninterrupted_one(
    tmp_path, monkeypatch
):
    """A run killed between writing its frames and its checkpoint leaves more frames than the checkpoint holds."""
    from neuralct.io import ArrayCheckpoint

    system = build_system("double-well")
    settings = SimulationSettings(
        length_ns=0.01, report_ps=1.0, equilibration_ps=1.0, platform="Reference", seed=4, checkpoint_seconds=0.0
    )
    for name in ("full", "killed"):
        (tmp_path / name).mkdir()
    run_simulation(system, tmp_path / "full", settings, progress=False)
    save = ArrayCheckpoint.save
    with monkeypatch.context() as patch:
        patch.setattr(ArrayCheckpoint, "save", lambda self, path: save(self, path) if self["frames"] <= 3 else None)
        run_simulation(system, tmp_path / "killed", settings, progress=False)
    assert read_netcdf(tmp_path / "killed" / "replica-000.nc").positions.shape[0] == 10
    summary = run_simulation(system, tmp_path / "killed", settings, progress=False)
    assert summary["replicas"][0]["resumed_from_frame"] == 3
    a, b = (read_netcdf(tmp_path / name / "replica-000.nc") for name in ("full", "killed"))
    np.testing.assert_array_equal(a.time_ps, b.time_ps)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.velocities, b.velocities)


def test_a_resumed_run_that_saves_other_atoms_is_refused_and_the_state_lies_after_equilibration_and_frames(tmp_path):
    """The state of every atom beside a trajectory of some of them is that of the end: equilibration, every frame
    and the one step past the last report step that its on-step velocity took."""
    import openmm as mm

    system = build_system("harmonic-chain")
    settings = SimulationSettings(length_ns=0.004, report_ps=1.0, equilibration_ps=3.0, platform="Reference")
    run_simulation(system, tmp_path, settings, atoms=np.arange(10), progress=False)
    state = mm.XmlSerializer.deserialize((tmp_path / "replica-000.state.xml").read_text())
    assert state.getTime()._value == pytest.approx(3.0 + 4.0 + 0.002, abs=1e-9)
    with pytest.raises(NeuralCTError, match="different settings \\(saved_atoms\\)"):
        run_simulation(system, tmp_path, settings, atoms=np.arange(12), progress=False)


def test_the_hydrogens_and_the_heavy_atoms_each_have_the_bath_temperature(alanine_run):
    """Each hydrogen bond constraint takes most of its relative motion from the light hydrogen (m_heavy / (m_H +
    m_heavy) of a degree of freedom): so counted, either part alone is at 300 K."""
    system, folder, _ = alanine_run
    frames = read_netcdf(folder / "replica-000.nc")
    masses = system.masses()
    hydrogens = np.array([atom.index for atom in system.topology.atoms() if atom.element.symbol == "H"])
    heavy = np.setdiff1d(np.arange(system.n_atoms), hydrogens)
    for part in (hydrogens, heavy):
        dof = degrees_of_freedom(system.system, part)
        temperature = kinetic_temperature(frames.velocities[:, part], masses[part], dof).mean()
        # On-step velocities run a few percent cool (module docstring of neuralct.md.simulate).
        assert temperature == pytest.approx(300.0, rel=0.1)
