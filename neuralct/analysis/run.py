"""``neuralct analyze`` as a function: project trajectories on the slow modes and measure what they mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import NeuralCTError
from ..io import prepare_output_dir, write_json

__all__ = ["analyze_trajectories", "split_for_analysis"]


def split_for_analysis(paths: Sequence[str], model_metadata: dict[str, Any], test_trajectories: int | None) -> tuple[list[int], list[int], str]:
    """Training and held-out trajectory indices for the scores.

    Trajectories the model was trained on are the training set and the others are held
    out. When the model saw none of them, the last ``test_trajectories`` (default: half)
    are held out and the rest fit the baselines.
    """
    trained_on = set(model_metadata.get("molecule", {}).get("training_trajectories", []))
    resolved = [str(Path(p).resolve()) for p in paths]
    if test_trajectories is None and trained_on & set(resolved):
        train = [i for i, p in enumerate(resolved) if p in trained_on]
        test = [i for i, p in enumerate(resolved) if p not in trained_on]
        if not test:
            raise NeuralCTError("every trajectory given was used to train the model; add held-out trajectories (e.g. the validation ones) for honest scores")
        return train, test, "trajectories used in training fit the baselines; the others are held out"
    if len(paths) < 2:
        raise NeuralCTError("the scores need at least 2 trajectories (baselines are fit on some and scored on others)")
    k = test_trajectories or max(1, len(paths) // 2)
    if not 1 <= k < len(paths):
        raise NeuralCTError(f"--test-trajectories must be between 1 and {len(paths) - 1}")
    return list(range(len(paths) - k)), list(range(len(paths) - k, len(paths))), f"last {k} trajectories held out"


def analyze_trajectories(
    model,
    paths: Sequence[str],
    output: Path,
    topology: str | None = None,
    n_modes: int = 6,
    lag_ps: float = 2.0,
    test_trajectories: int | None = None,
    stride: int = 1,
) -> dict[str, Any]:
    """Project trajectories on the slowest modes and write COLVAR files, plots and summary.json.

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        A model trained on molecular trajectories.
    paths : sequence of str
        Trajectory files (any MDTraj/MDAnalysis format).
    output : Path
        Output folder, created once the trajectories have been read and checked.
    n_modes : int
        Slow modes to analyse and write.
    lag_ps : float
        Lag time of VAMP-2 and TICA in ps.

    Returns
    -------
    dict
        The summary (also written to ``output/summary.json``).
    """
    import mdtraj

    from ..data import load_trajectories
    from ..molecular import check_topology, internal_coordinates, project_internal
    from . import backbone_dihedrals, cv_quality_report, plot_fes, plot_ramachandran, plot_spectrum, plot_training_curves, write_colvar

    if n_modes < 2:
        raise NeuralCTError("--modes must be at least 2 (the report compares the two slowest CVs)")
    data = load_trajectories(paths, topology=topology, selection="all", stride=stride, momenta="resample")
    check_topology(model, data.topology, str(paths[0]))
    train, test, split = split_for_analysis(paths, model.metadata, test_trajectories)
    output = prepare_output_dir(output)
    n_modes = min(n_modes, model.dim)
    if data.timestep_ps is None:
        raise NeuralCTError(f"{paths[0]} has no time stamps; the lag time in ps cannot be turned into frames")
    lag = max(1, int(round(lag_ps / data.timestep_ps)))
    if lag >= min(data.traj_lengths):
        raise NeuralCTError(f"--lag-ps {lag_ps} is {lag} frames, longer than the shortest trajectory ({min(data.traj_lengths)} frames)")

    features = internal_coordinates(model, data.positions)
    cvs = project_internal(model, features, n_modes)
    phi, psi = backbone_dihedrals(mdtraj.Trajectory(data.positions, data.topology))
    bounds = np.cumsum([0] + list(data.traj_lengths))
    per_traj = lambda values: [values[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    report = cv_quality_report(
        per_traj(cvs), per_traj(phi), per_traj(psi), train, test, lag, per_traj(features),
        n_modes=n_modes, time_step_ps=data.timestep_ps, masses=np.ones(features.shape[1]),
    )
    for method in ("tica", "pca", "learned_cvs", "phi_psi"):
        report[method].pop("projections_train", None)
        report[method].pop("projections_test", None)

    names = [f"cv{k + 1}" for k in range(n_modes)]
    colvars = []
    for path, values, time in zip(paths, per_traj(cvs), per_traj(data.time_ps)):
        target = output / f"{Path(path).stem}.colvar"
        write_colvar(target, time, values, names)
        colvars.append(str(target))
    figures = {
        "ramachandran": output / "ramachandran_by_mode.png",
        "free_energy": output / "free_energy_cv1_cv2.png",
        "spectrum": output / "frequency_spectrum.png",
    }
    plot_ramachandran(phi, psi, cvs[:, : min(4, n_modes)], figures["ramachandran"], title="Ramachandran plot coloured by the slowest modes")
    plot_fes(cvs[:, 0], cvs[:, 1], figures["free_energy"], kT=data.kT, energy_unit="kJ/mol", labels=("CV 1 (slowest)", "CV 2"))
    plot_spectrum(model.frequencies.detach().cpu().numpy(), figures["spectrum"], unit="rad/ps")
    history = model.metadata.get("history")
    if history:
        figures["training_curves"] = output / "training_curves.png"
        plot_training_curves({"step": history["step"], "train NLL": history["train_loss"], "validation NLL": history["valid_loss"]}, figures["training_curves"])

    summary = {
        "trajectories": [str(p) for p in paths],
        "frames": int(data.n_frames),
        "split": split,
        "frequencies": model.frequencies.detach().cpu().double().tolist(),
        "frequency_unit": "rad/ps",
        "colvar_files": colvars,
        "figures": {key: str(value) for key, value in figures.items()},
        **report,
    }
    write_json(output / "summary.json", summary)
    return summary
