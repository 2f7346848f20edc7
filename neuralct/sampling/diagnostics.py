"""How many independent samples a run is worth: autocorrelation times and effective sample sizes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch

__all__ = [
    "integrated_autocorrelation_time",
    "effective_sample_size",
    "kish_effective_sample_size",
    "KISH_CHUNK",
    "flow_importance_weights",
    "mean_standard_error",
    "batch_means_standard_error",
    "split_r_hat",
    "between_chain_standard_error",
    "why_undefined",
    "sampling_efficiency",
    "observable_efficiency",
    "basin_population",
    "FLOW_REACH_FRACTION",
    "mark_unreached",
    "TRAINING_DATA_DISAGREEMENT",
    "trajectory_basin_fractions",
    "mark_against_training_data",
    "curvature_spectrum",
    "curvature_figures",
    "CurvatureSum",
]

#: Split R-hat above which chains are reported as not converged (Vehtari et al., Bayesian Analysis 16, 667 (2021),
#: use 1.01 for final results; 1.1 is the classic threshold of Gelman and Rubin for a failed warm-up). 1.05: at 1.1,
#: 16 latent chains of a weak alanine dipeptide model that all drifted out of the alpha basin alike (R-hat 1.097) gave
#: P(alphaR) 0.105 +- 0.023 against 0.197 from MD, unflagged; chains that mix (latent HMC through a trained flow) stay
#: at 1.01-1.03 there (benchmarks/notes/latent-hmc.md).
R_HAT_LIMIT = 1.05

#: Separate stays in a basin (or out of it) below which its population is flagged as a rough estimate: with rare,
#: long stays its relative error is about ``sqrt(2 / stays)`` (:func:`basin_population`), over 40% below 10.
FEW_STAYS = 10

#: Fraction of the flow's draws in a basin that no chain entered (or outside one that no chain left) from which the
#: chains are reported stuck (:func:`mark_unreached`): the flow learned from trajectories that went there, so that
#: side of the basin holds real weight. The same share of the training trajectories' frames does the same
#: (:func:`mark_against_training_data`).
FLOW_REACH_FRACTION = 0.05

#: Standard errors apart from which a basin's population in the chains and in the model's training trajectories
#: (unbiased MD of the same density) are reported as disagreeing (:func:`mark_against_training_data`). On tri-alanine
#: both HMCs put ALA3's psi in (-120, 50) deg 0.999 +- 0.001 of the time, all chains alike, where 9 ns of MD put it
#: 0.928 +- 0.022: 3.2 standard errors (benchmarks/README.md, B4).
TRAINING_DATA_DISAGREEMENT = 3.0


def why_undefined(series: np.ndarray, min_samples: int) -> str | None:
    """Why a statistic of an observable that needs ``min_samples`` per chain cannot be computed, or None if it can.

    Parameters
    ----------
    series : np.ndarray, shape=(n_samples,) or (n_samples, n_chains)
    min_samples : int

    Returns
    -------
    str or None
        A reason a reader of summary.json understands: too few samples, non-finite values, or the
        same value in every sample of every chain (no fluctuation to measure).
    """
    series = np.asarray(series, dtype=np.float64)
    if series.shape[0] < min_samples:
        return f"fewer than {min_samples} samples per chain"
    if not np.all(np.isfinite(series)):
        return "not finite in every sample"
    if np.all(series == series.flat[0]):
        return "the same value in every sample of every chain: nothing fluctuates"
    return None


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
        tau >= 1/n (1 for independent samples); ``nan`` where :func:`why_undefined` gives a
        reason (e.g. a constant observable). Chains that each hold a different constant value
        do not mix: their tau is of the run's length.
    """
    series = np.asarray(series, dtype=np.float64)
    if series.ndim == 1:
        series = series[:, None]
    if why_undefined(series, 2) is not None:
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


#: Batches over all chains of :func:`batch_means_standard_error` (10 to 30 is the usual choice: enough for the spread
#: of their means to be known to about 15%, few enough for each to span the slow parts of the autocorrelation).
BATCHES = 20


def batch_means_standard_error(series: np.ndarray) -> float:
    """Standard error of the mean from the spread of about :data:`BATCHES` means of contiguous batches.

    Each chain is cut into ``max(1, ceil(BATCHES / n_chains))`` batches of equal length (its last
    samples that do not fill one are left out); the error is ``std(batch means) / sqrt(n_batches)``.
    A batch much longer than the autocorrelation time makes its mean independent of the others', so
    this error holds where the autocorrelation has a tail that a window cut short.

    Parameters
    ----------
    series : np.ndarray, shape=(n_samples,) or (n_samples, n_chains)

    Returns
    -------
    float
        ``nan`` with fewer than two batches of at least two samples.
    """
    series = np.asarray(series, dtype=np.float64)
    if series.ndim == 1:
        series = series[:, None]
    return _batch_means(series)[0]


def _batch_means(series: np.ndarray) -> tuple[float, int]:
    """:func:`batch_means_standard_error` of ``series`` (n_samples, n_chains) and the number of batches."""
    n_samples, n_chains = series.shape
    per_chain = min(max(1, math.ceil(BATCHES / n_chains)), n_samples // 2)
    if per_chain < 1 or per_chain * n_chains < 2:
        return float("nan"), 0
    length = n_samples // per_chain
    means = series[: per_chain * length].reshape(per_chain, length, n_chains).mean(axis=1).ravel()
    return float(means.std(ddof=1) / math.sqrt(means.size)), means.size


def mean_standard_error(series: np.ndarray) -> float:
    """Standard error of the mean of an observable over all chains: ``sqrt(var * tau / (n_samples n_chains))``, or
    :func:`batch_means_standard_error` where that is larger beyond its own noise (:func:`_tail_past_window`).

    ``tau`` is :func:`integrated_autocorrelation_time`, whose autocorrelation is taken about the
    mean of all chains: chains that sit in different regions keep their offset at every lag, so
    their disagreement widens the error. Sokal's window stops summing at a few ``tau``; an
    autocorrelation with a slow, small tail beyond it (a potential energy that drifts with a slow
    conformational change) is caught by the batch means (4 chains of 6,000 physical HMC samples of
    alanine dipeptide's potential energy: 0.14 kT from the window, 0.25 kT from 20 batches; 0.24 to
    0.27 kT from batches of 1,500 to 3,000 samples).

    Parameters
    ----------
    series : np.ndarray, shape=(n_samples,) or (n_samples, n_chains)

    Returns
    -------
    float
        ``nan`` where the autocorrelation time is undefined (:func:`why_undefined`), e.g. for a
        constant observable: no error can be given, and 0 would claim an exact value.
    """
    return _mean_error(series)[0]


class _MeanError(NamedTuple):
    """:func:`mean_standard_error` (``error``), where it comes from (``source``: ``"autocorrelation window"`` or
    ``"batch means"``), the window's error and the number of batches."""

    error: float
    source: str
    window: float
    batches: int


def _mean_error(series: np.ndarray) -> _MeanError:
    """:func:`mean_standard_error` with what it was chosen from (:class:`_MeanError`)."""
    series = np.asarray(series, dtype=np.float64)
    tau = integrated_autocorrelation_time(series)
    if not np.isfinite(tau):
        return _MeanError(float("nan"), "autocorrelation window", float("nan"), 0)
    window = float(np.sqrt(series.var() * tau / series.size))
    batches, count = _batch_means(series if series.ndim == 2 else series[:, None])
    if _tail_past_window(window, batches, count):
        return _MeanError(batches, "batch means", window, count)
    return _MeanError(window, "autocorrelation window", window, count)


def _tail_past_window(window: float, batches: float, count: int) -> bool:
    """Whether the batch-means error (of ``count`` batches) exceeds the window's by more than twice its own relative
    noise ``1 / sqrt(2 (count - 1))`` (about 32% for 20 batches): for samples whose autocorrelation the window
    covers, the two agree within that 97.5% of the time."""
    return count >= 2 and math.isfinite(batches) and batches > window * (1.0 + 2.0 / math.sqrt(2.0 * (count - 1)))


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
        ``nan`` where :func:`why_undefined` gives a reason (fewer than 4 samples, non-finite
        values, a constant observable); ``inf`` when every half-chain is constant but they
        differ: chains that do not move at all.
    """
    series = np.asarray(series, dtype=np.float64)
    if why_undefined(series, 4) is not None:
        return float("nan")
    half = series.shape[0] // 2
    halves = np.concatenate([series[:half], series[-half:]], axis=1)
    within = halves.var(axis=0, ddof=1).mean()
    between_over_n = halves.mean(axis=0).var(ddof=1)
    if not within > 0:
        return float("inf")
    return float(np.sqrt(((half - 1) / half * within + between_over_n) / within))


def between_chain_standard_error(series: np.ndarray) -> float:
    """Standard error of the mean counting each chain as one sample: ``std(chain means) / sqrt(n_chains)``.

    The honest error of chains that disagree (split R-hat above :data:`R_HAT_LIMIT`): each sits
    in its own region, so the spread of their means is what the run knows about the mean, however
    many correlated samples each holds.

    Parameters
    ----------
    series : np.ndarray, shape=(n_samples, n_chains)

    Returns
    -------
    float
        ``nan`` for fewer than two chains.
    """
    series = np.asarray(series, dtype=np.float64)
    if series.ndim < 2 or series.shape[1] < 2:
        return float("nan")
    return float(series.mean(axis=0).std(ddof=1) / math.sqrt(series.shape[1]))


def _chains_agree(series: np.ndarray) -> tuple[bool | None, str | None]:
    """Whether the chains of ``series`` (samples, chains) agree by split R-hat, and the note to record when they do not.

    None where R-hat is undefined (too few samples, a constant observable). Where they disagree,
    the note says so and how the error was widened.
    """
    r_hat = split_r_hat(series)
    if math.isnan(r_hat):
        return None, None
    if r_hat <= R_HAT_LIMIT:
        return True, None
    shown = "infinite" if r_hat == math.inf else f"{r_hat:.3g}"
    widened = (
        "its standard error is at least the spread between the chains' means, each chain counted as one sample"
        if series.shape[1] > 1
        else "one chain: no spread between chains to widen its standard error with"
    )
    return False, f"not converged: the chains disagree (split R-hat {shown} > {R_HAT_LIMIT}); {widened}"


def _wider(widened: float, error: float) -> bool:
    """Whether ``widened`` (:func:`_widened`) replaces ``error``: it is larger, or the only one defined."""
    return widened > error or (math.isnan(error) and not math.isnan(widened))


def _widened(error: float, series: np.ndarray) -> float:
    """``error``, or the between-chain error where that is larger (and defined); nan only if both are undefined."""
    between = between_chain_standard_error(series)
    candidates = [value for value in (error, between) if math.isfinite(value)]
    return max(candidates) if candidates else float("nan")


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


#: Flow draws per chunk of Kish's importance weights (:func:`flow_importance_weights`).
KISH_CHUNK = 256


def flow_importance_weights(
    latent: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    n: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
    chunk: int = KISH_CHUNK,
) -> dict[str, float]:
    """Kish's ESS of the flow's importance weights ``w = exp(-U_phys(g(u))) |det dg/du| / N(u)`` for ``u ~ N(0, I)``.

    Parameters
    ----------
    latent : callable
        The latent potential ``U(u) = U_phys(g(u)) - ln|det dg/du|`` in kT, points (batch, dim) to (batch,)
        (:class:`~neuralct.sampling.targets.LatentPotential`).
    dim : int
        Latent coordinates.
    n : int
        Flow draws, ``chunk`` at a time.
    generator : torch.Generator
        Random stream of the draws.
    dtype : torch.dtype
        Precision of the draws (the model's).
    chunk : int
        Draws per evaluation.

    Returns
    -------
    dict
        ``kish_ess``, ``kish_ess_fraction`` (of ``n``), ``flow_samples`` (``n``) and ``nonfinite_weights``.
    """
    log_weights = []
    for start in range(0, n, chunk):
        u = torch.randn(min(chunk, n - start), dim, generator=generator, dtype=dtype)
        with torch.no_grad():
            energy = latent(u)
        log_weights.append((-energy + 0.5 * (u**2).sum(-1)).cpu())
    log_weights = torch.cat(log_weights).numpy()
    ess = kish_effective_sample_size(log_weights)
    return {
        "kish_ess": ess,
        "kish_ess_fraction": ess / n,
        "flow_samples": n,
        "nonfinite_weights": int((~np.isfinite(log_weights)).sum()),
    }


def sampling_efficiency(series: np.ndarray, evaluations: int, cpu_seconds: float) -> dict[str, Any]:
    """How many independent samples a run's chains hold of one observable, per unit of cost.

    Parameters
    ----------
    series : np.ndarray, shape=(n_samples,) or (n_samples, n_chains)
        The observable along each chain.
    evaluations : int
        Energy-and-gradient evaluations spent producing ``series``.
    cpu_seconds : float
        CPU time spent producing ``series``.

    Returns
    -------
    dict
        ``iat`` (in samples), ``ess``, ``ess_per_evaluation``, ``ess_per_cpu_second``,
        ``r_hat`` (:func:`split_r_hat`). A figure that is undefined is None, and ``undefined``
        maps its name to the reason (e.g. no autocorrelation time of a constant observable);
        ``undefined`` is absent when every figure is defined.
    """
    series = np.asarray(series, dtype=np.float64)
    if series.ndim == 1:
        series = series[:, None]
    figures: dict[str, Any] = dict.fromkeys(("iat", "ess", "ess_per_evaluation", "ess_per_cpu_second", "r_hat"))
    undefined: dict[str, str] = {}
    reason = why_undefined(series, 2)
    if reason is None:
        tau = integrated_autocorrelation_time(series)
        ess = series.size / tau
        figures.update(iat=tau, ess=ess)
        if evaluations > 0:
            figures["ess_per_evaluation"] = ess / evaluations
        else:
            undefined["ess_per_evaluation"] = "no energy evaluations were spent"
        if cpu_seconds > 0:
            figures["ess_per_cpu_second"] = ess / cpu_seconds
        else:
            undefined["ess_per_cpu_second"] = "no CPU time was measured"
    else:
        undefined.update(dict.fromkeys(("iat", "ess", "ess_per_evaluation", "ess_per_cpu_second"), reason))
    r_hat = split_r_hat(series)
    if math.isfinite(r_hat):
        figures["r_hat"] = r_hat
    elif r_hat == math.inf:
        undefined["r_hat"] = "infinite: each half-chain holds one value and they differ (the chains do not move)"
    else:
        undefined["r_hat"] = why_undefined(series, 4)
    if undefined:
        figures["undefined"] = undefined
    return figures


def observable_efficiency(series: np.ndarray, evaluations: int, cpu_seconds: float) -> dict[str, Any]:
    """The mean of an observable over all chains, its standard error and :func:`sampling_efficiency`.

    The parameters are those of :func:`sampling_efficiency`.

    Returns
    -------
    dict
        ``mean``, ``standard_error`` (:func:`mean_standard_error`; where the chains disagree, at
        least :func:`between_chain_standard_error`), ``standard_error_from`` (``"autocorrelation
        window"``, ``"batch means"`` or ``"spread between chains"``), ``converged`` (split R-hat at most
        :data:`R_HAT_LIMIT`; None where R-hat is undefined), a ``note`` where they disagree, and the
        figures of :func:`sampling_efficiency`; an undefined figure is None, its reason in ``undefined``.
    """
    series = np.asarray(series, dtype=np.float64)
    if series.ndim == 1:
        series = series[:, None]
    figures = sampling_efficiency(series, evaluations, cpu_seconds)
    error, source, window, batches = _mean_error(series)
    converged, note = _chains_agree(series)
    if converged is not False and source == "batch means":
        note = (
            f"the autocorrelation reaches past Sokal's window: the standard error is that of {batches} batch means "
            f"({error:.3g} against the window's {window:.3g}; iat and ess are the window's, an upper bound on ess)"
        )
    widened = _widened(error, series) if converged is False else error
    if _wider(widened, error):
        error, source = widened, "spread between chains"
    undefined = figures.pop("undefined", {})
    if not math.isfinite(error):
        undefined = {"standard_error": undefined["iat"], **undefined}
    if converged is None:
        undefined["converged"] = f"split R-hat undefined: {undefined.get('r_hat', why_undefined(series, 4))}"
    result: dict[str, Any] = {
        "mean": float(np.mean(series)),
        "standard_error": error if math.isfinite(error) else None,
        "standard_error_from": source if math.isfinite(error) else None,
        "converged": converged,
        **figures,
    }
    if note:
        result["note"] = note
    if undefined:
        result["undefined"] = undefined
    return result


def _stays(indicator: np.ndarray) -> int:
    """Separate stays where ``indicator`` (n_samples, n_chains) is 1: runs of consecutive ones, over all chains."""
    entered = indicator[1:] > indicator[:-1]
    return int(indicator[0].sum() + entered.sum())


def _stays_error(population: float, switches: int, samples: int) -> float:
    """Standard error of a two-state Markov chain's population with ``switches`` stays on its rarer side (see
    :func:`basin_population`)."""
    variance = population * (1.0 - population)
    return math.sqrt(max(2.0 * variance**2 / switches - variance / samples, 0.0))


def basin_population(indicator: np.ndarray) -> dict[str, Any]:
    """The population of a basin from its 0/1 indicator along each chain, with an error no smaller than its stays allow.

    The standard error is the larger of :func:`mean_standard_error` and the error of a
    two-state Markov chain with as many stays, ``sqrt(2 p^2 (1 - p)^2 / k - p (1 - p) / n)``,
    ``k`` the fewer of the separate stays in the basin and out of it over ``n`` samples. A
    chain that enters with probability ``a`` per sample outside and leaves with ``b`` inside has
    ``k = n p (1 - p) (a + b)`` stays and variance of its mean ``p (1 - p) (2 - a - b) / (n (a +
    b))``, which is that formula: ``p (1 - p) / n`` for independent samples, ``2 p^2 (1 - p)^2 / k``
    for rare, long stays. A basin entered once is thus known to within its own population, however
    early the autocorrelation window of a short run closes.

    A basin no chain entered has no population (0 +- 0 would call it empty); it gets the upper
    bound ``1 - 0.05^(1 / n_chains)`` at 95% confidence, which counts each chain as a single
    independent sample (the least a warmed-up chain is worth). A basin no chain left gets the
    lower bound ``0.05^(1 / n_chains)``.

    Parameters
    ----------
    indicator : np.ndarray, shape=(n_samples, n_chains)
        1 where a sample is in the basin, else 0.

    Returns
    -------
    dict
        ``population`` and ``standard_error`` (None when no chain entered the basin or none
        left it), ``chains_visiting`` (chains with a sample in it), ``stays`` (separate stays
        in it over all chains), ``upper_bound_95`` or ``lower_bound_95`` when the population is
        None, ``converged`` (split R-hat of the indicator at most :data:`R_HAT_LIMIT`; None where
        undefined) and a ``note`` when the estimate is missing or rough (fewer than
        :data:`FEW_STAYS` stays in or out, or one chain of several) or the chains disagree (then
        the standard error is at least :func:`between_chain_standard_error`).
    """
    indicator = np.asarray(indicator, dtype=np.float64)
    n_samples, n_chains = indicator.shape
    chains_visiting = int((indicator.max(axis=0) > 0).sum())
    stays_in, stays_out = _stays(indicator), _stays(1.0 - indicator)
    figures: dict[str, Any] = {
        "population": None,
        "standard_error": None,
        "chains_visiting": chains_visiting,
        "stays": stays_in,
    }
    bound = 0.05 ** (1.0 / n_chains)
    if stays_in == 0:
        figures["upper_bound_95"] = 1.0 - bound
        figures["note"] = (
            f"not visited: no chain entered it in {n_samples} samples each; the bound counts each chain "
            "as one independent sample and holds only for chains that reached equilibrium"
        )
        return figures
    if stays_out == 0:
        figures["lower_bound_95"] = bound
        figures["note"] = (
            "never left: every sample of every chain is in it; the bound counts each chain as one independent sample "
            "and holds only for chains that reached equilibrium"
        )
        return figures
    population = float(indicator.mean())
    switches = min(stays_in, stays_out)
    figures["population"] = population
    error, source = _mean_error(indicator)[:2]
    stays_error = _stays_error(population, switches, indicator.size)
    if stays_error > error:
        error, source = stays_error, "stays"
    figures["converged"], disagreement = _chains_agree(indicator)
    widened = _widened(error, indicator) if disagreement else error
    if _wider(widened, error):
        error, source = widened, "spread between chains"
    figures["standard_error"], figures["standard_error_from"] = error, source
    # The rarer side limits the estimate: stays in a rare basin, or stays out of an almost full one.
    if stays_in <= stays_out:
        what, times, chains = "entered", stays_in, chains_visiting
    else:
        what, times, chains = "left", stays_out, int((indicator.min(axis=0) < 1).sum())
    if switches < FEW_STAYS or chains == 1 < n_chains:
        figures["note"] = (
            f"rough: {what} {times} time{'s' * (times != 1)}, by {chains} of {n_chains} chains; "
            "the standard error allows for it, sample longer (--samples) or with more chains (--chains) "
            "for a figure to rely on"
        )
    if disagreement:
        figures["note"] = f"{figures['note']}; {disagreement}" if "note" in figures else disagreement
    return figures


def mark_unreached(figures: dict[str, Any], flow_fraction: float, flow_draws: int) -> bool:
    """Add the flow's share of a basin to its population figures, and mark chains stuck on one side of it.

    A basin no chain entered while at least :data:`FLOW_REACH_FRACTION` of the flow's draws lie
    in it (or one no chain left while as many lie outside it) was reached by the trajectories
    the flow learned from: the chains may be stuck where they started, whatever their R-hat
    says, and the bound of :func:`basin_population` (which assumes chains at equilibrium) does not
    hold. The figures then get ``converged`` False, the bound None and a note saying so.

    Parameters
    ----------
    figures : dict
        One basin's figures from :func:`basin_population`; changed in place.
    flow_fraction : float
        Fraction of the flow's draws in the basin (:func:`~neuralct.sampling.chains.flow_basin_fractions`).
    flow_draws : int
        How many draws that fraction is of.

    Returns
    -------
    bool
        Whether the chains were marked stuck.
    """
    figures["flow_draws_fraction"] = flow_fraction
    if "upper_bound_95" in figures and flow_fraction >= FLOW_REACH_FRACTION:
        bound, action, share, where = "upper_bound_95", "entered", flow_fraction, "in"
    elif "lower_bound_95" in figures and 1.0 - flow_fraction >= FLOW_REACH_FRACTION:
        bound, action, share, where = "lower_bound_95", "left", 1.0 - flow_fraction, "outside"
    else:
        return False
    figures[bound] = None
    figures["converged"] = False
    figures["note"] = (
        f"not converged: no chain {action} it, yet {share:.0%} of {flow_draws} draws of the flow lie {where} it, "
        "where the trajectories it learned from went: the chains may be stuck where they started, and every "
        "population of this run would then leave that side out; sample longer (--samples), with more chains "
        "(--chains), or, for a model of every atom, with the flow's independence moves (--method mixed)"
    )
    return True


def trajectory_basin_fractions(indicators: dict[str, np.ndarray], lengths: Sequence[int]) -> dict[str, dict[str, Any]]:
    """Each basin's population over a set of trajectories, with the standard error their stays and their spread allow.

    The frames are pooled. The standard error is the larger of the two-state Markov chain's error
    for as many stays as the trajectories made (the rule of :func:`basin_population`) and, for two
    or more trajectories, the standard error of their own fractions weighted by their frames: a
    process slower than the trajectories makes them disagree more than their stays say. A basin
    the trajectories never entered, or never left, gets no standard error.

    Parameters
    ----------
    indicators : dict of str to np.ndarray, shape=(n_frames,)
        0/1 per frame of the trajectories one after another (e.g.
        :func:`~neuralct.sampling.targets.basin_indicators`).
    lengths : sequence of int
        Frames of each trajectory, in order; they sum to ``n_frames``.

    Returns
    -------
    dict of str to dict
        Per basin: ``fraction``, ``standard_error`` (None as above) and ``stays`` (separate stays in it).
    """
    bounds = np.cumsum([0, *lengths])
    weights = np.diff(bounds) / bounds[-1]
    found = {}
    for name, values in indicators.items():
        pieces = [np.asarray(values[start:end], dtype=np.float64)[:, None] for start, end in zip(bounds, bounds[1:])]
        fraction = float(np.mean(values))
        stays_in = sum(_stays(piece) for piece in pieces)
        stays_out = sum(_stays(1.0 - piece) for piece in pieces)
        error = None
        if stays_in and stays_out:
            error = _stays_error(fraction, min(stays_in, stays_out), len(values))
            if len(pieces) > 1:
                own = np.array([piece.mean() for piece in pieces])
                spread = math.sqrt(len(own) / (len(own) - 1) * float((weights**2 * (own - fraction) ** 2).sum()))
                error = max(error, spread)
        found[name] = {"fraction": fraction, "standard_error": error, "stays": stays_in}
    return found


def mark_against_training_data(figures: dict[str, Any], training: dict[str, Any]) -> bool:
    """Add the training trajectories' population of a basin to the chains' figures, and mark the two disagreeing.

    The chains' population (and its standard error) and the trajectories' (with theirs,
    :func:`trajectory_basin_fractions`) disagree when they lie :data:`TRAINING_DATA_DISAGREEMENT`
    combined standard errors apart or more; a basin no chain entered (or left) disagrees where the
    trajectories put at least :data:`FLOW_REACH_FRACTION` of their frames in it (or outside it), that
    many standard errors from none. Both sample one density, so one of them has not converged:
    chains that agree with each other may all have stayed where they started, and R-hat cannot tell.
    The figures then get ``converged`` False, a note, and a standard error (or bound) no tighter
    than the gap.

    Parameters
    ----------
    figures : dict
        One basin's figures from :func:`basin_population`; changed in place.
    training : dict
        That basin's ``fraction``, ``standard_error`` and ``stays`` in the training trajectories.

    Returns
    -------
    bool
        Whether the two were marked disagreeing.
    """
    fraction, error = training["fraction"], training["standard_error"]
    chains_agreed = figures.get("converged") is True
    figures["training_data_fraction"] = fraction
    figures["training_data_standard_error"] = error
    if error is None:
        return False
    population = figures.get("population")
    if population is not None:
        gap = abs(population - fraction)
        if not gap >= TRAINING_DATA_DISAGREEMENT * math.hypot(figures["standard_error"], error):
            return False
        chains = f"{population:.3f} +- {figures['standard_error']:.3f}"
        figures["standard_error"] = max(figures["standard_error"], gap)
    elif "upper_bound_95" in figures and figures["upper_bound_95"] is not None:
        if not (fraction >= FLOW_REACH_FRACTION and fraction >= TRAINING_DATA_DISAGREEMENT * error):
            return False
        chains, figures["upper_bound_95"] = "none", None
    elif "lower_bound_95" in figures and figures["lower_bound_95"] is not None:
        if not (1.0 - fraction >= FLOW_REACH_FRACTION and 1.0 - fraction >= TRAINING_DATA_DISAGREEMENT * error):
            return False
        chains, figures["lower_bound_95"] = "all", None
    else:
        return False
    figures["converged"] = False
    # Stays beyond each visiting chain's first (a chain may start in the basin): entries the chains made.
    entries = figures.get("stays", 0) - figures.get("chains_visiting", 0)
    if population is not None and chains_agreed and entries >= training["stays"]:
        # Chains that agree went in and out of it as often as the trajectories did: it is they that know it better.
        which = (
            f"the chains entered it {entries} times, the trajectories {training['stays']}: the trajectories "
            "are the likelier to be too short to know it (a longer unbiased MD settles it), or the chains to sample "
            "it wrongly"
        )
    else:
        which = (
            "the chains may not have left the basins where they started, or the trajectories not have reached "
            "equilibrium; sample longer (--samples) or with more chains (--chains)"
        )
    disagreement = (
        f"not converged: the chains put {chains} of their samples in it, the model's training trajectories "
        f"{fraction:.3f} +- {error:.3f} of their frames (at least {TRAINING_DATA_DISAGREEMENT:g} standard errors "
        f"apart, and the standard error is now at least the gap): {which}"
    )
    figures["note"] = f"{figures['note']}; {disagreement}" if "note" in figures else disagreement
    return True


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
    """Eigenvalues of a mean curvature, its condition number and the count of eigenvalues above 4 (for summaries).

    The condition number is None, with the reason in ``undefined``, when the smallest eigenvalue
    is not positive.
    """
    spectrum = np.sort(np.asarray(spectrum, dtype=np.float64))
    figures: dict[str, Any] = {
        "eigenvalues": spectrum.tolist(),
        "condition_number": None,
        "above_4": int((spectrum > 4).sum()),
    }
    if spectrum[0] > 0:
        figures["condition_number"] = float(spectrum[-1] / spectrum[0])
    else:
        figures["undefined"] = {
            "condition_number": f"the smallest eigenvalue is {spectrum[0]:.2g}, not positive: "
            "the gradients seen span only part of the space (fewer states than dimensions, or chains that did not move)"
        }
    return figures


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
