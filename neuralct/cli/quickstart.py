"""``neuralct quickstart``: simulate alanine dipeptide, learn its slow modes, and show them."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..io import prepare_output_dir, write_json
from .analyze import timescales_line
from .options import (
    add_common_options,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    print_warning,
    result_settings,
    save_resolved_config,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "quickstart",
        help="the whole chain on the bundled alanine dipeptide: simulate, train, analyze",
        description=(
            "Simulate alanine dipeptide in vacuum (amber99sb-ildn, 300 K) with OpenMM, train a neural "
            "canonical transformation on all but two trajectories (one selects the kept state, one is held out "
            "for the scores), analyze the slow modes against phi/psi and TICA (VAMP-2 with error bars over blocks of the held-out trajectory, "
            "TICA's eigenvalues with the oscillating components flagged, implied timescales), do the same for kinetic CVs "
            "(a second model trained with the time-lagged objective and its VAMP-2 term at the same lag), and print where the pictures are. "
            "Rerunning resumes whatever step was interrupted; other options into the same --output "
            "are refused (see --overwrite)."
        ),
    )
    parser.add_argument(
        "--replicas",
        type=positive_int,
        default=4,
        help="trajectories to simulate; the last two validate and test (default: %(default)s)",
    )
    parser.add_argument(
        "--length-ns", type=positive_float, default=2.0, help="length of each trajectory in ns (default: %(default)s)"
    )
    parser.add_argument(
        "--report-ps", type=positive_float, default=0.5, help="time between frames in ps (default: %(default)s)"
    )
    parser.add_argument("--steps", type=positive_int, default=4000, help="training steps (default: %(default)s)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=256, help="training batch size (default: %(default)s)"
    )
    parser.add_argument(
        "--lag-ps",
        type=positive_float,
        default=2.0,
        help="lag time of the VAMP-2 and TICA scores in ps (default: %(default)s)",
    )
    parser.add_argument(
        "--kinetic-steps",
        type=nonnegative_int,
        default=2000,
        help="training steps of the kinetic CVs (time-lagged objective at --lag-ps, recorded momenta); 0 leaves them out (default: %(default)s)",
    )
    parser.add_argument(
        "--kinetic-vamp-weight",
        type=nonnegative_float,
        default=100.0,
        help="weight of the kinetic CVs' VAMP-2 term (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_common_options(parser, output_default="runs/quickstart")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Check the options, then run the steps in the locked output folder."""
    from ..errors import NeuralCTError
    from ..md.simulate import SimulationSettings
    from .runs import RunFolder

    if args.replicas < 3:
        raise NeuralCTError(
            "--replicas must be at least 3: one trajectory validates the training and one is held out for the scores"
        )
    md_settings = SimulationSettings(length_ns=args.length_ns, report_ps=args.report_ps, seed=args.seed)
    md_settings.validate()
    # The held-out trajectory is scored on 4 blocks (analyze's default), each longer than the lag.
    if args.lag_ps >= args.length_ns * 1000.0 / 4:
        raise NeuralCTError(
            f"--lag-ps {args.lag_ps:g} is not shorter than a quarter of the trajectories (--length-ns {args.length_ns:g}), the blocks they are scored on; use a shorter lag or longer trajectories"
        )
    # A finished rerun writes everything again but the frames and the training checkpoints.
    rebuilt = (
        "config.yaml",
        "summary.json",
        "*/summary.json",
        "trajectories/topology.pdb",
        "*model/model.pt",
        "analysis/*",
    )
    with RunFolder(
        args.output, "quickstart", result_settings(args), overwrite=args.overwrite, rebuilt=rebuilt
    ) as folder:
        return _quickstart(args, folder.path, md_settings)


def _quickstart(args: argparse.Namespace, output: Path, md_settings) -> int:
    """The steps into ``output``, each resuming what an earlier run left."""
    from ..md.simulate import run_simulation
    from ..md.systems import build_system
    from ..workflows.analyze import analyze_trajectories

    save_resolved_config(args, output)
    timings = {}
    stages = 4 if args.kinetic_steps else 3

    start = time.perf_counter()
    print(
        f"[1/{stages}] simulating {args.replicas} x {args.length_ns:g} ns of alanine dipeptide (vacuum, 300 K) ...",
        flush=True,
    )
    md_folder = prepare_output_dir(output / "trajectories")
    simulation = run_simulation(
        build_system("alanine-dipeptide"),
        md_folder,
        md_settings,
        replicas=args.replicas,
        progress=not args.no_progress,
    )
    timings["simulate"] = time.perf_counter() - start
    paths = sorted(str(p) for p in md_folder.glob("replica-*.nc"))

    start = time.perf_counter()
    print(f"[2/{stages}] training on {len(paths) - 2} trajectories, validating on 1 ...", flush=True)
    model, training = _train(args, paths, output / "model", args.steps, "resample")
    timings["train"] = time.perf_counter() - start

    kinetic_model = None
    if args.kinetic_steps:
        start = time.perf_counter()
        print(
            f"[3/{stages}] training kinetic CVs: time-lagged objective at {args.lag_ps:g} ps with its VAMP-2 term ...",
            flush=True,
        )
        kinetic_model, kinetic_training = _train(
            args,
            paths,
            output / "kinetic_model",
            args.kinetic_steps,
            "recorded",
            lag_ps=args.lag_ps,
            vamp_weight=args.kinetic_vamp_weight,
        )
        timings["train_kinetic"] = time.perf_counter() - start

    start = time.perf_counter()
    print(f"[{stages}/{stages}] analyzing the slow modes on the held-out trajectory ...", flush=True)
    analysis_folder = prepare_output_dir(output / "analysis")
    analysis = analyze_trajectories(model.cpu(), paths, analysis_folder, lag_ps=args.lag_ps, warn=print_warning)
    kinetic = None
    if kinetic_model is not None:
        scores = analyze_trajectories(
            kinetic_model.cpu(),
            paths,
            prepare_output_dir(analysis_folder / "kinetic"),
            lag_ps=args.lag_ps,
            warn=print_warning,
        )
        best_kinetic = {entry["kind"]: entry for entry in scores["best_of_two_slowest"]}
        kinetic = {
            "model": str(output / "kinetic_model" / "model.pt"),
            "steps": args.kinetic_steps,
            "lag_ps": args.lag_ps,
            "vamp_weight": args.kinetic_vamp_weight,
            "relaxation_times_ps": kinetic_training["relaxation_times_ps"][:4],
            "vamp2": scores["learned_cvs"]["vamp2"],
            "vamp2_standard_error": scores["learned_cvs"]["vamp2_standard_error"],
            "minus_tica": {key: scores["learned_minus_tica"][key] for key in ("mean", "standard_error")},
            "mi_psi_nats": best_kinetic["psi"]["mi_nats"],
            "mi_phi_nats": best_kinetic["phi"]["mi_nats"],
            "figures": scores["figures"],
        }
    timings["analyze"] = time.perf_counter() - start

    best = {entry["kind"]: entry for entry in analysis["best_of_two_slowest"]}
    states = next(iter(analysis["states"].values()))["classification"]
    summary = {
        "trajectories": paths,
        "model": str(output / "model" / "model.pt"),
        "figures": analysis["figures"],
        "ns_simulated": simulation["ns_simulated"],
        "steps_per_second_md": simulation["steps_per_second"],
        "frequencies_slowest": training["frequencies"][:6],
        "validation_nll": training["validation_nll"][-1],
        "mi_psi_nats": best["psi"]["mi_nats"],
        "mi_phi_nats": best["phi"]["mi_nats"],
        "lag_ps": analysis["lag_ps"],
        "vamp2_scored_segments": analysis["n_scored_segments"],
        "vamp2_learned": analysis["learned_cvs"]["vamp2"],
        "vamp2_learned_standard_error": analysis["learned_cvs"]["vamp2_standard_error"],
        "vamp2_tica": analysis["tica"]["vamp2"],
        "vamp2_tica_standard_error": analysis["tica"]["vamp2_standard_error"],
        "vamp2_learned_minus_tica": {key: analysis["learned_minus_tica"][key] for key in ("mean", "standard_error")},
        "kinetics": analysis["kinetics"],
        "state_accuracy_learned": states["learned_cvs"]["accuracy"],
        "state_accuracy_tica": states["tica"]["accuracy"],
        "kinetic_cvs": kinetic,
        "seconds": timings,
    }
    write_json(output / "summary.json", summary)
    _print_summary(output, summary)
    return 0


def _train(args: argparse.Namespace, paths: list[str], folder: Path, steps: int, momenta: str, **objective):
    """Train on all trajectories but the last (held out for the scores; the one before it selects
    the kept state) and write ``model.pt``, ``summary.json`` and the resumable checkpoint into
    ``folder``; ``objective`` holds the time-lagged options (``lag_ps``, ``vamp_weight``), if any.

    Returns
    -------
    model, summary
    """
    from ..data import load_trajectories
    from ..model.transformation import DEFAULT_ARCHITECTURE
    from ..training.loop import TrainingSettings
    from ..workflows.train import fit_trajectories

    data = load_trajectories(paths[:-1], selection="heavy", momenta=momenta, seed=args.seed)
    folder = prepare_output_dir(folder)
    settings = TrainingSettings(steps=steps, batch_size=args.batch_size, progress=not args.no_progress)
    model, summary = fit_trajectories(
        data,
        list(DEFAULT_ARCHITECTURE),
        settings,
        validation_trajectories=1,
        momenta=momenta,
        device=args.device,
        seed=args.seed,
        checkpoint=folder / "checkpoint.pt",
        **objective,
    )
    model.save(folder / "model.pt")
    write_json(folder / "summary.json", summary)
    return model, summary


def _print_summary(output: Path, s: dict) -> None:
    print(f"\nneuralct quickstart finished in {sum(s['seconds'].values()):.0f} s; results in {output}")
    print(f"  slowest frequencies (rad/ps): {', '.join(f'{w:.3g}' for w in s['frequencies_slowest'])}")
    print(
        f"  best of the two slowest modes: mutual information with psi {s['mi_psi_nats']:.2f} nats, with phi {s['mi_phi_nats']:.2f} nats"
    )
    error = lambda value: "" if value is None else f" +- {value:.3f}"
    difference = s["vamp2_learned_minus_tica"]
    print(
        f"  VAMP-2 of 2 CVs on held-out data (lag {s['lag_ps']:g} ps, {s['vamp2_scored_segments']} blocks): "
        f"learned {s['vamp2_learned']:.3f}{error(s['vamp2_learned_standard_error'])}, "
        f"TICA {s['vamp2_tica']:.3f}{error(s['vamp2_tica_standard_error'])}"
    )
    print(
        f"  learned minus TICA, paired block by block: {difference['mean']:+.3f}{error(difference['standard_error'])}"
    )
    tica = s["kinetics"]["tica"]
    shown = 4
    flagged = [k for k in tica["oscillating_components"] if k <= shown]
    flags = (
        f" (negative, oscillations and not slow processes: components {', '.join(map(str, flagged))}; "
        f"{len(tica['oscillating_components'])} of {len(tica['eigenvalues'])} in all)"
        if tica["oscillating_components"]
        else ""
    )
    print(
        f"  TICA eigenvalues at {s['lag_ps']:g} ps: {', '.join(f'{v:.3g}' for v in tica['eigenvalues'][:shown])}{flags}"
    )
    print(f"  {timescales_line(s['kinetics'])}")
    accuracy = lambda value: "n/a (too few frames per state)" if value is None else f"{value:.1%}"
    print(
        f"  state classification from 2 CVs: learned {accuracy(s['state_accuracy_learned'])}, TICA {accuracy(s['state_accuracy_tica'])}"
    )
    kinetic = s["kinetic_cvs"]
    if kinetic is not None:
        relative = kinetic["minus_tica"]
        print(
            f"  kinetic CVs (time-lagged objective + VAMP-2 term, weight {kinetic['vamp_weight']:g}): VAMP-2 {kinetic['vamp2']:.3f}{error(kinetic['vamp2_standard_error'])}, "
            f"minus TICA {relative['mean']:+.3f}{error(relative['standard_error'])}; mutual information with psi {kinetic['mi_psi_nats']:.2f} nats, "
            f"with phi {kinetic['mi_phi_nats']:.2f}; relaxation times (ps) {', '.join(f'{t:.3g}' for t in kinetic['relaxation_times_ps'][:2])}"
        )
    print("  pictures:")
    for name, path in s["figures"].items():
        print(f"    {name}: {path}")
