"""B3, foreign data: the learn-bias-relearn loop on trajectories the project did not make.

Each data set is 4 ns of unbiased alanine dipeptide in vacuum simulated with plain OpenMM
(amber99sb-ildn, NoCutoff, HBonds, LangevinMiddle 300 K, 1/ps, 2 fs, its own seed), written as
a 2 ns DCD and a 2 ns XTC at 1 ps frames, positions only, with the structure as ala2.pdb. On each
data set, for each loop seed, the loop of the README as a user runs it (every command with
`--seed S --no-progress`):

    neuralct train A.dcd B.xtc --top ala2.pdb --objective density --steps 3000 --output model1
    neuralct bias model1/model.pt ala2.pdb --length-ns 2 --output bias1
    neuralct train bias1/trajectory.nc --lag-ps 2 --vamp-weight 100 --output model2
    neuralct bias model2/model.pt ala2.pdb --width-fraction 0.15 --length-ns 2 --output bias2
    neuralct bias model2/model.pt ala2.pdb --width-fraction 0.15 --length-ns 2 --frozen-bias bias2 --output production

With `--loop explore`, the loop is `neuralct explore` with those trajectories as its round 0:

    neuralct explore ala2.pdb --data A.dcd B.xtc --top ala2.pdb --frame-ps 1 --output explore

Reported per round: phi transitions per ns (core sets phi < -0.5 and 0.5 < phi < 1.6 rad), the
reweighted F(phi > 0) - F(phi < 0) with its block standard error (the production run's under
bias2's final bias, frozen, reweighted exactly), the rounds that crossed, and the retraining's kept step;
the data sets' own transitions (none expected in 4 ns at 300 K). The reference is B3's phi/psi
metadynamics (9.37 +- 0.63 kJ/mol). For explore: each round's line, whether it converged, the
pooled dF of its frozen rounds and the command's CPU time (the explore reference: 9.23 +- 0.32 kJ/mol).

    python benchmarks/bench_loop_foreign.py --work W [--loop commands|explore] [--datasets 3] [--seeds 2] [--jobs 2]
        [--output OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

STRUCTURE = Path(__file__).resolve().parents[1] / "systems" / "alanine_dipeptide.pdb"
HALF_NS, FRAME_PS, STEP_PS = 2.0, 1.0, 0.002


def make_data(folder: Path, seed: int) -> None:
    """4 ns of plain OpenMM MD as a DCD and an XTC of 2 ns each, 1 ps frames, and ala2.pdb."""
    import openmm
    import openmm.app as app
    import openmm.unit as unit

    if (folder / "done").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    pdb = app.PDBFile(str(STRUCTURE))
    system = app.ForceField("amber99sbildn.xml").createSystem(
        pdb.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds
    )
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, STEP_PS * unit.picoseconds)
    integrator.setRandomNumberSeed(seed)
    simulation = app.Simulation(pdb.topology, system, integrator, openmm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(pdb.positions)
    simulation.minimizeEnergy()
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, seed)
    simulation.step(int(10 / STEP_PS))  # 10 ps of equilibration, not written
    with open(folder / "ala2.pdb", "w") as handle:
        state = simulation.context.getState(getPositions=True)
        app.PDBFile.writeFile(pdb.topology, state.getPositions(), handle)
    stride, steps = int(round(FRAME_PS / STEP_PS)), int(round(HALF_NS * 1000 / STEP_PS))
    for name, reporter in (("A.dcd", app.DCDReporter), ("B.xtc", app.XTCReporter)):
        simulation.reporters = [reporter(str(folder / name), stride)]
        simulation.step(steps)
    simulation.reporters = []
    (folder / "done").write_text("")


def neuralct(*argv) -> str | None:
    """Run a neuralct command (one thread) unless its --output holds a finished run.

    Returns None, or the command's last line where it exited non-zero: a bias run that left its
    grid keeps its COLVAR and is measured up to there; a refused command ends the loop there.
    """
    argv = [str(a) for a in argv]
    output = Path(argv[argv.index("--output") + 1])
    log = output.parent / f"{output.name}.log"
    if (output / "summary.json").is_file():
        return None
    if not log.is_file() or "error:" not in log.read_text():
        with log.open("w") as handle:
            env = os.environ | {"OMP_NUM_THREADS": "1"}
            process = subprocess.Popen(["neuralct", *argv], stdout=handle, stderr=subprocess.STDOUT, env=env)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        (output.parent / f"{output.name}.cpu-seconds").write_text(f"{usage.ru_utime + usage.ru_stime:.1f}\n")
    if (output / "summary.json").is_file():
        return None
    errors = [line for line in log.read_text().splitlines() if "error:" in line]
    if not errors:
        raise SystemExit(f"neuralct {' '.join(argv)} failed (see {log})")
    return errors[-1]


def loop(data: Path, seed: int) -> dict:
    """The five commands of the README loop on one data set with one seed; each bias round's figures."""
    from bench_bias import bias_figures

    work = data / f"loop-seed{seed}"
    work.mkdir(exist_ok=True)
    common = ["--seed", seed, "--no-progress"]
    structure = data / "ala2.pdb"
    commands = {
        "model1": ("train", data / "A.dcd", data / "B.xtc", "--top", structure, "--objective", "density"),
        "bias1": ("bias", work / "model1" / "model.pt", structure, "--length-ns", 2),
        "model2": ("train", work / "bias1" / "trajectory.nc", "--lag-ps", 2, "--vamp-weight", 100),
        "bias2": ("bias", work / "model2" / "model.pt", structure, "--width-fraction", 0.15, "--length-ns", 2),
        "production": (
            "bias",
            work / "model2" / "model.pt",
            structure,
            "--width-fraction",
            0.15,
            "--length-ns",
            2,
            "--frozen-bias",
            work / "bias2",
        ),
    }
    entry: dict = {"data": data.name, "seed": seed}
    for name, command in commands.items():
        steps = ["--steps", 3000] if name == "model1" else []
        stopped = neuralct(*command, *steps, *common, "--output", work / name)
        if name == "model2" and not stopped:
            entry["retraining_kept_step"] = json.loads((work / name / "summary.json").read_text()).get("kept_step")
        if command[0] == "bias" and (work / name / "COLVAR").is_file():
            entry[name] = {k: v for k, v in bias_figures(work / name).items() if k != "delta_F_against_time_ps_kj"}
        if stopped:
            entry.setdefault(name, {})["stopped"] = stopped
            if not (work / name / "COLVAR").is_file():
                return entry
    return entry


def explore(data: Path, seed: int) -> dict:
    """`neuralct explore` with the data set as round 0, one seed: its rounds, result and CPU time."""
    work = data / f"explore-seed{seed}"
    structure = data / "ala2.pdb"
    stopped = neuralct(
        "explore", structure, "--data", data / "A.dcd", data / "B.xtc", "--top", structure, "--frame-ps", FRAME_PS,
        "--seed", seed, "--no-progress", "--output", work,
    )  # fmt: skip
    entry: dict = {"data": data.name, "seed": seed}
    if stopped:
        entry["stopped"] = stopped
        return entry
    summary = json.loads((work / "summary.json").read_text())
    cpu = data / f"{work.name}.cpu-seconds"
    entry["rounds"] = [
        {
            "round": r["round"],
            "kind": r.get("kind", "unbiased"),
            "phi_transitions_per_ns": r["phi_transitions_per_ns"],
            "ended_early": r.get("ended_early"),
        }
        for r in summary["rounds"]
    ]
    entry["converged"] = summary["converged"]
    entry["stopped_because"] = summary["stopped_because"]
    final = (summary["final_estimate"] or {}).get("phi_torsions", {}).get("phi")
    entry["final_dF_kj"] = (
        None if final is None else [final["delta_F_phi_positive_minus_negative_kj"], final["delta_F_standard_error_kj"]]
    )
    entry["cpu_seconds"] = float(cpu.read_text()) if cpu.is_file() else None
    return entry


def data_transitions(data: Path) -> int:
    """Phi transitions in the data set's 4 ns."""
    import mdtraj

    from neuralct.analysis.reweighting import count_transitions

    top = str(data / "ala2.pdb")
    return sum(
        count_transitions(mdtraj.compute_phi(mdtraj.load(str(data / n), top=top))[1][:, 0]) for n in ("A.dcd", "B.xtc")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder of the data sets and loops (reused)")
    parser.add_argument(
        "--loop", choices=("commands", "explore"), default="commands", help="the README's commands, or explore"
    )
    parser.add_argument("--datasets", type=int, default=3, help="data sets, OpenMM seeds 101, 102, ...")
    parser.add_argument("--seeds", type=int, default=2, help="loop seeds 0..N-1 on each data set")
    parser.add_argument("--jobs", type=int, default=2, help="loops run at once (one thread each)")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    folders = [args.work.resolve() / f"data-{k}" for k in range(args.datasets)]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda k: make_data(folders[k], 101 + k), range(args.datasets)))
        run = loop if args.loop == "commands" else explore
        loops = list(pool.map(lambda job: run(*job), [(f, s) for f in folders for s in range(args.seeds)]))
    results = {"data_transitions": {f.name: data_transitions(f) for f in folders}, "loops": loops}
    if args.loop == "explore":
        for entry in loops:
            print(json.dumps(entry), flush=True)
        converged = sum(entry.get("converged", False) for entry in loops)
        last = sum(entry.get("rounds", [{}])[-1].get("phi_transitions_per_ns", 0) >= 30 for entry in loops)
        print(f"explore: converged in {converged} of {len(loops)}; last round >= 30 per ns in {last}", flush=True)
        if args.output:
            Path(args.output).write_text(json.dumps(results, indent=1))
        return
    for entry in loops:
        line = {"data": entry["data"], "seed": entry["seed"], "kept": entry.get("retraining_kept_step")}
        for name in ("bias1", "bias2", "production"):
            figures = entry.get(name, {})
            if "phi_transitions_per_ns" not in figures:
                line[name] = figures.get("stopped", "not run")
                continue
            dF, error = figures["delta_F_phi_positive_minus_negative_kj"], figures["delta_F_standard_error_kj"]
            line[name] = f"{figures['phi_transitions_per_ns']:.1f}/ns, dF " + (
                f"{dF:.2f} +- {error:.2f}" if dF is not None else "none"
            )
            if "stopped" in figures:
                line[name] += f" (stopped: {figures['stopped']})"
        print(json.dumps(line), flush=True)
    for name in ("bias1", "bias2", "production"):
        crossed = sum(entry.get(name, {}).get("phi_transitions", 0) > 0 for entry in loops)
        print(f"{name}: crossed phi in {crossed} of {len(loops)} loops", flush=True)
    print(json.dumps({"data_transitions": results["data_transitions"]}), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
