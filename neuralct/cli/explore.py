"""``neuralct explore SYSTEM``: unbiased MD, then metadynamics on learned CVs and retraining, until dF settles."""

from __future__ import annotations

import argparse

from ..errors import NeuralCTError
from ..workflows.explore import FREEZE_RATE_PER_NS, MAX_ROUNDS
from .options import (
    add_common_options,
    positive_float,
    positive_int,
    result_settings,
    save_resolved_config,
)
from .systems import add_system_options, md_system_from_options, system_digest, system_files

__all__ = ["add_parser", "run"]

#: Round 0's own unbiased MD: trajectories, and ns each.
_REPLICAS, _UNBIASED_NS = 4, 1.0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``explore`` subcommand to ``subparsers``."""
    p = subparsers.add_parser(
        "explore",
        help="the learn-bias-relearn loop: unbiased MD, then metadynamics on learned CVs and retraining until "
        "the free energy between the states settles",
        description=(
            "Round 0: unbiased Langevin MD of SYSTEM (as `neuralct simulate`, --replicas x --unbiased-ns, frames "
            "every 0.5 ps, at --unbiased-temperature), or the unbiased trajectories of it given with --data, and a "
            "model trained on them: at --temperature by maximum likelihood (`--objective density`: data that never "
            "made the rare transition hold no slow process for it, but the density's softest modes carry some of it); "
            "heated, where the rare transitions happen, with the kinetic objective as `neuralct train` chooses and "
            "trains it. Round R: well-tempered metadynamics on the slowest CV of the model of round R - 1 (as "
            "`neuralct bias`, --round-ns; from round 2 on Gaussian widths of 0.15 of the CV's training range). A "
            "round whose CV crossed every backbone phi at least --freeze-rate-per-ns times per ns has its final bias "
            "frozen: the rounds after it run the same CV under that fixed bias (independent runs, their frames "
            "reweighted exactly with exp(V/kT) and pooled); a round below that rate, or one whose CV left its grid "
            "or whose run broke down (it ends there), is followed by a model trained on its frames with the "
            "time-lagged objective "
            "(lag 2 ps of --retrain-time, VAMP-2 weight 100). Stops when every backbone phi was crossed and its "
            "pooled F(phi > 0) - "
            "F(phi < 0) changed by less than --tolerance-kj over the last frozen round, with block standard errors "
            "below it before and after and an estimate of its own from every frozen round, else after --max-rounds "
            "rounds (a molecule without a backbone phi has no states defined and runs them all). Writes "
            "OUTPUT/round-N/ (md or bias, model), the CVs of the model biased last as `neuralct export` writes them "
            "(OUTPUT/export/), each residue's phi/psi free energy over the frozen rounds pooled (OUTPUT/free-energy/) "
            "and summary.json; prints one line per round and one for the result. Rerunning the same command goes on "
            "from the last finished step; other options into the same --output are refused (see --overwrite)."
        ),
    )
    add_system_options(p)
    p.add_argument("--temperature", type=positive_float, default=300.0, help="temperature in K (default: %(default)s)")
    p.add_argument(
        "--unbiased-temperature",
        type=positive_float,
        default=None,
        help="temperature of round 0's unbiased MD in K; above --temperature the rare transitions happen there and "
        "round 0's model learns them with the kinetic objective; vacuum and implicit solvent only (default: "
        "--temperature)",
    )
    p.add_argument(
        "--replicas",
        type=positive_int,
        default=None,
        help=f"unbiased trajectories of round 0; the last validates the first model (default: {_REPLICAS})",
    )
    p.add_argument(
        "--unbiased-ns",
        type=positive_float,
        default=None,
        help=f"length of each unbiased trajectory in ns (default: {_UNBIASED_NS:g})",
    )
    p.add_argument(
        "--data",
        nargs="+",
        metavar="TRAJ",
        default=None,
        help="round 0 is these trajectories of unbiased MD of SYSTEM instead of its own MD: any format `neuralct "
        "train` reads (DCD, XTC, NetCDF, ...; another engine's, water and ions left out, molecules made whole), run "
        "at --unbiased-temperature; the last validates the first model. Their atoms must be SYSTEM's, or its solute's",
    )
    p.add_argument("--top", metavar="FILE", default=None, help="topology of --data files that hold none")
    p.add_argument(
        "--frame-ps",
        type=positive_float,
        default=None,
        help="time between the frames of --data files that hold no time stamps (DCD), ps; refused where the "
        "files' own stamps say otherwise",
    )
    p.add_argument(
        "--round-ns",
        type=positive_float,
        default=2.0,
        help="length of each round after round 0 in ns (default: %(default)s)",
    )
    p.add_argument(
        "--max-rounds",
        type=positive_int,
        default=MAX_ROUNDS,
        help="rounds at most after round 0, metadynamics and frozen-bias rounds (default: %(default)s)",
    )
    p.add_argument(
        "--freeze-rate-per-ns",
        type=positive_float,
        default=FREEZE_RATE_PER_NS,
        help="phi transitions per ns of a metadynamics round from which its bias is frozen for the rounds after it "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--retrain-time",
        choices=("simulation", "rescaled"),
        default="simulation",
        help="what the retraining's lag of 2 ps counts: simulation time, or rescaled time dt exp((V - c(t))/kT) "
        "from the round's COLVAR, each pair weighted by the rescaled time it spans (default: %(default)s)",
    )
    p.add_argument(
        "--tolerance-kj",
        type=positive_float,
        default=1.0,
        help="converged when each phi's F(phi > 0) - F(phi < 0), pooled over the frozen-bias rounds, changed by less "
        "than this over the last one, kJ/mol (default: %(default)s)",
    )
    p.add_argument(
        "--train-steps", type=positive_int, default=3000, help="optimiser steps of every model (default: %(default)s)"
    )
    p.add_argument(
        "--allow-oscillating-cvs",
        action="store_true",
        help="bias a model's slowest CV even where the model records it as oscillating on its training frames",
    )
    p.add_argument(
        "--platform",
        default="auto",
        help="OpenMM platform of every run, or auto: `simulate`'s choice for the unbiased MD, `bias`'s for the "
        "metadynamics (default: %(default)s)",
    )
    p.add_argument(
        "--threads", type=positive_int, default=None, help="CPU threads of the CPU platform (default: OpenMM's)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_common_options(p, output_default="runs/explore")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Build the system, check the options, then run (or go on with) the loop in the locked output folder."""
    from ..workflows.explore import ExploreSettings, check_settings, final_line, run_explore
    from .runs import RunFolder

    _check_round_zero_options(args)
    md_system = md_system_from_options(args)
    settings = ExploreSettings(
        replicas=_REPLICAS if args.replicas is None else args.replicas,
        data=tuple(args.data or ()),
        data_topology=args.top,
        data_frame_ps=args.frame_ps,
        unbiased_ns=_UNBIASED_NS if args.unbiased_ns is None else args.unbiased_ns,
        round_ns=args.round_ns,
        max_rounds=args.max_rounds,
        freeze_rate_per_ns=args.freeze_rate_per_ns,
        tolerance_kj=args.tolerance_kj,
        retrain_time=args.retrain_time,
        train_steps=args.train_steps,
        temperature=args.temperature,
        unbiased_temperature=args.unbiased_temperature,
        platform=args.platform,
        threads=args.threads,
        allow_oscillating_cvs=args.allow_oscillating_cvs,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    check_settings(settings, md_system)
    # The platform and threads change how fast the runs go, not what they sample; the system enters by its
    # content: files, options and the OpenMM System they build.
    # Given data and their topology enter by content too.
    # The rounds' equilibration, fixed (bias's default), enters too: an earlier version's run (none) is not mixed.
    identity = result_settings(args, ignore=("platform", "threads", "include_dir", "data", "top")) | {
        "openmm_system": system_digest(md_system),
        "round_equilibration_ps": settings.bias(1, md_system, None, None).equilibration_ps,
    }
    inputs = [*system_files(args), *(args.data or ()), *([args.top] if args.top else [])]
    # A finished rerun skips every step and writes the summary and config again.
    rebuilt = ("config.yaml", "summary.json", "free-energy/*", "export/*")
    with RunFolder(
        args.output, "explore", identity, inputs=inputs, overwrite=args.overwrite, rebuilt=rebuilt
    ) as folder:
        save_resolved_config(args, folder.path)
        summary = run_explore(md_system, settings, folder.path, announce=_announce)
    print(final_line(summary))
    return 0


def _check_round_zero_options(args: argparse.Namespace) -> None:
    """Refuse options of round 0's own MD with --data, and options of --data without it."""
    own = [f"--{name.replace('_', '-')}" for name in ("replicas", "unbiased_ns") if getattr(args, name) is not None]
    described = [f"--{name.replace('_', '-')}" for name in ("top", "frame_ps") if getattr(args, name) is not None]
    if args.data and own:
        raise NeuralCTError(f"{' and '.join(own)} size round 0's own MD, which --data replaces; give one or the other")
    if not args.data and described:
        verb = "describe" if len(described) > 1 else "describes"
        raise NeuralCTError(f"{' and '.join(described)} {verb} --data files, and no --data was given")


def _announce(line: str) -> None:
    """A round's line, shown at once (before the next round's progress bars)."""
    print(line, flush=True)
