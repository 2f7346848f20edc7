"""Toy Hamiltonian systems with exact answers, for training and testing."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import torch

from ..errors import NeuralCTError

__all__ = ["HarmonicChain", "CurvedDoubleWell", "TOY_SYSTEMS", "make_toy_system"]


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


class CurvedDoubleWell:
    """A particle in a curved, tilted double well in two dimensions, at kT = 1.

    ``U(x, y) = barrier (x^2 - 1)^2 + tilt x + stiffness/2 (y - curvature x^2)^2``: two
    basins near ``x = -1`` and ``x = +1`` (the tilt favours ``x < 0``) joined along the
    parabola ``y = curvature x^2``, so no linear map separates the modes. Because ``y`` given
    ``x`` is Gaussian with mean ``curvature x^2`` and variance ``1/stiffness``, the marginal of
    ``x`` is ``exp(-barrier (x^2 - 1)^2 - tilt x)`` up to normalisation: one-dimensional
    quadrature gives exact populations, moments and free energy.

    Parameters
    ----------
    barrier : float
        Height of the barrier at ``x = 0`` above the untilted minima, kT.
    tilt : float
        Linear tilt along ``x``, kT per unit length.
    stiffness : float
        Curvature of the valley across the parabola, kT per unit length squared.
    curvature : float
        Bend of the valley, ``y = curvature x^2``.
    """

    kT = 1.0
    #: Quadrature grid along x: the density is below exp(-100) outside it for barrier >= 1.
    _GRID = np.linspace(-4.0, 4.0, 200001)

    def __init__(self, barrier: float = 3.0, tilt: float = 0.5, stiffness: float = 10.0, curvature: float = 1.0):
        for name, value in (("barrier", barrier), ("stiffness", stiffness)):
            if not value > 0:
                raise NeuralCTError(f"curved double well: {name} must be positive, got {value}")
        if not (math.isfinite(tilt) and math.isfinite(curvature)):
            raise NeuralCTError("curved double well: tilt and curvature must be finite numbers")
        self.barrier = float(barrier)
        self.tilt = float(tilt)
        self.stiffness = float(stiffness)
        self.curvature = float(curvature)
        self.masses = np.ones(2)

    @property
    def dim(self) -> int:
        """Configuration dimension, 2."""
        return 2

    def potential(self, q: torch.Tensor) -> torch.Tensor:
        """``U(q)`` in kT for positions of shape (batch, 2); returns (batch,)."""
        x, y = q[..., 0], q[..., 1]
        return self.barrier * (x**2 - 1) ** 2 + self.tilt * x + 0.5 * self.stiffness * (y - self.curvature * x**2) ** 2

    def energy(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``H(q, p)`` in kT with unit masses, shape (batch,)."""
        return 0.5 * (p**2).sum(-1) + self.potential(q)

    def _x_density(self) -> np.ndarray:
        """Unnormalised marginal density of ``x`` on :attr:`_GRID`."""
        x = self._GRID
        exponent = -self.barrier * (x**2 - 1) ** 2 - self.tilt * x
        return np.exp(exponent - exponent.max())

    def x_cdf(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact cumulative distribution of ``x`` on a fine grid: ``(x, F(x))`` (trapezoidal quadrature)."""
        density = self._x_density()
        steps = 0.5 * (density[1:] + density[:-1]) * np.diff(self._GRID)
        cdf = np.concatenate([[0.0], np.cumsum(steps)])
        return self._GRID, cdf / cdf[-1]

    def population_positive_x(self) -> float:
        """Exact Boltzmann probability of the basin ``x > 0``."""
        x, cdf = self.x_cdf()
        return float(1.0 - np.interp(0.0, x, cdf))

    def moments(self) -> dict[str, float]:
        """Exact means and variances of ``x`` and ``y`` (quadrature; ``y`` from its Gaussian conditional)."""
        x = self._GRID
        weights = self._x_density()
        weights = weights / weights.sum()
        mean_x = float(weights @ x)
        mean_x2 = float(weights @ x**2)
        mean_x4 = float(weights @ x**4)
        mean_y = self.curvature * mean_x2
        var_y = self.curvature**2 * (mean_x4 - mean_x2**2) + 1.0 / self.stiffness
        return {"mean_x": mean_x, "var_x": mean_x2 - mean_x**2, "mean_y": mean_y, "var_y": var_y}

    def free_energy(self) -> float:
        """Exact ``-ln Z`` in kT of phase space (unit masses), ``Z = int exp(-H) dq dp``."""
        x = self._GRID
        exponent = -self.barrier * (x**2 - 1) ** 2 - self.tilt * x
        top = exponent.max()
        z_x = np.trapezoid(np.exp(exponent - top), x) * math.exp(top)
        z_y = math.sqrt(2 * math.pi / self.stiffness)
        z_p = 2 * math.pi
        return -math.log(z_x * z_y * z_p)

    def sample(self, n_samples: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact Boltzmann samples ``(q, p)``, each (n_samples, 2): ``x`` by inverse CDF, ``y | x`` Gaussian."""
        rng = np.random.default_rng(seed)
        grid, cdf = self.x_cdf()
        x = np.interp(rng.uniform(size=n_samples), cdf, grid)
        y = self.curvature * x**2 + rng.standard_normal(n_samples) / math.sqrt(self.stiffness)
        p = rng.standard_normal((n_samples, 2))
        return np.stack([x, y], axis=1), p

    def describe(self) -> dict[str, Any]:
        """Parameters as plain data (for summaries and model metadata)."""
        return {
            "name": "curved-double-well",
            "barrier": self.barrier,
            "tilt": self.tilt,
            "stiffness": self.stiffness,
            "curvature": self.curvature,
        }


#: Toy systems by name, with the parameters each accepts.
TOY_SYSTEMS = {
    "harmonic-chain": (HarmonicChain, ("n", "kappa", "masses")),
    "curved-double-well": (CurvedDoubleWell, ("barrier", "tilt", "stiffness", "curvature")),
}


def make_toy_system(name: str, parameters: dict[str, Any] | None = None) -> HarmonicChain | CurvedDoubleWell:
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
    required = [
        key
        for key, parameter in inspect.signature(cls).parameters.items()
        if parameter.default is inspect.Parameter.empty
    ]
    missing = [key for key in required if key not in parameters]
    if missing:
        raise NeuralCTError(f"{name}: parameter(s) {', '.join(missing)} must be given")
    for key, value in parameters.items():
        if not all(_is_finite_number(item) for item in (value if isinstance(value, list) else [value])):
            raise NeuralCTError(
                f"{name}: {key} must be "
                f"{'a list of finite numbers' if isinstance(value, list) else 'a finite number'}, got {value!r}"
            )
    return cls(**parameters)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
