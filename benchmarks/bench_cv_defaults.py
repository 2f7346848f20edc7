"""B2, defaults: does the plain `neuralct train TRAJ...` give slower CVs than TICA?

Alanine dipeptide in vacuum, 6 x 2 ns from `neuralct simulate` (seed 1), recorded once with 0.5 ps
frames and once with 1 ps frames. Trajectories 0-2 train, 3 validates (the command's default: the
last trajectory given), 4-5 are the test set. Each data set is given to the command twice: as
`neuralct simulate` wrote it (NetCDF with on-step velocities) and as GROMACS XTC files without
velocities (float32 time stamps) with the topology PDB. For each of these four, and each seed,
the command runs with no objective flag (`--seed S --no-progress` only), then its two slowest CVs
are VAMP-2 scored against TICA (2 components, the same internal coordinates, the same lag) at
0.5, 1, 2 and 5 ps (those lags that are whole frames): VAMP models fit on the training
trajectories, scored on 4 contiguous blocks of each test trajectory (8 blocks; mean, standard
error, and the paired difference learned - TICA). Also recorded: the objective the command chose,
its training CPU time (the child process's user + system time) and the kept step.

    python benchmarks/bench_cv_defaults.py --work W [--seeds 3] [--jobs 2] [--density] [--output OUT.json]

`--density` also runs `--objective density` (maximum likelihood), the earlier default, beside it;
`--flags '...' --label NAME` adds options to every training (a tuned run beside the plain one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


import neuralct  # noqa: E402
from neuralct.analysis.kinetics import compare_vamp2  # noqa: E402
from neuralct.data.pairs import lag_in_frames  # noqa: E402
from neuralct.errors import NeuralCTError  # noqa: E402
from neuralct.model.molecular import internal_coordinates, project_internal  # noqa: E402

LAGS_PS = (0.5, 1.0, 2.0, 5.0)
TRAIN, VALID, TEST = [0, 1, 2], [3], [4, 5]
FRAME_SPACINGS_PS = (0.5, 1.0)


def simulate_alanine(folder: Path, *options: str) -> Path:
    """``neuralct simulate alanine-dipeptide OPTIONS`` into ``folder``, once (reused when it finished)."""
    if not (folder / "summary.json").is_file():
        subprocess.run(
            ["neuralct", "simulate", "alanine-dipeptide", *options, "--no-progress", "--output", str(folder)],
            check=True,
        )
    return folder


def simulate(work: Path, report_ps: float) -> Path:
    """The 6 x 2 ns trajectories with frames ``report_ps`` apart (simulated once)."""
    options = ("--replicas", "6", "--length-ns", "2", "--report-ps", f"{report_ps:g}", "--seed", "1")
    return simulate_alanine(work / f"ala-6x2ns-{report_ps:g}ps", *options)


def without_velocities(folder: Path) -> list[Path]:
    """XTC copies of the six trajectories: positions and float32 time stamps only."""
    import mdtraj

    paths = []
    for k in range(6):
        xtc = folder / "xtc" / f"replica-{k:03d}.xtc"
        if not xtc.is_file():
            xtc.parent.mkdir(exist_ok=True)
            mdtraj.load(str(folder / f"replica-{k:03d}.nc"), top=str(folder / "topology.pdb")).save_xtc(str(xtc))
        paths.append(xtc)
    return paths


def train(work: Path, name: str, paths: list[Path], top: Path | None, seed: int, extra: list[str]) -> dict:
    """Run the plain command on trajectories 0-3; its model, chosen objective, CPU time and kept step."""
    output = work / "models" / f"{name}-seed{seed}"
    command = ["neuralct", "train", *map(str, paths), "--seed", str(seed), "--no-progress", "--output", str(output)]
    command += (["--top", str(top)] if top else []) + extra
    if not (output / "summary.json").is_file():
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=os.environ | {"OMP_NUM_THREADS": "1"})
        _, status, usage = os.wait4(child.pid, 0)
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"failed: {' '.join(command)}")
        cpu = usage.ru_utime + usage.ru_stime
        (output / "bench_time.json").write_text(json.dumps({"cpu_s": cpu, "wall_s": time.perf_counter() - start}))
    summary = json.loads((output / "summary.json").read_text())
    timing = json.loads((output / "bench_time.json").read_text()) if (output / "bench_time.json").is_file() else {}
    return {
        "command": " ".join(command),
        "model": str(output / "model.pt"),
        "objective": summary.get("objective"),
        "kept_step": summary.get("kept_step"),
        "cpu_s": timing.get("cpu_s"),
        "wall_s": timing.get("wall_s"),
    }


def score(model_path: str, paths: list[Path], top: Path, timestep_ps: float) -> dict:
    """VAMP-2 of the model's two slowest CVs against TICA's pair at every lag of whole frames."""
    import mdtraj

    model = neuralct.load(model_path)
    train_xyz = [mdtraj.load(str(paths[k]), top=str(top)).xyz for k in TRAIN]
    test_xyz = [mdtraj.load(str(paths[k]), top=str(top)).xyz for k in TEST]
    features_train = [internal_coordinates(model, xyz) for xyz in train_xyz]
    features_test = [internal_coordinates(model, xyz) for xyz in test_xyz]
    cv_train = [project_internal(model, f, 2) for f in features_train]
    cv_test = [project_internal(model, f, 2) for f in features_test]
    lags = {}
    for lag_ps in LAGS_PS:
        try:
            frames = lag_in_frames(lag_ps, timestep_ps)
        except NeuralCTError:
            continue
        result = compare_vamp2(
            cv_train, cv_test, features_train, features_test, frames, lag_ps, 2, blocks_per_trajectory=4
        )
        lags[f"{lag_ps:g}"] = {
            key: result[key] for key in ("learned", "tica", "tica_slowest", "difference", "difference_slowest")
        } | {"learned_timescales_ps": result["learned_timescales_ps"]}
    return lags


def digest(lags: dict) -> dict:
    return {
        lag: f"{entry['learned']['mean']:.3f} vs TICA {entry['tica']['mean']:.3f}: "
        f"{entry['difference']['mean']:+.3f} +- {entry['difference']['standard_error']:.3f}"
        for lag, entry in lags.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="folder for the trajectories and models")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1")
    parser.add_argument("--jobs", type=int, default=2, help="trainings run at once (one thread each)")
    parser.add_argument("--density", action="store_true", help="also the maximum-likelihood objective")
    parser.add_argument("--spacings", type=float, nargs="+", default=list(FRAME_SPACINGS_PS))
    parser.add_argument("--inputs", nargs="+", choices=("velocities", "no-velocities"), default=None)
    parser.add_argument(
        "--flags", default="", help="options added to every training, e.g. '--vamp-weight 300' (default: none)"
    )
    parser.add_argument("--label", default="default", help="name of the trainings with --flags in the results")
    parser.add_argument("--output", default=None, help="write the full results as JSON here")
    args = parser.parse_args()
    work = Path(args.work).resolve()
    runs = []
    for spacing in args.spacings:
        folder = simulate(work, spacing)
        top = folder / "topology.pdb"
        inputs = {
            "velocities": (sorted(folder.glob("replica-00[0-5].nc")), None),
            "no velocities": (without_velocities(folder), top),
        }
        for label, (paths, given_top) in inputs.items():
            if args.inputs and label.replace(" ", "-") not in args.inputs:
                continue
            objectives = {args.label: args.flags.split()} | (
                {"density": ["--objective", "density"]} if args.density else {}
            )
            for objective, extra in objectives.items():
                for seed in range(args.seeds):
                    name = f"{spacing:g}ps-{label.replace(' ', '-')}-{objective}"
                    runs.append((spacing, label, objective, seed, paths, given_top, top, name, extra))

    def one(run) -> dict:
        spacing, label, objective, seed, paths, given_top, top, name, extra = run
        trained = train(work, name, paths[: len(TRAIN) + len(VALID)], given_top, seed, extra)
        entry = {
            "frames_ps": spacing,
            "input": label,
            "objective_flag": objective,
            "seed": seed,
            **trained,
            "lags": score(trained["model"], paths, top, spacing),
        }
        print(json.dumps({name: {"seed": seed, "cpu_s": entry["cpu_s"]} | digest(entry["lags"])}), flush=True)
        return entry

    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, runs))
    if args.output:
        Path(args.output).write_text(json.dumps({"split": [TRAIN, VALID, TEST], "runs": results}, indent=1))


if __name__ == "__main__":
    main()
