"""Bias a learned CV with well-tempered metadynamics in a plain OpenMM script.

`neuralct.export.openmm_force` turns the model's slowest CV into an OpenMM force whose energy is
the CV: an `openmm.PythonForce` that needs no plugin. `openmm.app.Metadynamics` biases it like any
other CV. With openmm-torch installed, `openmm_force(model, system, 0, torch_force=True)` returns
a `TorchForce` of the same CV instead (evaluated by libtorch in C++).

    neuralct quickstart       # once: trains runs/quickstart/model/model.pt on alanine dipeptide
    python examples/metadynamics_openmm.py
    python examples/metadynamics_openmm.py MODEL.pt --pdb my.pdb --length-ps 200

The System is built here with OpenMM from the PDB of the molecule the model was trained on (by
default the bundled alanine dipeptide: amber99sb-ildn, vacuum, HBonds, as `neuralct simulate`
builds it). The grid and the Gaussian width come from the CV's range on the training data, with
the defaults of `neuralct bias`, which also evaluates the bias only every 4 steps (multiple time
steps) and records COLVAR files and reweighted free energies. Prints the CV and the backbone
phi as the run goes, and the steps per second.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mdtraj
import numpy as np
import openmm
from openmm import app, unit

import neuralct
from neuralct.export import cv_ranges, openmm_force

QUICKSTART_MODEL = Path("runs/quickstart/model/model.pt")
ALANINE_DIPEPTIDE = Path(__file__).resolve().parents[1] / "systems" / "alanine_dipeptide.pdb"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=QUICKSTART_MODEL)
    parser.add_argument("--pdb", type=Path, default=ALANINE_DIPEPTIDE, help="the molecule")
    parser.add_argument("--length-ps", type=float, default=100.0, help="biased MD, ps (default: %(default)s)")
    parser.add_argument(
        "--report-ps", type=float, default=10.0, help="time between printed lines (default: %(default)s)"
    )
    args = parser.parse_args()
    if not args.model.exists():
        raise SystemExit(f"{args.model} not found: run `neuralct quickstart` first, or name a model")

    model = neuralct.load(args.model)
    pdb = app.PDBFile(str(args.pdb))
    system = app.ForceField("amber99sbildn.xml").createSystem(
        pdb.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds
    )

    # The CV's range on the training frames, widened 3 spans on each side: a biased CV leaves it.
    (limits,), _ = cv_ranges(model, 1)
    span = limits["max"] - limits["min"]
    width = 0.06 * (limits["p99"] - limits["p01"])
    cv = app.metadynamics.BiasVariable(
        openmm_force(model, system, 0), limits["min"] - 3 * span, limits["max"] + 3 * span, width
    )
    timestep = 2 * unit.femtosecond
    steps_per_ps = round(unit.picosecond / timestep)
    metadynamics = app.Metadynamics(
        system, [cv], 300 * unit.kelvin, biasFactor=8, height=1.2 * unit.kilojoule_per_mole, frequency=steps_per_ps
    )
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, timestep)
    simulation = app.Simulation(pdb.topology, system, integrator, openmm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(pdb.positions)
    simulation.minimizeEnergy()
    simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)

    topology = mdtraj.Topology.from_openmm(pdb.topology)
    report_steps = max(1, round(args.report_ps * steps_per_ps))
    reports = max(1, round(args.length_ps / args.report_ps))
    print(f"grid {cv.minValue:.3f} to {cv.maxValue:.3f}, Gaussian width {width:.4f}")
    print("time ps   cv1      phi deg")
    phi_positive, start = 0, time.perf_counter()
    for report in range(1, reports + 1):
        metadynamics.step(simulation, report_steps)
        positions = simulation.context.getState(getPositions=True).getPositions(asNumpy=True)
        _, phi = mdtraj.compute_phi(mdtraj.Trajectory(positions.value_in_unit(unit.nanometer)[None], topology))
        phi_positive += int(phi[0, 0] > 0)
        value = metadynamics.getCollectiveVariables(simulation)[0]
        print(f"{report * args.report_ps:7.1f}  {value:+.4f}  {np.degrees(phi[0, 0]):+7.1f}")
    seconds = time.perf_counter() - start
    print(f"{reports * report_steps / seconds:.0f} MD steps per second; phi > 0 in {phi_positive} of {reports} reports")
    free_energy = metadynamics.getFreeEnergy().value_in_unit(unit.kilojoule_per_mole)
    print(f"bias deposited: free-energy estimate spans {free_energy.max() - free_energy.min():.2f} kJ/mol")


if __name__ == "__main__":
    main()
