"""``neuralct bias``: well-tempered metadynamics in OpenMM on the learned CVs (or on phi/psi as the reference)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..workflows.bias import CV_FORCES
from .options import (
    add_common_options,
    nonnegative_float,
    positive_float,
    positive_fraction,
    positive_int,
    positive_int_or_auto,
    print_warning,
    result_settings,
    save_resolved_config,
)
from .systems import (
    add_system_options,
    md_system_from_options,
    system_digest,
    system_files,
    warn_of_light_hydrogens,
)

if TYPE_CHECKING:
    from ..workflows.bias import BiasSettings

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``bias`` subcommand to ``subparsers``."""
    p = subparsers.add_parser(
        "bias",
        help="well-tempered metadynamics on the learned CVs (or phi/psi) with reweighting and transition counts",
        description=(
            "Run well-tempered metadynamics (openmm.app.Metadynamics) of a system on the one or two slowest "
            "CVs of a model (the CV is an openmm.PythonForce, no plugin, or openmm-torch's TorchForce), or on a "
            "dipeptide's backbone torsions with --cv phi,psi as the reference. SYSTEM is the system the model was "
            "trained on, built with the same options (in explicit water too) or read from its input files; a "
            "model of the solute acts on the solute of a solvated box, made whole across it. Grid bounds come "
            "from each CV's range on the "
            "training data, widened by --grid-margin. Writes COLVAR (time, CVs, every backbone phi and psi, "
            "bias V and V - c(t), kJ/mol), the frames, bias.npy/fes.npy/fes.png, each residue's reweighted "
            "phi/psi free energy (Tiwary-Parrinello c(t)), transition counts of each phi between core sets "
            "(phi < -0.5 vs 0.5 < phi < 1.6 rad), the reweighted F(phi > 0) - F(phi < 0) with its standard error "
            "where phi visited both core sets, and summary.json. Rerunning the same command resumes an "
            "interrupted run (Ctrl-C stops at the end of the report interval under way)."
        ),
    )
    _add_input_options(p)
    _add_dynamics_options(p)
    _add_bias_options(p)
    _add_run_options(p)
    add_common_options(
        p,
        output_default="runs/bias",
        cpu_only="the CV force runs on the CPU beside OpenMM; choose OpenMM's platform with --platform",
    )
    p.set_defaults(run=run)
    return p


def _add_input_options(p: argparse.ArgumentParser) -> None:
    """What is biased: MODEL, SYSTEM, the CVs."""
    p.add_argument("model", metavar="MODEL", help="model.pt written by `neuralct train` on molecular trajectories")
    # SYSTEM is the system the model was trained on, built with the same options (solvent, hydrogen masses), or
    # its input files; a model of the solute acts on the solute of a solvated SYSTEM.
    add_system_options(p, default="alanine-dipeptide")
    p.add_argument(
        "--cv",
        default="learned",
        metavar="WHAT",
        help="what to bias: learned (the model's CVs), or one or two backbone torsions by their COLVAR names as "
        "references: phi,psi, phi or psi of a dipeptide; phi_A_ALA3 or phi_A_ALA3,psi_A_ALA3 (chain, residue) of a "
        "longer peptide (default: %(default)s)",
    )
    p.add_argument(
        "--cvs",
        type=positive_int,
        default=1,
        help="learned CVs biased, slowest first: 1 or 2 on one joint grid, up to 6 with --separate-biases (default: "
        "%(default)s; one fills its basins faster); a CV the model records as oscillating on its training frames is "
        "refused",
    )
    p.add_argument(
        "--separate-biases",
        action="store_true",
        help="give each learned CV its own one-dimensional well-tempered bias, the force their sum: one CV per "
        "separate slow process (a peptide's residues), for more CVs than one joint grid holds",
    )
    p.add_argument(
        "--allow-oscillating-cvs",
        action="store_true",
        help="bias a learned CV even where the model records it as oscillating (its autocorrelation negative or "
        "rising with the lag on its training frames: a fast vibration, not a slow process)",
    )


def _add_dynamics_options(p: argparse.ArgumentParser) -> None:
    """The dynamics: length, temperature, time steps, friction, how often the bias is evaluated."""
    p.add_argument("--length-ns", type=positive_float, default=1.0, help="simulated time in ns (default: %(default)s)")
    p.add_argument("--temperature", type=positive_float, default=300.0, help="temperature in K (default: %(default)s)")
    p.add_argument(
        "--timestep-fs",
        type=positive_float,
        default=2.0,
        help="time step of the unbiased forces in fs (default: %(default)s)",
    )
    p.add_argument(
        "--friction-per-ps", type=positive_float, default=1.0, help="Langevin friction in 1/ps (default: %(default)s)"
    )
    p.add_argument(
        "--equilibration-ps",
        type=nonnegative_float,
        default=10.0,
        help="MD after minimisation under the starting bias, before the first COLVAR row: nothing deposited or "
        "recorded, a box's volume relaxes under the barostat; the run's time counts from its end (default: "
        "%(default)s)",
    )
    p.add_argument(
        "--bias-every",
        type=positive_int_or_auto,
        default="auto",
        help="steps per evaluation of the bias force: n > 1 uses a multiple-time-step Langevin integrator; auto: "
        "4 without a box (the CV costs more than the molecule's forces), 1 in a periodic box (PME costs more "
        "than the CV, and the multiple-time-step integrator more than the CV saved) or for a CV that training "
        "recorded as steep (its whole range within 0.005 nm of one atom's motion) (default: %(default)s)",
    )


def _add_bias_options(p: argparse.ArgumentParser) -> None:
    """The bias: Gaussian heights and widths, bias factor, pace, grid."""
    p.add_argument(
        "--height-kj", type=positive_float, default=1.2, help="initial Gaussian height in kJ/mol (default: %(default)s)"
    )
    p.add_argument(
        "--width-fraction",
        type=positive_fraction,
        default=0.06,
        help="Gaussian width of a learned CV as a fraction of its training range (1st-99th percentile) "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--width-rad", type=positive_float, default=0.35, help="Gaussian width of phi/psi in rad (default: %(default)s)"
    )
    p.add_argument(
        "--bias-factor",
        type=positive_float,
        default=8.0,
        help="well-tempered bias factor gamma > 1 (default: %(default)s)",
    )
    p.add_argument(
        "--pace-ps",
        type=positive_float,
        default=1.0,
        help="time between Gaussian depositions in ps (default: %(default)s)",
    )
    p.add_argument(
        "--grid-margin",
        type=nonnegative_float,
        default=3.0,
        help="grid of a learned CV: its training range widened by this fraction on each side (default: %(default)s)",
    )
    p.add_argument(
        "--frozen-bias",
        metavar="RUN",
        default=None,
        help="hold the final bias of the finished `neuralct bias` run in folder RUN (same model, CVs and grid "
        "options) fixed through this run, depositing nothing: a production run after metadynamics, whose frames "
        "reweight exactly with exp(V(s)/kT) (default: metadynamics from a zero bias)",
    )
    p.add_argument(
        "--continue-bias",
        metavar="RUN",
        default=None,
        help="start from the final bias of the finished `neuralct bias` run in folder RUN (same model, CVs and "
        "grid options) and keep depositing: its metadynamics continued, from new initial velocities "
        "(default: metadynamics from a zero bias)",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """How the run is carried out and recorded: report interval, platform, checkpoints, progress."""
    p.add_argument(
        "--report-ps", type=positive_float, default=1.0, help="time between COLVAR rows in ps (default: %(default)s)"
    )
    p.add_argument(
        "--platform",
        default="auto",
        help="OpenMM platform: Reference, CPU, CUDA or OpenCL where installed, or auto: the fastest of a short "
        "probe of each, never Reference for a periodic system (PME; the CPU platform unprobed where it is the "
        "only other); a resumed run keeps its checkpoint's (default: %(default)s)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="CPU threads of the CPU platform (default: OpenMM's)",
    )
    p.add_argument(
        "--cv-force",
        choices=CV_FORCES,
        default="auto",
        help="how OpenMM computes a learned CV: python (NumPy openmm.PythonForce, no plugin), torch (openmm-torch's "
        "TorchForce), or auto: torch on a GPU platform where openmm-torch is installed, python otherwise "
        "(the faster on the CPU) (default: %(default)s)",
    )
    p.add_argument(
        "--checkpoint-seconds",
        type=positive_float,
        default=60.0,
        help="wall time between checkpoints (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Check the inputs, then run (or resume) metadynamics into ``args.output``."""
    import torch

    from ..workflows.bias import DEPOSITION_SETTINGS, BiasSettings, run_metadynamics
    from .runs import RunFolder

    # One torch thread: the CV of one small molecule is latency-bound, and MD runs beside it.
    torch.set_num_threads(1)
    model, md_system = _model_and_system(args)
    settings = _settings(args, md_system, model if args.cv == "learned" else None)
    settings.validate()
    if settings.frozen_bias_from is not None:
        unused = [name for name in DEPOSITION_SETTINGS if getattr(settings, name) != getattr(BiasSettings(), name)]
        if unused:
            flags = " and ".join("--" + name.replace("_", "-") for name in unused)
            print_warning(f"{flags} shape the Gaussians deposited; under a frozen bias none is, so they do nothing")
    _check_biased_cvs(model, md_system, settings)
    # The platform, threads and CV force change how fast the run goes, not what it samples.
    ignore = ["model", "checkpoint_seconds", "platform", "threads", "cv_force", "include_dir"]
    # The system enters by its content: files, options and the OpenMM System they build (before the bias is added).
    identity = result_settings(args, ignore=ignore) | {"openmm_system": system_digest(md_system)}
    # A system given as files is identified by their content, as the model is.
    inputs = [args.model, *system_files(args)]
    for earlier in (args.frozen_bias, args.continue_bias):
        if earlier is not None:
            # The earlier bias enters by its content too: a rerun after the earlier run changed is refused.
            inputs.append(str(Path(earlier) / "bias.npy"))
    # A finished run writes its frames and results again from its final checkpoint; a changed
    # checkpoint is refused.
    rebuilt = ("COLVAR", "trajectory.nc", "topology.pdb", "*.npy", "*.png", "summary.json", "config.yaml")
    with RunFolder(
        args.output,
        "bias",
        identity,
        inputs=inputs,
        overwrite=args.overwrite,
        rebuilt=rebuilt,
    ) as folder:
        if folder.changed_outputs:
            print(folder.restored_line("its checkpoint"))
        elif folder.resuming and (folder.path / "summary.json").exists():
            print(f"{folder.path} already holds this finished run")
            return 0
        summary = run_metadynamics(md_system, model, folder.path, settings, progress=not args.no_progress)
        save_resolved_config(args, folder.path)
    print(
        f"{summary['ns_simulated']:.3f} ns biased on {', '.join(summary['cvs'])}"
        + (f" (the frozen bias of {args.frozen_bias}, exact weights)" if args.frozen_bias else "")
        + (f" (continuing the bias of {args.continue_bias})" if args.continue_bias else "")
        + f": {_phi_report(summary)}"
        + (f", {summary['steps_per_second']:.0f} steps/s" if summary["steps_per_second"] else "")
        + f" -> {folder.path}"
    )
    return 0


def _settings(args: argparse.Namespace, md_system: Any, model: Any) -> BiasSettings:
    """The run's :class:`~neuralct.workflows.bias.BiasSettings` from the options (``auto`` chosen for ``md_system`` and
    the biased ``model``, None for torsions); says why a steep learned CV is biased every step."""
    from ..workflows.bias import BiasSettings, default_bias_every, steep_cvs

    steep = steep_cvs(model, args.cvs) if args.bias_every == "auto" and model is not None else []
    if steep:
        print(
            f"{', '.join(steep)} steep on its training frames: the bias is evaluated every step "
            "(as an impulse every 4 steps such a bias blows runs up)"
        )

    return BiasSettings(
        cv=args.cv,
        n_cvs=args.cvs,
        separate_biases=args.separate_biases,
        temperature=args.temperature,
        length_ns=args.length_ns,
        timestep_fs=args.timestep_fs,
        friction_per_ps=args.friction_per_ps,
        report_ps=args.report_ps,
        equilibration_ps=args.equilibration_ps,
        height_kj=args.height_kj,
        width_fraction=args.width_fraction,
        width_rad=args.width_rad,
        bias_factor=args.bias_factor,
        pace_ps=args.pace_ps,
        grid_margin=args.grid_margin,
        bias_every=default_bias_every(md_system, model, args.cvs) if args.bias_every == "auto" else args.bias_every,
        platform=args.platform,
        threads=args.threads,
        cv_force=args.cv_force,
        seed=args.seed,
        checkpoint_seconds=args.checkpoint_seconds,
        allow_oscillating_cvs=args.allow_oscillating_cvs,
        frozen_bias_from=args.frozen_bias,
        continued_bias_from=args.continue_bias,
    )


def _model_and_system(args: argparse.Namespace) -> tuple[Any, Any]:
    """The model and the system, the model's atoms found in the system, before any work."""
    import mdtraj

    from ..md.systems import MODEL_SYSTEM_HYDROGEN_ADVICE
    from ..model.molecular import check_training_solvent, system_atoms
    from ..model.transformation import load

    model = load(args.model)
    md_system = md_system_from_options(args, hydrogen_advice=MODEL_SYSTEM_HYDROGEN_ADVICE)
    warn_of_light_hydrogens(md_system, args.timestep_fs)
    system_atoms(model, mdtraj.Topology.from_openmm(md_system.topology), f"system {' '.join(args.system)}")
    check_training_solvent(model, md_system.settings, f"system {' '.join(args.system)}")
    return model, md_system


def _check_biased_cvs(model: Any, md_system: Any, settings: BiasSettings) -> None:
    """Raise a one-line error unless the system has the torsions, and the model the CVs, that ``settings`` biases."""
    from ..workflows.bias import backbone_torsions, check_slow_cvs

    backbone_torsions(md_system.topology, settings)
    check_slow_cvs(model, settings)
    if settings.cv == "learned":
        from ..export import collective_variables

        collective_variables(model, settings.n_cvs)  # a model whose CVs cannot be exported fails here, in one line


def _phi_report(summary: dict) -> str:
    """Transitions and reweighted F(phi > 0) - F(phi < 0) of each backbone phi, in words."""
    from ..analysis.reweighting import FreeEnergyDifference

    if not summary["phi_torsions"]:
        return "no backbone phi torsion to count transitions of"
    parts = []
    for name, figures in summary["phi_torsions"].items():
        difference = FreeEnergyDifference.from_figures(figures)
        parts.append(
            f"{figures['phi_transitions']} {name} transitions ({figures['phi_transitions_per_ns']:.1f}/ns), "
            f"reweighted F({name}>0) - F({name}<0) {difference.describe()}"
        )
    return "; ".join(parts)
