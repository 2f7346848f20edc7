"""Removing rigid-body motion: Kabsch alignment and internal coordinates orthogonal to translations and rotations.

After aligning a frame to the reference, the 6 rigid-body directions (3 translations, 3
rotations) carry no variance and would make a likelihood unbounded (science.md). We fit each
frame to the reference by a mass-weighted Kabsch fit (SVD in float64 with the determinant sign
fixed, so the fit is always a proper rotation), then project the mass-weighted displacement on
an orthonormal basis B of the 3N - 6 directions orthogonal to the rigid-body ones at the
reference:

    y = B^T (sqrt(m) (x_aligned - x_ref)),        p_y = B^T (R p / sqrt(m)).

The mass-weighted Kabsch optimum satisfies the Eckart conditions, so the discarded components
of the displacement vanish and ``from_internal`` inverts ``to_internal`` exactly on aligned
frames. The coordinates y have unit mass: Maxwell-Boltzmann momenta are p_y ~ N(0, kT).
Units: positions nm, masses amu, y in sqrt(amu) nm, p_y in sqrt(amu) nm/ps (kT in kJ/mol =
amu nm^2/ps^2).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["RigidBodyFrame", "kabsch"]

#: A fit whose RMSD exceeds the centred, unrotated RMSD by more than this (nm) is an error.
_FIT_TOLERANCE_NM = 1e-9


def kabsch(positions: torch.Tensor, reference: torch.Tensor, masses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mass-weighted optimal rotation of centred ``positions`` onto a centred ``reference``.

    Parameters
    ----------
    positions : torch.Tensor, shape=(n_frames, n_atoms, 3)
        Frames, each centred at its centre of mass.
    reference : torch.Tensor, shape=(n_atoms, 3)
        Reference structure centred at its centre of mass.
    masses : torch.Tensor, shape=(n_atoms,)
        Weights (amu).

    Returns
    -------
    rotations : torch.Tensor, shape=(n_frames, 3, 3)
        Proper rotations R (det R = +1) minimising sum_i m_i |R x_i - x_ref_i|^2.
    aligned : torch.Tensor, shape=(n_frames, n_atoms, 3)
        The rotated frames, R x_i.
    """
    covariance = torch.einsum("i,fia,ib->fab", masses, positions, reference)
    u, _, vh = torch.linalg.svd(covariance)
    # A reflection would fit better when det(V U^T) < 0; flipping the last axis keeps R proper.
    sign = torch.sign(torch.linalg.det(vh.transpose(-1, -2) @ u.transpose(-1, -2)))
    flip = torch.ones(positions.shape[0], 3, dtype=positions.dtype, device=positions.device)
    flip = torch.cat([flip[:, :2], sign[:, None]], dim=1)
    rotations = vh.transpose(-1, -2) @ torch.diag_embed(flip) @ u.transpose(-1, -2)
    return rotations, positions @ rotations.transpose(-1, -2)


def _rigid_body_basis(reference: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Orthonormal basis (3N, 3N - 6) of the complement of translations and rotations at ``reference``."""
    sqrt_m = np.sqrt(masses)[:, None]
    directions = []
    for axis in np.eye(3):
        directions.append((sqrt_m * axis).ravel())
        directions.append((sqrt_m * np.cross(axis, reference)).ravel())
    rigid = np.linalg.qr(np.array(directions).T)[0]
    u = np.linalg.svd(rigid, full_matrices=True)[0]
    return u[:, 6:]


class RigidBodyFrame:
    """Align frames to a reference and map them to the 3N - 6 internal coordinates.

    Parameters
    ----------
    reference : array, shape=(n_atoms, 3)
        Reference structure in nm (it is centred at its centre of mass).
    masses : array, shape=(n_atoms,)
        Atomic masses in amu.
    """

    def __init__(
        self,
        reference: np.ndarray | torch.Tensor,
        masses: np.ndarray | torch.Tensor,
        basis: np.ndarray | torch.Tensor | None = None,
    ):
        masses = np.asarray(masses, dtype=np.float64)
        reference = np.asarray(reference, dtype=np.float64)
        if reference.ndim != 2 or reference.shape[1] != 3 or masses.shape != (reference.shape[0],):
            raise ValueError(
                f"reference must be (n_atoms, 3) and masses (n_atoms,), got {reference.shape} and {masses.shape}"
            )
        if reference.shape[0] < 3:
            raise ValueError("a rigid-body frame needs at least 3 atoms")
        reference = reference - masses @ reference / masses.sum()
        self.reference = torch.from_numpy(reference)
        self.masses = torch.from_numpy(masses)
        self.basis = torch.as_tensor(
            np.asarray(basis) if basis is not None else _rigid_body_basis(reference, masses), dtype=torch.float64
        )

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return self.reference.shape[0]

    @property
    def dim(self) -> int:
        """Number of internal coordinates, 3 n_atoms - 6."""
        return self.basis.shape[1]

    def align_torch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable alignment of frames to the reference.

        Parameters
        ----------
        positions : torch.Tensor, shape=(n_frames, n_atoms, 3)
            Frames in nm (any dtype; computed in the dtype given).

        Returns
        -------
        aligned : torch.Tensor, shape=(n_frames, n_atoms, 3)
            Centred and rotated frames, nm.
        rotations : torch.Tensor, shape=(n_frames, 3, 3)
            The rotation applied to each centred frame.
        """
        masses = self.masses.to(positions)
        centred = positions - torch.einsum("i,fia->fa", masses, positions)[:, None, :] / masses.sum()
        rotations, aligned = kabsch(centred, self.reference.to(positions), masses)
        return aligned, rotations

    def to_internal_torch(self, positions: torch.Tensor) -> torch.Tensor:
        """Differentiable internal coordinates of frames in nm.

        Parameters
        ----------
        positions : torch.Tensor, shape=(n_frames, n_atoms, 3) or (n_frames, 3 * n_atoms)
            Frames in nm.

        Returns
        -------
        torch.Tensor, shape=(n_frames, 3 * n_atoms - 6)
            y = B^T sqrt(m) (x_aligned - x_ref), in sqrt(amu) nm.
        """
        aligned, _ = self.align_torch(positions.reshape(positions.shape[0], self.n_atoms, 3))
        return self._project(aligned)

    def _project(self, aligned: torch.Tensor) -> torch.Tensor:
        displacement = (aligned - self.reference.to(aligned)) * self.masses.to(aligned).sqrt()[:, None]
        return displacement.reshape(aligned.shape[0], -1) @ self.basis.to(aligned)

    def align(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Align frames in float64 and check every fit.

        Parameters
        ----------
        positions : np.ndarray, shape=(n_frames, n_atoms, 3)
            Frames in nm.

        Returns
        -------
        aligned : np.ndarray, shape=(n_frames, n_atoms, 3)
            Aligned frames, nm.
        rotations : np.ndarray, shape=(n_frames, 3, 3)
            Rotation of each centred frame.
        rmsd : np.ndarray, shape=(n_frames,)
            Mass-weighted RMSD to the reference after fitting, nm.

        Raises
        ------
        RuntimeError
            If a fit is not a proper rotation or leaves a larger RMSD than no rotation at all.
        """
        x = torch.as_tensor(np.asarray(positions, dtype=np.float64))
        aligned, rotations = self.align_torch(x)
        rmsd = self._rmsd(aligned)
        centred = x - torch.einsum("i,fia->fa", self.masses, x)[:, None, :] / self.masses.sum()
        unrotated = self._rmsd(centred)
        orthogonal = (
            torch.linalg.matrix_norm(rotations.transpose(-1, -2) @ rotations - torch.eye(3, dtype=torch.float64))
            < 1e-10
        )
        proper = torch.linalg.det(rotations) > 0
        bad = ~(orthogonal & proper & (rmsd <= unrotated + _FIT_TOLERANCE_NM))
        if bad.any():
            raise RuntimeError(
                f"the Kabsch fit failed for {int(bad.sum())} frame(s), first frame {int(bad.nonzero()[0, 0])}"
            )
        return aligned.numpy(), rotations.numpy(), rmsd.numpy()

    def _rmsd(self, centred: torch.Tensor) -> torch.Tensor:
        squared = torch.einsum("i,fia->f", self.masses, (centred - self.reference) ** 2)
        return (squared / self.masses.sum()).sqrt()

    def to_internal(
        self, positions: np.ndarray, return_rotations: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Internal coordinates of frames (checked float64 alignment).

        Parameters
        ----------
        positions : np.ndarray, shape=(n_frames, n_atoms, 3)
            Frames in nm.
        return_rotations : bool
            Also return the rotations, needed by ``momenta_to_internal``.

        Returns
        -------
        y : np.ndarray, shape=(n_frames, 3 * n_atoms - 6)
            Internal coordinates in sqrt(amu) nm.
        rotations : np.ndarray, shape=(n_frames, 3, 3)
            Only with ``return_rotations``.
        """
        aligned, rotations, _ = self.align(positions)
        y = self.aligned_to_internal(aligned)
        return (y, rotations) if return_rotations else y

    def aligned_to_internal(self, aligned: np.ndarray) -> np.ndarray:
        """Internal coordinates of frames that are already aligned, shape (n_frames, 3 n_atoms - 6)."""
        return self._project(torch.as_tensor(np.asarray(aligned, dtype=np.float64))).numpy()

    def momenta_to_internal(self, momenta: np.ndarray, rotations: np.ndarray | None = None) -> np.ndarray:
        """Momenta conjugate to the internal coordinates.

        Parameters
        ----------
        momenta : np.ndarray, shape=(n_frames, n_atoms, 3)
            Momenta in amu nm/ps (in the lab frame, or already rotated if ``rotations`` is None).
        rotations : np.ndarray, shape=(n_frames, 3, 3), optional
            Rotations from ``to_internal(..., return_rotations=True)``.

        Returns
        -------
        np.ndarray, shape=(n_frames, 3 * n_atoms - 6)
            p_y = B^T (R p / sqrt(m)) in sqrt(amu) nm/ps; Maxwell-Boltzmann is N(0, kT).
        """
        p = np.asarray(momenta, dtype=np.float64)
        if rotations is not None:
            p = p @ np.swapaxes(rotations, -1, -2)
        scaled = p / np.sqrt(self.masses.numpy())[:, None]
        return scaled.reshape(len(scaled), -1) @ self.basis.numpy()

    def from_internal(self, y: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Aligned positions from internal coordinates: x = x_ref + (B y) / sqrt(m).

        Parameters
        ----------
        y : array, shape=(n_frames, 3 * n_atoms - 6)
            Internal coordinates in sqrt(amu) nm (numpy or torch; the same type is returned).

        Returns
        -------
        array, shape=(n_frames, n_atoms, 3)
            Positions in nm in the reference frame.
        """
        if not isinstance(y, torch.Tensor):
            return self.from_internal(torch.as_tensor(np.asarray(y, dtype=np.float64))).numpy()
        flat = y @ self.basis.to(y).T
        return self.reference.to(y) + flat.reshape(y.shape[0], self.n_atoms, 3) / self.masses.to(y).sqrt()[:, None]

    def momenta_from_internal(self, p_y: np.ndarray) -> np.ndarray:
        """Momenta in the reference frame, amu nm/ps, shape (n_frames, n_atoms, 3), from p_y."""
        flat = np.asarray(p_y, dtype=np.float64) @ self.basis.numpy().T
        return flat.reshape(len(flat), self.n_atoms, 3) * np.sqrt(self.masses.numpy())[:, None]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain tensors for ``torch.save`` (loadable with ``weights_only=True``)."""
        return {"reference": self.reference.clone(), "masses": self.masses.clone(), "basis": self.basis.clone()}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "RigidBodyFrame":
        """Rebuild a frame from ``state_dict()``."""
        return cls(state["reference"].numpy(), state["masses"].numpy(), state["basis"].numpy())
