"""Which objective a training on trajectories uses: the kinetic (time-lagged) one by default, chosen from the data.

A user who asks ``neuralct train`` for CVs wants slow ones. Where the trajectories have time
stamps and enough consecutive frames, the default is the time-lagged objective with its VAMP-2
term (:class:`neuralct.training.objectives.LaggedLikelihood`), at a lag chosen from the data: a
fraction of the slowest implied timescale of a quick TICA on the training trajectories' internal
coordinates, as a whole number of frames, with the VAMP-2 term at half of it and at it. Recorded
velocities are used where the files have them (the phase-space transition density), the
configuration-only lagged term otherwise, at half the lag. Where the
data cannot carry it (no time stamps, too few pairs of frames, frame weights of a biased run, or
a ranking of maximum-likelihood modes asked for), the default is maximum likelihood on single
frames (the density objective), and the choice says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..analysis.kinetics import tica_spectrum
from ..data import PhaseSpaceData
from ..data.pairs import RescaledTime
from ..errors import NeuralCTError
from ..io import write_json
from ..training.loop import TrainingSettings
from ..training.objectives import VAMP_MODES
from .train import fit_trajectories, split_trajectories, training_series

__all__ = [
    "OBJECTIVES",
    "KINETIC_VAMP_WEIGHT",
    "KINETIC_STEPS",
    "KINETIC_LEARNING_RATE",
    "LAG_FRACTION",
    "MIN_KINETIC_PAIRS",
    "ObjectiveChoice",
    "choose_objective",
    "fit_with_choice",
]

#: What ``objective`` may be: chosen from the data, the time-lagged one, or maximum likelihood on single frames.
OBJECTIVES = ("auto", "kinetic", "density")

#: Weight of the VAMP-2 term of the kinetic objective unless given (benchmark B2's setting).
KINETIC_VAMP_WEIGHT = 100.0

#: Optimiser steps and peak learning rate of the kinetic objective with its lag chosen from the data, unless given:
#: on alanine dipeptide (benchmarks/README.md, B2) 500 steps at 8e-3 score as 2,000 at 1e-3 or better, but for the
#: slowest CV at twice the frame spacing (0.003 lower), in a third of the CPU time.
KINETIC_STEPS = 500
KINETIC_LEARNING_RATE = 8e-3

#: The chosen lag as a fraction of the slowest implied timescale of the quick TICA.
LAG_FRACTION = 0.25

#: Training pairs the chosen lag must leave for the kinetic objective to be chosen by default.
MIN_KINETIC_PAIRS = 1000

#: At most this share of the shortest training trajectory is spanned by the chosen lag.
MAX_LAG_SHARE = 0.1


@dataclass
class ObjectiveChoice:
    """The objective of a fit on trajectories, with every option resolved, and why.

    Attributes
    ----------
    objective : {"kinetic", "density"}
        The time-lagged objective or maximum likelihood on single frames.
    momenta : {"recorded", "resample"}
        Recorded on-step velocities or fresh Maxwell-Boltzmann draws.
    lag_ps : float or None
        Lag of the time-lagged objective in ps (None for ``density``).
    vamp_weight : float
        Weight of the VAMP-2 term (0 for none).
    vamp_lags_ps : list of float or None
        Lags of the VAMP-2 term in ps (None: ``lag_ps`` alone, or no term).
    reason : str
        Why this objective, in one sentence.
    figures : dict
        What the choice measured (the quick TICA's slowest timescale in ps, its lag), for summary.json.
    lag_from_data : bool
        The kinetic objective's lag and VAMP-2 term were chosen here from the data (not given).
    vamp_modes : int
        Slowest latent positions in the VAMP-2 term.
    """

    objective: str
    momenta: str
    lag_ps: float | None = None
    vamp_weight: float = 0.0
    vamp_lags_ps: list[float] | None = None
    reason: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    lag_from_data: bool = False
    vamp_modes: int = VAMP_MODES

    def as_dict(self) -> dict[str, Any]:
        """The choice for summary.json and the model's metadata."""
        return {
            "objective": self.objective,
            "description": self.description(),
            "momenta": self.momenta,
            "lag_ps": self.lag_ps,
            "vamp_weight": self.vamp_weight,
            "vamp_lags_ps": self.vamp_lags_ps,
            "vamp_modes": self.vamp_modes,
            "reason": self.reason,
            **self.figures,
        }

    def fit_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~neuralct.workflows.train.prepare_trajectory_fit` that the choice sets."""
        return {
            "momenta": self.momenta,
            "lag_ps": self.lag_ps,
            "vamp_weight": self.vamp_weight,
            "vamp_modes": self.vamp_modes,
            "vamp_lags_ps": self.vamp_lags_ps,
        }

    def schedule(self) -> tuple[int, float]:
        """Optimiser steps and peak learning rate of this objective unless given.

        The kinetic objective with its lag and VAMP-2 term chosen from the data converges in fewer,
        larger steps (``KINETIC_STEPS``, ``KINETIC_LEARNING_RATE``, measured with those settings);
        a given lag keeps the meaning it always had, with maximum likelihood's schedule, the
        defaults of :class:`~neuralct.training.loop.TrainingSettings`.
        """
        if self.objective == "kinetic" and self.lag_from_data:
            return KINETIC_STEPS, KINETIC_LEARNING_RATE
        return TrainingSettings.steps, TrainingSettings.learning_rate

    def description(self) -> str:
        """The objective and its settings, e.g. ``kinetic (time-lagged, lag 1 ps, ..., recorded velocities)``."""
        if self.objective == "density":
            return "density (maximum likelihood on single frames)"
        vamp = "no VAMP-2 term"
        if self.vamp_weight:
            lags = " ".join(f"{lag:g}" for lag in (self.vamp_lags_ps or [self.lag_ps]))
            modes = "" if self.vamp_modes == VAMP_MODES else f" on the {self.vamp_modes} slowest CVs"
            vamp = f"VAMP-2 term of weight {self.vamp_weight:g}{modes} at {lags} ps"
        momenta = "recorded velocities" if self.momenta == "recorded" else "configuration only"
        return f"kinetic (time-lagged, lag {self.lag_ps:g} ps, {vamp}, {momenta})"

    def line(self, flag: Callable[[str], str] = "`{}`".format) -> str:
        """One line for the terminal: the objective, its settings and why.

        ``flag`` writes an argument's name as the caller's user knows it (the command line: its flag).
        """
        line = f"objective: {self.description()}: {self.reason}"
        if self.objective == "kinetic":
            line += f"; {flag('objective')} density for maximum likelihood"
        return line


def choose_objective(
    data: PhaseSpaceData,
    validation_trajectories: int = 1,
    *,
    objective: str = "auto",
    momenta: str | None = None,
    lag_ps: float | None = None,
    vamp_weight: float | None = None,
    vamp_lags_ps: Sequence[float] | None = None,
    vamp_modes: int | None = None,
    rank_lag_ps: float | None = None,
    weighted: bool = False,
) -> ObjectiveChoice:
    """Resolve the objective of a fit on ``data`` and the options left to it (None: chosen here).

    ``auto`` takes the kinetic objective where the trajectories allow it (see the module's
    description) and the density objective otherwise; a given ``lag_ps`` or ``vamp_weight``
    asks for the kinetic one, a given ``rank_lag_ps`` or frame weights for the density one.
    Options the user gave are kept as given; conflicts are left to
    :func:`neuralct.workflows.train.prepare_trajectory_fit`, which refuses them.

    Parameters
    ----------
    data : neuralct.data.PhaseSpaceData
        The loaded trajectories.
    validation_trajectories : int
        Trajectories held out for validation (the quick TICA sees the training ones only).
    objective : {"auto", "kinetic", "density"}
    momenta : {"recorded", "resample"}, optional
        None: recorded velocities for the kinetic objective where the files have them, else resampled.
    lag_ps, vamp_weight, vamp_lags_ps, vamp_modes, rank_lag_ps : optional
        As in :func:`neuralct.workflows.train.prepare_trajectory_fit`. Under the kinetic objective
        a ``lag_ps`` of None is chosen from the data, and with it a VAMP-2 term of weight
        ``KINETIC_VAMP_WEIGHT`` at half the lag and the lag (:func:`_vamp_lags`) unless given; a
        given ``lag_ps`` keeps its meaning: no VAMP-2 term unless ``vamp_weight`` is given, at
        ``lag_ps`` alone unless ``vamp_lags_ps`` is; on ``VAMP_MODES`` modes unless ``vamp_modes`` is.
    weighted : bool
        Frame weights are given (weighted maximum likelihood of biased data).

    Returns
    -------
    ObjectiveChoice

    Raises
    ------
    NeuralCTError
        For an unknown ``objective``, options of the other objective, or ``kinetic`` on
        trajectories without time stamps or too short for any lag.
    """
    if objective not in OBJECTIVES:
        raise NeuralCTError(f"`objective` must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    kinetic_options = [
        name
        for name, value in (("lag_ps", lag_ps), ("vamp_weight", vamp_weight), ("vamp_modes", vamp_modes))
        if value is not None
    ]
    modes = VAMP_MODES if vamp_modes is None else vamp_modes
    if objective == "density":
        if kinetic_options:
            raise NeuralCTError(f"`{kinetic_options[0]}` sets the kinetic objective; drop it or `objective` density")
        return ObjectiveChoice("density", momenta or "resample", reason="asked for")
    if objective == "auto":
        why_density = _why_density(kinetic_options, rank_lag_ps, weighted)
        if why_density:
            return ObjectiveChoice("density", momenta or "resample", reason=why_density)
    elif rank_lag_ps is not None:
        raise NeuralCTError("`rank_lag_ps` ranks the modes of maximum likelihood; drop it or use `objective` density")
    chosen_momenta = momenta or ("recorded" if data.momenta_source == "recorded" else "resample")
    lag_given = lag_ps is not None
    figures: dict[str, Any] = {}
    if lag_ps is None:
        lag_ps, figures = _lag_from_data(data, validation_trajectories)
        asked = [f"`{name}`" for name in kinetic_options] + (["`objective` kinetic"] if objective == "kinetic" else [])
        if lag_ps is None:
            if asked:
                raise NeuralCTError(f"{asked[0]} needs pairs of frames a lag apart: {figures['why']}")
            return ObjectiveChoice("density", momenta or "resample", reason=figures["why"])
        if not asked and figures["training_pairs"] < MIN_KINETIC_PAIRS:
            why = (
                f"only {figures['training_pairs']} training pairs at a lag of {lag_ps:g} ps (the kinetic objective "
                f"is chosen from {MIN_KINETIC_PAIRS}); longer trajectories would allow it"
            )
            return ObjectiveChoice("density", momenta or "resample", reason=why, figures=figures)
    # A given lag keeps the meaning it has always had: no VAMP-2 term unless asked, at that lag alone.
    weight = vamp_weight if vamp_weight is not None else 0.0 if lag_given else KINETIC_VAMP_WEIGHT
    if not weight and vamp_modes is not None:
        # Given, even as its default value: `prepare_trajectory_fit` sees only the value.
        raise NeuralCTError("`vamp_modes` needs `vamp_weight` (the modes of the VAMP-2 term)")
    lags = list(vamp_lags_ps) if vamp_lags_ps else None
    if lag_given:
        return ObjectiveChoice("kinetic", chosen_momenta, lag_ps, weight, lags, "lag given", figures, vamp_modes=modes)
    if weight and lags is None:
        lags = _vamp_lags(lag_ps, data.timestep_ps)
    reason = (
        f"the lag is {LAG_FRACTION:g} of the slowest TICA timescale ({figures['tica_slowest_timescale_ps']:.3g} "
        f"ps at {figures['tica_lag_ps']:g} ps), in whole frames"
    )
    if chosen_momenta == "resample":
        lag_ps = _half_lag(lag_ps, data.timestep_ps)
        reason += "; the configuration-only term at half of it"
    return ObjectiveChoice(
        "kinetic", chosen_momenta, lag_ps, weight, lags, reason, figures, lag_from_data=True, vamp_modes=modes
    )


def _why_density(kinetic_options: list[str], rank_lag_ps: float | None, weighted: bool) -> str:
    """Why ``auto`` takes maximum likelihood before looking at the frames ('' where it need not)."""
    if kinetic_options:
        return ""
    if weighted:
        return (
            "frame weights of a biased run are learned by weighted maximum likelihood (with a lag, kinetic CVs in "
            "rescaled time)"
        )
    if rank_lag_ps is not None:
        return "a ranking of maximum-likelihood modes was asked for"
    return ""


def _lag_from_data(data: PhaseSpaceData, validation_trajectories: int) -> tuple[float | None, dict[str, Any]]:
    """The kinetic objective's lag in ps from a quick TICA of the training frames, or None and why not.

    TICA at one frame on the internal coordinates of the training trajectories gives the slowest
    implied timescale ``t``; the lag is ``LAG_FRACTION * t`` rounded to whole frames, at least one,
    and at most ``MAX_LAG_SHARE`` of the shortest training trajectory. The figures hold the
    training pairs it leaves.
    """
    if data.timestep_ps is None:
        return None, {"why": f"no time between frames, so no lagged pairs ({data.timestep_note})"}
    dt = float(data.timestep_ps)
    train_index, _, _ = split_trajectories(list(data.traj_lengths), validation_trajectories)
    series = training_series(data.internal_positions(), data.traj_lengths, train_index)
    lengths = [len(s) for s in series]
    if max(lengths) < 3:
        return None, {"why": "the training trajectories have fewer than 3 frames each"}
    spectrum = tica_spectrum([s for s in series if len(s) > 1], 1, dt)
    timescales = [t for t in spectrum["implied_timescales_ps"] if t is not None]
    slowest = max(timescales, default=dt)
    frames = min(int(round(LAG_FRACTION * slowest / dt)), int(MAX_LAG_SHARE * min(lengths)))
    frames = max(frames, 1)
    pairs = sum(max(length - frames, 0) for length in lengths)
    figures = {"tica_slowest_timescale_ps": float(slowest), "tica_lag_ps": dt, "training_pairs": int(pairs)}
    return _clean(frames * dt), figures


def _vamp_lags(lag_ps: float, timestep_ps: float | None) -> list[float]:
    """The VAMP-2 term's lags: half the lag and the lag where half is a whole number of frames, else the lag."""
    if timestep_ps:
        frames = int(round(lag_ps / timestep_ps))
        if frames % 2 == 0:
            return [_clean(lag_ps / 2), _clean(lag_ps)]
    return [_clean(lag_ps)]


def _half_lag(lag_ps: float, timestep_ps: float) -> float:
    """Half the lag in whole frames, rounded down, at least one frame.

    The configuration-only lagged term is trained at half the chosen lag: on alanine dipeptide
    with 0.5 ps frames and no velocities, a lag of 1 ps left the CV pair below TICA's at 1 ps,
    0.5 ps put it above at every lag scored (benchmarks/README.md, B2).
    """
    frames = int(round(lag_ps / timestep_ps))
    return _clean(max(frames // 2, 1) * timestep_ps)


def _clean(lag_ps: float) -> float:
    """A lag without float noise (``1.5000000000000002`` -> ``1.5``), as a user would type it."""
    return float(f"{lag_ps:.10g}")


def fit_with_choice(
    data: PhaseSpaceData,
    choice: ObjectiveChoice,
    architecture: Any,
    training: Any,
    folder: Path,
    device: str,
    seed: int,
    rescaled_time: RescaledTime | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Fit ``data`` with the objective ``choice`` (the last trajectory validates) into ``folder``.

    The choice is recorded in the summary and in the model's metadata; writes ``model.pt``, then
    ``summary.json`` (the mark of a finished fit), with ``checkpoint.pt`` to resume from beside them.
    ``architecture`` and ``training`` are those of :func:`~neuralct.workflows.train.fit_trajectories`;
    ``rescaled_time`` that of :func:`~neuralct.workflows.train.prepare_trajectory_fit`.

    Returns
    -------
    model, summary
    """
    model, summary = fit_trajectories(
        data,
        architecture,
        training,
        validation_trajectories=1,
        **choice.fit_options(),
        device=device,
        seed=seed,
        checkpoint=folder / "checkpoint.pt",
        rescaled_time=rescaled_time,
    )
    summary["objective"] = model.metadata["objective"] = choice.as_dict()
    model.save(folder / "model.pt")
    write_json(folder / "summary.json", summary)
    return model, summary
