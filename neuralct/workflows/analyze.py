"""``neuralct analyze`` as a function: project trajectories on the slow modes and measure what they mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..analysis.report import Segment
from ..analysis.training_match import frames_found, holds_marked_frames, marked_frames, marks_found
from ..data.pairs import lag_in_frames
from ..errors import NeuralCTError
from ..io import prepare_output_dir, sha256, write_json

__all__ = ["analyze_trajectories", "scoring_split", "default_lag_frames", "DEFAULT_LAG_FRAMES"]

#: Frames per lag when no lag is given, and the least number of lags per scored segment.
DEFAULT_LAG_FRAMES = 10
LAGS_PER_SEGMENT = 10

BLOCKS_CAVEAT = (
    "scored on contiguous blocks of one trajectory: neighbouring blocks are correlated in time, so the "
    "standard error from their spread understates the uncertainty; give several independent trajectories "
    "for trustworthy error bars"
)


def _blocks(trajectory: int, start: int, stop: int, n_blocks: int) -> list[Segment]:
    """``n_blocks`` contiguous, equally long segments of frames ``start:stop`` of one trajectory."""
    edges = np.linspace(start, stop, n_blocks + 1).round().astype(int)
    return [(trajectory, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


#: Share of one trajectory's evenly spaced frames found in another above which the two hold the same frames (a
#: copy): replicas started from one structure share their first frame at most.
COPY_SHARE = 0.5


def _refuse_copies(paths: Sequence[str], features: Sequence[np.ndarray] | None) -> None:
    """Refuse two given trajectories that hold the same frames (a copy in another format, a subsampled one): one
    would fit the baselines and the other be scored on the same frames, or count as a second independent score.

    ``features``: each trajectory's internal coordinates (n_frames, dim); evenly spaced frames of each are looked
    for in the others (:func:`~neuralct.analysis.training_match.marks_found`), and two trajectories are copies
    where :data:`COPY_SHARE` or more of one's are found in the other.
    """
    if features is None or len(features) < 2:
        return
    marks = [first[marked_frames(len(first), first.shape[1], 1)] for first in features]
    firsts = np.stack([own[0] for own in marks])
    for j, other in enumerate(features):
        # One of two copies holds the other's first frame: the first frames are looked for first, all at once.
        for i in np.flatnonzero(frames_found(other, firsts)):
            if i != j and marks_found(other, marks[i]) >= COPY_SHARE * len(marks[i]):
                first, second = sorted((i, j))
                raise NeuralCTError(
                    f"trajectories {paths[first]} and {paths[second]} hold the same frames (a copy, in another "
                    "format or subsampled?); give each trajectory once, so that no frame is both fitted and scored"
                )


def scoring_split(
    paths: Sequence[str],
    traj_lengths: Sequence[int],
    model_metadata: dict[str, Any],
    test_trajectories: int | None = None,
    blocks: int = 4,
    features: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Which frames fit the baselines and which are scored, so that no score uses data that trained the model.

    A trajectory that trained the model, or that selected its kept state (the validation
    trajectories), is never scored: known by its path, by its content (SHA-256) where the model
    records it, or by its frames: one that holds a frame the model kept of one of those trajectories
    (``features``: each trajectory's internal coordinates, compared by
    :func:`~neuralct.analysis.training_match.holds_marked_frames`) holds their frames (a rerun with the
    same seed that stopped earlier or went on, a copy in another format). Of the others (unseen):

    - when some given trajectories trained the model, they fit the baselines (TICA, PCA,
      the VAMP models and state classifiers) and the unseen ones are scored;
    - otherwise the last ``test_trajectories`` unseen ones (default: half) are scored and
      the rest fit the baselines; a single unseen trajectory is split in time: its first
      half fits, its second half is scored.

    Several scored trajectories give one VAMP-2 each (the error bar); a single scored
    trajectory (or half) is cut into ``blocks`` contiguous blocks instead, and the
    caveat is recorded.

    Returns
    -------
    dict
        ``fit`` and ``scored`` (lists of :data:`~neuralct.analysis.report.Segment`), and
        ``record``: the split for summary.json (trajectory roles, segments, caveat). ``scored``
        is empty, and ``record["no_scores"]`` says why, when every trajectory was seen in training.
    """
    molecule = model_metadata.get("molecule", {})
    digests = molecule.get("trajectory_sha256") or {}
    trained = set(molecule.get("training_trajectories", []))
    validation = molecule.get("validation_trajectories")
    # A trajectory is known by its path, or by its content (a copy, a moved folder) where the model records it.
    trained |= {digests[p] for p in trained if p in digests}
    validated = set(validation or []) | {digests[p] for p in validation or [] if p in digests}
    known = [{str(Path(p).resolve())} | ({sha256(p)} if digests else set()) for p in paths]
    # The model's trajectories (by path) whose kept frames a given trajectory holds.
    recorded = molecule.get("frame_marks") or {}
    shared = [
        {path for path, kept in recorded.items() if features is not None and holds_marked_frames(features[i], kept)}
        for i in range(len(paths))
    ]
    in_training = [i for i, keys in enumerate(known) if keys & trained or shared[i] & trained]
    in_validation = [
        i for i, keys in enumerate(known) if validation is not None and (keys & validated or shared[i] & validated)
    ]
    unseen = [i for i in range(len(paths)) if i not in in_training and i not in in_validation]
    _refuse_copies([paths[i] for i in unseen], None if features is None else [features[i] for i in unseen])
    if not 2 <= blocks <= 100:
        raise NeuralCTError(f"`blocks` must be between 2 and 100, got {blocks}")
    record: dict[str, Any] = {
        "trained_the_model": [str(paths[i]) for i in in_training],
        "selected_the_kept_state": [str(paths[i]) for i in in_validation]
        if validation is not None
        else ("not recorded in this model file: a given trajectory that validated the model may be scored"),
        "never_seen_by_the_model": [str(paths[i]) for i in unseen],
    }
    by_frames = {
        str(paths[i]): sorted(shared[i] & (trained | validated))
        for i in in_training + in_validation
        if not known[i] & (trained | validated)
    }
    if by_frames:
        record["holds_frames_of"] = by_frames
    fit: list[Segment] = []
    if not unseen:
        record["no_scores"] = (
            "every trajectory given trained the model or selected its kept state; give a trajectory it has not "
            "seen for VAMP-2, mutual information and state scores"
        )
        return {"fit": [], "scored": [], "record": record}
    if in_training:
        fit = [(i, 0, traj_lengths[i]) for i in in_training]
        scored_trajectories = unseen
        record["how"] = "the trajectories that trained the model fit the baselines; the ones it never saw are scored"
    elif len(unseen) >= 2:
        k = max(1, len(unseen) // 2) if test_trajectories is None else test_trajectories
        if not 1 <= k < len(unseen):
            raise NeuralCTError(
                f"--test-trajectories must be between 1 and {len(unseen) - 1} for {len(unseen)} trajectories the "
                "model never saw"
            )
        fit = [(i, 0, traj_lengths[i]) for i in unseen[:-k]]
        scored_trajectories = unseen[-k:]
        record["how"] = (
            f"of the trajectories the model never saw, the last {k} are scored and the others fit the baselines"
        )
    else:
        only = unseen[0]
        half = traj_lengths[only] // 2
        fit = [(only, 0, half)]
        scored = _blocks(only, half, traj_lengths[only], blocks)
        record["how"] = (
            "one trajectory the model never saw: its first half fits the baselines, its second half is scored"
        )
        record["caveat"] = BLOCKS_CAVEAT
        return {"fit": fit, "scored": scored, "record": _with_segments(record, paths, fit, scored)}
    if len(scored_trajectories) == 1:
        only = scored_trajectories[0]
        scored = _blocks(only, 0, traj_lengths[only], blocks)
        record["caveat"] = BLOCKS_CAVEAT
    else:
        scored = [(i, 0, traj_lengths[i]) for i in scored_trajectories]
    return {"fit": fit, "scored": scored, "record": _with_segments(record, paths, fit, scored)}


def _with_segments(record: dict, paths: Sequence[str], fit: list[Segment], scored: list[Segment]) -> dict:
    """``record`` with the fit and scored segments as summary.json lists them (trajectory file, frames)."""

    def describe(segments: list[Segment]) -> list[dict[str, Any]]:
        return [{"trajectory": str(paths[t]), "frames": [a, b]} for t, a, b in segments]

    return {**record, "fit": describe(fit), "scored": describe(scored)}


def default_lag_frames(scored: Sequence[Segment]) -> int:
    """The lag used when none is given: 10 frames, but at most a tenth of the shortest scored segment (at least 1)."""
    shortest = min(b - a for _, a, b in scored)
    return max(1, min(DEFAULT_LAG_FRAMES, shortest // LAGS_PER_SEGMENT))


def analyze_trajectories(
    model,
    paths: Sequence[str],
    output: Path,
    topology: str | None = None,
    modes: int | None = None,
    lag_ps: float | None = None,
    test_trajectories: int | None = None,
    stride: int = 1,
    frame_ps: float | None = None,
    residues: Sequence[str] | None = None,
    chi: bool = False,
    blocks: int = 4,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    """Project trajectories on the slowest modes; write COLVAR files first, then plots, scores and summary.json.

    The temperature of the frames (K; the free-energy plot's kT) is ``temperature``, else the one
    the files record, else the model's training temperature (another engine's files record none).

    What needs a protein backbone (Ramachandran plots, the dependence table and heat map,
    states, the dihedral baseline) is skipped, with the reason in ``summary["skipped"]``,
    for a molecule without one. Scores use only frames that neither trained the model
    nor selected its kept state (:func:`scoring_split`).

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        A model trained on molecular trajectories.
    paths : sequence of str
        Trajectory files (any MDTraj/MDAnalysis format).
    output : Path
        Output folder, created once the trajectories and options have been checked.
    topology : str, optional
        Topology file for trajectories that hold none.
    modes : int, optional
        How many of the slowest modes to analyse and write (at least 2, at most the model's dimension);
        default six, or all the model has if fewer.
    lag_ps : float, optional
        Lag time of VAMP-2 and TICA in ps, a whole number of frames; default :func:`default_lag_frames`.
    test_trajectories : int, optional
        Scored trajectories when the model trained on none of ``paths``.
    stride : int
        Keep every ``stride``-th frame.
    frame_ps : float, optional
        Time between the frames of files that hold no time stamps (DCD), ps
        (:func:`~neuralct.data.load_trajectories`).
    residues : sequence of str, optional
        Residues for the Ramachandran plots and states (:func:`~neuralct.analysis.select_residues`);
        default all with phi and psi.
    chi : bool
        Add the side-chain chi angles to the dependence table.
    blocks : int
        Contiguous blocks a single scored trajectory is cut into for the error bars.
    progress : bool
        Show a progress bar of the stages (reading, CVs, plots, scores) on stderr, if it is a terminal.
    warn : callable, optional
        Called with the one-line warning when the frames are unlike the model's training data,
        as soon as that is known (before the plots and scores).

    Returns
    -------
    dict
        The summary (also written to ``output/summary.json``); ``cv_kinetics`` holds each analysed CV's
        autocorrelation and implied timescales on all the trajectories at the lag of the scores, half of it
        and twice it, and whether it oscillates (:func:`~neuralct.analysis.kinetics.cv_kinetics`); for a model
        trained with a lag
        (latent dynamics), ``latent_dynamics`` holds its relaxation times of the analysed modes;
        ``input_check`` counts the frames unlike the model's training data and holds the
        warning, if one is due (:func:`~neuralct.analysis.training_match.compare_with_training`).
    """
    from tqdm.auto import tqdm

    from ..analysis import dihedral_angles
    from ..analysis.kinetics import cv_kinetics
    from ..analysis.training_match import compare_with_training
    from ..data import load_trajectories
    from ..data.loading import recorded_temperature
    from ..model.molecular import internal_coordinates, placed_molecules, project_internal, selected_atoms_in

    if modes is not None and modes < 2:
        raise NeuralCTError("`modes` must be at least 2 (the report compares the two slowest CVs)")
    if modes is not None and modes > model.dim:
        raise NeuralCTError(f"`modes` is {modes}, but the model has {model.dim} modes; give at most {model.dim}")
    # disable=None: a bar on a terminal only, never in a log or a captured stream.
    with tqdm(total=4, desc="analyze", unit="stage", disable=None if progress else True, leave=False) as bar:
        if temperature is None:
            recorded = recorded_temperature(paths)
            temperature_source = "recorded in the files" if recorded is not None else "the model's training temperature"
            temperature = recorded if recorded is not None else model.metadata["molecule"]["temperature_K"]
        else:
            temperature_source = "given"
        data = load_trajectories(
            paths,
            topology=topology,
            selection="all",
            stride=stride,
            temperature=temperature,
            momenta="resample",
            frame_ps=frame_ps,
        )
        atoms = selected_atoms_in(model, data.topology, str(paths[0]))
        n_modes = min(6, model.dim) if modes is None else modes
        dihedrals, rama, chosen = _backbone_dihedrals(data.topology, chi, residues)
        positions = placed_molecules(model, data, atoms)
        own = np.arange(len(atoms))
        features = internal_coordinates(model, positions, own)
        ends = np.cumsum(data.traj_lengths)
        per_file = [features[end - length : end] for end, length in zip(ends, data.traj_lengths)]
        split = scoring_split(paths, data.traj_lengths, model.metadata, test_trajectories, blocks, per_file)
        if split["scored"] and lag_ps is None and min(b - a for _, a, b in split["scored"]) < 2:
            # Single structures (a PDB) or a few frames: their CVs, but no lag to score at.
            shortest = min(b - a for _, a, b in split["scored"])
            split["scored"], split["record"]["no_scores"] = (
                [],
                (f"a scored segment of {shortest} frame(s) has no lag to score at; give longer trajectories"),
            )
            split["record"].pop("caveat", None)
        if data.samples_note is not None:
            split["scored"], split["record"]["no_scores"] = [], data.samples_note
            split["record"].pop("caveat", None)
        lag_frames = _scoring_lag_frames(split["scored"], data, lag_ps)
        kinetics_lag_frames = None if data.samples_note else _kinetics_lag_frames(data, lag_frames, lag_ps)
        output = prepare_output_dir(output)
        bar.update()

        cvs = project_internal(model, features, n_modes)
        input_check = compare_with_training(model, positions, cvs, own)
        if input_check["warning"] and warn is not None:
            warn(input_check["warning"])
        biased = biased_frames_note(data.biased)
        if biased and warn is not None:
            warn(biased)
        colvars = _write_colvars(output, paths, data, cvs)
        bar.update()

        angles = dihedral_angles(data.positions, dihedrals)
        figures, skipped = _plot(model, data, cvs, angles, rama, chosen, output)
        bar.update()

        summary = _summary(model, paths, data, split, colvars, dihedrals, chosen, input_check, n_modes)
        summary["temperature_K"], summary["temperature_source"] = data.temperature, temperature_source
        if biased:
            summary["biased_frames"] = biased
        if data.samples_note is None:
            summary["cv_kinetics"] = cv_kinetics(
                _per_trajectory(cvs, data.traj_lengths), kinetics_lag_frames, data.timestep_ps
            )
        else:
            skipped["cv_kinetics"] = data.samples_note
        if split["scored"]:
            summary["lag_choice"] = (
                f"--lag-ps {lag_ps:g}"
                if lag_ps is not None
                else f"default: {DEFAULT_LAG_FRAMES} frames, at most a tenth of the shortest scored segment"
            )
            try:
                report = _scores(data, features, cvs, angles, dihedrals, chosen, split, lag_frames, n_modes)
            except NeuralCTError as exc:
                _write_summary(output, summary, figures, skipped | {"scores": str(exc)})
                raise NeuralCTError(f"scores failed: {exc} (the CVs and plots are in {output})") from None
            skipped |= report.pop("skipped")
            summary |= report
            if "dependence" in report:
                figures["dependence"] = _plot_dependence(report["dependence"], output)
        else:
            skipped["scores"] = split["record"]["no_scores"]
        _write_summary(output, summary, figures, skipped)
        bar.update()
        return summary


def biased_frames_note(paths: Sequence[str]) -> str | None:
    """One line where trajectories record biased frames (``neuralct bias``): what is measured on them is of the
    biased ensemble; None where none do."""
    if not paths:
        return None
    return (
        f"frames of biased MD (neuralct bias) in {', '.join(paths)}: the populations, free-energy plots, scores and "
        "kinetics here are of the biased ensemble, not Boltzmann's; the bias run's summary.json and "
        "fes_phi_psi_reweighted.npy hold the reweighted ones"
    )


def _backbone_dihedrals(topology, chi: bool, residues: Sequence[str] | None) -> tuple[list, list, list]:
    """The dihedrals of the topology, the residues with backbone phi and psi, and those chosen for the plots.

    Returns
    -------
    dihedrals : list of Dihedral
        Every backbone dihedral (and with ``chi`` the side-chain chi angles).
    rama : list of (Residue, int, int)
        Each residue with both phi and psi, with the indices of its phi and psi in ``dihedrals``.
    chosen : list of Residue
        ``residues`` (all of ``rama``'s when None).
    """
    from ..analysis import find_dihedrals, ramachandran_residues, select_residues

    dihedrals = find_dihedrals(topology, chi=chi)
    rama = ramachandran_residues(dihedrals)
    with_phi_and_psi = [residue for residue, _, _ in rama]
    return dihedrals, rama, select_residues(with_phi_and_psi, residues) if residues else with_phi_and_psi


def _scoring_lag_frames(scored: list[Segment], data, lag_ps: float | None) -> int | None:
    """The lag of the scores in frames (None with nothing to score): ``lag_ps``, or :func:`default_lag_frames`.

    Raises
    ------
    NeuralCTError
        If ``lag_ps`` is no whole number of frames, or the lag is not shorter than every scored segment.
    """
    if not scored:
        return None
    if lag_ps is None:
        lag_frames = default_lag_frames(scored)
    else:
        no_timestep = data.timestep_note and (
            f"{data.timestep_note} (or leave `lag_ps` out for a lag of {DEFAULT_LAG_FRAMES} frames)"
        )
        lag_frames = lag_in_frames(lag_ps, data.timestep_ps, "`lag_ps`", no_timestep)
    shortest = min(b - a for _, a, b in scored)
    if lag_frames >= shortest:
        lag = f"`lag_ps` {lag_ps} is {lag_frames} frames" if lag_ps is not None else f"the lag of {lag_frames} frame(s)"
        raise NeuralCTError(
            f"{lag}, not shorter than the shortest scored segment ({shortest} frames); use a shorter lag, fewer "
            "`blocks`, a smaller `stride` or longer trajectories"
        )
    return lag_frames


def _kinetics_lag_frames(data, lag_frames: int | None, lag_ps: float | None) -> int:
    """The lag of each CV's own kinetics: that of the scores, else ``lag_ps``, else :func:`default_lag_frames` of
    the whole trajectories (nothing scored)."""
    if lag_frames is not None:
        return lag_frames
    if lag_ps is not None:
        return lag_in_frames(lag_ps, data.timestep_ps, "`lag_ps`", data.timestep_note)
    return default_lag_frames([(k, 0, n) for k, n in enumerate(data.traj_lengths)])


def _per_trajectory(values: np.ndarray, traj_lengths: Sequence[int]) -> list[np.ndarray]:
    """``values`` (one row per frame, trajectories concatenated) cut into one array per trajectory."""
    bounds = np.cumsum([0] + list(traj_lengths))
    return [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _write_colvars(output: Path, paths: Sequence[str], data, cvs: np.ndarray) -> list[str]:
    """One PLUMED COLVAR file of the CVs per trajectory (:func:`colvar_names`); their paths, in order."""
    from ..analysis import write_colvar

    names = [f"cv{k + 1}" for k in range(cvs.shape[1])]
    colvars = []
    for file_name, values, time in zip(
        colvar_names(paths), _per_trajectory(cvs, data.traj_lengths), _per_trajectory(data.time_ps, data.traj_lengths)
    ):
        target = output / file_name
        write_colvar(target, time, values, names)
        colvars.append(str(target))
    return colvars


def colvar_names(paths: Sequence[str]) -> list[str]:
    """A distinct COLVAR file name per trajectory: ``STEM.colvar``; ``FOLDER-STEM.colvar`` for trajectories of one
    name in different folders (``replica-000.nc`` of two runs), numbered where even those agree."""
    stems = [Path(path).stem for path in paths]
    names = [
        f"{Path(path).resolve().parent.name}-{stem}" if stems.count(stem) > 1 else stem
        for path, stem in zip(paths, stems)
    ]
    return [
        f"{name}-{names[:i].count(name) + 1}.colvar" if names.count(name) > 1 else f"{name}.colvar"
        for i, name in enumerate(names)
    ]


def _plot(
    model, data, cvs: np.ndarray, angles: np.ndarray, rama: list, chosen: list, output: Path
) -> tuple[dict[str, Path], dict[str, str]]:
    """The free energy of the two slowest CVs, the spectrum, the Ramachandran plots and the training curves.

    Returns
    -------
    figures : dict of str to Path
        The files written, by kind.
    skipped : dict of str to str
        What was not plotted, and why.
    """
    from ..analysis import plot_fes, plot_ramachandran, plot_spectrum, plot_training_curves

    skipped: dict[str, str] = {}
    figures = {
        "free_energy": output / "free_energy_cv1_cv2.png",
        "spectrum": output / "frequency_spectrum.png",
    }
    plot_fes(
        cvs[:, 0],
        cvs[:, 1],
        figures["free_energy"],
        kT=data.kT,
        energy_unit="kJ/mol",
        labels=("CV 1 (slowest)", "CV 2"),
    )
    plot_spectrum(model.frequencies.detach().cpu().numpy(), figures["spectrum"], unit="rad/ps")
    if chosen:
        columns = [(phi, psi) for r, phi, psi in rama if r in chosen]
        figures["ramachandran"] = output / "ramachandran_by_mode.png"
        plot_ramachandran(
            angles[:, [phi for phi, _ in columns]],
            angles[:, [psi for _, psi in columns]],
            cvs[:, : min(4, cvs.shape[1])],
            figures["ramachandran"],
            title="Ramachandran plots coloured by the slowest modes",
            residue_labels=[r.label for r in chosen],
        )
    else:
        skipped["ramachandran"] = (
            "no residue with both backbone phi and psi (not a peptide, or only caps): no Ramachandran plot"
        )
    history = model.metadata.get("history")
    if history:
        figures["training_curves"] = output / "training_curves.png"
        plot_training_curves(
            {"step": history["step"], "train NLL": history["train_loss"], "validation NLL": history["valid_loss"]},
            figures["training_curves"],
        )
    return figures, skipped


def _summary(
    model,
    paths: Sequence[str],
    data,
    split: dict[str, Any],
    colvars: list[str],
    dihedrals: list,
    chosen: list,
    input_check: dict[str, Any],
    n_modes: int,
) -> dict[str, Any]:
    """What summary.json reports besides the scores: the inputs, the split, the files and the model's own figures."""
    summary: dict[str, Any] = {
        "trajectories": [str(p) for p in paths],
        "frames": int(data.n_frames),
        "time_step_ps": data.timestep_ps,
        # Without a frame spacing the COLVARs' time column holds the file's stamps or frame numbers, lags are frames.
        "time_step_unknown_because": data.timestep_note if data.timestep_ps is None else None,
        "split": split["record"],
        "frequencies": model.frequencies.detach().cpu().double().tolist(),
        "frequency_unit": "rad/ps",
        "colvar_files": colvars,
        "dihedrals": [d.name for d in dihedrals],
        "residues": [r.label for r in chosen],
        "input_check": input_check,
    }
    if model.relaxation_times is not None:
        summary["latent_dynamics"] = {
            "relaxation_times_ps": (model.relaxation_times[:n_modes] * model.time_unit)
            .detach()
            .cpu()
            .double()
            .tolist(),
            "frictions_per_ps": (model.frictions[:n_modes] / model.time_unit).detach().cpu().double().tolist(),
            "meaning": "the model's own latent Langevin oscillators (trained with --lag-ps), slowest mode first; "
            "compare with kinetics.learned_cvs, the implied timescales measured on the trajectories",
        }
    return summary


def _scores(
    data,
    features: np.ndarray,
    cvs: np.ndarray,
    angles: np.ndarray,
    dihedrals: list,
    chosen: list,
    split: dict[str, Any],
    lag_frames: int,
    n_modes: int,
) -> dict[str, Any]:
    """VAMP-2, kinetics, dependence and states on the scored segments (:func:`~neuralct.analysis.cv_quality_report`)."""
    from ..analysis import cv_quality_report

    return cv_quality_report(
        _per_trajectory(cvs, data.traj_lengths),
        _per_trajectory(features, data.traj_lengths),
        _per_trajectory(angles, data.traj_lengths),
        dihedrals,
        split["fit"],
        split["scored"],
        lag_frames,
        n_modes=n_modes,
        time_step_ps=data.timestep_ps,
        masses=np.ones(features.shape[1]),
        residues=chosen,
    )


def _plot_dependence(dependence: dict[str, Any], output: Path) -> Path:
    """The heat map of the dependence of each slow mode on every dihedral; returns its file."""
    from ..analysis import plot_dependence

    figure = output / "dependence_modes_dihedrals.png"
    plot_dependence(dependence, figure)
    return figure


def _write_summary(output: Path, summary: dict[str, Any], figures: dict[str, Path], skipped: dict[str, str]) -> None:
    """Add the figures and what was skipped to ``summary`` and write it to summary.json."""
    summary["figures"] = {key: str(value) for key, value in figures.items()}
    summary["skipped"] = skipped
    write_json(output / "summary.json", summary)
