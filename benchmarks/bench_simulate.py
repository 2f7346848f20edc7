"""B0: `neuralct simulate` against bare OpenMM with the same settings, interleaved in one run.

Alanine dipeptide (amber99sb-ildn, HBonds, LangevinMiddle, friction 1/ps, 300 K), one frame
(positions + velocities) per 1 ps; in vacuum (NoCutoff, 2 fs) by default, or with `--solvent
tip3p` in a cubic box of explicit water (`--padding-nm`, PME with a 1 nm cutoff, Monte Carlo
barostat at 1 bar; both sides run the same System, barostat included, and the bare loop records
every atom, neuralct the solute). Both sides use `--platform` (default: what `neuralct simulate
--platform auto` picks, the fastest in its timed probe) with `--threads`. Prints the steps per
second of each round and the median ratio neuralct / bare (target >= 0.9 in vacuum, >= 0.95 in
water). `--hmr-ns` then runs `neuralct simulate` with hydrogen mass repartitioning (1.5 amu) and
4 fs steps, recording every atom (`--save all`), and prints the mean kinetic temperature of the
recorded on-step velocities (all atoms, and the solute alone) against the bath's.

    python benchmarks/bench_simulate.py [--length-ns 0.2] [--rounds 3]
    python benchmarks/bench_simulate.py --solvent tip3p --padding-nm 1.4 --platform CPU --length-ns 0.02 --hmr-ns 0.05
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
from neuralct.data.netcdf import read_netcdf  # noqa: E402
from neuralct.md.platform import fastest_platform, make_context  # noqa: E402
from neuralct.md.simulate import SimulationSettings, degrees_of_freedom, kinetic_temperature  # noqa: E402
from neuralct.md.systems import WaterBox, build_system, solute_atoms  # noqa: E402


def langevin(settings: SimulationSettings):
    """Plain OpenMM's LangevinMiddleIntegrator with the run's temperature, friction and time step (seed 1)."""
    import openmm as mm

    integrator = mm.LangevinMiddleIntegrator(
        settings.temperature, settings.friction_per_ps, settings.timestep_fs / 1000.0
    )
    integrator.setRandomNumberSeed(1)
    return integrator


def bare_openmm(system, platform: str, settings: SimulationSettings) -> tuple[float, float]:
    """Steps per wall second and per CPU second of a plain OpenMM loop recording positions and velocities."""
    import openmm as mm

    integrator = langevin(settings)
    context = make_context(system.system, integrator, platform, settings.threads)
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


def system_options(args: argparse.Namespace) -> list[str]:
    """The `neuralct simulate` options that build the benchmark's system."""
    return ["--solvent", args.solvent] + (["--padding-nm", str(args.padding_nm)] if args.solvent != "vacuum" else [])


def neuralct_simulate(args: argparse.Namespace, platform: str, options: list[str]) -> dict:
    """The summary of `neuralct simulate` with ``options`` (steps per second: the production loop, writes included)."""
    with tempfile.TemporaryDirectory() as folder:
        argv = ["simulate", "alanine-dipeptide", *system_options(args), "--report-ps", "1", "--platform", platform]
        argv += ["--threads", str(args.threads)] if args.threads else []
        if neuralct_main([*argv, *options, "--output", folder, "--no-progress"]) != 0:
            raise SystemExit("neuralct simulate failed")
        summary = json.loads((Path(folder) / "summary.json").read_text())
        summary["frames_read"] = read_netcdf(Path(folder) / "replica-000.nc")
        return summary


def hmr_temperature(args: argparse.Namespace, platform: str) -> None:
    """Mean kinetic temperature of the recorded on-step velocities of a 4 fs run with repartitioned hydrogens."""
    options = ["--hydrogen-mass-amu", "1.5", "--timestep-fs", "4", "--length-ns", str(args.hmr_ns)]
    summary = neuralct_simulate(args, platform, [*options, "--equilibration-ps", "20", "--save", "all"])
    built = build_system(
        "alanine-dipeptide", solvent=args.solvent, hydrogen_mass_amu=1.5, **water_box(args), temperature=300.0
    )
    frames, masses = summary["frames_read"], built.masses()
    solute = solute_atoms(built.topology)
    everyone = kinetic_temperature(frames.velocities, masses, degrees_of_freedom(built.system))
    alone = kinetic_temperature(frames.velocities[:, solute], masses[solute], degrees_of_freedom(built.system, solute))
    half_steps = frames.per_frame["kinetic_temperature"]

    def mean(temperatures) -> str:
        error = temperatures.std() / len(temperatures) ** 0.5
        return f"{temperatures.mean():.2f} +- {error:.2f} K ({temperatures.mean() / 300 - 1:+.2%})"

    print(
        f"HMR 1.5 amu, 4 fs, {len(everyone)} frames: on-step velocities, all {frames.velocities.shape[1]} atoms "
        f"{mean(everyone)}; solute alone {mean(alone)}; mean of the half-step kinetic energies {mean(half_steps)}; "
        f"{summary['steps_per_second']:.0f} steps/s"
    )


def water_box(args: argparse.Namespace) -> dict:
    return {"water": WaterBox(padding_nm=args.padding_nm)} if args.solvent != "vacuum" else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length-ns", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--solvent", default="vacuum", help="vacuum, or an explicit water model (tip3p, ...)")
    parser.add_argument("--padding-nm", type=float, default=1.4, help="explicit water: 1.4 gives about 2,000 atoms")
    parser.add_argument("--platform", default="auto", help="OpenMM platform of both sides, or auto (the probe's)")
    parser.add_argument("--threads", type=int, default=None, help="CPU platform threads of both sides")
    parser.add_argument("--hmr-ns", type=float, default=0.0, help="length of the 4 fs HMR temperature run (0: none)")
    args = parser.parse_args()
    system = build_system("alanine-dipeptide", solvent=args.solvent, **water_box(args))
    settings = SimulationSettings(length_ns=args.length_ns, report_ps=1.0, equilibration_ps=0.0, threads=args.threads)
    platform = args.platform
    if platform == "auto":
        platform, probe = fastest_platform(
            system.system, system.positions, lambda: langevin(settings), threads=args.threads
        )
        print(f"platform probe (steps/s): {', '.join(f'{k} {v:.0f}' for k, v in probe.items())} -> {platform}")
    print(f"{system.n_atoms} atoms, {args.solvent}, {platform}, threads {args.threads or 'default'}")
    ratios = []
    for r in range(args.rounds):
        bare, bare_cpu = bare_openmm(system, platform, settings)
        options = ["--length-ns", str(args.length_ns), "--equilibration-ps", "0"]
        ours = neuralct_simulate(args, platform, options)["steps_per_second"]
        ratios.append(ours / bare)
        print(
            f"round {r}: bare OpenMM {bare:.0f} steps/s ({bare_cpu:.0f} per CPU-s), "
            f"neuralct simulate {ours:.0f} steps/s, ratio {ours / bare:.3f}"
        )
    target = 0.9 if args.solvent == "vacuum" else 0.95
    print(f"median ratio neuralct/bare: {statistics.median(ratios):.3f} (target >= {target})")
    if args.hmr_ns > 0:
        hmr_temperature(args, platform)


if __name__ == "__main__":
    main()
