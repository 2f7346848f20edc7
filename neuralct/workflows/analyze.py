"""``neuralct analyze`` as a function: project trajectories on the slow modes and measure what they mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..analysis.report import Segment
from ..errors import NeuralCTError
from ..io import prepare_output_dir, write_json

__all__ = ["analyze_trajectories", "scoring_split", "default_lag_frames"]

#: Frames per lag when --lag-ps is not given, and the least number of lags per scored segment.
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


def scoring_split(
    paths: Sequence[str],
    traj_lengths: Sequence[int],
    model_metadata: dict[str, Any],
    test_trajectories: int | None = None,
    blocks: int = 4,
) -> dict[str, Any]:
    """Which frames fit the baselines and which are scored, so that no score uses data that trained the model.

    A trajectory that trained the model, or that selected its kept state (the validation
    trajectories), is never scored. Of the others (unseen):

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
    trained = set(molecule.get("training_trajectories", []))
    validation = molecule.get("validation_trajectories")
    resolved = [str(Path(p).resolve()) for p in paths]
    in_training = [i for i, p in enumerate(resolved) if p in trained]
    in_validation = [i for i, p in enumerate(resolved) if validation is not None and p in set(validation)]
    unseen = [i for i in range(len(paths)) if i not in in_training and i not in in_validation]
    if not 2 <= blocks <= 100:
        raise NeuralCTError(f"--blocks must be between 2 and 100, got {blocks}")
    record: dict[str, Any] = {
        "trained_the_model": [str(paths[i]) for i in in_training],
        "selected_the_kept_state": [str(paths[i]) for i in in_validation]
        if validation is not None
        else ("not recorded in this model file: a given trajectory that validated the model may be scored"),
        "never_seen_by_the_model": [str(paths[i]) for i in unseen],
    }
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
                f"--test-trajectories must be between 1 and {len(unseen) - 1} for {len(unseen)} trajectories the model never saw"
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
    describe = lambda segments: [{"trajectory": str(paths[t]), "frames": [a, b]} for t, a, b in segments]
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
    n_modes: int = 6,
    lag_ps: float | None = None,
    test_trajectories: int | None = None,
    stride: int = 1,
    residues: Sequence[str] | None = None,
    chi: bool = False,
    blocks: int = 4,
    progress: bool = False,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Project trajectories on the slowest modes; write COLVAR files first, then plots, scores and summary.json.

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
    n_modes : int
        Slow modes to analyse and write.
    lag_ps : float, optional
        Lag time of VAMP-2 and TICA in ps; default :func:`default_lag_frames`.
    test_trajectories : int, optional
        Scored trajectories when the model trained on none of ``paths``.
    residues : sequence of str, optional
        Residues for the Ramachandran plots and states (``--residues``); default all with phi and psi.
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
        The summary (also written to ``output/summary.json``); for a model trained with a lag
        (latent dynamics), ``latent_dynamics`` holds its relaxation times of the analysed modes;
        ``input_check`` counts the frames unlike the model's training data and holds the
        warning, if one is due (:func:`~neuralct.analysis.training_match.compare_with_training`).
    """
    from tqdm.auto import tqdm

    from ..analysis import (
        cv_quality_report,
        dihedral_angles,
        find_dihedrals,
        plot_dependence,
        plot_fes,
        plot_ramachandran,
        plot_spectrum,
        plot_training_curves,
        ramachandran_residues,
        select_residues,
        write_colvar,
    )
    from ..analysis.training_match import compare_with_training
    from ..data import load_trajectories
    from ..model.molecular import check_topology, internal_coordinates, project_internal

    if n_modes < 2:
        raise NeuralCTError("--modes must be at least 2 (the report compares the two slowest CVs)")
    # disable=None: a bar on a terminal only, never in a log or a captured stream.
    with tqdm(total=4, desc="analyze", unit="stage", disable=None if progress else True, leave=False) as bar:
        data = load_trajectories(paths, topology=topology, selection="all", stride=stride, momenta="resample")
        check_topology(model, data.topology, str(paths[0]))
        n_modes = min(n_modes, model.dim)
        dihedrals = find_dihedrals(data.topology, chi=chi)
        rama = ramachandran_residues(dihedrals)
        chosen = select_residues([r for r, _, _ in rama], residues) if residues else [r for r, _, _ in rama]
        split = scoring_split(paths, data.traj_lengths, model.metadata, test_trajectories, blocks)
        lag = None
        if split["scored"]:
            if lag_ps is None:
                lag = default_lag_frames(split["scored"])
            elif data.timestep_ps is None:
                raise NeuralCTError(
                    f"--lag-ps needs the time between frames: {data.timestep_note} (or leave --lag-ps out for a lag of {DEFAULT_LAG_FRAMES} frames)"
                )
            else:
                lag = data.lag_frames(lag_ps, "--lag-ps")
            shortest = min(b - a for _, a, b in split["scored"])
            if lag >= shortest:
                raise NeuralCTError(
                    f"--lag-ps {lag_ps} is {lag} frames, not shorter than the shortest scored segment ({shortest} frames); use a shorter lag or fewer --blocks"
                )
        output = prepare_output_dir(output)
        bar.update()

        features = internal_coordinates(model, data.positions)
        cvs = project_internal(model, features, n_modes)
        input_check = compare_with_training(model, data.positions, cvs)
        if input_check["warning"] and warn is not None:
            warn(input_check["warning"])
        bounds = np.cumsum([0] + list(data.traj_lengths))
        per_traj = lambda values: [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        names = [f"cv{k + 1}" for k in range(n_modes)]
        colvars = []
        for path, values, time in zip(paths, per_traj(cvs), per_traj(data.time_ps)):
            target = output / f"{Path(path).stem}.colvar"
            write_colvar(target, time, values, names)
            colvars.append(str(target))
        bar.update()

        angles = dihedral_angles(data.positions, dihedrals)
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
                cvs[:, : min(4, n_modes)],
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
        bar.update()

        summary: dict[str, Any] = {
            "trajectories": [str(p) for p in paths],
            "frames": int(data.n_frames),
            "time_step_ps": data.timestep_ps,
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
        if split["scored"]:
            summary["lag_choice"] = (
                f"--lag-ps {lag_ps:g}"
                if lag_ps is not None
                else f"default: {DEFAULT_LAG_FRAMES} frames, at most a tenth of the shortest scored segment"
            )
            try:
                report = cv_quality_report(
                    per_traj(cvs),
                    per_traj(features),
                    per_traj(angles),
                    dihedrals,
                    split["fit"],
                    split["scored"],
                    lag,
                    n_modes=n_modes,
                    time_step_ps=data.timestep_ps,
                    masses=np.ones(features.shape[1]),
                    residues=chosen,
                )
            except NeuralCTError as exc:
                summary["skipped"] = skipped | {"scores": str(exc)}
                summary["figures"] = {key: str(value) for key, value in figures.items()}
                write_json(output / "summary.json", summary)
                raise NeuralCTError(f"scores failed: {exc} (the CVs and plots are in {output})") from None
            skipped |= report.pop("skipped")
            summary |= report
            if "dependence" in report:
                figures["dependence"] = output / "dependence_modes_dihedrals.png"
                plot_dependence(report["dependence"], figures["dependence"])
        else:
            skipped["scores"] = split["record"]["no_scores"]
        summary["figures"] = {key: str(value) for key, value in figures.items()}
        summary["skipped"] = skipped
        write_json(output / "summary.json", summary)
        bar.update()
        return summary
