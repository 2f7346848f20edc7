"""``neuralct analyze``: slow modes of trajectories, with pictures and scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_common_options, positive_float, positive_int, result_settings, save_resolved_config

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "analyze",
        help="project trajectories on the learned slow modes; plots, COLVAR files and scores",
        description=(
            "Project trajectories on the slowest modes of a trained model. Writes one PLUMED COLVAR "
            "file per trajectory (#! FIELDS time cv1 cv2 ...), PNG plots (Ramachandran coloured by "
            "the slow modes, free-energy surface of the two slowest CVs, frequency spectrum, training "
            "curves) and summary.json: mutual information and circular correlation of each slow mode "
            "with phi and psi, VAMP-2 of the two slowest CVs against TICA, PCA and (phi, psi) at the "
            "same lag on held-out trajectories, and a conformational-state classification accuracy."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="model.pt written by `neuralct train`")
    parser.add_argument("trajectories", nargs="+", metavar="TRAJ", help="trajectory files (any MDTraj/MDAnalysis format)")
    parser.add_argument("--top", metavar="FILE", help="topology for trajectories that hold none")
    parser.add_argument("--modes", type=positive_int, default=6, help="slow modes to analyse (default: %(default)s)")
    parser.add_argument("--lag-ps", type=positive_float, default=2.0, help="lag time of VAMP-2 and TICA in ps (default: %(default)s; the slowest relaxation of alanine dipeptide in vacuum without phi flips is about 5 ps)")
    parser.add_argument("--stride", type=positive_int, default=1, help="use every STRIDE-th frame (default: %(default)s)")
    parser.add_argument(
        "--test-trajectories", type=positive_int, default=None,
        help="held-out trajectories for the scores (default: those the model did not train on, else half)",
    )
    add_common_options(parser, output_default="runs/analyze")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..analysis.run import analyze_trajectories
    from ..device import resolve_device
    from ..model import load

    from ..data.loading import topology_file
    from ..runs import RunFolder

    model = load(args.model, device=resolve_device(args.device))
    topologies = {topology_file(Path(path), args.top) for path in args.trajectories} - {None}
    inputs = [args.model, *args.trajectories, *sorted(topologies)]
    settings = result_settings(args, ignore=("model", "trajectories", "top"))
    with RunFolder(args.output, "analyze", settings, inputs=inputs, overwrite=args.overwrite) as folder:
        output = folder.path
        summary = analyze_trajectories(
            model, args.trajectories, output, topology=args.top, n_modes=args.modes,
            lag_ps=args.lag_ps, test_trajectories=args.test_trajectories, stride=args.stride,
        )
        save_resolved_config(args, output)
    best = summary["best_of_two_slowest"]
    print(
        f"analysis in {output}: best of the two slowest modes: MI with psi {best['psi']['mi_nats']:.2f} nats, "
        f"with phi {best['phi']['mi_nats']:.2f} nats; VAMP-2 (2 CVs, lag {summary['lag_ps']:g} ps) learned "
        f"{summary['learned_cvs']['vamp2']:.3f} vs TICA {summary['tica']['vamp2']:.3f}"
    )
    return 0
