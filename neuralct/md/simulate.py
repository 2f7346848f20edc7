"""Langevin MD with OpenMM that records positions and on-step velocities, checkpoints and resumes.

Velocities: OpenMM's LangevinMiddleIntegrator is a leapfrog scheme whose velocities lag the
positions by half a step. At each report step n we read x_n and v_{n-1/2}, take one more step
and read v_{n+1/2}; the recorded velocity is the average (v_{n-1/2} + v_{n+1/2}) / 2, the
on-step velocity of the equivalent velocity-Verlet splitting (the two half-step velocities
differ only by the force kick at x_n). Unlike either half-step velocity it is uncorrelated with
x_n, but its variance is low by O((omega dt)^2) in stiff modes (measured for alanine dipeptide
at 2 fs: kinetic temperature about 4% low over all atoms, 11-16% low for the carbonyl C and O).
The reported kinetic temperature therefore uses
the mean kinetic energy of the two half-step velocities, the standard leapfrog estimator,
stored per frame as the variable ``kinetic_temperature``. The trajectory file says so with the global attribute
``neuralct_velocities_on_step = 1``; loaders resample momenta when it is missing or 0.

Explicit water: the System carries a Monte Carlo barostat (see :mod:`neuralct.md.systems`). After
minimisation the first half of the equilibration runs at constant volume (NVT: the same System
without its barostat, in a context of its own), the second half and the production at constant
pressure (NPT). The trajectory records the saved atoms (by default the solute) with the box of
each frame; the kinetic temperature is that of every atom, and ``replica-NNN.state.xml`` (an
OpenMM State: positions, velocities and box of every atom, at the last checkpoint) with
``system.pdb`` and ``system.xml`` (the whole box's topology and OpenMM System) keep what the
trajectory leaves out, to continue or inspect the run.

Resume: every ``checkpoint_seconds``, at the end and on Ctrl-C (at the end of the frame under
way) the frames so far are written atomically to the trajectory file and then the integrator
state to an atomically written checkpoint. A restarted run keeps exactly the checkpoint's frames
and continues from its state, so no frame is lost or repeated.

Replicas run as parallel processes (``jobs``, see :mod:`neuralct.md.replicas`), each with its own
trajectory and checkpoint; a replica's random streams (velocities, integrator, barostat) depend
only on (seed, replica), not on how many run at once nor on whether it runs alone
(``replica_index``): its frames are identical on the Reference platform; on the CPU platform two
runs differ in their last bits (even on one thread), which the dynamics' chaos grows (and a
barostat's accept-or-reject test can turn into another box at once). OpenMM's checkpoints do not
hold a barostat's random stream: a resumed run of a box draws other volume moves from there on.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..data.netcdf import MASSES_ATTRIBUTE, TEMPERATURE_ATTRIBUTE, NetCDFFrames, read_netcdf, write_netcdf
from ..errors import NeuralCTError, RunBrokeDown, first_line
from ..io import ArrayCheckpoint, atomic_write_text, write_json
from ..units import BOLTZMANN_KJ_PER_MOL_K
from .interrupt import sigint_held
from .platform import automatic_platform, available_platforms, make_context
from .replicas import plan_jobs, run_in_processes
from .systems import MDSystem, barostat_index, select_atoms

__all__ = [
    "SimulationSettings",
    "openmm_seeds",
    "check_whole_steps",
    "run_simulation",
    "trajectory_path",
    "checkpoint_path",
    "state_path",
    "replica_folder",
    "replicas_to_run",
    "kinetic_temperature",
    "degrees_of_freedom",
    "write_topology",
    "check_sane",
    "divergence_as_error",
]

#: Per-frame kinetic temperature (K) from the mean kinetic energy of the two half-step velocities.
_T_KEY = "kinetic_temperature"

#: Settings that must match for a run to resume from a checkpoint.
_RESUME_KEYS = ("temperature", "length_ns", "timestep_fs", "friction_per_ps", "report_ps", "equilibration_ps", "seed")


def check_whole_steps(name: str, interval_ps: float, step_fs: float, label: str = "") -> None:
    """Refuse an interval that is not a whole, positive number of time steps.

    Parameters
    ----------
    name : str
        The interval's argument name, as the error names it (e.g. ``report_ps``).
    interval_ps : float
        The interval in ps.
    step_fs : float
        The time step in fs.
    label : str
        The step in words for the error, ending in a space (default ``"{step_fs} fs "``).

    Raises
    ------
    NeuralCTError
        Naming the argument, its value and the step.
    """
    ratio = interval_ps * 1000.0 / step_fs
    if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
        raise NeuralCTError(f"`{name}` {interval_ps} is not a whole number of {label or f'{step_fs} fs '}steps")


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
        Wall time between checkpoints (frames are also saved at the end and on Ctrl-C).
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
                raise NeuralCTError(f"`{name}` must be positive, got {getattr(self, name)}")
        if self.equilibration_ps < 0:
            raise NeuralCTError(f"`equilibration_ps` must be >= 0, got {self.equilibration_ps}")
        if self.threads is not None and self.threads < 1:
            raise NeuralCTError(f"`threads` must be >= 1, got {self.threads}")
        check_whole_steps("report_ps", self.report_ps, self.timestep_fs)
        if self.n_frames < 1:
            raise NeuralCTError(
                f"`length_ns` {self.length_ns} is shorter than one report interval ({self.report_ps} ps)"
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


def _replica_name(replica: int) -> str:
    return f"replica-{replica:03d}"


def trajectory_path(folder: Path, replica: int) -> Path:
    """Trajectory file of ``replica`` in ``folder``."""
    return Path(folder) / f"{_replica_name(replica)}.nc"


def checkpoint_path(folder: Path, replica: int) -> Path:
    """Checkpoint file of ``replica`` in ``folder``."""
    return Path(folder) / f"{_replica_name(replica)}.chk.npz"


def state_path(folder: Path, replica: int) -> Path:
    """OpenMM State XML of every atom of ``replica`` in ``folder`` (written when the trajectory holds fewer)."""
    return Path(folder) / f"{_replica_name(replica)}.state.xml"


def replica_folder(folder: Path, replica: int) -> Path:
    """The folder of ``replica`` run alone (``replica_index``) beside the others of its job array: ``replica-NNN/``."""
    return Path(folder) / _replica_name(replica)


def replicas_to_run(replicas: int, replica_index: int | None = None) -> list[int]:
    """The replicas a run simulates: all ``replicas``, or replica ``replica_index`` of them alone.

    Raises
    ------
    NeuralCTError
        If ``replicas`` is below 1 or ``replica_index`` is not one of ``0 .. replicas - 1``.
    """
    if replicas < 1:
        raise NeuralCTError(f"`replicas` must be >= 1, got {replicas}")
    if replica_index is None:
        return list(range(replicas))
    if not 0 <= replica_index < replicas:
        raise NeuralCTError(
            f"`replica_index` {replica_index} is not one of the `replicas` ({replicas}: 0 to {replicas - 1}); "
            "give the array's size as `replicas`"
        )
    return [replica_index]


def degrees_of_freedom(system: Any, atoms: np.ndarray | None = None) -> float:
    """Kinetic degrees of freedom of ``atoms`` (default all): 3 per massive particle, less constraints and
    removed centre-of-mass motion.

    Of a subset, each constraint removes the share of its relative motion that its atoms in the subset
    carry (atom i of a pair i-j: m_j / (m_i + m_j)), and the removed centre-of-mass motion the subset's
    share of the mass, so that 2 <K_subset> / (dof k_B) is the temperature.

    Parameters
    ----------
    system : openmm.System
    atoms : np.ndarray, shape=(n,), optional
        Particle indices.
    """
    import openmm as mm

    masses = np.array([system.getParticleMass(i)._value for i in range(system.getNumParticles())])
    inside = np.zeros(len(masses), dtype=bool)
    inside[np.arange(len(masses)) if atoms is None else atoms] = True
    dof = 3.0 * np.count_nonzero(inside & (masses > 0))
    for k in range(system.getNumConstraints()):
        i, j, _ = system.getConstraintParameters(k)
        dof -= (inside[i] * masses[j] + inside[j] * masses[i]) / (masses[i] + masses[j])
    if any(isinstance(system.getForce(i), mm.CMMotionRemover) for i in range(system.getNumForces())):
        dof -= 3.0 * masses[inside].sum() / masses.sum()
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


def _replica_seeds(seed: int, replica: int) -> tuple[int, int, int, int]:
    """The seeds of ``replica`` from (``seed``, ``replica``) only: velocities, integrator, barostat, and the
    integrator of the constant-volume equilibration."""
    # The words of generate_state do not depend on how many are drawn, so the first two are as before the others came.
    return openmm_seeds([seed, replica], 4)


def openmm_seeds(entropy: int | Sequence[int], count: int) -> tuple[int, ...]:
    """``count`` seeds for OpenMM's random streams drawn from ``entropy`` (``numpy.random.SeedSequence``).

    OpenMM treats a seed of 0 as "pick one at random": the seeds lie in [1, 2^31 - 2].
    """
    words = np.random.SeedSequence(entropy).generate_state(count)
    return tuple(int(word % (2**31 - 2)) + 1 for word in words)


def _replica_systems(system: Any, barostat_seed: int) -> tuple[Any, Any | None]:
    """The System a replica runs, its barostat drawing from the replica's seed, and that System without its
    barostat for the constant-volume equilibration (None without a barostat)."""
    import openmm as mm

    index = barostat_index(system)
    if index is None:
        return system, None
    seeded, constant_volume = mm.XmlSerializer.clone(system), mm.XmlSerializer.clone(system)
    seeded.getForce(index).setRandomNumberSeed(barostat_seed)
    constant_volume.removeForce(index)
    return seeded, constant_volume


def _make_integrator(settings: SimulationSettings, seed: int = 1) -> Any:
    """The run's LangevinMiddleIntegrator, its random stream seeded with ``seed``."""
    import openmm as mm

    integrator = mm.LangevinMiddleIntegrator(
        settings.temperature, settings.friction_per_ps, settings.timestep_fs / 1000.0
    )
    integrator.setRandomNumberSeed(seed)
    return integrator


class _BlowUp(Exception):
    """The integration diverged (non-finite coordinates)."""


def check_sane(positions: np.ndarray, temperature: float, settings: SimulationSettings, frame: int | str) -> None:
    """Raise _BlowUp for non-finite coordinates or a kinetic temperature 1000 times the bath's, at ``frame`` (its
    index, or words such as ``"the equilibration"``).

    A thermalised frame exceeds 1000 T only with probability below exp(-500) even for one
    degree of freedom, so this flags integration errors, not fluctuations.
    """
    where = f"frame {frame}" if isinstance(frame, int) else frame
    if not np.isfinite(positions).all():
        raise _BlowUp(f"coordinates became NaN at {where}")
    if not temperature <= 1000.0 * settings.temperature:
        raise _BlowUp(f"kinetic temperature {temperature:.3g} K at {where}")


@contextlib.contextmanager
def divergence_as_error(settings: SimulationSettings, first_remedy: str = "") -> Iterator[None]:
    """Turn a diverging integration (our NaN check or OpenMM's), or a box the barostat shrank below twice the cutoff,
    into a one-line RunBrokeDown saying what to change.

    ``first_remedy`` (e.g. ``"`bias_every` 1 (now 4: ...)"``) is advised before a smaller time step.
    """
    try:
        yield
    except Exception as exc:
        if "box size has decreased to less than twice the nonbonded cutoff" in str(exc):
            raise RunBrokeDown(
                "the barostat shrank the periodic box below twice the nonbonded cutoff",
                "rerun with `overwrite` and a smaller `cutoff_nm` or a larger box",
            ) from None
        if not isinstance(exc, _BlowUp) and not re.search(r"\bnan\b", str(exc), re.IGNORECASE):
            raise
        what = f"the simulation blew up ({first_line(exc)})"
        remedies = f"{first_remedy}, or " if first_remedy else ""
        raise RunBrokeDown(
            what,
            f"rerun with `overwrite` and {remedies}a smaller `timestep_fs` (now {settings.timestep_fs:g} fs), or "
            f"check `temperature` (now {settings.temperature:g} K) and the starting structure",
        ) from None


#: The entries of a replica's checkpoint (:class:`~neuralct.io.ArrayCheckpoint`) and how each is read.
_CHECKPOINT_ENTRIES = {"frames": int, "platform": str, "state": bytes}


def _resume_settings(settings: SimulationSettings, md_system: MDSystem, atoms: np.ndarray) -> dict:
    """The settings a replica's checkpoint belongs to: a resumed run must have the same."""
    values = {key: getattr(settings, key) for key in _RESUME_KEYS}
    values["system"] = md_system.name
    values["n_atoms"] = md_system.n_atoms
    values["saved_atoms"] = len(atoms)
    return values


def _pdb_text(topology: Any, positions: np.ndarray) -> str:
    """A PDB file of ``topology`` at ``positions`` (nm), with its box as CRYST1 when it has one."""
    import openmm.app as app
    import openmm.unit as unit

    text = io.StringIO()
    app.PDBFile.writeFile(topology, positions * unit.nanometer, text)
    return text.getvalue()


def write_topology(
    md_system: MDSystem, folder: Path, atoms: np.ndarray | None = None, *, whole_system: bool = True
) -> None:
    """Write the topology of ``atoms`` (default all) with its starting positions to ``folder/topology.pdb``.

    With fewer atoms than the system's and ``whole_system``, ``system.pdb`` and ``system.xml`` (the
    whole system's topology and its serialised OpenMM System) go beside it. Every file is written
    atomically; a periodic system's PDB files carry its starting box (CRYST1).
    """
    import openmm
    import openmm.app as app

    if atoms is None or len(atoms) == md_system.n_atoms:
        atomic_write_text(folder / "topology.pdb", _pdb_text(md_system.topology, md_system.positions))
        return
    modeller = app.Modeller(md_system.topology, md_system.positions)
    kept = set(int(i) for i in atoms)
    modeller.delete([atom for atom in md_system.topology.atoms() if atom.index not in kept])
    atomic_write_text(folder / "topology.pdb", _pdb_text(modeller.topology, md_system.positions[atoms]))
    if not whole_system:
        return
    atomic_write_text(folder / "system.pdb", _pdb_text(md_system.topology, md_system.positions))
    atomic_write_text(folder / "system.xml", openmm.XmlSerializer.serialize(md_system.system))


@dataclass
class _Frames:
    """A replica's frames so far: positions (nm), on-step velocities (nm/ps), times (ps), kinetic temperatures (K),
    box vectors (nm, periodic systems only)."""

    positions: list = field(default_factory=list)
    velocities: list = field(default_factory=list)
    times: list = field(default_factory=list)
    temperatures: list = field(default_factory=list)
    boxes: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.positions)


class _Replica:
    """One replica's run: start or resume, step and record, checkpoint."""

    def __init__(
        self, md_system: MDSystem, folder: Path, settings: SimulationSettings, replica: int, atoms: np.ndarray
    ):
        self.md_system, self.settings, self.replica, self.atoms = md_system, settings, replica, atoms
        self.traj_path, self.chk_path = trajectory_path(folder, replica), checkpoint_path(folder, replica)
        self.state_path = state_path(folder, replica) if len(atoms) < md_system.n_atoms else None
        self.masses = md_system.masses()
        self.dof = degrees_of_freedom(md_system.system)
        self.saved_dof = degrees_of_freedom(md_system.system, atoms)
        self.resume_settings = _resume_settings(settings, md_system, atoms)
        self.checkpoint = (
            ArrayCheckpoint.load(self.chk_path, _CHECKPOINT_ENTRIES, "delete it to start that replica again")
            if self.chk_path.exists()
            else None
        )
        if self.checkpoint is None and self.traj_path.exists():
            raise NeuralCTError(f"{self.traj_path} exists without a checkpoint; choose another `output` or delete it")
        if self.checkpoint is not None and self.checkpoint.settings != self.resume_settings:
            changed = sorted(
                k for k in self.resume_settings if self.checkpoint.settings.get(k) != self.resume_settings[k]
            )
            raise NeuralCTError(
                f"{self.chk_path} was written with different settings ({', '.join(changed)}); "
                "rerun with the same options or choose another `output`"
            )

    @property
    def frames_done(self) -> int:
        """Frames recorded up to the checkpoint."""
        return self.checkpoint["frames"] if self.checkpoint else 0

    @property
    def platform(self) -> str | None:
        """The platform of the checkpoint (the only one it loads on), None without one."""
        return self.checkpoint["platform"] if self.checkpoint else None

    def _load_frames(self) -> _Frames:
        """The frames up to the checkpoint, read back from the trajectory file."""
        if self.checkpoint is None or self.frames_done == 0:
            return _Frames()
        try:
            frames = read_netcdf(self.traj_path)
        except Exception as exc:
            raise NeuralCTError(
                f"cannot read {self.traj_path} to resume ({type(exc).__name__}); "
                "delete the replica's files to start it again"
            ) from None
        n = self.frames_done
        if frames.positions.shape[0] < n:
            raise NeuralCTError(
                f"{self.traj_path} holds {frames.positions.shape[0]} frames but its checkpoint {n}; "
                "delete the replica's files to start it again"
            )
        # Frames written after the checkpoint are dropped: the run continues from the checkpoint's state.
        return _Frames(
            list(frames.positions[:n]),
            list(frames.velocities[:n]),
            list(frames.time_ps[:n]),
            list(frames.per_frame[_T_KEY][:n]),
            [] if frames.box_vectors is None else list(frames.box_vectors[:n]),
        )

    def _save(self, context: Any, platform: str, frames: _Frames) -> None:
        """Write the frames to the trajectory file, then the state to continue from to the checkpoint."""
        attributes = {
            "neuralct_velocities_on_step": 1,
            "neuralct_velocities_method": "mean of the half-step velocities around the report step "
            "(LangevinMiddleIntegrator)",
            TEMPERATURE_ATTRIBUTE: float(self.settings.temperature),
            "neuralct_timestep_fs": float(self.settings.timestep_fs),
            "neuralct_report_ps": float(self.settings.report_ps),
            "neuralct_system": self.md_system.name,
            # The System's masses: a topology's elements need not carry them (toy particles).
            MASSES_ATTRIBUTE: self.masses[self.atoms],
        }
        n_saved = len(self.atoms)
        netcdf_frames = NetCDFFrames(
            np.array(frames.positions).reshape(-1, n_saved, 3),
            np.array(frames.velocities).reshape(-1, n_saved, 3),
            np.array(frames.times, dtype=np.float64),
            attributes,
            {_T_KEY: np.array(frames.temperatures, dtype=np.float64)},
            np.array(frames.boxes).reshape(-1, 3, 3) if self.md_system.periodic else None,
        )
        write_netcdf(self.traj_path, netcdf_frames)
        if self.state_path is not None:
            import openmm

            state = context.getState(getPositions=True, getVelocities=True)
            atomic_write_text(self.state_path, openmm.XmlSerializer.serialize(state))
        self.checkpoint = ArrayCheckpoint(
            {"frames": len(frames), "platform": platform, "state": context.createCheckpoint()}, self.resume_settings
        )
        self.checkpoint.save(self.chk_path)

    def _start(self, context: Any, platform: str, frames: _Frames, start: Any | None, velocity_seed: int) -> None:
        """Minimise, thermalise and equilibrate a fresh replica, then checkpoint; or load the checkpoint's state.

        ``start`` is the context of the constant-volume first half of the equilibration (None: the whole
        equilibration runs in ``context``).
        """
        if self.checkpoint is not None:
            context.loadCheckpoint(self.checkpoint["state"])
            return
        import openmm as mm

        steps = self.settings.equilibration_steps
        first = start or context
        first.setPositions(self.md_system.positions)
        mm.LocalEnergyMinimizer.minimize(first, 10.0, 1000)
        first.setVelocitiesToTemperature(self.settings.temperature, velocity_seed)
        if start is not None:
            start.getIntegrator().step(steps // 2)
            context.setState(start.getState(getPositions=True, getVelocities=True))
            steps -= steps // 2
        # Every saved state lies one step past a report step (frame 0 being the end of
        # equilibration), because reading an on-step velocity needs the step after the frame.
        context.getIntegrator().step(steps + 1)
        self._save(context, platform, frames)

    def _record_frame(self, context: Any, integrator: Any, frames: _Frames) -> None:
        """Step to the next report step and record its frame (see the module docstring for the velocities)."""
        settings = self.settings
        if settings.steps_per_frame > 1:
            integrator.step(settings.steps_per_frame - 1)
        before = context.getState(getPositions=True, getVelocities=True)
        integrator.step(1)
        after = context.getState(getVelocities=True)
        v_before, v_after = before.getVelocities(asNumpy=True)._value, after.getVelocities(asNumpy=True)._value
        frames.positions.append(before.getPositions(asNumpy=True)._value[self.atoms])
        frames.velocities.append(0.5 * (v_before[self.atoms] + v_after[self.atoms]))
        if self.md_system.periodic:
            frames.boxes.append(before.getPeriodicBoxVectors(asNumpy=True)._value)
        frames.temperatures.append(
            0.5
            * (
                kinetic_temperature(v_before, self.masses, self.dof)
                + kinetic_temperature(v_after, self.masses, self.dof)
            )
        )
        check_sane(frames.positions[-1], frames.temperatures[-1], settings, len(frames) - 1)
        equilibration_time = settings.equilibration_steps * settings.timestep_fs / 1000.0
        frames.times.append(before.getTime()._value - equilibration_time)

    def run(self, platform: str, progress: Any, threads: int | None, interrupted: Any) -> dict:
        """Run the remaining frames on ``threads`` CPU threads, updating ``progress``; return this replica's figures.

        Once ``interrupted`` (an event: ``is_set()``) is set, the frames so far are saved with a
        checkpoint at the end of the frame under way and ``KeyboardInterrupt`` is raised.
        """
        velocity_seed, integrator_seed, barostat_seed, start_seed = _replica_seeds(self.settings.seed, self.replica)
        integrator = _make_integrator(self.settings, integrator_seed)
        system, constant_volume = _replica_systems(self.md_system.system, barostat_seed)
        context = make_context(system, integrator, platform, threads)
        frames = self._load_frames()
        start = None
        if constant_volume is not None and self.checkpoint is None:
            start = make_context(constant_volume, _make_integrator(self.settings, start_seed), platform, threads)
        self._start(context, platform, frames, start, velocity_seed)
        del start  # the equilibration's context: its memory and threads are not needed in production
        if interrupted.is_set():
            raise KeyboardInterrupt  # the start (minimisation, equilibration) is checkpointed
        start = last_save = time.perf_counter()
        first_frame = unsaved = len(frames)
        for _ in range(first_frame, self.settings.n_frames):
            self._record_frame(context, integrator, frames)
            progress.update(1)
            if interrupted.is_set() or time.perf_counter() - last_save >= self.settings.checkpoint_seconds:
                self._save(context, platform, frames)
                last_save, unsaved = time.perf_counter(), len(frames)
            if interrupted.is_set():
                raise KeyboardInterrupt
        if len(frames) != unsaved:
            self._save(context, platform, frames)
        return self._figures(platform, frames, first_frame, time.perf_counter() - start)

    def _figures(self, platform: str, frames: _Frames, first_frame: int, wall: float) -> dict:
        """This replica's figures for the summary: frames, rates of this run, mean kinetic temperatures."""
        settings = self.settings
        steps = (settings.n_frames - first_frame) * settings.steps_per_frame
        on_step = kinetic_temperature(
            np.array(frames.velocities).reshape(-1, len(self.atoms), 3), self.masses[self.atoms], self.saved_dof
        )
        return {
            "replica": self.replica,
            "trajectory": self.traj_path.name,
            "frames": len(frames),
            "frames_this_run": settings.n_frames - first_frame,
            "resumed_from_frame": first_frame if first_frame else None,
            "ns_simulated": len(frames) * settings.report_ps / 1000.0,
            "platform": platform,
            "steps_this_run": steps,
            "wall_seconds": wall,
            "steps_per_second": steps / wall if wall > 0 and steps else None,
            "ns_per_day": steps * settings.timestep_fs * 1e-6 / wall * 86400.0 if wall > 0 and steps else None,
            "mean_kinetic_temperature_K": float(np.mean(frames.temperatures)),
            "mean_kinetic_temperature_on_step_velocities_K": float(on_step.mean()),
            "degrees_of_freedom": self.dof,
            "degrees_of_freedom_saved_atoms": self.saved_dof,
        }


def _run_replica(
    md_system: MDSystem,
    folder: Path,
    settings: SimulationSettings,
    replica: int,
    atoms: np.ndarray,
    platform: str,
    threads: int | None,
    progress: Any,
    stop: Any,
) -> dict:
    """One replica in a worker process (the parent checked its checkpoint already; ``stop`` is its Ctrl-C)."""
    with divergence_as_error(settings):
        return _Replica(md_system, folder, settings, replica, atoms).run(platform, progress, threads, stop)


def run_simulation(
    md_system: MDSystem,
    folder: str | os.PathLike,
    settings: SimulationSettings,
    *,
    replicas: int = 1,
    replica_index: int | None = None,
    atoms: np.ndarray | None = None,
    jobs: int | None = None,
    progress: bool = True,
    rewrite_topology: bool = False,
) -> dict:
    """Run (or resume) ``replicas`` independent Langevin trajectories of ``md_system``, ``jobs`` at a time.

    Writes into ``folder``: ``topology.pdb`` (of the saved atoms), one ``replica-NNN.nc`` (AMBER
    NetCDF with positions, on-step velocities, time and, periodic, the box) and one checkpoint per
    replica, and ``summary.json``; with fewer atoms saved than the system has, also
    ``system.pdb``, ``system.xml`` and one ``replica-NNN.state.xml`` per replica (see the module
    docstring). A rerun with the same settings resumes each replica from its checkpoint.

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
    replica_index : int, optional
        Run replica ``replica_index`` of the ``replicas`` alone (one job of a scheduler's array): its
        files are those of the same replica in a run of all of them.
    atoms : np.ndarray, shape=(n_saved,), optional
        Indices of the atoms the trajectories record (default
        :func:`neuralct.md.systems.select_atoms`: the solute, every atom without explicit water).
    jobs : int, optional
        Replicas run at once, each in its own process (default:
        :func:`neuralct.md.replicas.default_jobs`); 1 runs them one after another in this
        process. Without ``settings.threads`` each job gets the CPU cores divided by ``jobs``
        as threads, and the platform probe runs with that many threads, as the replicas will.
    progress : bool
        Show a tqdm progress bar on stderr.
    rewrite_topology : bool
        Write the topology files again on a resumed run too (one of them is missing or damaged). A fresh
        run writes them always, a resumed one otherwise only where ``topology.pdb`` is missing: OpenMM
        dates the PDB files it writes, so that a rewrite would change an input of the runs trained on them.

    Returns
    -------
    dict
        The summary also written to ``summary.json``: ns simulated, frames, steps per second
        of each replica's process and of the whole run, ns/day, mean kinetic temperature (K),
        platform, jobs, per-replica figures.
    """
    settings.validate()
    indices = replicas_to_run(replicas, replica_index)
    jobs, threads = plan_jobs(len(indices), jobs, settings.threads)
    atoms = select_atoms(md_system) if atoms is None else np.asarray(atoms, dtype=np.int64)
    if settings.platform != "auto" and settings.platform not in available_platforms():
        raise NeuralCTError(
            f"OpenMM platform {settings.platform!r} is not available here; "
            f"use auto or one of {', '.join(available_platforms())}"
        )
    folder = Path(folder)
    runs = [_Replica(md_system, folder, settings, r, atoms) for r in indices]
    platform, probe_rates, platform_choice = _choose_platform(runs, md_system, settings, threads)
    # A fresh start writes its own topology: one left by another system's failed run must not stay.
    fresh = not any(run.checkpoint for run in runs)
    if fresh or rewrite_topology or not (folder / "topology.pdb").exists():
        write_topology(md_system, folder, atoms)
    start = time.perf_counter()
    results = _run_replicas(runs, platform, threads, jobs, progress)
    summary = {
        "system": md_system.name,
        "description": md_system.description,
        "system_settings": md_system.settings,
        "n_atoms": md_system.n_atoms,
        "saved_atoms": len(atoms),
        "settings": asdict(settings)
        | {"replicas": replicas, "replica_index": replica_index, "jobs": jobs, "threads_per_job": threads},
        "integrator": "LangevinMiddleIntegrator",
        "platform": platform,
        "platform_choice": platform_choice,
        "platform_probe_steps_per_second": probe_rates,
        "platform_probe_threads": threads if probe_rates else None,
        "trajectory_format": "AMBER NetCDF (angstrom, angstrom/ps, ps; periodic: the box per frame) with "
        "topology.pdb of the saved atoms; velocities on-step",
        **_run_figures(results, settings, time.perf_counter() - start),
        "replicas": results,
    }
    write_json(folder / "summary.json", summary)
    return summary


def _choose_platform(
    runs: list[_Replica], md_system: MDSystem, settings: SimulationSettings, threads: int | None
) -> tuple[str, dict[str, float] | None, str]:
    """The platform to run on, the probe's steps per second of each platform where ``auto`` measured them, and why
    (:func:`~neuralct.md.platform.automatic_platform`)."""
    # A checkpoint loads only on the platform that wrote it, so a resumed run keeps that platform.
    platform = next((run.platform for run in runs if run.platform), None)
    if platform is not None:
        return platform, None, "the platform of the run's checkpoints"
    if settings.platform != "auto":
        return settings.platform, None, "as asked"
    return automatic_platform(md_system, settings.temperature, settings.friction_per_ps, settings.timestep_fs, threads)


def _run_replicas(runs: list[_Replica], platform: str, threads: int | None, jobs: int, progress: bool) -> list[dict]:
    """Run every replica's remaining frames, in this process or in ``jobs`` worker processes; their figures."""
    from tqdm import tqdm

    settings, md_system = runs[0].settings, runs[0].md_system
    with tqdm(
        total=len(runs) * settings.n_frames,
        initial=sum(run.frames_done for run in runs),
        unit="frame",
        desc=f"simulate {md_system.name}",
        disable=not progress,
        mininterval=0.5,
    ) as bar:
        unfinished = sum(run.frames_done < settings.n_frames for run in runs)
        if min(jobs, unfinished) <= 1:
            with divergence_as_error(settings), sigint_held() as interrupted:
                return [run.run(platform, bar, threads, interrupted) for run in runs]
        calls = [(md_system, run.traj_path.parent, settings, run.replica, run.atoms, platform, threads) for run in runs]
        return run_in_processes(_run_replica, calls, jobs, bar)


def _run_figures(results: list[dict], settings: SimulationSettings, elapsed: float) -> dict:
    """The whole run's figures from its replicas' (``elapsed``: the run's wall time in s)."""
    steps = sum(r["steps_this_run"] for r in results)
    wall = sum(r["wall_seconds"] for r in results)
    frames = sum(r["frames"] for r in results)
    return {
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
    }
