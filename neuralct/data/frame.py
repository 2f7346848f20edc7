"""Removing rigid-body motion: the Kabsch fit, and internal coordinates orthogonal to translations and rotations.

After aligning a frame to the reference, the 6 rigid-body directions (3 translations, 3
rotations) carry no variance and would make a likelihood unbounded (science.md). We fit each
frame to the reference by a mass-weighted Kabsch fit (:func:`kabsch`, in float64 for data), then
project the mass-weighted displacement on an orthonormal basis B of the 3N - 6 directions
orthogonal to the rigid-body ones at the reference:

    y = B^T (sqrt(m) (x_aligned - x_ref)),        p_y = B^T (R p / sqrt(m)).

The mass-weighted Kabsch optimum satisfies the Eckart conditions, so the discarded components
of the displacement vanish and ``from_internal`` inverts ``to_internal`` exactly on aligned
frames. The coordinates y have unit mass: Maxwell-Boltzmann momenta are p_y ~ N(0, kT).
Units: positions nm, masses amu, y in sqrt(amu) nm, p_y in sqrt(amu) nm/ps (kT in kJ/mol =
amu nm^2/ps^2).

The Kabsch fit is computed by the quaternion method (Horn, J. Opt. Soc. Am. A 4, 629, 1987;
Coutsias et al., J. Comput. Chem. 25, 1849, 2004): the rotation is that of the unit quaternion
which is the top eigenvector of a symmetric 4 x 4 matrix, itself linear in the mass-weighted
correlation of the frame with the reference. It is a proper rotation by construction, and
differentiable wherever that eigenvalue is simple (always, for a molecule close to its
reference). The fit exists twice, for two kinds of caller, both built on
:func:`quaternion_tables`:

- :func:`kabsch`, here, in torch: batched and differentiable; it aligns trajectories
  (:meth:`RigidBodyFrame.align`, every fit checked) and, scripted with TorchScript, runs inside
  the exported CVs (:class:`neuralct.export.cv.CollectiveVariables`) for openmm-torch and PLUMED;
- :class:`neuralct.export.numpy_cv.NumpyCollectiveVariables`, in NumPy: one configuration at a
  time with a hand-written reverse pass, for the bias force an MD engine evaluates every few
  steps (``openmm.PythonForce``), where torch costs more per operation than the arithmetic does.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["RigidBodyFrame", "kabsch", "quaternion_tables"]

#: A fit whose RMSD exceeds the centred, unrotated RMSD by more than this (nm) is an error.
_FIT_TOLERANCE_NM = 1e-9


def quaternion_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """Constant linear maps of the quaternion method (Coutsias et al. 2004, eqs. 7 and 2), float64.

    ``key = c @ KEY`` builds the symmetric 4 x 4 matrix (flattened) from the flattened
    3 x 3 correlation matrix ``c``; ``U = (q q^T) @ ROTATION`` builds the rotation
    (flattened) from the outer product of the unit quaternion ``q`` with itself. Matrix
    products instead of element-by-element formulas keep the fit cheap to differentiate.

    Returns
    -------
    key_table : torch.Tensor, shape=(9, 16)
    rotation_table : torch.Tensor, shape=(16, 9)
    """
    key = np.zeros((3, 3, 4, 4))
    entries = {
        (0, 0): [(0, 0, 1), (1, 1, 1), (2, 2, 1)],
        (0, 1): [(1, 2, 1), (2, 1, -1)],
        (0, 2): [(2, 0, 1), (0, 2, -1)],
        (0, 3): [(0, 1, 1), (1, 0, -1)],
        (1, 1): [(0, 0, 1), (1, 1, -1), (2, 2, -1)],
        (1, 2): [(0, 1, 1), (1, 0, 1)],
        (1, 3): [(2, 0, 1), (0, 2, 1)],
        (2, 2): [(0, 0, -1), (1, 1, 1), (2, 2, -1)],
        (2, 3): [(1, 2, 1), (2, 1, 1)],
        (3, 3): [(0, 0, -1), (1, 1, -1), (2, 2, 1)],
    }
    for (a, b), terms in entries.items():
        for i, j, sign in terms:
            key[i, j, a, b] = key[i, j, b, a] = sign
    rotation = np.zeros((4, 4, 3, 3))
    for a, b, r, s, value in [
        (0, 0, 0, 0, 1),
        (1, 1, 0, 0, 1),
        (2, 2, 0, 0, -1),
        (3, 3, 0, 0, -1),
        (0, 0, 1, 1, 1),
        (1, 1, 1, 1, -1),
        (2, 2, 1, 1, 1),
        (3, 3, 1, 1, -1),
        (0, 0, 2, 2, 1),
        (1, 1, 2, 2, -1),
        (2, 2, 2, 2, -1),
        (3, 3, 2, 2, 1),
        (1, 2, 0, 1, 2),
        (0, 3, 0, 1, -2),
        (1, 3, 0, 2, 2),
        (0, 2, 0, 2, 2),
        (1, 2, 1, 0, 2),
        (0, 3, 1, 0, 2),
        (2, 3, 1, 2, 2),
        (0, 1, 1, 2, -2),
        (1, 3, 2, 0, 2),
        (0, 2, 2, 0, -2),
        (2, 3, 2, 1, 2),
        (0, 1, 2, 1, 2),
    ]:
        rotation[a, b, r, s] = value
    return torch.from_numpy(key.reshape(9, 16)), torch.from_numpy(rotation.reshape(16, 9))


_KEY_TABLE, _ROTATION_TABLE = quaternion_tables()


def kabsch(
    centred: torch.Tensor,
    reference: torch.Tensor,
    masses: torch.Tensor,
    key_table: torch.Tensor,
    rotation_table: torch.Tensor,
) -> torch.Tensor:
    """Mass-weighted optimal rotations ``U`` of centred frames onto a centred reference (quaternion method).

    TorchScript compiles it: the tables are arguments (a scripted module holds them as buffers).

    Parameters
    ----------
    centred : torch.Tensor, shape=(batch, n_atoms, 3)
        Frames, each centred at its centre of mass, nm.
    reference : torch.Tensor, shape=(n_atoms, 3)
        Reference structure centred at its centre of mass, nm.
    masses : torch.Tensor, shape=(n_atoms,)
        Weights (amu).
    key_table, rotation_table : torch.Tensor, shapes (9, 16) and (16, 9)
        The constant maps of :func:`quaternion_tables`, in the frames' dtype and device.

    Returns
    -------
    torch.Tensor, shape=(batch, 3, 3)
        Proper rotations (det U = +1 by construction) minimising ``sum_i m_i |U x_i - r_i|^2``;
        the aligned frames are ``centred @ U^T``.
    """
    batch = centred.shape[0]
    correlation = (centred * masses[:, None]).transpose(1, 2) @ reference
    key = (correlation.reshape(batch, 9) @ key_table).reshape(batch, 4, 4)
    _, vectors = torch.linalg.eigh(key)
    q = vectors[:, :, 3]
    return ((q[:, :, None] * q[:, None, :]).reshape(batch, 16) @ rotation_table).reshape(batch, 3, 3)


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
        rotations = kabsch(
            centred, self.reference.to(positions), masses, _KEY_TABLE.to(positions), _ROTATION_TABLE.to(positions)
        )
        return centred @ rotations.transpose(-1, -2), rotations

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
