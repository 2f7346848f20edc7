"""OpenMM systems: analytic toy energies, the bundled alanine dipeptide, and bad input."""

import numpy as np
import pytest
import torch

from neuralct.errors import NeuralCTError
from neuralct.md.energy import OpenMMEnergy
from neuralct.md.systems import MUELLER_BROWN_PARAMETERS, available_systems, build_system, harmonic_chain_system
from neuralct.toys.hamiltonians import HarmonicChain


def chain_energy_1d(q, kappa):
    """kappa/2 sum_{i=0..n} (q_{i+1} - q_i)^2 with q_0 = q_{n+1} = 0, for q of shape (batch, n)."""
    padded = np.pad(q, ((0, 0), (1, 1)))
    return 0.5 * kappa * (np.diff(padded, axis=1) ** 2).sum(axis=1)


def test_bundled_systems_are_listed():
    assert {"alanine-dipeptide", "harmonic-chain", "double-well", "mueller-brown"} <= set(available_systems())


@pytest.mark.parametrize("kappa", [1.0, 2.5])
def test_harmonic_chain_energies_equal_analytic(kappa):
    n = 8
    system = harmonic_chain_system(n=n, kappa_kT_per_nm2=kappa)
    energy = OpenMMEnergy(system, unit="kT")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, n, 3))
    u, _ = energy.evaluate(x)
    expected = sum(chain_energy_1d(x[:, :, d], kappa) for d in range(3))
    np.testing.assert_allclose(u, expected, rtol=1e-10)
    # A chain along x only is exactly the 1D chain of neuralct.toys.
    x[:, :, 1:] = 0.0
    toy = HarmonicChain(n, kappa=kappa).potential(torch.tensor(x[:, :, 0])).numpy()
    np.testing.assert_allclose(energy.evaluate(x)[0], toy, rtol=1e-10)


def test_a_free_chain_has_the_bonds_only_and_a_tethered_value_must_be_a_boolean():
    """Untethered, U = kappa/2 sum_{i=1..n-1} |r_{i+1} - r_i|^2: unchanged by translating and rotating the chain."""
    n, kappa = 5, 2.0
    energy = OpenMMEnergy(harmonic_chain_system(n=n, kappa_kT_per_nm2=kappa, tethered=False).system, unit="kT")
    x = np.random.default_rng(1).normal(size=(4, n, 3))
    expected = 0.5 * kappa * (np.diff(x, axis=1) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(energy.evaluate(x)[0], expected, rtol=1e-10)
    turned = x @ np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).T + 3.0
    np.testing.assert_allclose(energy.evaluate(turned)[0], expected, rtol=1e-10)
    with pytest.raises(NeuralCTError, match="^harmonic chain: `tethered` must be true or false, got 3$"):
        harmonic_chain_system(n=n, tethered=3)


def test_double_well_and_mueller_brown_energies():
    dw = OpenMMEnergy(build_system("double-well"), unit="kT")
    x = np.array([[[-1.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]], [[0.5, 0.2, -0.1]]])
    expected = 5.0 * ((x[:, 0, 0] ** 2 - 1) ** 2) + 0.5 * 10.0 * (x[:, 0, 1] ** 2 + x[:, 0, 2] ** 2)
    np.testing.assert_allclose(dw.evaluate(x)[0], expected, rtol=1e-10)

    mb = OpenMMEnergy(build_system("mueller-brown"), unit="kT")
    points = np.array([[[-0.558, 1.442, 0.0]], [[0.623, 0.028, 0.0]], [[-0.05, 0.467, 0.0]]])
    expected = np.zeros(3)
    for A, a, b, c, x0, y0 in MUELLER_BROWN_PARAMETERS:
        dx, dy = points[:, 0, 0] - x0, points[:, 0, 1] - y0
        expected += A * np.exp(a * dx**2 + b * dx * dy + c * dy**2)
    np.testing.assert_allclose(mb.evaluate(points)[0], 0.05 * expected, rtol=1e-10)
    # The published minima: A at -146.7, B at -108.2, C at -80.8 (Mueller-Brown units).
    np.testing.assert_allclose(expected, [-146.7, -108.2, -80.8], atol=0.1)


def test_alanine_dipeptide_structure():
    import mdtraj as md

    system = build_system("alanine-dipeptide")
    assert system.n_atoms == 22
    assert [r.name for r in system.topology.residues()] == ["ACE", "ALA", "NME"]
    traj = md.load(system.settings["pdb"])
    top = traj.topology
    n, ca, c, cb = (top.select(f"resname ALA and name {name}")[0] for name in ("N", "CA", "C", "CB"))
    # L-alanine: the improper dihedral N-C-CA-CB is about +122 degrees (D-alanine: -122).
    improper = np.degrees(md.compute_dihedrals(traj, [[n, c, ca, cb]]))[0, 0]
    assert 100 < improper < 140
    assert system.system.getNumConstraints() == 12  # the 12 bonds to hydrogen


def test_obc2_adds_implicit_solvent():
    vacuum, obc2 = build_system("alanine-dipeptide"), build_system("alanine-dipeptide", solvent="obc2")
    assert obc2.system.getNumForces() == vacuum.system.getNumForces() + 1
    x = vacuum.positions[None]
    e_vac = OpenMMEnergy(vacuum, unit="kJ/mol").evaluate(x)[0][0]
    e_obc = OpenMMEnergy(obc2, unit="kJ/mol").evaluate(x)[0][0]
    assert e_obc < e_vac - 10.0  # solvation of a polar peptide lowers the energy


def test_user_pdb_with_forcefield():
    system = build_system(str(build_system("alanine-dipeptide").settings["pdb"]), forcefield=["amber14-all.xml"])
    assert system.n_atoms == 22 and system.settings["forcefield"] == ["amber14-all.xml"]


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("no-such-system", {}, "unknown system"),
        ("missing.pdb", {}, "does not exist"),
        ("alanine-dipeptide", {"forcefield": ["no-such-ff.xml"]}, "cannot load force field"),
        ("alanine-dipeptide", {"solvent": "water"}, "unknown solvent"),
        ("harmonic-chain", {"solvent": "obc2"}, "molecules only"),
    ],
)
def test_bad_system_input(name, kwargs, message):
    with pytest.raises(NeuralCTError, match=message):
        build_system(name, **kwargs)


def test_hydrogen_mass_repartitioning_keeps_every_molecule_s_mass():
    from neuralct.md.systems import WaterBox, solute_atoms

    water = WaterBox(padding_nm=0.6, cutoff_nm=0.7)
    plain = build_system("alanine-dipeptide", solvent="tip3p", water=water)
    heavy = build_system("alanine-dipeptide", solvent="tip3p", water=water, hydrogen_mass_amu=1.5)
    solute = solute_atoms(plain.topology)
    hydrogens = [a.index for a in heavy.topology.atoms() if a.element.symbol == "H" and a.index in set(solute)]
    assert heavy.masses().sum() == pytest.approx(plain.masses().sum(), abs=1e-9)
    assert heavy.masses()[solute].sum() == pytest.approx(plain.masses()[solute].sum(), abs=1e-9)
    np.testing.assert_allclose(heavy.masses()[hydrogens], 1.5)
    # Rigid water keeps its masses; the same options build the same box, ions and all.
    rest = np.setdiff1d(np.arange(plain.n_atoms), solute)
    np.testing.assert_array_equal(heavy.masses()[rest], plain.masses()[rest])
    np.testing.assert_array_equal(heavy.positions, plain.positions)


def test_a_hydrogen_mass_that_leaves_a_heavy_atom_no_mass_is_one_line():
    """OpenMM takes the hydrogens' mass from their heavy atoms without checking what is left."""
    with pytest.raises(NeuralCTError, match="leaves atom CH3 of residue ACE 1") as error:
        build_system("alanine-dipeptide", hydrogen_mass_amu=20.0)
    assert "\n" not in str(error.value)


def test_the_barostat_of_explicit_water_runs_at_the_pressure_and_temperature_asked():
    """The Context's barostat parameters are the water box's pressure in bar and the run's temperature in K."""
    import openmm as mm

    from neuralct.md.systems import WaterBox

    water = WaterBox(padding_nm=0.6, cutoff_nm=0.7, pressure_bar=250.0)
    built = build_system("alanine-dipeptide", solvent="tip3p", water=water, temperature=350.0)
    context = mm.Context(built.system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    # OpenMM's barostat parameters: pressure in bar, temperature in K.
    assert context.getParameter(mm.MonteCarloBarostat.Pressure()) == pytest.approx(250.0)
    assert context.getParameter(mm.MonteCarloBarostat.Temperature()) == pytest.approx(350.0)


def test_the_ionic_strength_adds_salt_at_that_concentration():
    """A neutral solute in 1 M NaCl: as many Na+ as Cl-, about 1 mol/L of the box's volume."""
    import openmm.unit as unit

    from neuralct.md.systems import WaterBox

    water = WaterBox(padding_nm=1.0, cutoff_nm=0.7, ionic_strength_molar=1.0)
    built = build_system("alanine-dipeptide", solvent="tip3p", water=water)
    names = [residue.name for residue in built.topology.residues()]
    vectors = built.topology.getPeriodicBoxVectors()
    litres = np.prod([vectors[i][i].value_in_unit(unit.nanometer) for i in range(3)]) * 1e-24
    molar = names.count("NA") / (6.02214076e23 * litres)
    assert names.count("NA") == names.count("CL") > 0
    # Water fills the box less the solute: the salt's share of the box's volume is a little below 1 M.
    assert 0.7 < molar < 1.1
