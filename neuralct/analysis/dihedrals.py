"""Dihedral angles of any molecule, found per residue from the topology: backbone phi/psi and side-chain chi."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import NeuralCTError

if TYPE_CHECKING:
    import mdtraj

__all__ = ["Dihedral", "Residue", "find_dihedrals", "dihedral_angles", "ramachandran_residues", "select_residues"]

#: Side-chain torsions MDTraj knows, in order.
CHI_KINDS = ("chi1", "chi2", "chi3", "chi4")


@dataclass(frozen=True)
class Residue:
    """A residue as the PDB names it: chain identifier, residue number and residue name."""

    chain: str
    number: int
    name: str

    @property
    def label(self) -> str:
        """``NAMEnumber``, with ``chain:`` in front when the chain has an identifier (e.g. ``A:ALA2``)."""
        return f"{self.chain + ':' if self.chain else ''}{self.name}{self.number}"


@dataclass(frozen=True)
class Dihedral:
    """One torsion angle of a residue.

    Attributes
    ----------
    kind : str
        ``phi`` (C(i-1)-N-CA-C), ``psi`` (N-CA-C-N(i+1)) or ``chi1`` ... ``chi4``.
    residue : Residue
        The residue the angle belongs to (that of the CA for phi and psi).
    atoms : tuple of int
        The four atom indices in the topology.
    """

    kind: str
    residue: Residue
    atoms: tuple[int, int, int, int]

    @property
    def name(self) -> str:
        """``kind residue`` (e.g. ``phi A:ALA2``)."""
        return f"{self.kind} {self.residue.label}"


def chain_label(chain: "mdtraj.core.topology.Chain") -> str:
    """How residue labels name ``chain``: its identifier where no other chain of its topology shares it, else
    a letter by its index (A, B, ... as OpenMM writes the chains of a PDB; the index beyond Z), so that two
    molecules written with one chain identifier (OpenMM's Modeller gives them one) are never one."""
    own = str(getattr(chain, "chain_id", None) or "").strip()
    ids = [str(getattr(other, "chain_id", None) or "").strip() for other in chain.topology.chains]
    if ids.count(own) == 1 or chain.topology.n_chains == 1:
        return own
    return chr(ord("A") + chain.index) if chain.index < 26 else str(chain.index)


def _residue(topology: "mdtraj.Topology", atom: int) -> Residue:
    residue = topology.atom(int(atom)).residue
    return Residue(chain_label(residue.chain), int(residue.resSeq), str(residue.name))


def find_dihedrals(topology: "mdtraj.Topology", chi: bool = False) -> list[Dihedral]:
    """Backbone dihedrals of every residue (and side-chain chi angles when asked), from the topology.

    The four atoms of each angle come from MDTraj (``compute_phi``, ``compute_psi``,
    ``compute_chi1`` ... ``compute_chi4``), which finds them by atom and residue names,
    so any peptide or protein works and a molecule without a protein backbone simply
    has none.

    Parameters
    ----------
    topology : mdtraj.Topology
        Topology of the full system.
    chi : bool
        Also return the side-chain torsions chi1 ... chi4 of the residues that have them.

    Returns
    -------
    list of Dihedral
        Ordered by residue, then phi, psi, chi1, ..., chi4. Empty when the topology has
        no protein backbone (a ligand, a toy system).
    """
    import mdtraj

    empty = mdtraj.Trajectory(np.zeros((1, topology.n_atoms, 3), dtype=np.float32), topology)
    kinds = ("phi", "psi") + (CHI_KINDS if chi else ())
    found = []
    for order, kind in enumerate(kinds):
        indices = getattr(mdtraj, f"compute_{kind}")(empty)[0]
        # phi and psi belong to the residue of their CA (atom 2 of phi, atom 1 of psi); chi to that of its CA (atom 1).
        owner = 2 if kind == "phi" else 1
        for atoms in indices:
            residue_index = topology.atom(int(atoms[owner])).residue.index
            found.append(
                (residue_index, order, Dihedral(kind, _residue(topology, atoms[owner]), tuple(int(a) for a in atoms)))
            )
    return [dihedral for _, _, dihedral in sorted(found, key=lambda item: item[:2])]


def dihedral_angles(positions: np.ndarray, dihedrals: Sequence[Dihedral]) -> np.ndarray:
    """Values of the given dihedrals in every frame.

    Parameters
    ----------
    positions : np.ndarray, shape=(n_frames, n_atoms, 3)
        Positions in nm (any orientation).
    dihedrals : sequence of Dihedral
        From :func:`find_dihedrals`.

    Returns
    -------
    np.ndarray, shape=(n_frames, n_dihedrals)
        Angles in radians in (-pi, pi] (IUPAC sign convention), float64.
    """
    import mdtraj

    positions = np.asarray(positions)
    if not dihedrals:
        return np.zeros((positions.shape[0], 0))
    # mdtraj.compute_dihedrals needs only coordinates and indices; periodic=False: no unit cell here.
    traj = mdtraj.Trajectory(positions.astype(np.float32), None)
    return mdtraj.compute_dihedrals(traj, np.array([d.atoms for d in dihedrals]), periodic=False).astype(np.float64)


def ramachandran_residues(dihedrals: Sequence[Dihedral]) -> list[tuple[Residue, int, int]]:
    """Residues that have both phi and psi, with the positions of their phi and psi in ``dihedrals``.

    Returns
    -------
    list of (Residue, int, int)
        In residue order; terminal residues and caps (which lack phi or psi) are left out.
    """
    index = {(d.residue, d.kind): k for k, d in enumerate(dihedrals)}
    residues = list(dict.fromkeys(d.residue for d in dihedrals))
    return [(r, index[r, "phi"], index[r, "psi"]) for r in residues if (r, "phi") in index and (r, "psi") in index]


def select_residues(residues: Sequence[Residue], wanted: Sequence[str]) -> list[Residue]:
    """The residues named by ``--residues``.

    Parameters
    ----------
    residues : sequence of Residue
        Residues to choose from (those with phi and psi).
    wanted : sequence of str
        Each a residue number as in the PDB (``2``), a name and number (``ALA2``),
        optionally with the chain in front (``A:2``, ``A:ALA2``); case-insensitive.

    Raises
    ------
    NeuralCTError
        Naming the first entry that matches no residue, and listing the ones there are.
    """
    chosen: list[Residue] = []
    for token in wanted:
        chain, _, rest = token.strip().rpartition(":")
        matches = [
            r
            for r in residues
            if (not chain or chain.upper() == r.chain.upper())
            and (rest == str(r.number) or rest.upper() == f"{r.name}{r.number}".upper())
        ]
        if not matches:
            available = (
                " ".join(r.label for r in residues) or "none (the molecule has no residue with both phi and psi)"
            )
            raise NeuralCTError(f"--residues {token}: no residue with phi and psi matches it; choose from {available}")
        chosen.extend(r for r in matches if r not in chosen)
    return chosen
