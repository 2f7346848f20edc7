"""B4 - latent HMC against physical-space HMC and MD at a fixed budget of energy+gradient evaluations.

Every sampler gets the same number of energy-and-gradient evaluations in its sampling phase
(warm-up excluded and reported), with its chains run as one batch. HMC in physical coordinates
and latent HMC are tuned the same way: for each mass matrix of ``--mass-matrices`` (unit, or
the mean curvature of the second quarter of the warm-up) and each trajectory length of
``--leapfrog``, the step size is adapted in warm-up to each target acceptance of
``--acceptances``; the best combination per method and mass matrix (by ESS per evaluation of
the potential energy) is its tuned figure.
MD is Langevin dynamics at a stable time step with one evaluation per step. ``auto`` is
``neuralct sample --method auto``'s kernel (:class:`~neuralct.sampling.mixture.FlowMixture`)
with the latent HMC of each grid point: Kish's ESS of ``--kish-samples`` flow draws admits
independence moves, the warm-up chooses how many follow each trajectory (the draws count with
its evaluations). ``--methods`` picks the samplers.

    python benchmarks/bench_sampling.py toy --budget 200000
    python benchmarks/bench_sampling.py toy --methods latent-hmc auto --leapfrog 10 --acceptances 0.65 --budget 50000
    python benchmarks/bench_sampling.py alanine --model runs/ala-all/model.pt --reference TRAJ... --budget 100000
    python benchmarks/bench_sampling.py gaussian --dimension 60 --budget 100000 --chains 32

``gaussian`` runs latent HMC as it would be with an exact flow (a unit Gaussian): the most any
flow can give with the same kernel and grid.

Prints one JSON document: per sampler the acceptance, IAT (in iterations or MD steps) and ESS per
evaluation and per CPU-second of the potential energy and of the basin indicators, and the
populations with standard errors next to the exact (toy) or long-MD (alanine) reference; and the
spectrum of the mean curvature E[grad U grad U^T] of the physical and the latent potential at
reference samples (all ones in the latent space of an exact flow).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Any, Callable

import numpy as np
import torch

from neuralct.sampling import (
    ChainState,
    HamiltonianMonteCarlo,
    IndependenceMetropolis,
    LatentPotential,
    evaluate_potential,
    iterate,
    warm_up,
)
from neuralct.sampling.chains import component_kernels
from neuralct.sampling.diagnostics import (
    basin_population,
    curvature_figures,
    curvature_spectrum,
    flow_importance_weights,
    kish_effective_sample_size,
    observable_efficiency,
)
from neuralct.sampling.mixture import FlowMixture

torch.set_default_dtype(torch.float64)


def run_chains(
    kernels, potential, start: torch.Tensor, budget: int, warmup: int, generator
) -> tuple[torch.Tensor, torch.Tensor, int, int, float, float]:
    """Warm up, then iterate until the sampling phase has spent ``budget`` evaluations.

    A :class:`FlowMixture` among ``kernels`` must have been admitted (or not) before.
    """
    cpu0, wall0 = time.process_time(), time.perf_counter()
    state = warm_up(kernels, ChainState.start(potential, start), warmup, generator)
    parts = component_kernels(kernels)
    warmup_evaluations = sum(k.statistics.warmup_evaluations for k in parts) + len(start)
    positions, energies = [], []
    while sum(k.statistics.evaluations for k in parts) < budget:
        state = iterate(kernels, state, generator)
        positions.append(state.position)
        energies.append(state.energy)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return (
        torch.stack(positions),
        torch.stack(energies),
        sum(k.statistics.evaluations for k in parts),
        warmup_evaluations,
        cpu,
        wall,
    )


def measure(
    name: str,
    kernels,
    potential,
    start,
    budget,
    warmup,
    generator,
    to_physical: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    observables: Callable[[torch.Tensor, torch.Tensor], dict[str, np.ndarray]],
) -> dict[str, Any]:
    positions, energies, evaluations, warmup_evaluations, cpu, wall = run_chains(
        kernels, potential, start, budget, warmup, generator
    )
    n_samples, n_chains, dim = positions.shape
    q, u_phys = to_physical(positions.reshape(-1, dim), energies.reshape(-1))
    values = {
        key: value.reshape(n_samples, n_chains) for key, value in observables(q.detach(), u_phys.detach()).items()
    }
    parts = component_kernels(kernels)
    result = {
        "sampler": name,
        "acceptance": {k.name: k.statistics.accepted / max(k.statistics.proposals, 1) for k in parts},
        "step_size": {k.name: k.step_size for k in parts if isinstance(k, HamiltonianMonteCarlo)},
        "leapfrog_steps": {k.name: k.leapfrog_steps for k in parts if isinstance(k, HamiltonianMonteCarlo)},
        "nonfinite_rejections": sum(k.statistics.nonfinite for k in parts),
        "evaluations": evaluations,
        "warmup_evaluations": warmup_evaluations,
        "iterations": n_samples,
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "observables": {key: observable_efficiency(value, evaluations, cpu) for key, value in values.items()},
    }
    for mixture in (k for k in kernels if isinstance(k, FlowMixture)):
        result["method_choice"] = mixture.choice()
        result["warmup_evaluations"] += mixture.flow_weights["flow_samples"] if mixture.flow_weights else 0
    print(
        json.dumps(
            {
                "done": name,
                "evaluations": evaluations,
                "cpu_seconds": round(cpu, 1),
                "ess_per_evaluation": {k: v["ess_per_evaluation"] for k, v in result["observables"].items()},
            }
        ),
        flush=True,
    )
    return result


def curvature_summary(potential, points: torch.Tensor) -> dict[str, Any]:
    """The mean-curvature spectrum of ``potential`` at Boltzmann samples (what bounds a unit-mass HMC step)."""
    energy, gradient = evaluate_potential(potential, points)
    return {"points": len(points), **curvature_figures(curvature_spectrum(gradient[torch.isfinite(energy)].numpy()))}


def compare(model, physical_potential, start_q, observables, args, reference_q: torch.Tensor) -> dict[str, Any]:
    """HMC (grid-tuned), latent HMC (grid-tuned), auto (on each latent grid point), independence and mixed at one
    budget; those of ``args.methods``.

    ``reference_q`` are Boltzmann samples (exact or long MD) at which the mean curvature of
    both potentials is measured. Points with coordinates beyond the model's (hydrogens placed
    on a heavy-atom model) get no independence moves and no Kish ESS: the flow does not draw them.
    """
    whole = start_q.shape[1] == model.dim
    latent = LatentPotential(model, physical_potential)
    start_u = latent.to_latent(start_q).detach()
    curvature = {
        "physical": curvature_summary(physical_potential, reference_q),
        "latent": curvature_summary(latent, latent.to_latent(reference_q).detach()),
    }
    identity = lambda x, u: (x, u)  # noqa: E731

    def latent_to_physical(u, energy):
        with torch.no_grad():
            q, log_det = latent.to_physical(u)
        return q, energy + log_det

    runs = []
    for space, potential, start, to_physical in (
        ("hmc", physical_potential, start_q, identity),
        ("latent-hmc", latent, start_u, latent_to_physical),
        ("auto", latent, start_u, latent_to_physical),
    ):
        if space not in args.methods or (space == "auto" and not whole):
            continue
        step = args.physical_step if space == "hmc" else 0.1
        for mass in args.mass_matrices:
            for leapfrog in args.leapfrog:
                for acceptance in args.acceptances:
                    kernel = HamiltonianMonteCarlo(potential, step, leapfrog, acceptance, mass_matrix=mass)
                    generator = torch.Generator().manual_seed(args.seed)
                    if space == "auto":
                        kernel = FlowMixture(IndependenceMetropolis(latent), kernel)
                        kernel.admit(flow_importance_weights(latent, model.dim, args.kish_samples, generator))
                    result = measure(
                        f"{space} M={mass} L={leapfrog} acc={acceptance}",
                        [kernel],
                        potential,
                        start,
                        args.budget,
                        args.warmup,
                        generator,
                        to_physical,
                        observables,
                    )
                    result["method"] = space
                    result["mass_matrix"] = mass
                    runs.append(result)
    for method, kernels in (
        (
            ("independence", [IndependenceMetropolis(latent)]),
            (
                "mixed",
                [
                    IndependenceMetropolis(latent),
                    HamiltonianMonteCarlo(
                        latent, 0.1, min(args.leapfrog), max(args.acceptances), mass_matrix=args.mass_matrices[-1]
                    ),
                ],
            ),
        )
        if whole
        else ()
    ):
        if method not in args.methods:
            continue
        generator = torch.Generator().manual_seed(args.seed)
        result = measure(
            method, kernels, latent, start_u, args.budget, args.warmup, generator, latent_to_physical, observables
        )
        result["method"] = method
        runs.append(result)
    best = {}
    for method, mass in [(m, mass) for m in ("hmc", "latent-hmc", "auto") for mass in args.mass_matrices] + (
        [("independence", None), ("mixed", None)] if whole else []
    ):
        candidates = [r for r in runs if r["method"] == method and r.get("mass_matrix") == mass]
        if not candidates:
            continue
        best[method if mass is None else f"{method} M={mass}"] = max(
            candidates, key=lambda r: r["observables"]["potential_energy_kT"]["ess_per_evaluation"]
        )["sampler"]
    kish = None
    if whole:
        generator = torch.Generator().manual_seed(args.seed + 1)
        u = torch.randn(args.kish_samples, model.dim, generator=generator)
        with torch.no_grad():
            log_w = (-latent(u) + 0.5 * (u**2).sum(-1)).numpy()
        kish = kish_effective_sample_size(log_w) / len(log_w)
    return {
        "runs": runs,
        "best_by_potential_energy_ess_per_evaluation": best,
        "kish_ess_fraction": kish,
        "mean_curvature": curvature,
    }


def langevin_md_toy(
    system, chains: int, budget: int, dt: float, friction: float, seed: int, observables
) -> dict[str, Any]:
    """BAOAB Langevin dynamics of a toy (unit masses, kT = 1), one force evaluation per step."""
    generator = torch.Generator().manual_seed(seed)
    q = torch.as_tensor(system.sample(chains, seed=seed)[0])
    p = torch.randn(q.shape, generator=generator)
    steps = budget // chains
    decay = math.exp(-friction * dt)

    def force(x):
        x = x.detach().requires_grad_(True)
        return -torch.autograd.grad(system.potential(x).sum(), x)[0]

    cpu0 = time.process_time()
    f = force(q)
    record_q, record_u = [], []
    for _ in range(steps):
        p = p + 0.5 * dt * f
        q = q + 0.5 * dt * p
        p = decay * p + math.sqrt(1 - decay**2) * torch.randn(q.shape, generator=generator)
        q = q + 0.5 * dt * p
        f = force(q)
        p = p + 0.5 * dt * f
        record_q.append(q)
        record_u.append(system.potential(q).detach())
    cpu = time.process_time() - cpu0
    qs = torch.stack(record_q)
    values = {
        key: value.reshape(steps, chains)
        for key, value in observables(qs.reshape(-1, q.shape[1]), torch.stack(record_u).reshape(-1)).items()
    }
    return {
        "sampler": f"Langevin MD dt={dt} friction={friction}",
        "evaluations": steps * chains,
        "cpu_seconds": cpu,
        "observables": {key: observable_efficiency(value, steps * chains, cpu) for key, value in values.items()},
    }


def toy_main(args) -> dict[str, Any]:
    from neuralct.sampling import ToyPotential
    from neuralct.toys.hamiltonians import CurvedDoubleWell
    from neuralct.training.loop import TrainingSettings
    from neuralct.workflows.train import fit_toy

    system = CurvedDoubleWell()
    architecture = [{"type": "linear", "point": True}, {"type": "point", "n_layers": 4, "hidden": 32, "depth": 2}]
    settings = TrainingSettings(steps=args.train_steps, batch_size=256, progress=False)
    model, _ = fit_toy(
        system, "ml", architecture, settings, samples=20000, dtype="float64", device="cpu", seed=args.seed
    )
    model.requires_grad_(False)
    potential = ToyPotential(system)

    def observables(q, u_phys):
        return {"potential_energy_kT": u_phys.numpy(), "x > 0": (q[:, 0] > 0).double().numpy()}

    start_q = torch.as_tensor(system.sample(args.chains, seed=args.seed + 2)[0])
    reference_q = torch.as_tensor(system.sample(2000, seed=args.seed + 3)[0])
    result = compare(model, potential, start_q, observables, args, reference_q)
    result["md"] = langevin_md_toy(system, args.chains, args.budget, args.md_dt, 1.0, args.seed, observables)
    result["exact"] = {"x > 0": system.population_positive_x(), "mean_x": system.moments()["mean_x"]}
    result["system"] = system.describe()
    result["flow_training_steps"] = args.train_steps
    return result


def alanine_main(args) -> dict[str, Any]:
    import mdtraj
    import openmm as mm
    import openmm.unit as unit

    from neuralct.md.systems import build_system
    from neuralct.model.transformation import load
    from neuralct.sampling.targets import basin_indicators, molecular_target

    model = load(args.model).double()
    model.requires_grad_(False)
    md_system = build_system("alanine-dipeptide", constraints="none")
    target = molecular_target(model, md_system, "alanine-dipeptide")
    topology = mdtraj.Topology.from_openmm(md_system.topology)
    molecule = target.potential  # points (the model's coordinates, then placed hydrogens) <-> positions

    def indicator_values(positions_nm: np.ndarray, energy_kT: np.ndarray) -> dict[str, np.ndarray]:
        return {"potential_energy_kT": energy_kT, **basin_indicators(topology, positions_nm)}

    def observables(point, u_phys):
        beta_e = target.energy_from_potential(point, u_phys).numpy()
        return indicator_values(molecule.positions(point).numpy(), beta_e)

    # Chains start from frames of the reference MD (the flow's start must be a finite-energy point).
    reference_frames = mdtraj.load(args.reference, top=args.reference_top)
    pick = np.linspace(0, reference_frames.n_frames - 1, args.chains).astype(int)
    start_q = molecule.coordinates(reference_frames.xyz[pick])
    every = max(1, reference_frames.n_frames // 2000)
    reference_q = molecule.coordinates(reference_frames.xyz[::every])
    result = compare(model, target.potential, start_q, observables, args, reference_q)

    # MD at equal evaluations: OpenMM Langevin (no constraints, 1 fs, 1/ps), one force evaluation per step.
    inverse_kT = float(target.potential.energy.scale)  # kJ/mol -> kT
    steps_per_chain = args.budget // args.chains
    stride = 10
    records_positions, records_energy = [], []
    cpu0 = time.process_time()
    for chain in range(args.chains):
        integrator = mm.LangevinMiddleIntegrator(300 * unit.kelvin, 1.0 / unit.picosecond, 0.001 * unit.picoseconds)
        integrator.setRandomNumberSeed(args.seed + chain)
        context = mm.Context(md_system.system, integrator, mm.Platform.getPlatformByName("Reference"))
        context.setPositions(reference_frames.xyz[pick[chain]].astype(np.float64))
        context.setVelocitiesToTemperature(300 * unit.kelvin, args.seed + chain)
        chain_positions, chain_energy = [], []
        for _ in range(steps_per_chain // stride):
            integrator.step(stride)
            state = context.getState(getPositions=True, getEnergy=True)
            chain_positions.append(state.getPositions(asNumpy=True)._value)
            chain_energy.append(state.getPotentialEnergy()._value * inverse_kT)
        records_positions.append(np.array(chain_positions))
        records_energy.append(np.array(chain_energy))
    cpu = time.process_time() - cpu0
    positions = np.stack(records_positions, 1)  # (records, chains, atoms, 3)
    energy = np.stack(records_energy, 1)
    values = indicator_values(positions.reshape(-1, topology.n_atoms, 3), energy.reshape(-1))
    values = {key: value.reshape(energy.shape) for key, value in values.items()}
    evaluations = (steps_per_chain // stride) * stride * args.chains
    result["md"] = {
        "sampler": f"OpenMM Langevin 1 fs, 1/ps, no constraints; IAT in records of {stride} steps",
        "evaluations": evaluations,
        "cpu_seconds": cpu,
        "observables": {key: observable_efficiency(value, evaluations, cpu) for key, value in values.items()},
    }
    reference = {
        name: value[:, None] for name, value in basin_indicators(topology, reference_frames.xyz).items()
    }  # trajectories end to end
    result["reference_md"] = {
        "frames": int(reference_frames.n_frames),
        "populations": {name: basin_population(value) for name, value in reference.items()},
    }
    return result


def gaussian_main(args) -> dict[str, Any]:
    """HMC on a unit Gaussian of ``--dimension``: latent HMC with an exact flow, the most it can reach.

    In the latent space of an exact flow the potential is ``|u|^2 / 2``. The energy's ESS per
    evaluation measured here bounds what any flow gives latent HMC with the same kernel, grid
    and budget.
    """

    def potential(u):
        return 0.5 * (u**2).sum(-1)

    identity = lambda x, u: (x, u)  # noqa: E731
    runs = []
    for mass in args.mass_matrices:
        for leapfrog in args.leapfrog:
            for acceptance in args.acceptances:
                generator = torch.Generator().manual_seed(args.seed)
                start = torch.randn(args.chains, args.dimension, generator=generator)
                kernel = HamiltonianMonteCarlo(potential, 0.1, leapfrog, acceptance, mass_matrix=mass)
                result = measure(
                    f"exact-flow latent-hmc M={mass} L={leapfrog} acc={acceptance}",
                    [kernel],
                    potential,
                    start,
                    args.budget,
                    args.warmup,
                    generator,
                    identity,
                    lambda u, energy: {"potential_energy_kT": energy.numpy()},
                )
                runs.append(result)
    best = max(runs, key=lambda r: r["observables"]["potential_energy_kT"]["ess_per_evaluation"])
    return {"runs": runs, "best_by_potential_energy_ess_per_evaluation": best["sampler"], "dimension": args.dimension}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "system", choices=("toy", "alanine", "gaussian"), help="gaussian: latent HMC with an exact flow (--dimension)"
    )
    parser.add_argument("--dimension", type=int, default=60, help="dimension of the unit Gaussian (gaussian)")
    parser.add_argument("--model", help="all-atom model (alanine)")
    parser.add_argument(
        "--reference", nargs="*", help="reference MD trajectories (alanine): chain starts and populations"
    )
    parser.add_argument("--reference-top", help="topology of the reference trajectories")
    parser.add_argument(
        "--budget", type=int, default=200000, help="energy+gradient evaluations of each sampler's sampling phase"
    )
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--leapfrog", type=int, nargs="+", default=[3, 10, 30])
    parser.add_argument("--acceptances", type=float, nargs="+", default=[0.65, 0.9])
    parser.add_argument(
        "--mass-matrices",
        nargs="+",
        choices=HamiltonianMonteCarlo.MASS_MATRICES,
        default=["unit", "curvature"],
        help="HMC mass matrices tried for both HMCs (the last one also for mixed)",
    )
    parser.add_argument("--physical-step", type=float, default=0.05, help="starting step of physical HMC (adapted)")
    parser.add_argument("--md-dt", type=float, default=0.05, help="toy MD time step")
    parser.add_argument("--train-steps", type=int, default=300, help="flow training steps (toy)")
    parser.add_argument("--kish-samples", type=int, default=2000)
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=("hmc", "latent-hmc", "auto", "independence", "mixed"),
        default=["hmc", "latent-hmc", "auto", "independence", "mixed"],
        help="samplers to run (auto and the independence moves only where the flow draws whole configurations)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {"toy": toy_main, "alanine": alanine_main, "gaussian": gaussian_main}[args.system](args)
    result["settings"] = vars(args)
    result["threads"] = {"torch": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
