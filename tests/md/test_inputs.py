"""read_system: AMBER, GROMACS and OpenMM XML inputs written by ParmEd give back the system's energies; bad input."""

import re

import numpy as np
import pytest

from neuralct.errors import NeuralCTError
from neuralct.md.inputs import read_system
from neuralct.md.systems import systems_dir

#: Edge of the water box in nm: the smallest cubic box that holds twice a 1 nm cutoff.
BOX_NM = 2.2


def solvated_dipeptide(box_nm: float = BOX_NM):
    """Alanine dipeptide in TIP3P with one Na+ and one Cl-: (topology, system, positions in nm), amber99sbildn, PME."""
    import openmm as mm
    import openmm.app as app
    import openmm.unit as unit

    pdb = app.PDBFile(str(systems_dir() / "alanine_dipeptide.pdb"))
    forcefield = app.ForceField("amber99sbildn.xml", "tip3p.xml")
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addSolvent(
        forcefield,
        model="tip3p",
        boxSize=mm.Vec3(box_nm, box_nm, box_nm) * unit.nanometer,
        ionicStrength=0.15 * unit.molar,
    )
    # Flexible water: ParmEd writes water with bonds and angles, which a rigid-water System lacks.
    system = forcefield.createSystem(
        modeller.topology,
        nonbondedMethod=app.PME,
        nonbondedCutoff=1.0 * unit.nanometer,
        constraints=None,
        rigidWater=False,
    )
    return modeller.topology, system, np.array(modeller.positions.value_in_unit(unit.nanometer))


def vacuum_dipeptide():
    """Alanine dipeptide in vacuum (NoCutoff): (topology, system, positions in nm)."""
    import openmm.app as app
    import openmm.unit as unit

    pdb = app.PDBFile(str(systems_dir() / "alanine_dipeptide.pdb"))
    system = app.ForceField("amber99sbildn.xml").createSystem(pdb.topology, nonbondedMethod=app.NoCutoff)
    return pdb.topology, system, np.array(pdb.positions.value_in_unit(unit.nanometer))


def potential_energy(system, positions: np.ndarray, kind: str | None = None) -> float:
    """Potential energy in kJ/mol on the Reference platform, of every force or of those of class ``kind``."""
    import openmm as mm
    import openmm.unit as unit

    copy = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    for index in reversed(range(copy.getNumForces())):
        force = copy.getForce(index)
        if isinstance(force, mm.MonteCarloBarostat):  # no energy, and it would move the box
            copy.removeForce(index)
        force.setForceGroup(1 if kind is None or type(force).__name__ == kind else 0)
    context = mm.Context(copy, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions)
    energy = context.getState(getEnergy=True, groups={1}).getPotentialEnergy()
    return energy.value_in_unit(unit.kilojoule_per_mole)


def write_inputs(folder, topology, system, positions, stem: str) -> None:
    """``stem``.prmtop/.rst7/.top/.gro/.pdb (ParmEd) and ``stem``.xml (the System) in ``folder``."""
    import openmm as mm
    import parmed

    structure = parmed.openmm.load_topology(topology, system, positions * 10.0)
    for suffix in ("prmtop", "rst7", "top", "gro", "pdb"):
        structure.save(str(folder / f"{stem}.{suffix}"))
    (folder / f"{stem}.xml").write_text(mm.XmlSerializer.serialize(system))


@pytest.fixture(scope="module")
def water(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    topology, system, positions = solvated_dipeptide()
    write_inputs(folder, topology, system, positions, "water")
    return folder, system, positions


@pytest.mark.parametrize(
    "files,form",
    [
        (("water.prmtop", "water.rst7"), "AMBER"),
        (("water.top", "water.gro"), "GROMACS"),
        (("water.xml", "water.pdb"), "OpenMM"),
    ],
)
def test_a_solvated_system_read_back_has_the_energy_of_the_original(water, files, form):
    folder, system, positions = water
    read = read_system([folder / name for name in files], constraints="none")
    assert read.settings["format"] == form and read.periodic and read.settings["solvent"] == "explicit"
    assert read.settings["box_nm"] == pytest.approx([BOX_NM] * 3, abs=1e-6) and "box_vectors_nm" not in read.settings
    assert read.n_atoms == system.getNumParticles() and read.settings["solvent_atoms"] == read.n_atoms - 22
    # The coordinates file's own rounding (0.001 nm in .gro, 0.0001 nm in .pdb) is left out: same positions.
    np.testing.assert_allclose(read.positions, positions, atol=1e-3)
    # Water is rigid in what is read (as in the engines), flexible in the files: the forces water's
    # bonds and angle do not enter are compared.
    for kind in ("NonbondedForce", "PeriodicTorsionForce"):
        expected = potential_energy(system, positions, kind)
        assert potential_energy(read.system, positions, kind) == pytest.approx(expected, rel=1e-6), kind


def test_a_vacuum_amber_system_is_read_without_cutoff_and_keeps_its_energy(tmp_path):
    topology, system, positions = vacuum_dipeptide()
    write_inputs(tmp_path, topology, system, positions, "vacuum")
    read = read_system([tmp_path / "vacuum.prmtop", tmp_path / "vacuum.rst7"], constraints="none")
    assert not read.periodic and read.settings["nonbonded"] == "NoCutoff" and read.settings["solvent"] == "vacuum"
    assert potential_energy(read.system, positions) == pytest.approx(potential_energy(system, positions), abs=1e-4)


def test_the_solute_is_inferred_or_given(water):
    from neuralct.md.systems import select_atoms

    folder, _, _ = water
    read = read_system([folder / "water.prmtop", folder / "water.rst7"])
    np.testing.assert_array_equal(select_atoms(read), np.arange(22))
    given = read_system([folder / "water.prmtop", folder / "water.rst7"], solute="resname ALA")
    assert given.settings["solute"] == "resname ALA" and given.settings["solvent_atoms"] == read.n_atoms - 10


def test_constraints_and_cutoff_are_applied(water):
    import openmm as mm

    folder, _, _ = water
    read = read_system([folder / "water.top", folder / "water.gro"], constraints="hbonds", cutoff_nm=0.9)
    nonbonded = next(f for f in read.system.getForces() if isinstance(f, mm.NonbondedForce))
    assert nonbonded.getNonbondedMethod() == mm.NonbondedForce.PME
    assert nonbonded.getCutoffDistance()._value == pytest.approx(0.9)
    assert read.system.getNumConstraints() > 0 and read.settings["cutoff_nm"] == 0.9


def one_line_error(files, **options) -> str:
    with pytest.raises(NeuralCTError) as error:
        read_system(files, **options)
    message = str(error.value)
    assert len(message.splitlines()) == 1, message
    return message


def test_a_prmtop_with_the_coordinates_of_another_system_is_one_line(water, tmp_path):
    folder, _, _ = water
    topology, system, positions = vacuum_dipeptide()
    write_inputs(tmp_path, topology, system, positions, "vacuum")
    message = one_line_error([folder / "water.prmtop", tmp_path / "vacuum.rst7"])
    assert "vacuum.rst7 has 22 atoms" in message and f"water.prmtop has {len(water[2])}" in message


def test_a_gromacs_topology_whose_include_is_missing_is_one_line(water, tmp_path):
    import parmed

    folder, system, positions = water
    structure = parmed.load_file(str(folder / "water.top"), xyz=str(folder / "water.gro"))
    structure.save(str(tmp_path / "split.top"), parameters=str(tmp_path / "forcefield.itp"))
    (tmp_path / "forcefield.itp").unlink()
    message = one_line_error([tmp_path / "split.top", folder / "water.gro"])
    assert "split.top" in message and "forcefield.itp" in message and "`include_dir`" in message


def test_a_gro_whose_atoms_are_in_another_order_than_the_topologys_is_one_line(water, tmp_path):
    """The sodium and the chloride swapped in the .gro (the [ molecules ] of the .top listed otherwise): the same
    atom count, but each ion would take the other's parameters, as `gmx grompp` refuses too."""
    folder, _, _ = water
    lines = (folder / "water.gro").read_text().splitlines()
    sodium = next(i for i, line in enumerate(lines) if line[5:10].strip().upper().startswith("NA"))
    chloride = next(i for i, line in enumerate(lines) if line[5:10].strip().upper().startswith("CL"))
    for a, b in ((sodium, chloride), (chloride, sodium)):
        lines[a] = lines[a][:5] + (folder / "water.gro").read_text().splitlines()[b][5:15] + lines[a][15:]
    (tmp_path / "swapped.gro").write_text("\n".join(lines) + "\n")
    message = one_line_error([folder / "water.top", tmp_path / "swapped.gro"])
    assert f"at atom {min(sodium, chloride) - 1} where GROMACS topology" in message and "(2 atom(s) differ)" in message
    assert read_system([folder / "water.top", folder / "water.gro"]).n_atoms == len(lines) - 3


def test_a_gro_holds_five_characters_of_a_longer_name_of_its_topology(water, tmp_path):
    """GROMACS writes 5 characters of an atom's name into a .gro: the chloride named CLIONX in the .top and CLION in
    the .gro is one atom."""
    import shutil

    folder, _, _ = water
    for name in ("water.top", "water.gro"):
        shutil.copy(folder / name, tmp_path / name)
    top = (tmp_path / "water.top").read_text()
    (tmp_path / "water.top").write_text(re.sub(r"^(\s+1\s+\S+\s+1\s+CL\s+)Cl ", r"\1CLIONX ", top, flags=re.M))
    assert "CLIONX" in (tmp_path / "water.top").read_text()
    lines = (tmp_path / "water.gro").read_text().splitlines()
    chloride = next(i for i, line in enumerate(lines) if line[5:10].strip().upper().startswith("CL"))
    lines[chloride] = lines[chloride][:10] + "CLION" + lines[chloride][15:]
    (tmp_path / "water.gro").write_text("\n".join(lines) + "\n")
    assert read_system([tmp_path / "water.top", tmp_path / "water.gro"]).n_atoms == len(lines) - 3


@pytest.mark.parametrize(
    "names,expected",
    [
        (("water.prmtop",), "needs a coordinates file"),
        (("water.rst7",), "give exactly one topology"),
        (("water.prmtop", "water.top", "water.gro"), "give exactly one topology"),
        (("water.xml", "water.rst7"), "needs a PDB"),
        (("water.prmtop", "missing.rst7"), "missing.rst7 does not exist"),
    ],
)
def test_files_of_no_known_role_are_one_line(water, names, expected):
    folder, _, _ = water
    assert expected in one_line_error([folder / name for name in names])


def test_a_box_narrower_than_twice_the_cutoff_is_one_line(water):
    folder, _, _ = water
    message = one_line_error([folder / "water.prmtop", folder / "water.rst7"], cutoff_nm=1.2)
    assert "water.rst7" in message and "narrower than twice the cutoff" in message and "`cutoff_nm`" in message


def test_a_box_that_leaves_the_barostat_no_room_is_one_line(water, tmp_path):
    """2.2 nm holds twice a 1.06 nm cutoff but not 5% more, which a barostat may take: OpenMM would stop the run."""
    import openmm as mm

    folder, system, _ = water
    message = one_line_error([folder / "water.prmtop", folder / "water.rst7"], cutoff_nm=1.06)
    assert "narrower than twice the cutoff (1.06 nm) and 5% for the barostat" in message
    # An OpenMM System's own cutoff is checked the same way.
    wide = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    next(f for f in wide.getForces() if isinstance(f, mm.NonbondedForce)).setCutoffDistance(1.06)
    (tmp_path / "wide.xml").write_text(mm.XmlSerializer.serialize(wide))
    message = one_line_error([tmp_path / "wide.xml", folder / "water.pdb"])
    assert "OpenMM system" in message and "(1.06 nm)" in message and "serialize the System" in message


def test_an_openmm_system_keeps_its_cutoff_and_constraints_and_refuses_others(water, tmp_path):
    """Options that would be silently ignored for a serialized System are refused; what it has is recorded."""
    import openmm as mm

    folder, system, _ = water
    read = read_system([folder / "water.xml", folder / "water.pdb"])
    assert read.settings["cutoff_nm"] == pytest.approx(1.0) and read.settings["constraints"] == "none"
    assert "`cutoff_nm`" in one_line_error([folder / "water.xml", folder / "water.pdb"], cutoff_nm=0.9)
    assert "`constraints` hbonds" in one_line_error([folder / "water.xml", folder / "water.pdb"], constraints="hbonds")
    constrained = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    constrained.addConstraint(0, 1, 0.1)
    (tmp_path / "constrained.xml").write_text(mm.XmlSerializer.serialize(constrained))
    files = [tmp_path / "constrained.xml", folder / "water.pdb"]
    assert read_system(files).settings["constraints"] == "1 as serialized"
    assert "needs a System without constraints" in one_line_error(files, constraints="none")


@pytest.mark.parametrize("kind", ["MonteCarloBarostat", "MonteCarloAnisotropicBarostat"])
def test_an_openmm_systems_own_barostat_runs_at_the_pressure_and_temperature_asked(water, tmp_path, kind):
    """A serialized System's barostat (1 bar, 300 K) keeps its kind and frequency and takes the run's 500 bar, 350 K."""
    import openmm as mm
    import openmm.unit as unit

    folder, system, _ = water
    held = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
    if kind == "MonteCarloBarostat":
        held.addForce(mm.MonteCarloBarostat(1.0 * unit.bar, 300 * unit.kelvin, 10))
    else:
        held.addForce(
            mm.MonteCarloAnisotropicBarostat(mm.Vec3(1, 1, 1) * unit.bar, 300 * unit.kelvin, True, True, True, 10)
        )
    (tmp_path / "held.xml").write_text(mm.XmlSerializer.serialize(held))
    read = read_system([tmp_path / "held.xml", folder / "water.pdb"], pressure_bar=500.0, temperature=350.0)
    barostats = [f for f in read.system.getForces() if "Barostat" in type(f).__name__]
    assert len(barostats) == 1 and type(barostats[0]).__name__ == kind and barostats[0].getFrequency() == 10
    pressure = np.array(barostats[0].getDefaultPressure().value_in_unit(unit.bar))  # (3,) for an anisotropic one
    assert pressure.size == (3 if "Anisotropic" in kind else 1) and np.all(pressure == 500.0)
    assert barostats[0].getDefaultTemperature().value_in_unit(unit.kelvin) == 350.0
    assert read.settings["barostat"] == f"the System's {kind} every 10 steps"
    plain = read_system([folder / "water.xml", folder / "water.pdb"], pressure_bar=500.0, temperature=350.0)
    assert plain.settings["barostat"] == "MonteCarloBarostat every 25 steps"
    # The long-range dispersion correction is the System's, and recorded.
    nonbonded = next(f for f in held.getForces() if isinstance(f, mm.NonbondedForce))
    for use in (True, False):
        nonbonded.setUseDispersionCorrection(use)
        (tmp_path / "held.xml").write_text(mm.XmlSerializer.serialize(held))
        assert read_system([tmp_path / "held.xml", folder / "water.pdb"]).settings["dispersion_correction"] is use


def test_an_openmm_system_with_a_second_thermostat_or_barostat_is_one_line(water, tmp_path):
    import openmm as mm

    folder, system, _ = water
    for name, extra in (
        ("andersen", [mm.AndersenThermostat(300, 1)]),
        ("two", [mm.MonteCarloBarostat(1, 300), mm.MonteCarloFlexibleBarostat(1, 300)]),
    ):
        held = mm.XmlSerializer.deserialize(mm.XmlSerializer.serialize(system))
        for force in extra:
            held.addForce(force)
        (tmp_path / f"{name}.xml").write_text(mm.XmlSerializer.serialize(held))
    assert "has an AndersenThermostat" in one_line_error([tmp_path / "andersen.xml", folder / "water.pdb"])
    assert "has 2 barostats" in one_line_error([tmp_path / "two.xml", folder / "water.pdb"])


def test_a_psf_without_parameter_files_is_one_line(water, tmp_path):
    import parmed

    folder, _, _ = water
    parmed.load_file(str(folder / "water.prmtop"), xyz=str(folder / "water.rst7")).save(str(tmp_path / "water.psf"))
    assert "needs its parameter files" in one_line_error([tmp_path / "water.psf", folder / "water.pdb"])


def test_a_hydrogen_mass_that_leaves_a_heavy_atom_no_mass_is_one_line(tmp_path):
    write_inputs(tmp_path, *vacuum_dipeptide(), "vacuum")
    text = one_line_error([tmp_path / "vacuum.prmtop", tmp_path / "vacuum.rst7"], hydrogen_mass_amu=20.0)
    assert "leaves atom CH3" in text and "vacuum.prmtop" in text


def test_an_openmm_system_takes_positions_and_box_from_a_state_beside_its_pdb(water, tmp_path):
    """System XML + PDB + State XML: the PDB's topology, the State's positions and box (the end of an earlier run)."""
    import openmm as mm

    folder, system, positions = water
    context = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    context.setPeriodicBoxVectors(*[mm.Vec3(*row) for row in np.eye(3) * 2.3])
    context.setPositions(positions + 0.05)
    (tmp_path / "end.xml").write_text(mm.XmlSerializer.serialize(context.getState(getPositions=True)))
    files = [folder / "water.xml", folder / "water.pdb", tmp_path / "end.xml"]
    read = read_system(files)
    np.testing.assert_allclose(read.positions, positions + 0.05, atol=1e-9)
    box = read.system.getDefaultPeriodicBoxVectors()
    assert [box[i][i]._value for i in range(3)] == pytest.approx([2.3, 2.3, 2.3])
    assert "end.xml" in read.description

    vacuum_topology, vacuum_system, vacuum_positions = vacuum_dipeptide()
    other = mm.Context(vacuum_system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    other.setPositions(vacuum_positions)
    (tmp_path / "other.xml").write_text(mm.XmlSerializer.serialize(other.getState(getPositions=True)))
    message = one_line_error([folder / "water.xml", folder / "water.pdb", tmp_path / "other.xml"])
    assert "has 22 particles" in message and "give the state of the same system" in message


def test_a_truncated_openmm_system_is_one_line_saying_it_is_damaged(water, tmp_path):
    folder = water[0]
    text = (folder / "water.xml").read_text()
    (tmp_path / "cut.xml").write_text(text[: len(text) // 2])
    message = one_line_error([tmp_path / "cut.xml", folder / "water.pdb"])
    assert "cut.xml" in message and "damaged or not XML" in message


def charmm_water(folder):
    """A TIP3P box as CHARMM files (water only: ParmEd writes CHARMM parameters of a system without 1-4 pairs) in
    ``folder``: water.psf, water.prm, water.crd and water.pdb whose CRYST1 box is a dodecahedron; (box vectors,
    positions), nm."""
    import openmm.app as app
    import openmm.unit as unit
    import parmed
    from openmm.app.internal.unitcell import computePeriodicBoxVectors

    forcefield = app.ForceField("amber14/tip3p.xml")
    vectors = computePeriodicBoxVectors(2.2, 2.2, 2.2, np.pi / 3, np.pi / 3, np.pi / 2)
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(forcefield, boxVectors=vectors, model="tip3p")
    flexible = forcefield.createSystem(
        modeller.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.7 * unit.nanometer, rigidWater=False
    )
    structure = parmed.openmm.load_topology(modeller.topology, flexible, xyz=modeller.positions)
    structure.save(str(folder / "water.psf"))
    structure.save(str(folder / "water.crd"))
    parmed.charmm.CharmmParameterSet.from_structure(structure).write(par=str(folder / "water.prm"))
    app.PDBFile.writeFile(modeller.topology, modeller.positions, open(folder / "water.pdb", "w"))
    box = np.array([[v.value_in_unit(unit.nanometer) for v in vector] for vector in vectors])
    return box, np.array(modeller.positions.value_in_unit(unit.nanometer))


def test_a_charmm_system_in_a_triclinic_box_keeps_its_box_and_energy(tmp_path):
    """The PDB's box is a dodecahedron: its diagonal alone would be another lattice, another energy."""
    import openmm.app as app
    import openmm.unit as unit

    box, positions = charmm_water(tmp_path)
    psf = app.CharmmPsfFile(str(tmp_path / "water.psf"))
    psf.setBox(*(2.2 * unit.nanometer,) * 3, 60 * unit.degree, 60 * unit.degree, 90 * unit.degree)
    parameters = app.CharmmParameterSet(str(tmp_path / "water.prm"))
    direct = psf.createSystem(parameters, nonbondedMethod=app.PME, nonbondedCutoff=0.7 * unit.nanometer)
    read = read_system([tmp_path / name for name in ("water.psf", "water.pdb", "water.prm")], cutoff_nm=0.7)
    vectors = read.system.getDefaultPeriodicBoxVectors()
    np.testing.assert_allclose([[v.value_in_unit(unit.nanometer) for v in row] for row in vectors], box, atol=1e-9)
    np.testing.assert_allclose(read.settings["box_vectors_nm"], box, atol=1e-9)  # the record names the whole box
    assert potential_energy(read.system, positions) == pytest.approx(potential_energy(direct, positions), rel=1e-9)


def test_a_solvated_charmm_system_without_a_box_says_where_the_box_goes(tmp_path):
    charmm_water(tmp_path)
    err = one_line_error([tmp_path / name for name in ("water.psf", "water.crd", "water.prm")], cutoff_nm=0.7)
    assert err.endswith(
        "give coordinates with the box: a PDB with its CRYST1 box in place of the .crd, which holds none"
    )


def test_a_barostat_added_to_a_periodic_system_runs_at_the_pressure_and_temperature_asked(water):
    """The Context's barostat parameters are the run's pressure in bar and temperature in K."""
    import openmm as mm

    folder, _, _ = water
    read = read_system([folder / "water.prmtop", folder / "water.rst7"], pressure_bar=500.0, temperature=350.0)
    context = mm.Context(read.system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    assert context.getParameter(mm.MonteCarloBarostat.Pressure()) == pytest.approx(500.0)
    assert context.getParameter(mm.MonteCarloBarostat.Temperature()) == pytest.approx(350.0)


def test_the_box_of_amber_coordinates_wins_over_the_box_of_their_prmtop(water, tmp_path):
    """A restart file of an NPT run holds the box to start from; the prmtop keeps the box it was built with."""
    import openmm.unit as unit

    folder, _, _ = water
    lines = (folder / "water.rst7").read_text().splitlines()
    edges = [float(x) for x in lines[-1].split()[:3]]
    assert edges == pytest.approx([10.0 * BOX_NM] * 3)  # angstrom
    lines[-1] = "".join(f"{x:12.7f}" for x in (23.0, 23.5, 24.0, 90.0, 90.0, 90.0))
    (tmp_path / "npt.rst7").write_text("\n".join(lines) + "\n")
    read = read_system([folder / "water.prmtop", tmp_path / "npt.rst7"])
    vectors = read.system.getDefaultPeriodicBoxVectors()
    np.testing.assert_allclose([vectors[i][i].value_in_unit(unit.nanometer) for i in range(3)], [2.3, 2.35, 2.4])
    assert read.settings["box_nm"] == pytest.approx([2.3, 2.35, 2.4])


@pytest.mark.parametrize(
    "forcefield, solvent, kind",
    [
        (("amber99sbildn.xml",), "vacuum", "vacuum"),
        (("amber99sbildn.xml", "amber99_obc.xml"), "obc2", "implicit solvent (OBC2)"),  # a GBSAOBCForce
        (("amber14-all.xml", "implicit/gbn2.xml"), "implicit (CustomGBForce)", "implicit solvent (CustomGBForce)"),
    ],
)
def test_an_openmm_system_in_implicit_solvent_is_not_taken_for_vacuum(tmp_path, forcefield, solvent, kind):
    """The kind of solvent of a serialized System comes from its forces: a model trained in vacuum is refused for
    OBC2 (and the reverse), as for the bundled systems."""
    import openmm
    import openmm.app as app

    from neuralct.model.molecular import check_training_solvent, solvent_kind

    pdb = app.PDBFile(str(systems_dir() / "alanine_dipeptide.pdb"))
    system = app.ForceField(*forcefield).createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    (tmp_path / "system.xml").write_text(openmm.XmlSerializer.serialize(system))
    with open(tmp_path / "system.pdb", "w") as handle:
        app.PDBFile.writeFile(pdb.topology, pdb.positions, handle)
    read = read_system([tmp_path / "system.xml", tmp_path / "system.pdb"])
    assert read.settings["solvent"] == solvent and solvent_kind(solvent) == kind
    trained = type("Model", (), {"metadata": {"molecule": {"training_solvent": "vacuum"}}})()
    if kind == "vacuum":
        check_training_solvent(trained, read.settings, "the system")
    else:
        with pytest.raises(NeuralCTError, match=rf"in {re.escape(kind)}"):
            check_training_solvent(trained, read.settings, "the system")
