"""Systems prepared elsewhere: AMBER, GROMACS, CHARMM or OpenMM XML input files read through OpenMM's own readers."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..data.names import standard_atom_label
from ..errors import NeuralCTError, first_line
from .systems import (
    BAROSTAT_KINDS,
    BAROSTAT_ROOM,
    MDSystem,
    barostat_index,
    bond_options,
    check_repartitioned_masses,
    dispersion_correction,
    solute_atoms,
)

__all__ = ["INPUT_FORMATS", "read_system"]

#: The topology file of each input format, by suffix; the other files of a system are its coordinates and (CHARMM)
#: parameters.
INPUT_FORMATS = {".prmtop": "AMBER", ".parm7": "AMBER", ".top": "GROMACS", ".psf": "CHARMM", ".xml": "OpenMM"}

_COORDINATES = (".inpcrd", ".rst7", ".rst", ".crd", ".gro", ".pdb", ".cif", ".xml")
_CHARMM_PARAMETERS = (".prm", ".par", ".rtf", ".str", ".inp")


@dataclass
class _Inputs:
    """A system's input files sorted by role."""

    topology: Path
    format: str
    coordinates: Path | None = None
    parameters: list[Path] = field(default_factory=list)
    state: Path | None = None


def read_system(
    files: Sequence[str | os.PathLike],
    *,
    include_dir: str | os.PathLike | None = None,
    solute: str | None = None,
    constraints: str | None = None,
    cutoff_nm: float | None = None,
    pressure_bar: float = 1.0,
    temperature: float = 300.0,
    hydrogen_mass_amu: float | None = None,
    solvent_check: Callable[[Any, bool], None] | None = None,
) -> MDSystem:
    """Build an :class:`MDSystem` from input files prepared with AMBER, GROMACS, CHARMM or OpenMM tools.

    The files are told apart by suffix: one topology (``.prmtop``/``.parm7`` AMBER, ``.top``
    GROMACS, ``.psf`` CHARMM, or an OpenMM System ``.xml``), one coordinates file
    (``.inpcrd``/``.rst7``/``.rst``, ``.gro``, CHARMM ``.crd``, ``.pdb``, or an OpenMM State
    ``.xml``; an OpenMM System needs a PDB for its topology, and a State beside it gives the
    positions and box, e.g. the end of an earlier run) and, for
    CHARMM, its parameter files (``.prm``, ``.par``, ``.rtf``, ``.str``, ``.inp``). They are read
    with ``openmm.app.AmberPrmtopFile``/``AmberInpcrdFile``, ``GromacsTopFile``/``GromacsGroFile``,
    ``CharmmPsfFile``/``CharmmCrdFile``/``CharmmParameterSet`` and ``openmm.XmlSerializer``.

    The periodic box is the coordinates file's (a PDB's CRYST1, a State's box, the System's
    default box); a periodic system gets PME electrostatics with a cutoff of ``cutoff_nm`` and
    a Monte Carlo barostat, a system without a box NoCutoff. An OpenMM System is taken as
    serialized (its forces, cutoff and constraints), with a barostat added if it is periodic
    and has none. Every periodic box must start 5% wider than twice the cutoff
    (:data:`~neuralct.md.systems.BAROSTAT_ROOM`), room for the barostat to shrink it; a box
    from an OpenMM State, the end of an earlier run, twice the cutoff.

    Parameters
    ----------
    files : sequence of path
        The system's input files.
    include_dir : path, optional
        Folder of the force-field files that a GROMACS topology ``#include``s (default: GROMACS's
        ``share/gromacs/top``); includes beside the topology are found without it.
    solute : str, optional
        MDTraj atom selection of the solute (recorded as ``settings["solute"]``); default every
        atom that is not water or a monatomic ion (:func:`~neuralct.md.systems.solute_atoms`).
    constraints : {"none", "hbonds", "allbonds", "hangles"}, optional
        Bond constraints (default hbonds). An OpenMM System has its own: given for one, only
        ``"none"`` is taken, where the System has no constraints (``neuralct sample``'s need).
    cutoff_nm : float, optional
        Direct-space cutoff of PME and of the Lennard-Jones interactions in nm (periodic
        systems; default 1). An OpenMM System has its own: it is refused for one.
    pressure_bar : float
        Pressure of the barostat of a periodic system, bar.
    temperature : float
        Temperature of the barostat, K.
    hydrogen_mass_amu : float, optional
        Hydrogen mass repartitioning as in :func:`~neuralct.md.systems.build_system`.
    solvent_check : callable, optional
        Called with the system's OpenMM topology and whether it is periodic as soon as they are read,
        before the checks of its box and constraints: a command that cannot use explicit solvent
        (``sample``) refuses it there, in its own words, rather than with advice about the box.

    Returns
    -------
    MDSystem
        Its ``positions`` (n_atoms, 3) in nm; ``settings`` name the files, the format, the
        electrostatics, the box (nm) and the solute.

    Raises
    ------
    NeuralCTError
        In one line naming the file: files missing or of no known role, an unreadable file (with
        the line or residue OpenMM names), coordinates whose atom count differs from the topology's,
        a GROMACS ``#include`` that is not found, water without a box, a box narrower than twice
        the cutoff and the barostat's room, a solute selection that is invalid or empty, a cutoff or
        constraints given for an OpenMM System (but ``"none"`` for one without constraints).
    """
    import openmm.unit as unit

    for name, value in (("cutoff_nm", cutoff_nm), ("pressure_bar", pressure_bar), ("temperature", temperature)):
        if value is not None and not value > 0:
            raise NeuralCTError(f"`{name}` must be positive, got {value}")
    inputs = _sorted_inputs([Path(f) for f in files])
    if inputs.format == "OpenMM":
        system, topology, positions = _openmm(inputs, cutoff_nm)
        cutoff_nm = _serialized_cutoff_nm(system)
    else:
        constraints, cutoff_nm = (constraints or "hbonds").lower(), cutoff_nm or 1.0
        options = bond_options(constraints, hydrogen_mass_amu) | {"nonbondedCutoff": cutoff_nm * unit.nanometer}
        readers = {"AMBER": _amber, "GROMACS": _gromacs, "CHARMM": _charmm}
        system, topology, positions = readers[inputs.format](inputs, options, include_dir)
    if positions.shape[0] != topology.getNumAtoms():
        raise NeuralCTError(
            f"coordinates file {inputs.coordinates} has {positions.shape[0]} atoms but {inputs.format} topology "
            f"{inputs.topology} has {topology.getNumAtoms()}; give the coordinates of the same system"
        )
    if inputs.coordinates.suffix.lower() == ".gro":
        _check_gro_names(inputs, topology)
    if solvent_check is not None:
        solvent_check(topology, system.usesPeriodicBoundaryConditions())
    if inputs.format == "OpenMM":
        _check_serialized_constraints(inputs, system, constraints)
    check_repartitioned_masses(system, topology, hydrogen_mass_amu, str(inputs.topology))
    return _md_system(inputs, system, topology, positions, solute, constraints, cutoff_nm, pressure_bar, temperature)


def _sorted_inputs(paths: list[Path]) -> _Inputs:
    """The files by role: one topology, at most one coordinates file, CHARMM parameters."""
    for path in paths:
        if not path.is_file():
            raise NeuralCTError(f"input file {path} does not exist; check the path")
    tops = [p for p in paths if p.suffix.lower() in INPUT_FORMATS and not _is_state_xml(p)]
    if len(tops) != 1:
        found = ", ".join(str(p) for p in tops) or "none"
        raise NeuralCTError(
            f"give exactly one topology among the system's files ({', '.join(INPUT_FORMATS)}), found {found}"
        )
    inputs = _Inputs(tops[0], INPUT_FORMATS[tops[0].suffix.lower()])
    for path in paths:
        if path == inputs.topology:
            continue
        suffix = path.suffix.lower()
        if suffix in _CHARMM_PARAMETERS and inputs.format == "CHARMM":
            inputs.parameters.append(path)
        elif inputs.format == "OpenMM" and inputs.state is None and _is_state_xml(path):
            inputs.state = path
        elif suffix in _COORDINATES and inputs.coordinates is None:
            inputs.coordinates = path
        else:
            raise NeuralCTError(
                f"input file {path} is neither coordinates ({', '.join(_COORDINATES)}) nor, for CHARMM, parameters "
                f"({', '.join(_CHARMM_PARAMETERS)}) of {inputs.format} topology {inputs.topology}; give one of each"
            )
    if inputs.coordinates is None and inputs.state is not None:
        inputs.coordinates, inputs.state = inputs.state, None
    if inputs.coordinates is None:
        raise NeuralCTError(f"{inputs.format} topology {inputs.topology} needs a coordinates file beside it")
    if inputs.format == "CHARMM" and not inputs.parameters:
        raise NeuralCTError(f"CHARMM topology {inputs.topology} needs its parameter files (.prm, .rtf, .str)")
    return inputs


def _is_state_xml(path: Path) -> bool:
    """Whether ``path`` is an OpenMM State XML (coordinates), not a System."""
    if path.suffix.lower() != ".xml":
        return False
    try:
        for _, element in ElementTree.iterparse(path, events=("start",)):
            return element.tag == "State"
    except ElementTree.ParseError as exc:
        raise NeuralCTError(f"XML file {path} is not valid XML: {first_line(exc)}") from None
    return False


def _read(path: Path, what: str, reader: Any, *args: Any, **kwargs: Any) -> Any:
    """``reader(str(path), ...)``, its failure one line naming the file (OpenMM's message names the line or residue)."""
    try:
        return reader(str(path), *args, **kwargs)
    except Exception as exc:
        raise NeuralCTError(f"cannot read {what} {path}: {first_line(exc)}") from None


def _create(path: Path, what: str, create: Any, periodic: bool, options: dict, **extra: Any) -> Any:
    """The System of a topology file: PME when ``periodic``, else NoCutoff; failures one line naming the file."""
    import openmm.app as app

    method = {"nonbondedMethod": app.PME if periodic else app.NoCutoff}
    kept = options if periodic else {k: v for k, v in options.items() if k != "nonbondedCutoff"}
    try:
        return create(**method, **kept, **extra)
    except Exception as exc:
        raise NeuralCTError(f"{what} {path}: {first_line(exc)}") from None


def _coordinates(inputs: _Inputs) -> tuple[np.ndarray, Any, Any]:
    """Positions (n_atoms, 3) in nm, box vectors (or None) and the PDB's topology (or None) of the coordinates file."""
    import openmm.app as app
    import openmm.unit as unit

    path, suffix = inputs.coordinates, inputs.coordinates.suffix.lower()
    topology = None
    if suffix in (".inpcrd", ".rst7", ".rst") or (suffix == ".crd" and inputs.format == "AMBER"):
        read = _read(path, "AMBER coordinates", app.AmberInpcrdFile)
        positions, box = read.getPositions(asNumpy=True), read.boxVectors
    elif suffix == ".gro":
        read = _read(path, "GROMACS coordinates", app.GromacsGroFile)
        positions, box = read.getPositions(asNumpy=True), read.getPeriodicBoxVectors()
    elif suffix == ".crd":
        read = _read(path, "CHARMM coordinates", app.CharmmCrdFile)
        positions, box = read.positions, None
    elif suffix == ".xml":
        state = _read(path, "OpenMM State", _deserialize)
        positions, box = state.getPositions(asNumpy=True), state.getPeriodicBoxVectors()
    else:
        reader = app.PDBxFile if suffix == ".cif" else app.PDBFile
        read = _read(path, "structure", reader)
        positions, box, topology = read.getPositions(asNumpy=True), read.topology.getPeriodicBoxVectors(), read.topology
    return np.array(positions.value_in_unit(unit.nanometer), dtype=np.float64).reshape(-1, 3), box, topology


def _deserialize(path: str) -> Any:
    """The OpenMM object (System, State) serialized in the XML file ``path``.

    The text is parsed as XML first: OpenMM's reader takes a truncated file for a node it does not know.
    """
    import openmm

    text = Path(path).read_text()
    try:
        ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise ValueError(f"the file is damaged or not XML ({exc})") from None
    return openmm.XmlSerializer.deserialize(text)


def _amber(inputs: _Inputs, options: dict, include_dir: Any) -> tuple[Any, Any, np.ndarray]:
    import openmm.app as app

    prmtop = _read(inputs.topology, "AMBER topology", app.AmberPrmtopFile)
    positions, box, _ = _coordinates(inputs)
    box = box if box is not None else prmtop.topology.getPeriodicBoxVectors()
    if box is not None:
        prmtop.topology.setPeriodicBoxVectors(box)
    system = _create(inputs.topology, "AMBER topology", prmtop.createSystem, box is not None, options)
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*box)
    return system, prmtop.topology, positions


def _gromacs(inputs: _Inputs, options: dict, include_dir: Any) -> tuple[Any, Any, np.ndarray]:
    import openmm.app as app

    positions, box, _ = _coordinates(inputs)
    where = {} if include_dir is None else {"includeDir": str(include_dir)}
    try:
        top = app.GromacsTopFile(str(inputs.topology), periodicBoxVectors=box, **where)
    except Exception as exc:
        advice = (
            "; give `include_dir`, the folder of the force-field files it includes (GROMACS's share/gromacs/top)"
            if "#include" in str(exc)
            else ""
        )
        raise NeuralCTError(f"cannot read GROMACS topology {inputs.topology}: {first_line(exc)}{advice}") from None
    system = _create(inputs.topology, "GROMACS topology", top.createSystem, box is not None, options)
    return system, top.topology, positions


def _solvent_of(solvent_atoms: int, kinds: list[str]) -> str:
    """The solvent of a system prepared elsewhere: ``explicit`` (water or ions), ``obc2`` (OpenMM's GBSAOBCForce, the
    OBC2 model), ``implicit (CustomGBForce)`` (another generalized Born model) or ``vacuum``."""
    if solvent_atoms:
        return "explicit"
    if "GBSAOBCForce" in kinds:
        return "obc2"
    return "implicit (CustomGBForce)" if "CustomGBForce" in kinds else "vacuum"


def _check_gro_names(inputs: _Inputs, topology: Any) -> None:
    """Refuse a .gro whose atoms are named otherwise than the topology's, in order (as ``gmx grompp`` does; names
    compared in their standard form, :func:`~neuralct.data.names.standard_atom_label`, as OpenMM renames the
    topology's): the same count of atoms in another order (the ``[ molecules ]`` of the .top listed otherwise) would
    put each atom's parameters on another atom's position."""
    import openmm.app as app

    gro = app.GromacsGroFile(str(inputs.coordinates))
    theirs = [f"{residue}:{name}" for residue, name in zip(gro.residueNames, gro.atomNames)]
    # A .gro holds 5 characters of each name; a topology may hold more.
    ours = [f"{atom.residue.name[:5]}:{atom.name[:5]}" for atom in topology.atoms()]
    differing = [i for i, (a, b) in enumerate(zip(theirs, ours)) if standard_atom_label(a) != standard_atom_label(b)]
    if differing:
        first = differing[0]
        raise NeuralCTError(
            f"coordinates file {inputs.coordinates} has {theirs[first]} at atom {first + 1} where {inputs.format} "
            f"topology {inputs.topology} has {ours[first]} ({len(differing)} atom(s) differ); give the coordinates "
            "of the same system, its molecules in the order of the topology's [ molecules ]"
        )


def _charmm(inputs: _Inputs, options: dict, include_dir: Any) -> tuple[Any, Any, np.ndarray]:
    import openmm.app as app
    import openmm.unit as unit

    psf = _read(inputs.topology, "CHARMM topology", app.CharmmPsfFile)
    positions, box, _ = _coordinates(inputs)
    try:
        parameters = app.CharmmParameterSet(*(str(p) for p in inputs.parameters))
    except Exception as exc:
        files = " ".join(str(p) for p in inputs.parameters)
        raise NeuralCTError(f"cannot read CHARMM parameter files {files}: {first_line(exc)}") from None
    if box is not None:
        # The box as lengths and angles (a triclinic box too: its diagonal alone is another box), then its vectors.
        vectors = np.array([[v.value_in_unit(unit.nanometer) for v in vector] for vector in box])
        lengths = np.linalg.norm(vectors, axis=1)
        cosines = [vectors[1] @ vectors[2], vectors[0] @ vectors[2], vectors[0] @ vectors[1]]
        products = [lengths[1] * lengths[2], lengths[0] * lengths[2], lengths[0] * lengths[1]]
        angles = [np.degrees(np.arccos(c / p)) * unit.degree for c, p in zip(cosines, products)]
        psf.setBox(*(length * unit.nanometer for length in lengths), *angles)
    system = _create(inputs.topology, "CHARMM topology", psf.createSystem, box is not None, options, params=parameters)
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*box)
        psf.topology.setPeriodicBoxVectors(box)
    return system, psf.topology, positions


def _check_serialized_constraints(inputs: _Inputs, system: Any, constraints: str | None) -> None:
    """Refuse ``constraints`` for a serialized System, but ``"none"`` for one without constraints."""
    held = system.getNumConstraints()
    if constraints is not None and not (constraints.lower() == "none" and held == 0):
        raise NeuralCTError(
            f"OpenMM System {inputs.topology} has its own constraints ({held}); "
            + (
                f"`constraints` {constraints} sets those of AMBER, GROMACS and CHARMM inputs: drop it"
                if constraints.lower() != "none"
                else "this needs a System without constraints (the energy of a System built with them lacks the "
                "constrained bonds' terms): serialize one built with `constraints=None`"
            )
        )


def _openmm(inputs: _Inputs, cutoff_nm: float | None) -> tuple[Any, Any, np.ndarray]:
    system = _read(inputs.topology, "OpenMM System", _deserialize)
    if not hasattr(system, "getNumParticles"):
        raise NeuralCTError(f"OpenMM XML {inputs.topology} holds no System; give the file of XmlSerializer.serialize")
    if cutoff_nm is not None:
        raise NeuralCTError(
            f"OpenMM System {inputs.topology} has its own nonbonded cutoff; `cutoff_nm` sets that of AMBER, GROMACS "
            "and CHARMM inputs: drop it, or serialize the System with the cutoff you want"
        )
    positions, box, topology = _coordinates(inputs)
    if inputs.state is not None:
        # The PDB gives the topology; the State (e.g. the end of an earlier run) the positions and the box.
        positions, box, _ = _coordinates(replace(inputs, coordinates=inputs.state))
        if len(positions) != topology.getNumAtoms():
            raise NeuralCTError(
                f"OpenMM State {inputs.state} has {len(positions)} particles but {inputs.coordinates} "
                f"{topology.getNumAtoms()} atoms; give the state of the same system"
            )
    if topology is None:
        raise NeuralCTError(
            f"OpenMM System {inputs.topology} needs a PDB (or PDBx) of the same atoms for its topology, "
            f"not only {inputs.coordinates}"
        )
    if system.getNumParticles() != topology.getNumAtoms():
        raise NeuralCTError(
            f"OpenMM System {inputs.topology} has {system.getNumParticles()} particles but {inputs.coordinates} "
            f"{topology.getNumAtoms()} atoms; give the structure of the same system"
        )
    if system.usesPeriodicBoundaryConditions():
        box = box if box is not None else system.getDefaultPeriodicBoxVectors()
        system.setDefaultPeriodicBoxVectors(*box)
        topology.setPeriodicBoxVectors(box)
    return system, topology, positions


def _barostat(system: Any, pressure_bar: float, temperature: float) -> str:
    """Give the periodic ``system`` its barostat at the run's pressure (bar) and temperature (K); say which.

    A serialized System's own barostat (any of :data:`~neuralct.md.systems.BAROSTAT_KINDS`) keeps its kind and
    frequency and takes the run's pressure (every axis of an anisotropic one) and temperature; a System without
    one gets a ``MonteCarloBarostat``.
    """
    import openmm as mm
    import openmm.unit as unit

    index = barostat_index(system)
    if index is None:
        index = system.addForce(mm.MonteCarloBarostat(pressure_bar * unit.bar, temperature * unit.kelvin))
        return f"MonteCarloBarostat every {system.getForce(index).getFrequency()} steps"
    barostat = system.getForce(index)
    if isinstance(barostat, mm.MonteCarloAnisotropicBarostat):
        barostat.setDefaultPressure(mm.Vec3(pressure_bar, pressure_bar, pressure_bar) * unit.bar)
    else:
        barostat.setDefaultPressure(pressure_bar * unit.bar)
    barostat.setDefaultTemperature(temperature * unit.kelvin)
    return f"the System's {type(barostat).__name__} every {barostat.getFrequency()} steps"


def _serialized_cutoff_nm(system: Any) -> float | None:
    """The largest nonbonded cutoff (nm) of a System's periodic forces; None where none is periodic."""
    import openmm.unit as unit

    cutoffs = [
        force.getCutoffDistance().value_in_unit(unit.nanometer)
        for force in system.getForces()
        if hasattr(force, "getCutoffDistance") and force.usesPeriodicBoundaryConditions()
    ]
    return max(cutoffs) if cutoffs else None


def _md_system(
    inputs: _Inputs,
    system: Any,
    topology: Any,
    positions: np.ndarray,
    solute: str | None,
    constraints: str | None,
    cutoff_nm: float | None,
    pressure_bar: float,
    temperature: float,
) -> MDSystem:
    """The :class:`MDSystem` of what was read, with its checks (water in a box wide enough) and settings."""
    import openmm.unit as unit

    solute_indices = _solute(topology, solute, inputs)
    solvent_atoms = topology.getNumAtoms() - len(solute_indices)
    periodic = system.usesPeriodicBoundaryConditions()
    kinds = [type(force).__name__ for force in system.getForces()]
    if "AndersenThermostat" in kinds:
        raise NeuralCTError(
            f"OpenMM System {inputs.topology} has an AndersenThermostat, a second thermostat beside neuralct's "
            "Langevin integrator; serialize the System without it"
        )
    barostats = [kind for kind in kinds if kind in BAROSTAT_KINDS]
    if len(barostats) > 1 or (barostats and not periodic):
        why = f"{len(barostats)} barostats" if periodic else f"a {barostats[0]} but no periodic box"
        raise NeuralCTError(f"OpenMM System {inputs.topology} has {why}; serialize it with one barostat or none")
    if solvent_atoms and not periodic:
        where = {
            "CHARMM": "a PDB with its CRYST1 box in place of the .crd, which holds none",
            "AMBER": "an .rst7 or inpcrd with its box line, or a PDB with CRYST1",
            "GROMACS": "a .gro with its box line, or a PDB with CRYST1",
        }.get(inputs.format, "a PDB with CRYST1 or an OpenMM State")
        raise NeuralCTError(
            f"{inputs.format} system {inputs.topology} holds water or ions but no periodic box; give coordinates "
            f"with the box: {where}"
        )
    settings = {
        "inputs": [str(p) for p in (inputs.topology, inputs.coordinates, *inputs.parameters, inputs.state) if p],
        "format": inputs.format,
        "solvent": _solvent_of(solvent_atoms, kinds),
        "solvent_atoms": solvent_atoms,
        "solute": solute,
    }
    if periodic:
        box = system.getDefaultPeriodicBoxVectors()
        widths = [float(box[i][i].value_in_unit(unit.nanometer)) for i in range(3)]
        # OpenMM stops a run whose box the barostat shrinks below twice the cutoff: the box must leave it room,
        # but an OpenMM State's (the end of an earlier run) is equilibrated already and needs twice the cutoff only.
        room = 0.0 if inputs.state is not None else BAROSTAT_ROOM
        if cutoff_nm is not None and min(widths) < 2.0 * cutoff_nm * (1.0 + room):
            remedy = "give a smaller `cutoff_nm`"
            if inputs.format == "OpenMM":
                remedy = "serialize the System with a smaller cutoff"
            raise NeuralCTError(
                f"{inputs.format} system {inputs.coordinates}: the periodic box is {min(widths):.3g} nm wide, "
                f"narrower than twice the cutoff ({cutoff_nm:g} nm) and {room:.0%} for the barostat to "
                f"shrink it; {remedy} or a larger box"
            )
        settings |= {
            "box_nm": widths,
            "pressure_bar": pressure_bar,
            "barostat": _barostat(system, pressure_bar, temperature),
            "dispersion_correction": dispersion_correction(system),
        }
        if any(box[i][j].value_in_unit(unit.nanometer) for i in range(3) for j in range(3) if i != j):
            # A triclinic box: the diagonal of its reduced vectors (what OpenMM's cutoff rule reads) is not its
            # edges' lengths; the vectors say it all.
            settings["box_vectors_nm"] = [[float(x) for x in v.value_in_unit(unit.nanometer)] for v in box]
    if inputs.format == "OpenMM":
        held = system.getNumConstraints()
        settings |= {"nonbonded": "as serialized", "constraints": f"{held} as serialized" if held else "none"}
        if cutoff_nm is not None:
            settings["cutoff_nm"] = cutoff_nm
    else:
        settings |= {"nonbonded": "PME" if periodic else "NoCutoff", "constraints": constraints}
        if periodic:
            settings["cutoff_nm"] = cutoff_nm
    name = inputs.topology.stem
    description = f"{inputs.format} input {inputs.topology.name} + {inputs.coordinates.name}" + (
        f" + {inputs.state.name}" if inputs.state else ""
    )
    return MDSystem(name, system, topology, positions, description, settings)


def _solute(topology: Any, solute: str | None, inputs: _Inputs) -> np.ndarray:
    """Indices of the solute's atoms: inferred (not water, not ions), or those of the MDTraj selection ``solute``."""
    import mdtraj as md

    if solute is None:
        return solute_atoms(topology)
    try:
        atoms = md.Topology.from_openmm(topology).select(solute)
    except Exception as exc:
        raise NeuralCTError(f"solute selection {solute!r} is not an MDTraj atom selection: {first_line(exc)}") from None
    if len(atoms) == 0:
        raise NeuralCTError(
            f"solute selection {solute!r} selects no atom of {inputs.topology}; give a selection that matches"
        )
    return np.asarray(atoms, dtype=np.int64)
