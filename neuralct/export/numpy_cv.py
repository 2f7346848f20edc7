"""The learned CVs and their exact gradients in float64 NumPy, for a bias force evaluated every few MD steps.

An MD engine asks for one configuration at a time, where a torch graph costs per operation
(about 250 small operations forward and backward, 2-3 ms on one CPU core), not per number.
:class:`NumpyCollectiveVariables` computes the same function as
:class:`~neuralct.export.cv.CollectiveVariables` from the same buffers and weights, with a
hand-written reverse pass that carries the cotangents of all requested CVs at once (one
row per CV).

The one step that is not a plain chain rule is the Kabsch rotation ``R(x)`` (the quaternion
method of :func:`neuralct.data.frame.kabsch`; that module says why it exists twice). ``R`` maximises
``tr(R H)`` with ``H = sum_i m_i x_i r_i^T`` (``x`` centred, ``r`` the centred reference), so
``S = R H`` is symmetric. Perturbing ``H`` by ``dH`` rotates ``R`` by ``dR = [w]_x R`` with
``(tr(S) I - S) w = -vex(R dH - (R dH)^T)``; a function ``F`` of the aligned atoms ``a_i = R x_i``
with gradient ``G_i`` then changes by ``tau . w``, ``tau = sum_i a_i x G_i`` (its torque), which
gives the extra term ``m_i R^T (r_i x lambda)``, ``lambda = (tr(S) I - S)^{-1} tau``, in the
gradient with respect to ``x_i``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from ..data.periodic import SpanningTree, make_whole
from .cv import CollectiveVariables, _Couplings, _LinearPoint

__all__ = ["NumpyCollectiveVariables"]


class _Linear:
    """``x -> x @ matrix.T`` (a linear point layer): the gradient is ``cotangent @ matrix``."""

    def __init__(self, layer: _LinearPoint):
        self.matrix = layer.weight.detach().numpy().astype(np.float64)

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, None]:
        return self.matrix @ q, None

    def backward(self, cotangent: np.ndarray, saved: None) -> np.ndarray:
        return cotangent @ self.matrix


class _Coupling:
    """One affine coupling ``x_b -> x_b exp(s(x_a)) + t(x_a)`` with an MLP conditioner of SiLU layers, on blocks."""

    def __init__(self, coupling: nn.Module):
        self.conditioning = coupling.conditioning.numpy().copy()
        self.transformed = coupling.transformed.numpy().copy()
        self.scale_bound = float(coupling.scale_bound)
        linears = [m for m in coupling.net if isinstance(m, nn.Linear)]
        self.weights = [m.weight.detach().numpy().astype(np.float64) for m in linears]
        self.biases = [
            np.zeros(m.out_features) if m.bias is None else m.bias.detach().numpy().astype(np.float64) for m in linears
        ]
        self.n_transformed = len(self.transformed)

    def forward(self, x_a: np.ndarray, x_b: np.ndarray) -> tuple[np.ndarray, tuple]:
        """The new ``x_b`` (shape (n_b,)) from the blocks, and what :meth:`backward` needs."""
        hidden, slopes = x_a, []
        for weight, bias in zip(self.weights[:-1], self.biases[:-1]):
            pre = weight @ hidden + bias
            gate = expit(pre)
            hidden = pre * gate
            # d silu(a) / da = sigma(a) (1 + a - silu(a))
            slopes.append(gate * (1.0 + pre - hidden))
        out = self.weights[-1] @ hidden + self.biases[-1]
        squashed = np.tanh(out[: self.n_transformed] / self.scale_bound)
        scale = np.exp(self.scale_bound * squashed)
        scaled = x_b * scale
        return scaled + out[self.n_transformed :], (scaled * (1.0 - squashed * squashed), scale, slopes)

    def backward(self, g_a: np.ndarray, g_b: np.ndarray, saved: tuple) -> tuple[np.ndarray, np.ndarray]:
        """Cotangents (k, n_a) and (k, n_b) of the input blocks from those of the output blocks."""
        log_scale_slope, scale, slopes = saved
        g_hidden = np.concatenate([g_b * log_scale_slope, g_b], axis=1) @ self.weights[-1]
        for weight, slope in zip(reversed(self.weights[:-1]), reversed(slopes)):
            g_hidden = (g_hidden * slope) @ weight
        return g_a + g_hidden, g_b * scale


class _CouplingStack:
    """``F(q) = loc + scale * G((q - loc) / scale)`` of a coupling stack.

    Consecutive couplings whose splits are complementary pass their blocks on directly;
    coordinates are gathered into blocks and merged back only where the split changes.
    """

    def __init__(self, layer: _Couplings):
        self.loc = layer.loc.numpy().astype(np.float64)
        self.scale = layer.scale.numpy().astype(np.float64)
        self.couplings = [_Coupling(c) for c in layer.couplings]
        self.swaps = [False] + [
            np.array_equal(after.conditioning, before.transformed)
            and np.array_equal(after.transformed, before.conditioning)
            for before, after in zip(self.couplings, self.couplings[1:])
        ]

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, list]:
        u = (q - self.loc) / self.scale
        saved: list = []
        blocks: tuple[np.ndarray, np.ndarray] | None = None
        previous: _Coupling | None = None
        for coupling, swap in zip(self.couplings, self.swaps):
            if swap:
                x_a, x_b = blocks[1], blocks[0]
            else:
                if previous is not None:
                    u = _merge(previous, *blocks)
                x_a, x_b = u[coupling.conditioning], u[coupling.transformed]
            new_b, state = coupling.forward(x_a, x_b)
            blocks, previous = (x_a, new_b), coupling
            saved.append(state)
        return self.loc + self.scale * _merge(previous, *blocks), saved

    def backward(self, cotangent: np.ndarray, saved: list) -> np.ndarray:
        g = cotangent * self.scale
        last = self.couplings[-1]
        g_blocks = (g[:, last.conditioning], g[:, last.transformed])
        for index in range(len(self.couplings) - 1, -1, -1):
            coupling = self.couplings[index]
            g_blocks = coupling.backward(*g_blocks, saved[index])
            if index == 0:
                break
            if self.swaps[index]:
                g_blocks = (g_blocks[1], g_blocks[0])
            else:
                g = _merge_rows(coupling, *g_blocks)
                before = self.couplings[index - 1]
                g_blocks = (g[:, before.conditioning], g[:, before.transformed])
        return _merge_rows(self.couplings[0], *g_blocks) / self.scale


def _merge(coupling: _Coupling, x_a: np.ndarray, x_b: np.ndarray) -> np.ndarray:
    u = np.empty(len(x_a) + len(x_b))
    u[coupling.conditioning], u[coupling.transformed] = x_a, x_b
    return u


def _merge_rows(coupling: _Coupling, g_a: np.ndarray, g_b: np.ndarray) -> np.ndarray:
    g = np.empty((len(g_a), g_a.shape[1] + g_b.shape[1]))
    g[:, coupling.conditioning], g[:, coupling.transformed] = g_a, g_b
    return g


def _cross_tables() -> tuple[np.ndarray, np.ndarray]:
    """Constant maps for cross products as matrix products.

    ``TORQUE`` (9, 3): ``M.reshape(9) @ TORQUE = vex(M - M^T)``, so that for ``M = sum_i a_i g_i^T``
    it is ``sum_i a_i x g_i``. ``SKEW`` (3, 9): ``r @ (v @ SKEW).reshape(3, 3) = r x v`` for rows ``r``.
    """
    levi_civita = np.zeros((3, 3, 3))
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        levi_civita[i, j, k], levi_civita[i, k, j] = 1.0, -1.0
    # (a x g)_k = eps_ijk a_i g_j; (r x v)_j = eps_jab r_a v_b = r_a S_aj with S_aj = eps_jab v_b.
    return levi_civita.reshape(9, 3), levi_civita.transpose(2, 1, 0).reshape(3, 9)


TORQUE, SKEW = _cross_tables()
_EYE3 = np.eye(3)
_NEXT, _AFTER = [1, 2, 0], [2, 0, 1]


def _inverse_3x3(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 3 x 3 matrix by cofactors (``numpy.linalg.inv`` costs more in overhead than in arithmetic here)."""
    a, b = matrix[_NEXT], matrix[_AFTER]
    cofactors = a[:, _NEXT] * b[:, _AFTER] - a[:, _AFTER] * b[:, _NEXT]
    return cofactors.T / (matrix[0] @ cofactors[0])


def _float64_copy(tensor: torch.Tensor) -> np.ndarray:
    """A float64 NumPy copy of a buffer of the torch module."""
    return tensor.detach().numpy().astype(np.float64).copy()


class NumpyCollectiveVariables:
    """Values and gradients of the CVs of a :class:`CollectiveVariables` module for one configuration.

    Parameters
    ----------
    cvs : CollectiveVariables
        Built with ``select=False`` (inputs are the model's atoms, in its order).

    Notes
    -----
    Agrees with the torch module and its autograd gradient to float64 rounding (tested).
    """

    def __init__(self, cvs: CollectiveVariables):
        self.masses = _float64_copy(cvs.masses)
        self.mass_fraction = self.masses / self.masses.sum()
        self.mass_column = self.masses[:, None]
        self.sqrt_masses = np.sqrt(self.masses)[:, None]
        self.reference = _float64_copy(cvs.reference)
        self.basis = _float64_copy(cvs.basis)
        self.key_table = _float64_copy(cvs.key_table)
        self.rotation_table = _float64_copy(cvs.rotation_table)
        self.position_offset = _float64_copy(cvs.position_offset)
        self.position_scale = _float64_copy(cvs.position_scale)
        self.modes = cvs.modes.numpy().copy()
        self.tree = SpanningTree(cvs.tree_parents.numpy())
        self._identity = np.eye(len(self.position_offset))
        self.layers = [
            _Linear(layer) if isinstance(layer, _LinearPoint) else _CouplingStack(layer) for layer in cvs.layers
        ]

    def __call__(
        self, positions: np.ndarray, indices: Sequence[int], box: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """CVs ``indices`` (0 = slowest) and their gradients at one configuration.

        Parameters
        ----------
        positions : numpy.ndarray, shape=(n_atoms, 3)
            The model's atoms, nm.
        indices : sequence of int
            Which CVs.
        box : numpy.ndarray, shape=(3, 3), optional
            Periodic box vectors (rows), nm: the molecule is made whole first.

        Returns
        -------
        values : numpy.ndarray, shape=(len(indices),)
        gradients : numpy.ndarray, shape=(len(indices), n_atoms, 3)
            Per nm.
        """
        x = np.asarray(positions, dtype=np.float64)
        if box is not None:
            x = make_whole(x, np.asarray(box, dtype=np.float64), self.tree)
        centred = x - self.mass_fraction @ x
        correlation = (centred * self.mass_column).T @ self.reference
        _, vectors = np.linalg.eigh((correlation.reshape(9) @ self.key_table).reshape(4, 4))
        quaternion = vectors[:, 3]
        rotation = ((quaternion[:, None] * quaternion).reshape(16) @ self.rotation_table).reshape(3, 3)
        aligned = centred @ rotation.T
        q = (
            ((aligned - self.reference) * self.sqrt_masses).reshape(-1) @ self.basis - self.position_offset
        ) * self.position_scale
        saved = []
        for layer in self.layers:
            q, state = layer.forward(q)
            saved.append(state)
        selected = self.modes[list(indices)]
        cotangent = self._identity[selected]
        for layer, state in zip(reversed(self.layers), reversed(saved)):
            cotangent = layer.backward(cotangent, state)
        g_aligned = ((cotangent * self.position_scale) @ self.basis.T).reshape(len(selected), -1, 3) * self.sqrt_masses
        symmetric = rotation @ correlation
        torque = (aligned.T @ g_aligned).reshape(-1, 9) @ TORQUE
        lam = torque @ _inverse_3x3(symmetric.trace() * _EYE3 - symmetric)
        g_centred = (g_aligned + self.mass_column * (self.reference @ (lam @ SKEW).reshape(-1, 3, 3))) @ rotation
        gradients = g_centred - self.mass_fraction[:, None] * g_centred.sum(axis=1, keepdims=True)
        return q[selected], gradients
