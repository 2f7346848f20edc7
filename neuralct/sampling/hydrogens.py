"""Hydrogens placed by internal coordinates on the atoms of a model that leaves them out.

A model trained on the heavy atoms (``neuralct train --selection heavy``) learns the density of
their rigid-body frame coordinates y. To sample the whole molecule, each hydrogen H left out of
the model is placed on three model atoms: A, the atom it is bonded to; B, a model-atom
neighbour of A; C, another model-atom neighbour of A or else one of B. Its internal coordinates
are the bond length ``r = |H - A|``, the angle ``theta`` between H - A and B - A, and the
dihedral ``phi`` H-A-B-C. A methyl rotor is then one periodic angle, not a ring of three atoms.

Density. For fixed A, B and C the map ``(r, theta, phi) -> H`` is spherical coordinates about
the axis A -> B, with volume element ``r^2 sin(theta)``. Hydrogens are placed on model atoms
only, so the map ``(y, w) -> x`` of all hydrogens' coordinates w is block triangular: the
Cartesian volume is ``J(y) prod_H r_H^2 sin(theta_H) dy dw`` (J the rigid-body volume element
of the model atoms, :mod:`neuralct.sampling.rigid`), and the Boltzmann density on (y, w) is
``exp(-beta E(x(y, w))) J(y) prod_H r_H^2 sin(theta_H)``. The angle phi is sampled on the real
line: the density is 2 pi-periodic in it, so the chain's phi modulo 2 pi samples the circle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..errors import NeuralCTError

if TYPE_CHECKING:
    import mdtraj

__all__ = ["HydrogenPlacement"]


def _unit(vector: torch.Tensor) -> torch.Tensor:
    return vector / vector.norm(dim=-1, keepdim=True)


class HydrogenPlacement:
    """Where the hydrogens left out of a model go, given the model's atoms.

    Parameters
    ----------
    n_atoms : int
        Atoms of the whole system.
    model_atoms : sequence of int
        System indices of the model's atoms, in the model's order.
    references : np.ndarray, shape=(n_hydrogens, 4)
        System indices (H, A, B, C) of each placed hydrogen (see the module docstring).
    """

    def __init__(self, n_atoms: int, model_atoms: Sequence[int], references: np.ndarray):
        self.n_atoms = int(n_atoms)
        self.model_atoms = torch.as_tensor(np.asarray(model_atoms, dtype=np.int64))
        references = np.asarray(references, dtype=np.int64).reshape(-1, 4)
        self.hydrogens = torch.as_tensor(references[:, 0])
        position_in_model = {int(atom): k for k, atom in enumerate(model_atoms)}
        # A, B and C as rows of the model's position array.
        self.anchors = torch.as_tensor(
            [[position_in_model[int(atom)] for atom in row[1:]] for row in references], dtype=torch.int64
        ).reshape(-1, 3)

    @classmethod
    def from_topology(cls, topology: "mdtraj.Topology", model_atoms: Sequence[int]) -> "HydrogenPlacement":
        """Find A, B and C of every atom that is not a model atom.

        Raises
        ------
        NeuralCTError
            If an atom left out is not a hydrogen bonded to a model atom, or that atom has no
            model-atom neighbours to define the angle and dihedral.
        """
        in_model = set(int(atom) for atom in model_atoms)
        neighbours: dict[int, list[int]] = {atom.index: [] for atom in topology.atoms}
        for first, second in topology.bonds:
            neighbours[first.index].append(second.index)
            neighbours[second.index].append(first.index)
        references = []
        for atom in topology.atoms:
            if atom.index in in_model:
                continue
            bonded = [other for other in neighbours[atom.index] if other in in_model]
            element = atom.element.symbol if atom.element is not None else "?"
            if element != "H" or len(bonded) != 1:
                raise NeuralCTError(
                    f"atom {atom.index} ({atom.residue.name}:{atom.name}) is not in the model and is not a hydrogen "
                    "bonded to one of its atoms; "
                    "the potential energy needs every atom: train with `--selection heavy` or `--selection all`"
                )
            a = bonded[0]
            around_a = sorted(other for other in neighbours[a] if other in in_model)
            if not around_a:
                raise NeuralCTError(
                    f"hydrogen {atom.index} ({atom.residue.name}:{atom.name}) sits on an atom without model-atom "
                    "neighbours; it cannot be placed"
                )
            b = around_a[0]
            others = around_a[1:] or sorted(other for other in neighbours[b] if other in in_model and other != a)
            if not others:
                raise NeuralCTError(
                    f"hydrogen {atom.index} ({atom.residue.name}:{atom.name}): no third model atom near it defines "
                    "a dihedral; it cannot be placed"
                )
            references.append((atom.index, a, b, others[0]))
        return cls(topology.n_atoms, model_atoms, np.array(references, dtype=np.int64).reshape(-1, 4))

    @property
    def count(self) -> int:
        """Number of placed hydrogens."""
        return len(self.hydrogens)

    @property
    def dim(self) -> int:
        """Internal coordinates of the placed hydrogens: 3 each."""
        return 3 * self.count

    def _local_frames(
        self, model_positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A, and the orthonormal frame (axis B -> A, in-plane, normal to A-B-C) of each hydrogen.

        Each of shape (batch, n_hydrogens, 3).
        """
        a, b, c = (model_positions[:, self.anchors[:, k]] for k in range(3))
        axis = _unit(a - b)
        normal = _unit(torch.cross(b - c, axis, dim=-1))
        return a, axis, torch.cross(normal, axis, dim=-1), normal

    def place(self, model_positions: torch.Tensor, internal: torch.Tensor) -> torch.Tensor:
        """All atoms' positions from the model atoms' and the hydrogens' internal coordinates.

        Parameters
        ----------
        model_positions : torch.Tensor, shape=(batch, n_model_atoms, 3)
            nm, in the model's atom order.
        internal : torch.Tensor, shape=(batch, 3 n_hydrogens)
            ``(r in nm, theta in rad, phi in rad)`` per hydrogen.

        Returns
        -------
        torch.Tensor, shape=(batch, n_atoms, 3)
            nm, in the system's order (differentiable in both inputs).
        """
        r, theta, phi = internal.reshape(len(internal), -1, 3).unbind(-1)
        a, axis, in_plane, normal = self._local_frames(model_positions)
        local = torch.stack(
            [-r * torch.cos(theta), r * torch.sin(theta) * torch.cos(phi), r * torch.sin(theta) * torch.sin(phi)],
            dim=-1,
        )
        hydrogens = a + local[..., :1] * axis + local[..., 1:2] * in_plane + local[..., 2:] * normal
        positions = model_positions.new_zeros(len(model_positions), self.n_atoms, 3)
        positions = positions.index_copy(1, self.model_atoms, model_positions)
        return positions.index_copy(1, self.hydrogens, hydrogens)

    def internal(self, positions: torch.Tensor) -> torch.Tensor:
        """The hydrogens' ``(r, theta, phi)`` in frames of the whole system.

        Parameters
        ----------
        positions : torch.Tensor, shape=(batch, n_atoms, 3)
            nm, in the system's order.

        Returns
        -------
        torch.Tensor, shape=(batch, 3 n_hydrogens)
            phi in (-pi, pi].
        """
        a, axis, in_plane, normal = self._local_frames(positions[:, self.model_atoms])
        bond = positions[:, self.hydrogens] - a
        r = bond.norm(dim=-1)
        theta = torch.acos(torch.clamp(-(bond * axis).sum(-1) / r, -1.0, 1.0))
        phi = torch.atan2((bond * normal).sum(-1), (bond * in_plane).sum(-1))
        return torch.stack([r, theta, phi], dim=-1).reshape(len(positions), -1)

    def log_jacobian(self, internal: torch.Tensor) -> torch.Tensor:
        """``sum_H ln(r_H^2 sin theta_H)``, shape (batch,); ``-inf`` outside ``r > 0``, ``0 < theta < pi``."""
        r, theta, _ = internal.reshape(len(internal), -1, 3).unbind(-1)
        inside = (r > 0).all(-1) & (theta > 0).all(-1) & (theta < torch.pi).all(-1)
        value = (2.0 * torch.log(r.abs()) + torch.log(torch.sin(theta).abs())).sum(-1)
        return torch.where(inside, value, torch.full_like(value, -torch.inf))
