"""Toy Hamiltonian systems with exact answers, for training and testing."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .errors import NeuralCTError

__all__ = ["HarmonicChain", "TOY_SYSTEMS", "make_toy_system"]


class HarmonicChain:
    """n atoms on a line joined by springs, both ends fixed, at kT = 1.

    ``H(q, p) = sum_i p_i^2 / (2 m_i) + kappa/2 sum_{i=0}^{n} (q_{i+1} - q_i)^2``
    with ``q_0 = q_{n+1} = 0``: the discrete Laplacian with Dirichlet ends. Normal modes
    are the eigenvectors of ``M^-1/2 K M^-1/2``; for equal masses the frequencies are
    ``w_k = 2 sqrt(kappa/m) sin(k pi / (2 (n + 1)))``, k = 1..n.

    Parameters
    ----------
    n : int
        Number of moving atoms.
    kappa : float
        Spring constant (energy per length squared, in kT).
    masses : sequence of float, optional
        Masses of the n atoms (default all 1).
    """

    kT = 1.0

    def __init__(self, n: int, kappa: float = 1.0, masses=None):
        if int(n) != n or n < 2:
            raise NeuralCTError(f"harmonic chain: n must be an integer >= 2, got {n}")
        if not kappa > 0:
            raise NeuralCTError(f"harmonic chain: kappa must be positive, got {kappa}")
        self.n = int(n)
        self.kappa = float(kappa)
        masses = np.ones(self.n) if masses is None else np.asarray(masses, dtype=float).reshape(-1)
        if masses.shape != (self.n,) or not np.all(masses > 0):
            raise NeuralCTError(f"harmonic chain: masses must be {self.n} positive numbers")
        self.masses = masses

    @property
    def dim(self) -> int:
        """Configuration dimension n."""
        return self.n

    def stiffness_matrix(self) -> np.ndarray:
        """Hessian of the potential, ``kappa`` times the Dirichlet Laplacian, shape (n, n)."""
        K = 2.0 * np.eye(self.n) - np.eye(self.n, k=1) - np.eye(self.n, k=-1)
        return self.kappa * K

    def _normal_modes(self) -> tuple[np.ndarray, np.ndarray]:
        inv_sqrt_m = 1.0 / np.sqrt(self.masses)
        dynamical = inv_sqrt_m[:, None] * self.stiffness_matrix() * inv_sqrt_m[None, :]
        return np.linalg.eigh(dynamical)

    def frequencies(self) -> np.ndarray:
        """Exact normal-mode frequencies, ascending, shape (n,)."""
        return np.sqrt(self._normal_modes()[0])

    def free_energy(self) -> float:
        """Exact ``-ln Z`` (kT units) with ``Z = int exp(-H) dq dp`` = ``sum_k ln(w_k / 2 pi)``."""
        return float(np.sum(np.log(self.frequencies() / (2 * math.pi))))

    def potential(self, q: torch.Tensor) -> torch.Tensor:
        """``U(q)`` in kT for positions of shape (batch, n); returns (batch,)."""
        padded = torch.nn.functional.pad(q, (1, 1))
        return 0.5 * self.kappa * (padded[..., 1:] - padded[..., :-1]).pow(2).sum(-1)

    def energy(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``H(q, p)`` in kT, shape (batch,)."""
        masses = torch.as_tensor(self.masses, dtype=p.dtype, device=p.device)
        return 0.5 * (p**2 / masses).sum(-1) + self.potential(q)

    def sample(self, n_samples: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact Boltzmann samples ``(q, p)``, each shape (n_samples, n).

        ``q = M^-1/2 V diag(1/w) xi`` with ``xi`` standard normal; ``p ~ N(0, M)``.
        """
        rng = np.random.default_rng(seed)
        eigenvalues, vectors = self._normal_modes()
        xi = rng.standard_normal((n_samples, self.n))
        q = (xi / np.sqrt(eigenvalues)) @ vectors.T / np.sqrt(self.masses)
        p = rng.standard_normal((n_samples, self.n)) * np.sqrt(self.masses)
        return q, p

    def describe(self) -> dict[str, Any]:
        """Parameters as plain data (for summaries and model metadata)."""
        return {"name": "harmonic-chain", "n": self.n, "kappa": self.kappa, "masses": self.masses.tolist()}


#: Toy systems by name, with the parameters each accepts.
TOY_SYSTEMS = {"harmonic-chain": (HarmonicChain, ("n", "kappa", "masses"))}


def make_toy_system(name: str, parameters: dict[str, Any] | None = None) -> HarmonicChain:
    """Build a toy system by name, e.g. ``make_toy_system("harmonic-chain", {"n": 32})``.

    Raises
    ------
    NeuralCTError
        For an unknown name or parameter.
    """
    if name not in TOY_SYSTEMS:
        raise NeuralCTError(f"unknown toy system {name!r}; available: {', '.join(TOY_SYSTEMS)}")
    cls, accepted = TOY_SYSTEMS[name]
    parameters = dict(parameters or {})
    unknown = sorted(set(parameters) - set(accepted))
    if unknown:
        raise NeuralCTError(f"{name}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    return cls(**parameters)
