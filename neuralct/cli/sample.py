"""``neuralct sample``: exact Boltzmann samples through a trained model (latent HMC, HMC, independence moves)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import NeuralCTError
from ..md.systems import SOLVENTS
from ..sampling.diagnostics import TRAINING_DATA_DISAGREEMENT
from ..workflows.sample import METHODS
from .options import (
    add_common_options,
    nonnegative_int,
    positive_float,
    positive_fraction,
    positive_int,
    positive_int_or_auto,
    print_warning,
    result_settings,
    save_resolved_config,
)
from .systems import prepared_elsewhere, system_files

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sample",
        help=(
            "exact Boltzmann samples: HMC in the model's latent space, in physical coordinates, "
            "or independence moves from the flow"
        ),
        description=(
            "Sample the Boltzmann distribution of the system a model was trained on, exactly: every move "
            "ends in a Metropolis test on the true energy, so a poor model costs efficiency, never "
            "correctness. Methods: auto (latent HMC, with independence moves from the flow where its Kish ESS "
            "fraction admits them and the warm-up finds they pay: as many per trajectory as give the most ESS per "
            "evaluation, then fixed), latent-hmc (HMC on U(z) = beta E(g(z)) - ln|det dg/dz| - ln J), hmc "
            "(HMC in the model's physical coordinates), independence (proposals from the flow), mixed "
            "(independence moves alternating with latent HMC). Molecules need a SYSTEM without constraints "
            "and a model of every atom, or of every atom but hydrogens (--selection heavy): those are then "
            "sampled by bond length, angle and dihedral on the atoms they are bonded to (latent-hmc and hmc "
            "only). A toy model samples its toy system. Writes the samples "
            "(molecules: samples.nc + topology.pdb; toys: samples.npz), the phi/psi histogram and basin "
            "populations with standard errors, summary.json (acceptance, energy evaluations, "
            "autocorrelation times and ESS per evaluation, Kish ESS of the flow) and checkpoints; "
            "rerunning the same command resumes. Before sampling, one line per thing the model lacks that makes "
            "sampling pay: a model of all atoms, trained on data without constraints, until its validation loss "
            "stopped falling (summary.json: model_for_sampling, with what is not known, e.g. for data of other "
            "engines, which prints nothing)."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="model.pt written by `neuralct train`")
    parser.add_argument(
        "system",
        metavar="SYSTEM",
        nargs="*",
        help=(
            "for molecular models: the bundled system, system YAML or PDB the model was trained on "
            "(built without constraints), or its input files prepared elsewhere (AMBER prmtop + inpcrd/rst7, "
            "GROMACS top + gro, CHARMM psf + crd + parameters, OpenMM System XML + PDB) of a system without water"
        ),
    )
    parser.add_argument(
        "--solvent",
        choices=SOLVENTS,
        default=None,
        help="solvent of SYSTEM: vacuum (NoCutoff) or OBC2 implicit solvent (default: the system file's, else vacuum); "
        "explicit water is refused: the flow models the solute, exact sampling would need the solvent",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="sampler; auto measures the flow in warm-up and mixes its independence moves with latent HMC where they "
        "pay, else latent HMC alone (default: %(default)s)",
    )
    parser.add_argument(
        "--chains", type=positive_int, default=16, help="chains run as one batch (default: %(default)s)"
    )
    parser.add_argument(
        "--samples",
        type=positive_int,
        default=1000,
        help="recorded iterations per chain after warm-up (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=nonnegative_int,
        default=200,
        help=(
            "iterations that relax the chains and fit the mass matrix (first half) and adapt the step size "
            "(second half), then are discarded (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--step-size",
        type=positive_float,
        default=0.1,
        help=(
            "leapfrog step to start the adaptation from (latent units, or sqrt(amu) nm for molecular hmc; "
            "default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--leapfrog-steps",
        type=positive_int_or_auto,
        default="auto",
        help="mean leapfrog steps L per HMC trajectory (each trajectory draws its steps uniformly from 1 to 2L - 1), "
        "or auto: the L of 1, 2, 4, ..., 32 with the most expected squared jump distance per energy evaluation "
        "in the warm-up's second half, then fixed; auto needs --warmup 24 or more (default: %(default)s)",
    )
    parser.add_argument(
        "--mass-matrix",
        choices=("curvature", "unit"),
        default="curvature",
        help=(
            "HMC masses: the mean curvature E[grad U grad U^T] of the second quarter of the warm-up, "
            "or the identity (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--target-acceptance",
        type=positive_fraction,
        default=0.65,
        help="mean acceptance the warm-up aims at (default: %(default)s)",
    )
    parser.add_argument(
        "--kish-samples",
        type=nonnegative_int,
        default=1000,
        help="flow samples for Kish's ESS of the importance weights, 0 for none (then --method auto is latent HMC "
        "alone; default: %(default)s)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=100,
        help="iterations between checkpoints (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_options(
        parser,
        output_default="runs/sample",
        cpu_only="sampling runs on the CPU, with energies from OpenMM's Reference platform",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the target of the model, check the settings and the memory, sample in the locked folder, and report."""
    from ..model.transformation import load
    from ..sampling.chains import WARMUP_SCHEDULE
    from ..sampling.mixture import CHOICE_RULE
    from ..workflows.model_for_sampling import advice_lines, check_model_for_sampling
    from ..workflows.sample import check_memory, check_method, run_sampling
    from .runs import RunFolder

    model = load(args.model).double()
    model.requires_grad_(False)
    target, inputs = _target(args, model)
    check_method(args.method, target)
    settings = _settings(args)
    check_memory(model, target, settings)
    model_check = check_model_for_sampling(model, target)
    for line in advice_lines(model_check):
        print(line)
    run_settings = result_settings(args, ignore=("model", "checkpoint_every"))
    # Fixed parts of the method that change the samples: a folder of a run made with other ones is not resumed.
    run_settings["warmup_schedule"] = WARMUP_SCHEDULE
    if args.method == "auto":
        run_settings["method_choice"] = CHOICE_RULE
    # A finished rerun writes the samples and the report again from its checkpoint; a changed
    # checkpoint is refused.
    rebuilt = ("samples.*", "topology.pdb", "*.png", "phi_psi_histogram.npz", "summary.json", "config.yaml")
    with RunFolder(
        args.output, "sample", run_settings, inputs=inputs, overwrite=args.overwrite, rebuilt=rebuilt
    ) as folder:
        if folder.changed_outputs:
            print(folder.restored_line("its checkpoint"))
        summary = run_sampling(
            model, target, settings, folder.path, seed=args.seed, resume=folder.resuming, model_check=model_check
        )
        save_resolved_config(args, folder.path)
    if "method_choice" in summary:
        print(_method_choice_line(summary, target))
    _print_result(folder.path, summary, args.method, target.placed_dim)
    return 0


def _target(args: argparse.Namespace, model) -> tuple[Any, list[str]]:
    """What the model samples (its toy system, or SYSTEM for a molecular model) and the input files it reads."""
    from ..model.molecular import is_molecular
    from ..sampling.targets import molecular_target, toy_target

    inputs = [args.model]
    if not is_molecular(model):
        if args.system:
            raise NeuralCTError(
                f"SYSTEM {' '.join(args.system)}: a toy model samples its own toy system; leave SYSTEM out"
            )
        return toy_target(model), inputs
    if not args.system:
        raise NeuralCTError(
            "a molecular model needs the SYSTEM it was trained on, e.g. `neuralct sample MODEL alanine-dipeptide`"
        )
    from ..model.molecular import check_training_solvent

    md_system = _md_system(args, model)
    # Explicit water is refused first, with what works instead.
    target = molecular_target(model, md_system, " ".join(args.system))
    check_training_solvent(model, md_system.settings, f"system {' '.join(args.system)}")
    if "forcefield_note" in target.description:
        print(f"note: {target.description['forcefield_note']}")
    return target, inputs + system_files(args)


def _md_system(args: argparse.Namespace, model) -> Any:
    """SYSTEM without constraints at the model's temperature: built, or read from its input files."""
    from ..md.inputs import read_system
    from ..md.systems import MODEL_SYSTEM_HYDROGEN_ADVICE, build_system

    temperature = model.metadata["molecule"]["temperature_K"]
    if not prepared_elsewhere(args.system):
        return build_system(
            args.system[0],
            solvent=args.solvent,
            constraints="none",
            temperature=temperature,
            hydrogen_advice=MODEL_SYSTEM_HYDROGEN_ADVICE,
        )
    if args.solvent is not None:
        raise NeuralCTError(
            f"--solvent builds a system from a PDB; the input files of {args.system[0]} define their own: drop it"
        )
    from ..sampling.targets import refuse_explicit_solvent

    source = " ".join(args.system)
    return read_system(
        args.system,
        constraints="none",
        temperature=temperature,
        solvent_check=lambda topology, periodic: refuse_explicit_solvent(topology, periodic, source),
    )


def _settings(args: argparse.Namespace):
    """The run's :class:`~neuralct.workflows.sample.SamplingSettings` from the options."""
    from ..workflows.sample import SamplingSettings

    return SamplingSettings(
        method=args.method,
        chains=args.chains,
        samples=args.samples,
        warmup=args.warmup,
        step_size=args.step_size,
        leapfrog_steps=args.leapfrog_steps,
        target_acceptance=args.target_acceptance,
        mass_matrix=args.mass_matrix,
        kish_samples=args.kish_samples,
        checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress,
    )


def _method_choice_line(summary: dict, target) -> str:
    """What ``--method auto`` chose, with the Kish fraction and the mixing proportion, and what would help where the
    flow makes no global moves."""
    choice = summary["method_choice"]
    moves, fraction, minimum = (
        choice["independence_moves_per_hmc_trajectory"],
        choice["kish_ess_fraction"],
        choice["min_kish_ess_fraction"],
    )
    reason = choice["reason"]
    if reason == "placed_hydrogens":
        return (
            f"method auto: latent HMC alone: the model leaves {target.description['placed_hydrogens']} hydrogens out, "
            "so its flow cannot draw whole configurations for global moves; a model of all atoms "
            "(`neuralct train --selection all`) would allow them"
        )
    if reason == "kish_not_measured":
        return (
            "method auto: latent HMC alone: --kish-samples 0 leaves the flow unmeasured; "
            "give it draws to try global moves"
        )
    if reason == "kish_below_minimum":
        return (
            f"method auto: latent HMC alone: the flow is too weak for global moves (Kish's ESS fraction of its "
            f"importance weights {fraction:.3g}, below {minimum}); a flow trained longer would help "
            "(`neuralct train --steps`), and the `model:` lines, where there are any, say what else it lacks"
        )
    if reason == "warmup_did_not_measure":
        return (
            f"method auto: latent HMC alone: Kish's ESS fraction of the flow {fraction:.3g}, but the warm-up was too "
            "short to measure its moves (--warmup)"
        )
    measured = choice["measured"]
    acceptance = f"independence acceptance {measured['independence_acceptance']:.2f} in warm-up"
    if not moves:
        return (
            f"method auto: latent HMC alone: the flow's independence moves did not pay in warm-up (Kish's ESS "
            f"fraction {fraction:.3g}, {acceptance})"
        )
    return (
        f"method auto: {moves} independence move{'s' * (moves != 1)} from the flow per latent HMC trajectory "
        f"(Kish's ESS fraction {fraction:.3g}, {acceptance}; the most modelled ESS per evaluation)"
    )


def _at_temperature(summary: dict) -> str:
    """`` at T K``, the temperature a molecular model's samples follow (its training temperature); empty for a toy."""
    temperature = summary["target"].get("temperature_K")
    return "" if temperature is None else f" at {temperature:g} K (the model's training temperature)"


def _print_result(folder: Path, summary: dict, method: str, placed_dim: int) -> None:
    """Acceptance, cost and potential energy, the curvature's range, and warnings for disagreeing or stuck chains."""
    # The HMC kernel runs in latent coordinates unless the method is physical HMC: its line says which.
    chosen = (summary.get("method_choice") or {}).get("chosen", method)
    label = {"hmc": "HMC" if chosen == "hmc" else "latent HMC"}
    acceptance = ", ".join(
        f"{label.get(name, name)} {stats['acceptance_rate']:.2f}" for name, stats in summary["kernels"].items()
    )
    if "leapfrog_choice" in summary:
        lengths = ", ".join(f"{label.get(name, name)} {steps}" for name, steps in summary["leapfrog_steps"].items())
        acceptance += f"; leapfrog steps chosen in warm-up: {lengths}"
    energy = summary["potential_energy_kT"]
    print(
        f"samples in {folder}{_at_temperature(summary)}: acceptance {acceptance}; "
        f"{summary['energy_evaluations']} energy evaluations; "
        f"potential energy {energy['mean']:.2f} +- {_shown(energy['standard_error'], '.2f')} kT"
        + (" (not converged: the error is the spread between chains)" if energy["converged"] is False else "")
        + (
            " (the error of batch means: the autocorrelation reaches past its window)"
            if energy.get("standard_error_from") == "batch means"
            else ""
        )
        + ", "
        f"ESS per evaluation {_shown(energy['ess_per_evaluation'], '.2e')}"
    )
    curvature = summary["mean_curvature"]
    space = "physical" if method == "hmc" else "latent"
    if method == "hmc":
        exact = "the stiffness the curvature mass matrix evens out"
    else:
        exact = "1 everywhere for an exact flow" if not placed_dim else "placed hydrogens are not whitened by the flow"
    print(
        f"{space} curvature: eigenvalues {curvature['eigenvalues'][0]:.3g} to {curvature['eigenvalues'][-1]:.3g}, "
        f"{curvature['above_4']} above 4 ({exact})"
    )
    convergence = summary["convergence"]
    off_data = convergence["disagree_with_training_data"]
    disagree = [name for name in convergence["not_converged"] if name not in convergence["unreached"] + off_data]
    if disagree:
        print_warning(
            f"the chains disagree (split R-hat above {convergence['r_hat_limit']}) on "
            f"{', '.join(disagree)}; the estimates are not reliable yet: "
            "sample longer (--samples) or warm up longer (--warmup)"
        )
    if convergence["unreached"]:
        print_warning(
            f"no chain entered (or left) {', '.join(convergence['unreached'])}, where the flow's draws go "
            "(flow_draws_fraction in summary.json): the chains may be stuck where they started; sample longer "
            "(--samples) or with more chains (--chains)"
        )
    if off_data:
        print_warning(
            f"the chains' populations of {', '.join(off_data)} disagree with the model's training trajectories "
            f"(training_data_fraction in summary.json, {TRAINING_DATA_DISAGREEMENT:g} standard errors or more apart), "
            "though the chains may agree with each other: the chains may not have left the basins where they started "
            "(sample longer, --samples, or with more chains, --chains), or, where they entered the basin more often "
            "than the trajectories did, the trajectories be too short (each basin's note in summary.json says which)"
        )


def _shown(figure: float | None, spec: str) -> str:
    """A figure of summary.json for the terminal; an undefined one (None there, with its reason) as "undefined"."""
    return "undefined" if figure is None else format(figure, spec)
