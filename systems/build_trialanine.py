"""How systems/trialanine.pdb was made: capped tri-alanine from internal coordinates, hydrogens, OpenMM minimisation.

Run once (``python systems/build_trialanine.py``); the PDB is committed. ``python
systems/build_trialanine.py N OUT.pdb`` builds ACE-(ALA)N-NME the same way (e.g. deca-alanine
for the scale benchmark B5). Heavy atoms are placed by
the natural extension reference frame method (bond lengths, angles and torsions of an ideal
trans peptide in the polyproline II conformation, phi -75, psi 145 degrees), hydrogens are added
by ``openmm.app.Modeller.addHydrogens`` and the structure is energy-minimised with
amber99sb-ildn in OBC2 implicit solvent (NoCutoff), the bundled system's force field.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

__all__ = ["heavy_atoms", "build"]

HERE = Path(__file__).resolve().parent

# Ideal geometry in Angstrom and degrees (Engh & Huber values, rounded).
BOND = {"N-CA": 1.458, "CA-C": 1.525, "C-N": 1.329, "C-O": 1.231, "CA-CB": 1.530, "CH3-C": 1.520, "N-CH3": 1.449}
ANGLE = {"N-CA-C": 111.2, "CA-C-N": 116.2, "C-N-CA": 121.7, "N-C-O": 123.0, "C-CA-CB": 110.1}
PHI, PSI, OMEGA = -75.0, 145.0, 180.0
# Improper N-C-CA-CB of an L residue (measured on the bundled alanine dipeptide: 121.5 degrees).
CB_IMPROPER = 121.5


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float, torsion: float) -> np.ndarray:
    """Atom d with |cd| = bond, angle b-c-d and torsion a-b-c-d (degrees)."""
    angle, torsion = np.radians(angle), np.radians(torsion)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.column_stack([bc, np.cross(n, bc), n])
    local = bond * np.array([-np.cos(angle), np.sin(angle) * np.cos(torsion), np.sin(angle) * np.sin(torsion)])
    return c + m @ local


def heavy_atoms(n_alanines: int = 3) -> list[tuple[str, str, np.ndarray]]:
    """(residue name, atom name, position in Angstrom) of the heavy atoms of ACE-(ALA)n-NME."""
    ch3 = np.array([0.0, 0.0, 0.0])
    c = np.array([BOND["CH3-C"], 0.0, 0.0])
    n = _place(np.array([0.0, 1.0, 0.0]), ch3, c, BOND["C-N"], ANGLE["CA-C-N"], 180.0)
    atoms = [("ACE", "CH3", ch3), ("ACE", "C", c)]
    previous_c, previous_prev = c, ch3
    for _ in range(n_alanines):
        ca = _place(previous_prev, previous_c, n, BOND["N-CA"], ANGLE["C-N-CA"], OMEGA)
        c_new = _place(previous_c, n, ca, BOND["CA-C"], ANGLE["N-CA-C"], PHI)
        cb = _place(n, c_new, ca, BOND["CA-CB"], ANGLE["C-CA-CB"], CB_IMPROPER)
        n_next = _place(n, ca, c_new, BOND["C-N"], ANGLE["CA-C-N"], PSI)
        # The carbonyl O of the previous residue is cis to this CA across the peptide bond.
        atoms.append((atoms[-1][0], "O", _place(ca, n, previous_c, BOND["C-O"], ANGLE["N-C-O"], 0.0)))
        atoms += [("ALA", "N", n), ("ALA", "CA", ca), ("ALA", "CB", cb), ("ALA", "C", c_new)]
        previous_prev, previous_c, n = ca, c_new, n_next
    ch3_nme = _place(previous_prev, previous_c, n, BOND["N-CH3"], ANGLE["C-N-CA"], OMEGA)
    atoms.append(("ALA", "O", _place(ch3_nme, n, previous_c, BOND["C-O"], ANGLE["N-C-O"], 0.0)))
    atoms += [("NME", "N", n), ("NME", "C", ch3_nme)]
    return atoms


def build(path: Path = HERE / "trialanine.pdb", n_alanines: int = 3) -> None:
    """Write the minimised, protonated ACE-(ALA)n-NME (default tri-alanine) to ``path``."""
    import openmm as mm
    import openmm.app as app
    import openmm.unit as unit

    lines, residue, last = [], 0, None
    for serial, (name, atom, xyz) in enumerate(heavy_atoms(n_alanines), start=1):
        if (name, atom) == ("ALA", "N") or name != last and name in ("ACE", "NME"):
            residue += 1
        last = name
        record = "ATOM  " if name == "ALA" else "HETATM"
        lines.append(
            f"{record}{serial:5d} {atom:^4s} {name:3s} A{residue:4d}    "
            f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}  1.00  0.00          {atom[0]:>2s}"
        )
    pdb = app.PDBFile(io.StringIO("\n".join(lines) + "\nEND\n"))
    forcefield = app.ForceField("amber99sbildn.xml", "implicit/obc2.xml")
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addHydrogens(forcefield, pH=7.0)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds)
    context = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(modeller.positions)
    mm.LocalEnergyMinimizer.minimize(context, 1.0, 5000)
    positions = context.getState(getPositions=True).getPositions()
    out = io.StringIO()
    out.write(f"REMARK   1 CAPPED ACE-(ALA){n_alanines}-NME (L-ALA), BUILT FOR NEURALCT BY\n")
    out.write("REMARK   1 SYSTEMS/BUILD_TRIALANINE.PY: IDEAL GEOMETRY (PHI -75, PSI 145, OMEGA 180),\n")
    out.write("REMARK   1 HYDROGENS FROM OPENMM MODELLER.ADDHYDROGENS (PH 7), MINIMISED WITH\n")
    out.write("REMARK   1 AMBER99SB-ILDN IN OBC2 IMPLICIT SOLVENT (NOCUTOFF, HBONDS).\n")
    app.PDBFile.writeFile(modeller.topology, positions, out, keepIds=True)
    Path(path).write_text(out.getvalue())
    energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    print(f"{path}: {modeller.topology.getNumAtoms()} atoms, minimised potential energy {energy:.1f} kJ/mol")


if __name__ == "__main__":
    import sys

    build(*(Path(sys.argv[2]), int(sys.argv[1])) if len(sys.argv) > 2 else ())
