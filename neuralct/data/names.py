"""Atom names in the PDB's standard form, whatever file they come from.

A force field's topology keeps its own names (AMBER's and GROMACS's ``CH3`` for NME's methyl carbon,
``HH31`` for a cap's hydrogen, ``SOL:OW`` for water's oxygen, CHARMM's amide ``HN``); MDTraj reading a
PDB or .gro file, and OpenMM reading a PDB or GROMACS topology, rename them to the PDB's standard names by
their tables (``C``, ``H1``, ``HOH:O``, ``H``). Compared in the standard names, the two are one system.
"""

from __future__ import annotations

import functools

__all__ = ["standard_atom_label"]


@functools.cache
def _name_replacements() -> list[tuple[dict[str, str], dict[str, dict[str, str]]]]:
    """The tables of residue and atom names by which MDTraj reads a PDB or .gro file, and OpenMM a PDB or GROMACS
    topology, into the PDB's standard names (OpenMM's hold more: ASH is ASP, SPC and TIP3 are HOH)."""
    import openmm.app as app
    from mdtraj.formats.pdb import PDBTrajectoryFile

    PDBTrajectoryFile._loadNameReplacementTables()
    app.PDBFile._loadNameReplacementTables()
    return [
        (PDBTrajectoryFile._residueNameReplacements, PDBTrajectoryFile._atomNameReplacements),
        (app.PDBFile._residueNameReplacements, app.PDBFile._atomNameReplacements),
    ]


def standard_atom_label(label: str) -> str:
    """An atom's ``"RESIDUE:NAME"`` in the PDB's standard names (e.g. ``"NME:CH3"`` gives ``"NME:C"``), by MDTraj's
    tables and then OpenMM's."""
    residue, _, atom = label.partition(":")
    for residues, atoms in _name_replacements():
        residue = residues.get(residue, residue)
        atom = atoms.get(residue, {}).get(atom, atom)
    return f"{residue}:{atom}"
