"""``neuralct quickstart`` as a function: simulate alanine dipeptide, learn its slow CVs, score them.

Each step writes into its own sub-folder of the output and resumes what an earlier run left
there: ``trajectories/`` (the simulation), ``model/`` (the kinetic objective, as ``neuralct
train`` chooses it by default: :mod:`neuralct.workflows.objective`), ``density_model/`` (maximum
likelihood on single frames, for comparison) and ``analysis/`` (with ``analysis/density/``).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..data import PhaseSpaceData, load_trajectories
from ..errors import NeuralCTError
from ..io import prepare_output_dir, write_json
from ..md.simulate import SimulationSettings, run_simulation
from ..md.systems import build_system
from ..model.transformation import DEFAULT_ARCHITECTURE, NeuralCanonicalTransformation
from ..training.loop import TrainingSettings
from .analyze import analyze_trajectories
from .objective import KINETIC_STEPS, ObjectiveChoice, choose_objective, fit_with_choice

__all__ = ["QuickstartSettings", "check_settings", "run_quickstart"]

#: The bundled system the quickstart simulates.
SYSTEM = "alanine-dipeptide"

#: Blocks the held-out trajectory is scored on (``analyze``'s default); each must be longer than the lag.
SCORED_BLOCKS = 4


@dataclass
class QuickstartSettings:
    """What a quickstart run does: the simulation, the two trainings and the lag they are scored at.

    Attributes
    ----------
    replicas : int
        Trajectories to simulate; the last two validate the training and are held out for the scores.
    length_ns, report_ps : float
        Length of each trajectory in ns and time between frames in ps.
    steps, batch_size : int
        Training steps of the CVs (the kinetic objective, at its learning rate
        :data:`~neuralct.workflows.objective.KINETIC_LEARNING_RATE`) and the batch size of both trainings.
    lag_ps : float
        Lag of the VAMP-2 and TICA scores in ps.
    density_steps : int
        Training steps of the maximum-likelihood model scored beside them; 0 leaves it out.
    seed : int
        Seed of the simulation and of the trainings.
    device : str
        Where the trainings run (``auto``, ``cpu``, ``cuda``).
    progress : bool
        Show progress bars.
    """

    replicas: int = 4
    length_ns: float = 2.0
    report_ps: float = 0.5
    steps: int = KINETIC_STEPS
    batch_size: int = 256
    lag_ps: float = 2.0
    density_steps: int = 4000
    seed: int = 0
    device: str = "auto"
    progress: bool = True


def check_settings(settings: QuickstartSettings) -> SimulationSettings:
    """Refuse settings that cannot make a run, before any work; return the simulation's settings.

    Raises
    ------
    NeuralCTError
        For fewer than 3 replicas, settings no simulation can run, or a lag not shorter than a
        scored block of the held-out trajectory.
    """
    if settings.replicas < 3:
        raise NeuralCTError(
            "`replicas` must be at least 3: one trajectory validates the training and one is held out for the scores"
        )
    simulation = SimulationSettings(length_ns=settings.length_ns, report_ps=settings.report_ps, seed=settings.seed)
    simulation.validate()
    if settings.lag_ps >= settings.length_ns * 1000.0 / SCORED_BLOCKS:
        raise NeuralCTError(
            f"`lag_ps` {settings.lag_ps:g} is not shorter than a quarter of the trajectories "
            f"(`length_ns` {settings.length_ns:g}), the blocks they are scored on; "
            "use a shorter lag or longer trajectories"
        )
    return simulation


class _Stages:
    """Announces each step of a run as ``[k/n] ...`` and records the seconds it takes under its name."""

    def __init__(self, total: int, announce: Callable[[str], None]):
        self.total, self.announce, self.started = total, announce, 0
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        """Announce the next step, ``what`` it does, and time it."""
        start = time.perf_counter()
        self.started += 1
        self.announce(f"[{self.started}/{self.total}] {what}")
        yield
        self.seconds[name] = time.perf_counter() - start


def run_quickstart(
    settings: QuickstartSettings,
    output: Path,
    announce: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Simulate, train the CVs, train the density model (unless ``settings.density_steps`` is 0), analyze.

    The CVs are the kinetic objective's, with its lag, VAMP-2 term and momenta chosen from the
    data as ``neuralct train`` chooses them by default (:func:`~neuralct.workflows.objective.choose_objective`;
    here the objective is asked for, so that tiny test runs train it too).

    Parameters
    ----------
    settings : QuickstartSettings
        What to run (:func:`check_settings` refuses what cannot run).
    output : Path
        The run's folder; each step resumes what an earlier run left in its sub-folder.
    announce : callable
        Called with a one-line announcement as each step starts (``[1/4] simulating ...``).
    warn : callable, optional
        Called with the analysis' one-line warnings.

    Returns
    -------
    dict
        The summary written to ``output/summary.json``: the key figures of every step, the
        pictures and the seconds each step took.
    """
    simulation_settings = check_settings(settings)
    stages = _Stages(4 if settings.density_steps else 3, announce)
    what = f"simulating {settings.replicas} x {settings.length_ns:g} ns of alanine dipeptide (vacuum, 300 K) ..."
    with stages.stage("simulate", what):
        paths, simulation = _simulate(settings, simulation_settings, output / "trajectories")
    data = load_trajectories(paths[:-1], selection="heavy", momenta="auto", seed=settings.seed)
    kinetic = choose_objective(data, 1, objective="kinetic")
    what = f"training slow CVs on {len(paths) - 2} trajectories, validating on 1: {kinetic.description()} ..."
    with stages.stage("train", what):
        model, training = _train(settings, data, kinetic, output / "model", settings.steps)
    density_model = density_training = None
    if settings.density_steps:
        density = choose_objective(data, 1, objective="density")
        what = "training the density model for comparison: maximum likelihood on single frames ..."
        with stages.stage("train_density", what):
            density_model, density_training = _train(
                settings, data, density, output / "density_model", settings.density_steps
            )
    with stages.stage("analyze", "analyzing the slow CVs on the held-out trajectory ..."):
        analysis_folder = prepare_output_dir(output / "analysis")
        analysis = analyze_trajectories(model.cpu(), paths, analysis_folder, lag_ps=settings.lag_ps, warn=warn)
        density_figures = None
        if density_model is not None:
            density_figures = _density_figures(
                settings, density_model, density_training, paths, output, analysis_folder / "density", warn
            )
    summary = _summary(output, paths, simulation, training, analysis, density_figures, stages.seconds)
    write_json(output / "summary.json", summary)
    return summary


def _simulate(
    settings: QuickstartSettings, simulation_settings: SimulationSettings, folder: Path
) -> tuple[list[str], dict[str, Any]]:
    """Simulate (or resume) the replicas into ``folder``; return the trajectory paths, sorted, and the summary."""
    folder = prepare_output_dir(folder)
    simulation = run_simulation(
        build_system(SYSTEM),
        folder,
        simulation_settings,
        replicas=settings.replicas,
        progress=settings.progress,
    )
    return sorted(str(p) for p in folder.glob("replica-*.nc")), simulation


def _train(
    settings: QuickstartSettings, data: PhaseSpaceData, choice: ObjectiveChoice, folder: Path, steps: int
) -> tuple[NeuralCanonicalTransformation, dict[str, Any]]:
    """Train on all trajectories but the last; write ``model.pt``, ``summary.json`` and the checkpoint into ``folder``.

    ``data`` holds all trajectories but the last, which is held out for the scores; the one
    before it selects the kept state. ``choice`` is the objective with its options.
    """
    folder = prepare_output_dir(folder)
    learning_rate = choice.schedule()[1]
    training = TrainingSettings(
        steps=steps, batch_size=settings.batch_size, learning_rate=learning_rate, progress=settings.progress
    )
    return fit_with_choice(data, choice, list(DEFAULT_ARCHITECTURE), training, folder, settings.device, settings.seed)


def _density_figures(
    settings: QuickstartSettings,
    model: NeuralCanonicalTransformation,
    training: dict[str, Any],
    paths: list[str],
    output: Path,
    folder: Path,
    warn: Callable[[str], None] | None,
) -> dict[str, Any]:
    """Analyze the density model into ``folder`` as the CVs; its figures for the summary."""
    scores = analyze_trajectories(model.cpu(), paths, prepare_output_dir(folder), lag_ps=settings.lag_ps, warn=warn)
    best = {entry["kind"]: entry for entry in scores["best_of_two_slowest"]}
    return {
        "model": str(output / "density_model" / "model.pt"),
        "steps": settings.density_steps,
        "frequencies_slowest": training["frequencies"][:6],
        "vamp2": scores["learned_cvs"]["vamp2"],
        "vamp2_standard_error": scores["learned_cvs"]["vamp2_standard_error"],
        "minus_tica": {key: scores["learned_minus_tica"][key] for key in ("value", "standard_error")},
        "mi_psi_nats": best["psi"]["mi_nats"],
        "mi_phi_nats": best["phi"]["mi_nats"],
        "figures": scores["figures"],
    }


def _summary(
    output: Path,
    paths: list[str],
    simulation: dict[str, Any],
    training: dict[str, Any],
    analysis: dict[str, Any],
    density: dict[str, Any] | None,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The key figures of the run for summary.json and the terminal."""
    best = {entry["kind"]: entry for entry in analysis["best_of_two_slowest"]}
    states = next(iter(analysis["states"].values()))["classification"]
    return {
        "trajectories": paths,
        "model": str(output / "model" / "model.pt"),
        "figures": analysis["figures"],
        "ns_simulated": simulation["ns_simulated"],
        "steps_per_second_md": simulation["steps_per_second"],
        "objective": training["objective"],
        "relaxation_times_ps": training["relaxation_times_ps"][:4],
        "validation_nll": training["validation_nll"][-1],
        "mi_psi_nats": best["psi"]["mi_nats"],
        "mi_phi_nats": best["phi"]["mi_nats"],
        "lag_ps": analysis["lag_ps"],
        "vamp2_scored_segments": analysis["n_scored_segments"],
        "vamp2_learned": analysis["learned_cvs"]["vamp2"],
        "vamp2_learned_standard_error": analysis["learned_cvs"]["vamp2_standard_error"],
        "vamp2_tica": analysis["tica"]["vamp2"],
        "vamp2_tica_standard_error": analysis["tica"]["vamp2_standard_error"],
        "vamp2_learned_minus_tica": {key: analysis["learned_minus_tica"][key] for key in ("value", "standard_error")},
        "kinetics": analysis["kinetics"],
        "state_accuracy_learned": states["learned_cvs"]["accuracy"],
        "state_accuracy_tica": states["tica"]["accuracy"],
        "density_model": density,
        "seconds": timings,
    }
