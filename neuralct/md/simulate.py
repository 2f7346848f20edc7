"""Langevin MD with OpenMM that records positions and on-step velocities, checkpoints and resumes.

Velocities: OpenMM's LangevinMiddleIntegrator is a leapfrog scheme whose velocities lag the
positions by half a step. At each report step n we read x_n and v_{n-1/2}, take one more step
and read v_{n+1/2}; the recorded velocity is the average (v_{n-1/2} + v_{n+1/2}) / 2, the
on-step velocity of the equivalent velocity-Verlet splitting (the two half-step velocities
differ only by the force kick at x_n). Unlike either half-step velocity it is uncorrelated with
x_n, but its variance is low by O((omega dt)^2) in stiff modes (measured for alanine dipeptide
at 2 fs: kinetic temperature about 4% low). The reported kinetic temperature therefore uses
the mean kinetic energy of the two half-step velocities, the standard leapfrog estimator,
stored per frame as the variable ``kinetic_temperature``. The trajectory file says so with the global attribute
``neuralct_velocities_on_step = 1``; loaders resample momenta when it is missing or 0.

Resume: every ``checkpoint_seconds`` the frames so far are written atomically to the trajectory
file and then the integrator state to an atomically written checkpoint. A restarted run keeps
exactly the checkpoint's frames and continues from its state, so no frame is lost or repeated.

Replicas run as parallel processes (``jobs``), each with its own trajectory and checkpoint; a
replica's random streams depend only on (seed, replica), not on how many run at once (its
frames are identical on the Reference platform; the CPU platform's force sums may differ in the
last bits with its thread count). A worker whose parent process is gone stops at the next frame, leaving its
last checkpoint for the rerun; an idle one stops within 0.2 s.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import re
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..data.netcdf import MASSES_ATTRIBUTE, NetCDFFrames, read_netcdf, write_netcdf
from ..errors import NeuralCTError, first_line
from ..io import atomic_savez, atomic_write_text, write_json
from ..units import BOLTZMANN_KJ_PER_MOL_K
from .platform import available_platforms, fastest_platform, make_context
from .systems import MDSystem

__all__ = [
    "SimulationSettings",
    "check_whole_steps",
    "run_simulation",
    "trajectory_path",
    "checkpoint_path",
    "kinetic_temperature",
    "default_jobs",
    "degrees_of_freedom",
    "write_topology",
    "check_sane",
    "divergence_as_error",
]

#: Per-frame kinetic temperature (K) from the mean kinetic energy of the two half-step velocities.
_T_KEY = "kinetic_temperature"

#: Settings that must match for a run to resume from a checkpoint.
_RESUME_KEYS = ("temperature", "length_ns", "timestep_fs", "friction_per_ps", "report_ps", "equilibration_ps", "seed")


def check_whole_steps(option: str, interval_ps: float, step_fs: float, label: str = "") -> None:
    """Refuse an interval (``--option`` in ps) that is not a whole, positive number of time steps of ``step_fs`` fs.

    Raises
    ------
    NeuralCTError
        Naming the option, its value and the step.
    """
    ratio = interval_ps * 1000.0 / step_fs
    if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
        raise NeuralCTError(
            f"--{option.replace('_', '-')} {interval_ps} is not a whole number of {label or f'{step_fs} fs '}steps"
        )


@dataclass
class SimulationSettings:
    """Settings of one ``neuralct simulate`` run (OpenMM units: K, ns, fs, 1/ps, ps).

    Attributes
    ----------
    temperature : float
        Heat-bath temperature in K.
    length_ns : float
        Production length per replica in ns (after equilibration).
    timestep_fs : float
        Integration time step in fs.
    friction_per_ps : float
        Langevin friction coefficient in 1/ps.
    report_ps : float
        Time between recorded frames in ps (a whole number of steps).
    equilibration_ps : float
        Unrecorded MD after minimisation, in ps.
    platform : str
        OpenMM platform name, or ``auto`` for the fastest measured on this system.
    threads : int or None
        CPU threads for the CPU platform (None: OpenMM's default).
    seed : int
        Random seed; replica r uses an independent stream derived from (seed, r).
    checkpoint_seconds : float
        Wall time between checkpoints (frames are also saved at the end).
    """

    temperature: float = 300.0
    length_ns: float = 1.0
    timestep_fs: float = 2.0
    friction_per_ps: float = 1.0
    report_ps: float = 1.0
    equilibration_ps: float = 10.0
    platform: str = "auto"
    threads: int | None = None
    seed: int = 0
    checkpoint_seconds: float = 60.0

    def validate(self) -> None:
        """Raise NeuralCTError for values that cannot make a run."""
        for name in ("temperature", "length_ns", "timestep_fs", "friction_per_ps", "report_ps"):
            if not getattr(self, name) > 0:
                raise NeuralCTError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.equilibration_ps < 0:
            raise NeuralCTError(f"--equilibration-ps must be >= 0, got {self.equilibration_ps}")
        if self.threads is not None and self.threads < 1:
            raise NeuralCTError(f"--threads must be >= 1, got {self.threads}")
        check_whole_steps("report_ps", self.report_ps, self.timestep_fs)
        if self.n_frames < 1:
            raise NeuralCTError(
                f"--length-ns {self.length_ns} is shorter than one report interval ({self.report_ps} ps)"
            )

    @property
    def steps_per_frame(self) -> int:
        """MD steps between recorded frames."""
        return int(round(self.report_ps * 1000.0 / self.timestep_fs))

    @property
    def n_frames(self) -> int:
        """Frames per replica."""
        return int(round(self.length_ns * 1000.0 / self.report_ps))

    @property
    def equilibration_steps(self) -> int:
        """Unrecorded steps before the first frame's interval."""
        return int(round(self.equilibration_ps * 1000.0 / self.timestep_fs))


def trajectory_path(folder: Path, replica: int) -> Path:
    """Trajectory file of ``replica`` in ``folder``."""
    return Path(folder) / f"replica-{replica:03d}.nc"


def checkpoint_path(folder: Path, replica: int) -> Path:
    """Checkpoint file of ``replica`` in ``folder``."""
    return Path(folder) / f"replica-{replica:03d}.chk.npz"


def degrees_of_freedom(system: Any) -> int:
    """Kinetic degrees of freedom: 3 per massive particle, minus constraints and removed centre-of-mass motion."""
    import openmm as mm

    massive = sum(1 for i in range(system.getNumParticles()) if system.getParticleMass(i)._value > 0)
    dof = 3 * massive - system.getNumConstraints()
    if any(isinstance(system.getForce(i), mm.CMMotionRemover) for i in range(system.getNumForces())):
        dof -= 3
    return dof


def kinetic_temperature(velocities: np.ndarray, masses: np.ndarray, dof: int) -> np.ndarray:
    """Instantaneous kinetic temperature 2 K / (dof k_B) per frame.

    Parameters
    ----------
    velocities : np.ndarray, shape=(..., n_atoms, 3)
        Velocities in nm/ps.
    masses : np.ndarray, shape=(n_atoms,)
        Masses in amu.
    dof : int
        Kinetic degrees of freedom.

    Returns
    -------
    np.ndarray, shape=(...)
        Temperatures in K.
    """
    kinetic = 0.5 * np.einsum("i,...ij,...ij->...", masses, velocities, velocities)
    return 2.0 * kinetic / (dof * BOLTZMANN_KJ_PER_MOL_K)


def _replica_seeds(seed: int, replica: int) -> tuple[int, int]:
    # OpenMM treats a seed of 0 as "pick one at random": keep seeds in [1, 2^31 - 1].
    a, b = np.random.SeedSequence([seed, replica]).generate_state(2)
    return int(a % (2**31 - 2)) + 1, int(b % (2**31 - 2)) + 1


def _make_integrator(settings: SimulationSettings, seed: int = 1) -> Any:
    import openmm as mm

    integrator = mm.LangevinMiddleIntegrator(
        settings.temperature, settings.friction_per_ps, settings.timestep_fs / 1000.0
    )
    integrator.setRandomNumberSeed(seed)
    return integrator


class _BlowUp(Exception):
    """The integration diverged (non-finite coordinates)."""


def check_sane(positions: np.ndarray, temperature: float, settings: SimulationSettings, frame: int) -> None:
    """Raise _BlowUp for non-finite coordinates or a kinetic temperature 1000 times the bath's.

    A thermalised frame exceeds 1000 T only with probability below exp(-500) even for one
    degree of freedom, so this flags integration errors, not fluctuations.
    """
    if not np.isfinite(positions).all():
        raise _BlowUp(f"coordinates became NaN at frame {frame}")
    if not temperature <= 1000.0 * settings.temperature:
        raise _BlowUp(f"kinetic temperature {temperature:.3g} K at frame {frame}")


@contextlib.contextmanager
def divergence_as_error(settings: SimulationSettings) -> Iterator[None]:
    """Turn a diverging integration (our NaN check or OpenMM's) into a one-line NeuralCTError saying what to change."""
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, _BlowUp) and not re.search(r"\bnan\b", str(exc), re.IGNORECASE):
            raise
        raise NeuralCTError(
            f"the simulation blew up ({first_line(exc)}); rerun with --overwrite and a smaller --timestep-fs "
            f"(now {settings.timestep_fs:g} fs), or check --temperature (now {settings.temperature:g} K) and the starting structure"
        ) from None


class _Checkpoint:
    """Frames already on disk plus the OpenMM state to continue from, stored as one npz file."""

    def __init__(self, frames: int, platform: str, state: bytes, settings: dict):
        self.frames, self.platform, self.state, self.settings = frames, platform, state, settings

    def save(self, path: Path) -> None:
        atomic_savez(
            path,
            frames=np.array(self.frames),
            platform=np.array(self.platform),
            settings=np.array(json.dumps(self.settings, sort_keys=True)),
            state=np.frombuffer(self.state, dtype=np.uint8),
        )

    @classmethod
    def load(cls, path: Path) -> "_Checkpoint":
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    int(data["frames"]),
                    str(data["platform"]),
                    data["state"].tobytes(),
                    json.loads(str(data["settings"])),
                )
        except Exception as exc:
            raise NeuralCTError(
                f"checkpoint {path} cannot be read ({type(exc).__name__}); delete it to start that replica again"
            ) from None


def _resume_settings(settings: SimulationSettings, md_system: MDSystem) -> dict:
    values = {key: getattr(settings, key) for key in _RESUME_KEYS}
    values["system"] = md_system.name
    values["n_atoms"] = md_system.n_atoms
    return values


def write_topology(md_system: MDSystem, folder: Path) -> None:
    """Write the system's topology with its starting positions to ``folder/topology.pdb`` (atomically)."""
    import openmm.app as app
    import openmm.unit as unit

    text = io.StringIO()
    app.PDBFile.writeFile(md_system.topology, md_system.positions * unit.nanometer, text)
    atomic_write_text(folder / "topology.pdb", text.getvalue())


class _Replica:
    """One replica's run: start or resume, step and record, checkpoint."""

    def __init__(self, md_system: MDSystem, folder: Path, settings: SimulationSettings, replica: int):
        self.md_system, self.settings, self.replica = md_system, settings, replica
        self.traj_path, self.chk_path = trajectory_path(folder, replica), checkpoint_path(folder, replica)
        self.masses = md_system.masses()
        self.dof = degrees_of_freedom(md_system.system)
        self.resume_settings = _resume_settings(settings, md_system)
        self.checkpoint = _Checkpoint.load(self.chk_path) if self.chk_path.exists() else None
        if self.checkpoint is None and self.traj_path.exists():
            raise NeuralCTError(f"{self.traj_path} exists without a checkpoint; choose another --output or delete it")
        if self.checkpoint is not None and self.checkpoint.settings != self.resume_settings:
            changed = sorted(
                k for k in self.resume_settings if self.checkpoint.settings.get(k) != self.resume_settings[k]
            )
            raise NeuralCTError(
                f"{self.chk_path} was written with different settings ({', '.join(changed)}); rerun with the same options or choose another --output"
            )

    @property
    def frames_done(self) -> int:
        return self.checkpoint.frames if self.checkpoint else 0

    @property
    def platform(self) -> str | None:
        return self.checkpoint.platform if self.checkpoint else None

    def _load_frames(self) -> tuple[list, list, list, list]:
        if self.checkpoint is None or self.checkpoint.frames == 0:
            return [], [], [], []
        try:
            frames = read_netcdf(self.traj_path)
        except Exception as exc:
            raise NeuralCTError(
                f"cannot read {self.traj_path} to resume ({type(exc).__name__}); delete the replica's files to start it again"
            ) from None
        n = self.checkpoint.frames
        if frames.positions.shape[0] < n:
            raise NeuralCTError(
                f"{self.traj_path} holds {frames.positions.shape[0]} frames but its checkpoint {n}; delete the replica's files to start it again"
            )
        # Frames written after the checkpoint are dropped: the run continues from the checkpoint's state.
        return (
            list(frames.positions[:n]),
            list(frames.velocities[:n]),
            list(frames.time_ps[:n]),
            list(frames.per_frame[_T_KEY][:n]),
        )

    def _save(
        self, context: Any, platform: str, positions: list, velocities: list, times: list, temperatures: list
    ) -> None:
        attributes = {
            "neuralct_velocities_on_step": 1,
            "neuralct_velocities_method": "mean of the half-step velocities around the report step (LangevinMiddleIntegrator)",
            "neuralct_temperature_K": float(self.settings.temperature),
            "neuralct_timestep_fs": float(self.settings.timestep_fs),
            "neuralct_report_ps": float(self.settings.report_ps),
            "neuralct_system": self.md_system.name,
            # The System's masses: a topology's elements need not carry them (toy particles).
            MASSES_ATTRIBUTE: self.masses,
        }
        n_atoms = self.md_system.n_atoms
        frames = NetCDFFrames(
            np.array(positions).reshape(-1, n_atoms, 3),
            np.array(velocities).reshape(-1, n_atoms, 3),
            np.array(times, dtype=np.float64),
            attributes,
            {_T_KEY: np.array(temperatures, dtype=np.float64)},
        )
        write_netcdf(self.traj_path, frames)
        self.checkpoint = _Checkpoint(len(positions), platform, context.createCheckpoint(), self.resume_settings)
        self.checkpoint.save(self.chk_path)

    def run(self, platform: str, progress: Any, threads: int | None) -> dict:
        """Run the remaining frames on ``threads`` CPU threads; return this replica's figures."""
        settings = self.settings
        velocity_seed, integrator_seed = _replica_seeds(settings.seed, self.replica)
        integrator = _make_integrator(settings, integrator_seed)
        context = make_context(self.md_system.system, integrator, platform, threads)
        positions, velocities, times, temperatures = self._load_frames()
        equilibration_time = settings.equilibration_steps * settings.timestep_fs / 1000.0
        if self.checkpoint is None:
            import openmm as mm

            context.setPositions(self.md_system.positions)
            mm.LocalEnergyMinimizer.minimize(context, 10.0, 1000)
            context.setVelocitiesToTemperature(settings.temperature, velocity_seed)
            # Every saved state lies one step past a report step (frame 0 being the end of
            # equilibration), because reading an on-step velocity needs the step after the frame.
            integrator.step(settings.equilibration_steps + 1)
            self._save(context, platform, positions, velocities, times, temperatures)
        else:
            context.loadCheckpoint(self.checkpoint.state)
        stride = settings.steps_per_frame
        start = last_save = time.perf_counter()
        first_frame = unsaved = len(positions)
        for _ in range(first_frame, settings.n_frames):
            if stride > 1:
                integrator.step(stride - 1)
            before = context.getState(getPositions=True, getVelocities=True)
            integrator.step(1)
            after = context.getState(getVelocities=True)
            v_before, v_after = before.getVelocities(asNumpy=True)._value, after.getVelocities(asNumpy=True)._value
            positions.append(before.getPositions(asNumpy=True)._value)
            velocities.append(0.5 * (v_before + v_after))
            temperatures.append(
                0.5
                * (
                    kinetic_temperature(v_before, self.masses, self.dof)
                    + kinetic_temperature(v_after, self.masses, self.dof)
                )
            )
            check_sane(positions[-1], temperatures[-1], settings, len(positions) - 1)
            times.append(before.getTime()._value - equilibration_time)
            progress.update(1)
            if time.perf_counter() - last_save >= settings.checkpoint_seconds:
                self._save(context, platform, positions, velocities, times, temperatures)
                last_save, unsaved = time.perf_counter(), len(positions)
        if len(positions) != unsaved:
            self._save(context, platform, positions, velocities, times, temperatures)
        wall = time.perf_counter() - start
        steps = (settings.n_frames - first_frame) * stride
        on_step = kinetic_temperature(
            np.array(velocities).reshape(-1, self.md_system.n_atoms, 3), self.masses, self.dof
        )
        return {
            "replica": self.replica,
            "trajectory": self.traj_path.name,
            "frames": len(positions),
            "frames_this_run": settings.n_frames - first_frame,
            "resumed_from_frame": first_frame if first_frame else None,
            "ns_simulated": len(positions) * settings.report_ps / 1000.0,
            "platform": platform,
            "steps_this_run": steps,
            "wall_seconds": wall,
            "steps_per_second": steps / wall if wall > 0 and steps else None,
            "ns_per_day": steps * settings.timestep_fs * 1e-6 / wall * 86400.0 if wall > 0 and steps else None,
            "mean_kinetic_temperature_K": float(np.mean(temperatures)),
            "mean_kinetic_temperature_on_step_velocities_K": float(on_step.mean()),
            "degrees_of_freedom": self.dof,
        }


class _QueueProgress:
    """Progress of a replica in a worker process: frame counts go to the parent through a queue."""

    def __init__(self, frames: Any, parent: int):
        self.frames, self.parent = frames, parent

    def update(self, n: int) -> None:
        # A worker orphaned by a killed parent stops here; its last checkpoint stays valid for the rerun.
        if os.getppid() != self.parent:
            os._exit(1)
        self.frames.put(n)


_worker_progress: _QueueProgress | None = None


def _start_worker(frames: Any, parent: int) -> None:
    """Worker initializer: the progress queue, and a watchdog that ends the worker once its parent is gone.

    The per-frame check of :class:`_QueueProgress` stops a running replica at once; the
    watchdog also ends a worker that waits for work (it has finished its replica, or none was
    left for it), which otherwise blocks on the pool's queue forever.
    """
    global _worker_progress
    _worker_progress = _QueueProgress(frames, parent)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int, interval_s: float = 0.2) -> None:
    while os.getppid() == parent:
        time.sleep(interval_s)
    os._exit(1)


def _run_replica(
    md_system: MDSystem, folder: Path, settings: SimulationSettings, replica: int, platform: str, threads: int | None
) -> dict:
    """One replica in a worker process (the checkpoint was checked by the parent already)."""
    with divergence_as_error(settings):
        return _Replica(md_system, folder, settings, replica).run(platform, _worker_progress, threads)


def _run_parallel(runs: list[_Replica], platform: str, threads: int | None, jobs: int, bar: Any) -> list[dict]:
    """Run the replicas in ``jobs`` worker processes, feeding their frame counts to ``bar``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: the parent may already hold OpenMM contexts and their threads (the platform probe).
    context = multiprocessing.get_context("spawn")
    frames = context.Queue()
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_start_worker, initargs=(frames, os.getpid())
    ) as pool:
        futures = [
            pool.submit(_run_replica, run.md_system, run.traj_path.parent, run.settings, run.replica, platform, threads)
            for run in runs
        ]
        pending = set(futures)
        while pending:
            try:
                bar.update(frames.get(timeout=0.2))
            except queue.Empty:
                pass
            pending = {f for f in pending if not f.done()}
        wait(futures)
        while not frames.empty():
            bar.update(frames.get())
        try:
            return [f.result() for f in futures]
        except BrokenProcessPool:
            raise NeuralCTError(
                "a replica's worker process died (killed, or out of memory); rerun the same command to resume every replica from its checkpoint"
            ) from None


def default_jobs(replicas: int, cores: int) -> int:
    """Replicas run at once when ``--jobs`` is not given: all of them up to two per core, else one per core.

    Equal replicas on fewer processes than replicas leave cores idle in the last round (3 on 2
    processes: the third runs alone), while up to two single-thread processes per core finish
    together. Measured with ``benchmarks/bench_replicas.py``: 3 tri-alanine replicas on 2 cores
    ran 2.45 times as fast as one after another with 3 jobs, 1.56 times with 2.
    """
    return replicas if replicas <= 2 * cores else cores


def run_simulation(
    md_system: MDSystem,
    folder: str | os.PathLike,
    settings: SimulationSettings,
    *,
    replicas: int = 1,
    jobs: int | None = None,
    progress: bool = True,
) -> dict:
    """Run (or resume) ``replicas`` independent Langevin trajectories of ``md_system``, ``jobs`` at a time.

    Writes into ``folder``: ``topology.pdb``, one ``replica-NNN.nc`` (AMBER NetCDF with
    positions, on-step velocities and time) and one checkpoint per replica, and ``summary.json``.
    A rerun with the same settings resumes each replica from its checkpoint.

    Parameters
    ----------
    md_system : MDSystem
        The system (see ``neuralct.md.systems.build_system``).
    folder : path
        Output folder; must exist and be writable.
    settings : SimulationSettings
        Run settings.
    replicas : int
        Number of independent trajectories.
    jobs : int, optional
        Replicas run at once, each in its own process (default: :func:`default_jobs`); 1 runs
        them one after another in this process. Without
        ``settings.threads`` each job gets the CPU cores divided by ``jobs`` as threads, and
        the platform probe runs with that many threads, as the replicas will.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    dict
        The summary also written to ``summary.json``: ns simulated, frames, steps per second
        of each replica's process and of the whole run, ns/day, mean kinetic temperature (K),
        platform, jobs, per-replica figures.
    """
    from tqdm import tqdm

    settings.validate()
    if replicas < 1:
        raise NeuralCTError(f"--replicas must be >= 1, got {replicas}")
    cores = os.cpu_count() or 1
    jobs = default_jobs(replicas, cores) if jobs is None else jobs
    if jobs < 1:
        raise NeuralCTError(f"--jobs must be >= 1, got {jobs}")
    jobs = min(jobs, replicas)
    threads = settings.threads if settings.threads is not None or jobs == 1 else max(1, cores // jobs)
    if settings.platform != "auto" and settings.platform not in available_platforms():
        raise NeuralCTError(
            f"OpenMM platform {settings.platform!r} is not available here; use auto or one of {', '.join(available_platforms())}"
        )
    folder = Path(folder)
    # A checkpoint loads only on the platform that wrote it, so a resumed run keeps that platform.
    runs = [_Replica(md_system, folder, settings, r) for r in range(replicas)]
    platform = next((run.platform for run in runs if run.platform), None)
    probe_rates = None
    if platform is None:
        platform = settings.platform
        if platform == "auto":
            platform, probe_rates = fastest_platform(
                md_system.system, md_system.positions, lambda: _make_integrator(settings), threads=threads
            )
    # A fresh start writes its own topology: one left by another system's failed run must not stay.
    if not any(run.checkpoint for run in runs) or not (folder / "topology.pdb").exists():
        write_topology(md_system, folder)
    total = replicas * settings.n_frames
    done = sum(run.frames_done for run in runs)
    start = time.perf_counter()
    with tqdm(
        total=total,
        initial=done,
        unit="frame",
        desc=f"simulate {md_system.name}",
        disable=not progress,
        mininterval=0.5,
    ) as bar:
        unfinished = sum(run.frames_done < settings.n_frames for run in runs)
        if min(jobs, unfinished) <= 1:
            with divergence_as_error(settings):
                results = [run.run(platform, bar, threads) for run in runs]
        else:
            results = _run_parallel(runs, platform, threads, jobs, bar)
    elapsed = time.perf_counter() - start
    steps = sum(r["steps_this_run"] for r in results)
    wall = sum(r["wall_seconds"] for r in results)
    frames = sum(r["frames"] for r in results)
    summary = {
        "system": md_system.name,
        "description": md_system.description,
        "system_settings": md_system.settings,
        "n_atoms": md_system.n_atoms,
        "settings": asdict(settings) | {"replicas": replicas, "jobs": jobs, "threads_per_job": threads},
        "integrator": "LangevinMiddleIntegrator",
        "platform": platform,
        "platform_probe_steps_per_second": probe_rates,
        "platform_probe_threads": threads if probe_rates else None,
        "trajectory_format": "AMBER NetCDF (angstrom, angstrom/ps, ps) with topology.pdb; velocities on-step",
        "ns_simulated": frames * settings.report_ps / 1000.0,
        "frames": frames,
        "wall_seconds": elapsed,
        "steps_per_second": steps / wall if wall > 0 and steps else None,
        "ns_per_day": steps * settings.timestep_fs * 1e-6 / wall * 86400.0 if wall > 0 and steps else None,
        "throughput_steps_per_second": steps / elapsed if elapsed > 0 and steps else None,
        "rates": "steps_per_second and ns_per_day: production steps per second of production wall time of one "
        "replica's process (summed over replicas); throughput_steps_per_second: all replicas' production steps "
        "per second of the whole run's wall time (start-up, minimisation and equilibration included)",
        "mean_kinetic_temperature_K": float(
            sum(r["mean_kinetic_temperature_K"] * r["frames"] for r in results) / frames
        ),
        "replicas": results,
    }
    write_json(folder / "summary.json", summary)
    return summary
