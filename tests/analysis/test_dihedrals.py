"""Backbone dihedrals from the topology against an independent numpy computation."""

from pathlib import Path

import numpy as np
import pytest

mdtraj = pytest.importorskip("mdtraj")

from neuralct.analysis.dihedrals import dihedral_angles, find_dihedrals, ramachandran_residues, select_residues  # noqa: E402
from neuralct.errors import NeuralCTError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# Heavy atoms of ACE-ALA-NME (Angstrom); the atoms are deliberately not in backbone order.
HEAVY_ATOMS_PDB = """\
HETATM    1  CH3 ACE A   1      -0.167   0.226  -0.208  1.00  0.00           C
HETATM    2  O   ACE A   1       1.732  -0.335  -1.518  1.00  0.00           O
HETATM    3  C   ACE A   1       1.309   0.248  -0.528  1.00  0.00           C
ATOM      4  N   ALA A   2       2.090   0.920   0.314  1.00  0.00           N
ATOM      5  CB  ALA A   2       3.889   2.247  -0.660  1.00  0.00           C
ATOM      6  CA  ALA A   2       3.545   1.021   0.198  1.00  0.00           C
ATOM      7  O   ALA A   2       3.559   1.470   2.566  1.00  0.00           O
ATOM      8  C   ALA A   2       4.206   1.099   1.587  1.00  0.00           C
HETATM    9  N   NME A   3       5.501   0.766   1.665  1.00  0.00           N
HETATM   10  C   NME A   3       6.279   0.794   2.902  1.00  0.00           C
END
"""


def dihedral(p0, p1, p2, p3):
    """IUPAC dihedral angle (radians) of four points, per frame."""
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    b1_unit = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    return np.arctan2(np.sum(np.cross(n1, n2) * b1_unit, axis=-1), np.sum(n1 * n2, axis=-1))


@pytest.fixture
def dipeptide(tmp_path):
    path = tmp_path / "ala2.pdb"
    path.write_text(HEAVY_ATOMS_PDB)
    single = mdtraj.load(str(path))
    rng = np.random.default_rng(0)
    noise = 0.03 * rng.normal(size=(40,) + single.xyz.shape[1:])  # nm
    noise[0] = 0.0  # frame 0 is the PDB itself, frames 1-39 distorted
    return mdtraj.Trajectory((single.xyz + noise).astype(np.float32), single.topology)


def test_dipeptide_angles_match_an_independent_computation(dipeptide):
    dihedrals = find_dihedrals(dipeptide.topology)
    assert [d.name for d in dihedrals] == ["phi A:ALA2", "psi A:ALA2"]
    phi, psi = dihedral_angles(dipeptide.xyz, dihedrals).T
    assert phi.shape == psi.shape == (40,)
    atom = {(a.residue.index, a.name): a.index for a in dipeptide.topology.atoms}
    x = dipeptide.xyz.astype(np.float64)
    phi_atoms = [atom[0, "C"], atom[1, "N"], atom[1, "CA"], atom[1, "C"]]
    psi_atoms = [atom[1, "N"], atom[1, "CA"], atom[1, "C"], atom[2, "N"]]
    assert dihedrals[0].atoms == tuple(phi_atoms) and dihedrals[1].atoms == tuple(psi_atoms)
    np.testing.assert_allclose(phi, dihedral(*(x[:, i] for i in phi_atoms)), atol=1e-5)
    np.testing.assert_allclose(psi, dihedral(*(x[:, i] for i in psi_atoms)), atol=1e-5)
    # The PDB is an extended (beta) conformation: phi -147, psi 159 degrees.
    assert np.degrees([phi[0], psi[0]]) == pytest.approx([-147.0, 159.1], abs=0.1)


def test_every_residue_of_a_longer_peptide_gets_its_angles():
    topology = mdtraj.load(str(REPO / "systems" / "trialanine.pdb")).topology
    dihedrals = find_dihedrals(topology)
    residues = [r.label for r, _, _ in ramachandran_residues(dihedrals)]
    assert residues == ["A:ALA2", "A:ALA3", "A:ALA4"]
    assert [d.kind for d in dihedrals] == ["phi", "psi"] * 3
    # psi of residue i and phi of residue i + 1 share the peptide bond C(i)-N(i+1).
    assert dihedrals[1].atoms[2:] == dihedrals[2].atoms[:2]
    assert len(find_dihedrals(topology, chi=True)) == 6  # alanine has no chi angle


def test_residues_are_chosen_as_the_pdb_numbers_them():
    topology = mdtraj.load(str(REPO / "systems" / "trialanine.pdb")).topology
    residues = [r for r, _, _ in ramachandran_residues(find_dihedrals(topology))]
    assert [r.label for r in select_residues(residues, ["3", "a:ala4"])] == ["A:ALA3", "A:ALA4"]
    with pytest.raises(NeuralCTError, match="--residues ALA7: .*A:ALA2 A:ALA3 A:ALA4"):
        select_residues(residues, ["ALA7"])


def test_a_molecule_without_backbone_has_no_dihedrals(dipeptide):
    without_n = dipeptide.atom_slice(dipeptide.topology.select("not name N"))
    assert find_dihedrals(without_n.topology) == []
    assert dihedral_angles(without_n.xyz, []).shape == (40, 0)


def test_chi_angles_come_with_the_residues_that_have_them(tmp_path):
    # Tri-alanine with its middle residue turned into a serine (OG on CB): one chi1, N-CA-CB-OG.
    lines = []
    for line in (REPO / "systems" / "trialanine.pdb").read_text().splitlines():
        if line.startswith(("ATOM", "HETATM")) and line[22:26].strip() == "3":
            line = line[:17] + "SER" + line[20:]
            if line[12:16].strip() == "CB":
                lines.append(line)
                line = line[:12] + " OG " + line[16:30] + f"{float(line[30:38]) + 1.4:8.3f}" + line[38:76] + " O"
        if not line.startswith("CONECT"):
            lines.append(line)
    path = tmp_path / "ala-ser-ala.pdb"
    path.write_text("\n".join(lines) + "\n")
    traj = mdtraj.load(str(path))
    dihedrals = find_dihedrals(traj.topology, chi=True)
    chi = [d for d in dihedrals if d.kind.startswith("chi")]
    assert [d.name for d in chi] == ["chi1 A:SER3"]
    atom = {a.name: a.index for a in traj.topology.residue(2).atoms}
    assert chi[0].atoms == (atom["N"], atom["CA"], atom["CB"], atom["OG"])
    assert [d.name for d in dihedrals][2:5] == ["phi A:SER3", "psi A:SER3", "chi1 A:SER3"]
    x = traj.xyz.astype(np.float64)
    np.testing.assert_allclose(
        dihedral_angles(traj.xyz, chi)[:, 0], dihedral(*(x[:, i] for i in chi[0].atoms)), atol=1e-5
    )


def test_two_molecules_written_with_one_chain_identifier_are_two_residues_everywhere():
    """OpenMM's Modeller writes added molecules with one chain identifier: each keeps its own angles and name."""
    from neuralct.workflows.bias import _backbone_torsions

    dipeptide = mdtraj.load(str(REPO / "systems" / "alanine_dipeptide.pdb")).topology
    both = dipeptide.join(dipeptide)
    for chain in both.chains:
        chain.chain_id = "A"
    dihedrals = find_dihedrals(both)
    assert [d.name for d in dihedrals] == ["phi A:ALA2", "psi A:ALA2", "phi B:ALA2", "psi B:ALA2"]
    assert all(atom >= dipeptide.n_atoms for d in dihedrals[2:] for atom in d.atoms)
    torsions = _backbone_torsions(both.to_openmm())
    assert sorted(torsions) == ["phi_A_ALA2", "phi_B_ALA2", "psi_A_ALA2", "psi_B_ALA2"]
    assert torsions["phi_B_ALA2"].atoms == dihedrals[2].atoms
    # Distinct identifiers are the chains' names.
    for chain, name in zip(both.chains, "PQ"):
        chain.chain_id = name
    assert [d.name for d in find_dihedrals(both)][::2] == ["phi P:ALA2", "phi Q:ALA2"]
