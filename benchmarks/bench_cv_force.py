"""B3: what a learned-CV bias costs MD: metadynamics through the PythonForce and through openmm-torch's TorchForce.

Alanine dipeptide in TIP3P (amber99sb-ildn, a cubic box of ``--padding-nm``, PME with a 1 nm
cutoff, Monte Carlo barostat at 1 bar, HBonds, rigid water) on OpenMM's CPU platform with
``--threads`` threads, and for comparison the same molecule in vacuum (NoCutoff) on the
Reference platform. LangevinMiddle, 2 fs, 1/ps, 300 K. Cases, each a Context of its own:

- unbiased: the system as built, LangevinMiddleIntegrator;
- well-tempered ``openmm.app.Metadynamics`` on CV 1 of the model (height 1.2 kJ/mol, bias factor
  8, a Gaussian every 1 ps, width 0.06 of the CV's training range: ``neuralct bias``'s defaults),
  the CV computed by ``neuralct.export.openmm_force`` as the NumPy ``openmm.PythonForce``
  (``python``) or as openmm-torch's ``TorchForce`` (``torch``), evaluated every step
  (LangevinMiddleIntegrator) or every ``--bias-every`` steps (``openmm.MTSLangevinIntegrator``: the
  bias force group on the outer step, every other group ``--bias-every`` times inside it).

All cases start from the same minimised positions, run ``--warmup-steps``, then ``--repeats``
rounds of N MD steps (``--water-steps``, ``--vacuum-steps``), the cases interleaved in each round.
Reported: MD steps per wall second (median and range over the rounds) and the median over the
rounds of biased / unbiased; the load average before and after. torch runs on one thread (as in
``neuralct bias``): the CV of 22 atoms is too small for more.

Also, before the MD cases: the cost of the two slowest CVs and their gradients for one configuration
(what a bias force pays per evaluation), ``NumpyCollectiveVariables`` (the PythonForce's) against torch
autograd of ``CollectiveVariables`` (one backward pass per CV), on ``--configurations`` configurations
of the model's atoms, interleaved over ``--repeats`` rounds, CPU time per configuration (ms).

The model: ``--model``, or one trained here on vacuum frames (``neuralct simulate alanine-dipeptide
--length-ns 0.05 --replicas 2`` and ``neuralct train --steps 200``, reused from ``--output``); it
acts on the solute of the water box through its topology.

The PythonForce needs openmm >= 8.5; openmm-torch 1.5's registry wheel runs a TorchForce with
openmm 8.6.1 on its own but crashes (segmentation fault) when OpenMM copies it into the inner
Context of a ``CustomCVForce``, which ``Metadynamics`` uses; with openmm 8.4.0.post2 it works. So
the two forces are measured in two environments, one after the other, each against its own
unbiased run (same platform and threads):

    python benchmarks/bench_cv_force.py --output /tmp/cv-force/python [--model MODEL]
    OPENMMTORCH_ENV/bin/python benchmarks/bench_cv_force.py --forces torch --output /tmp/cv-force/torch \
        --model /tmp/cv-force/python/model/model.pt
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402  (before openmm: openmm-torch's kernels load only when LibTorch is loaded)

import neuralct  # noqa: E402
from neuralct.cli import main as neuralct_main  # noqa: E402
from neuralct.export import cv_ranges, openmm_force  # noqa: E402
from neuralct.md.systems import WaterBox, build_system  # noqa: E402

TEMPERATURE_K, FRICTION_PER_PS, TIMESTEP_PS = 300.0, 1.0, 0.002
HEIGHT_KJ, BIAS_FACTOR, PACE_PS, WIDTH_FRACTION, GRID_MARGIN = 1.2, 8.0, 1.0, 0.06, 3.0
#: Platform of each system: PME needs the CPU platform to be fast; in vacuum the Reference platform is the faster.
PLATFORMS = {"water": "CPU", "vacuum": "Reference"}


def run_neuralct(*argv: str) -> None:
    """Run a neuralct command in this process; a failure stops the benchmark."""
    if neuralct_main(list(argv)) != 0:
        raise SystemExit(f"neuralct {' '.join(argv)} failed")


def trained_model(folder: Path) -> Path:
    """A small model of alanine dipeptide trained in a minute on vacuum MD, reused when ``folder`` holds it."""
    md, trained = folder / "md", folder / "model"
    if not (trained / "summary.json").exists():
        simulate = [
            "simulate",
            "alanine-dipeptide",
            "--length-ns",
            "0.05",
            "--replicas",
            "2",
            "--platform",
            "Reference",
        ]
        run_neuralct(*simulate, "--no-progress", "--output", str(md))
        replicas = map(str, sorted(md.glob("replica-*.nc")))
        run_neuralct("train", *replicas, "--steps", "200", "--no-progress", "--output", str(trained))
    return trained / "model.pt"


def build(system: str, padding_nm: float):
    """The benchmark's alanine dipeptide: in TIP3P (``water``) or in vacuum."""
    if system == "water":
        return build_system("alanine-dipeptide", solvent="tip3p", water=WaterBox(padding_nm=padding_nm))
    return build_system("alanine-dipeptide")


def minimised_positions(md_system, platform: str, threads: int):
    """Positions (n_atoms, 3) nm after a short energy minimisation: every case starts from them."""
    import openmm as mm

    context = mm.Context(
        md_system.system,
        mm.LangevinMiddleIntegrator(TEMPERATURE_K, FRICTION_PER_PS, TIMESTEP_PS),
        *platform_and_properties(platform, threads),
    )
    context.setPositions(md_system.positions)
    mm.LocalEnergyMinimizer.minimize(context, 10.0, 500)
    return context.getState(getPositions=True).getPositions(asNumpy=True)


def platform_and_properties(platform: str, threads: int) -> tuple:
    import openmm as mm

    return mm.Platform.getPlatformByName(platform), ({"Threads": str(threads)} if platform == "CPU" else {})


class Case:
    """One Context: unbiased, or metadynamics on CV 1 through ``cv_force`` evaluated every ``bias_every`` MD steps."""

    def __init__(self, model, system: str, padding_nm: float, cv_force: str | None, bias_every: int, threads: int):
        import openmm as mm
        from openmm.app import Simulation
        from openmm.app.metadynamics import BiasVariable, Metadynamics

        self.name = "unbiased" if cv_force is None else f"{cv_force}, bias every {bias_every}"
        self.cv_force, self.bias_every = cv_force, bias_every
        md_system = build(system, padding_nm)
        self.metadynamics = None
        if cv_force is None:
            integrator = mm.LangevinMiddleIntegrator(TEMPERATURE_K, FRICTION_PER_PS, TIMESTEP_PS)
        else:
            force = openmm_force(
                model, md_system.system, 0, topology=md_system.topology, torch_force=cv_force == "torch"
            )
            (limits,), _ = cv_ranges(model, 1)
            span = limits["max"] - limits["min"]
            variable = BiasVariable(
                force,
                limits["min"] - GRID_MARGIN * span,
                limits["max"] + GRID_MARGIN * span,
                WIDTH_FRACTION * (limits.get("p99", limits["max"]) - limits.get("p01", limits["min"])),
            )
            steps_per_deposit = round(PACE_PS / (TIMESTEP_PS * bias_every))
            self.metadynamics = Metadynamics(
                md_system.system, [variable], TEMPERATURE_K, BIAS_FACTOR, HEIGHT_KJ, steps_per_deposit
            )
            integrator = self.integrator(md_system.system, bias_every)
        integrator.setRandomNumberSeed(1)
        self.simulation = Simulation(
            md_system.topology, md_system.system, integrator, *platform_and_properties(PLATFORMS[system], threads)
        )
        self.n_atoms = md_system.n_atoms

    @staticmethod
    def integrator(system, bias_every: int):
        """LangevinMiddle for a bias every step; else multiple time steps, the bias (the force added last) outside."""
        import openmm as mm

        if bias_every == 1:
            return mm.LangevinMiddleIntegrator(TEMPERATURE_K, FRICTION_PER_PS, TIMESTEP_PS)
        bias_group = system.getForce(system.getNumForces() - 1).getForceGroup()
        groups = sorted({force.getForceGroup() for force in system.getForces()} - {bias_group})
        return mm.MTSLangevinIntegrator(
            TEMPERATURE_K,
            FRICTION_PER_PS,
            TIMESTEP_PS * bias_every,
            [(bias_group, 1)] + [(group, bias_every) for group in groups],
        )

    def start(self, positions, warmup_steps: int) -> None:
        context = self.simulation.context
        context.setPositions(positions)
        context.setVelocitiesToTemperature(TEMPERATURE_K, 1)
        self.run(warmup_steps)

    def run(self, md_steps: int) -> float:
        """Run ``md_steps`` MD steps (rounded down to whole outer steps); MD steps per wall second."""
        outer = md_steps // self.bias_every
        start = time.perf_counter()
        if self.metadynamics is None:
            self.simulation.step(outer)
        else:
            self.metadynamics.step(self.simulation, outer)
        return outer * self.bias_every / (time.perf_counter() - start)


def measure(model, system: str, args: argparse.Namespace) -> dict:
    """Steps per second of each case of ``system``, interleaved over ``args.repeats`` rounds."""
    settings = [(None, 1)] + [(force, every) for force in args.forces for every in sorted({1, args.bias_every})]
    cases = [Case(model, system, args.padding_nm, force, every, args.threads) for force, every in settings]
    positions = minimised_positions(build(system, args.padding_nm), PLATFORMS[system], args.threads)
    for case in cases:
        case.start(positions, args.warmup_steps)
    steps = args.water_steps if system == "water" else args.vacuum_steps
    rates = {case.name: [] for case in cases}
    for _ in range(args.repeats):
        for case in cases:
            rates[case.name].append(case.run(steps))
    unbiased = rates["unbiased"]
    return {
        "atoms": cases[0].n_atoms,
        "platform": PLATFORMS[system],
        "threads": args.threads if PLATFORMS[system] == "CPU" else None,
        "md_steps_per_round": steps,
        "cases": {
            name: {
                "steps_per_second": values,
                "median_steps_per_second": statistics.median(values),
                "median_ratio_to_unbiased": statistics.median(b / u for b, u in zip(values, unbiased)),
            }
            for name, values in rates.items()
        },
    }


def per_configuration(model, configurations: int, repeats: int) -> dict:
    """CPU ms per configuration of the two slowest CVs with gradients: NumPy reverse pass and torch autograd."""
    import numpy as np

    from neuralct.export import NumpyCollectiveVariables, collective_variables
    from neuralct.model.molecular import molecule_description

    cvs = collective_variables(model, 2, select=False)
    fast = NumpyCollectiveVariables(cvs)
    atoms = molecule_description(model)["atom_indices"]
    rng = np.random.default_rng(0)
    start = np.asarray(build("vacuum", 0.0).positions)[atoms]
    frames = start + rng.normal(scale=0.005, size=(configurations, *start.shape))

    def numpy_pass(x):
        return fast(x, [0, 1])

    def torch_pass(x):
        xt = torch.tensor(x, requires_grad=True)
        values = cvs(xt)
        return [torch.autograd.grad(values[j], xt, retain_graph=j == 0)[0] for j in range(2)]

    gradients = numpy_pass(frames[0])[1]
    agreement = max(float(np.abs(gradients[j] - torch_pass(frames[0])[j].numpy()).max()) for j in range(2))
    times = {"numpy": [], "torch": []}
    for _ in range(repeats):
        for name, evaluate in (("numpy", numpy_pass), ("torch", torch_pass)):
            begin = time.process_time()
            for x in frames:
                evaluate(x)
            times[name].append(1e3 * (time.process_time() - begin) / configurations)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "ms": times,
        "median_ms": medians,
        "torch_over_numpy": medians["torch"] / medians["numpy"],
        "max_gradient_difference": agreement,
    }


def print_table(results: dict) -> None:
    print(f"{'system':8} {'platform':9} {'case':24} {'steps/s (median)':>17} {'range':>17} {'/ unbiased':>10}")
    for system, result in results["systems"].items():
        for name, case in result["cases"].items():
            low, high = min(case["steps_per_second"]), max(case["steps_per_second"])
            print(
                f"{system:8} {result['platform']:9} {name:24} {case['median_steps_per_second']:17.1f} "
                f"{f'{low:.1f}-{high:.1f}':>17} {case['median_ratio_to_unbiased']:10.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True, help="folder of the results (and of the trained model)")
    parser.add_argument("--model", type=Path, help="model of alanine dipeptide (default: one trained here)")
    parser.add_argument(
        "--forces", nargs="+", default=["python"], choices=("python", "torch"), help="CV forces of the biased cases"
    )
    parser.add_argument("--systems", nargs="+", default=["water", "vacuum"], choices=("water", "vacuum"))
    parser.add_argument("--threads", type=int, default=2, help="threads of the CPU platform (the water box)")
    parser.add_argument("--padding-nm", type=float, default=1.4, help="water padding, nm (1.4: 2,041 atoms)")
    parser.add_argument("--bias-every", type=int, default=4, help="MD steps per bias evaluation of the MTS cases")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--water-steps", type=int, default=1000, help="MD steps per round in water")
    parser.add_argument("--vacuum-steps", type=int, default=4000, help="MD steps per round in vacuum")
    parser.add_argument("--configurations", type=int, default=200, help="configurations per round of the CV cost")
    args = parser.parse_args()
    import openmm as mm

    if "python" in args.forces and not hasattr(mm, "PythonForce"):
        raise SystemExit(f"--forces python needs openmm >= 8.5 (openmm.PythonForce); this is openmm {mm.__version__}")
    if "torch" in args.forces:
        try:
            import openmmtorch  # noqa: F401
        except ImportError:
            raise SystemExit("--forces torch needs openmm-torch (README: Using the CVs in MD engines)") from None
    torch.set_num_threads(1)

    args.output.mkdir(parents=True, exist_ok=True)
    model_path = args.model or trained_model(args.output)
    model = neuralct.load(model_path)
    results = {
        "model": str(model_path),
        "versions": {"torch": torch.__version__, "openmm": mm.__version__},
        "load_average_before": os.getloadavg(),
        "settings": vars(args) | {"output": str(args.output), "model": str(args.model)},
        "systems": {},
    }
    results["per_configuration"] = cost = per_configuration(model, args.configurations, args.repeats)
    print(
        f"two CVs with gradients, one configuration: NumPy {cost['median_ms']['numpy']:.3f} ms, torch autograd "
        f"{cost['median_ms']['torch']:.3f} ms ({cost['torch_over_numpy']:.1f}x; gradients agree to "
        f"{cost['max_gradient_difference']:.1e})"
    )
    for system in args.systems:
        results["systems"][system] = measure(model, system, args)
    results["load_average_after"] = os.getloadavg()
    (args.output / "bench_cv_force.json").write_text(json.dumps(results, indent=1) + "\n")
    print_table(results)
    print(f"load average before {results['load_average_before']}, after {results['load_average_after']}")


if __name__ == "__main__":
    main()
