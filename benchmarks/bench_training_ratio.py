"""B1 ratio: training throughput and validation NLL of two checkouts of neuralct, runs interleaved.

Each run is a fresh process with one torch thread that imports neuralct from its checkout, builds
the B1 model (linear point layer + 8 affine couplings, MLPs 2 x 128, float32) on B1's features
(``bench_training.py --save-features``), and calls ``neuralct.training.loop.train`` at batch 200
with that checkout's validation interval (``neuralct.workflows.train.validation_interval`` where it
exists, else once per epoch). Set-up is not timed; torch's one-time import at the first optimiser is done
before the timing in both. Prints one JSON line per run and the median ratio of CPU seconds.

    python benchmarks/bench_training_ratio.py BEFORE_CHECKOUT AFTER_CHECKOUT --features F.npz --steps 400 --pairs 8
    python benchmarks/bench_training_ratio.py BEFORE_CHECKOUT AFTER_CHECKOUT --features F.npz --minutes 10 --pairs 1

``--minutes`` gives both the same wall time: each run sizes its number of steps from a probe of
its own training steps and validation pass, so that training takes about that long. After each
pair, one line compares the two runs' kept (lowest so far) validation NLL at each wall time the
code before validated: with ``--steps`` both follow the same schedule, the faster one sooner.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ARCHITECTURE = [{"type": "linear", "point": True}, {"type": "point", "n_layers": 8, "hidden": 128, "depth": 2}]
BATCH_SIZE = 200


def run_checkout(checkout: str, features: str, steps: int | None, minutes: float | None) -> dict:
    """One timed training run with the neuralct of ``checkout`` (called in a fresh process)."""
    sys.path.insert(0, checkout)
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import neuralct
    from neuralct.model.transformation import NeuralCanonicalTransformation
    from neuralct.training.loop import TrainingSettings, train
    from neuralct.training.objectives import MaximumLikelihood
    from neuralct.units import kT_kj_per_mol
    from neuralct.workflows import train as fit

    if not neuralct.__file__.startswith(str(Path(checkout).resolve())):
        raise SystemExit(f"imported neuralct from {neuralct.__file__}, not from {checkout}")
    with np.load(features) as stored:
        lengths, y_all, temperature = (
            list(stored["traj_lengths"]),
            stored["internal_positions"],
            float(stored["temperature_K"]),
        )
    train_index, valid_index, _ = fit.split_trajectories(lengths, 1)
    y = torch.as_tensor(y_all, dtype=torch.float32)
    kT = kT_kj_per_mol(temperature)
    if hasattr(fit, "validation_interval"):
        validate_every = fit.validation_interval(BATCH_SIZE, len(valid_index), 100)
    else:
        validate_every = math.ceil(len(train_index) / BATCH_SIZE)

    def build():
        torch.manual_seed(0)
        model = NeuralCanonicalTransformation(
            y.shape[1], masses=torch.ones(y.shape[1]), kT=kT, architecture=ARCHITECTURE, time_unit=1.0
        )
        model.initialize(y[train_index], generator=torch.Generator().manual_seed(0))
        return model, MaximumLikelihood(y[train_index], y[valid_index])

    # torch imports its compiler stack when the first optimiser is built (about a second, once per process).
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    if steps is None:
        model, objective = build()
        stamps: list[float] = []
        train(
            model,
            objective,
            TrainingSettings(steps=40, batch_size=BATCH_SIZE, progress=False, validate_every=40),
            on_step=lambda step, loss: stamps.append(time.perf_counter()),
        )
        step_seconds = (stamps[-1] - stamps[9]) / (len(stamps) - 10)
        start = time.perf_counter()
        objective.validation_loss(model)
        validation_seconds = time.perf_counter() - start
        steps = max(50, int(minutes * 60 / (step_seconds + validation_seconds / validate_every)))
    model, objective = build()
    settings = TrainingSettings(
        steps=steps, batch_size=BATCH_SIZE, progress=False, validate_every=validate_every, checkpoint_every=10**9
    )
    step_ends: list[float] = []
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(model, objective, settings, seed=0, on_step=lambda step, loss: step_ends.append(time.perf_counter()))
    # The validation after step s ends before step s + 1 starts (or, after the last step, when training returns).
    done = time.perf_counter()
    validated_at = [(step_ends[step] if step < steps else done) - wall for step in result.history["step"]]
    wall, cpu = done - wall, time.process_time() - cpu
    valid = result.history["valid_loss"]
    return {
        "checkout": checkout,
        "steps": steps,
        "validate_every": validate_every,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "samples_per_cpu_second": round(steps * BATCH_SIZE / cpu),
        "validation_nll_last": valid[-1],
        "validation_nll_kept_model": result.final_loss,
        "kept_step": result.best_step,
        "validation_curve": [
            [step, round(seconds, 2), round(loss, 4)]
            for step, seconds, loss in zip(result.history["step"], validated_at, valid)
        ],
    }


def kept_at_equal_wall_time(before: dict, after: dict) -> dict:
    """At each wall time the code before validated, the NLL of each code's kept (lowest so far) state.

    Returns the number of those times, at how many the code after's kept state is equal (to 1e-4
    nats) or better, and the largest amount by which it is worse (0 if never).
    """

    def kept(curve, seconds):
        losses = [loss for _, at, loss in curve if at <= seconds]
        return min(losses) if losses else math.inf

    times = [at for _, at, _ in before["validation_curve"]]
    differences = [kept(after["validation_curve"], at) - kept(before["validation_curve"], at) for at in times]
    return {
        "validations": len(times),
        "after_equal_or_better": sum(diff <= 1e-4 for diff in differences),
        "worst_excess_nats": round(max(0.0, *differences), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="checkout of the code before (e.g. git worktree add --detach DIR COMMIT)")
    parser.add_argument("after", help="checkout of the code after")
    parser.add_argument("--features", required=True, help="B1 features written by bench_training.py --save-features")
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, help="optimiser steps per run")
    length.add_argument("--minutes", type=float, help="training wall time per run, sized by a probe")
    parser.add_argument(
        "--pairs", type=int, default=1, help="interleaved pairs of runs, before then after (default: %(default)s)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_checkout(args.worker, args.features, args.steps, args.minutes)), flush=True)
        return
    length_option = ["--steps", str(args.steps)] if args.steps else ["--minutes", str(args.minutes)]
    ratios = []
    for _ in range(args.pairs):
        rows = []
        for checkout in (args.before, args.after):
            command = [
                sys.executable,
                __file__,
                args.before,
                args.after,
                "--features",
                args.features,
                *length_option,
                "--worker",
                str(Path(checkout).resolve()),
            ]
            output = subprocess.run(
                command, check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
            ).stdout
            rows.append(json.loads(output.strip().splitlines()[-1]))
            print(output.strip().splitlines()[-1], flush=True)
        ratios.append(rows[0]["cpu_seconds"] / rows[1]["cpu_seconds"] * rows[1]["steps"] / rows[0]["steps"])
        print(json.dumps({"kept_validation_nll_at_equal_wall_time": kept_at_equal_wall_time(*rows)}), flush=True)
    print(
        json.dumps(
            {
                "samples_per_cpu_second_ratio_median": round(statistics.median(ratios), 3),
                "ratios": [round(r, 3) for r in ratios],
            }
        )
    )


if __name__ == "__main__":
    main()
