"""OpenMM Systems for neuralct: the bundled molecules and toys in systems/, or a user's PDB + force field."""

from __future__ import annotations

import contextlib
import importlib.resources
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..data.loading import solute_atom_indices
from ..errors import NeuralCTError, first_line
from ..units import kT_kj_per_mol

__all__ = [
    "MDSystem",
    "WaterBox",
    "WATER_MODELS",
    "SOLVENTS",
    "systems_dir",
    "available_systems",
    "build_system",
    "water_forcefield_file",
    "solute_atoms",
    "select_atoms",
    "MODEL_SYSTEM_HYDROGEN_ADVICE",
    "harmonic_chain_system",
    "double_well_system",
    "mueller_brown_system",
    "rotated_double_well_system",
    "rotated_double_well_rotation",
    "MUELLER_BROWN_PARAMETERS",
]

#: What ``build_system`` advises for a PDB without the hydrogens the force field needs, unless its caller says
#: otherwise.
_ADD_HYDROGENS_ADVICE = "pass add_hydrogens=True (OpenMM Modeller adds them, protonation at ph, default 7)"

#: The advice for commands that run a trained model on its system and add no hydrogens (bias, sample).
MODEL_SYSTEM_HYDROGEN_ADVICE = (
    "give the topology.pdb that `neuralct simulate` wrote beside the model's training trajectories, "
    "or a PDB with hydrogens"
)

#: Constraint options of ``build_system`` (names as in OpenMM's ``ForceField.createSystem``).
CONSTRAINTS = ("none", "hbonds", "allbonds", "hangles")

#: The explicit water models: each one's file among OpenMM's force fields (see :func:`water_forcefield_file`),
#: mapped to the pre-equilibrated water box of ``Modeller.addSolvent`` with as many sites per water.
WATER_MODELS = {"tip3p": "tip3p", "tip3pfb": "tip3p", "tip4pew": "tip4pew", "opc": "tip4pew", "spce": "spce"}

#: How much wider than twice the cutoff a box must start, so that the barostat can shrink it (5%: 15% in volume,
#: well beyond what a pre-equilibrated water box settles by).
BAROSTAT_ROOM = 0.05

#: Every ``solvent`` of ``build_system``: none, implicit, or an explicit water model.
SOLVENTS = ("vacuum", "obc2", *WATER_MODELS)

#: Standard Mueller-Brown parameters (A, a, b, c, x0, y0) for the four Gaussian terms.
MUELLER_BROWN_PARAMETERS = (
    (-200.0, -1.0, 0.0, -10.0, 1.0, 0.0),
    (-100.0, -1.0, 0.0, -10.0, 0.0, 0.5),
    (-170.0, -6.5, 11.0, -6.5, -0.5, 1.5),
    (15.0, 0.7, 0.6, 0.7, -1.0, 1.0),
)


@dataclass
class MDSystem:
    """An OpenMM System with its topology and a starting structure.

    Attributes
    ----------
    name : str
        Short name (the system file stem or the PDB file name).
    system : openmm.System
        Forces, masses and constraints.
    topology : openmm.app.Topology
        Atoms, residues and bonds (used to write trajectories).
    positions : np.ndarray, shape=(n_atoms, 3)
        Starting positions in nm.
    description : str
        One line saying what the system is.
    settings : dict
        The options the system was built with (for ``summary.json`` and resume checks).
    """

    name: str
    system: Any
    topology: Any
    positions: np.ndarray
    description: str = ""
    settings: dict = field(default_factory=dict)

    @property
    def n_atoms(self) -> int:
        """Number of particles."""
        return self.system.getNumParticles()

    @property
    def periodic(self) -> bool:
        """Whether the System has a periodic box (explicit water)."""
        return bool(self.system.usesPeriodicBoundaryConditions())

    def masses(self) -> np.ndarray:
        """Particle masses, shape=(n_atoms,), in amu."""
        return np.array([self.system.getParticleMass(i)._value for i in range(self.n_atoms)])


@dataclass
class WaterBox:
    """How a molecule is put in explicit water: the box around it, its ions, PME and the barostat.

    Attributes
    ----------
    padding_nm : float
        Padding of ``Modeller.addSolvent`` in nm: the cubic box's edge is the solute's bounding-sphere
        diameter plus the padding (the closest a solute atom comes to another image of the solute),
        and at least twice the padding; the default 1.2 nm leaves a 1 nm cutoff room whatever the
        solute (alanine dipeptide: 2.4 nm, about 1,300 atoms).
    ionic_strength_molar : float
        Na+ Cl- pairs added for this ionic strength in mol/L, beyond the counter-ions that always
        neutralise the solute.
    cutoff_nm : float
        Direct-space cutoff of the PME electrostatics and of the Lennard-Jones interactions, in nm;
        the box must be at least 2.1 times as wide (the barostat may shrink it a little).
    pressure_bar : float
        Pressure of the Monte Carlo barostat in bar.
    """

    padding_nm: float = 1.2
    ionic_strength_molar: float = 0.0
    cutoff_nm: float = 1.0
    pressure_bar: float = 1.0

    def validate(self) -> None:
        """Raise NeuralCTError for a value that cannot build a box."""
        for name in ("padding_nm", "cutoff_nm", "pressure_bar"):
            if not getattr(self, name) > 0:
                raise NeuralCTError(f"`{name}` must be positive, got {getattr(self, name)}")
        if not self.ionic_strength_molar >= 0:
            raise NeuralCTError(f"`ionic_strength_molar` must be >= 0, got {self.ionic_strength_molar}")


#: OpenMM's Monte Carlo barostats (class names): a System runs with at most one.
BAROSTAT_KINDS = (
    "MonteCarloBarostat",
    "MonteCarloAnisotropicBarostat",
    "MonteCarloMembraneBarostat",
    "MonteCarloFlexibleBarostat",
)


def barostat_index(system: Any) -> int | None:
    """Index of the System's Monte Carlo barostat (any of :data:`BAROSTAT_KINDS`), None without one."""
    return next((i for i in range(system.getNumForces()) if type(system.getForce(i)).__name__ in BAROSTAT_KINDS), None)


def dispersion_correction(system: Any) -> bool:
    """Whether the System adds the long-range dispersion correction to its Lennard-Jones interactions, which it cuts
    at the cutoff without a shift (OpenMM's default with PME; GROMACS's ``DispCorr = EnerPres``)."""
    return any(
        type(force).__name__ == "NonbondedForce" and force.getUseDispersionCorrection()
        for force in (system.getForce(i) for i in range(system.getNumForces()))
    )


def bond_options(constraints: str, hydrogen_mass_amu: float | None) -> dict:
    """The ``createSystem`` options for bond constraints and hydrogen mass repartitioning.

    Parameters
    ----------
    constraints : {"none", "hbonds", "allbonds", "hangles"}
    hydrogen_mass_amu : float, optional
        Mass each hydrogen bonded to a heavy atom gets, taken from that atom, amu; None for none.
    """
    import openmm.app as app
    import openmm.unit as unit

    if constraints.lower() not in CONSTRAINTS:
        raise NeuralCTError(f"unknown `constraints` {constraints!r}; use one of {', '.join(CONSTRAINTS)}")
    if hydrogen_mass_amu is not None and not hydrogen_mass_amu > 0:
        raise NeuralCTError(f"`hydrogen_mass_amu` must be positive, got {hydrogen_mass_amu}")
    bonds = {"none": None, "hbonds": app.HBonds, "allbonds": app.AllBonds, "hangles": app.HAngles}
    return {
        "constraints": bonds[constraints.lower()],
        "hydrogenMass": None if hydrogen_mass_amu is None else hydrogen_mass_amu * unit.amu,
    }


def check_repartitioned_masses(system: Any, topology: Any, hydrogen_mass_amu: float | None, source: str) -> None:
    """Refuse a hydrogen mass that leaves an atom without positive mass (it would fly apart at the first step).

    OpenMM takes the hydrogens' added mass from their heavy atoms without checking what is left.
    Virtual sites (mass 0 by design, e.g. TIP4P's M site) are not atoms and pass.
    """
    if hydrogen_mass_amu is None:
        return
    for atom in topology.atoms():
        index = atom.index
        if not system.isVirtualSite(index) and system.getParticleMass(index)._value <= 0:
            raise NeuralCTError(
                f"{source}: `hydrogen_mass_amu` {hydrogen_mass_amu:g} leaves atom {atom.name} of "
                f"{_residue_label(atom.residue)} with {system.getParticleMass(index)._value:g} amu; choose a "
                "smaller hydrogen mass (1.5 to 4 amu is usual)"
            )


def systems_dir() -> Path:
    """The folder of bundled system definitions (package data ``neuralct.systems``)."""
    try:
        return Path(str(importlib.resources.files("neuralct.systems")))
    except ModuleNotFoundError:  # a source tree that is not installed: systems/ beside the package
        return Path(__file__).resolve().parents[2] / "systems"


def available_systems() -> list[str]:
    """Names of the bundled systems (the ``systems/*.yaml`` stems)."""
    return sorted(path.stem for path in systems_dir().glob("*.yaml"))


def _read_system_file(path: Path) -> dict:
    import yaml

    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise NeuralCTError(f"system file {path} is not valid YAML: {first_line(exc)}") from None
    if not isinstance(spec, dict) or "kind" not in spec:
        raise NeuralCTError(f"system file {path} must be a mapping with a 'kind' key")
    return spec


def build_system(
    name: str,
    *,
    forcefield: Sequence[str] | None = None,
    solvent: str | None = None,
    constraints: str = "hbonds",
    temperature: float = 300.0,
    add_hydrogens: bool = False,
    ph: float = 7.0,
    hydrogen_advice: str = _ADD_HYDROGENS_ADVICE,
    water: WaterBox | None = None,
    hydrogen_mass_amu: float | None = None,
) -> MDSystem:
    """Build an OpenMM System from a bundled name, a system YAML file or a PDB file.

    Parameters
    ----------
    name : str
        A bundled system (see ``available_systems()``: alanine-dipeptide, trialanine,
        harmonic-chain, double-well, mueller-brown, rotated-double-well), a path to a system
        YAML file, or a path to a PDB file.
    forcefield : sequence of str, optional
        OpenMM force-field XML files for a PDB (default: the system file's, or
        ``amber99sbildn.xml`` for a bare PDB).
    solvent : {"vacuum", "obc2", "tip3p", "tip3pfb", "tip4pew", "opc", "spce"}, optional
        Vacuum (NoCutoff), OBC2 generalized-Born implicit solvent, or explicit water of that model
        (molecules only); default the system file's ``solvent``, else vacuum. In explicit water the
        molecule is solvated by ``openmm.app.Modeller.addSolvent`` in a cubic box (ions placed with
        a fixed random seed, so the same options give the same box), with PME electrostatics and
        a Monte Carlo barostat at ``temperature``; a PDB that holds water already is taken as
        solvated: its water, ions and box (CRYST1) are kept, its water must be the model's.
    constraints : {"none", "hbonds", "allbonds", "hangles"}
        Bond constraints (molecules only).
    temperature : float
        Temperature in K; the toy potentials are given in kT and converted to kJ/mol with it.
    add_hydrogens : bool
        Add missing hydrogens to a PDB with ``openmm.app.Modeller.addHydrogens`` at ``ph``
        (protonation states from the force field's residue templates). Caps and terminal
        atoms are not added.
    ph : float
        pH for ``add_hydrogens``.
    hydrogen_advice : str
        What an error about a PDB without the hydrogens the force field needs tells the user to
        do: by default to pass ``add_hydrogens=True``; a command passes what its own user can do.
    water : WaterBox, optional
        The box, ions, cutoff and pressure of explicit water (default ``WaterBox()``); explicit
        water only.
    hydrogen_mass_amu : float, optional
        Hydrogen mass repartitioning: every hydrogen bonded to a heavy atom gets this mass in amu,
        taken from that atom, so each molecule keeps its mass (water stays rigid and unchanged);
        with ``constraints="hbonds"``, 1.5 amu allows 4 fs steps. Molecules only.

    Raises
    ------
    NeuralCTError
        Unknown system, missing or unreadable file, unknown force field or option, a PDB
        residue the force field cannot match (named as the PDB names it, with what is missing),
        water in the PDB that is not the water model's, a box narrower than twice the cutoff.
    """
    if solvent not in (None, *SOLVENTS):
        raise NeuralCTError(f"unknown solvent {solvent!r}; use one of {', '.join(SOLVENTS)}")
    bond_options(constraints, hydrogen_mass_amu)
    name, path, spec = _system_spec(name)
    kind = spec.pop("kind")
    description = spec.pop("description", name)
    solvent = solvent or spec.pop("solvent", "vacuum")
    if solvent not in SOLVENTS:
        raise NeuralCTError(f"system file {path}: unknown solvent {solvent!r}; use one of {', '.join(SOLVENTS)}")
    if water is not None and solvent not in WATER_MODELS:
        raise NeuralCTError(
            f"the water box (`padding_nm`, `ionic_strength_molar`, `cutoff_nm`, `pressure_bar`) applies to "
            f"explicit water only, not to `solvent` {solvent}; give one of {', '.join(WATER_MODELS)}"
        )
    if kind == "pdb":
        forcefield = forcefield or spec.get("forcefield") or ["amber99sbildn.xml"]
        return _pdb_system(
            name,
            description,
            spec["pdb"],
            forcefield,
            solvent,
            constraints.lower(),
            ph if add_hydrogens else None,
            hydrogen_advice,
            (water or WaterBox()) if solvent in WATER_MODELS else None,
            hydrogen_mass_amu,
            temperature,
        )
    if add_hydrogens:
        raise NeuralCTError(f"`add_hydrogens` applies to PDB structures only, not to the toy system {name!r}")
    if solvent != "vacuum":
        raise NeuralCTError(f"`solvent` {solvent} applies to molecules only, not to the toy system {name!r}")
    if hydrogen_mass_amu is not None:
        raise NeuralCTError(f"`hydrogen_mass_amu` applies to molecules only, not to the toy system {name!r}")
    built = _toy_system(kind, path, spec, temperature)
    built.name, built.description = name, description
    return built


def _system_spec(name: str) -> tuple[str, Path, dict]:
    """The system's name, the file that defines it and its definition (``kind`` and its parameters).

    A PDB file is a definition of kind ``pdb`` by itself; a system YAML file or a bundled name is
    read, with a ``pdb`` path in it taken relative to the file.
    """
    path = Path(name)
    if path.suffix.lower() == ".pdb":
        if not path.is_file():
            raise NeuralCTError(
                f"PDB file {path} does not exist; give a bundled system ({', '.join(available_systems())}) "
                "or an existing PDB"
            )
        return (
            path.stem,
            path,
            {"kind": "pdb", "pdb": str(path.resolve()), "description": f"user structure {path.name}"},
        )
    if path.suffix.lower() in (".yaml", ".yml"):
        if not path.is_file():
            raise NeuralCTError(f"system file {path} does not exist")
    else:
        path = systems_dir() / f"{name}.yaml"
        if not path.is_file():
            raise NeuralCTError(
                f"unknown system {name!r}; use one of {', '.join(available_systems())}, "
                "a PDB file or a system YAML file"
            )
    spec = _read_system_file(path)
    if spec["kind"] == "pdb":
        spec["pdb"] = str((path.parent / spec["pdb"]).resolve())
    return path.stem, path, spec


def _toy_system(kind: str, path: Path, parameters: dict, temperature: float) -> MDSystem:
    """The toy system ``kind`` of the system file ``path``, built with its ``parameters`` at ``temperature`` (K)."""
    builders = {
        "harmonic-chain": harmonic_chain_system,
        "double-well": double_well_system,
        "mueller-brown": mueller_brown_system,
        "rotated-double-well": rotated_double_well_system,
    }
    if kind not in builders:
        raise NeuralCTError(f"system file {path}: unknown kind {kind!r}; use pdb, {', '.join(builders)}")
    try:
        return builders[kind](temperature=temperature, **parameters)
    except TypeError as exc:
        raise NeuralCTError(f"system file {path}: {exc}") from None


def _residue_label(residue: Any) -> str:
    """A residue as the PDB names it: name, number and chain."""
    return f"residue {residue.name} {residue.id} of chain {residue.chain.id or '(blank)'}"


def _template_problem(
    forcefield: Any,
    topology: Any,
    files: Sequence[str],
    error: Exception,
    hydrogen_advice: str,
    hydrogens_expected: bool = True,
) -> str:
    """What OpenMM's template ``error`` means for this PDB, in one line naming the residue as the PDB does.

    A PDB without any hydrogen, or a residue that lacks only hydrogens, gets ``hydrogen_advice``. A
    residue whose name no template has comes first (its neighbours may fail only because of it); then a
    residue whose atoms differ from the closest template of its name (including the N-
    and C-terminal variants) is named with the atoms it lacks or has in excess; otherwise
    OpenMM's own explanation is kept, with its 0-based residue index replaced by the
    PDB's chain, number and name.
    """
    import re

    if hydrogens_expected and not any(
        atom.element is not None and atom.element.symbol == "H" for atom in topology.atoms()
    ):
        return (
            f"it has no hydrogen atoms; {hydrogen_advice}; "
            "caps such as ACE/NME or terminal atoms are not added, put them in the PDB yourself"
        )
    unmatched = forcefield.getUnmatchedResidues(topology)
    # The force field's residue templates by name (openmm.app.ForceField keeps them in _templates).
    templates = forcefield._templates
    unknown = [r for r in unmatched if not any(key == r.name or key[1:] == r.name for key in templates)]
    if unknown:
        return (
            f"{_residue_label(unknown[0])} is not a residue of force field {' '.join(files)}; "
            "rename it to one the force field defines, or give a force-field XML with its template (`forcefield`)"
        )

    def counted(element: Any) -> bool:
        """Whether atoms of ``element`` are compared: before hydrogens are added, only heavy atoms are."""
        return hydrogens_expected or element is None or element.symbol != "H"

    def difference(residue: Any) -> tuple[list[str], list[str]]:
        have = {atom.name for atom in residue.atoms() if counted(atom.element)}
        candidates = [t for key, t in templates.items() if key == residue.name or key[1:] == residue.name]
        names = [{a.name for a in t.atoms if counted(a.element)} for t in candidates]
        closest = min(names, key=lambda n: len(n ^ have))
        return sorted(closest - have), sorted(have - closest)

    for residue in unmatched:
        missing, extra = difference(residue)
        if missing or extra:
            what = "; ".join(
                part
                for part in (
                    f"missing atoms {' '.join(missing)}" if missing else "",
                    f"atoms no template of that name has: {' '.join(extra)}" if extra else "",
                )
                if part
            )
            hint = (
                hydrogen_advice if missing and all(n.startswith("H") for n in missing) else "fix the residue in the PDB"
            )
            return f"{_residue_label(residue)} does not match force field {' '.join(files)} ({what}); {hint}"
    residues = list(topology.residues())
    message = re.sub(
        r"residue (\d+) \((\w+)\)",
        lambda m: _residue_label(residues[int(m.group(1))]) if int(m.group(1)) < len(residues) else m.group(0),
        " ".join(str(error).split()),
    )
    return re.sub(r"\s*For more information, see \S+", "", message)


def _pdb_system(
    name: str,
    description: str,
    pdb_path: str,
    forcefield: Sequence[str],
    solvent: str,
    constraints: str,
    ph: float | None,
    hydrogen_advice: str,
    water: WaterBox | None,
    hydrogen_mass_amu: float | None,
    temperature: float,
) -> MDSystem:
    import openmm as mm
    import openmm.app as app
    import openmm.unit as unit

    try:
        pdb = app.PDBFile(pdb_path)
    except Exception as exc:
        raise NeuralCTError(f"cannot read PDB file {pdb_path}: {first_line(exc)}") from None
    files = list(forcefield)
    if solvent == "obc2":
        files.append("implicit/obc2.xml")
    if water is not None:
        water.validate()
        files.append(water_forcefield_file(forcefield, solvent))
    try:
        ff = app.ForceField(*files)
    except Exception as exc:
        raise NeuralCTError(
            f"cannot load force field {' '.join(files)}: {first_line(exc)}; "
            "give OpenMM force-field XML files (e.g. amber99sbildn.xml)"
        ) from None
    topology, positions = pdb.topology, pdb.positions
    if ph is not None:
        modeller = app.Modeller(topology, positions)
        try:
            with _fixed_python_random():
                modeller.addHydrogens(ff, pH=ph)
        except Exception as exc:
            problem = _template_problem(ff, topology, files, exc, hydrogen_advice, hydrogens_expected=False)
            raise NeuralCTError(
                f"`add_hydrogens` failed on PDB file {pdb_path}: {problem}; hydrogens are added to residues "
                "the force field knows, caps (ACE/NME) and terminal atoms are the PDB's business"
            ) from None
        topology, positions = modeller.topology, modeller.positions
    if water is not None:
        topology, positions = _in_water(ff, topology, positions, solvent, water, pdb_path)
    nonbonded = (
        {"nonbondedMethod": app.PME, "nonbondedCutoff": water.cutoff_nm * unit.nanometer}
        if water is not None
        else {"nonbondedMethod": app.NoCutoff}
    )
    try:
        system = ff.createSystem(topology, **bond_options(constraints, hydrogen_mass_amu), **nonbonded)
    except Exception as exc:
        raise NeuralCTError(
            f"PDB file {pdb_path}: {_template_problem(ff, topology, files, exc, hydrogen_advice)}"
        ) from None
    check_repartitioned_masses(system, topology, hydrogen_mass_amu, f"PDB file {pdb_path}")
    positions = np.array(positions.value_in_unit(unit.nanometer), dtype=np.float64)
    settings = {
        "pdb": pdb_path,
        "forcefield": files,
        "solvent": solvent,
        "nonbonded": "PME" if water is not None else "NoCutoff",
        "constraints": constraints,
    }
    if water is not None:
        system.addForce(mm.MonteCarloBarostat(water.pressure_bar * unit.bar, temperature * unit.kelvin))
        settings |= {
            "water_box": asdict(water),
            "box_nm": [
                float(v[i].value_in_unit(unit.nanometer)) for i, v in enumerate(topology.getPeriodicBoxVectors())
            ],
            "solvent_atoms": topology.getNumAtoms() - len(solute_atoms(topology)),
            "dispersion_correction": dispersion_correction(system),
        }
    if hydrogen_mass_amu is not None:
        settings["hydrogen_mass_amu"] = hydrogen_mass_amu
    if ph is not None:
        settings["hydrogens_added_at_ph"] = ph
    return MDSystem(name, system, topology, positions, description, settings)


@contextlib.contextmanager
def _fixed_python_random(seed: int = 0) -> Iterator[None]:
    """Python's global random stream seeded for the block, then restored.

    ``openmm.app.Modeller`` draws from it (which waters become ions, where a hydrogen it cannot place
    goes): seeded, the same options build the same system, so that a rerun resumes and the replicas of
    a job array share one system.
    """
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def water_forcefield_file(forcefield: Sequence[str], model: str) -> str:
    """The OpenMM force-field file of water ``model`` that goes with ``forcefield``.

    A force field whose files live in a folder of OpenMM's data (``amber14-all.xml``: ``amber14/``,
    ``charmm36.xml``: ``charmm36/``) takes that folder's water file (``amber14/tip3p.xml``;
    CHARMM's TIP3P is ``charmm36/water.xml``); any other (``amber99sbildn.xml``) the file of the
    same name at the top of OpenMM's data (``tip3p.xml``), which carries the ions' parameters too.

    Parameters
    ----------
    forcefield : sequence of str
        The molecule's force-field files; the first names the family.
    model : str
        One of ``WATER_MODELS``.

    Raises
    ------
    NeuralCTError
        If the force field's family ships no file of that model.
    """
    import openmm.app as app

    data = Path(app.__file__).parent / "data"
    family = Path(forcefield[0]).name.split("-")[0].removesuffix(".xml")
    if not (data / family).is_dir():
        return f"{model}.xml"
    stem = "water" if (family, model) == ("charmm36", "tip3p") else model
    if not (data / family / f"{stem}.xml").is_file():
        shipped = [
            m for m in WATER_MODELS if (data / family / f"{m}.xml").is_file() or (family, m) == ("charmm36", "tip3p")
        ]
        raise NeuralCTError(
            f"force field {forcefield[0]} ships no {model} water; give `solvent` one of {', '.join(shipped)}"
        )
    return f"{family}/{stem}.xml"


def _in_water(ff: Any, topology: Any, positions: Any, model: str, water: WaterBox, pdb_path: str) -> tuple[Any, Any]:
    """The molecule in its periodic box of water: solvated here, or as the PDB holds it (its water, ions and box)."""
    import openmm.app as app
    import openmm.unit as unit

    waters = [residue for residue in topology.residues() if residue.name == "HOH"]
    if waters:
        _check_water_model(ff, topology, model, pdb_path)
        if topology.getPeriodicBoxVectors() is None:
            raise NeuralCTError(
                f"PDB file {pdb_path} holds water but no periodic box (CRYST1 record); add the box, "
                "or give the molecule without water to be solvated"
            )
    else:
        modeller = app.Modeller(topology, positions)
        with _fixed_python_random():
            modeller.addSolvent(
                ff,
                model=WATER_MODELS[model],
                padding=water.padding_nm * unit.nanometer,
                ionicStrength=water.ionic_strength_molar * unit.molar,
                neutralize=True,
            )
        topology, positions = modeller.topology, modeller.positions
    narrowest = min(
        vector[i].value_in_unit(unit.nanometer) for i, vector in enumerate(topology.getPeriodicBoxVectors())
    )
    # OpenMM stops a run whose box the barostat shrinks below twice the cutoff: leave it room.
    if narrowest < 2.0 * water.cutoff_nm * (1.0 + BAROSTAT_ROOM):
        raise NeuralCTError(
            f"PDB file {pdb_path}: the periodic box is {narrowest:.3g} nm wide, narrower than twice the cutoff "
            f"({water.cutoff_nm:g} nm) and {BAROSTAT_ROOM:.0%} for the barostat to shrink it; "
            "give a larger `padding_nm` or a smaller `cutoff_nm`"
        )
    return topology, positions


def _check_water_model(ff: Any, topology: Any, model: str, pdb_path: str) -> None:
    """Refuse water in the PDB that the force field's water model does not match (another number of sites)."""
    wrong = [residue for residue in ff.getUnmatchedResidues(topology) if residue.name == "HOH"]
    if wrong:
        names = [atom.name for atom in wrong[0].atoms()]
        # The force field's residue templates by name (openmm.app.ForceField keeps them in _templates).
        sites = len(ff._templates["HOH"].atoms)
        raise NeuralCTError(
            f"PDB file {pdb_path}: its water ({_residue_label(wrong[0])}: {len(names)} sites, {' '.join(names)}) "
            f"is not water model {model} ({sites} sites); give the `solvent` of the PDB's water, "
            "or the molecule without water to be solvated"
        )


def solute_atoms(topology: Any) -> np.ndarray:
    """Indices of the solute's atoms in an OpenMM topology: every atom but water and monatomic ions.

    The rule is the loader's (:func:`neuralct.data.loading.solute_atom_indices`).

    Parameters
    ----------
    topology : openmm.app.Topology

    Returns
    -------
    np.ndarray, shape=(n_solute,)
        Atom indices, ascending.
    """
    import mdtraj as md

    return solute_atom_indices(md.Topology.from_openmm(topology))


def select_atoms(md_system: MDSystem, save: str | None = None) -> np.ndarray:
    """Indices of the atoms that a trajectory of ``md_system`` records.

    Parameters
    ----------
    md_system : MDSystem
    save : str, optional
        An MDTraj atom selection (``"protein"``, ``"all"``, ``"not water"``); default the solute
        (:func:`solute_atoms`), which is every atom in vacuum or implicit solvent.

    Returns
    -------
    np.ndarray, shape=(n_saved,)
        Atom indices, ascending.

    Raises
    ------
    NeuralCTError
        If ``save`` is not a valid selection or selects no atom.
    """
    import mdtraj as md

    if save is None:
        return solute_atoms(md_system.topology)
    try:
        atoms = md.Topology.from_openmm(md_system.topology).select(save)
    except Exception as exc:
        raise NeuralCTError(f"`save` {save!r} is not an MDTraj atom selection: {first_line(exc)}") from None
    if len(atoms) == 0:
        raise NeuralCTError(f"`save` {save!r} selects no atom of {md_system.name}; give a selection that matches")
    return np.asarray(atoms, dtype=np.int64)


def _particle_topology(n_particles: int, residue: str):
    import openmm.app as app

    topology = app.Topology()
    chain = topology.addChain()
    for i in range(n_particles):
        res = topology.addResidue(residue, chain)
        topology.addAtom(f"P{i}", app.Element.getBySymbol("Ar"), res)
    return topology


def harmonic_chain_system(
    n: int = 32,
    kappa_kT_per_nm2: float = 1.0,
    mass_amu: float = 1.0,
    temperature: float = 300.0,
    tethered: bool = True,
) -> MDSystem:
    """The harmonic chain with fixed ends as OpenMM forces.

    U = kappa/2 sum_{i=0..n} |r_{i+1} - r_i|^2 with r_0 = r_{n+1} = 0: each Cartesian component is
    one independent copy of the 1D chain of ``neuralct.toys.hamiltonians.HarmonicChain`` (in kT units there).
    Untethered (``tethered=False``) the two end springs are left out: a free chain of n beads,
    invariant to rotations and translations like a molecule, whose particles (residue ``CHF``, not
    ``CHN``) ``neuralct train`` takes.

    Parameters
    ----------
    n : int
        Number of moving particles.
    kappa_kT_per_nm2 : float
        Spring constant in kT/nm^2.
    mass_amu : float
        Mass of every particle in amu.
    temperature : float
        Temperature in K that fixes kT in kJ/mol.
    tethered : bool
        Whether the two ends are held by springs to the origin.
    """
    import openmm as mm

    if not isinstance(tethered, bool):
        raise NeuralCTError(f"harmonic chain: `tethered` must be true or false, got {tethered!r}")
    kappa = kappa_kT_per_nm2 * kT_kj_per_mol(temperature)
    system = mm.System()
    for _ in range(n):
        system.addParticle(mass_amu)
    # A compound bond on the components avoids the 0/0 of a distance-based bond at r = 0.
    bonds = mm.CustomCompoundBondForce(2, "0.5*kappa*((x2-x1)^2 + (y2-y1)^2 + (z2-z1)^2)")
    bonds.addGlobalParameter("kappa", kappa)
    for i in range(n - 1):
        bonds.addBond([i, i + 1], [])
    ends = mm.CustomExternalForce("0.5*kappa*(x^2 + y^2 + z^2)")
    ends.addGlobalParameter("kappa", kappa)
    ends.addParticle(0, [])
    ends.addParticle(n - 1, [])
    system.addForce(bonds)
    if tethered:
        system.addForce(ends)
    # The analytic ground state is r = 0; spread the start along x by one thermal amplitude.
    positions = np.zeros((n, 3))
    positions[:, 0] = np.sin(np.pi * np.arange(1, n + 1) / (n + 1)) / np.sqrt(kappa_kT_per_nm2)
    settings = {
        "n": n,
        "kappa_kT_per_nm2": kappa_kT_per_nm2,
        "mass_amu": mass_amu,
        "temperature": temperature,
        "tethered": bool(tethered),
    }
    topology = _particle_topology(n, "CHN" if tethered else "CHF")
    return MDSystem("harmonic-chain", system, topology, positions, "harmonic chain", settings)


def _one_particle(
    expression: str, parameters: dict, mass_amu: float, start: Sequence[float], name: str, settings: dict
) -> MDSystem:
    import openmm as mm

    system = mm.System()
    system.addParticle(mass_amu)
    force = mm.CustomExternalForce(expression)
    for key, value in parameters.items():
        force.addGlobalParameter(key, value)
    force.addParticle(0, [])
    system.addForce(force)
    return MDSystem(name, system, _particle_topology(1, "PRT"), np.array([start], dtype=np.float64), name, settings)


def double_well_system(
    barrier_kT: float = 5.0,
    a_nm: float = 1.0,
    k_kT_per_nm2: float = 10.0,
    mass_amu: float = 10.0,
    temperature: float = 300.0,
) -> MDSystem:
    """One particle in a double well along x, harmonically confined in y and z.

    U = barrier ((x/a)^2 - 1)^2 + k/2 (y^2 + z^2); ``barrier`` in kT, ``a`` in nm, ``k`` in kT/nm^2.
    """
    kT = kT_kj_per_mol(temperature)
    settings = {
        "barrier_kT": barrier_kT,
        "a_nm": a_nm,
        "k_kT_per_nm2": k_kT_per_nm2,
        "mass_amu": mass_amu,
        "temperature": temperature,
    }
    return _one_particle(
        "barrier*((x/a)^2 - 1)^2 + 0.5*k*(y^2 + z^2)",
        {"barrier": barrier_kT * kT, "a": a_nm, "k": k_kT_per_nm2 * kT},
        mass_amu,
        (-a_nm, 0.0, 0.0),
        "double-well",
        settings,
    )


def mueller_brown_system(
    scale_kT: float = 0.05, k_kT_per_nm2: float = 10.0, mass_amu: float = 10.0, temperature: float = 300.0
) -> MDSystem:
    """One particle on the Mueller-Brown surface in (x, y) nm, harmonically confined in z.

    U = scale sum_k A_k exp(a_k (x-x0_k)^2 + b_k (x-x0_k)(y-y0_k) + c_k (y-y0_k)^2) + k/2 z^2,
    ``scale`` in kT per Mueller-Brown unit (Mueller & Brown, Theor. Chim. Acta 53, 75 (1979)).
    """
    kT = kT_kj_per_mol(temperature)
    terms = [
        f"({A})*exp(({a})*(x-({x0}))^2 + ({b})*(x-({x0}))*(y-({y0})) + ({c})*(y-({y0}))^2)"
        for A, a, b, c, x0, y0 in MUELLER_BROWN_PARAMETERS
    ]
    settings = {"scale_kT": scale_kT, "k_kT_per_nm2": k_kT_per_nm2, "mass_amu": mass_amu, "temperature": temperature}
    # Start in the deepest minimum, near (-0.558, 1.442).
    return _one_particle(
        f"scale*({' + '.join(terms)}) + 0.5*k*z^2",
        {"scale": scale_kT * kT, "k": k_kT_per_nm2 * kT},
        mass_amu,
        (-0.558, 1.442, 0.0),
        "mueller-brown",
        settings,
    )


def rotated_double_well_rotation(n_particles: int, seed: int) -> np.ndarray:
    """The fixed random rotation ``R`` of :func:`rotated_double_well_system`, shape (3N, 3N).

    Row j gives the known coordinate ``u_j = R[j] . x`` (x the flattened positions, nm).
    """
    matrix = np.random.default_rng(seed).normal(size=(3 * n_particles, 3 * n_particles))
    rotation, upper = np.linalg.qr(matrix)
    return rotation * np.sign(np.diag(upper))[None, :]


def rotated_double_well_system(
    barrier_kT: float = 3.0,
    a_nm: float = 1.0,
    stiffness_kT_per_nm2: Sequence[float] = (20.0, 0.5, 50.0, 80.0, 110.0, 140.0, 170.0, 200.0),
    n_particles: int = 3,
    mass_amu: float = 10.0,
    rotation_seed: int = 7,
    temperature: float = 300.0,
) -> MDSystem:
    """A double well coupled to harmonic coordinates, mixed by a fixed random rotation: a known slow coordinate.

    With ``u = R x`` (x the 3N flattened positions in nm, R from
    :func:`rotated_double_well_rotation`): U = barrier ((u_0/a)^2 - 1)^2 + sum_{j>=1} k_j u_j^2 / 2.
    ``u_0`` is the barrier coordinate, ``(u_0, u_1)`` a 2-D double well, the other ``u_j``
    harmonic; equal masses keep every ``u_j`` a coordinate of unit-free kinetic metric, so
    Langevin dynamics of x is Langevin dynamics of u. A soft harmonic ``u_j`` (small k_j)
    has more variance than ``u_0`` but relaxes fast: ranking by softness picks it, ranking
    by relaxation time picks ``u_0``.

    Parameters
    ----------
    barrier_kT : float
        Barrier height in kT between the minima at ``u_0 = -a`` and ``+a``.
    a_nm : float
        Position of the minima in nm.
    stiffness_kT_per_nm2 : sequence of float
        ``k_1 .. k_{3N-1}`` in kT/nm^2.
    n_particles : int
        Number of particles N.
    mass_amu : float
        Mass of every particle in amu.
    rotation_seed : int
        Seed of the fixed rotation.
    temperature : float
        Temperature in K that fixes kT in kJ/mol.
    """
    import openmm as mm

    dim = 3 * int(n_particles)
    stiffness = [float(k) for k in stiffness_kT_per_nm2]
    if len(stiffness) != dim - 1 or not all(k > 0 for k in stiffness):
        raise NeuralCTError(
            f"rotated double well: give {dim - 1} positive stiffnesses for {n_particles} particles, "
            f"got {len(stiffness)}"
        )
    if not barrier_kT > 0 or not a_nm > 0:
        raise NeuralCTError("rotated double well: barrier_kT and a_nm must be positive")
    kT = kT_kj_per_mol(temperature)
    rotation = rotated_double_well_rotation(n_particles, rotation_seed)
    names = [f"{axis}{i + 1}" for i in range(n_particles) for axis in "xyz"]
    definitions = [
        "u{j} = {terms}".format(j=j, terms=" + ".join(f"({float(rotation[j, i])!r})*{names[i]}" for i in range(dim)))
        for j in range(dim)
    ]
    energy = (
        f"{barrier_kT * kT!r}*((u0/{a_nm!r})^2 - 1)^2 + 0.5*("
        + " + ".join(f"{k * kT!r}*u{j + 1}^2" for j, k in enumerate(stiffness))
        + ")"
    )
    force = mm.CustomCompoundBondForce(n_particles, "; ".join([energy] + definitions))
    force.addBond(list(range(n_particles)), [])
    system = mm.System()
    for _ in range(n_particles):
        system.addParticle(mass_amu)
    system.addForce(force)
    start = np.zeros(dim)
    start[0] = -a_nm
    positions = (rotation.T @ start).reshape(n_particles, 3)
    settings = {
        "barrier_kT": barrier_kT,
        "a_nm": a_nm,
        "stiffness_kT_per_nm2": stiffness,
        "n_particles": n_particles,
        "mass_amu": mass_amu,
        "rotation_seed": rotation_seed,
        "temperature": temperature,
    }
    return MDSystem(
        "rotated-double-well",
        system,
        _particle_topology(n_particles, "RDW"),
        positions,
        "rotated double well",
        settings,
    )
