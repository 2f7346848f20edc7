"""Atom names in the PDB's standard form, whatever file they come from.

A force field's topology keeps its own names (AMBER's and GROMACS's ``CH3`` for NME's methyl carbon,
``HH31`` for a cap's hydrogen, ``SOL:OW`` for water's oxygen, CHARMM's amide ``HN``); MDTraj reading a
PDB or .gro file, and OpenMM reading a GROMACS topology, rename them to the PDB's standard names by the
same tables (``C``, ``H1``, ``HOH:O``, ``H``). Compared in the standard names, the two are one system.
"""

from __future__ import annotations

import functools

__all__ = ["standard_atom_label"]


@functools.cache
def _name_replacements() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """MDTraj's tables of residue and atom names by which it reads a PDB or .gro file into the PDB's standard names."""
    from mdtraj.formats.pdb import PDBTrajectoryFile

    PDBTrajectoryFile._loadNameReplacementTables()
    return PDBTrajectoryFile._residueNameReplacements, PDBTrajectoryFile._atomNameReplacements


def standard_atom_label(label: str) -> str:
    """An atom's ``"RESIDUE:NAME"`` in the PDB's standard names (e.g. ``"NME:CH3"`` gives ``"NME:C"``)."""
    residue, _, atom = label.partition(":")
    residues, atoms = _name_replacements()
    residue = residues.get(residue, residue)
    return f"{residue}:{atoms.get(residue, {}).get(atom, atom)}"
