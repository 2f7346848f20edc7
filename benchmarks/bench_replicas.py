"""Replicas in parallel against one after another, and the bundled tri-alanine's steps/s in OBC2 per platform.

Part 1: `neuralct simulate trialanine --replicas 3` (capped tri-alanine, amber99sb-ildn, OBC2,
NoCutoff, HBonds, LangevinMiddle 2 fs, 300 K, 1 ps frames, no equilibration) as a subprocess,
rounds interleaving `--jobs 1` (one after another in one process, OpenMM's default threads),
`--jobs 2` (the default on 2 cores: one process per core, 1 thread each) and `--jobs 3`.
Each run's wall time covers the whole command (start-up, minimisation, writing); CPU seconds are
those of the command and its children.

Part 2: the steps per second of one replica's production loop (as `neuralct simulate` reports
it) on each platform: Reference, CPU with 1 thread, CPU with 2 threads, interleaved.

    OMP_NUM_THREADS=1 python benchmarks/bench_replicas.py [--length-ns 0.02] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def simulate(options: list[str]) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds (command and children) and summary.json of one `neuralct simulate trialanine` run."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable,
            "-m",
            "neuralct",
            "simulate",
            "trialanine",
            *options,
            "--output",
            folder,
            "--no-progress",
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu, json.loads((Path(folder) / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length-ns", type=float, default=0.02, help="production per replica (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--platform", default="CPU", help="platform of part 1 (default: %(default)s)")
    args = parser.parse_args()
    common = ["--length-ns", str(args.length_ns), "--report-ps", "1", "--equilibration-ps", "0", "--seed", "1"]
    print(f"cores: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}")

    modes = {"jobs 1": ["--jobs", "1"], "jobs 2": ["--jobs", "2"], "jobs 3": ["--jobs", "3"]}
    results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    for r in range(args.rounds):
        for mode, options in modes.items():
            wall, cpu, summary = simulate(common + ["--replicas", "3", "--platform", args.platform, *options])
            results[mode].append((wall, cpu))
            print(
                f"round {r} {mode}: {wall:.1f} s wall, {cpu:.1f} CPU-s, "
                f"threads per job {summary['settings']['threads_per_job']}, "
                f"throughput {summary['throughput_steps_per_second']:.0f} steps/s",
                flush=True,
            )
    sequential = statistics.median(w for w, _ in results["jobs 1"])
    for mode in ("jobs 2", "jobs 3"):
        speedups = [a[0] / b[0] for a, b in zip(results["jobs 1"], results[mode])]
        print(
            f"{mode} against jobs 1: wall speed-up per round {', '.join(f'{s:.2f}' for s in speedups)} "
            f"(median {statistics.median(speedups):.2f}; median walls {sequential:.1f} s vs "
            f"{statistics.median(w for w, _ in results[mode]):.1f} s; median CPU-s "
            f"{statistics.median(c for _, c in results['jobs 1']):.1f} vs "
            f"{statistics.median(c for _, c in results[mode]):.1f})"
        )

    platforms = {
        "Reference": ["--platform", "Reference"],
        "CPU 1 thread": ["--platform", "CPU", "--threads", "1"],
        "CPU 2 threads": ["--platform", "CPU", "--threads", "2"],
    }
    rates: dict[str, list[float]] = {name: [] for name in platforms}
    for r in range(args.rounds):
        for name, options in platforms.items():
            wall, cpu, summary = simulate(common + ["--replicas", "1", "--jobs", "1", *options])
            rates[name].append(summary["steps_per_second"])
            print(
                f"round {r} {name}: {summary['steps_per_second']:.0f} steps/s in the production loop "
                f"({wall:.1f} s wall, {cpu:.1f} CPU-s for the whole command)",
                flush=True,
            )
    for name, values in rates.items():
        print(f"{name}: median {statistics.median(values):.0f} steps/s")


if __name__ == "__main__":
    main()
