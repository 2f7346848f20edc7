"""B3, for scale: how hard each residue's phi flip is, with a bias told the answer.

Well-tempered metadynamics on one backbone phi at a time (``openmm.app.Metadynamics``, a 1-D periodic
bias with the settings of ``neuralct bias --cv phi``: height 1.2 kJ/mol, width 0.35 rad, bias factor
8, a Gaussian every ps, the bias every step; Langevin 300 K, 1/ps, 2 fs; Reference platform), on a
bundled peptide in vacuum. Per residue: phi transitions between the core sets of B3 and F(phi > 0) -
F(phi < 0) from the final bias, -(gamma/(gamma-1)) V (a rough estimate after a few ns), and the CPU
time. ``neuralct explore`` is not told these torsions; this says which flips a learned CV must find.

    python benchmarks/bench_residue_phi.py [--system trialanine] [--length-ns 2] [--seed 1]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GRID_POINTS = 60


def residue_phi(system_name: str, name: str, length_ns: float, seed: int) -> dict:
    """Metadynamics on the backbone phi ``name`` of ``system_name`` alone; its transitions, dF and CPU s."""
    import openmm as mm
    from openmm.app import Simulation
    from openmm.app.metadynamics import BiasVariable

    from neuralct.analysis.reweighting import count_transitions
    from neuralct.md.systems import build_system
    from neuralct.units import kT_kj_per_mol
    from neuralct.workflows.bias import BiasSettings, backbone_torsions
    from neuralct.workflows.metadynamics import JointMetadynamics

    settings = BiasSettings(bias_every=1)  # the defaults of `neuralct bias --cv phi`, the bias every step
    system = build_system(system_name, solvent="vacuum")
    torsion = mm.CustomTorsionForce("theta")
    torsion.addTorsion(*backbone_torsions(system.topology, settings)[name].atoms, [])
    variable = BiasVariable(torsion, -math.pi, math.pi, settings.width_rad, True, gridWidth=GRID_POINTS)
    steps_per_ps = int(round(1.0 / (settings.timestep_fs / 1000.0)))
    metadynamics = JointMetadynamics(
        system.system, [variable], settings.temperature, settings.bias_factor, settings.height_kj, steps_per_ps
    )
    integrator = mm.LangevinMiddleIntegrator(
        settings.temperature, settings.friction_per_ps, settings.timestep_fs / 1000.0
    )
    integrator.setRandomNumberSeed(seed)
    simulation = Simulation(system.topology, system.system, integrator, mm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(system.positions)
    simulation.minimizeEnergy()
    simulation.context.setVelocitiesToTemperature(settings.temperature, seed + 1)
    start, phi = time.process_time(), []
    for _ in range(int(round(length_ns * 1000))):
        metadynamics.step(simulation, steps_per_ps)
        phi.append(metadynamics.getCollectiveVariables(simulation)[0])
    cpu = time.process_time() - start
    # The last grid point repeats the first (periodic).
    grid = np.linspace(-math.pi, math.pi, GRID_POINTS)[:-1]
    free = np.asarray(metadynamics.getFreeEnergy()._value)[:-1]
    kT = kT_kj_per_mol(settings.temperature)
    weight = np.exp(-(free - free.min()) / kT)
    transitions = count_transitions(np.array(phi))
    return {
        "phi": name,
        "transitions_per_ns": transitions / length_ns,
        "delta_F_kj": -kT * math.log(weight[grid > 0].sum() / weight[grid <= 0].sum()),
        "bias_max_kj": float(np.max(metadynamics.bias_grid)),
        "cpu_s": cpu,
    }


def main() -> None:
    from neuralct.md.systems import build_system
    from neuralct.workflows.bias import BiasSettings, backbone_torsions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="trialanine", help="a bundled peptide (default: %(default)s)")
    parser.add_argument("--length-ns", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torsions = backbone_torsions(build_system(args.system, solvent="vacuum").topology, BiasSettings())
    for name, dihedral in torsions.items():
        if dihedral.kind == "phi":
            figures = residue_phi(args.system, name, args.length_ns, args.seed)
            print(
                f"{name}: {figures['transitions_per_ns']:.1f} transitions per ns, F(phi>0) - F(phi<0) "
                f"{figures['delta_F_kj']:.2f} kJ/mol from the bias (its maximum {figures['bias_max_kj']:.1f}), "
                f"{figures['cpu_s']:.0f} CPU s",
                flush=True,
            )


if __name__ == "__main__":
    main()
