"""B1: training throughput, peak memory and quality on alanine dipeptide trajectories.

Model: linear point layer + point transformation with 8 affine couplings, conditioner MLPs of
2 x 128, batch 200, float32, on the 10 heavy atoms (30 Cartesian coordinates, 24 internal
coordinates after the 6 rigid-body directions are projected out: a 48-D phase space).
Reports samples per second over the whole run (CPU threads stated), peak memory (RSS on
CPU, allocator peak on CUDA), validation NLL after a fixed wall time, and the mutual
information of the two slowest modes with phi and psi on the held-out trajectory.

    python benchmarks/bench_training.py --minutes 15 [--device cuda] [--threads 1]

Without --trajectories it simulates 4 x 2 ns of alanine dipeptide first (vacuum, 300 K,
0.5 ps frames) into benchmarks/data/ (git-ignored) and reuses them on later runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from neuralct.data import load_trajectories  # noqa: E402
from neuralct.fit import fit_trajectories  # noqa: E402
from neuralct.training import TrainingSettings  # noqa: E402

ARCHITECTURE = [{"type": "linear", "point": True}, {"type": "point", "n_layers": 8, "hidden": 128, "depth": 2}]
DATA = Path(__file__).resolve().parent / "data" / "alanine-vacuum"


def ensure_trajectories() -> list[str]:
    """Simulated alanine dipeptide trajectories, made once."""
    if not (DATA / "summary.json").exists():
        from neuralct.cli import main

        status = main(["simulate", "alanine-dipeptide", "--length-ns", "2", "--report-ps", "0.5", "--replicas", "4",
                       "--no-progress", "--output", str(DATA)])
        if status:
            raise SystemExit(status)
    return sorted(str(p) for p in DATA.glob("replica-*.nc"))


def probe_rate(data, device: str, batch: int) -> float:
    """Samples per second of a short run, to size the fixed-wall-time run."""
    settings = TrainingSettings(steps=30, batch_size=batch, progress=False)
    _, summary = fit_trajectories(data, ARCHITECTURE, settings, device=device)
    return summary["samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0, help="training wall time (default: %(default)s)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--trajectories", nargs="*", help="trajectory files (default: simulate them)")
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    paths = args.trajectories or ensure_trajectories()
    data = load_trajectories(paths, selection="heavy", momenta="resample")
    rate = probe_rate(data, args.device, args.batch_size)
    steps = max(50, int(rate * args.minutes * 60 / args.batch_size))
    settings = TrainingSettings(steps=steps, batch_size=args.batch_size, progress=False)
    wall, cpu = time.perf_counter(), time.process_time()
    model, summary = fit_trajectories(data, ARCHITECTURE, settings, device=args.device, validation_trajectories=1)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    from neuralct.analysis import dihedral_angles, find_dihedrals, mutual_information
    from neuralct.molecular import project_positions

    held_out = load_trajectories(paths[-1:], selection="all", momenta="resample")
    phi, psi = dihedral_angles(held_out.positions, find_dihedrals(held_out.topology)).T
    cvs = project_positions(model.cpu(), held_out.positions, 2)
    result = {
        "device": summary["device"],
        "torch_threads": torch.get_num_threads(),
        "parameters": summary["parameters"],
        "architecture": ARCHITECTURE,
        "phase_space_dimension": 2 * summary["dimension"],
        "batch_size": args.batch_size,
        "dtype": summary["dtype"],
        "steps": steps,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "samples_per_second": summary["samples_per_second"],
        "peak_memory_mb": summary["peak_memory_mb"],
        "validation_nll_last_epoch": summary["validation_nll"][-1],
        "validation_nll_kept_model": summary["final_loss"],
        "kept_step": summary["kept_step"],
        "mi_psi_nats_best_of_two": max(mutual_information(cvs[:, k], psi) for k in range(2)),
        "mi_phi_nats_best_of_two": max(mutual_information(cvs[:, k], phi) for k in range(2)),
        "frequencies_slowest": summary["frequencies"][:6],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
