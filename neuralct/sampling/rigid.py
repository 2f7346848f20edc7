"""The volume element of the rigid-body frame: Boltzmann density on internal coordinates y.

Derivation. Write every Cartesian configuration as ``x_i = t + R a_i(y)``: a translation t,
a rotation R and the aligned atoms ``a_i = c_i + (B y)_i / sqrt(m_i)`` of
:class:`~neuralct.data.RigidBodyFrame` (``c`` the centred reference, ``B`` the orthonormal
basis of the 3N - 6 mass-weighted directions orthogonal to the rigid-body ones at ``c``).
In mass-weighted coordinates ``sqrt(m_i) x_i`` the Jacobian of ``(t, w, y) -> x`` (``w`` the
left-invariant angle of R, Haar measure ``dR``) has the columns

- translation k: ``sqrt(m_i) e_k`` (the same at every y);
- rotation k: ``sqrt(m_i) R (e_k x a_i)``; ``R`` is orthogonal, drop it;
- internal j: column j of ``B`` (orthonormal, orthogonal to the rigid-body span at c).

Projected on the orthonormal basis (rigid-body span at c, then B) the matrix is block
triangular with the identity on the B block, so ``|det|`` is the determinant of the 6 x 6
block of rigid-body columns projected on the rigid-body span at c. Translations project on
themselves, rotation columns have no translation part (``sum_i m_i e_k x a_i = 0``: a is
centred), and their projection on the rotation directions ``sqrt(m_i) (e_j x c_i)`` is

    sum_i m_i (e_j x c_i) . (e_k x a_i) = sum_i m_i [delta_jk (c_i . a_i) - a_ij c_ik] = A_jk(y),

    A(y) = sum_i m_i [(c_i . a_i) I_3 - a_i c_i^T].

Up to constants (the Gram matrices of the rigid-body directions at c), ``dx = |det A(y)| dt dR
dy``, so integrating out t and R the Boltzmann density on y is ``exp(-beta E(x(y))) |det A(y)|``.

Which y belong to the frame: a_i satisfies the Eckart condition ``sum_i m_i c_i x a_i = 0``
(B is orthogonal to the rotations at c), i.e. ``H = sum_i m_i a_i c_i^T`` is symmetric and
``A = tr(H) I - H``. The Kabsch fit maps a frame to R = I exactly when ``tr(R H)`` is largest
at R = I; for symmetric H with eigenvalues h1 >= h2 >= h3 that holds iff ``h2 + h3 >= 0``,
the smallest eigenvalue of A. So the density of the aligned frames lives on ``A(y)``
positive definite and vanishes on its boundary, where ``det A = 0``: outside, a frame is
another orientation's copy (zero density, here ``ln J = -inf``).
"""

from __future__ import annotations

import torch

from ..data import RigidBodyFrame

__all__ = ["eckart_matrix", "rigid_body_log_jacobian"]


def eckart_matrix(frame: RigidBodyFrame, y: torch.Tensor) -> torch.Tensor:
    """``A(y) = sum_i m_i [(c_i . a_i) I_3 - a_i c_i^T]`` of internal coordinates.

    Parameters
    ----------
    frame : RigidBodyFrame
        The frame that defines y (reference c, masses m, basis B).
    y : torch.Tensor, shape=(batch, 3 n_atoms - 6)
        Internal coordinates, sqrt(amu) nm.

    Returns
    -------
    torch.Tensor, shape=(batch, 3, 3)
        A in amu nm^2 (differentiable in y).
    """
    aligned = frame.from_internal(y)
    reference = frame.reference.to(y)
    masses = frame.masses.to(y)
    overlap = torch.einsum("i,bia,ia->b", masses, aligned, reference)
    outer = torch.einsum("i,bia,ic->bac", masses, aligned, reference)
    return overlap[:, None, None] * torch.eye(3, dtype=y.dtype, device=y.device) - outer


def rigid_body_log_jacobian(frame: RigidBodyFrame, y: torch.Tensor) -> torch.Tensor:
    """``ln J(y) = ln det A(y)`` where A is positive definite, ``-inf`` outside the frame's domain.

    Parameters
    ----------
    frame : RigidBodyFrame
        The frame that defines y.
    y : torch.Tensor, shape=(batch, 3 n_atoms - 6)
        Internal coordinates, sqrt(amu) nm.

    Returns
    -------
    torch.Tensor, shape=(batch,)
        ``ln det A`` with A in amu nm^2 (a constant offset of the log-density), differentiable
        in y where finite.
    """
    A = eckart_matrix(frame, y)
    inside = torch.linalg.eigvalsh(A.detach()).min(-1).values > 0
    # Rows outside the domain get the identity so their (unused) gradient stays finite.
    safe = torch.where(inside[:, None, None], A, torch.eye(3, dtype=y.dtype, device=y.device).expand_as(A))
    log_det = 2.0 * torch.linalg.cholesky(safe).diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return torch.where(inside, log_det, torch.full_like(log_det, -torch.inf))
