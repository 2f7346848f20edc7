"""``neuralct simulate SYSTEM``: Langevin MD with OpenMM writing positions and on-step velocities."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import NeuralCTError
from ..md.systems import SOLVENTS, WaterBox
from .options import (
    add_common_options,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    result_settings,
    save_resolved_config,
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
            "each replica's last full state (replica-NNN.state.xml). Rerunning the same command resumes an "
            "interrupted run; other options into the same --output are refused (see --overwrite)."
        ),
    )
    _add_system_options(p)
    _add_dynamics_options(p)
    _add_run_options(p)
    add_common_options(p, output_default="trajectories/simulate", torch_cuda=False)
    p.set_defaults(run=run)
    return p


def _add_system_options(p: argparse.ArgumentParser) -> None:
    """The system and how it is built: SYSTEM, force field, solvent, hydrogens, constraints."""
    p.add_argument(
        "system",
        metavar="SYSTEM",
        nargs="+",
        help="bundled system name, system YAML file or PDB file; or the files of a system prepared elsewhere: "
        "AMBER prmtop + inpcrd/rst7, GROMACS top + gro, CHARMM psf + crd + parameter files, or an OpenMM "
        "System XML + PDB (read by OpenMM's own readers; the box from the coordinates, PME if periodic)",
    )
    p.add_argument(
        "--include-dir",
        metavar="DIR",
        default=None,
        help="GROMACS input: the folder of the force-field files the top file includes (default: GROMACS's own)",
    )
    p.add_argument(
        "--forcefield", nargs="+", metavar="XML", help="OpenMM force-field files for a PDB (default: amber99sbildn.xml)"
    )
    p.add_argument(
        "--solvent",
        choices=SOLVENTS,
        default=None,
        help="vacuum (NoCutoff), OBC2 implicit solvent, or explicit water of that model from the force field's "
        "own files (e.g. amber14/tip3p.xml with amber14-all.xml, tip3p.xml with amber99sbildn.xml); a PDB that "
        "holds water is taken as solvated (its water, ions and CRYST1 box kept) and its water must be the "
        "model's (default: the system file's, else vacuum)",
    )
    _add_water_options(p)
    p.add_argument(
        "--add-hydrogens",
        action="store_true",
        help="add missing hydrogens to a PDB with OpenMM Modeller (protonation states at --ph); caps are not added",
    )
    p.add_argument("--ph", type=nonnegative_float, default=7.0, help="pH for --add-hydrogens (default: %(default)s)")
    p.add_argument(
        "--constraints",
        choices=("none", "hbonds", "allbonds", "hangles"),
        default="hbonds",
        help="bond constraints (default: %(default)s)",
    )
    p.add_argument(
        "--hydrogen-mass-amu",
        type=positive_float,
        default=None,
        help="hydrogen mass repartitioning: each hydrogen bonded to a heavy atom gets this mass (amu), taken from "
        "that atom (water unchanged); 1.5 with --constraints hbonds allows --timestep-fs 4 (default: none)",
    )
    p.add_argument(
        "--save",
        metavar="SELECTION",
        default=None,
        help="MDTraj selection of the atoms the trajectories record, e.g. 'protein' or 'all' (default: the "
        "solute, every atom but water and ions)",
    )


def _add_water_options(p: argparse.ArgumentParser) -> None:
    """The box of explicit water: padding, ions, cutoff, pressure."""
    defaults = WaterBox()
    p.add_argument(
        "--padding-nm",
        type=positive_float,
        default=None,
        help="explicit water: the cubic box's edge is the solute's diameter plus this padding, and at least "
        f"twice the padding, in nm; ignored by a PDB that holds its water (default: {defaults.padding_nm})",
    )
    p.add_argument(
        "--ionic-strength-molar",
        type=nonnegative_float,
        default=None,
        help="explicit water: Na+ Cl- pairs added for this ionic strength in mol/L; counter-ions always "
        f"neutralise the solute (default: {defaults.ionic_strength_molar})",
    )
    p.add_argument(
        "--cutoff-nm",
        type=positive_float,
        default=None,
        help="explicit water: direct-space cutoff of PME and Lennard-Jones in nm; a box narrower than 2.1 times "
        f"this (room for the barostat) is refused (default: {defaults.cutoff_nm})",
    )
    p.add_argument(
        "--pressure-bar",
        type=positive_float,
        default=None,
        help=f"explicit water: pressure of the Monte Carlo barostat in bar (default: {defaults.pressure_bar})",
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
        help="OpenMM platform (Reference, CPU, CUDA, OpenCL) or auto: the fastest in a short timed probe "
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
        help="wall time between checkpoints (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Build the system, check every input, then simulate into ``args.output``."""
    from ..md.simulate import replica_folder, replicas_to_run, run_simulation
    from ..md.systems import select_atoms
    from .runs import RunFolder

    settings = _settings(args)
    settings.validate()
    replicas_to_run(args.replicas, args.replica_index)
    md_system = _md_system(args)
    atoms = select_atoms(md_system, args.save)
    # The run's identity: the options that shape the trajectory, the input files by content, and
    # the OpenMM System itself (forces, masses, constraints), whatever file or name it came from.
    # The platform, threads, jobs and checkpoint interval do not enter: a resumed run keeps the
    # checkpoint's platform, and neither checkpoints nor parallel jobs change the frames. The
    # GROMACS include folder enters through the System it builds.
    ignored = ("platform", "threads", "jobs", "checkpoint_seconds", "include_dir")
    identity = result_settings(args, ignore=ignored) | {"openmm_system": _system_digest(md_system)}
    inputs = [name for name in [*args.system, *(args.forcefield or [])] if Path(name).is_file()]
    # A finished rerun writes the summary, config and topology again; the frames come only from the run.
    rebuilt = ("config.yaml", "summary.json", "topology.pdb", "system.pdb", "system.xml")
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
        )
        save_resolved_config(args, folder)
    rate = summary["steps_per_second"]
    print(
        f"{summary['frames']} frames, {summary['ns_simulated']:.3f} ns on {summary['platform']} "
        f"({summary['settings']['jobs']} job(s))"
        + (f", {rate:.0f} steps/s, {summary['ns_per_day']:.0f} ns/day" if rate else "")
        + f", mean kinetic temperature {summary['mean_kinetic_temperature_K']:.1f} K -> {folder}"
    )
    return 0


def _md_system(args: argparse.Namespace):
    """The system to simulate: bundled, from a system file or PDB, or read from input files prepared elsewhere."""
    from ..md.inputs import INPUT_FORMATS, read_system
    from ..md.systems import build_system

    prepared = len(args.system) > 1 or Path(args.system[0]).suffix.lower() in INPUT_FORMATS
    if not prepared:
        if args.include_dir is not None:
            raise NeuralCTError("--include-dir reads GROMACS input files; give the top and gro files as SYSTEM")
        return build_system(
            args.system[0],
            forcefield=args.forcefield,
            solvent=args.solvent,
            constraints=args.constraints,
            temperature=args.temperature,
            add_hydrogens=args.add_hydrogens,
            ph=args.ph,
            hydrogen_advice="rerun with --add-hydrogens (OpenMM Modeller, protonation at --ph, default 7)",
            water=_water_box(args),
            hydrogen_mass_amu=args.hydrogen_mass_amu,
        )
    building = [
        flag
        for flag, value in (
            ("--forcefield", args.forcefield),
            ("--solvent", args.solvent),
            ("--add-hydrogens", args.add_hydrogens or None),
            ("--padding-nm", args.padding_nm),
            ("--ionic-strength-molar", args.ionic_strength_molar),
        )
        if value is not None
    ]
    if building:
        raise NeuralCTError(
            f"{', '.join(building)} build a system from a PDB; the input files of {args.system[0]} define "
            "their own force field, solvent and box: drop these options"
        )
    defaults = WaterBox()
    return read_system(
        args.system,
        include_dir=args.include_dir,
        solute=args.save,
        constraints=args.constraints,
        cutoff_nm=args.cutoff_nm or defaults.cutoff_nm,
        pressure_bar=args.pressure_bar or defaults.pressure_bar,
        temperature=args.temperature,
        hydrogen_mass_amu=args.hydrogen_mass_amu,
    )


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


def _water_box(args: argparse.Namespace) -> WaterBox | None:
    """The explicit-water box of the options given (None when none is: the library's defaults apply)."""
    given = {
        name: getattr(args, name)
        for name in ("padding_nm", "ionic_strength_molar", "cutoff_nm", "pressure_bar")
        if getattr(args, name) is not None
    }
    return WaterBox(**given) if given else None


def _system_digest(md_system) -> str:
    """SHA-256 of the serialised OpenMM System and the starting positions."""
    import hashlib

    import openmm

    digest = hashlib.sha256(openmm.XmlSerializer.serialize(md_system.system).encode())
    digest.update(md_system.positions.tobytes())
    return digest.hexdigest()
