"""Linear symplectic map ``z = exp(K) S x`` with ``K`` a Hamiltonian matrix."""

from __future__ import annotations

import torch
from torch import nn

from .base import SymplecticFlow

__all__ = ["LinearSymplectic", "symplectic_form"]


def symplectic_form(n: int, dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
    """The matrix ``J = [[0, I], [-I, 0]]`` of shape (2n, 2n)."""
    eye = torch.eye(n, dtype=dtype, device=device)
    zero = torch.zeros(n, n, dtype=dtype, device=device)
    return torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)


class LinearSymplectic(SymplecticFlow):
    """Linear canonical map ``z = exp(K) S x``.

    ``K = [[A, B], [C, -A^T]]`` with ``B``, ``C`` symmetric is a Hamiltonian matrix, so
    ``exp(K)`` (``torch.linalg.matrix_exp``) is exactly symplectic; ``S`` is a fixed
    symplectic matrix (identity, or set by :meth:`initialize`). ``log|det| = 0``.

    Parameters
    ----------
    dim : int
        Configuration dimension n (phase space has 2n entries).
    point : bool
        Restrict to linear point transformations ``Q = W q``, ``P = W^-T p``
        (``B = C = 0``): latent positions then depend on positions only.
    """

    def __init__(self, dim: int, point: bool = False):
        super().__init__(dim)
        self.point = bool(point)
        self.acts_on_configuration = self.point
        self.A = nn.Parameter(torch.zeros(dim, dim))
        if not self.point:
            self.B = nn.Parameter(torch.zeros(dim, dim))
            self.C = nn.Parameter(torch.zeros(dim, dim))
        self.register_buffer("base", torch.eye(2 * dim))

    def hamiltonian_matrix(self) -> torch.Tensor:
        """The generator ``K``, shape (2n, 2n)."""
        A = self.A
        if self.point:
            zero = torch.zeros_like(A)
            B = C = zero
        else:
            B = self.B + self.B.T
            C = self.C + self.C.T
        return torch.cat([torch.cat([A, B], 1), torch.cat([C, -A.T], 1)], 0)

    def _exp(self, sign: float) -> torch.Tensor:
        """``exp(sign K)``, shape (2n, 2n).

        For a point map ``K = diag(A, -A^T)`` is block diagonal, so is its exponential:
        ``diag(W, W^-T)`` with ``W = exp(sign A)``, since ``exp(-sign A) = W^-1``: one n x n
        exponential and one n x n inverse instead of an exponential of 2n x 2n (the
        exponential's backward pass, an exponential of a 2n x 2n block matrix, is the
        expensive part).
        """
        if not self.point:
            return torch.linalg.matrix_exp(sign * self.hamiltonian_matrix())
        upper = torch.linalg.matrix_exp(sign * self.A)
        lower = torch.linalg.inv(upper).T
        zero = torch.zeros_like(upper)
        return torch.cat([torch.cat([upper, zero], 1), torch.cat([zero, lower], 1)], 0)

    def matrix(self) -> torch.Tensor:
        """The symplectic matrix ``M = exp(K) S``, shape (2n, 2n)."""
        return self._exp(1.0) @ self.base

    def inverse_matrix(self) -> torch.Tensor:
        """``M^-1 = S^-1 exp(-K)``, shape (2n, 2n).

        ``S^-1`` is solved for, not taken as ``J^T S^T J``: a base set in float32 is symplectic only
        to its rounding, so a model cast to float64 would otherwise round-trip to 1e-7, not 1e-15.
        """
        return torch.linalg.inv(self.base) @ self._exp(-1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x @ self.matrix().T, x.new_zeros(x.shape[:-1])

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z @ self.inverse_matrix().T, z.new_zeros(z.shape[:-1])

    def _configuration_block(self, matrix: torch.Tensor) -> torch.Tensor:
        if not self.point:
            raise NotImplementedError("a general linear symplectic map mixes positions and momenta; use point=True")
        return matrix[: self.dim, : self.dim]

    def configuration_forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W = self._configuration_block(self.matrix())
        logdet = torch.linalg.slogdet(W)[1]
        return q @ W.T, logdet.expand(q.shape[:-1])

    def configuration_inverse(self, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W_inv = self._configuration_block(self.inverse_matrix())
        logdet = torch.linalg.slogdet(W_inv)[1]
        return Q @ W_inv.T, logdet.expand(Q.shape[:-1])

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Rotate onto the principal axes of the positions, softest first.

        With mass-weighted positions of covariance ``C = V diag(s^2) V^T`` the point
        transformation ``Q = V^T q``, ``P = V^T p`` is orthogonal, hence canonical, and
        for a harmonic system it is the exact normal-mode map (``w_k = 1/s_k``).
        """
        q = x[:, : self.dim].double()
        covariance = torch.cov(q.T).reshape(self.dim, self.dim)
        _, vectors = torch.linalg.eigh(covariance)
        rotation = vectors.flip(-1).T
        zero = torch.zeros_like(rotation)
        base = torch.cat([torch.cat([rotation, zero], 1), torch.cat([zero, rotation], 1)], 0)
        self.base.copy_(base)
        self.A.zero_()
        if not self.point:
            self.B.zero_()
            self.C.zero_()
