"""B2, peer: the plain `neuralct train` against mlcolvar's Deep-TICA and deeptime's TICA.

The data and split of `bench_cv_defaults.py`: alanine dipeptide in vacuum, 6 x 2 ns at 0.5 ps
frames (`neuralct simulate`, seed 1); trajectories 0-2 train, 3 validates, 4-5 are the test set,
scored in 8 contiguous blocks.

- neuralct: the plain command, `neuralct train replica-00[0-3].nc --seed S` (velocities recorded),
  or the XTC copies without velocities (`--input no-velocities`); one model per seed, scored at
  every lag.
- Deep-TICA (mlcolvar 1.3.1, the setup of its alanine-dipeptide tutorial): the 45 heavy-atom
  distances, network 45-30-30-2 with shifted-softplus activations, Adam at 1e-3 on full
  batches, early stopping on the validation trajectory's loss (min_delta 1e-5, patience 10),
  trained once per lag and seed (its best case: it is told each scoring lag).
- TICA: deeptime's, on the internal coordinates of the neuralct model, 2 components.

Every set of CVs is VAMP-2 scored by the same code on the same blocks: the pair, and the
slowest CV alone (the first output of each; deeptime's first TICA component). Paired block
differences neuralct - Deep-TICA, seed k against seed k. Also the normalised autocorrelation of
each CV at 0.5 and 1 ps on the test set (an oscillating CV has a negative one at some lag), and
the CPU time of each training, whole process (user + system, one thread): imports, loading and
fitting for both.

Deep-TICA runs in its own virtualenv (`--mlcolvar-python`), e.g.
    python -m venv V && V/bin/pip install torch==2.13.0 && V/bin/pip install mlcolvar==1.3.1

    python benchmarks/bench_deeptica.py --work W --mlcolvar-python V/bin/python [--seeds 3] [--jobs 2]
        [--input velocities|no-velocities] [--output OUT.json]
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

LAGS_PS = (0.5, 1.0, 2.0, 5.0)
FRAME_PS = 0.5
LAYERS = (30, 30)
N_CVS = 2


def deeptica_fit(descriptors: Path, output: Path, lag_frames: int, seed: int) -> None:
    """Train Deep-TICA on the training trajectories, early-stopped on the validation one (in mlcolvar's venv).

    ``descriptors`` holds ``train_K``, ``valid_K`` and ``all_K`` arrays, shape (n_frames, n_features).
    Writes ``cv_K`` (shape (n_frames, 2), every trajectory of ``all_K``), ``epochs`` and ``fit_cpu_s``.
    """
    import lightning
    import torch
    from lightning.pytorch.callbacks import EarlyStopping
    from mlcolvar.cvs import DeepTICA
    from mlcolvar.data import DictDataset, DictModule
    from mlcolvar.utils.timelagged import create_timelagged_dataset

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    data = np.load(descriptors)

    def pairs(prefix: str) -> dict:
        parts = [
            create_timelagged_dataset(torch.tensor(data[key], dtype=torch.float32), lag_time=lag_frames)
            for key in sorted(k for k in data.files if k.startswith(prefix))
        ]
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0].keys}

    train, valid = pairs("train_"), pairs("valid_")
    dataset = DictDataset({name: torch.cat([train[name], valid[name]]) for name in train})
    n_train, n_valid = len(train["data"]), len(valid["data"])
    module = DictModule(dataset, lengths=[n_train, n_valid], random_split=False, batch_size=0)
    n_features = train["data"].shape[1]
    model = DeepTICA([n_features, *LAYERS, N_CVS], options={"nn": {"activation": "shifted_softplus"}})
    stopping = EarlyStopping(monitor="valid_loss", min_delta=1e-5, patience=10)
    trainer = lightning.Trainer(
        callbacks=[stopping],
        max_epochs=None,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    start = time.process_time()
    trainer.fit(model, module)
    fit_cpu = time.process_time() - start
    model.eval()
    with torch.no_grad():
        cvs = {
            key.replace("all_", "cv_"): model(torch.tensor(data[key], dtype=torch.float32)).numpy()
            for key in data.files
            if key.startswith("all_")
        }
    np.savez(output, epochs=trainer.current_epoch, fit_cpu_s=fit_cpu, **cvs)


def heavy_atom_distances(paths: list[Path], top: Path) -> list[np.ndarray]:
    """All heavy-atom pair distances (nm) of each trajectory, shape (n_frames, 45) for alanine dipeptide."""
    import itertools

    import mdtraj

    topology = mdtraj.load_topology(str(top))
    heavy = [atom.index for atom in topology.atoms if atom.element.symbol != "H"]
    pairs = np.array(list(itertools.combinations(heavy, 2)))
    return [mdtraj.compute_distances(mdtraj.load(str(p), top=str(top)), pairs).astype(np.float64) for p in paths]


def run_deeptica(python: str, descriptors: Path, output: Path, lag_frames: int, seed: int) -> dict:
    """Deep-TICA in a child process of ``python``; its CVs, epochs and CPU time (whole process and fit)."""
    if not output.is_file():
        command = [python, __file__, "--child", str(descriptors), str(output), str(lag_frames), str(seed)]
        with output.with_suffix(".log").open("w") as log:
            child = subprocess.Popen(command, stdout=log, stderr=log, env=os.environ | {"OMP_NUM_THREADS": "1"})
            _, status, usage = os.wait4(child.pid, 0)
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"failed: {' '.join(command)} (see {output.with_suffix('.log')})")
        output.with_suffix(".time.json").write_text(json.dumps({"cpu_s": usage.ru_utime + usage.ru_stime}))
    result = np.load(output)
    cvs = {int(key.split("_")[1]): result[key] for key in result.files if key.startswith("cv_")}
    timing = json.loads(output.with_suffix(".time.json").read_text())
    return {
        "cvs": [cvs[k] for k in sorted(cvs)],
        "epochs": int(result["epochs"]),
        "fit_cpu_s": float(result["fit_cpu_s"]),
        "cpu_s": timing["cpu_s"],
    }


def paired(a: dict, b: dict) -> dict:
    """Block-paired difference of two :func:`compare_vamp2` ``learned`` entries."""
    from neuralct.analysis.kinetics import mean_and_standard_error

    return mean_and_standard_error(np.array(a["blocks"]) - np.array(b["blocks"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="folder of bench_cv_defaults.py's trajectories and models")
    parser.add_argument("--mlcolvar-python", help="python of a virtualenv with mlcolvar 1.3.1")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--input", choices=("velocities", "no-velocities"), default="velocities")
    parser.add_argument("--output", default=None, help="write the full results as JSON here")
    parser.add_argument(
        "--child", nargs=4, metavar=("DESCRIPTORS", "OUT", "LAG_FRAMES", "SEED"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        descriptors, output, lag_frames, seed = args.child
        deeptica_fit(Path(descriptors), Path(output), int(lag_frames), int(seed))
        return
    if not (args.work and args.mlcolvar_python):
        parser.error("--work and --mlcolvar-python are required")

    from bench_cv_defaults import TEST, TRAIN, VALID, simulate, train, without_velocities

    import neuralct
    from neuralct.analysis.kinetics import autocorrelation, compare_vamp2
    from neuralct.data.pairs import lag_in_frames
    from neuralct.model.molecular import internal_coordinates, project_internal

    work = Path(args.work).resolve()
    folder = simulate(work, FRAME_PS)
    top = folder / "topology.pdb"
    nc_paths = sorted(folder.glob("replica-00[0-5].nc"))
    paths = nc_paths if args.input == "velocities" else without_velocities(folder)
    given_top = None if args.input == "velocities" else top

    descriptors = work / "deeptica" / "distances.npz"
    descriptors.parent.mkdir(exist_ok=True)
    if not descriptors.is_file():
        series = heavy_atom_distances(nc_paths, top)
        np.savez(
            descriptors,
            **{f"train_{k}": series[k] for k in TRAIN},
            **{f"valid_{k}": series[k] for k in VALID},
            **{f"all_{k}": series[k] for k in range(len(series))},
        )
    lag_frames = {lag: lag_in_frames(lag, FRAME_PS) for lag in LAGS_PS}
    jobs = [(lag, seed) for lag in LAGS_PS for seed in range(args.seeds)]
    with ThreadPoolExecutor(args.jobs) as pool:
        deep = dict(
            zip(
                jobs,
                pool.map(
                    lambda job: run_deeptica(
                        args.mlcolvar_python,
                        descriptors,
                        work / "deeptica" / f"lag{job[0]:g}-seed{job[1]}.npz",
                        lag_frames[job[0]],
                        job[1],
                    ),
                    jobs,
                ),
            )
        )
        name = f"{FRAME_PS:g}ps-{args.input}-default"
        trained = list(
            pool.map(
                lambda seed: train(work, name, paths[: len(TRAIN) + len(VALID)], given_top, seed, []), range(args.seeds)
            )
        )

    import mdtraj

    xyz = [mdtraj.load(str(p), top=str(top)).xyz for p in nc_paths]
    results = {"split": [TRAIN, VALID, TEST], "input": args.input, "neuralct": [], "deeptica": [], "lags": {}}
    for seed, entry in enumerate(trained):
        results["neuralct"].append({k: entry[k] for k in ("command", "objective", "kept_step", "cpu_s")})
    for (lag, seed), entry in deep.items():
        results["deeptica"].append(
            {
                "lag_ps": lag,
                "seed": seed,
                "epochs": entry["epochs"],
                "cpu_s": entry["cpu_s"],
                "fit_cpu_s": entry["fit_cpu_s"],
            }
        )
    for lag in LAGS_PS:
        frames = lag_frames[lag]
        per_lag = results["lags"][f"{lag:g}"] = {
            "neuralct": [],
            "deeptica": [],
            "difference": [],
            "difference_slowest": [],
        }
        for seed, entry in enumerate(trained):
            model = neuralct.load(entry["model"])
            features = [internal_coordinates(model, x) for x in xyz]
            ours = [project_internal(model, f, N_CVS) for f in features]
            theirs = deep[(lag, seed)]["cvs"]
            scored = {}
            for label, cvs in (("neuralct", ours), ("deeptica", theirs)):
                pair = compare_vamp2(
                    [cvs[k] for k in TRAIN],
                    [cvs[k] for k in TEST],
                    [features[k] for k in TRAIN],
                    [features[k] for k in TEST],
                    frames,
                    lag,
                    N_CVS,
                    blocks_per_trajectory=4,
                )
                slowest = compare_vamp2(
                    [cvs[k][:, :1] for k in TRAIN],
                    [cvs[k][:, :1] for k in TEST],
                    [features[k] for k in TRAIN],
                    [features[k] for k in TEST],
                    frames,
                    lag,
                    1,
                    blocks_per_trajectory=4,
                )
                test = [cvs[k] for k in TEST]
                scored[label] = {"pair": pair["learned"], "slowest": slowest["learned"]}
                per_lag[label].append(
                    {
                        "seed": seed,
                        "pair": pair["learned"],
                        "slowest": slowest["learned"],
                        "tica_pair": pair["tica"],
                        "tica_slowest": slowest["tica"],
                        "timescales_ps": pair["learned_timescales_ps"],
                        "autocorrelation": {
                            f"{t:g}": autocorrelation(test, lag_in_frames(t, FRAME_PS)).tolist() for t in (0.5, 1.0)
                        },
                    }
                )
            per_lag["difference"].append(paired(scored["neuralct"]["pair"], scored["deeptica"]["pair"]))
            per_lag["difference_slowest"].append(paired(scored["neuralct"]["slowest"], scored["deeptica"]["slowest"]))
        line = {
            "lag_ps": lag,
            **{
                f"{label} {which}": " ".join(f"{e[which]['mean']:.3f}" for e in per_lag[label])
                for label in ("neuralct", "deeptica")
                for which in ("pair", "slowest")
            },
            "TICA pair/slowest": f"{per_lag['neuralct'][0]['tica_pair']['mean']:.3f}/"
            f"{per_lag['neuralct'][0]['tica_slowest']['mean']:.3f}",
            "ours - Deep-TICA pair": " ".join(
                f"{d['mean']:+.3f}+-{d['standard_error']:.3f}" for d in per_lag["difference"]
            ),
            "slowest": " ".join(f"{d['mean']:+.3f}+-{d['standard_error']:.3f}" for d in per_lag["difference_slowest"]),
        }
        print(json.dumps(line), flush=True)
    cost = {
        "neuralct cpu_s": [round(e["cpu_s"], 1) for e in results["neuralct"] if e["cpu_s"]],
        "deeptica cpu_s": [round(e["cpu_s"], 1) for e in results["deeptica"]],
        "deeptica fit_cpu_s": [round(e["fit_cpu_s"], 1) for e in results["deeptica"]],
        "deeptica epochs": [e["epochs"] for e in results["deeptica"]],
    }
    print(json.dumps(cost), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
