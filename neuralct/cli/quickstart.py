"""``neuralct quickstart``: simulate alanine dipeptide, learn its slow modes, and show them."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..workflows.objective import KINETIC_STEPS
from .analyze import timescales_line
from .options import (
    add_common_options,
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
            "for the scores) with the kinetic objective as `neuralct train` chooses it by default, analyze its "
            "slow CVs against phi/psi and TICA (VAMP-2 with error bars over blocks of the held-out trajectory, "
            "TICA's eigenvalues with the oscillating components flagged, implied timescales), do the same for "
            "a second model trained by maximum likelihood (the density objective), and print where the pictures "
            "are. "
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
    parser.add_argument(
        "--steps", type=positive_int, default=KINETIC_STEPS, help="training steps of the CVs (default: %(default)s)"
    )
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
        "--density-steps",
        type=nonnegative_int,
        default=4000,
        help=(
            "training steps of the maximum-likelihood model scored beside the CVs; 0 leaves it out "
            "(default: %(default)s)"
        ),
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_common_options(parser, output_default="runs/quickstart")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Check the options, run the steps in the locked output folder, and print the key figures."""
    from ..workflows.quickstart import QuickstartSettings, check_settings, run_quickstart
    from .runs import RunFolder

    settings = QuickstartSettings(
        replicas=args.replicas,
        length_ns=args.length_ns,
        report_ps=args.report_ps,
        steps=args.steps,
        batch_size=args.batch_size,
        lag_ps=args.lag_ps,
        density_steps=args.density_steps,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    check_settings(settings)
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
        save_resolved_config(args, folder.path)
        summary = run_quickstart(settings, folder.path, announce=_announce, warn=print_warning)
    _print_summary(folder.path, summary)
    return 0


def _announce(line: str) -> None:
    """A step's announcement, shown at once (before the step's own output)."""
    print(line, flush=True)


def _error(value: float | None) -> str:
    """A standard error after its figure (`` +- 0.012``); nothing where it is undefined."""
    return "" if value is None else f" +- {value:.3f}"


def _accuracy(value: float | None) -> str:
    """A classification accuracy as a percentage; "n/a" where too few frames made it undefined."""
    return "n/a (too few frames per state)" if value is None else f"{value:.1%}"


def _print_summary(output: Path, s: dict) -> None:
    """The key figures of the run, then where the pictures are."""
    print(f"\nneuralct quickstart finished in {sum(s['seconds'].values()):.0f} s; results in {output}")
    print(f"  slow CVs: {s['objective']['description']}")
    print(f"  slowest relaxation times (ps): {', '.join(f'{t:.3g}' for t in s['relaxation_times_ps'])}")
    print(
        f"  best of the two slowest CVs: mutual information with psi {s['mi_psi_nats']:.2f} nats, "
        f"with phi {s['mi_phi_nats']:.2f} nats"
    )
    _print_vamp2(s)
    _print_tica(s)
    print(
        f"  state classification from 2 CVs: learned {_accuracy(s['state_accuracy_learned'])}, "
        f"TICA {_accuracy(s['state_accuracy_tica'])}"
    )
    if s["density_model"] is not None:
        _print_density_model(s["density_model"])
    print("  pictures:")
    for name, path in s["figures"].items():
        print(f"    {name}: {path}")


def _print_vamp2(s: dict) -> None:
    """VAMP-2 of the learned CVs and of TICA on the held-out blocks, and their paired difference."""
    difference = s["vamp2_learned_minus_tica"]
    print(
        f"  VAMP-2 of 2 CVs on held-out data (lag {s['lag_ps']:g} ps, {s['vamp2_scored_segments']} blocks): "
        f"learned {s['vamp2_learned']:.3f}{_error(s['vamp2_learned_standard_error'])}, "
        f"TICA {s['vamp2_tica']:.3f}{_error(s['vamp2_tica_standard_error'])}"
    )
    print(f"  learned minus TICA, paired over blocks: {difference['value']:+.3f}{_error(difference['standard_error'])}")


def _print_tica(s: dict) -> None:
    """TICA's leading eigenvalues with the oscillating components flagged, and the implied timescales."""
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


def _print_density_model(density: dict) -> None:
    """The maximum-likelihood model's VAMP-2, its difference from TICA, its information on psi and phi, frequencies."""
    relative = density["minus_tica"]
    print(
        f"  maximum likelihood (--objective density) for comparison: "
        f"VAMP-2 {density['vamp2']:.3f}{_error(density['vamp2_standard_error'])}, "
        f"minus TICA {relative['value']:+.3f}{_error(relative['standard_error'])}; "
        f"mutual information with psi {density['mi_psi_nats']:.2f} nats, with phi {density['mi_phi_nats']:.2f}; "
        f"slowest frequencies (rad/ps) {', '.join(f'{w:.3g}' for w in density['frequencies_slowest'][:4])}"
    )
