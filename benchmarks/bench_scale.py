"""B5: training step time and peak memory against the dimension of the system.

The B1 model (linear point layer + point transformation with 8 affine couplings, MLPs 2 x 128),
batch 200, float32, maximum likelihood, on:

- alanine dipeptide, heavy atoms and all atoms (internal coordinates of the B1 trajectories);
- the harmonic chain at n = 32, 128, 512 (exact samples, unit masses);
- a longer peptide when its trajectories are given (``--peptide TRAJ... [--peptide-top PDB]``),
  else that row is skipped with a note. ``--chains-only`` runs the chains alone (no OpenMM or MDTraj).

Each row: CPU and wall seconds per optimiser step (after a short warm-up, no validation), samples
per CPU-second, peak memory (resident set on CPU, reset per row where Linux allows it; allocator
peak on CUDA) and the parameter count. Then the least-squares growth exponent ``b`` of
``step time ~ dimension^b`` (phase-space dimension 2n).

    python benchmarks/bench_scale.py --steps 30 [--device cuda] [--threads 1] [--output scale.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_training import ARCHITECTURE, ensure_trajectories, peak_memory_mb, reset_peak_memory  # noqa: E402

from neuralct.toys.hamiltonians import HarmonicChain  # noqa: E402
from neuralct.training.device import resolve_device  # noqa: E402
from neuralct.training.loop import TrainingSettings, train  # noqa: E402
from neuralct.training.objectives import MaximumLikelihood
from neuralct.workflows.train import fit_frames  # noqa: E402

CHAIN_SIZES = (32, 128, 512)
CHAIN_SAMPLES = 20000


def molecular_positions(paths: list[str], selection: str, topology: str | None = None) -> tuple[np.ndarray, float]:
    """Internal coordinates (frames, 3N - 6) of ``selection`` and kT (kJ/mol)."""
    from neuralct.data import load_trajectories

    data = load_trajectories(paths, topology=topology, selection=selection, momenta="resample")
    return data.internal_positions(), data.kT


def systems(args) -> list[tuple[str, np.ndarray | None, float, str]]:
    """``(name, positions, kT, note)`` of every row; positions None for a skipped row."""
    rows = []
    if args.chains_only:
        return [
            (name, None, 0.0, "skipped: --chains-only") for name in ("alanine dipeptide", "longer peptide")
        ] + chains()
    alanine = ensure_trajectories()
    for selection in ("heavy", "all"):
        y, kT = molecular_positions(alanine, selection)
        rows.append((f"alanine dipeptide ({selection} atoms)", y, kT, "4 x 2 ns vacuum MD, internal coordinates"))
    if args.peptide:
        y, kT = molecular_positions(args.peptide, "heavy", args.peptide_top)
        rows.append(("peptide (heavy atoms)", y, kT, ", ".join(Path(p).name for p in args.peptide)))
    else:
        rows.append(
            ("longer peptide", None, 0.0, "skipped: no trajectories given (--peptide TRAJ... --peptide-top PDB)")
        )
    return rows + chains()


def chains() -> list[tuple[str, np.ndarray, float, str]]:
    """Exact samples of the harmonic chains of :data:`CHAIN_SIZES` (no MD, no MDTraj)."""
    rows = []
    for n in CHAIN_SIZES:
        chain = HarmonicChain(n)
        q, _ = chain.sample(CHAIN_SAMPLES, seed=0)
        rows.append((f"harmonic chain n={n}", np.asarray(q), chain.kT, f"{CHAIN_SAMPLES} exact samples"))
    return rows


def measure(y: np.ndarray, kT: float, args) -> dict:
    """Step time and peak memory of maximum-likelihood training on positions ``y``."""
    device = resolve_device(args.device)
    reset_peak = reset_peak_memory(device)
    warm_up = TrainingSettings(steps=3, batch_size=args.batch_size, progress=False, keep_best=False)
    model, _, device, _ = fit_frames(
        y,
        kT,
        ARCHITECTURE,
        warm_up,
        train_index=np.arange(len(y)),
        device=args.device,
        matmul_precision=args.matmul_precision,
    )
    objective = MaximumLikelihood(torch.as_tensor(y, dtype=model.masses.dtype, device=device))
    settings = TrainingSettings(steps=args.steps, batch_size=args.batch_size, progress=False, keep_best=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    train(model, objective, settings)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "dimension": model.dim,
        "phase_space_dimension": 2 * model.dim,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "steps": args.steps,
        "step_wall_ms": 1e3 * wall / args.steps,
        "step_cpu_ms": 1e3 * cpu / args.steps,
        "samples_per_cpu_second": args.steps * args.batch_size / cpu,
        "samples_per_second": args.steps * args.batch_size / wall,
        "peak_memory_mb": peak_memory_mb(device),
        "peak_memory": ("allocator peak" if device.type == "cuda" else "resident set peak")
        + ("" if reset_peak else " since process start"),
        "device": str(device),
    }


def growth_exponent(rows: list[dict], key: str) -> float:
    """Least-squares slope of log(``key``) against log(phase-space dimension)."""
    measured = [row for row in rows if key in row]
    x = np.log([row["phase_space_dimension"] for row in measured])
    y = np.log([row[key] for row in measured])
    return float(np.polyfit(x, y, 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed optimiser steps per row (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--matmul-precision", choices=("highest", "high"), default="highest")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument(
        "--peptide",
        nargs="*",
        help="trajectories of a longer peptide (e.g. from `neuralct simulate PDB --solvent obc2`)",
    )
    parser.add_argument("--peptide-top", help="topology of --peptide trajectories that hold none")
    parser.add_argument(
        "--chains-only", action="store_true", help="only the harmonic chains (a machine without OpenMM or MDTraj)"
    )
    parser.add_argument("--output", help="write the table as JSON here")
    args = parser.parse_args()
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be positive integers")
    torch.set_num_threads(args.threads)

    rows = []
    for name, y, kT, note in systems(args):
        row = {"system": name, "note": note}
        if y is not None:
            row.update(measure(y, kT, args))
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "architecture": ARCHITECTURE,
        "batch_size": args.batch_size,
        "dtype": "float32",
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
        "step_cpu_time_growth_exponent": growth_exponent(rows, "step_cpu_ms"),
        "step_wall_time_growth_exponent": growth_exponent(rows, "step_wall_ms"),
    }
    print(json.dumps({key: value for key, value in summary.items() if key != "rows"}))
    if args.output:
        Path(args.output).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
