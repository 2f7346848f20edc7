"""SYSTEM and the options that build it, shared by the commands that run MD (``simulate``, ``bias``).

A system is a bundled name, a system YAML file or a PDB built with OpenMM force fields (in
vacuum, implicit solvent or explicit water), or the input files of a system prepared with AMBER,
GROMACS, CHARMM or OpenMM tools, read by OpenMM's own readers.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import NeuralCTError
from ..md.systems import SOLVENTS, WaterBox
from .options import nonnegative_float, positive_float, print_warning

__all__ = ["add_system_options", "md_system_from_options", "prepared_elsewhere", "system_digest", "system_files"]

#: `--constraints` when not given.
DEFAULT_CONSTRAINTS = "hbonds"

#: What a PDB without the hydrogens its force field needs is told to do, when the command can add them.
_ADD_HYDROGENS = "rerun with --add-hydrogens (OpenMM Modeller, protonation at --ph, default 7)"


def add_system_options(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """Add SYSTEM (required, or ``default`` when left out) and the options that build it to ``p``."""
    p.add_argument(
        "system",
        metavar="SYSTEM",
        nargs="+" if default is None else "*",
        default=None if default is None else [default],
        help="bundled system name, system YAML file or PDB file; or the files of a system prepared elsewhere: "
        "AMBER prmtop + inpcrd/rst7, GROMACS top + gro, CHARMM psf + crd + parameter files, or an OpenMM "
        "System XML + PDB (read by OpenMM's own readers; the box from the coordinates, PME if periodic)"
        + ("" if default is None else " (default: %(default)s)"),
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
        default=DEFAULT_CONSTRAINTS,
        help="bond constraints (default: %(default)s; an OpenMM System XML keeps its own)",
    )
    p.add_argument(
        "--hydrogen-mass-amu",
        type=positive_float,
        default=None,
        help="hydrogen mass repartitioning: each hydrogen bonded to a heavy atom gets this mass (amu), taken from "
        "that atom (water unchanged); 1.5 with --constraints hbonds allows --timestep-fs 4 (default: none)",
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
        f"this (room for the barostat) is refused; an OpenMM System XML keeps its own (default: {defaults.cutoff_nm})",
    )
    p.add_argument(
        "--pressure-bar",
        type=positive_float,
        default=None,
        help=f"explicit water: pressure of the Monte Carlo barostat in bar (default: {defaults.pressure_bar})",
    )


def system_files(args: argparse.Namespace) -> list[str]:
    """The files among SYSTEM and ``--forcefield`` (where the command has it): a run is identified by their content."""
    return [name for name in [*args.system, *(getattr(args, "forcefield", None) or [])] if Path(name).is_file()]


def prepared_elsewhere(system: list[str]) -> bool:
    """Whether SYSTEM names the input files of a system prepared elsewhere (not a name, system YAML or PDB)."""
    from ..md.inputs import INPUT_FORMATS

    return len(system) > 1 or Path(system[0]).suffix.lower() in INPUT_FORMATS


def md_system_from_options(
    args: argparse.Namespace, *, solute: str | None = None, hydrogen_advice: str = _ADD_HYDROGENS
) -> Any:
    """The :class:`~neuralct.md.systems.MDSystem` the options describe: built, or read from input files.

    Parameters
    ----------
    args : argparse.Namespace
        Options added by :func:`add_system_options`, and ``temperature``.
    solute : str, optional
        MDTraj selection of the solute of input files (default: every atom but water and ions).
    hydrogen_advice : str
        What a PDB without the hydrogens its force field needs is told to do.

    Raises
    ------
    NeuralCTError
        For options that build a system from a PDB given with input files that define their own,
        and everything :func:`~neuralct.md.systems.build_system` and :func:`~neuralct.md.inputs.read_system`
        refuse.
    """
    from ..md.inputs import read_system
    from ..md.systems import build_system

    if not prepared_elsewhere(args.system):
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
            hydrogen_advice=hydrogen_advice,
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
        solute=solute,
        # The default is read_system's (None), so that an OpenMM System keeps its own constraints and cutoff.
        constraints=None if args.constraints == DEFAULT_CONSTRAINTS else args.constraints,
        cutoff_nm=args.cutoff_nm,
        pressure_bar=args.pressure_bar or defaults.pressure_bar,
        temperature=args.temperature,
        hydrogen_mass_amu=args.hydrogen_mass_amu,
    )


#: The longest step (fs) for hydrogens of their natural mass; longer ones want them heavier (about 1.5 amu at 4 fs).
LIGHT_HYDROGEN_STEP_FS = 2.0


def warn_of_light_hydrogens(md_system: Any, timestep_fs: float) -> None:
    """Warn where a step longer than :data:`LIGHT_HYDROGEN_STEP_FS` moves solute hydrogens lighter than 1.5 amu: their
    angles vibrate in about 10 fs even with bonds constrained (water's, held rigid, are not counted, nor any under
    ``hangles`` constraints)."""
    from ..md.systems import solute_atoms

    if timestep_fs <= LIGHT_HYDROGEN_STEP_FS or md_system.topology is None:
        return
    if md_system.settings.get("constraints") == "hangles":  # the hydrogens' angles are held too
        return
    atoms = list(md_system.topology.atoms())
    masses = [
        md_system.system.getParticleMass(int(i))._value
        for i in solute_atoms(md_system.topology)
        if atoms[int(i)].element is not None and atoms[int(i)].element.symbol == "H"
    ]
    if masses and min(masses) < 1.5:
        print_warning(
            f"a {timestep_fs:g} fs step with solute hydrogens of {min(masses):.4g} amu may blow up or heat the run; "
            "give --hydrogen-mass-amu 1.5 or more (or a topology with repartitioned masses), or --timestep-fs 2"
        )


def _water_box(args: argparse.Namespace) -> WaterBox | None:
    """The explicit-water box of the options given (None when none is: the library's defaults apply)."""
    given = {
        name: getattr(args, name)
        for name in ("padding_nm", "ionic_strength_molar", "cutoff_nm", "pressure_bar")
        if getattr(args, name) is not None
    }
    return WaterBox(**given) if given else None


def system_digest(md_system: Any) -> str:
    """SHA-256 of the serialised OpenMM System and the starting positions: the system whatever file or name it came
    from (forces, masses, constraints, box, and the force-field files a GROMACS topology included)."""
    import hashlib

    import openmm

    digest = hashlib.sha256(openmm.XmlSerializer.serialize(md_system.system).encode())
    digest.update(md_system.positions.tobytes())
    return digest.hexdigest()
