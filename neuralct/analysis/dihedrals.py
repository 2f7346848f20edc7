"""Backbone dihedral angles (phi, psi) of a trajectory, with atoms found from the topology."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import NeuralCTError

if TYPE_CHECKING:
    import mdtraj

__all__ = ["backbone_dihedrals"]


def backbone_dihedrals(traj: "mdtraj.Trajectory") -> tuple[np.ndarray, np.ndarray]:
    """Backbone dihedrals phi (C-N-CA-C) and psi (N-CA-C-N) of every frame, in radians.

    The four atoms of each angle come from the topology (``mdtraj.compute_phi``
    and ``mdtraj.compute_psi``), never from fixed indices. Capped peptides such
    as alanine dipeptide (ACE-ALA-NME) have exactly one of each.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        Trajectory whose topology names the backbone atoms (C, N, CA).

    Returns
    -------
    phi, psi : np.ndarray, shape=(n_frames,) or (n_frames, n_phi) and (n_frames, n_psi)
        Angles in radians in (-pi, pi]. One-dimensional when the molecule has
        exactly one phi and one psi (a dipeptide), two-dimensional otherwise.

    Raises
    ------
    NeuralCTError
        If the topology has no complete phi or psi (e.g. the backbone atoms
        were removed by the atom selection).
    """
    import mdtraj

    _, phi = mdtraj.compute_phi(traj)
    _, psi = mdtraj.compute_psi(traj)
    if phi.shape[1] == 0 or psi.shape[1] == 0:
        raise NeuralCTError(
            "the topology has no complete backbone phi/psi (atoms C, N, CA, C / N, CA, C, N); "
            "load the trajectory with a topology that keeps the backbone atoms"
        )
    if phi.shape[1] == 1 and psi.shape[1] == 1:
        return phi[:, 0].astype(np.float64), psi[:, 0].astype(np.float64)
    return phi.astype(np.float64), psi.astype(np.float64)
