"""B2, biased data: does the time-lagged objective on a metadynamics run find the unbiased slow coordinate?

The rotated double well (``neuralct simulate rotated-double-well``: barrier coordinate u0 among
harmonic ones, t2 about 40 ps). Well-tempered metadynamics (``openmm.app.Metadynamics`` as
``neuralct bias`` runs it; height 1.2 kJ/mol every ps, width 0.2 nm, 5 fs steps, 0.5 ps frames) on
a fixed linear CV s = cos(theta) u0 + sin(theta) u2 (u2 the soft harmonic coordinate), two runs
per case: the first trains, the second validates. Each frame's (V - c(t))/kT is kept, c(t) the Tiwary-Parrinello offset
of the bias at the frame (what a ``neuralct bias`` COLVAR holds as rbias).

The lagged objective (configuration only, 600 steps, batch 256, the default flow) is trained with
its pairs a lag apart in simulation time, or in rescaled time dt exp((V - c(t))/kT) with each pair
weighted by the rescaled time it spans (``neuralct.data.pairs.rescaled_lagged_pairs``). Each model
is scored on 2 x 5 ns of unbiased MD as B2 scores the toy: |r| of CV 1 with u0 and the ratio of its
fine-grid MSM timescale at 5 ps to u0's.

    python benchmarks/bench_rescaled_time.py --work W [--cases 2:0.6 8:0 8:0.6] [--lags-ps 5 20 50]
        [--seeds 0] [--output OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from neuralct.analysis.reweighting import reweighting_offset  # noqa: E402
from neuralct.data.pairs import split_lagged_pairs  # noqa: E402
from neuralct.md.simulate import SimulationSettings, run_simulation  # noqa: E402
from neuralct.md.systems import build_system, rotated_double_well_rotation  # noqa: E402
from neuralct.model.transformation import DEFAULT_ARCHITECTURE, NeuralCanonicalTransformation  # noqa: E402
from neuralct.toys.slow_double_well import load_toy_trajectories, score_slow_coordinate  # noqa: E402
from neuralct.training.loop import TrainingSettings, train  # noqa: E402
from neuralct.training.objectives import LaggedLikelihood, weighted_resample  # noqa: E402
from neuralct.units import kT_kj_per_mol  # noqa: E402

FRAME_PS = 0.5
RUN_NS = 5.0
SCORE_LAG_PS = 5.0
KT = kT_kj_per_mol(300.0)


def biased_run(path: Path, bias_factor: float, theta: float, seed: int) -> dict[str, np.ndarray]:
    """Positions (frames, 9) and (V - c(t))/kT of one metadynamics run on s = cos(theta) u0 + sin(theta) u2."""
    if path.is_file():
        return dict(np.load(path))
    import openmm as mm
    import openmm.unit as unit
    from openmm.app import BiasVariable, Simulation

    from neuralct.workflows.metadynamics import JointMetadynamics

    md = build_system("rotated-double-well")
    rotation = rotated_double_well_rotation(3, 7)
    direction = np.cos(theta) * rotation[0] + np.sin(theta) * rotation[2]
    names = [f"{axis}{i + 1}" for i in range(3) for axis in "xyz"]
    cv = mm.CustomCompoundBondForce(3, " + ".join(f"({float(direction[i])!r})*{names[i]}" for i in range(9)))
    cv.addBond([0, 1, 2], [])
    low, high = -5.0, 5.0
    meta = JointMetadynamics(md.system, [BiasVariable(cv, low, high, 0.2)], 300.0, bias_factor, 1.2, 200)
    integrator = mm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 5 * unit.femtosecond)
    integrator.setRandomNumberSeed(seed + 11)
    simulation = Simulation(md.topology, md.system, integrator, mm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(md.positions)
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, seed + 1)
    positions, log_rates = [], []
    for _ in range(int(round(RUN_NS * 1000 / FRAME_PS))):
        meta.step(simulation, int(round(FRAME_PS / 0.005)))
        x = simulation.context.getState(getPositions=True).getPositions(asNumpy=True)._value.reshape(-1)
        grid = np.asarray(meta.bias_grid).reshape(-1)  # kJ/mol
        bias = float(np.interp(direction @ x, np.linspace(low, high, len(grid)), grid))
        log_rates.append((bias - reweighting_offset(grid, bias_factor, KT, False)) / KT)
        positions.append(x)
    run = {"q": np.array(positions), "log_rates": np.array(log_rates)}
    np.savez(path, **run)
    return run


def fit(runs: list[dict[str, np.ndarray]], time_kind: str, lag_ps: float, seed: int) -> tuple[Any, dict]:
    """The lagged objective on the first run (the second validates), pairs in ``time_kind`` time."""
    q = np.concatenate([run["q"] for run in runs])
    lengths = [len(run["q"]) for run in runs]
    train_index, valid_index = np.arange(lengths[0]), np.arange(lengths[0], sum(lengths))
    log_rates = None if time_kind == "simulation" else np.concatenate([run["log_rates"] for run in runs])
    pairs = split_lagged_pairs(lengths, lag_ps, FRAME_PS, train_index, valid_index, log_rates=log_rates)
    torch.manual_seed(seed)
    positions = torch.as_tensor(q, dtype=torch.float32)
    model = NeuralCanonicalTransformation(
        9, masses=torch.full((9,), 10.0), kT=KT, architecture=DEFAULT_ARCHITECTURE, latent_dynamics=True
    )
    # As `neuralct train` starts a fit in rescaled time: from the frames weighted by the rescaled time they last.
    generator = torch.Generator().manual_seed(seed)
    start_weights = pairs.start_weights(train_index)
    start_weights = None if start_weights is None else torch.as_tensor(start_weights, dtype=torch.float32)
    model.initialize(weighted_resample(positions[train_index], start_weights, generator), generator=generator)
    objective = LaggedLikelihood(positions, None, pairs)
    objective.initialize_frictions(model, seed=seed)
    train(model, objective, TrainingSettings(steps=600, batch_size=256, progress=False), seed=seed)
    weights = pairs.train_weights
    figures = {"training_pairs": len(pairs.train[0])}
    if weights is not None:
        figures["pairs_kish_fraction"] = float(weights.sum() ** 2 / (weights**2).sum() / len(weights))
    return model, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="folder for the runs (reused when there)")
    parser.add_argument("--cases", nargs="+", default=["2:0.6", "8:0", "8:0.6"], help="bias factor:theta")
    parser.add_argument("--lags-ps", type=float, nargs="+", default=[5.0, 20.0, 50.0], help="rescaled-time lags")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)
    unbiased = work / "unbiased"
    if not (unbiased / "summary.json").is_file():
        unbiased.mkdir(parents=True, exist_ok=True)
        settings = SimulationSettings(length_ns=RUN_NS, timestep_fs=5.0, report_ps=FRAME_PS, threads=1, seed=3)
        run_simulation(build_system("rotated-double-well"), unbiased, settings, replicas=2, progress=False)
    test = load_toy_trajectories(unbiased)
    results = []
    for case in args.cases:
        factor, theta = (float(value) for value in case.split(":"))
        runs = [biased_run(work / f"biased-{factor:g}-{theta:g}-{seed}.npz", factor, theta, seed) for seed in (0, 1)]
        variants = [("simulation", SCORE_LAG_PS)] + [("rescaled", lag) for lag in args.lags_ps]
        for (time_kind, lag), seed in ((variant, seed) for variant in variants for seed in args.seeds):
            start = time.process_time()
            model, figures = fit(runs, time_kind, lag, seed)
            score = score_slow_coordinate(model, test, [0, 1], SCORE_LAG_PS)
            row = {
                "bias_factor": factor,
                "theta": theta,
                "max_rbias_kj": float(max(run["log_rates"].max() for run in runs) * KT),
                "time": time_kind,
                "lag_ps": lag,
                "seed": seed,
                **figures,
                "abs_r_with_u0": abs(score["correlation"]),
                "timescale_ratio": score["timescale_ratio"],
                "cpu_s": time.process_time() - start,
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
