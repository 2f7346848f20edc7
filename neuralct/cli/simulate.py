"""``neuralct simulate SYSTEM``: Langevin MD with OpenMM writing positions and on-step velocities."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .options import (
    add_common_options,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    result_settings,
    save_resolved_config,
)
from .systems import (
    add_system_options,
    md_system_from_options,
    system_digest,
    system_files,
    warn_of_light_hydrogens,
)

if TYPE_CHECKING:
    from ..md.simulate import SimulationSettings

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``simulate`` subcommand to ``subparsers``."""
    p = subparsers.add_parser(
        "simulate",
        help="run OpenMM Langevin MD of a bundled system or a PDB, recording positions and velocities",
        description=(
            "Run Langevin MD (OpenMM LangevinMiddleIntegrator) of a bundled system "
            "(alanine-dipeptide, trialanine, harmonic-chain, double-well, mueller-brown, rotated-double-well), "
            "a system YAML file, or a PDB with OpenMM force-field XML files. A PDB needs every atom the force "
            "field's residue templates have, hydrogens included (--add-hydrogens adds them), and chain ends either "
            "capped (e.g. ACE/NME) or with their terminal atoms (e.g. OXT): caps are not added. In explicit water "
            "(--solvent tip3p, ...) the molecule is solvated in a cubic box with counter-ions, PME electrostatics, "
            "NVT then NPT equilibration and NPT production with a Monte Carlo barostat. Writes one AMBER "
            "NetCDF trajectory per replica (positions, on-step velocities, time and the box of each frame; readable "
            "by MDTraj and MDAnalysis) of the saved atoms (--save; the solute by default) with topology.pdb, "
            "summary.json and checkpoints; without the solvent, also the whole system (system.pdb, system.xml) and "
            "each replica's last full state (replica-NNN.state.xml). Ctrl-C saves every running replica at the end of "
            "its frame under way; rerunning the same command resumes an interrupted run; other options into the "
            "same --output are refused (see --overwrite)."
        ),
    )
    _add_system_options(p)
    _add_dynamics_options(p)
    _add_run_options(p)
    add_common_options(p, output_default="trajectories/simulate", torch_cuda=False)
    p.set_defaults(run=run)
    return p


def _add_system_options(p: argparse.ArgumentParser) -> None:
    """SYSTEM and how it is built (shared with ``bias``), and the atoms the trajectories record."""
    add_system_options(p)
    p.add_argument(
        "--save",
        metavar="SELECTION",
        default=None,
        help="MDTraj selection of the atoms the trajectories record, e.g. 'protein' or 'all' (default: the "
        "solute, every atom but water and ions)",
    )


def _add_dynamics_options(p: argparse.ArgumentParser) -> None:
    """The dynamics: temperature, length, time step, friction, report interval, equilibration."""
    p.add_argument("--temperature", type=positive_float, default=300.0, help="temperature in K (default: %(default)s)")
    p.add_argument(
        "--length-ns",
        type=positive_float,
        default=1.0,
        help="production length per replica in ns (default: %(default)s)",
    )
    p.add_argument("--timestep-fs", type=positive_float, default=2.0, help="time step in fs (default: %(default)s)")
    p.add_argument(
        "--friction-per-ps", type=positive_float, default=1.0, help="Langevin friction in 1/ps (default: %(default)s)"
    )
    p.add_argument(
        "--report-ps",
        type=positive_float,
        default=1.0,
        help="time between recorded frames in ps (default: %(default)s)",
    )
    p.add_argument(
        "--equilibration-ps",
        type=nonnegative_float,
        default=10.0,
        help="unrecorded MD after minimisation, in ps (default: %(default)s)",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """How the run is carried out: platform, threads, replicas and jobs, checkpoints, progress."""
    p.add_argument(
        "--platform",
        default="auto",
        help="OpenMM platform (Reference, CPU, CUDA, OpenCL) or auto: the fastest in a short timed probe, "
        "never Reference for a periodic system (the CPU platform unprobed where it is the only other) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads for the CPU platform (default: OpenMM's, or cores/jobs with several jobs)",
    )
    p.add_argument(
        "--replicas",
        type=positive_int,
        default=1,
        help="independent trajectories, seeded from --seed (default: %(default)s)",
    )
    p.add_argument(
        "--replica-index",
        type=nonnegative_int,
        default=None,
        metavar="K",
        help="run replica K (0 to --replicas minus 1) alone, e.g. one job of a scheduler's array, into "
        "--output/replica-00K/: the same files as that replica of a run of all of them (with --platform "
        "given, so that every job runs on the same one); train reads them together",
    )
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        help="replicas run at once as separate processes (default: all of them up to two per CPU core, "
        "else one per core; each job gets cores/jobs threads, at least 1, unless --threads is given)",
    )
    p.add_argument(
        "--checkpoint-seconds",
        type=nonnegative_float,
        default=60.0,
        help="wall time between checkpoints, besides the end and Ctrl-C (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Build the system, check every input, then simulate into ``args.output``."""
    from ..errors import NeuralCTError
    from ..md.simulate import replica_folder, replicas_to_run, run_simulation
    from ..md.systems import select_atoms
    from .runs import IDENTITY_FILE, RunFolder

    settings = _settings(args)
    settings.validate()
    replicas_to_run(args.replicas, args.replica_index)
    if args.replica_index is not None and (Path(args.output) / IDENTITY_FILE).is_file():
        # The job array's folders would lie inside another run's, mixed with its files.
        raise NeuralCTError(
            f"{args.output} holds a run of its own; give the job array (--replica-index) another --output"
        )
    md_system = md_system_from_options(args, solute=args.save)
    warn_of_light_hydrogens(md_system, args.timestep_fs)
    atoms = select_atoms(md_system, args.save)
    # The run's identity: the options that shape the trajectory, the input files by content, and
    # the OpenMM System itself (forces, masses, constraints), whatever file or name it came from.
    # The platform, threads, jobs and checkpoint interval do not enter: a resumed run keeps the
    # checkpoint's platform, and neither checkpoints nor parallel jobs change the frames. The
    # GROMACS include folder enters through the System it builds.
    # The atoms saved enter as themselves, so `--save all` on a molecule in vacuum is its default.
    ignored = ("platform", "threads", "jobs", "checkpoint_seconds", "include_dir", "save")
    identity = result_settings(args, ignore=ignored) | {
        "openmm_system": system_digest(md_system),
        "saved_atoms": _index_ranges(atoms),
    }
    inputs = system_files(args)
    # A finished rerun writes the summary, config and topology again; the frames come only from the run.
    rebuilt = ("config.yaml", "summary.json", *TOPOLOGY_FILES)
    # Each job of an array has a folder of its own (its own identity, lock and checkpoint) inside --output.
    output = args.output if args.replica_index is None else replica_folder(args.output, args.replica_index)
    with RunFolder(
        output, "simulate", identity, inputs=inputs, overwrite=args.overwrite, rebuilt=rebuilt
    ) as run_folder:
        folder = run_folder.path
        summary = run_simulation(
            md_system,
            folder,
            settings,
            replicas=args.replicas,
            replica_index=args.replica_index,
            atoms=atoms,
            jobs=args.jobs,
            progress=not args.no_progress,
            rewrite_topology=bool(set(run_folder.changed_outputs) & set(TOPOLOGY_FILES)),
        )
        save_resolved_config(args, folder)
        if run_folder.changed_outputs:
            print(run_folder.restored_line("the system"))
    rate = summary["steps_per_second"]
    print(
        f"{summary['frames']} frames, {summary['ns_simulated']:.3f} ns on {summary['platform']} "
        f"({summary['settings']['jobs']} job(s))"
        + (f", {rate:.0f} steps/s, {summary['ns_per_day']:.0f} ns/day" if rate else "")
        + f", mean kinetic temperature {summary['mean_kinetic_temperature_K']:.1f} K -> {folder}"
    )
    return 0


#: The files ``simulate`` writes of the system's topology (a finished rerun writes a missing or damaged one again).
TOPOLOGY_FILES = ("topology.pdb", "system.pdb", "system.xml")


def _index_ranges(atoms) -> list[list[int]]:
    """Ascending atom indices as ``[first, last]`` runs of consecutive ones (a box of water stays short)."""
    runs: list[list[int]] = []
    for atom in map(int, atoms):
        if runs and atom == runs[-1][1] + 1:
            runs[-1][1] = atom
        else:
            runs.append([atom, atom])
    return runs


def _settings(args: argparse.Namespace) -> SimulationSettings:
    """The run's :class:`~neuralct.md.simulate.SimulationSettings` from the options (``auto`` with CUDA is CUDA)."""
    from ..md.simulate import SimulationSettings

    platform = args.platform
    if platform == "auto" and args.device.startswith("cuda"):
        platform = "CUDA"
    return SimulationSettings(
        temperature=args.temperature,
        length_ns=args.length_ns,
        timestep_fs=args.timestep_fs,
        friction_per_ps=args.friction_per_ps,
        report_ps=args.report_ps,
        equilibration_ps=args.equilibration_ps,
        platform=platform,
        threads=args.threads,
        seed=args.seed,
        checkpoint_seconds=args.checkpoint_seconds,
    )
