"""``neuralct train``: learn a neural canonical transformation."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from ..errors import NeuralCTError
from ..io import write_json
from ..training.device import MATMUL_PRECISIONS
from ..training.loop import TrainingSettings
from ..workflows.objective import KINETIC_LEARNING_RATE, KINETIC_STEPS
from .analyze import oscillation_lines
from .options import (
    add_common_options,
    add_preset,
    fraction,
    nonnegative_float,
    positive_float,
    positive_int,
    result_settings,
    save_resolved_config,
)

__all__ = ["add_parser", "run", "parse_parameters", "FOR_SAMPLING"]

#: What ``--for-sampling`` sets: the training that made latent HMC pay with `neuralct sample`'s defaults on a few
#: nanoseconds of data (benchmark B4, "Defaults against tuned settings"): the heavy atoms (hydrogens are placed by
#: internal coordinates when sampling), maximum likelihood, position noise against overfitting a few thousand frames,
#: and enough steps for the validation loss to stop falling there (lowest at step 9,100 of 10,000 on 3 x 1 ns of
#: alanine dipeptide).
FOR_SAMPLING = {"selection": "heavy", "objective": "density", "position_noise": 1.0, "steps": 10000}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="learn a neural canonical transformation: slow CVs from trajectories, or a toy's modes",
        description=(
            "Train a neural canonical transformation: on trajectories with the kinetic (time-lagged) objective "
            "where they allow it, else by maximum likelihood (--objective); on a toy by maximum likelihood on "
            "samples or by minimising the variational free energy of its Hamiltonian. Writes model.pt, "
            "summary.json (frequencies in mode order, slowest first; losses), config.yaml and a checkpoint that "
            "lets an interrupted run resume when the same command is run again; other data or "
            "options into the same --output are refused (see --overwrite)."
        ),
    )
    parser.add_argument(
        "trajectories",
        nargs="*",
        metavar="TRAJ",
        help="trajectory files in any format MDTraj or MDAnalysis reads (held-out validation: whole trajectories)",
    )
    source = parser.add_argument_group("what to learn from")
    source.add_argument(
        "--top",
        metavar="FILE",
        help=(
            "topology (PDB, PSF, prmtop, GRO...) for trajectories that hold none; `neuralct simulate` output finds "
            "its topology.pdb itself"
        ),
    )
    source.add_argument(
        "--selection",
        default="heavy",
        help="atoms: heavy (the solute's heavy atoms: no water, no ions), all, or an MDTraj selection "
        "(default: %(default)s)",
    )
    source.add_argument(
        "--stride", type=positive_int, default=1, help="use every STRIDE-th frame (default: %(default)s)"
    )
    source.add_argument(
        "--frame-ps",
        type=positive_float,
        default=None,
        help="time between the frames of trajectories that hold no time stamps (DCD), ps, for a lag in ps; refused "
        "where the files' own stamps say otherwise",
    )
    source.add_argument(
        "--temperature",
        type=positive_float,
        default=None,
        help="temperature of the trajectories in K (default: the one neuralct simulate and bias record in their "
        "files, else 300; refused where it differs from their record)",
    )
    source.add_argument(
        "--objective",
        choices=("auto", "kinetic", "density"),
        default="auto",
        help=(
            "kinetic: the time-lagged objective, slow CVs first (its lag, VAMP-2 term and momenta chosen from the "
            "data unless given); density: maximum likelihood on single frames, the softest modes first; auto: "
            "kinetic where the trajectories have time stamps and enough consecutive frames, else density, the "
            "choice printed and recorded in summary.json (default: %(default)s)"
        ),
    )
    source.add_argument(
        "--momenta",
        choices=("resample", "recorded"),
        default=None,
        help=(
            "Maxwell-Boltzmann momenta drawn fresh every minibatch, or recorded on-step velocities (default: "
            "recorded for the kinetic objective where the files have velocities, else resample)"
        ),
    )
    source.add_argument(
        "--lag-ps",
        type=positive_float,
        default=None,
        metavar="TAU",
        help=(
            "the kinetic objective's lag: train on pairs of frames TAU ps apart; each latent oscillator gets a "
            "learned Langevin friction and modes are ranked by relaxation time, the slowest first; with recorded "
            "momenta the phase-space transition density, else the configuration-only one (default: a quarter of "
            "the slowest implied timescale of a quick TICA of the training frames, in whole frames)"
        ),
    )
    source.add_argument(
        "--rank-lag-ps",
        type=positive_float,
        default=None,
        metavar="TAU",
        help=(
            "rank the latent modes by their autocorrelation at TAU ps on the training trajectories, the most "
            "autocorrelated first, instead of by frequency: the slowest motions of the data as CVs, e.g. of "
            "biased trajectories, where the bias has sped up what it acted on (default: by frequency)"
        ),
    )
    source.add_argument(
        "--vamp-weight",
        type=nonnegative_float,
        default=None,
        metavar="W",
        help=(
            "the kinetic objective: add W times the VAMP-2 score of the --vamp-modes slowest latent positions to it, "
            "0 for none (default: 100 where the lag is chosen from the data, 0 with --lag-ps)"
        ),
    )
    source.add_argument(
        "--vamp-lags-ps",
        type=positive_float,
        nargs="+",
        default=None,
        metavar="TAU",
        help=(
            "the VAMP-2 term's lags in ps, whose scores are averaged, e.g. 0.5 1 (default: with a lag chosen from "
            "the data, half of it and it where half is a whole number of frames, else it; with --lag-ps, that lag)"
        ),
    )
    source.add_argument(
        "--vamp-modes",
        type=positive_int,
        default=None,
        metavar="K",
        help=(
            "the kinetic objective: the VAMP-2 term scores the K slowest latent positions, e.g. one per slow process "
            "of a molecule with several (default: 2)"
        ),
    )
    weighted = source.add_mutually_exclusive_group()
    weighted.add_argument(
        "--weights", metavar="FILE", help="frame weights, one per line (weighted maximum likelihood for biased data)"
    )
    weighted.add_argument(
        "--bias-colvar",
        metavar="COLVAR",
        help="COLVAR of a `neuralct bias` run (or a PLUMED bias) over the same frames, one row per frame, bias in "
        "kJ/mol: weights exp((V - c(t))/kT) from its rbias column (LABEL.rbias), or exp(V/kT) from its bias column "
        "for a static bias, for maximum likelihood; with --lag-ps, the kinetic objective with its lags in rescaled "
        "time dt exp((V - c(t))/kT), the pairs weighted by the rescaled time they span",
    )
    source.add_argument(
        "--validation-trajectories",
        type=positive_int,
        default=1,
        help="trajectories held out for validation (default: %(default)s)",
    )
    source.add_argument(
        "--toy", metavar="NAME", help="a toy system with exact answers: harmonic-chain or curved-double-well"
    )
    source.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=(
            "toy-system parameter, repeatable (harmonic-chain: n=32, kappa=1.0, masses=[1,2,...]; curved-double-well: "
            "barrier=3, tilt=0.5, stiffness=10, curvature=1)"
        ),
    )
    source.add_argument(
        "--mode",
        choices=("ml", "variational"),
        default="ml",
        help="maximum likelihood from samples, or variational free energy (default: %(default)s)",
    )
    source.add_argument(
        "--samples",
        type=positive_int,
        default=50000,
        help="exact samples drawn for maximum likelihood on a toy (default: %(default)s)",
    )
    source.add_argument(
        "--validation-fraction", type=fraction, default=0.1, help="share of toy samples held out (default: %(default)s)"
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--layers",
        default="linear-point,point",
        help=(
            "comma-separated layers from the data to the prior: linear, linear-point, point, continuous "
            "(default: %(default)s)"
        ),
    )
    model.add_argument(
        "--couplings",
        type=positive_int,
        default=4,
        help="affine coupling layers per point transformation (default: %(default)s)",
    )
    model.add_argument(
        "--hidden", type=positive_int, default=64, help="hidden width of the networks (default: %(default)s)"
    )
    model.add_argument(
        "--depth", type=positive_int, default=2, help="hidden layers of the networks (default: %(default)s)"
    )
    model.add_argument(
        "--leapfrog-steps",
        type=positive_int,
        default=4,
        help="leapfrog steps of a continuous layer (default: %(default)s)",
    )
    model.add_argument(
        "--init",
        choices=("auto", "data", "harmonic", "identity"),
        default="auto",
        help="start: normal modes of the data (ml), of the Hessian (variational), or identity (default: %(default)s)",
    )
    model.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="floating-point precision (default: %(default)s)",
    )
    model.add_argument(
        "--matmul-precision",
        choices=MATMUL_PRECISIONS,
        default="highest",
        help=(
            "float32 matrix products: highest (IEEE float32) or high (TF32 tensor cores on CUDA; no change on the "
            "CPU) (default: %(default)s)"
        ),
    )

    optim = parser.add_argument_group("optimisation")
    optim.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help=(
            f"optimiser steps (default: {KINETIC_STEPS} for the kinetic objective with its lag chosen from the data, "
            f"{TrainingSettings.steps} otherwise)"
        ),
    )
    optim.add_argument("--batch-size", type=positive_int, default=256, help="samples per step (default: %(default)s)")
    optim.add_argument(
        "--learning-rate",
        type=positive_float,
        default=None,
        help=(
            f"peak Adam learning rate (default: {KINETIC_LEARNING_RATE:g} for the kinetic objective with its lag "
            f"chosen from the data, {TrainingSettings.learning_rate:g} otherwise)"
        ),
    )
    optim.add_argument(
        "--eval-samples",
        type=positive_int,
        default=20000,
        help="samples for the final free-energy estimate (default: %(default)s)",
    )
    optim.add_argument(
        "--checkpoint-every", type=positive_int, default=500, help="steps between checkpoints (default: %(default)s)"
    )
    optim.add_argument(
        "--position-noise",
        type=nonnegative_float,
        default=0.0,
        metavar="FRACTION",
        help=(
            "Gaussian noise on the training positions of every minibatch, as a fraction of the thermal amplitude of "
            "the stiffest mode of the data (a regulariser for small datasets; maximum likelihood only) "
            "(default: %(default)s)"
        ),
    )
    optim.add_argument(
        "--keep-last", action="store_true", help="keep the last state, not the one of lowest validation loss"
    )
    optim.add_argument("--no-progress", action="store_true", help="no progress bar")
    optim.add_argument(
        "--distributed",
        action="store_true",
        help=(
            "data-parallel training (DDP) over the processes torchrun starts: "
            "`torchrun --nproc_per_node N -m neuralct train --distributed ...`; gloo on the CPU, nccl "
            "with one GPU per process (cuda:LOCAL_RANK) on CUDA. Each process draws its own --batch-size "
            "samples per step (a step sees N times as many); rank 0 alone writes the output; resuming "
            "needs the same N. Required under torchrun with N > 1, which is refused without it"
        ),
    )
    add_preset(
        parser,
        "--for-sampling",
        FOR_SAMPLING,
        "train a model for `neuralct sample` (benchmark B4); trajectories recorded with bond constraints are refused",
    )
    add_common_options(parser, output_default="runs/train")
    parser.set_defaults(run=run)
    return parser


def parse_parameters(items: list[str]) -> dict:
    """``["n=32", "kappa=0.5"]`` -> ``{"n": 32, "kappa": 0.5}`` (values read as YAML scalars or lists)."""
    parameters = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise NeuralCTError(f"--param {item!r}: expected KEY=VALUE")
        try:
            parameters[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise NeuralCTError(f"--param {item!r}: cannot read the value") from None
    return parameters


def run(args: argparse.Namespace) -> int:
    """Train in this process, or as one of torchrun's processes with ``--distributed``."""
    from ..training.distributed import process_group

    with process_group(args.device, enabled=args.distributed):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..workflows.train import architecture_from_options

    if bool(args.toy) == bool(args.trajectories):
        raise NeuralCTError("give trajectory files or --toy NAME (e.g. --toy harmonic-chain), not both and not neither")
    architecture = architecture_from_options(args.layers, args.couplings, args.hidden, args.depth, args.leapfrog_steps)
    # Resolves the steps and learning rate left to the objective (the toys keep the defaults of TrainingSettings).
    fit, inputs = (_trajectory_fit if args.trajectories else _toy_fit)(args, architecture)
    settings = TrainingSettings(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        checkpoint_every=args.checkpoint_every,
        keep_best=not args.keep_last,
        progress=not args.no_progress,
    )
    from ..training.distributed import is_main_process, world_size

    with _output_folder(args, inputs) as output:
        model, summary = fit(output, settings)
        summary["processes"] = world_size()
        if not is_main_process():
            return 0
        model.save(output / "model.pt")
        write_json(output / "summary.json", summary)
        save_resolved_config(args, output)
    _report(output, summary)
    return 0


@contextlib.contextmanager
def _output_folder(args: argparse.Namespace, inputs: list[str]) -> Iterator[Path]:
    """The locked, identified output folder (rank 0 alone writes, so only rank 0 takes it)."""
    from ..training.distributed import is_main_process
    from .runs import RunFolder

    if not is_main_process():
        yield Path(args.output)
        return
    # The checkpoint interval does not change the result: a resumed run is bit-identical.
    settings = result_settings(args, ignore=("trajectories", "top", "checkpoint_every", "weights", "bias_colvar"))
    # A finished rerun writes the model and summary again from the final checkpoint; a changed
    # checkpoint would silently change the model, so it is refused.
    rebuilt = ("model.pt", "summary.json", "config.yaml")
    with RunFolder(args.output, "train", settings, inputs=inputs, overwrite=args.overwrite, rebuilt=rebuilt) as folder:
        if folder.changed_outputs:
            print(folder.restored_line("the final checkpoint"))
        yield folder.path


def _run_options(args: argparse.Namespace, output: Path) -> dict:
    """How both kinds of training run, from the command line."""
    return {
        "device": args.device,
        "seed": args.seed,
        "checkpoint": output / "checkpoint.pt",
        "matmul_precision": args.matmul_precision,
        "position_noise": args.position_noise,
    }


def _trajectory_fit(args, architecture) -> tuple[Callable[[Path, Any], tuple], list[str]]:
    """Read the trajectories, choose the objective and check the fit; return it, to run in the output folder with
    the training settings, and the input files.

    The input files are the trajectories, their topologies and the weights file. ``--steps`` and
    ``--learning-rate`` left open take the chosen objective's (:meth:`ObjectiveChoice.schedule`).
    """
    from ..data import load_trajectories
    from ..data.loading import topology_file
    from ..data.pairs import RescaledTime
    from ..workflows.memory import check_fits
    from ..workflows.objective import choose_objective
    from ..workflows.train import prepare_trajectory_fit, run_trajectory_fit, training_memory_needed

    if args.mode != "ml":
        raise NeuralCTError("training on trajectories is maximum likelihood: drop --mode variational")
    data = load_trajectories(
        args.trajectories,
        topology=args.top,
        selection=args.selection,
        stride=args.stride,
        temperature=args.temperature,
        momenta="auto",
        seed=args.seed,
        frame_ps=args.frame_ps,
    )
    # The temperature the files record (or the default for files without a record) enters the run identity, so that
    # a rerun giving it resumes the run that took it by default.
    args.temperature = data.temperature
    topologies = {topology_file(Path(path), args.top) for path in args.trajectories} - {None}
    sampling_note = _check_data_for_sampling(args.trajectories) if args.for_sampling else None
    weights, weighting, weights_source, rescaled = None, None, "the frame weights", None
    if args.bias_colvar:
        _check_colvar_of_frames(args.bias_colvar, args.trajectories, data, args.stride)
    if args.bias_colvar and (args.lag_ps is not None or args.objective == "kinetic"):
        # The kinetic objective on a bias run's frames: its lags in rescaled time, pairs weighted by it.
        from ..analysis.reweighting import frame_log_weights

        if args.lag_ps is None:
            raise NeuralCTError(
                "--bias-colvar with the kinetic objective needs --lag-ps, the lag in rescaled (unbiased) time: "
                "it is not chosen from biased frames"
            )
        log_weights, source = frame_log_weights(args.bias_colvar, "colvar", data.n_frames, data.kT)
        rescaled = RescaledTime(log_weights, f"--bias-colvar {args.bias_colvar}: {source}")
    elif args.weights or args.bias_colvar:
        from ..analysis.reweighting import frame_weights

        weights, weighting = frame_weights(
            args.weights or args.bias_colvar, "file" if args.weights else "colvar", data.n_frames, data.kT
        )
        weights_source = f"--weights {args.weights}" if args.weights else f"--bias-colvar {args.bias_colvar}"
    choice = choose_objective(
        data,
        args.validation_trajectories,
        objective=args.objective,
        momenta=args.momenta,
        lag_ps=args.lag_ps,
        vamp_weight=args.vamp_weight,
        vamp_lags_ps=args.vamp_lags_ps,
        vamp_modes=args.vamp_modes,
        rank_lag_ps=args.rank_lag_ps,
        weighted=weights is not None,
    )
    schedule_given = _fill_schedule(args, *choice.schedule())
    prepared = prepare_trajectory_fit(
        data,
        selection=args.selection,
        validation_trajectories=args.validation_trajectories,
        **choice.fit_options(),
        rank_lag_ps=args.rank_lag_ps,
        weights=weights,
        weights_source=weights_source,
        dtype=args.dtype,
        rescaled_time=rescaled,
    )
    check_fits(
        training_memory_needed(data.frame.dim, architecture, args.batch_size, args.dtype),
        f"training on {data.n_frames} frames",
    )

    def fit(output: Path, settings: Any) -> tuple:
        if sampling_note:
            print(sampling_note)
        print(data.selection_note)
        if data.momenta_note:
            print(data.momenta_note)
        print(choice.line(lambda name: "--" + name.replace("_", "-")))
        if rescaled is not None:
            pairs = prepared.lagged
            print(
                f"lags in rescaled time dt exp(w), w the log weight of {rescaled.source}: {len(pairs.train[0])} "
                "training pairs, each weighted by the rescaled time it spans"
            )
        if not schedule_given:
            print(f"training: {settings.steps} steps at a peak learning rate of {settings.learning_rate:g}")
        model, summary = run_trajectory_fit(prepared, architecture, settings, **_run_options(args, output))
        summary["selection_note"] = data.selection_note
        summary["objective"] = model.metadata["objective"] = choice.as_dict()
        if weighting:
            summary["frame_weights"] = weighting
        return model, summary

    weight_files = [path for path in (args.weights, args.bias_colvar) if path]
    return fit, [*args.trajectories, *sorted(topologies), *weight_files]


def _check_colvar_of_frames(colvar: str, trajectories: list[str], data: Any, stride: int) -> None:
    """Refuse a COLVAR that is not of the frames given: another bias run's, or rows at another spacing.

    The COLVAR of a finished ``neuralct bias`` run belongs to the ``trajectory.nc`` beside it: its
    ``run.json`` records both files' SHA-256, and the trajectory given must be that one (by
    content). Any COLVAR's time column must increase within each trajectory, and step as the frames do (where both
    are known), and its
    ``phi`` and ``psi`` columns, where it has them, must be the frames' (:func:`_check_colvar_torsions`).
    """
    import json

    import numpy as np

    from ..analysis.colvar import read_colvar
    from ..io import sha256
    from .runs import IDENTITY_FILE

    folder = Path(colvar).resolve().parent
    try:
        recorded = json.loads((folder / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        recorded = None
    outputs = recorded.get("outputs") if isinstance(recorded, dict) and recorded.get("command") == "bias" else None
    name = Path(colvar).name
    if isinstance(outputs, dict) and name in outputs and "trajectory.nc" in outputs:
        if sha256(colvar) != outputs[name]:
            raise NeuralCTError(f"--bias-colvar {colvar} has changed since its bias run in {folder} wrote it")
        if [sha256(path) for path in trajectories] != [outputs["trajectory.nc"]]:
            raise NeuralCTError(
                f"--bias-colvar {colvar} is the COLVAR of the bias run in {folder}, whose frames are "
                f"{folder / 'trajectory.nc'}; the trajectories given hold other frames"
            )
    fields, table = read_colvar(colvar)
    if "time" in fields and len(table) > 1:
        steps = np.diff(table[:, fields.index("time")])
        # Where one trajectory ends and the next begins, the time may start again.
        starts = np.cumsum(data.traj_lengths)[:-1] - 1 if len(table) == data.n_frames else []
        back = np.setdiff1d(np.flatnonzero(steps <= 0), starts)
        if back.size:
            raise NeuralCTError(
                f"--bias-colvar {colvar}: its time does not increase at row {int(back[0]) + 1} (a restarted run's "
                "COLVAR repeats times, a sorted or reversed one is not in frame order); give one row per frame, in the "
                "frames' order"
            )
        steps = np.delete(steps, starts)
        spacing = float(np.median(steps)) if steps.size else data.timestep_ps
        if (
            data.timestep_ps is not None
            and spacing is not None
            and not np.isclose(spacing, data.timestep_ps, rtol=1e-3)
        ):
            strided = (
                f"; with --stride {stride}, give one row per loaded frame (every {stride}-th row)"
                if stride > 1 and np.isclose(spacing * stride, data.timestep_ps, rtol=1e-3)
                else ""
            )
            raise NeuralCTError(
                f"--bias-colvar {colvar} has a row every {spacing:g} ps and the trajectories a frame every "
                f"{data.timestep_ps:g} ps: they are not the same frames{strided}"
            )
    _check_colvar_torsions(colvar, fields, table, data)


#: A COLVAR's phi or psi column is of other frames where it differs from the frames' own angle by more than this
#: (rad) in more than :data:`TORSION_ROWS_OFF` of its rows (the XTC's 0.001 nm moves an angle by about 0.01 rad).
TORSION_TOLERANCE_RAD = 0.05
TORSION_ROWS_OFF = 0.01


def _check_colvar_torsions(colvar: str, fields: list[str], table: Any, data: Any) -> None:
    """Refuse a COLVAR whose ``phi`` or ``psi`` column (a ``neuralct bias --cv phi,psi`` or PLUMED TORSION COLVAR of a
    molecule with one of each) is not the frames' angle: a COLVAR of other frames with as many rows."""
    import numpy as np

    from ..analysis.dihedrals import dihedral_angles, find_dihedrals

    if len(table) != data.n_frames:
        return  # the row count is refused on its own
    dihedrals = find_dihedrals(data.selection_topology) if {"phi", "psi"} & set(fields) else []
    for kind in ("phi", "psi"):
        angles = [d for d in dihedrals if d.kind == kind]
        if kind not in fields or len(angles) != 1:
            continue
        frames = dihedral_angles(data.positions, angles)[:, 0]
        off = np.abs(np.angle(np.exp(1j * (table[:, fields.index(kind)] - frames)))) > TORSION_TOLERANCE_RAD
        if off.mean() > TORSION_ROWS_OFF:
            raise NeuralCTError(
                f"--bias-colvar {colvar}: its {kind} column differs from the frames' {kind} in {int(off.sum())} of "
                f"{len(off)} rows (first: row {int(np.argmax(off)) + 1}): it is the COLVAR of other frames"
            )


def _check_data_for_sampling(trajectories: list[str]) -> str:
    """Refuse trajectories recorded with bond constraints for ``--for-sampling``; the line to print otherwise.

    ``neuralct sample`` samples the molecule without constraints, so a flow that learned rigid X-H
    bonds would not fit it (:func:`~neuralct.workflows.model_for_sampling.recorded_constraints`).
    """
    from ..workflows.model_for_sampling import UNCONSTRAINED_SIMULATION, recorded_constraints, split_by_constraints

    constrained, unknown = split_by_constraints({path: recorded_constraints(path) for path in trajectories})
    if constrained:
        path, kind = next(iter(constrained.items()))
        raise NeuralCTError(
            f"--for-sampling: {path} ({kind}) was simulated with bond constraints, which `neuralct sample` does not "
            f"have; simulate with {UNCONSTRAINED_SIMULATION}"
        )
    if unknown:
        return (
            f"for sampling: bond constraints of {len(unknown)} of {len(trajectories)} trajectories not known "
            f"({unknown[0]}); they must have none"
        )
    return f"for sampling: {len(trajectories)} of {len(trajectories)} trajectories simulated without bond constraints"


def _fill_schedule(args: argparse.Namespace, steps: int, learning_rate: float) -> bool:
    """Set ``--steps`` and ``--learning-rate`` left open to ``steps`` and ``learning_rate``; whether both were given.

    Resolved into ``args``, so that ``config.yaml`` and the run's identity hold the values that ran.
    """
    given = args.steps is not None and args.learning_rate is not None
    args.steps = steps if args.steps is None else args.steps
    args.learning_rate = learning_rate if args.learning_rate is None else args.learning_rate
    return given


def _toy_fit(args, architecture) -> tuple[Callable[[Path, Any], tuple], list[str]]:
    """Build the toy system; return the fit, to run in the output folder with the training settings, and no input
    files. ``--steps`` and ``--learning-rate`` left open take the defaults of ``TrainingSettings``."""
    from ..toys.hamiltonians import make_toy_system
    from ..workflows.memory import check_fits
    from ..workflows.train import fit_toy, training_memory_needed

    if args.for_sampling:
        raise NeuralCTError(
            "--for-sampling is for molecules' trajectories; a toy model samples its toy as trained (see --steps)"
        )
    if args.objective == "kinetic":
        raise NeuralCTError(
            "--objective kinetic needs trajectories (pairs of frames a lag apart); the toys give independent samples"
        )
    for option, value in (
        ("--lag-ps", args.lag_ps),
        ("--rank-lag-ps", args.rank_lag_ps),
        ("--vamp-lags-ps", args.vamp_lags_ps),
        ("--vamp-weight", args.vamp_weight),
        ("--vamp-modes", args.vamp_modes),
        ("--momenta", args.momenta),
    ):
        if value is not None:
            raise NeuralCTError(
                f"{option} needs trajectories (pairs of frames a lag apart); the toys give independent samples"
            )
    system = make_toy_system(args.toy, parse_parameters(args.param))
    check_fits(
        training_memory_needed(system.dim, architecture, args.batch_size, args.dtype, toy_samples=args.samples),
        f"training on the toy {args.toy}",
    )

    _fill_schedule(args, TrainingSettings.steps, TrainingSettings.learning_rate)

    def fit(output: Path, settings: Any) -> tuple:
        return fit_toy(
            system,
            args.mode,
            architecture,
            settings,
            samples=args.samples,
            validation_fraction=args.validation_fraction,
            init=args.init,
            eval_samples=args.eval_samples,
            dtype=args.dtype,
            **_run_options(args, output),
        )

    return fit, []


def _report(output: Path, summary: dict) -> None:
    line = f"model: {output / 'model.pt'}; frequencies of the slowest modes: " + ", ".join(
        f"{w:.4g}" for w in summary["frequencies"][:4]
    )
    if "frequency_max_relative_error" in summary:
        line += f"; max relative frequency error vs exact: {summary['frequency_max_relative_error']:.3%}"
    if "free_energy" in summary:
        line += (
            f"; variational free energy {summary['free_energy']:.4f} +- {summary['free_energy_error']:.4f} kT "
            f"(exact {summary['exact_free_energy']:.4f})"
        )
    print(line)
    if "cv_kinetics" in summary:  # trajectories in time; a toy's samples are independent
        for warning in oscillation_lines(summary["cv_kinetics"]):
            print(warning)
