"""``neuralct explore`` as a function: the learn-bias-relearn loop, until the free energy between the states settles.

Round 0 is unbiased MD of the system (``replicas`` trajectories), or trajectories of it that the
user brings (``data``: another engine's files, any format the loader reads), and a first model
trained on them.
At the temperature of the rounds, the model is trained by maximum likelihood (the density
objective): data that never made a rare transition hold no slow process for it, so the kinetic
objective's slowest CV is the slow motion the data did show, while the softest modes of the
density carry some of the rare one (on alanine dipeptide, 0 against 8 phi transitions per ns
when biased; benchmarks/README.md, B3). Heated (``unbiased_temperature``, vacuum or implicit
solvent), round 0 makes the rare transitions, and its model is trained as ``neuralct train``
trains one by default: the kinetic objective, its lag and schedule chosen from the data (on
alanine dipeptide at 600 K the loop did worse after a faster round 1, B3; off by default).
Round r >= 1 is well-tempered metadynamics on the slowest CV of the model of round r - 1 (the
first with ``neuralct bias``'s default Gaussian width, later ones with
:data:`LATER_WIDTH_FRACTION`), then a model trained on its frames with the time-lagged objective
and a VAMP-2 term (:data:`RETRAIN_LAG_PS`,
:data:`~neuralct.workflows.objective.KINETIC_VAMP_WEIGHT`): the bias has sped up the motions along
the CV it acted on, so the slowest process left in the biased dynamics is the rare event that CV
only partly drove. A round whose CV left its grid, or whose run broke down, ends there, and the
CV learned from its frames before it is biased next: the frames reach where the old CV had never
been (benchmarks/README.md, B3: on foreign data such loops had stopped there).

A metadynamics round whose CV crossed every backbone phi at least ``freeze_rate_per_ns`` times per
ns has its final bias frozen: the rounds after it run the same CV under that fixed bias (each with
its own seed, no retraining), and their frames are pooled with the exact weights exp((V(s) - c)/kT)
(:func:`_frozen_estimate`). On alanine dipeptide the Tiwary-Parrinello estimates of the rounds whose
bias was then frozen (a bias still growing) scattered from 6.75 to 11.29 kJ/mol over six seeds, the
frozen rounds' pooled ones from 9.16 to 10.11 (benchmarks/README.md, B3). The loop stops when, for
every backbone phi, the pooled F(phi > 0) - F(phi < 0) changed by less than ``tolerance_kj`` over
the last frozen round, both frozen estimates crossed that phi and every frozen round gives an
estimate of its own (:func:`stopping_verdict`), else after ``max_rounds`` rounds. A molecule without
a backbone phi has no states defined here: it runs ``max_rounds`` rounds and says so.

Each step writes into its own folder and is skipped when an earlier run finished it (its
``summary.json`` written), or resumes what an earlier run left there: ``round-0/md/``,
``round-0/model/``, ``round-R/bias/``, ``round-R/model/``; then ``export/`` (the CVs of the
model biased in the last round, as ``neuralct export`` writes them) and ``summary.json``.
"""

from __future__ import annotations

import copy
import enum
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..analysis.colvar import read_colvar
from ..analysis.dihedrals import dihedral_angles
from ..analysis.reweighting import (
    FreeEnergyDifference,
    count_transitions,
    frame_log_weights,
    metadynamics_weights,
    phi_free_energy_difference,
)
from ..data import PhaseSpaceData, load_trajectories
from ..data.pairs import RescaledTime, lag_in_frames
from ..errors import NeuralCTError, RunBrokeDown, TemperatureMismatch
from ..io import prepare_output_dir, write_json
from ..md.simulate import SimulationSettings, run_simulation
from ..model.molecular import molecule_atoms, molecule_metadata
from ..model.transformation import DEFAULT_ARCHITECTURE, NeuralCanonicalTransformation, load
from ..training.loop import TrainingSettings
from ..units import kT_kj_per_mol
from .bias import (
    BiasSettings,
    backbone_torsions,
    default_bias_every,
    phi_psi_pairs,
    run_metadynamics,
    steep_cvs,
    write_phi_psi_surface,
)
from .objective import KINETIC_VAMP_WEIGHT, ObjectiveChoice, choose_objective, fit_with_choice

__all__ = [
    "ExploreSettings",
    "StoppingVerdict",
    "RETRAIN_LAG_PS",
    "LATER_WIDTH_FRACTION",
    "check_settings",
    "stopping_verdict",
    "run_explore",
]

#: Lag of the time-lagged objective that retrains on each metadynamics run, ps (benchmarks/README.md, B3).
RETRAIN_LAG_PS = 2.0

#: Gaussian width of the retrained CVs from round 2 on, as a fraction of each CV's training range (B3).
LATER_WIDTH_FRACTION = 0.15

#: Time between the frames of the unbiased MD of round 0, ps (B3's first model trained on such frames).
UNBIASED_REPORT_PS = 0.5

#: Phi transitions per ns of a metadynamics round from which its bias is frozen for production (benchmarks/README.md,
#: B3: a bias frozen after 10-20 per ns drives the frozen rounds 10-26 times per ns; after 30 or more, 25-74).
FREEZE_RATE_PER_NS = 30.0

#: Rounds at most after round 0 (B3: from 30 per ns on, one seed of six froze after its fifth round).
MAX_ROUNDS = 8

#: Share of a single (biased) trajectory that trains a model; the rest validates it
#: (:func:`neuralct.workflows.train.split_trajectories`).
_TRAINED_SHARE = 0.8


class NextStep(enum.Enum):
    """What follows a round of the loop."""

    #: Its final bias is held fixed in the rounds after it.
    FREEZE = "freeze its bias"
    #: A CV learned from its frames is biased next.
    RETRAIN = "retrain on its frames"
    #: It ran under a frozen bias: the next round runs under the same bias.
    STAY_FROZEN = "run the same frozen bias again"


@dataclass
class ExploreSettings:
    """What an explore run does: the unbiased MD, the metadynamics rounds, the trainings and when to stop.

    Attributes
    ----------
    replicas : int
        Unbiased trajectories of round 0; the last validates the first model.
    data : tuple of str
        Trajectory files of unbiased MD of the system that are round 0 instead of its own MD (the
        last validates the first model, or a single one's last 20 %); empty: round 0 runs its MD.
        They ran at ``unbiased_temperature`` (None: ``temperature``).
    data_topology : str or None
        Topology file of ``data`` for formats that hold none (:func:`~neuralct.data.load_trajectories`).
    data_frame_ps : float or None
        Time between the frames of ``data`` files that hold no time stamps (DCD), ps.
    unbiased_ns : float
        Length of each unbiased trajectory, ns.
    unbiased_report_ps : float
        Time between the unbiased frames, ps.
    round_ns : float
        Length of each metadynamics round, ns.
    max_rounds : int
        Rounds at most after round 0 (metadynamics and frozen-bias rounds).
    freeze_rate_per_ns : float
        A metadynamics round whose CV crossed every backbone phi at least this often per ns has its
        final bias frozen: the rounds after it are production runs with that bias held fixed, whose
        frames reweight exactly, until the pooled free-energy difference settles.
    tolerance_kj : float
        The loop has converged when every backbone phi's F(phi > 0) - F(phi < 0), pooled over the
        frozen-bias rounds, changed by less than this over the last one, kJ/mol.
    train_steps, batch_size : int
        Optimiser steps and batch size of every training (steps: but a kinetic one whose lag the data chose,
        which takes that objective's schedule, :meth:`~neuralct.workflows.objective.ObjectiveChoice.schedule`).
    architecture : list of dict
        Layer specs of every model (:func:`neuralct.workflows.train.architecture_from_options`).
    retrain_lag_ps : float
        Lag of the time-lagged objective on the biased frames, ps; a whole number of ``bias_report_ps``.
    retrain_time : {"simulation", "rescaled"}
        What the retraining's lag counts: simulation time, or rescaled time ``dt exp((V - c(t))/kT)``
        from the round's COLVAR (:func:`neuralct.data.pairs.rescaled_lagged_pairs`).
    temperature : float
        Temperature of the metadynamics rounds and of every estimate, K.
    unbiased_temperature : float or None
        Temperature of the unbiased MD of round 0, K (None: ``temperature``). Above ``temperature``
        the rare transitions happen in round 0, so its model is trained with the kinetic objective
        (:func:`~neuralct.workflows.objective.choose_objective`'s choice) and its slowest CV carries
        them; at ``temperature`` it is trained by maximum likelihood.
    bias_report_ps : float
        Time between the COLVAR rows and frames of a metadynamics round, ps.
    bias_every : int or None
        MD steps per evaluation of the bias (None: :func:`~neuralct.workflows.bias.default_bias_every`).
    platform : str
        OpenMM platform of every run (``auto``: each command's own choice).
    threads : int or None
        CPU threads of OpenMM's CPU platform (None: OpenMM's default).
    allow_oscillating_cvs : bool
        Bias a CV that its model records as oscillating on its training frames (refused otherwise).
    seed : int
        Seed of the MD, the metadynamics and the trainings.
    device : str
        Where the trainings run (``auto``, ``cpu``, ``cuda``).
    progress : bool
        Show progress bars.
    """

    replicas: int = 4
    data: tuple[str, ...] = ()
    data_topology: str | None = None
    data_frame_ps: float | None = None
    unbiased_ns: float = 1.0
    unbiased_report_ps: float = UNBIASED_REPORT_PS
    round_ns: float = 2.0
    max_rounds: int = MAX_ROUNDS
    freeze_rate_per_ns: float = FREEZE_RATE_PER_NS
    tolerance_kj: float = 1.0
    train_steps: int = 3000
    batch_size: int = 256
    architecture: list[dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(list(DEFAULT_ARCHITECTURE)))
    retrain_lag_ps: float = RETRAIN_LAG_PS
    retrain_time: str = "simulation"
    temperature: float = 300.0
    unbiased_temperature: float | None = None
    bias_report_ps: float = 1.0
    bias_every: int | None = None
    platform: str = "auto"
    threads: int | None = None
    allow_oscillating_cvs: bool = False
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    @property
    def round_zero_temperature(self) -> float:
        """Temperature of the unbiased MD of round 0, K."""
        return self.temperature if self.unbiased_temperature is None else self.unbiased_temperature

    @property
    def heated_round_zero(self) -> bool:
        """Whether round 0 runs above the temperature of the rounds after it."""
        return self.round_zero_temperature != self.temperature

    def simulation(self) -> SimulationSettings:
        """The settings of the unbiased MD of round 0."""
        return SimulationSettings(
            temperature=self.round_zero_temperature,
            length_ns=self.unbiased_ns,
            report_ps=self.unbiased_report_ps,
            platform=self.platform,
            threads=self.threads,
            seed=self.seed,
        )

    def bias(
        self, round_index: int, md_system: Any, frozen: tuple[int, Path] | None = None, model: Any = None
    ) -> BiasSettings:
        """The settings of round ``round_index`` (1, 2, ...) on ``md_system``, biasing ``model``'s slowest CV.

        Round 1 biases the first model's CV with ``neuralct bias``'s default width; later rounds the
        retrained CVs with :data:`LATER_WIDTH_FRACTION`. ``frozen``: the metadynamics round whose final
        bias this round holds fixed and its run folder; such a round has its own seed, ``seed +
        round_index``, so that the frozen rounds are independent runs of the same biased ensemble.
        A CV that leaves its grid, or a run that breaks down, ends the round there
        (:attr:`~neuralct.workflows.bias.BiasSettings.end_at_breakdown`): the loop learns from its frames.
        Without ``bias_every``, a CV that its training recorded as steep is biased every step
        (:func:`~neuralct.workflows.bias.default_bias_every`; ``model`` None: not known yet).
        """
        defaults = BiasSettings()
        width_index = round_index if frozen is None else frozen[0]
        return BiasSettings(
            n_cvs=1,
            temperature=self.temperature,
            length_ns=self.round_ns,
            report_ps=self.bias_report_ps,
            width_fraction=defaults.width_fraction if width_index == 1 else LATER_WIDTH_FRACTION,
            bias_every=default_bias_every(md_system, model) if self.bias_every is None else self.bias_every,
            platform=self.platform,
            threads=self.threads,
            seed=self.seed if frozen is None else self.seed + round_index,
            allow_oscillating_cvs=self.allow_oscillating_cvs,
            frozen_bias_from=None if frozen is None else str(frozen[1]),
            end_at_breakdown=True,
        )


def check_settings(settings: ExploreSettings, md_system: Any) -> PhaseSpaceData | None:
    """Refuse settings that cannot make a run of ``md_system``, before any work.

    Returns
    -------
    PhaseSpaceData or None
        The given ``data``, read and checked (:func:`_given_data`); None where round 0 runs its own MD.

    Raises
    ------
    NeuralCTError
        For fewer than 2 replicas, no round, a tolerance that is not positive, MD or metadynamics
        settings that cannot run, a retraining lag that is no whole number of metadynamics
        frames or not shorter than the validated share of a round, rounds with fewer frames to
        train on than the models have coordinates; a data topology or frame
        spacing without data, or data that cannot be read, whose frames' spacing is unknown, or
        whose atoms are not the system's (:func:`_given_data`).
    """
    if not settings.data and (settings.data_topology is not None or settings.data_frame_ps is not None):
        raise NeuralCTError("`data_topology` and `data_frame_ps` describe `data`, and no `data` was given")
    if not settings.data and settings.replicas < 2:
        raise NeuralCTError("`replicas` must be at least 2: the last one validates the first model")
    if settings.max_rounds < 1:
        raise NeuralCTError(f"`max_rounds` must be at least 1, got {settings.max_rounds}")
    if settings.retrain_time not in ("simulation", "rescaled"):
        raise NeuralCTError(f"`retrain_time` must be simulation or rescaled, got {settings.retrain_time!r}")
    if not settings.tolerance_kj > 0:
        raise NeuralCTError(f"`tolerance_kj` must be > 0, got {settings.tolerance_kj}")
    if not settings.freeze_rate_per_ns > 0:
        raise NeuralCTError(f"`freeze_rate_per_ns` must be > 0, got {settings.freeze_rate_per_ns}")
    if settings.round_zero_temperature < settings.temperature:
        raise NeuralCTError(
            f"`unbiased_temperature` {settings.round_zero_temperature:g} K is below `temperature` "
            f"{settings.temperature:g} K: round 0 is heated to make the rare transitions, never cooled"
        )
    if settings.heated_round_zero and md_system.periodic and not settings.data:
        raise NeuralCTError(
            f"`unbiased_temperature` {settings.round_zero_temperature:g} K in explicit water: the barostat's water "
            f"would boil; heat round 0 only in vacuum or implicit solvent"
        )
    if settings.data:
        given = _given_data(settings, md_system)
    else:
        given = None
        settings.simulation().validate()
    round_settings = settings.bias(2, md_system)
    round_settings.validate()
    frames = lag_in_frames(settings.retrain_lag_ps, settings.bias_report_ps, "`retrain_lag_ps`")
    if frames >= (1 - _TRAINED_SHARE) * round_settings.n_reports:
        raise NeuralCTError(
            f"`round_ns` {settings.round_ns:g} leaves fewer than {frames} frames ({settings.retrain_lag_ps:g} ps, the "
            f"retraining lag) in the {1 - _TRAINED_SHARE:.0%} of a round that validates its model; use longer rounds"
        )
    _check_frames_to_train_on(settings, md_system, round_settings.n_reports, given)
    return given


def _check_frames_to_train_on(settings: ExploreSettings, md_system: Any, round_frames: int, given: Any) -> None:
    """Refuse rounds with fewer frames to train on than the models have coordinates (their solute's heavy atoms)."""
    import mdtraj

    from ..data.loading import solute_heavy_atom_indices

    coordinates = 3 * len(solute_heavy_atom_indices(mdtraj.Topology.from_openmm(md_system.topology))) - 6
    if given is None:
        unbiased = (settings.replicas - 1) * settings.simulation().n_frames
        if unbiased <= coordinates:
            raise NeuralCTError(
                f"round 0 would train on {unbiased} frames ({settings.replicas - 1} replicas of `unbiased_ns` "
                f"{settings.unbiased_ns:g}) for {coordinates} coordinates (need more); use longer or more replicas"
            )
    if int(_TRAINED_SHARE * round_frames) <= coordinates:
        raise NeuralCTError(
            f"a round of `round_ns` {settings.round_ns:g} would train on {int(_TRAINED_SHARE * round_frames)} frames "
            f"for {coordinates} coordinates (need more); use longer rounds"
        )


@dataclass
class StoppingVerdict:
    """Whether the loop has converged after a round, and why (not).

    Attributes
    ----------
    converged : bool
        Every backbone phi crossed in both of the last two rounds and its reweighted F(phi > 0) - F(phi < 0)
        changed by less than the tolerance.
    reason : str
        Why, in words.
    changes_kj : dict of str to float
        Each phi's change of F(phi > 0) - F(phi < 0) between the last two rounds, kJ/mol, where both have it.
    """

    converged: bool
    reason: str
    changes_kj: dict[str, float] = field(default_factory=dict)


def stopping_verdict(
    previous: dict[str, dict[str, Any]] | None,
    last: dict[str, dict[str, Any]],
    tolerance_kj: float,
    pooled_runs: Sequence[tuple[int, dict[str, dict[str, Any]]]] = (),
) -> StoppingVerdict:
    """Whether the free energy between the states settled between two estimates (before and after a round).

    Parameters
    ----------
    previous, last : dict of str to dict
        Each backbone phi's figures before and after the last round (in the loop: the frozen rounds
        pooled without and with it), as a bias run's
        ``summary.json`` holds them under ``phi_torsions``: ``phi_transitions`` and
        ``delta_F_phi_positive_minus_negative_kj`` (kJ/mol, None where not computed). ``previous`` is
        None after the first round.
    tolerance_kj : float
        The largest change, kJ/mol, that counts as settled (exclusive).
    pooled_runs : sequence of (int, dict)
        The round number and each phi's own figures of every run pooled into ``last`` (the frozen
        rounds). A run whose own difference is undefined for a phi (a basin not entered, or its
        weight in fewer than two Kish blocks of its own) did not sample the frozen bias's ensemble;
        such runs can agree with each other on a wrong pooled value with a small block error
        (benchmarks/README.md, B3: 15.9 +- 1.3 against 9.2 kJ/mol), so no verdict rests on them.

    Returns
    -------
    StoppingVerdict
        Converged only where ``last`` has a phi, every pooled run has its own difference for every
        phi, every phi was crossed in both rounds, its difference changed by less than
        ``tolerance_kj`` and its block standard error (``delta_F_standard_error_kj``) in both rounds
        is below ``tolerance_kj`` too.
    """
    if not last:
        return StoppingVerdict(False, "no states defined: the molecule has no backbone phi")
    if previous is None:
        return StoppingVerdict(False, "one round: nothing to compare with yet")
    for number, torsions in pooled_runs:
        for name, figures in torsions.items():
            if figures.get("delta_F_phi_positive_minus_negative_kj") is None:
                why = figures.get("delta_F_not_computed_because") or "not computed"
                return StoppingVerdict(
                    False,
                    f"round {number} gives no F({name}>0) - F({name}<0) of its own ({why}): a run that did not sample "
                    "its bias's ensemble, so the pooled estimate is not trusted",
                )
    changes = {}
    for name, figures in last.items():
        rounds = (("the round before", previous.get(name, {})), ("the last round", figures))
        uncrossed = [which for which, round_figures in rounds if not round_figures.get("phi_transitions")]
        if uncrossed:
            return StoppingVerdict(False, f"no {name} transitions in {' or in '.join(uncrossed)}", changes)
        values = [round_figures.get("delta_F_phi_positive_minus_negative_kj") for _, round_figures in rounds]
        if None in values:
            return StoppingVerdict(False, f"F({name}>0) - F({name}<0) not computed in both rounds", changes)
        changes[name] = values[1] - values[0]
    moved = {name: change for name, change in changes.items() if not abs(change) < tolerance_kj}
    if moved:
        name, change = max(moved.items(), key=lambda item: abs(item[1]))
        return StoppingVerdict(
            False, f"F({name}>0) - F({name}<0) changed by {change:+.2f} kJ/mol (tolerance {tolerance_kj:g})", changes
        )
    # A change inside the tolerance says nothing while either estimate is less certain than that.
    for name, figures in last.items():
        for which, round_figures in (("the round before", previous[name]), ("the last round", figures)):
            error = round_figures.get("delta_F_standard_error_kj")
            if error is None or not error < tolerance_kj:
                shown = "undefined" if error is None else f"{error:.2f} kJ/mol"
                return StoppingVerdict(
                    False,
                    f"F({name}>0) - F({name}<0) changed by {changes[name]:+.2f} kJ/mol, but its block standard error "
                    f"in {which} is {shown} (tolerance {tolerance_kj:g})",
                    changes,
                )
    largest = max(abs(change) for change in changes.values())
    return StoppingVerdict(
        True,
        f"F(phi>0) - F(phi<0) changed by at most {largest:.2f} kJ/mol, block standard errors below "
        f"{tolerance_kj:g} in both rounds (tolerance {tolerance_kj:g})",
        changes,
    )


def run_explore(
    md_system: Any, settings: ExploreSettings, output: Path, announce: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run (or resume) the loop into ``output``: unbiased MD (or data), then metadynamics and retraining until settled.

    Parameters
    ----------
    md_system : neuralct.md.systems.MDSystem
        The system, as ``neuralct simulate`` and ``neuralct bias`` build it; never changed (each
        metadynamics round adds its bias to a copy of its OpenMM System).
    settings : ExploreSettings
        What to run (:func:`check_settings` refuses what cannot run).
    output : Path
        The run's folder; each step is skipped when finished there, or resumes what an earlier run left.
    announce : callable
        Called with one line per round when its figures are in (:func:`round_line`).

    Returns
    -------
    dict
        The summary written to ``output/summary.json``: ``rounds`` (per round: the run, phi transitions
        in all and per ns, each phi's reweighted F(phi > 0) - F(phi < 0) with its block standard error,
        the model trained on the round and its objective, the stopping verdict), ``converged``,
        ``stopped_because``, ``final_model`` and ``export``.
    """
    unbiased = check_settings(settings, md_system)
    output = Path(output)
    if unbiased is not None:
        run = ", ".join(settings.data)
    else:
        md_folder = output / "round-0" / "md"
        _simulate(md_system, settings, md_folder)
        unbiased = _load(sorted(md_folder.glob("replica-*.nc")), settings, settings.round_zero_temperature)
        run = str(md_folder)
    torsions, ns = _unbiased_phi_figures(unbiased, settings)
    # Heated, round 0 makes the rare transitions, and the kinetic objective finds them; at the temperature of the
    # rounds it does not, and the density's softest modes carry more of them (module docstring).
    first_objective = {} if settings.heated_round_zero else {"objective": "density"}
    model, training = _train(unbiased, output / "round-0" / "model", settings, first_objective)
    rounds = [_round_entry(0, run, ns, torsions, output / "round-0" / "model", training)]
    rounds[0]["temperature_k"] = settings.round_zero_temperature
    rounds[0]["given_data"] = bool(settings.data)
    announce(round_line(rounds[-1]))
    previous, verdict = None, StoppingVerdict(False, "no metadynamics round")
    # The metadynamics round whose bias is frozen (its index and run folder), and the frozen rounds so far.
    frozen: tuple[int, Path] | None = None
    frozen_runs: list[tuple[int, Path]] = []
    frozen_torsions: list[tuple[int, dict[str, dict[str, Any]]]] = []
    pairs = phi_psi_pairs(backbone_torsions(md_system.topology, BiasSettings()))
    biased_model = output / "round-0" / "model" / "model.pt"
    for index in range(1, settings.max_rounds + 1):
        folder = output / f"round-{index}"
        biased = _metadynamics(
            md_system, model, settings.bias(index, md_system, frozen, model), folder / "bias", settings.progress
        )
        # A steep CV is biased every step (when `bias_every` is left to explore): the round's line says so.
        steep = steep_cvs(model, 1) if settings.bias_every is None else []
        if frozen is None:
            next_step, verdict = _after_metadynamics(biased, settings, index == settings.max_rounds)
            estimate = None
        else:
            next_step = NextStep.STAY_FROZEN
            frozen_runs.append((index, folder / "bias"))
            frozen_torsions.append((index, biased["phi_torsions"]))
            estimate = _frozen_estimate([run for _, run in frozen_runs], settings, list(pairs))
            verdict = stopping_verdict(previous, estimate, settings.tolerance_kj, frozen_torsions)
        stop = verdict.converged or index == settings.max_rounds
        trained_folder, training = None, None
        if not stop and next_step is NextStep.RETRAIN:
            retrain = {"lag_ps": settings.retrain_lag_ps, "vamp_weight": KINETIC_VAMP_WEIGHT}
            trained_folder = folder / "model"
            biased_frames = _load([folder / "bias" / "trajectory.nc"], settings, settings.temperature)
            rescaled = None
            if settings.retrain_time == "rescaled":
                colvar = folder / "bias" / "COLVAR"
                kT = kT_kj_per_mol(settings.temperature)
                rescaled = RescaledTime(frame_log_weights(colvar, "colvar", biased_frames.n_frames, kT)[0], str(colvar))
            try:
                model, training = _train(biased_frames, trained_folder, settings, retrain, rescaled)
            except NeuralCTError as error:
                if biased.get("ended_early") is None:
                    raise
                # What is wrong, without `train`'s advice, which names options explore has not.
                raise NeuralCTError(
                    f"round {index} ended early ({biased['ended_early']}), and no CV can be learned from its frames "
                    f"({error.what})",
                    "rerun with another `seed`",
                ) from None
        entry = _round_entry(
            index, folder / "bias", biased["ns_simulated"], biased["phi_torsions"], trained_folder, training
        )
        entry["kind"] = "metadynamics" if frozen is None else f"frozen bias of round {frozen[0]}"
        entry["ended_early"] = biased.get("ended_early")
        entry["biased_model"] = str(biased_model)
        entry["width_fraction"] = biased["settings"]["width_fraction"]
        entry["bias_every"] = biased["settings"]["bias_every"]
        entry["steep_cvs"] = steep
        if estimate is not None:
            entry["pooled"] = {"rounds": [number for number, _ in frozen_runs], "phi_torsions": estimate}
        entry["verdict"] = {"converged": verdict.converged, "reason": verdict.reason, "changes_kj": verdict.changes_kj}
        rounds.append(entry)
        announce(round_line(entry))
        if stop:
            break
        if next_step is NextStep.FREEZE:
            frozen = (index, folder / "bias")
        elif next_step is NextStep.RETRAIN:
            biased_model = trained_folder / "model.pt"
        previous = estimate
    final_model = rounds[-1]["biased_model"]
    export = _export(load(final_model), final_model, output / "export", md_system)
    runs = [run for _, run in frozen_runs]
    surfaces = _frozen_surfaces(runs, output / "free-energy", settings, pairs) if runs else {}
    summary = {
        "system": md_system.name,
        "rounds": rounds,
        "converged": verdict.converged,
        "stopped_because": verdict.reason if verdict.converged else _not_converged(verdict, settings.max_rounds),
        "tolerance_kj": settings.tolerance_kj,
        "final_model": final_model,
        "final_model_is": "the model whose slowest CV the last round biased",
        "final_estimate": rounds[-1].get("pooled"),
        "final_estimate_is": "each phi's F(phi > 0) - F(phi < 0) over the frames of the frozen-bias rounds pooled, "
        "reweighted with the frozen bias (exact); null where no round was frozen",
        "final_surfaces": {f"free-energy/{name}": meaning for name, meaning in surfaces.items()},
        "freeze_rate_per_ns": settings.freeze_rate_per_ns,
        "export": str(output / "export"),
        "exported_cvs": [cv["name"] for cv in export["cvs"]],
        "retraining": {
            "objective": "kinetic (time-lagged) on each round's biased frames, configuration only",
            "lag_ps": settings.retrain_lag_ps,
            "time": settings.retrain_time,
            "vamp_weight": KINETIC_VAMP_WEIGHT,
        },
        "later_width_fraction": LATER_WIDTH_FRACTION,
    }
    write_json(output / "summary.json", summary)
    return summary


def _after_metadynamics(
    biased: dict[str, Any], settings: ExploreSettings, last_round: bool
) -> tuple[NextStep, StoppingVerdict]:
    """What follows a metadynamics round, and why it does not end the loop.

    A metadynamics round never ends the loop: its free energy is not the answer, a frozen bias's
    is. The Tiwary-Parrinello estimate of a bias still growing scattered by several kJ/mol over the
    loop's 2 ns rounds, where the frozen bias's exact reweighting did not (benchmarks/README.md, B3).

    Parameters
    ----------
    biased : dict
        The round's summary (:func:`~neuralct.workflows.bias.run_metadynamics`).
    settings : ExploreSettings
        The loop's settings (``freeze_rate_per_ns``).
    last_round : bool
        No round follows this one.

    Returns
    -------
    next_step : NextStep
        ``FREEZE``: its CV crossed every backbone phi at least ``freeze_rate_per_ns`` times per ns,
        and its final bias is held fixed in the rounds after it; ``RETRAIN``: fewer, or the round
        ended early (its CV left its grid, or the run broke down), and a CV learned from its frames
        is biased next.
    verdict : StoppingVerdict
        Not converged, and why in words.
    """
    torsions, ended = biased["phi_torsions"], biased.get("ended_early")
    if ended is not None:
        then = "no round is left to learn a CV from its frames" if last_round else "a CV is learned from its frames"
        return NextStep.RETRAIN, StoppingVerdict(False, f"the round ended early ({ended}): {then}")
    if not torsions:
        return NextStep.RETRAIN, StoppingVerdict(False, "no states defined: the molecule has no backbone phi")
    if _drives_every_phi(torsions, settings.freeze_rate_per_ns):
        if last_round:
            reason = "the CV drove every phi, but no round is left to run under its frozen bias"
            return NextStep.FREEZE, StoppingVerdict(False, reason)
        reason = "the CV drove every phi: its bias is frozen for the rounds that follow"
        return NextStep.FREEZE, StoppingVerdict(False, reason)
    slowest = min(torsions, key=lambda name: torsions[name]["phi_transitions_per_ns"])
    return NextStep.RETRAIN, StoppingVerdict(
        False,
        f"{slowest} crossed {torsions[slowest]['phi_transitions_per_ns']:.1f} times per ns, under the "
        f"{settings.freeze_rate_per_ns:g} per ns at which a bias is frozen",
    )


def _drives_every_phi(torsions: dict[str, dict[str, Any]], freeze_rate_per_ns: float) -> bool:
    """Whether a round crossed every backbone phi at least ``freeze_rate_per_ns`` times per ns (False without one)."""
    return bool(torsions) and all(
        figures["phi_transitions_per_ns"] >= freeze_rate_per_ns for figures in torsions.values()
    )


def _frozen_estimate(runs: list[Path], settings: ExploreSettings, phi_names: list[str]) -> dict[str, dict[str, Any]]:
    """Each backbone phi's figures over the frozen-bias runs ``runs`` pooled (their COLVARs one after another).

    The runs hold the same bias fixed, so their frames are draws of one biased ensemble and the
    weights exp((V(s) - c)/kT) are exact and comparable across them; transitions are counted run by
    run (a run's start does not continue the run before it).
    """
    series, weights, ns = _frozen_frames(runs, settings)
    phis = {name: series[name] for name in phi_names}
    return _pooled_phi_figures(phis, weights, ns, kT_kj_per_mol(settings.temperature))


def _frozen_surfaces(
    runs: list[Path], folder: Path, settings: ExploreSettings, pairs: dict[str, str | None]
) -> dict[str, str]:
    """Write each residue's phi/psi free energy over the frozen-bias runs pooled into ``folder``; files and meanings.

    ``pairs``: each backbone phi's COLVAR name with its residue's psi (:func:`~neuralct.workflows.bias.phi_psi_pairs`).
    """
    series, weights, _ = _frozen_frames(runs, settings)
    folder = prepare_output_dir(folder)
    surfaces = {}
    for phi_name, psi_name in pairs.items():
        if psi_name is not None:
            phi, psi = (np.concatenate(series[name]) for name in (phi_name, psi_name))
            surfaces |= write_phi_psi_surface(
                folder,
                phi_name,
                psi_name,
                phi,
                psi,
                weights,
                kT_kj_per_mol(settings.temperature),
                "frozen-bias rounds pooled, exact weights",
            )
    return surfaces


def _frozen_frames(
    runs: list[Path], settings: ExploreSettings
) -> tuple[dict[str, list[np.ndarray]], np.ndarray, float]:
    """The COLVAR columns of the frozen-bias runs ``runs`` and the frames' exact weights.

    Returns
    -------
    series : dict of str to list of np.ndarray
        Each COLVAR column per run, shape (n_frames_of_run,).
    weights : np.ndarray, shape=(n_frames,)
        exp((V(s) - c)/kT) of every frame, the runs one after another, the largest 1.
    ns : float
        The runs' total length, ns.
    """
    series: dict[str, list[np.ndarray]] = {}
    for run in runs:
        fields, table = read_colvar(run / "COLVAR")
        for column, name in enumerate(fields[1:], start=1):
            series.setdefault(name, []).append(table[:, column])
    rbias = np.concatenate(series["rbias"])
    ns = len(rbias) * settings.bias_report_ps / 1000.0
    return series, metadynamics_weights(rbias, kT_kj_per_mol(settings.temperature)), ns


def _not_converged(verdict: StoppingVerdict, max_rounds: int) -> str:
    """Why a loop that ran all its rounds did not converge."""
    return f"did not converge in {max_rounds} round(s): {verdict.reason}"


def round_line(entry: dict[str, Any]) -> str:
    """One line of a round's figures: what ran, each phi's transitions and reweighted free-energy difference.

    Parameters
    ----------
    entry : dict
        One of the ``rounds`` of :func:`run_explore`'s summary.
    """
    if entry["round"] == 0:
        source = "the given unbiased trajectories" if entry.get("given_data") else "unbiased MD"
        what = f"round 0, {source} at {entry['temperature_k']:g} K ({entry['ns_simulated']:.3g} ns)"
    elif entry["kind"] == "metadynamics":
        what = f"round {entry['round']}, metadynamics on the slowest CV ({entry['ns_simulated']:.3g} ns)"
    else:
        what = f"round {entry['round']}, the slowest CV under the {entry['kind']} ({entry['ns_simulated']:.3g} ns)"
    line = f"{what}: {_phi_words(entry['phi_torsions'])}"
    if entry.get("steep_cvs"):
        line += f"; biased every step: {', '.join(entry['steep_cvs'])} steep on its training frames"
    if entry.get("ended_early"):
        line += f"; ended early: {entry['ended_early']}"
    if "pooled" in entry:
        rounds = ", ".join(str(number) for number in entry["pooled"]["rounds"])
        line += f"; frozen rounds {rounds} pooled: {_difference_words(entry['pooled']['phi_torsions'])}"
    if entry["objective"] is not None:
        line += f"; trained: {entry['objective']['description']}"
    if "verdict" in entry:
        line += f"; {'converged' if entry['verdict']['converged'] else 'not converged'}: {entry['verdict']['reason']}"
    return line


def final_line(summary: dict[str, Any]) -> str:
    """The run's last line: converged or not, each phi's reweighted difference and the last round's transitions."""
    last = summary["rounds"][-1]
    head = f"converged after round {last['round']}" if summary["converged"] else summary["stopped_because"]
    if not last["phi_torsions"]:
        return f"{head}; final model {summary['final_model']}, exported to {summary['export']}"
    if "pooled" in last:
        rounds = ", ".join(str(number) for number in last["pooled"]["rounds"])
        where = f"frozen rounds {rounds} pooled: {_difference_words(last['pooled']['phi_torsions'])}"
    else:
        where = f"round {last['round']}: {_difference_words(last['phi_torsions'])}"
    return (
        f"{head}; {where}, {last['phi_transitions_per_ns']:.1f} phi transitions per ns in round {last['round']}; "
        f"final model {summary['final_model']}, exported to {summary['export']}"
    )


def _difference_words(torsions: dict[str, dict[str, Any]]) -> str:
    """Each phi's reweighted F(phi > 0) - F(phi < 0) in words."""
    return "; ".join(
        f"F({name}>0) - F({name}<0) {FreeEnergyDifference.from_figures(figures).describe()}"
        for name, figures in torsions.items()
    )


def _phi_words(torsions: dict[str, dict[str, Any]]) -> str:
    """Each phi's transitions and reweighted free-energy difference in words."""
    if not torsions:
        return "no backbone phi, so no states defined"
    return "; ".join(
        f"{figures['phi_transitions']} {name} transitions ({figures['phi_transitions_per_ns']:.1f}/ns), "
        f"F({name}>0) - F({name}<0) {FreeEnergyDifference.from_figures(figures).describe()}"
        for name, figures in torsions.items()
    )


def _round_entry(
    index: int,
    run: Path | str,
    ns: float,
    torsions: dict[str, dict[str, Any]],
    model_folder: Path | None,
    training: dict[str, Any] | None,
) -> dict[str, Any]:
    """A round's figures for the summary: its run, phi transitions, free-energy differences and trained model."""
    transitions = sum(figures["phi_transitions"] for figures in torsions.values())
    return {
        "round": index,
        "run": str(run),
        "ns_simulated": ns,
        "phi_transitions": transitions,
        "phi_transitions_per_ns": transitions / ns,
        "phi_torsions": torsions,
        "model": None if model_folder is None else str(model_folder / "model.pt"),
        "objective": None if training is None else training["objective"],
        "validation_nll": None if training is None else training["validation_nll"][-1],
    }


def _simulate(md_system: Any, settings: ExploreSettings, folder: Path) -> dict[str, Any]:
    """The unbiased MD of round 0 into ``folder``: run, resumed, or read where it finished; its summary.

    Raises
    ------
    NeuralCTError
        If the MD blew up, in words that name what explore can change.
    """
    folder = prepare_output_dir(folder)
    if (folder / "summary.json").exists():
        return json.loads((folder / "summary.json").read_text())
    try:
        return run_simulation(
            md_system, folder, settings.simulation(), replicas=settings.replicas, progress=settings.progress
        )
    except RunBrokeDown as error:
        raise NeuralCTError(
            f"round 0's MD: {error.what}; check the structure and its force field, or rerun with another `seed`"
        ) from None


def _load(
    paths: Sequence[Path | str],
    settings: ExploreSettings,
    temperature: float,
    topology: str | None = None,
    frame_ps: float | None = None,
) -> PhaseSpaceData:
    """The heavy atoms of trajectories that ran at ``temperature`` (K), as every model of the loop trains on them.

    ``topology`` and ``frame_ps`` (ps between frames of files without time stamps): those of given
    data; the loop's own runs find their topology and carry their stamps.
    """
    return load_trajectories(
        [str(path) for path in paths],
        topology=topology,
        selection="heavy",
        temperature=temperature,
        momenta="auto",
        seed=settings.seed,
        frame_ps=frame_ps,
    )


def _given_data(settings: ExploreSettings, md_system: Any) -> PhaseSpaceData:
    """``settings.data`` loaded as round 0's model trains on them, once checked that the loop can use them.

    Raises
    ------
    NeuralCTError
        If the files cannot be read (:func:`~neuralct.data.load_trajectories`), record another
        temperature than round 0's, their frames'
        spacing is unknown (files without time stamps and no ``data_frame_ps``), or a model of them
        could not be biased in ``md_system``, which must hold their atoms as ``neuralct bias`` finds
        them (:func:`~neuralct.model.molecular.molecule_atoms`): the same atoms, or its solute's.
    """
    import mdtraj

    try:
        data = _load(
            settings.data, settings, settings.round_zero_temperature, settings.data_topology, settings.data_frame_ps
        )
    except TemperatureMismatch as error:
        raise NeuralCTError(
            error.what,
            "the data are round 0, which runs at `unbiased_temperature` (default `temperature`): give theirs",
        ) from None
    if data.timestep_ps is None:
        raise NeuralCTError(data.timestep_note.replace("`frame_ps`", "`data_frame_ps`"))
    topology = mdtraj.Topology.from_openmm(md_system.topology)
    molecule_atoms(molecule_metadata(data, "heavy"), topology, f"system {md_system.name}", "the `data` are of")
    return data


def _train(
    data: PhaseSpaceData,
    folder: Path,
    settings: ExploreSettings,
    objective: dict[str, Any],
    rescaled_time: RescaledTime | None = None,
) -> tuple[NeuralCanonicalTransformation, dict[str, Any]]:
    """A model trained on ``data`` (the last trajectory, or a single one's last 20 %, validates) into ``folder``.

    Read where it finished, resumed from its checkpoint otherwise. ``objective`` holds the
    arguments of :func:`~neuralct.workflows.objective.choose_objective` that ask for it; ``rescaled_time``, the
    bias of the frames' run, makes the lags rescaled time (:func:`~neuralct.workflows.objective.fit_with_choice`).
    Writes ``model.pt``, then ``summary.json`` (the mark of a finished step, with the objective chosen).
    """
    folder = prepare_output_dir(folder)
    if (folder / "summary.json").exists() and (folder / "model.pt").exists():
        return load(folder / "model.pt"), json.loads((folder / "summary.json").read_text())
    choice: ObjectiveChoice = choose_objective(data, 1, **objective)
    # The kinetic objective with its lag chosen from the data trains as `neuralct train` trains it (its schedule).
    steps, learning_rate = (
        choice.schedule() if choice.lag_from_data else (settings.train_steps, TrainingSettings.learning_rate)
    )
    training = TrainingSettings(
        steps=steps, learning_rate=learning_rate, batch_size=settings.batch_size, progress=settings.progress
    )
    model, summary = fit_with_choice(
        data,
        choice,
        copy.deepcopy(settings.architecture),
        training,
        folder,
        settings.device,
        settings.seed,
        rescaled_time,
    )
    return model.cpu(), summary


def _metadynamics(
    md_system: Any, model: NeuralCanonicalTransformation, settings: BiasSettings, folder: Path, progress: bool
) -> dict[str, Any]:
    """One metadynamics round into ``folder``: run, resumed, or read where it finished; its summary.

    Torch runs the CV on one thread meanwhile (the CV of one small molecule is latency-bound, and
    MD runs beside it).

    Raises
    ------
    NeuralCTError
        If the run broke down before its first report (later, it ends there: ``end_at_breakdown``).
    """
    import torch

    folder = prepare_output_dir(folder)
    if (folder / "summary.json").exists():
        return json.loads((folder / "summary.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_metadynamics(md_system, model, folder, settings, progress=progress)
    except RunBrokeDown as error:
        raise NeuralCTError(
            f"{folder.parent.name.replace('-', ' ')}: {error.what} before its first report; rerun with another `seed`"
        ) from None
    finally:
        torch.set_num_threads(threads)


def _unbiased_phi_figures(data: PhaseSpaceData, settings: ExploreSettings) -> tuple[dict[str, dict[str, Any]], float]:
    """Each backbone phi's transitions (summed over the trajectories) and F(phi > 0) - F(phi < 0) of unbiased MD.

    The figures are those a bias run's summary holds per phi (``phi_torsions``), the frames
    weighing the same; the difference uses the trajectories' frames one after another. The
    angles come from the loaded heavy atoms (whole molecules, rotations leave torsions as they
    are). Also returns the trajectories' total length in ns (``data.timestep_ps`` known).
    """
    torsions = {
        name: dihedral
        for name, dihedral in backbone_torsions(data.selection_topology.to_openmm(), BiasSettings()).items()
        if dihedral.kind == "phi"
    }
    values = dihedral_angles(data.positions.astype(np.float64), list(torsions.values()))
    ends = np.cumsum(data.traj_lengths)[:-1]
    angles = {name: np.split(values[:, column], ends) for column, name in enumerate(torsions)}
    frames = len(data.positions)
    ns = frames * data.timestep_ps / 1000.0
    figures = _pooled_phi_figures(angles, np.ones(frames), ns, kT_kj_per_mol(settings.round_zero_temperature))
    return figures, ns


def _pooled_phi_figures(
    angles: dict[str, list[np.ndarray]], weights: np.ndarray, ns: float, kT: float
) -> dict[str, dict[str, Any]]:
    """Each phi's figures over runs taken one after another, as a bias run's summary holds them (``phi_torsions``).

    Parameters
    ----------
    angles : dict of str to list of np.ndarray
        Each phi's values per run, rad, shape (n_frames_of_run,).
    weights : np.ndarray, shape=(n_frames,)
        The frames' weights, the runs one after another.
    ns : float
        The runs' total length, ns.
    kT : float
        Thermal energy, kJ/mol.
    """
    figures = {}
    for name, series in angles.items():
        transitions = sum(count_transitions(values) for values in series)
        figures[name] = {
            "phi_transitions": transitions,
            "phi_transitions_per_ns": transitions / ns,
            **phi_free_energy_difference(np.concatenate(series), weights, kT).figures(),
        }
    return figures


def _export(model: NeuralCanonicalTransformation, model_path: str, folder: Path, md_system: Any) -> dict[str, Any]:
    """The model's CVs exported into ``folder`` as ``neuralct export`` writes them (its default 2 CVs) for the
    loop's system (its whole box in water: the model's atoms are its solute's); the manifest.

    Written again by every run (a few seconds), so a rerun restores an export file deleted or edited.
    """
    import mdtraj

    from ..export import export_cvs, write_export_summary

    start = time.perf_counter()
    (folder / "manifest.json").unlink(missing_ok=True)  # the files it lists are written again, atomically
    system = mdtraj.Topology.from_openmm(md_system.topology)
    export_cvs(model, folder, 2, model_path=model_path, system=system, system_source=f"system {md_system.name}")
    write_export_summary(folder, {"export_seconds": time.perf_counter() - start})
    return json.loads((folder / "manifest.json").read_text())
