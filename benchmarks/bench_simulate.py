"""B0: `neuralct simulate` against bare OpenMM with the same settings, interleaved in one run.

Alanine dipeptide in vacuum (amber99sb-ildn, NoCutoff, HBonds, LangevinMiddle 2 fs, friction
1/ps, 300 K), one frame (positions + velocities) per 1 ps. Both sides use the platform that
`neuralct simulate --platform auto` picks (the fastest in its timed probe). Prints the steps per
second of each round and the median ratio neuralct / bare (target >= 0.9).

    python benchmarks/bench_simulate.py [--length-ns 0.2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuralct.cli import main as neuralct_main  # noqa: E402
from neuralct.md.platform import fastest_platform, make_context  # noqa: E402
from neuralct.md.simulate import SimulationSettings, _make_integrator  # noqa: E402
from neuralct.md.systems import build_system  # noqa: E402


def bare_openmm(system, platform: str, settings: SimulationSettings) -> tuple[float, float]:
    """Steps per wall second and per CPU second of a plain OpenMM loop recording positions and velocities."""
    import openmm as mm

    integrator = _make_integrator(settings, seed=1)
    context = make_context(system.system, integrator, platform)
    context.setPositions(system.positions)
    mm.LocalEnergyMinimizer.minimize(context, 10.0, 1000)
    context.setVelocitiesToTemperature(settings.temperature, 1)
    frames = []
    steps = settings.n_frames * settings.steps_per_frame
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(settings.n_frames):
        integrator.step(settings.steps_per_frame)
        state = context.getState(getPositions=True, getVelocities=True)
        frames.append((state.getPositions(asNumpy=True)._value, state.getVelocities(asNumpy=True)._value))
    return steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu)


def neuralct_simulate(platform: str, length_ns: float) -> float:
    """Steps per second that `neuralct simulate` reports for its production loop (incl. writing)."""
    with tempfile.TemporaryDirectory() as folder:
        args = [
            "simulate",
            "alanine-dipeptide",
            "--length-ns",
            str(length_ns),
            "--report-ps",
            "1",
            "--equilibration-ps",
            "0",
            "--platform",
            platform,
            "--output",
            folder,
            "--no-progress",
        ]
        if neuralct_main(args) != 0:
            raise SystemExit("neuralct simulate failed")
        return json.loads((Path(folder) / "summary.json").read_text())["steps_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length-ns", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    system = build_system("alanine-dipeptide")
    settings = SimulationSettings(length_ns=args.length_ns, report_ps=1.0, equilibration_ps=0.0)
    platform, probe = fastest_platform(system.system, system.positions, lambda: _make_integrator(settings))
    print(f"platform probe (steps/s): {', '.join(f'{k} {v:.0f}' for k, v in probe.items())} -> {platform}")
    ratios = []
    for r in range(args.rounds):
        bare, bare_cpu = bare_openmm(system, platform, settings)
        ours = neuralct_simulate(platform, args.length_ns)
        ratios.append(ours / bare)
        print(
            f"round {r}: bare OpenMM {bare:.0f} steps/s ({bare_cpu:.0f} per CPU-s), "
            f"neuralct simulate {ours:.0f} steps/s, ratio {ours / bare:.3f}"
        )
    print(f"median ratio neuralct/bare: {statistics.median(ratios):.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
