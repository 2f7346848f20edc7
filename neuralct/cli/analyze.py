"""``neuralct analyze``: slow modes of trajectories, with pictures and scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import (
    add_common_options,
    positive_float,
    positive_int,
    print_warning,
    result_settings,
    save_resolved_config,
)

__all__ = ["add_parser", "run", "timescales_line", "oscillation_lines"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "analyze",
        help="project trajectories on the learned slow modes; plots, COLVAR files and scores",
        description=(
            "Project trajectories on the slowest modes of a trained model. Writes first one PLUMED COLVAR "
            "file per trajectory (#! FIELDS time cv1 cv2 ...), then PNG plots (free-energy surface of the two "
            "slowest CVs, frequency spectrum, training curves, and for peptides and proteins Ramachandran "
            "plots of every residue coloured by the slow modes and a heat map of the mutual information and "
            "circular correlation of each slow mode with every dihedral) and summary.json: that table, "
            "VAMP-2 of the two slowest CVs against TICA, PCA and the backbone dihedrals at the same lag with "
            "error bars, and per residue the populations of the standard Ramachandran regions (alphaR, beta, "
            "PPII, alphaL) and how well each method tells them apart. Dihedrals come from the topology "
            "(MDTraj); a molecule without a protein backbone gets everything else, and summary.json says "
            "what was skipped. Scores use only trajectories that neither trained the model nor selected its "
            "kept state; one such trajectory is scored on contiguous blocks (the caveat is recorded)."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="model.pt written by `neuralct train`")
    parser.add_argument(
        "trajectories", nargs="+", metavar="TRAJ", help="trajectory files (any MDTraj/MDAnalysis format)"
    )
    parser.add_argument("--top", metavar="FILE", help="topology for trajectories that hold none")
    parser.add_argument(
        "--modes",
        type=positive_int,
        default=None,
        help="slow modes to analyse, at most the model's (default: 6, or all the model has if fewer)",
    )
    parser.add_argument(
        "--lag-ps",
        type=positive_float,
        default=None,
        help="lag time of VAMP-2 and TICA in ps (default: chosen from the data: 10 frame spacings, but at most a "
        "tenth of the shortest scored trajectory or block, at least one frame; summary.json states it in ps)",
    )
    parser.add_argument(
        "--stride", type=positive_int, default=1, help="use every STRIDE-th frame (default: %(default)s)"
    )
    parser.add_argument(
        "--frame-ps",
        type=positive_float,
        default=None,
        help="time between the frames of trajectories that hold no time stamps (DCD), ps; refused where the files' "
        "own stamps say otherwise",
    )
    parser.add_argument(
        "--residues",
        nargs="+",
        metavar="RES",
        help="residues for the Ramachandran plots and states, as the PDB numbers them: 2, ALA2, A:2 or A:ALA2 "
        "(default: every residue with phi and psi)",
    )
    parser.add_argument(
        "--chi", action="store_true", help="add the side-chain chi1-chi4 angles to the dependence table"
    )
    parser.add_argument(
        "--test-trajectories",
        type=positive_int,
        default=None,
        help="when the model trained on none of the given trajectories: how many to score, the others fit the "
        "baselines (default: half)",
    )
    parser.add_argument(
        "--blocks",
        type=positive_int,
        default=4,
        help="contiguous blocks a single scored trajectory is cut into for error bars (default: %(default)s)",
    )
    parser.add_argument(
        "--temperature",
        type=positive_float,
        default=None,
        help="temperature of the frames in K, for the free-energy plot (default: the one the files record, else the "
        "model's training temperature; a value that differs from the files' record is refused)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_options(parser, output_default="runs/analyze")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the model, then analyse into the locked output folder."""
    from ..data.loading import topology_file
    from ..model.transformation import load
    from ..training.device import resolve_device
    from ..workflows.analyze import analyze_trajectories
    from .runs import RunFolder

    model = load(args.model, device=resolve_device(args.device))
    topologies = {topology_file(Path(path), args.top) for path in args.trajectories} - {None}
    inputs = [args.model, *args.trajectories, *sorted(topologies)]
    settings = result_settings(args, ignore=("model", "trajectories", "top"))
    # Every rerun computes the whole analysis again, so a damaged output is restored.
    with RunFolder(args.output, "analyze", settings, inputs=inputs, overwrite=args.overwrite, rebuilt=("*",)) as folder:
        if folder.changed_outputs:
            print(folder.restored_line("the model and the trajectories"))
        output = folder.path
        summary = analyze_trajectories(
            model,
            args.trajectories,
            output,
            topology=args.top,
            modes=args.modes,
            lag_ps=args.lag_ps,
            test_trajectories=args.test_trajectories,
            stride=args.stride,
            frame_ps=args.frame_ps,
            residues=args.residues,
            chi=args.chi,
            blocks=args.blocks,
            progress=not args.no_progress,
            warn=print_warning,
            temperature=args.temperature,
        )
        save_resolved_config(args, output)
    _report(output, summary)
    return 0


def _report(output: Path, summary: dict) -> None:
    """The key figures of an analysis on stdout: what was written, the scores, the timescales, what was skipped."""
    print(f"analysis in {output}: {len(summary['colvar_files'])} COLVAR files, {len(summary['figures'])} plots")
    if "learned_cvs" in summary:

        def spread(method: str) -> str:
            error = summary[method]["vamp2_standard_error"]
            return "" if error is None else f" +- {error:.3f}"

        # Files without time stamps (DCD) give the lag in frames only.
        lag_shown = f"{summary['lag_frames']} frames" if summary["lag_ps"] is None else f"{summary['lag_ps']:.3g} ps"
        print(
            f"  VAMP-2 (2 CVs, lag {lag_shown}, {summary['n_scored_segments']} scored segments): "
            f"learned {summary['learned_cvs']['vamp2']:.3f}{spread('learned_cvs')} vs TICA "
            f"{summary['tica']['vamp2']:.3f}{spread('tica')}"
        )
    if "kinetics" in summary:
        print(f"  {timescales_line(summary['kinetics'])}")
    for line in oscillation_lines(summary["cv_kinetics"]) if "cv_kinetics" in summary else []:
        print(f"  {line}")
    if "latent_dynamics" in summary:
        times = summary["latent_dynamics"]["relaxation_times_ps"][:2]
        print(f"  model relaxation times (ps): {', '.join(f'{t:.3g}' for t in times)}")
    for best in sorted(summary.get("best_of_two_slowest", []), key=lambda b: -b["mi_nats"])[:3]:
        noise = best.get("mi_noise_nats")
        print(
            f"  mutual information with {best['dihedral']}: {best['mi_nats']:.2f} nats (mode {best['mode']}"
            + (f"; {noise:.2f} with the frames shifted in time, the estimator's noise" if noise is not None else "")
            + ")"
        )
    reasons: dict[str, list[str]] = {}
    for part, reason in summary["skipped"].items():
        reasons.setdefault(reason, []).append(part)
    for reason, parts in reasons.items():
        print(f"  skipped {' and '.join(parts)}: {reason}")
    if "caveat" in summary["split"]:
        print(f"  note: {summary['split']['caveat']}")
    if summary["time_step_unknown_because"] and summary["time_step_unknown_because"] not in reasons:
        why = summary["time_step_unknown_because"].replace("`frame_ps`", "--frame-ps")
        print(f"  note: lags and times in frames, not ps: {why}")


def timescales_line(kinetics: dict) -> str:
    """Implied timescales of the two slowest learned CVs and TICA components ("oscillation": a negative eigenvalue)."""
    unit = "ps" if "implied_timescales_ps" in kinetics["tica"] else "frames"

    def first_two(spectrum: dict) -> str:
        return ", ".join(
            "oscillation" if k + 1 in spectrum["oscillating_components"] else "n/a" if t is None else f"{t:.3g}"
            for k, t in enumerate(spectrum[f"implied_timescales_{unit}"][:2])
        )

    return (
        f"implied timescales ({unit}): learned {first_two(kinetics['learned_cvs'])}; TICA {first_two(kinetics['tica'])}"
    )


def oscillation_lines(cv_kinetics: dict) -> list[str]:
    """One line per oscillating CV of the two slowest (:func:`~neuralct.analysis.kinetics.cv_kinetics`), saying
    what to bias instead."""
    from ..analysis.kinetics import oscillation_notes

    notes = oscillation_notes(cv_kinetics, 2)
    return [
        f"{note}: not a slow process" + ("; bias cv1 alone" if index == 1 and 0 not in notes else "")
        for index, note in notes.items()
    ]
