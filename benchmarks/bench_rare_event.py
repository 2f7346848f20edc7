"""B2, rare event: does the slowest CV carry the phi transition's timescale?

Unbiased alanine dipeptide in vacuum at a temperature where phi crosses often enough for a
Markov model (default 550 K: 6 x 10 ns at 1 ps frames, `neuralct simulate --temperature 550
--seed 5`). Trajectories 0-3 train, 4 validates (the command's default: the last given), and
every CV is evaluated on all six.

- Reference: a reversible maximum-likelihood MSM (deeptime) on a 24 x 24 grid of (phi, psi);
  its slowest implied timescale at each lag.
- neuralct: the plain `neuralct train replica-00[0-4].nc --seed S` (its lag chosen from the
  data); its slowest CV.
- Deep-TICA (`bench_deeptica.py`'s setup, in mlcolvar's virtualenv, optional) trained at the lag
  neuralct chose, and deeptime TICA on the model's internal coordinates at that lag: the first
  component of each.
- Each CV's slowest implied timescale from a 100-bin grid MSM of the CV alone (the
  `neuralct.analysis.kinetics.msm_implied_timescale` that `neuralct analyze` reports), at the
  same lags as the reference, and its ratio to the reference's. Also the phi transitions per
  trajectory (core sets phi < -0.5 and 0.5 < phi < 1.6 rad).

    python benchmarks/bench_rare_event.py --work W [--temperature 550] [--seeds 3] [--jobs 2]
        [--mlcolvar-python V/bin/python] [--output OUT.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TRAIN, VALID = [0, 1, 2, 3], [4]
REPLICAS, LENGTH_NS, FRAME_PS = 6, 10, 1.0
MSM_LAGS_PS = (10.0, 20.0, 50.0, 100.0)
GRID = 24


def simulate(work: Path, temperature: float) -> Path:
    """The unbiased trajectories at ``temperature`` (K), simulated once."""
    from bench_cv_defaults import simulate_alanine

    options = ("--replicas", str(REPLICAS), "--length-ns", f"{LENGTH_NS:g}", "--report-ps", f"{FRAME_PS:g}")
    return simulate_alanine(
        work / f"ala-{temperature:g}K", *options, "--temperature", f"{temperature:g}", "--seed", "5"
    )


def phi_psi_msm_timescale(phi: list[np.ndarray], psi: list[np.ndarray], lag_frames: int, lag_ps: float) -> float:
    """Slowest implied timescale (ps) of a reversible MSM on a GRID x GRID grid of (phi, psi) in rad."""
    from deeptime.markov import TransitionCountEstimator
    from deeptime.markov.msm import MaximumLikelihoodMSM

    edges = np.linspace(-math.pi, math.pi, GRID + 1)[1:-1]
    states = [(np.digitize(a, edges) * GRID + np.digitize(b, edges)).astype(np.int32) for a, b in zip(phi, psi)]
    counts = TransitionCountEstimator(lagtime=lag_frames, count_mode="sliding").fit(states).fetch_model()
    msm = MaximumLikelihoodMSM(reversible=True).fit(counts.submodel_largest()).fetch_model()
    eigenvalue = float(np.sort(np.real(msm.eigenvalues(2)))[0])
    return -lag_ps / math.log(eigenvalue)


def cv_timescales(series: list[np.ndarray]) -> dict:
    """The 100-bin grid MSM's slowest implied timescale (ps) of one coordinate at each MSM lag."""
    from neuralct.analysis.kinetics import msm_implied_timescale
    from neuralct.errors import NeuralCTError

    result = {}
    for lag in MSM_LAGS_PS:
        try:
            result[f"{lag:g}"] = msm_implied_timescale(series, round(lag / FRAME_PS), lag)
        except NeuralCTError:
            result[f"{lag:g}"] = None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="folder for the trajectories and models")
    parser.add_argument("--temperature", type=float, default=550.0, help="K (default: 550)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--mlcolvar-python", default=None, help="python of a virtualenv with mlcolvar 1.3.1")
    parser.add_argument("--output", default=None, help="write the full results as JSON here")
    args = parser.parse_args()

    import mdtraj
    from bench_cv_defaults import train
    from bench_deeptica import heavy_atom_distances, run_deeptica

    import neuralct
    from neuralct.analysis.reweighting import count_transitions
    from neuralct.model.molecular import internal_coordinates, project_internal

    work = Path(args.work).resolve()
    folder = simulate(work, args.temperature)
    top = folder / "topology.pdb"
    paths = [folder / f"replica-{k:03d}.nc" for k in range(REPLICAS)]
    trajectories = [mdtraj.load(str(p), top=str(top)) for p in paths]
    phi = [mdtraj.compute_phi(t)[1][:, 0] for t in trajectories]
    psi = [mdtraj.compute_psi(t)[1][:, 0] for t in trajectories]
    results = {
        "temperature_K": args.temperature,
        "transitions": [count_transitions(p) for p in phi],
        "phi_positive": [float(np.mean(p > 0)) for p in phi],
        "reference": {f"{lag:g}": phi_psi_msm_timescale(phi, psi, round(lag / FRAME_PS), lag) for lag in MSM_LAGS_PS},
        "runs": [],
    }
    print(json.dumps({k: results[k] for k in ("transitions", "phi_positive", "reference")}), flush=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        trained = list(
            pool.map(
                lambda seed: train(work, "default", paths[: len(TRAIN) + len(VALID)], None, seed, []), range(args.seeds)
            )
        )
    descriptors = work / "deeptica" / "distances.npz"
    if args.mlcolvar_python and not descriptors.is_file():
        descriptors.parent.mkdir(exist_ok=True)
        series = heavy_atom_distances(paths, top)
        np.savez(
            descriptors,
            **{f"train_{k}": series[k] for k in TRAIN},
            **{f"valid_{k}": series[k] for k in VALID},
            **{f"all_{k}": series[k] for k in range(REPLICAS)},
        )
    for seed, entry in enumerate(trained):
        model = neuralct.load(entry["model"])
        lag_ps = float(entry["objective"]["lag_ps"]) if entry["objective"].get("lag_ps") else None
        features = [internal_coordinates(model, t.xyz) for t in trajectories]
        slowest = {"neuralct": [project_internal(model, f, 1)[:, 0] for f in features]}
        if lag_ps:
            from deeptime.decomposition import TICA

            lag_frames = round(lag_ps / FRAME_PS)
            tica = TICA(lagtime=lag_frames, dim=1).fit([features[k] for k in TRAIN]).fetch_model()
            slowest["tica"] = [tica.transform(f)[:, 0] for f in features]
            if args.mlcolvar_python:
                deep = run_deeptica(
                    args.mlcolvar_python,
                    descriptors,
                    work / "deeptica" / f"lag{lag_ps:g}-seed{seed}.npz",
                    lag_frames,
                    seed,
                )
                slowest["deeptica"] = [cv[:, 0] for cv in deep["cvs"]]
                entry["deeptica_cpu_s"] = deep["cpu_s"]
        scored = {label: cv_timescales(series) for label, series in slowest.items()}
        ratios = {
            label: {lag: (value / results["reference"][lag] if value else None) for lag, value in timescales.items()}
            for label, timescales in scored.items()
        }
        run = {
            "seed": seed,
            **{k: v for k, v in entry.items() if k != "model"},
            "timescales_ps": scored,
            "ratio_to_reference": ratios,
        }
        results["runs"].append(run)
        print(
            json.dumps(
                {
                    "seed": seed,
                    "lag_ps": lag_ps,
                    "cpu_s": round(entry["cpu_s"], 1),
                    **{
                        label: " ".join(f"{r:.2f}" if r else "-" for r in ratio.values())
                        for label, ratio in ratios.items()
                    },
                }
            ),
            flush=True,
        )
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
