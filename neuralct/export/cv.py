"""The learned CVs as self-contained torch functions of atomic positions (nm), for MD engines.

A :class:`CollectiveVariables` module holds everything a CV needs and nothing it does not:
the model's atom indices, the rigid-body frame (reference, masses, internal basis), the
reduced-unit scaling and the configuration part ``Q = F(q)`` of the flow. Constant matrices
are computed once here (the ``matrix_exp`` of a linear point layer), log-determinants are
dropped, and the module scripts with TorchScript and exports with ``torch.export``.

Pipeline for positions ``x`` of the whole system, nm:

1. select the model's atoms; for periodic systems make the molecule whole by the rule of
   :mod:`neuralct.data.periodic`: each atom is placed at the minimum image of its parent in the
   shortest-edge spanning tree of the reference structure (so a molecule split across the box
   gives the same CV);
2. mass-weighted Kabsch fit to the reference in float64 (:func:`neuralct.data.frame.kabsch`,
   the quaternion method, differentiable);
3. internal coordinates ``y = B^T sqrt(m) (x_aligned - x_ref)`` (see ``RigidBodyFrame``);
4. reduced units ``q_r = (y - q0) sqrt(m / kT) / tau`` and the flow ``Q = F(q_r)``;
5. the ``k`` slowest latent positions.
"""

from __future__ import annotations

import copy
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..data.frame import kabsch, quaternion_tables
from ..data.periodic import NEIGHBOUR_SHIFTS, model_tree
from ..errors import NeuralCTError
from ..flows import LinearSymplectic, PointTransformation
from ..flows.coupling import AffineCoupling, CouplingStack
from ..model.transformation import NeuralCanonicalTransformation

__all__ = ["CollectiveVariables", "collective_variables", "cv_steepness", "STEEPNESS_CVS"]

#: The slowest CVs whose steepness training records (:func:`cv_steepness`): as many as a bias acts on at most
#: (:data:`neuralct.workflows.bias.MAX_SEPARATE_CVS`).
STEEPNESS_CVS = 6


class _LinearPoint(nn.Module):
    """``Q = W q`` with the constant ``W`` of a trained linear point layer."""

    def __init__(self, layer: LinearSymplectic):
        super().__init__()
        with torch.no_grad():
            self.register_buffer("weight", layer.matrix()[: layer.dim, : layer.dim].detach().clone())

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q @ self.weight.T


class _Coupling(nn.Module):
    """Forward map of an :class:`AffineCoupling` without its log-determinant, as gathers and a concat."""

    def __init__(self, coupling: AffineCoupling):
        super().__init__()
        self.register_buffer("conditioning", coupling.conditioning.clone())
        self.register_buffer("transformed", coupling.transformed.clone())
        self.register_buffer("unpermute", torch.argsort(torch.cat([coupling.conditioning, coupling.transformed])))
        self.scale_bound = coupling.scale_bound
        self.net = copy.deepcopy(coupling.net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_a = x.index_select(-1, self.conditioning)
        raw_scale, shift = self.net(x_a).chunk(2, dim=-1)
        log_scale = self.scale_bound * torch.tanh(raw_scale / self.scale_bound)
        x_b = x.index_select(-1, self.transformed) * torch.exp(log_scale) + shift
        return torch.cat([x_a, x_b], -1).index_select(-1, self.unpermute)


class _Couplings(nn.Module):
    """``F(q) = loc + scale * G((q - loc) / scale)`` of a :class:`CouplingStack`."""

    def __init__(self, stack: CouplingStack):
        super().__init__()
        self.register_buffer("loc", stack.loc.clone())
        self.register_buffer("scale", stack.scale.clone())
        self.couplings = nn.ModuleList(_Coupling(c) for c in stack.couplings)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        u = (q - self.loc) / self.scale
        for coupling in self.couplings:
            u = coupling(u)
        return self.loc + self.scale * u


def _configuration_layer(layer: nn.Module) -> nn.Module:
    if isinstance(layer, LinearSymplectic) and layer.point:
        return _LinearPoint(layer)
    if isinstance(layer, PointTransformation):
        return _Couplings(layer.bijection)
    raise NeuralCTError(
        f"the model has a {type(layer).__name__} layer that mixes positions and momenta: its CVs are not functions of "
        "the positions alone and cannot be exported; train with point layers "
        "(`neuralct train --layers linear-point,point`)"
    )


class CollectiveVariables(nn.Module):
    """The ``k`` slowest CVs of a molecular model as a function of the positions of the whole system.

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        A model trained on molecular trajectories with a flow of point transformations.
    k : int
        Number of CVs, slowest first.
    select : bool
        True: inputs are positions of the whole system and the model's atoms are picked
        out here; False: inputs are the model's atoms only, in the model's order.

    Notes
    -----
    ``forward(positions, box)`` takes positions of shape (n, 3) or (batch, n, 3) in nm, any
    float dtype, and an optional periodic box (3, 3) whose rows are the box vectors (nm);
    with a box the molecule is made whole first. It returns CVs of shape (k,) or
    (batch, k) in the input's dtype. Inside everything runs in float64.

    With ``select`` the module reads the atoms ``atom_indices`` of a system of ``n_system_atoms``
    atoms (by default the model's own: the atoms of its trajectories) and raises for positions of
    another count: the same indices in another system (the solute in a water box that does not
    start with it) would be other atoms. :meth:`for_system` points it at another system.
    """

    def __init__(self, model: NeuralCanonicalTransformation, k: int, select: bool = True):
        super().__init__()
        from ..model.molecular import molecule_description, rigid_body_frame

        molecule = molecule_description(model)
        if not 1 <= k <= model.dim:
            raise NeuralCTError(
                f"the number of CVs, {k}, is out of range: the model has {model.dim} latent modes; use 1 to {model.dim}"
            )
        # A copy of the flow: the module's float64 and frozen parameters must not change the model's.
        layers = [_configuration_layer(layer) for layer in copy.deepcopy(model.flow).layers]
        frame = rigid_body_frame(model)
        tree = model_tree(frame.reference.numpy(), molecule.get("molecules"))
        self.k = int(k)
        self.select = bool(select)
        self.register_buffer("tree_parents", torch.as_tensor(tree.parents))
        level_atoms, level_parents, level_ends = tree.flat_levels()
        self.register_buffer("tree_level_atoms", torch.as_tensor(level_atoms))
        self.register_buffer("tree_level_parents", torch.as_tensor(level_parents))
        self.tree_level_ends: List[int] = level_ends
        self.register_buffer("neighbour_shifts", torch.as_tensor(NEIGHBOUR_SHIFTS))
        self.register_buffer("atom_indices", torch.tensor(molecule["atom_indices"], dtype=torch.long))
        self.n_system_atoms = int(molecule["n_atoms"])
        self.register_buffer("masses", frame.masses.clone())
        self.register_buffer("reference", frame.reference.clone())
        self.register_buffer("basis", frame.basis.clone())
        key_table, rotation_table = quaternion_tables()
        self.register_buffer("key_table", key_table)
        self.register_buffer("rotation_table", rotation_table)
        with torch.no_grad():
            self.register_buffer("position_offset", model.position_offset.detach().double().clone())
            self.register_buffer("position_scale", model.position_scale().detach().double().clone())
            self.register_buffer("modes", model.mode_order()[:k].clone())
        self.layers = nn.ModuleList(layers)
        self.double()

    @torch.jit.unused
    def for_system(self, atom_indices: Sequence[int], n_system_atoms: int) -> "CollectiveVariables":
        """Read the model's atoms at ``atom_indices`` (model order) of a system of ``n_system_atoms`` atoms; self."""
        self.atom_indices = torch.as_tensor(np.asarray(atom_indices), dtype=torch.long)
        self.n_system_atoms = int(n_system_atoms)
        return self

    def make_whole(self, selected: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        """Unwrap the selected atoms (batch, n, 3) across a periodic ``box`` (3, 3), nm.

        The rule of :func:`neuralct.data.periodic.make_whole`, in torch: the box is brought to
        OpenMM's reduced form (a no-op on OpenMM's own boxes), and each atom moves to the periodic
        image nearest its (already placed) parent in the reference's spanning tree: the shortest of
        the reduced displacement and its 26 neighbouring images, which is the reduced one for a
        bond, and is needed where an edge may be longer than half the box (to another molecule).
        """
        a, b, c = box[0], box[1], box[2]
        c = c - torch.round(c[1] / b[1]) * b
        c = c - torch.round(c[0] / a[0]) * a
        b = b - torch.round(b[0] / a[0]) * a
        shifts = self.neighbour_shifts @ torch.stack([a, b, c])
        whole = selected
        start = 0
        for end in self.tree_level_ends:  # the atoms of one depth of the tree at a time, as the NumPy rule places them
            atoms, parents = self.tree_level_atoms[start:end], self.tree_level_parents[start:end]
            anchor = whole.index_select(1, parents)
            d = whole.index_select(1, atoms) - anchor
            d = d - torch.round(d[..., 2:3] / c[2]) * c
            d = d - torch.round(d[..., 1:2] / b[1]) * b
            d = d - torch.round(d[..., 0:1] / a[0]) * a
            candidates = d.unsqueeze(2) + shifts
            nearest = torch.argmin((candidates * candidates).sum(-1), dim=2)
            d = torch.gather(candidates, 2, nearest[:, :, None, None].expand(-1, -1, 1, 3)).squeeze(2)
            whole = whole.index_copy(1, atoms, anchor + d)
            start = end
        return whole

    def internal(self, selected: torch.Tensor) -> torch.Tensor:
        """Internal coordinates (batch, 3n - 6), sqrt(amu) nm, of whole molecules (batch, n, 3), float64."""
        centre = torch.einsum("i,bia->ba", self.masses, selected) / self.masses.sum()
        centred = selected - centre[:, None, :]
        rotations = kabsch(centred, self.reference, self.masses, self.key_table, self.rotation_table)
        aligned = centred @ rotations.transpose(-1, -2)
        displacement = (aligned - self.reference) * self.masses.sqrt()[:, None]
        return displacement.reshape(selected.shape[0], -1) @ self.basis

    def forward(self, positions: torch.Tensor, box: Optional[torch.Tensor] = None) -> torch.Tensor:
        single = positions.dim() == 2
        x = positions.unsqueeze(0) if single else positions
        x = x.to(torch.float64)
        if self.select:
            if x.shape[1] != self.n_system_atoms:
                raise RuntimeError(
                    "this CV reads atoms of a system of "
                    + str(self.n_system_atoms)
                    + " atoms, not "
                    + str(x.shape[1])
                    + ": export it for this system (neuralct export MODEL --system FILE)"
                )
            x = x.index_select(1, self.atom_indices)
        if box is not None:
            x = self.make_whole(x, box.to(torch.float64))
        q = (self.internal(x) - self.position_offset) * self.position_scale
        for layer in self.layers:
            q = layer(q)
        cvs = q.index_select(-1, self.modes).to(positions.dtype)
        return cvs[0] if single else cvs


def collective_variables(model: NeuralCanonicalTransformation, k: int, select: bool = True) -> CollectiveVariables:
    """The ``k`` slowest CVs of ``model`` as an eager :class:`CollectiveVariables` module (float64, eval mode, CPU).

    The module holds its own copy of the flow: ``model`` is left as it was (device, dtype, gradients).
    """
    module = CollectiveVariables(model, k, select).cpu()
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def cv_steepness(model: NeuralCanonicalTransformation, positions: np.ndarray, spans: np.ndarray) -> list[float]:
    """How steep each of the slowest CVs gets on some frames: its largest gradient with respect to one atom, per span.

    A bias force on an atom is the bias's slope times the CV's gradient there; a CV learned from
    frames that barely cover a region can change by its whole training range over a small fraction
    of a bond length there, and the force of even a small bias blows a run up once MD reaches it
    (benchmarks/README.md, B3).

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        A model trained on molecular trajectories.
    positions : np.ndarray, shape=(n_frames, n_atoms, 3)
        Frames of the model's atoms, in its order, nm (e.g. its training frames).
    spans : np.ndarray, shape=(k,)
        The range that measures each of the ``k`` slowest CVs (e.g. 1st to 99th percentile on the training frames).

    Returns
    -------
    list of float, length k
        Per CV, slowest first, the largest ``|dCV/dx_i|`` over frames and atoms divided by its span, in spans per nm:
        the CV changes by its whole span when that atom moves ``1 / steepness`` nm.
    """
    spans = np.asarray(spans, dtype=np.float64)
    module = collective_variables(model, len(spans), select=False)
    steepest = np.zeros(len(spans))
    for start in range(0, len(positions), 1024):
        x = torch.as_tensor(positions[start : start + 1024], dtype=torch.float64).requires_grad_(True)
        values = module(x)
        for j in range(len(spans)):
            (gradient,) = torch.autograd.grad(values[:, j].sum(), x, retain_graph=j < len(spans) - 1)
            steepest[j] = max(steepest[j], float(gradient.norm(dim=-1).max()))
    return (steepest / spans).tolist()
