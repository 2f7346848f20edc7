"""B2: are the learned CVs kinetically slow? VAMP-2 against TICA with error bars, and a toy with exact answers.

Alanine dipeptide in vacuum (6 x 2 ns, 0.5 ps frames, on-step velocities): trajectories 0-2
train, 3 validates (selects the kept state), 4-5 are the test set, which neither trains nor
selects; the reference structure is the mean of the training frames only. Four models on
the same data and settings: maximum likelihood (today's default, modes ranked by frequency),
the time-lagged objective with recorded momenta (phase-space transition density), with
resampled momenta (configuration-only lagged term), and the phase-space one plus a VAMP-2
term of the two slowest latent positions (``--vamp-weight``). For each, the two slowest CVs are VAMP-2
scored against TICA (2 components) on the same internal coordinates at lags 0.5, 1, 2, 5 ps:
VAMP models fit on the training trajectories, scored on 4 contiguous blocks of each test
trajectory (8 blocks; mean and standard error, and the paired difference learned - TICA).
Also: TICA's eigenvalues with negative ones flagged, implied timescales, mutual information
of the best of the two slowest CVs with psi and phi on the test trajectories.

Toy: the rotated double well (6 x 5 ns, 0.5 ps frames; trajectories 0-3 train, 4 validates,
5 tests): correlation of the slowest CV with the barrier coordinate on the test trajectory,
and its fine-grid Markov-model implied timescale against the barrier coordinate's.

    python benchmarks/bench_cv.py --steps 2000 --train-lag-ps 2 --vamp-weight 20 [--output bench_cv.json]

Simulates the trajectories into benchmarks/data/ (git-ignored) unless they are there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import neuralct  # noqa: E402
from neuralct.analysis.information import mutual_information  # noqa: E402
from neuralct.analysis.kinetics import compare_vamp2  # noqa: E402
from neuralct.data import RigidBodyFrame, load_trajectories  # noqa: E402
from neuralct.fit import fit_trajectories  # noqa: E402
from neuralct.md.simulate import SimulationSettings, run_simulation  # noqa: E402
from neuralct.md.systems import build_system  # noqa: E402
from neuralct.model import DEFAULT_ARCHITECTURE  # noqa: E402
from neuralct.molecular import internal_coordinates, project_internal  # noqa: E402
from neuralct.slow_toy import fit_toy_trajectories, load_toy_trajectories, score_slow_coordinate  # noqa: E402
from neuralct.training import TrainingSettings  # noqa: E402

LAGS_PS = (0.5, 1.0, 2.0, 5.0)
TRAIN, VALID, TEST = [0, 1, 2], [3], [4, 5]
VARIANTS = {
    "maximum likelihood (frequency order)": {"lag_ps": None, "momenta": "resample"},
    "lagged, phase space (recorded momenta)": {"lag_ps": "train", "momenta": "recorded"},
    "lagged, configuration only (resampled momenta)": {"lag_ps": "train", "momenta": "resample"},
    "lagged + VAMP-2 term (recorded momenta)": {"lag_ps": "train", "momenta": "recorded", "vamp_weight": "train"},
}


def simulate(folder: Path, system: str, replicas: int, length_ns: float, timestep_fs: float, seed: int) -> list[Path]:
    if not sorted(folder.glob("replica-*.nc")) or not (folder / "summary.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        settings = SimulationSettings(length_ns=length_ns, timestep_fs=timestep_fs, report_ps=0.5, threads=1, seed=seed)
        run_simulation(build_system(system), folder, settings, replicas=replicas, progress=False)
    return sorted(folder.glob("replica-*.nc"))


def reframe_on_training_frames(data, n_train_frames: int) -> None:
    """Make the reference structure the mean of the training frames only (not validation, never test)."""
    frame = RigidBodyFrame(data.positions[:n_train_frames].mean(axis=0), data.masses)
    aligned, rotations, rmsd = frame.align(data.positions)
    data.positions, data.rmsd, data.frame = aligned, rmsd, frame
    data.momenta = np.einsum("fab,fib->fia", rotations, data.momenta)


def alanine(folder: Path, steps: int, train_lag_ps: float, train_vamp_weight: float, seed: int) -> dict:
    import mdtraj

    paths = [str(p) for p in simulate(folder, "alanine-dipeptide", 6, 2.0, 2.0, seed=1)]
    data = load_trajectories([paths[k] for k in TRAIN + VALID], selection="heavy", momenta="auto", seed=seed)
    reframe_on_training_frames(data, sum(data.traj_lengths[: len(TRAIN)]))
    y = data.internal_positions()
    p = data.internal_momenta()
    results: dict = {
        "split": {"train": [paths[k] for k in TRAIN], "validation (selects the kept state)": [paths[k] for k in VALID], "test": [paths[k] for k in TEST]},
        "reference_structure": "mean of the aligned training frames (trajectories 0-2)",
        "recorded_momenta_kinetic_temperature_ratio": float((p**2).mean() / data.kT),
        "variants": {},
    }
    test = [mdtraj.load(paths[k], top=str(Path(paths[k]).parent / "topology.pdb")) for k in TEST]
    train_trajectories = [mdtraj.load(paths[k], top=str(Path(paths[k]).parent / "topology.pdb")) for k in TRAIN]
    phi = np.concatenate([mdtraj.compute_phi(t)[1][:, 0] for t in test])
    psi = np.concatenate([mdtraj.compute_psi(t)[1][:, 0] for t in test])
    for name, variant in VARIANTS.items():
        lag_ps = train_lag_ps if variant["lag_ps"] == "train" else None
        settings = TrainingSettings(steps=steps, batch_size=256, progress=False)
        vamp_weight = train_vamp_weight if variant.get("vamp_weight") == "train" else 0.0
        slug = name.split(" (")[0].replace(", ", "-").replace(" + ", "-").replace(" ", "-")
        saved = folder / "models" / f"{slug}-{steps}-{lag_ps}-{vamp_weight}.pt"
        if saved.is_file():
            model = neuralct.load(saved)
            summary, wall, cpu = model.metadata["benchmark"], None, None
        else:
            start, cpu = time.perf_counter(), time.process_time()
            model, summary = fit_trajectories(
                data, list(DEFAULT_ARCHITECTURE), settings, validation_trajectories=len(VALID), momenta=variant["momenta"],
                lag_ps=lag_ps, vamp_weight=vamp_weight, dtype="float32", device="cpu", seed=seed,
            )
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            summary = {key: summary[key] for key in ("kept_step", "frequencies", "relaxation_times_ps", "frictions_per_ps") if key in summary}
            model.metadata["benchmark"] = summary | {"wall_seconds": wall, "cpu_seconds": cpu}
            saved.parent.mkdir(exist_ok=True)
            model.save(saved)
        features_train = [internal_coordinates(model, t.xyz) for t in train_trajectories]
        features_test = [internal_coordinates(model, t.xyz) for t in test]
        cv_train = [project_internal(model, f, 2) for f in features_train]
        cv_test = [project_internal(model, f, 2) for f in features_test]
        cvs = np.concatenate(cv_test)
        entry = {
            "training": {
                "steps": steps, "kept_step": summary["kept_step"], "lag_ps": lag_ps, "momenta": variant["momenta"], "vamp_weight": vamp_weight,
                "wall_seconds": summary.get("wall_seconds", wall), "cpu_seconds": summary.get("cpu_seconds", cpu),
            },
            "mi_psi_nats": max(mutual_information(cvs[:, k], psi) for k in range(2)),
            "mi_phi_nats": max(mutual_information(cvs[:, k], phi) for k in range(2)),
            "frequencies_two_slowest": summary["frequencies"][:2],
            "relaxation_times_ps": summary.get("relaxation_times_ps", [None] * 4)[:4],
            "frictions_per_ps": summary.get("frictions_per_ps", [None] * 4)[:4],
            "lags": {},
        }
        for lag_ps_score in LAGS_PS:
            lag = int(round(lag_ps_score / data.timestep_ps))
            entry["lags"][str(lag_ps_score)] = compare_vamp2(cv_train, cv_test, features_train, features_test, lag, lag_ps_score, 2, blocks_per_trajectory=4)
        results["variants"][name] = entry
        print(json.dumps({name: _digest(entry)}), flush=True)
    return results


def _digest(entry: dict) -> dict:
    out = {"mi_psi": round(entry["mi_psi_nats"], 3), "mi_phi": round(entry["mi_phi_nats"], 3)}
    for lag, score in entry["lags"].items():
        out[lag] = {
            key: f"{score[key]['mean']:.3f} +- {score[key]['standard_error']:.3f}"
            for key in ("learned", "tica", "tica_slowest", "difference", "difference_slowest")
        } | {
            "tica_eigenvalues": [round(v, 3) for v in score["tica_spectrum"]["eigenvalues"][:3]],
            "tica_negative": score["tica_spectrum"]["negative"][:3],
            "learned_timescales_ps": [None if t is None else round(t, 2) for t in score["learned_timescales_ps"]],
        }
    return out


def toy(folder: Path, steps: int, seed: int) -> dict:
    simulate(folder, "rotated-double-well", 6, 5.0, 5.0, seed=3)
    data = load_toy_trajectories(folder)
    lag_frames = int(round(5.0 / data.timestep_ps))
    results = {"split": {"train": [0, 1, 2, 3], "validation": [4], "test": [5]}, "lag_ps": lag_frames * data.timestep_ps, "variants": {}}
    settings = TrainingSettings(steps=steps, batch_size=256, validate_every=100, progress=False)
    for name, lag, momenta in (
        ("maximum likelihood (frequency order)", None, "resample"),
        ("lagged, phase space (recorded momenta)", lag_frames, "recorded"),
        ("lagged, configuration only (resampled momenta)", lag_frames, "resample"),
    ):
        start, cpu = time.perf_counter(), time.process_time()
        model = fit_toy_trajectories(data, [0, 1, 2, 3], [4], settings, lag, momenta, seed=seed)
        score = score_slow_coordinate(model, data, [5], lag_frames)
        score.update(wall_seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu)
        if model.dynamics is not None:
            score["frictions_per_ps"] = model.frictions.detach().double().tolist()
        results["variants"][name] = score
        print(json.dumps({f"toy: {name}": {key: score[key] for key in ("correlation", "timescale_cv_ps", "timescale_reference_ps", "timescale_ratio")}}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps of each alanine model")
    parser.add_argument("--toy-steps", type=int, default=600, help="training steps of each toy model")
    parser.add_argument("--train-lag-ps", type=float, default=2.0, help="lag of the time-lagged objective on alanine dipeptide")
    parser.add_argument("--vamp-weight", type=float, default=20.0, help="weight of the VAMP-2 term of the fourth alanine model")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parent / "data"), help="folder of the simulated trajectories")
    parser.add_argument("--skip-alanine", action="store_true")
    parser.add_argument("--skip-toy", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="write the full results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)
    results: dict = {"threads": torch.get_num_threads()}
    if not args.skip_toy:
        results["toy"] = toy(data / "rotated-double-well", args.toy_steps, args.seed)
    if not args.skip_alanine:
        results["alanine_dipeptide"] = alanine(data / "alanine-dipeptide-6x2ns", args.steps, args.train_lag_ps, args.vamp_weight, args.seed)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
