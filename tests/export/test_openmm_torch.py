"""The exported ``cvN.pt`` run by openmm-torch's ``TorchForce`` gives the CVs of `neuralct analyze` in any box.

Runs where openmm-torch is installed (README: its registry wheel is built against one torch
release, so it lives in a virtualenv of its own); skipped otherwise.
"""

import pytest

openmmtorch = pytest.importorskip("openmmtorch")

import numpy as np  # noqa: E402
import openmm as mm  # noqa: E402

from neuralct.cli import main  # noqa: E402
from neuralct.export import openmm_force  # noqa: E402
from neuralct.md.systems import build_system  # noqa: E402
from neuralct.model.molecular import molecule_description, project_positions  # noqa: E402

from tests.export import test_export  # noqa: E402
from tests.export.test_export import K, _context, _periodic_alanine  # noqa: E402
from tests.export.test_plumed_driver import BOXES, _copies  # noqa: E402

#: The exported alanine dipeptide model and frames, exported once more for this module.
exported = test_export.exported

FRAMES = 4
#: Below half the narrowest box's width, so that OpenMM accepts every box for the same system.
CUTOFF_NM = 0.3


@pytest.fixture(scope="module")
def periodic_folder(alanine_model, tmp_path_factory):
    """``neuralct export --periodic``: the CV files of a model whose data lay in a periodic box."""
    folder = tmp_path_factory.mktemp("export") / "periodic"
    assert main(["export", str(alanine_model[0]), "--cvs", str(K), "--periodic", "--output", str(folder)]) == 0
    return folder


def _torch_forces_context(box, folder, periodic=True):
    """A Reference Context of alanine dipeptide in ``box`` with ``cvN.pt`` of ``folder`` as TorchForce in group N."""
    md_system = _periodic_alanine(box, cutoff_nm=CUTOFF_NM)
    for j in range(K):
        force = openmmtorch.TorchForce(str(folder / f"cv{j + 1}.pt"))
        force.setUsesPeriodicBoundaryConditions(periodic)
        force.setForceGroup(j + 1)
        md_system.system.addForce(force)
    return _context(md_system)[0]


def _cvs_and_forces(context, positions, groups):
    """The energy (the CV) and the forces (n_particles, 3) kJ/mol/nm of each force group in ``groups``."""
    context.setPositions(positions)
    states = [context.getState(getEnergy=True, getForces=True, groups={group}) for group in groups]
    return (
        np.array([state.getPotentialEnergy()._value for state in states]),
        np.stack([state.getForces(asNumpy=True)._value for state in states]),
    )


@pytest.mark.parametrize("shape", list(BOXES))
def test_torch_force_gives_the_cvs_of_analyze_and_the_same_forces_on_whole_wrapped_and_translated_frames(
    exported, periodic_folder, shape
):
    _, _, positions, expected = exported
    box = BOXES[shape]
    whole = positions[:FRAMES]
    copies = {"whole": whole, **_copies(whole, box)}
    # The case that matters: every atom wrapped on its own tears the molecule apart.
    torn = copies["wrapped"] - whole
    assert not np.allclose(torn, torn[:, :1], atol=0.1)
    groups = list(range(1, K + 1))
    context = _torch_forces_context(box, periodic_folder)
    whole_forces = [_cvs_and_forces(context, frame, groups)[1] for frame in whole]
    for kind, copy in copies.items():
        for frame in range(FRAMES):
            cvs, forces = _cvs_and_forces(context, copy[frame], groups)
            assert np.abs(cvs - expected[frame]).max() < 1e-6, (kind, frame)
            # Moving atoms by whole box vectors changes neither the CV nor its gradient.
            assert np.abs(forces - whole_forces[frame]).max() < 1e-8 * max(1.0, np.abs(forces).max()), (kind, frame)


@pytest.mark.parametrize("shape", list(BOXES))
def test_torch_force_on_a_torn_molecule_is_minus_the_finite_difference_gradient_of_its_cv(
    exported, periodic_folder, shape
):
    model, _, positions, _ = exported
    box = BOXES[shape]
    frame = _copies(positions[:1], box)["wrapped"][0]
    context = _torch_forces_context(box, periodic_folder)
    _, forces = _cvs_and_forces(context, frame, [1])
    h = 1e-5
    for atom, axis in [(0, 0), (4, 1), (8, 2), (14, 0), (18, 2)]:
        shifted = []
        for sign in (1, -1):
            moved = frame.copy()
            moved[atom, axis] += sign * h
            shifted.append(_cvs_and_forces(context, moved, [1])[0][0])
        gradient = (shifted[0] - shifted[1]) / (2 * h)
        assert abs(forces[0, atom, axis] + gradient) < 1e-6 * max(1.0, abs(gradient)), (atom, axis)
    unread = sorted(set(range(len(frame))) - set(molecule_description(model)["atom_indices"]))
    assert unread and not forces[0, unread].any()


def test_a_periodic_cv_file_in_a_torch_force_left_without_the_box_stops_the_evaluation(periodic_folder):
    """openmm-torch passes no box unless told to: the periodic file then refuses rather than read a torn molecule."""
    with pytest.raises(mm.OpenMMException, match=r"setUsesPeriodicBoundaryConditions\(True\)"):
        _torch_forces_context(BOXES["cube"], periodic_folder, periodic=False).getState(getEnergy=True, groups={1})


def _solute_configurations(water_box, frame):
    """Positions of the water box with its solute as built, and as ``frame`` (the solute whole, nm) in the middle of
    the box and split across the face x = 0 (each atom wrapped into the box on its own): name -> (positions, whole
    solute)."""
    box = np.array([[v.x, v.y, v.z] for v in water_box.system.getDefaultPeriodicBoxVectors()])
    n = len(frame)
    centred = frame - frame.mean(0)
    on_the_face = centred + box[1] / 2 + box[2] / 2
    middle, split = water_box.positions.copy(), water_box.positions.copy()
    middle[:n] = centred + box.sum(0) / 2
    split[:n] = on_the_face - np.floor(on_the_face @ np.linalg.inv(box)) @ box
    return {
        "as built": (water_box.positions, water_box.positions[:n]),
        "middle": (middle, frame),
        "split across x = 0": (split, frame),
    }


@pytest.mark.skipif(not hasattr(mm, "PythonForce"), reason="an OpenMM before 8.5: no PythonForce")
def test_torch_force_and_python_force_give_the_same_cvs_and_forces_in_a_water_box(exported):
    model, _, positions, _ = exported
    water_box = build_system("alanine-dipeptide", solvent="tip3p")
    system, topology = water_box.system, water_box.topology
    assert system.usesPeriodicBoundaryConditions() and system.getNumParticles() > 1000
    for index in range(system.getNumForces()):
        system.getForce(index).setForceGroup(0)
    groups = {"python": [1, 2], "torch": [3, 4]}
    for kind, group_of_cv in groups.items():
        for j, group in enumerate(group_of_cv):
            force = openmm_force(model, system, j, topology=topology, torch_force=kind == "torch")
            assert force.usesPeriodicBoundaryConditions()
            force.setForceGroup(group)
            system.addForce(force)
    context, _ = _context(water_box)
    configurations = _solute_configurations(water_box, positions[4])
    n_solute = molecule_description(model)["n_atoms"]
    split = configurations["split across x = 0"][0][:n_solute]
    assert np.ptp(split[:, 0]) > 1.0  # the solute's atoms lie on both sides of the box
    for name, (configuration, solute) in configurations.items():
        python_cvs, python_forces = _cvs_and_forces(context, configuration, groups["python"])
        torch_cvs, torch_forces = _cvs_and_forces(context, configuration, groups["torch"])
        assert np.abs(python_cvs - project_positions(model, solute[None], K)[0]).max() < 1e-6, name
        assert np.abs(torch_cvs - python_cvs).max() < 1e-8, name
        assert np.abs(torch_forces - python_forces).max() < 1e-7 * max(1.0, np.abs(python_forces).max()), name
        assert python_forces[:, :n_solute].any() and not python_forces[:, n_solute:].any(), name
        assert not torch_forces[:, n_solute:].any(), name
