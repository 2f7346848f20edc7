"""B3: enhanced sampling with the learned CVs, against phi-biased and unbiased MD, plus the speed of biased MD.

Alanine dipeptide in vacuum (amber99sb-ildn, NoCutoff, HBonds, 300 K, Langevin 1/ps, 2 fs).
The loop users run when unbiased MD never leaves one basin:

1. unbiased MD (4 replicas of ``--length-ns``) and a model trained on it (CVs of unbiased data) with
   `neuralct train`'s default objective, or with ``--first-train-options`` (B3's figures before the
   kinetic objective became the default were measured with ``--first-train-options '--objective density'``);
2. well-tempered metadynamics on its slowest CV (``neuralct bias --cvs 1``, ``--first-length-ns``);
3. retraining on the biased trajectory with the time-lagged objective (``neuralct train --lag-ps
   --vamp-weight``; configuration only, as a bias run records no velocities; no frame weights):
   the bias has sped up the motions along the first CV, so the slowest process left in the
   biased dynamics is the rare event it only partly drove, and the kinetic objective builds a
   coordinate for it. Variants (``--variants``): ``density``, maximum likelihood with weights
   exp((V - c(t))/kT) (``--bias-colvar``) and the modes ranked by their autocorrelation at
   ``--rank-lag-ps``; ``unweighted``, the same without weights;
4. metadynamics on the retrained CVs (``--retrained-cvs``, widths ``--width-fraction``, ``--retrained-length-ns``);

against metadynamics on phi and psi together (the reference, ``--reference-length-ns``: its
reweighted F(phi > 0) - F(phi < 0) is the reference free-energy difference), on phi alone (the good CV), on psi alone
(a poor CV) and unbiased MD over the same length, ``--seeds`` seeds each for the references and
the retrained CVs. Every bias run uses the same height (1.2 kJ/mol),
bias factor (8) and pace (1 ps); widths 0.35 rad for phi and psi and a fraction of each learned
CV's training range (1st-99th percentile) for learned CVs. Reported: phi transitions per ns
between core sets (phi < -0.5 vs 0.5 < phi < 1.6 rad), first entry into phi > 0, reweighted
F(phi > 0) - F(phi < 0) with its block standard error at the end and every 100 ps (none until phi
has entered both core sets), wall and CPU seconds and steps per second.

In explicit water (``--system-options``, given to every simulate and bias command; ``--bias-options`` to the
bias runs alone) the same loop runs on the solvated molecule: the models learn the solute's frames and act on the
solute in the box. The runs on phi alone and psi alone can be left out (``--skip phi psi``) where time is short.

Speed: biased (learned CVs through ``openmm.PythonForce``, bias every ``--bias-every`` steps with
a multiple-time-step integrator) against unbiased MD (LangevinMiddle), interleaved in rounds on
the Reference platform, in MD steps per CPU second and per wall second.

    OMP_NUM_THREADS=1 python benchmarks/bench_bias.py --work /tmp/b3 [--length-ns 1] [--train-steps 3000] \
        [--seeds 3] [--reference-length-ns 4] [--variants density unweighted]
    python benchmarks/bench_bias.py --work /tmp/b6 --system-options "--solvent tip3p --hydrogen-mass-amu 1.5 \
        --timestep-fs 4" --bias-options "--report-ps 1.008 --pace-ps 1.008" --platform CPU --threads 2 \
        --replicas 2 --report-ps 1 --skip phi psi speed

Runs already finished in ``--work`` (a summary.json in their folder) are reused, interrupted ones
resume.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuralct.analysis.reweighting import count_transitions, phi_free_energy_difference  # noqa: E402
from neuralct.cli import main as neuralct_main  # noqa: E402
from neuralct.units import kT_kj_per_mol  # noqa: E402


def neuralct(*argv: str, stops_early: bool = False) -> None:
    """Run a neuralct command in this process unless its --output already holds a finished run.

    A failure stops the benchmark, except for a bias run (``stops_early``) that left its grid:
    its reports up to there are kept (COLVAR) and measured.
    """
    output = Path(str(argv[list(map(str, argv)).index("--output") + 1]))
    if (output / "summary.json").exists() or (stops_early and (output / "COLVAR").exists()):
        return
    status = neuralct_main([str(a) for a in argv])
    if status != 0 and not (stops_early and (output / "COLVAR").exists()):
        raise SystemExit(f"neuralct {' '.join(map(str, argv))} failed with status {status}")


def unbiased_transitions(folder: Path, length_ns: float) -> dict:
    """Phi transitions in the first ``length_ns`` of each unbiased replica."""
    import mdtraj

    counts, ns = [], 0.0
    for path in sorted(folder.glob("replica-*.nc")):
        frames = mdtraj.load(str(path), top=str(folder / "topology.pdb"))
        keep = frames.time - frames.time[0] <= length_ns * 1000.0
        phi = mdtraj.compute_phi(frames[keep])[1][:, 0]
        counts.append(count_transitions(phi))
        ns += float(frames.time[keep][-1] - frames.time[0]) / 1000.0
    return {
        "phi_transitions": int(sum(counts)),
        "ns": ns,
        "phi_transitions_per_ns": sum(counts) / ns,
        "per_replica": counts,
    }


def speed(model_path: Path, bias_every: int, rounds: int, steps: int) -> dict:
    """Interleaved MD steps per CPU and wall second: unbiased vs metadynamics-free CV bias force of the same cost."""
    import openmm as mm
    import torch

    import neuralct
    from neuralct.export import openmm_force
    from neuralct.md.systems import build_system

    torch.set_num_threads(1)
    model = neuralct.load(model_path)

    def rate(biased: bool) -> tuple[float, float]:
        md_system = build_system("alanine-dipeptide")
        if biased:
            # The cost of metadynamics' force: a tabulated function of the two CVs inside a CustomCVForce.
            force = mm.CustomCVForce("0.5 * (cv1^2 + cv2^2)")
            for j in range(2):
                force.addCollectiveVariable(f"cv{j + 1}", openmm_force(model, md_system.system, j))
            force.setForceGroup(31)
            md_system.system.addForce(force)
            integrator = (
                mm.MTSLangevinIntegrator(300, 1, 0.002 * bias_every, [(31, 1), (0, bias_every)])
                if bias_every > 1
                else mm.LangevinMiddleIntegrator(300, 1, 0.002)
            )
        else:
            integrator = mm.LangevinMiddleIntegrator(300, 1, 0.002)
        context = mm.Context(md_system.system, integrator, mm.Platform.getPlatformByName("Reference"))
        context.setPositions(md_system.positions)
        context.setVelocitiesToTemperature(300, 1)
        outer = steps // (bias_every if biased else 1)
        integrator.step(10)
        wall, cpu = time.perf_counter(), time.process_time()
        integrator.step(outer)
        md_steps = outer * (bias_every if biased else 1)
        return md_steps / (time.process_time() - cpu), md_steps / (time.perf_counter() - wall)

    results = {"unbiased": [], "biased": []}
    for _ in range(rounds):
        results["unbiased"].append(rate(False))
        results["biased"].append(rate(True))
    ratios_cpu = [b[0] / u[0] for b, u in zip(results["biased"], results["unbiased"])]
    ratios_wall = [b[1] / u[1] for b, u in zip(results["biased"], results["unbiased"])]
    return {
        "bias_every": bias_every,
        "unbiased_steps_per_cpu_second": [u[0] for u in results["unbiased"]],
        "biased_steps_per_cpu_second": [b[0] for b in results["biased"]],
        "unbiased_steps_per_wall_second": [u[1] for u in results["unbiased"]],
        "biased_steps_per_wall_second": [b[1] for b in results["biased"]],
        "median_ratio_cpu": statistics.median(ratios_cpu),
        "median_ratio_wall": statistics.median(ratios_wall),
    }


def delta_f_against_time(table: np.ndarray, fields: list[str], every_ps: float = 100.0) -> list[list[float | None]]:
    """[time, F(phi > 0) - F(phi < 0), standard error] (ps, kJ/mol) reweighted from the COLVAR rows.

    One row per multiple of ``every_ps``, reweighted from the rows up to that time.

    The free energy and its error are None up to the first time phi has entered both core sets.
    """
    kT = kT_kj_per_mol(300.0)
    phi, log_w = table[:, fields.index("phi")], table[:, fields.index("rbias")] / kT
    weights = np.exp(log_w - log_w.max())
    rows = []
    for end in np.arange(every_ps, table[-1, 0] + 1e-9, every_ps):
        upto = table[:, 0] <= end
        difference = phi_free_energy_difference(phi[upto], weights[upto], kT)
        rows.append([float(end), difference.value_kj, difference.standard_error_kj])
    return rows


def bias_figures(folder: Path) -> dict:
    """Figures of a bias run: from its summary.json and COLVAR, or from the COLVAR of a run that left its grid."""
    from neuralct.analysis import read_colvar

    fields, table = read_colvar(folder / "COLVAR")
    against_time = {"delta_F_against_time_ps_kj": delta_f_against_time(table, fields)}
    if not (folder / "summary.json").exists():
        phi = table[:, fields.index("phi")]
        ns = len(table) * (table[1, 0] - table[0, 0]) / 1000.0
        entry = np.nonzero((phi > 0.5) & (phi < 1.6))[0]
        return {
            "stopped": f"left its grid after {ns:.3f} ns",
            "ns_simulated": ns,
            "phi_transitions": count_transitions(phi),
            "phi_transitions_per_ns": count_transitions(phi) / ns,
            "first_entry_into_B_ps": float(table[entry[0], 0]) if len(entry) else None,
            "delta_F_phi_positive_minus_negative_kj": against_time["delta_F_against_time_ps_kj"][-1][1]
            if len(table) >= 100
            else None,
            "delta_F_standard_error_kj": against_time["delta_F_against_time_ps_kj"][-1][2]
            if len(table) >= 100
            else None,
        } | against_time
    summary = json.loads((folder / "summary.json").read_text())
    keys = (
        "cvs",
        "ns_simulated",
        "phi_transitions",
        "phi_transitions_per_ns",
        "first_entry_into_B_ps",
        "delta_F_phi_positive_minus_negative_kj",
        "delta_F_standard_error_kj",
        "wall_seconds",
        "cpu_seconds",
        "steps_per_second",
        "steps_per_cpu_second",
    )
    return {key: summary[key] for key in keys} | {"bias_every": summary["settings"]["bias_every"]} | against_time


def seeded(seed: int) -> str:
    """Folder and result suffix of a repeated run: none for seed 0."""
    return f"-seed{seed}" if seed else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder of the runs (reused when rerun)")
    parser.add_argument(
        "--length-ns",
        type=float,
        default=1.0,
        help="length of the unbiased replicas and the runs on phi alone and psi alone, ns",
    )
    parser.add_argument(
        "--first-length-ns",
        type=float,
        default=2.0,
        help="length of the run on the first CVs (the data to retrain on), ns",
    )
    parser.add_argument(
        "--reference-length-ns", type=float, default=4.0, help="length of the phi/psi-biased reference runs, ns"
    )
    parser.add_argument(
        "--retrained-length-ns", type=float, default=3.0, help="length of the runs on the retrained CVs, ns"
    )
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument(
        "--first-train-options",
        default="",
        help="options of the first training, on the unbiased replicas, e.g. '--objective density' (the maximum "
        "likelihood that B3 measured before the kinetic objective became the default) (default: none)",
    )
    parser.add_argument("--bias-every", type=int, default=4, help="MD steps per bias evaluation for the learned CVs")
    parser.add_argument(
        "--retrain-lag-ps", type=float, default=2.0, help="lag of the time-lagged objective of the retraining, ps"
    )
    parser.add_argument(
        "--retrain-vamp-weight", type=float, default=100.0, help="weight of the VAMP-2 term of the retraining"
    )
    parser.add_argument(
        "--rank-lag-ps",
        type=float,
        default=20.0,
        help="lag of the autocorrelation ranking of the density variants' modes, ps",
    )
    parser.add_argument("--retrained-cvs", type=int, default=1, choices=(1, 2), help="retrained CVs biased")
    parser.add_argument(
        "--width-fraction",
        type=float,
        default=0.15,
        help="Gaussian width of a retrained CV, fraction of its training range",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="seeds of the phi, psi and retrained-CV runs (the first seed's runs make the loop)",
    )
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--speed-steps", type=int, default=4000)
    parser.add_argument(
        "--variants", nargs="*", default=[], choices=("density", "unweighted"), help="other retrainings, also biased"
    )
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=("retrain", "speed", "phi", "psi"),
        help="parts to leave out: the retraining, the speed rounds, the runs on phi alone or on psi alone",
    )
    parser.add_argument(
        "--system-options",
        default="",
        help="options of the system given to every simulate and bias command, e.g. "
        "'--solvent tip3p --hydrogen-mass-amu 1.5 --timestep-fs 4' (default: none, alanine dipeptide in vacuum)",
    )
    parser.add_argument(
        "--bias-options",
        default="",
        help="further options of every bias run, e.g. '--report-ps 1.008 --pace-ps 1.008' where 1 ps is not a whole "
        "number of outer steps (default: none)",
    )
    parser.add_argument(
        "--platform",
        default=None,
        help="OpenMM platform of every run (default: Reference for the unbiased MD, bias's own choice for the others)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of each bias run (default: OpenMM's); the unbiased replicas run as parallel jobs",
    )
    parser.add_argument(
        "--replicas", type=int, default=4, help="unbiased replicas (model 1 trains on them, the last validates)"
    )
    parser.add_argument("--report-ps", type=float, default=0.5, help="time between frames of the unbiased MD, ps")
    args = parser.parse_args()
    work, length = args.work, str(args.length_ns)
    system = shlex.split(args.system_options)
    bias_run_options = [
        *(["--platform", args.platform] if args.platform else []),
        *system,
        *shlex.split(args.bias_options),
    ]
    if args.threads:
        bias_run_options += ["--threads", args.threads]
    learned = ["--bias-every", args.bias_every, "--no-progress", *bias_run_options]
    results: dict = {
        "length_ns": args.length_ns,
        "settings": "alanine dipeptide, amber99sb-ildn, 300 K, "
        f"system options {args.system_options or 'none (vacuum)'}, platform {args.platform or 'Reference/auto'}, "
        f"threads {args.threads or 'OpenMM default'}, OMP_NUM_THREADS as set by the caller",
    }

    neuralct(
        "simulate",
        "alanine-dipeptide",
        "--length-ns",
        length,
        "--report-ps",
        args.report_ps,
        "--replicas",
        args.replicas,
        "--platform",
        args.platform or "Reference",
        *system,
        "--seed",
        "1",
        "--no-progress",
        "--output",
        work / "md",
    )
    replicas = sorted((work / "md").glob("replica-*.nc"))
    neuralct(
        "train",
        *replicas,
        "--steps",
        args.train_steps,
        *args.first_train_options.split(),
        "--no-progress",
        "--output",
        work / "model1",
    )
    results["unbiased"] = unbiased_transitions(work / "md", args.length_ns)
    for seed in range(args.seeds):
        for torsion in ("phi,psi", *(t for t in ("phi", "psi") if t not in args.skip)):
            folder = work / f"{torsion.replace(',', '')}{seeded(seed)}"
            duration = args.reference_length_ns if torsion == "phi,psi" else length
            neuralct(
                "bias",
                work / "model1" / "model.pt",
                "--cv",
                torsion,
                "--bias-every",
                "1",
                "--length-ns",
                duration,
                "--seed",
                seed,
                "--no-progress",
                *bias_run_options,
                "--output",
                folder,
            )
            results[folder.name] = bias_figures(folder)
    neuralct(
        "bias",
        work / "model1" / "model.pt",
        "--cvs",
        "1",
        "--length-ns",
        args.first_length_ns,
        *learned,
        "--output",
        work / "learned1",
        stops_early=True,
    )
    results["learned_from_unbiased"] = bias_figures(work / "learned1")
    if "retrain" not in args.skip:
        biased = [work / "learned1" / "trajectory.nc", "--steps", args.train_steps, "--no-progress"]
        retrainings = {"model2": ["--lag-ps", args.retrain_lag_ps, "--vamp-weight", args.retrain_vamp_weight]}
        if "density" in args.variants:
            retrainings["model2-density"] = [
                "--bias-colvar",
                work / "learned1" / "COLVAR",
                "--rank-lag-ps",
                args.rank_lag_ps,
            ]
        if "unweighted" in args.variants:
            retrainings["model2-unweighted"] = ["--rank-lag-ps", args.rank_lag_ps]
        again = [
            "--cvs",
            args.retrained_cvs,
            "--width-fraction",
            args.width_fraction,
            "--length-ns",
            args.retrained_length_ns,
            *learned,
        ]
        for model, options in retrainings.items():
            neuralct("train", *biased, *options, "--output", work / model)
            results[f"retraining {model}"] = {
                key: value
                for key, value in json.loads((work / model / "summary.json").read_text()).items()
                if key in ("frame_weights", "mode_ranking", "relaxation_times_ps", "vamp2_term", "validation")
            }
            for seed in range(args.seeds):
                name = model.replace("model", "learned") + seeded(seed)
                neuralct(
                    "bias", work / model / "model.pt", *again, "--seed", seed, "--output", work / name, stops_early=True
                )
                results[name] = bias_figures(work / name)
    if "speed" not in args.skip:
        results["speed"] = speed(work / "model1" / "model.pt", args.bias_every, args.speed_rounds, args.speed_steps)
    # The reference free-energy difference: the mean over the phi/psi-biased seeds.
    references = [
        results[f"phipsi{seeded(seed)}"]["delta_F_phi_positive_minus_negative_kj"] for seed in range(args.seeds)
    ]
    reference = statistics.mean(references) if None not in references else None
    results["reference_delta_F_kj"] = {"mean_over_phi_psi_seeds": reference, "seeds": references}
    for figures in results.values():
        if (
            isinstance(figures, dict)
            and figures.get("delta_F_phi_positive_minus_negative_kj") is not None
            and reference is not None
        ):
            figures["delta_F_minus_reference_kj"] = figures["delta_F_phi_positive_minus_negative_kj"] - reference
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
