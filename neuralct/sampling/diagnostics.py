"""How many independent samples a run is worth: autocorrelation times and effective sample sizes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["integrated_autocorrelation_time", "effective_sample_size", "kish_effective_sample_size", "mean_standard_error", "split_r_hat",
           "observable_efficiency", "curvature_spectrum", "curvature_figures", "CurvatureSum"]

#: Split R-hat above which chains are reported as not converged (Vehtari et al., Bayesian Analysis 16, 667 (2021), use 1.01
#: for final results; 1.1 is the classic threshold of Gelman and Rubin for a failed warm-up).
R_HAT_LIMIT = 1.1


def _autocorrelation(series: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation of ``series`` (n_samples, n_chains), averaged over chains.

    Every chain is centred on the mean of all chains, not its own: a chain stuck in one basin
    then keeps its offset at every lag, and the autocorrelation time shows that it does not mix.
    """
    n = series.shape[0]
    centred = series - series.mean()
    size = 2 ** int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(centred, n=size, axis=0)
    covariance = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=0)[:n].mean(1)
    return covariance / covariance[0] if covariance[0] > 0 else np.ones(n)


def integrated_autocorrelation_time(series: np.ndarray, window_factor: float = 5.0) -> float:
    """Integrated autocorrelation time ``tau = 1 + 2 sum_t rho(t)`` in samples, with Sokal's window.

    The sum stops at the smallest lag ``M >= window_factor * tau(M)`` (Sokal, "Monte Carlo
    methods in statistical mechanics", 1997). The autocorrelation is averaged over chains.

    Parameters
    ----------
    series : np.ndarray, shape=(n_samples,) or (n_samples, n_chains)
        An observable along each chain.

    Returns
    -------
    float
        tau >= 1/n (1 for independent samples); ``nan`` for a constant observable.
    """
    series = np.asarray(series, dtype=np.float64)
    if series.ndim == 1:
        series = series[:, None]
    if series.shape[0] < 2 or not np.all(np.isfinite(series)) or np.all(series == series[0]):
        return float("nan")
    rho = _autocorrelation(series)
    taus = 2.0 * np.cumsum(rho) - 1.0
    lags = np.arange(len(taus))
    window = lags >= window_factor * taus
    last = int(np.argmax(window)) if window.any() else len(taus) - 1
    return float(max(taus[last], 1.0 / series.shape[0]))


def effective_sample_size(series: np.ndarray) -> float:
    """``n_samples * n_chains / tau`` of an observable (see :func:`integrated_autocorrelation_time`)."""
    series = np.asarray(series, dtype=np.float64)
    total = series.size
    return float(total / integrated_autocorrelation_time(series))


def mean_standard_error(series: np.ndarray) -> float:
    """Standard error of the mean of an observable over all chains: ``sqrt(var * tau / (n_samples n_chains))``."""
    series = np.asarray(series, dtype=np.float64)
    tau = integrated_autocorrelation_time(series)
    if not np.isfinite(tau):
        return 0.0
    return float(np.sqrt(series.var() * tau / series.size))


def split_r_hat(series: np.ndarray) -> float:
    """Split potential scale reduction factor ``R-hat`` of an observable over several chains.

    Each chain is cut into halves, and the variance between the halves' means is compared with
    the variance within them (Gelman et al., "Bayesian Data Analysis", 3rd ed., section 11.4):
    ``R-hat = sqrt(((n - 1) / n W + B / n) / W)`` for halves of ``n`` samples, ``W`` the mean
    within-half variance and ``B / n`` the variance of the half means. It is 1 when every chain
    samples the same distribution; chains stuck in different regions, or still drifting from
    their starts, give more.

    Parameters
    ----------
    series : np.ndarray, shape=(n_samples, n_chains)
        The observable along each chain.

    Returns
    -------
    float
        ``nan`` for fewer than 4 samples, non-finite values or no variance within the halves.
    """
    series = np.asarray(series, dtype=np.float64)
    half = series.shape[0] // 2
    if half < 2 or not np.all(np.isfinite(series)):
        return float("nan")
    halves = np.concatenate([series[:half], series[-half:]], axis=1)
    within = halves.var(axis=0, ddof=1).mean()
    between_over_n = halves.mean(axis=0).var(ddof=1)
    if not within > 0:
        return float("nan")
    return float(np.sqrt(((half - 1) / half * within + between_over_n) / within))


def kish_effective_sample_size(log_weights: np.ndarray) -> float:
    """Kish's ``(sum w)^2 / sum w^2`` of importance weights given as logarithms (stable to overflow).

    Parameters
    ----------
    log_weights : np.ndarray, shape=(n,)
        ``ln w``; non-finite entries count as zero weight.
    """
    log_weights = np.asarray(log_weights, dtype=np.float64)
    log_weights = log_weights[np.isfinite(log_weights)]
    if log_weights.size == 0:
        return 0.0
    w = np.exp(log_weights - log_weights.max())
    return float(w.sum() ** 2 / (w**2).sum())


def observable_efficiency(series: np.ndarray, evaluations: int, cpu_seconds: float) -> dict[str, float]:
    """What a run's samples of one observable are worth, per unit of cost.

    Parameters
    ----------
    series : np.ndarray, shape=(n_samples, n_chains)
        The observable along each chain.
    evaluations : int
        Energy-and-gradient evaluations spent producing ``series``.
    cpu_seconds : float
        CPU time spent producing ``series``.

    Returns
    -------
    dict
        ``mean``, ``standard_error``, ``iat`` (in samples), ``ess``, ``ess_per_evaluation``,
        ``ess_per_cpu_second``, ``r_hat`` (:func:`split_r_hat`; ``nan`` where undefined, e.g. a
        constant observable).
    """
    tau = integrated_autocorrelation_time(series)
    ess = float(np.size(series)) / tau if math.isfinite(tau) else float("nan")
    return {
        "mean": float(np.mean(series)),
        "standard_error": mean_standard_error(series),
        "iat": tau,
        "ess": ess,
        "ess_per_evaluation": ess / evaluations if evaluations else float("nan"),
        "ess_per_cpu_second": ess / cpu_seconds if cpu_seconds > 0 else float("nan"),
        "r_hat": split_r_hat(series) if np.ndim(series) == 2 else float("nan"),
    }


def curvature_spectrum(gradients: np.ndarray) -> np.ndarray:
    """Eigenvalues of the mean curvature ``E[grad U grad U^T]`` from gradients at Boltzmann samples.

    For samples of ``exp(-U)``, integration by parts gives ``E[grad U grad U^T] = E[Hessian of
    U]``: the precision matrix of a Gaussian, the identity in the latent space of an exact
    flow. Eigenvalues well above 1 in a latent space mark directions that are locally stiffer
    than the flow's unit spread; they bound the stable HMC step. The ratio of the largest to
    the smallest is the condition number a unit-mass HMC works against.

    Parameters
    ----------
    gradients : np.ndarray, shape=(n_samples, n)
        ``grad U`` in kT per coordinate unit at samples of ``exp(-U)``.

    Returns
    -------
    np.ndarray, shape=(n,)
        Eigenvalues, ascending, in kT per squared coordinate unit.
    """
    g = np.asarray(gradients, dtype=np.float64)
    if g.ndim != 2 or len(g) < 2 or not np.isfinite(g).all():
        raise ValueError("need finite gradients of shape (n_samples >= 2, n)")
    return np.linalg.eigvalsh(g.T @ g / len(g))


def curvature_figures(spectrum: np.ndarray) -> dict[str, Any]:
    """Eigenvalues of a mean curvature, its condition number and the count of eigenvalues above 4 (for summaries)."""
    spectrum = np.sort(np.asarray(spectrum, dtype=np.float64))
    return {
        "eigenvalues": spectrum.tolist(),
        "condition_number": float(spectrum[-1] / spectrum[0]) if spectrum[0] > 0 else float("inf"),
        "above_4": int((spectrum > 4).sum()),
    }


@dataclass
class CurvatureSum:
    """Running sum of ``grad U grad U^T`` over the finite states of a batch of chains.

    Attributes
    ----------
    total : torch.Tensor or None, shape=(n, n)
        The sum; None before the first state.
    count : int
        States summed.
    """

    total: torch.Tensor | None = None
    count: int = 0

    def add(self, energy: torch.Tensor, gradient: torch.Tensor) -> None:
        """Add the chains (energies (chains,), gradients (chains, n)) whose energy is finite."""
        finite = torch.isfinite(energy)
        outer = gradient[finite].T @ gradient[finite]
        self.total = outer if self.total is None else self.total + outer
        self.count += int(finite.sum())

    def mean(self) -> torch.Tensor:
        """``E[grad U grad U^T]``, shape (n, n)."""
        if self.total is None or self.count == 0:
            raise ValueError("no finite state was added")
        return self.total / self.count

