"""The PythonForce of a learned CV reads the model's atoms where the system holds them (a solvated system prepared
elsewhere may list its water first and the solute last), and only where their masses are the model's."""

import mdtraj
import numpy as np
import openmm as mm
import pytest
from openmm.app import PDBFile

import neuralct
from neuralct.export import openmm_force
from neuralct.md.systems import WaterBox, build_system
from neuralct.model.molecular import project_positions


def test_a_python_force_finds_the_solute_after_the_water(alanine_model, tmp_path):
    model_path, paths = alanine_model
    model = neuralct.load(model_path)
    frames = mdtraj.load(paths[0], top=str(paths[0]).replace("replica-000.nc", "topology.pdb"))
    expected = project_positions(model, frames.xyz[:5].astype(np.float64), 2)
    water = build_system("alanine-dipeptide", solvent="tip3p", water=WaterBox(padding_nm=0.6, cutoff_nm=0.7))
    full = mdtraj.Topology.from_openmm(water.topology)
    solute, rest = np.arange(22), np.arange(22, full.n_atoms)
    placed = water.positions.copy()
    placed[:22] = frames.xyz[4]
    # The water first and the peptide last, as a PDB written elsewhere may have it (no forces: only the CV counts).
    order = np.concatenate([rest, solute])
    pdb = tmp_path / "water-first.pdb"
    mdtraj.Trajectory(placed[order][None], full.subset(rest).join(full.subset(solute))).save_pdb(str(pdb))
    topology = PDBFile(str(pdb)).topology
    system = mm.System()
    for atom in order:
        system.addParticle(water.system.getParticleMass(int(atom)))
    cv_force = mm.CustomCVForce("0")
    for j in range(2):
        cv_force.addCollectiveVariable(f"cv{j}", openmm_force(model, system, j, topology=topology))
    system.addForce(cv_force)
    context = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
    context.setPositions(placed[order])
    assert np.abs(np.array(cv_force.getCollectiveVariableValues(context)) - expected[4]).max() < 1e-5
    # The model's 22 atoms at the front of this system are water: without its topology the system is refused.
    with pytest.raises(neuralct.errors.NeuralCTError):
        openmm_force(model, system, 0)


def test_a_system_whose_heavy_atoms_gave_mass_to_their_hydrogens_is_refused(alanine_model):
    """Hydrogen mass repartitioning moves about 2 amu from a carbon to its hydrogens: the model's CVs were learned
    on other dynamics (and the rigid-body frame weighs atoms by the model's masses)."""
    model = neuralct.load(alanine_model[0])
    md_system = build_system("alanine-dipeptide")
    carbon = next(atom.index for atom in md_system.topology.atoms() if atom.element.symbol == "C")
    mass = md_system.system.getParticleMass(carbon)
    md_system.system.setParticleMass(carbon, mass - 2.0 * mass.unit)
    said = rf"masses of the model's atoms differ from the model's \(atom {carbon}: 10.01 amu in the system, 12.01 in"
    with pytest.raises(neuralct.errors.NeuralCTError, match=said):
        openmm_force(model, md_system.system, 0)
