"""B1: training throughput, peak memory and quality on alanine dipeptide trajectories.

Model: linear point layer + point transformation with 8 affine couplings, conditioner MLPs of
2 x 128, batch 200, float32, on the 10 heavy atoms (30 Cartesian coordinates, 24 internal
coordinates after the 6 rigid-body directions are projected out: a 48-D phase space).
Prints one JSON row per batch size: samples per second, wall and CPU seconds, peak memory
(resident set on CPU, reset per row where Linux allows it; allocator peak on CUDA, reset per
row), validation NLL at the end and of the kept state, and the mutual information of the two
slowest modes with phi and psi on the held-out trajectory.

    python benchmarks/bench_training.py --minutes 15 [--device cuda] [--threads 1]
    python benchmarks/bench_training.py --steps 300 --batch-sizes 200,1024,8192 --device cuda

Without --trajectories or --features it simulates 4 x 2 ns of alanine dipeptide first (vacuum,
300 K, 0.5 ps frames) into benchmarks/data/ (git-ignored) and reuses them on later runs.
``--save-features FILE.npz`` writes the internal coordinates, trajectory lengths, temperature
and backbone dihedrals; ``--features FILE.npz`` trains from such a file alone, on a machine
without OpenMM or MDTraj.
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

from neuralct.training.device import MATMUL_PRECISIONS  # noqa: E402
from neuralct.training.loop import TrainingSettings  # noqa: E402
from neuralct.units import kT_kj_per_mol  # noqa: E402
from neuralct.workflows.train import DTYPES, fit_frames, split_trajectories  # noqa: E402

ARCHITECTURE = [{"type": "linear", "point": True}, {"type": "point", "n_layers": 8, "hidden": 128, "depth": 2}]
DATA = Path(__file__).resolve().parent / "data" / "alanine-vacuum"


def ensure_trajectories() -> list[str]:
    """Simulated alanine dipeptide trajectories, made once."""
    if not (DATA / "summary.json").exists():
        from neuralct.cli import main

        status = main(
            [
                "simulate",
                "alanine-dipeptide",
                "--length-ns",
                "2",
                "--report-ps",
                "0.5",
                "--replicas",
                "4",
                "--no-progress",
                "--output",
                str(DATA),
            ]
        )
        if status:
            raise SystemExit(status)
    return sorted(str(p) for p in DATA.glob("replica-*.nc"))


def features_from_trajectories(paths: list[str]) -> dict[str, np.ndarray]:
    """Internal coordinates of the heavy atoms, trajectory lengths, temperature, phi and psi of every frame."""
    from neuralct.analysis import dihedral_angles, find_dihedrals
    from neuralct.data import load_trajectories

    data = load_trajectories(paths, selection="heavy", momenta="resample")
    everything = load_trajectories(paths, selection="all", momenta="resample")
    phi, psi = dihedral_angles(everything.positions, find_dihedrals(everything.topology)).T
    return {
        "internal_positions": data.internal_positions(),
        "traj_lengths": np.asarray(data.traj_lengths),
        "temperature_K": np.asarray(data.temperature),
        "phi": np.asarray(phi).reshape(-1),
        "psi": np.asarray(psi).reshape(-1),
    }


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory since the last :func:`reset_peak_memory`: allocator (CUDA) or resident set (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_memory(device: torch.device) -> bool:
    """Reset the peak-memory counter; False where the OS does not allow it (the peak then spans rows)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, the peak resident set
        return True
    except OSError:
        return False


def train_row(features, settings: TrainingSettings, args) -> tuple:
    """Train once on ``features``; the model, result, wall and CPU seconds."""
    train_index, valid_index, _ = split_trajectories(list(features["traj_lengths"]), 1)
    if args.small_data:
        train_index = np.arange(0, int(features["traj_lengths"][0]), 2)
    y = features["internal_positions"]
    kT = kT_kj_per_mol(float(features["temperature_K"]))
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    model, result, device, _ = fit_frames(
        y,
        kT,
        ARCHITECTURE,
        settings,
        train_index=train_index,
        valid_index=valid_index,
        dtype=args.dtype,
        device=args.device,
        matmul_precision=args.matmul_precision,
        position_noise=args.position_noise,
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    return model, result, device, time.perf_counter() - wall, time.process_time() - cpu, valid_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--minutes",
        type=float,
        default=15.0,
        help="training wall time per row, sized by a 60-step probe (default: %(default)s)",
    )
    length.add_argument("--steps", type=int, help="a fixed number of optimiser steps per row instead of --minutes")
    parser.add_argument(
        "--batch-sizes", default="200", help="comma-separated batch sizes, one row each (default: %(default)s)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument(
        "--matmul-precision",
        choices=MATMUL_PRECISIONS,
        default="highest",
        help="float32 matrix products; high = TF32 on CUDA (default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--trajectories", nargs="*", help="trajectory files (default: simulate them)")
    parser.add_argument(
        "--features", help="train from internal coordinates saved by --save-features (no MDTraj needed)"
    )
    parser.add_argument(
        "--save-features", help="write the internal coordinates etc. of the trajectories to this .npz and go on"
    )
    parser.add_argument(
        "--position-noise",
        type=float,
        default=0.0,
        help="noise on training positions, a fraction of the stiffest mode's amplitude (default: %(default)s)",
    )
    parser.add_argument(
        "--small-data",
        action="store_true",
        help="train on every 2nd frame of the first trajectory only (2 ns at 1 ps: 2,000 frames)",
    )
    parser.add_argument("--output", default=None, help="write the rows as a JSON list here")
    args = parser.parse_args()
    batch_sizes = [int(value) for value in args.batch_sizes.split(",") if value.strip()]
    if not batch_sizes or min(batch_sizes) < 1:
        parser.error("--batch-sizes: give positive integers, e.g. 200,1024,8192")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be a positive integer")

    torch.set_num_threads(args.threads)
    if args.features:
        with np.load(args.features) as stored:
            features = {key: stored[key] for key in stored.files}
    else:
        features = features_from_trajectories(args.trajectories or ensure_trajectories())
        if args.save_features:
            np.savez(args.save_features, **features)

    rows = []
    for batch_size in batch_sizes:
        steps = args.steps
        if steps is None:
            # The second of two probes, from its training loop's rate: the first pays one-time costs
            # (torch imports its compiler stack when the first optimiser is built, about a second).
            for _ in range(2):
                _, probe, _, _, _, _ = train_row(
                    features, TrainingSettings(steps=60, batch_size=batch_size, progress=False, validate_every=60), args
                )
            steps = max(50, int(args.minutes * 60 * probe.samples_per_second / batch_size))
        settings = TrainingSettings(steps=steps, batch_size=batch_size, progress=False)
        device = torch.device(
            args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        peak_reset = reset_peak_memory(device)
        model, result, device, wall, cpu, valid_index = train_row(features, settings, args)

        from neuralct.analysis.information import mutual_information
        from neuralct.model.molecular import project_internal

        cvs = project_internal(model.cpu(), features["internal_positions"][valid_index], 2)
        valid = result.history["valid_loss"]
        row = {
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch_threads": torch.get_num_threads(),
            "parameters": sum(parameter.numel() for parameter in model.parameters()),
            "phase_space_dimension": 2 * model.dim,
            "batch_size": batch_size,
            "dtype": args.dtype,
            "matmul_precision": args.matmul_precision,
            "steps": steps,
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "samples_per_second": result.samples_per_second,
            "samples_per_cpu_second": steps * batch_size / cpu,
            "peak_memory_mb": peak_memory_mb(device),
            "peak_memory": ("allocator peak" if device.type == "cuda" else "resident set peak")
            + ("" if peak_reset else " since process start"),
            "validation_nll_last": valid[-1],
            "validation_nll_kept_model": result.final_loss,
            "kept_step": result.best_step or result.steps,
            "validations": len(valid),
            "validation_curve": list(zip(result.history["step"], valid)),
            "training_frames": "every 2nd frame of the first trajectory"
            if args.small_data
            else "all frames of the training trajectories",
            "position_noise": args.position_noise,
            "mi_psi_nats_best_of_two": max(
                mutual_information(cvs[:, k], features["psi"][valid_index]) for k in range(2)
            ),
            "mi_phi_nats_best_of_two": max(
                mutual_information(cvs[:, k], features["phi"][valid_index]) for k in range(2)
            ),
            "frequencies_slowest": model.frequencies.detach().cpu().double().tolist()[:6],
            "architecture": ARCHITECTURE,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
