"""Exported CVs (TorchScript for openmm-torch and PLUMED, torch.export, PythonForce) equal the model's CVs."""

import json

import mdtraj
import numpy as np
import openmm as mm
import pytest
import torch
from scipy.spatial.transform import Rotation

import neuralct
from neuralct.cli import main
from neuralct.data.frame import kabsch, quaternion_tables
from neuralct.export import collective_variables, openmm_force
from neuralct.export.cv import _Couplings
from neuralct.export.force import _EVALUATORS, _SHARED
from neuralct.export.numpy_cv import NumpyCollectiveVariables, _CouplingStack
from neuralct.flows.coupling import CouplingStack
from neuralct.md.systems import build_system
from neuralct.model.molecular import molecule_description, project_positions

K = 2


@pytest.fixture(scope="module")
def exported(alanine_model, tmp_path_factory):
    model_path, paths = alanine_model
    folder = tmp_path_factory.mktemp("export") / "cvs"
    assert main(["export", str(model_path), "--cvs", str(K), "--output", str(folder)]) == 0
    model = neuralct.load(model_path)
    frames = mdtraj.load(paths[0], top=str(paths[0]).replace("replica-000.nc", "topology.pdb"))
    positions = frames.xyz.astype(np.float64)
    return model, folder, positions, project_positions(model, positions, K)


def moved_copies(positions, seed=0):
    """Randomly rotated and translated copies of frames (n_frames, n_atoms, 3)."""
    rng = np.random.default_rng(seed)
    rotations = Rotation.random(len(positions), random_state=seed).as_matrix()
    return positions @ rotations.transpose(0, 2, 1) + rng.normal(scale=3.0, size=(len(positions), 1, 3))


def svd_kabsch(frames, reference, masses):
    """The optimal rotations of SciPy's weighted SVD (Kabsch) fit, a reference independent of the quaternion method."""
    fits = [Rotation.align_vectors(reference.numpy(), frame.numpy(), weights=masses.numpy())[0] for frame in frames]
    return torch.tensor(np.stack([fit.as_matrix() for fit in fits]))


def test_quaternion_fit_is_the_svd_kabsch_fit():
    rng = np.random.default_rng(1)
    reference = torch.tensor(rng.normal(size=(10, 3)))
    masses = torch.tensor(rng.uniform(1, 16, size=10))
    reference = reference - (masses @ reference) / masses.sum()
    frames = reference @ torch.tensor(Rotation.random(50, random_state=2).as_matrix()).transpose(
        1, 2
    ) + 0.1 * torch.randn(50, 10, 3, dtype=torch.float64)
    frames = frames - torch.einsum("i,fia->fa", masses, frames)[:, None] / masses.sum()
    expected = svd_kabsch(frames, reference, masses)
    rotations = kabsch(frames, reference, masses, *quaternion_tables())
    assert torch.allclose(rotations, expected, atol=1e-10)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(50, dtype=torch.float64), atol=1e-12)


def test_torchforce_files_equal_the_model_cv_float32_batched_and_moved(exported):
    model, folder, positions, expected = exported
    for j in range(K):
        module = torch.jit.load(str(folder / f"cv{j + 1}.pt"))
        for frames in (positions, moved_copies(positions)):
            many = module(torch.tensor(frames, dtype=torch.float32))
            assert many.dtype == torch.float32 and many.shape == (len(frames),)
            assert np.abs(many.numpy() - expected[:, j]).max() < 1e-5
            one = module(torch.tensor(frames[3], dtype=torch.float32))
            assert one.shape == () and abs(float(one) - expected[3, j]) < 1e-5
            assert abs(float(module(torch.tensor(frames[3]))) - expected[3, j]) < 1e-5


def test_the_cv_module_leaves_the_model_as_it_was(exported):
    model, _, positions, expected = exported
    before = {name: (p.dtype, p.requires_grad, p.detach().clone()) for name, p in model.named_parameters()}
    module = collective_variables(model, K)
    module(torch.tensor(positions[:2]))
    for name, p in model.named_parameters():
        dtype, requires_grad, values = before[name]
        assert (p.dtype, p.requires_grad) == (dtype, requires_grad), name
        assert torch.equal(p.detach(), values), name
    assert all(not p.requires_grad and p.dtype == torch.float64 for p in module.parameters())
    assert np.abs(module(torch.tensor(positions[:4])).numpy() - expected[:4]).max() < 1e-6


def test_gradient_is_minus_the_finite_difference_force(exported):
    model, folder, positions, _ = exported
    module = torch.jit.load(str(folder / "cv1.pt"))
    x = torch.tensor(positions[5], requires_grad=True)
    (gradient,) = torch.autograd.grad(module(x), x)
    h = 1e-6
    for atom, axis in [(0, 0), (4, 1), (8, 2), (14, 0), (18, 2)]:
        plus, minus = positions[5].copy(), positions[5].copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        fd = (float(module(torch.tensor(plus))) - float(module(torch.tensor(minus)))) / (2 * h)
        assert abs(fd - float(gradient[atom, axis])) < 1e-6 * max(1.0, abs(fd))
    hydrogen = 1  # not in the heavy-atom selection: the CV does not depend on it
    assert float(gradient[hydrogen].abs().max()) == 0.0


def test_plumed_file_follows_the_pytorch_model_loader(exported):
    """As PLUMED's PytorchModel.cpp does: load, eval, freeze, optimize_for_inference, probe with zeros, autograd per
    output."""
    model, folder, positions, expected = exported
    manifest = json.loads((folder / "manifest.json").read_text())
    n_in = len(manifest["features"]["plumed_model.ptc"])
    loaded = torch.jit.load(str(folder / "plumed_model.ptc"))
    loaded.eval()
    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(loaded))
    probe = frozen(torch.zeros(n_in, dtype=torch.float32).view(1, n_in))
    assert probe.dtype == torch.float32 and probe.numel() == K
    selected = positions[:, manifest["system"]["atom_indices"]].reshape(len(positions), -1)
    for frame in (0, 7):
        features = torch.tensor(selected[frame], dtype=torch.float32).view(1, n_in).requires_grad_(True)
        output = frozen(features)
        assert output.shape == (1, K) and output.dtype == torch.float32
        assert np.abs(output.detach().numpy()[0] - expected[frame]).max() < 1e-5
        for j in range(K):
            (derivative,) = torch.autograd.grad(
                [output[:, j : j + 1]], [features], [torch.ones(1).expand(1, 1)], retain_graph=True
            )
            assert derivative.dtype == torch.float32 and derivative.shape == (1, n_in)
            reference = collective_variables(model, K, select=False)
            x = torch.tensor(selected[frame].reshape(1, -1, 3), requires_grad=True)
            (exact,) = torch.autograd.grad(reference(x)[0, j], x)
            assert np.abs(derivative.numpy().ravel() - exact.numpy().ravel()).max() < 1e-3 * max(
                1.0, float(exact.abs().max())
            )
    text = (folder / "plumed.dat").read_text()
    serials = [i + 1 for i in manifest["system"]["atom_indices"]]
    entity = next(line for line in text.splitlines() if line.startswith("WHOLEMOLECULES")).split("ENTITY0=")[1]
    assert sorted(set(map(int, entity.split(",")))) == sorted(serials)
    assert [line.split("ATOM=")[1] for line in text.splitlines() if ": POSITION" in line] == [str(s) for s in serials]
    arguments = (
        next(line for line in text.splitlines() if line.startswith("cv: PYTORCH_MODEL")).split("ARG=")[1].split(",")
    )
    assert len(arguments) == n_in and arguments[:4] == ["p1.x", "p1.y", "p1.z", "p2.x"]
    assert "PRINT" in text and "cv.node-1" in text


def test_pt2_program_equals_the_cv(exported):
    model, folder, positions, expected = exported
    program = torch.export.load(str(folder / "cvs.pt2")).module()
    for frames in (positions, moved_copies(positions, 3)):
        out = program(torch.tensor(frames, dtype=torch.float32))
        assert out.shape == (len(frames), K) and np.abs(out.numpy() - expected).max() < 1e-5
    assert np.abs(program(torch.tensor(positions[:1], dtype=torch.float32)).numpy() - expected[:1]).max() < 1e-5
    # Weights are stored as buffers: no torch release can hand them back as parameters that make CVs need a gradient.
    assert not list(program.parameters())
    assert not program(torch.tensor(positions[:1], dtype=torch.float32)).requires_grad


def test_manifest_records_units_atoms_hashes_and_training_ranges(exported, alanine_model):
    model, folder, _, expected = exported
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["units"]["positions"] == "nm" and manifest["system"]["n_atoms"] == 22
    from neuralct.io import sha256

    assert manifest["model"]["sha256"] == sha256(alanine_model[0])
    assert all(manifest["sha256"][name] == sha256(folder / name) for name in manifest["sha256"])
    assert manifest["range_source"].startswith("training frames")
    for j, cv in enumerate(manifest["cvs"]):
        assert cv["range"]["min"] < cv["range"]["p01"] < cv["range"]["p99"] < cv["range"]["max"]
    assert manifest["ranked_by"]["key"] == "frequency_rad_per_ps" and manifest["ranked_by"]["order"] == "ascending"
    assert [cv["frequency_rad_per_ps"] for cv in manifest["cvs"]] == model.frequencies[:K].tolist()


def test_summary_lists_the_cvs_their_ranges_the_files_with_hashes_and_timings(exported):
    model, folder, _, _ = exported
    from neuralct.io import sha256

    summary = json.loads((folder / "summary.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert summary["cvs"] == manifest["cvs"] and summary["ranked_by"] == manifest["ranked_by"]
    exported_files = {
        p.name
        for p in folder.iterdir()
        if p.name not in {"summary.json", "config.yaml"} and not p.name.startswith((".", "run."))
    }
    assert set(summary["files"]) == exported_files
    assert all(summary["files"][name] == sha256(folder / name) for name in summary["files"])
    assert (
        0 < summary["load_model_seconds"] < summary["wall_seconds"]
        and 0 < summary["export_seconds"] < summary["wall_seconds"]
    )


def test_a_kinetic_model_from_an_older_file_exports_its_cvs_ranked_by_relaxation_time(tmp_path):
    """The model_v1.pt fixture: trained with --lag-ps, written before model files recorded a digest."""
    from pathlib import Path

    fixtures = Path(__file__).parents[1] / "fixtures"
    expected = np.load(fixtures / "model_v1_expected.npz")
    folder = tmp_path / "kinetic"
    assert main(["export", str(fixtures / "model_v1.pt"), "--cvs", "3", "--output", str(folder)]) == 0
    for name in ("manifest.json", "summary.json"):
        record = json.loads((folder / name).read_text())
        assert record["ranked_by"]["key"] == "relaxation_time_ps" and record["ranked_by"]["order"] == "descending"
        times = [cv["relaxation_time_ps"] for cv in record["cvs"]]
        assert np.allclose(times, expected["relaxation_times_ps"][:3], rtol=1e-6, atol=0) and times == sorted(
            times, reverse=True
        )
        # By frequency the order would differ: the ranking is what the manifest says it is.
        assert [cv["frequency_rad_per_ps"] for cv in record["cvs"]] != sorted(
            cv["frequency_rad_per_ps"] for cv in record["cvs"]
        )
    module = torch.jit.load(str(folder / "cv1.pt"))
    assert np.abs(module(torch.tensor(expected["positions_nm"])).numpy() - expected["cvs"][:, 0]).max() < 1e-5


def test_export_of_a_model_ranked_by_autocorrelation_reports_that_ranking(tmp_path):
    """The model_v2.pt fixture: modes ranked by autocorrelation, written by an older neuralct."""
    from pathlib import Path

    fixtures = Path(__file__).parents[1] / "fixtures"
    expected = np.load(fixtures / "model_v2_expected.npz")
    stored = torch.load(fixtures / "model_v2.pt", weights_only=True)["metadata"]["mode_ranking"]
    folder = tmp_path / "ranked"
    assert main(["export", str(fixtures / "model_v2.pt"), "--cvs", "2", "--output", str(folder)]) == 0
    for name in ("manifest.json", "summary.json"):
        record = json.loads((folder / name).read_text())
        assert record["ranked_by"]["key"] == "autocorrelation" and "1 ps" in record["ranked_by"]["what"]
        assert [cv["autocorrelation"] for cv in record["cvs"]] == stored["autocorrelation"][:2]
    module = torch.jit.load(str(folder / "cv1.pt"))
    assert np.abs(module(torch.tensor(expected["positions_nm"])).numpy() - expected["cvs"][:, 0]).max() < 1e-5


def test_a_killed_export_leaves_a_staging_folder_that_the_next_run_removes(
    alanine_model, tmp_path, monkeypatch, capsys
):
    """SIGKILL skips every clean-up: played here by an interrupt while the staging folder's removal does nothing."""
    import neuralct.export.files as files
    from neuralct.io import is_atomic_temporary

    folder = tmp_path / "cvs"
    argv = ["export", str(alanine_model[0]), "--cvs", "1", "--output", str(folder)]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(files, "_save_exported", killed)
        patch.setattr(files.shutil, "rmtree", lambda *args, **kwargs: None)
        assert main(argv) == 130
    left = [p for p in folder.iterdir() if p.is_dir()]
    assert len(left) == 1 and is_atomic_temporary(left[0].name), left
    capsys.readouterr()
    assert main(argv) == 0
    assert not [p for p in folder.iterdir() if p.is_dir()] and (folder / "manifest.json").exists()


def _context(md_system):
    integrator = mm.LangevinMiddleIntegrator(300, 1, 0.002)
    integrator.setRandomNumberSeed(3)
    context = mm.Context(md_system.system, integrator, mm.Platform.getPlatformByName("Reference"))
    context.setPositions(md_system.positions)
    context.setVelocitiesToTemperature(300, 5)
    return context, integrator


def test_python_force_in_a_running_simulation_equals_the_cv(exported):
    model = exported[0]
    md_system = build_system("alanine-dipeptide")
    forces = [openmm_force(model, md_system.system, j) for j in range(K)]
    cv_force = mm.CustomCVForce("0")
    for j, force in enumerate(forces):
        cv_force.addCollectiveVariable(f"cv{j}", force)
    md_system.system.addForce(cv_force)
    assert mm.XmlSerializer.serialize(md_system.system)  # the computation pickles
    context, integrator = _context(md_system)
    calls = []
    for _ in range(3):
        integrator.step(20)
        values = cv_force.getCollectiveVariableValues(context)
        positions = context.getState(getPositions=True).getPositions(asNumpy=True)._value
        assert np.abs(np.array(values) - project_positions(model, positions[None], K)[0]).max() < 1e-5
        if not calls:
            evaluator = _EVALUATORS[_SHARED[model][1]]
            evaluate = evaluator.fast
            evaluator.fast = lambda *args: calls.append(1) or evaluate(*args)
            context.setPositions(positions + 0.001)
            cv_force.getCollectiveVariableValues(context)
            assert len(calls) == 1  # two CVs, one forward pass


def test_python_force_is_minus_the_gradient_of_its_energy(exported):
    model = exported[0]
    md_system = build_system("alanine-dipeptide")
    for index in range(md_system.system.getNumForces()):
        md_system.system.getForce(index).setForceGroup(0)
    force = openmm_force(model, md_system.system, 0)
    force.setForceGroup(1)
    md_system.system.addForce(force)
    context, _ = _context(md_system)
    x = md_system.positions.copy()
    analytic = context.getState(getForces=True, groups={1}).getForces(asNumpy=True)._value
    h = 1e-5
    for atom, axis in [(0, 0), (6, 1), (14, 2)]:
        energies = []
        for sign in (1, -1):
            moved = x.copy()
            moved[atom, axis] += sign * h
            context.setPositions(moved)
            energies.append(context.getState(getEnergy=True, groups={1}).getPotentialEnergy()._value)
        assert abs(-(energies[0] - energies[1]) / (2 * h) - analytic[atom, axis]) < 1e-5 * max(
            1.0, abs(analytic[atom, axis])
        )


def _perturbed(module, seed):
    """``module`` with noise on every weight, so that no coupling is near the identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module


def test_numpy_coupling_stack_and_its_reverse_pass_equal_torch_for_every_split():
    stack = CouplingStack(7, n_layers=5, hidden=6).double()
    generator = torch.Generator().manual_seed(5)
    stack.loc.copy_(torch.randn(7, generator=generator, dtype=torch.float64))
    stack.scale.copy_(torch.rand(7, generator=generator, dtype=torch.float64) + 0.5)
    module = _perturbed(_Couplings(stack), 6)
    fast = _CouplingStack(module)
    assert fast.swaps == [False, True, False, True, False]  # blocks pass on, and are merged where the split changes
    q = torch.randn(7, generator=generator, dtype=torch.float64)
    value, saved = fast.forward(q.numpy())
    assert np.abs(value - module(q[None])[0].detach().numpy()).max() < 1e-13
    jacobian = torch.autograd.functional.jacobian(lambda x: module(x[None])[0], q).numpy()
    cotangent = np.random.default_rng(7).normal(size=(3, 7))
    assert np.abs(fast.backward(cotangent, saved) - cotangent @ jacobian).max() < 1e-12


def test_numpy_cvs_and_gradients_equal_the_torch_module_and_autograd(exported):
    model, _, positions, _ = exported
    cvs = _perturbed(collective_variables(model, model.dim, select=False), 8)
    fast = NumpyCollectiveVariables(cvs)
    atoms = molecule_description(model)["atom_indices"]
    frames = np.concatenate([positions[:4], moved_copies(positions[:4], 9)])[:, atoms]
    indices = [0, 2, 1]
    for frame in frames:
        values, gradients = fast(frame, indices)
        x = torch.tensor(np.stack([frame] * len(indices)), requires_grad=True)
        expected = cvs(x)[torch.arange(len(indices)), torch.tensor(indices)]
        (gradient,) = torch.autograd.grad(expected.sum(), x)
        assert np.abs(values - expected.detach().numpy()).max() < 1e-12 * max(1.0, np.abs(values).max())
        assert np.abs(gradients - gradient.numpy()).max() < 1e-10 * max(1.0, float(gradient.abs().max()))
    box = np.array([[2.5, 0.0, 0.0], [0.4, 2.6, 0.0], [-0.3, 0.5, 2.4]])
    whole_values, whole_gradients = fast(frames[0], [1])
    split_values, split_gradients = fast(_split(frames[0], box, [0, 3, 5]), [1], box)
    assert np.abs(split_values - whole_values).max() < 1e-12 and np.abs(split_gradients - whole_gradients).max() < 1e-10


def _split(positions, box, atoms):
    """Positions with ``atoms`` moved by whole box vectors, so the molecule straddles the box."""
    moved = positions.copy()
    moved[atoms] += box[0] - box[1] + 2 * box[2]
    return moved


def _periodic_alanine(box, cutoff_nm):
    """Alanine dipeptide in a periodic box (rows: box vectors, nm), its nonbonded forces cut off at ``cutoff_nm``."""
    md_system = build_system("alanine-dipeptide")
    nonbonded = next(f for f in md_system.system.getForces() if isinstance(f, mm.NonbondedForce))
    nonbonded.setNonbondedMethod(mm.NonbondedForce.CutoffPeriodic)
    nonbonded.setCutoffDistance(cutoff_nm)
    md_system.system.setDefaultPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
    return md_system


def test_a_molecule_split_across_a_periodic_box_gives_the_same_cv(exported):
    model, folder, positions, expected = exported
    box = np.array([[2.5, 0.0, 0.0], [0.4, 2.6, 0.0], [-0.3, 0.5, 2.4]])
    split = _split(positions[4], box, [0, 5, 6, 7, 18])
    module = torch.jit.load(str(folder / "cv2.pt"))
    assert (
        abs(
            float(module(torch.tensor(split, dtype=torch.float32), torch.tensor(box, dtype=torch.float32)))
            - expected[4, 1]
        )
        < 1e-5
    )
    assert (
        abs(float(module(torch.tensor(split))) - expected[4, 1]) > 1e-3
    )  # without the box the CV sees a broken molecule

    cv_force, context = _second_cv_in_box(model, box, split)
    assert abs(cv_force.getCollectiveVariableValues(context)[0] - expected[4, 1]) < 1e-5


def _second_cv_in_box(model, box, positions):
    """The model's second CV as a PythonForce in alanine dipeptide in ``box`` (3, 3), nm, at ``positions``: the
    ``CustomCVForce`` holding it and the Reference context."""
    md_system = _periodic_alanine(box, cutoff_nm=1.0)
    cv_force = mm.CustomCVForce("0")
    cv_force.addCollectiveVariable("cv", openmm_force(model, md_system.system, 1))
    md_system.system.addForce(cv_force)
    context, _ = _context(md_system)
    context.setPositions(positions)
    return cv_force, context


def test_python_force_reads_a_new_box_at_the_same_positions(exported):
    """The box alone changes (a state loaded, a box set by hand): the CV is that of the positions in the new box."""
    model, folder, positions, expected = exported
    box = np.array([[2.5, 0.0, 0.0], [0.4, 2.6, 0.0], [-0.3, 0.5, 2.4]])
    split = _split(positions[4], box, [0, 5, 6, 7, 18])
    cv_force, context = _second_cv_in_box(model, box, split)
    assert abs(cv_force.getCollectiveVariableValues(context)[0] - expected[4, 1]) < 1e-5
    larger = 1.3 * box  # still OpenMM's reduced form; its images no longer join the moved atoms to the others
    context.setPeriodicBoxVectors(*[mm.Vec3(*row) for row in larger])
    module = torch.jit.load(str(folder / "cv2.pt"))
    in_larger = float(module(torch.tensor(split), torch.tensor(larger)))
    assert abs(in_larger - expected[4, 1]) > 1e-3
    assert abs(cv_force.getCollectiveVariableValues(context)[0] - in_larger) < 1e-5


def test_a_model_of_the_solute_finds_its_atoms_in_a_water_box(exported):
    """A model trained on the solute's frames acts on the solute of the solvated system, split across the box."""
    from neuralct.md.systems import WaterBox

    model, folder, positions, expected = exported
    water = build_system("alanine-dipeptide", solvent="tip3p", water=WaterBox(padding_nm=0.6, cutoff_nm=0.7))
    with pytest.raises(neuralct.errors.NeuralCTError, match="give its `topology` to find the model's solute"):
        openmm_force(model, water.system, 1)
    cv_force = mm.CustomCVForce("0")
    cv_force.addCollectiveVariable("cv", openmm_force(model, water.system, 1, topology=water.topology))
    water.system.addForce(cv_force)
    context, _ = _context(water)
    box = context.getState().getPeriodicBoxVectors(asNumpy=True)._value
    placed = water.positions.copy()
    # Water molecules ride along: only the solute's atoms (the first 22) matter to the CV.
    placed[:22] = _split(positions[4], box, [0, 5, 6, 7, 18])
    context.setPositions(placed)
    assert abs(cv_force.getCollectiveVariableValues(context)[0] - expected[4, 1]) < 1e-5


def test_an_export_for_a_water_box_whose_solute_is_not_first_reads_the_solute_and_others_are_refused(
    exported, alanine_model, tmp_path, capsys
):
    """Systems prepared elsewhere may list the water first: `--system` finds the solute there; an export
    for the model's own trajectories refuses positions of another system instead of reading water atoms."""
    from neuralct.md.systems import WaterBox

    model, folder, positions, expected = exported
    model_path = str(alanine_model[0])
    water = build_system("alanine-dipeptide", solvent="tip3p", water=WaterBox(padding_nm=0.6, cutoff_nm=0.7))
    full = mdtraj.Topology.from_openmm(water.topology)
    box = np.array([[v.x, v.y, v.z] for v in water.system.getDefaultPeriodicBoxVectors()])
    solute, rest = np.arange(22), np.arange(22, full.n_atoms)
    placed = water.positions.copy()
    placed[:22] = _split(positions[4], box, [0, 5, 6, 7, 18])
    # The same box with its water first and the peptide last.
    frame = np.concatenate([placed[rest], placed[solute]])
    system_file = tmp_path / "water-first.pdb"
    mdtraj.Trajectory(frame[None], full.subset(rest).join(full.subset(solute))).save_pdb(str(system_file))
    out = tmp_path / "for-the-box"
    assert main(["export", model_path, "--system", str(system_file), "--output", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["system"]["n_atoms"] == full.n_atoms and min(manifest["system"]["atom_indices"]) == len(rest)
    value = torch.jit.load(str(out / "cv2.pt"))(torch.tensor(frame), torch.tensor(box))
    assert abs(value.item() - expected[4, 1]) < 1e-5
    # A solvated system runs in a box: without --periodic the CVs need the box, not read the torn solute as it is.
    assert manifest["system"]["periodic_because"] == [f"--system {system_file} holds water or ions"]
    assert "periodic (--system" in capsys.readouterr().out
    with pytest.raises(torch.jit.Error, match=r"setUsesPeriodicBoundaryConditions\(True\)"):
        torch.jit.load(str(out / "cv2.pt"))(torch.tensor(frame))
    plumed = (out / "plumed.dat").read_text()
    assert f"p1: POSITION NOPBC ATOM={manifest['system']['atom_indices'][0] + 1}\n" in plumed
    assert f"those of a system of {full.n_atoms} atoms" in plumed
    # The export for the model's own trajectories (22 atoms) refuses the water box rather than read its water.
    with pytest.raises(Exception, match="this CV reads atoms of a system of 22 atoms, not "):
        torch.jit.load(str(folder / "cv2.pt"))(torch.tensor(frame), torch.tensor(box))
    # A system without the model's solute is one line, and nothing is written.
    capsys.readouterr()
    only_water = tmp_path / "water.pdb"
    mdtraj.Trajectory(placed[rest][None], full.subset(rest)).save_pdb(str(only_water))
    assert main(["export", model_path, "--system", str(only_water), "--output", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("neuralct export: error: --system") and err.count("\n") == 1, err
    assert not (tmp_path / "no").exists()


#: Periodic boxes (rows are the box vectors, nm, OpenMM's reduced form) narrower than the model's molecule.
SMALL_BOXES = {
    "orthorhombic": np.diag([0.72, 0.68, 0.75]),
    "triclinic": np.array([[0.72, 0.0, 0.0], [0.25, 0.68, 0.0], [-0.2, 0.3, 0.75]]),
}


def _wrapped(positions, box):
    """Every atom wrapped into the box's unit cell: a molecule centred on a corner straddles every face."""
    centred = positions - positions.mean(0)
    fractional = centred @ np.linalg.inv(box)
    return centred - np.floor(fractional) @ box


def _whole_about_the_first_atom(positions, box):
    """Each atom at its image nearest to the first atom: right only for molecules shorter than half the box."""
    d = positions - positions[0]
    return positions[0] + d - np.round(d @ np.linalg.inv(box)) @ box


@pytest.mark.parametrize("shape", list(SMALL_BOXES))
def test_a_molecule_longer_than_half_the_box_and_split_across_its_faces_gives_the_same_cv(exported, shape):
    """TorchScript cv*.pt with a box, the NumPy CVs with their gradients, and the PythonForce in a running Context.

    (``cvs.pt2`` and ``plumed_model.ptc`` take whole molecules: PLUMED's WHOLEMOLECULES makes them whole.)
    """
    model, folder, positions, expected = exported
    box = SMALL_BOXES[shape]
    frame = 4
    atoms = molecule_description(model)["atom_indices"]
    split = _wrapped(positions[frame], box)
    # The case this test is for: the molecule is split, and no single atom sees all others at their nearest image.
    assert not np.allclose(
        split[atoms] - split[atoms][0], positions[frame][atoms] - positions[frame][atoms][0], atol=1e-6
    )
    assert not np.allclose(
        _whole_about_the_first_atom(split[atoms], box) - split[atoms][0],
        positions[frame][atoms] - positions[frame][atoms][0],
        atol=1e-3,
    )

    for j in range(K):
        module = torch.jit.load(str(folder / f"cv{j + 1}.pt"))
        for dtype in (torch.float32, torch.float64):
            assert (
                abs(
                    float(module(torch.tensor(split, dtype=dtype), torch.tensor(box, dtype=dtype))) - expected[frame, j]
                )
                < 1e-5
            )

    fast = NumpyCollectiveVariables(collective_variables(model, K, select=False))
    whole_values, whole_gradients = fast(positions[frame][atoms], range(K))
    split_values, split_gradients = fast(split[atoms], range(K), box)
    assert np.abs(split_values - whole_values).max() < 1e-12 and np.abs(split_gradients - whole_gradients).max() < 1e-10

    md_system = _periodic_alanine(box, cutoff_nm=0.3)
    cv_force = mm.CustomCVForce("0")
    for j in range(K):
        cv_force.addCollectiveVariable(f"cv{j}", openmm_force(model, md_system.system, j))
    md_system.system.addForce(cv_force)
    context, _ = _context(md_system)
    context.setPositions(split)
    assert np.abs(np.array(cv_force.getCollectiveVariableValues(context)) - expected[frame]).max() < 1e-5


def test_bad_input_is_one_line_and_leaves_nothing(exported, alanine_model, tmp_path, capsys):
    model_path = str(alanine_model[0])
    toy = tmp_path / "toy"
    assert (
        main(
            [
                "train",
                "--toy",
                "harmonic-chain",
                "-p",
                "n=4",
                "--steps",
                "5",
                "--samples",
                "200",
                "--no-progress",
                "--output",
                str(toy),
            ]
        )
        == 0
    )
    capsys.readouterr()
    cases = [
        (["export", str(toy / "model.pt"), "--output", str(tmp_path / "a")], "not trained on molecular trajectories"),
        (["export", model_path, "--cvs", "100", "--output", str(tmp_path / "b")], "out of range"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    folder = exported[1]
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert main(["export", model_path, "--cvs", "1", "--output", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cvs" in err and len(err.splitlines()) == 1, err
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    mixing = tmp_path / "mixing"
    assert (
        main(
            [
                "train",
                *alanine_model[1],
                "--layers",
                "linear,point",
                "--steps",
                "3",
                "--batch-size",
                "16",
                "--couplings",
                "2",
                "--hidden",
                "8",
                "--no-progress",
                "--output",
                str(mixing),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["export", str(mixing / "model.pt"), "--output", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "mixes positions and momenta" in err and len(err.splitlines()) == 1 and not (tmp_path / "m").exists()
    from neuralct.export.force import _SharedEvaluator

    broken = np.full((10, 3), np.nan)
    with pytest.raises(neuralct.errors.NeuralCTError, match="not finite"):
        _SharedEvaluator(collective_variables(exported[0], 2, select=False)).evaluate(broken, None, 0)
    chain = build_system("harmonic-chain")
    with pytest.raises(neuralct.errors.NeuralCTError, match="particles but the model was trained on a system of 22"):
        openmm_force(exported[0], chain.system, 0)
    with pytest.raises(neuralct.errors.NeuralCTError, match="out of range"):
        openmm_force(exported[0], build_system("alanine-dipeptide").system, 99)


def test_torch_force_of_openmm_torch_gives_the_cv_and_its_forces(exported):
    """End to end with openmm-torch where it is installed (see README for the working combination)."""
    openmmtorch = pytest.importorskip("openmmtorch")
    model, folder, positions, expected = exported
    md_system = build_system("alanine-dipeptide")
    force = openmmtorch.TorchForce(str(folder / "cv1.pt"))
    force.setForceGroup(1)
    md_system.system.addForce(force)
    context, _ = _context(md_system)
    context.setPositions(positions[6])
    state = context.getState(getEnergy=True, getForces=True, groups={1})
    assert abs(state.getPotentialEnergy()._value - expected[6, 0]) < 1e-5
    module = torch.jit.load(str(folder / "cv1.pt"))
    x = torch.tensor(positions[6], requires_grad=True)
    (gradient,) = torch.autograd.grad(module(x), x)
    assert np.abs(state.getForces(asNumpy=True)._value + gradient.numpy()).max() < 1e-4 * max(
        1.0, float(gradient.abs().max())
    )

    box = np.array([[2.5, 0.0, 0.0], [0.4, 2.6, 0.0], [-0.3, 0.5, 2.4]])
    periodic = build_system("alanine-dipeptide")
    nonbonded = next(f for f in periodic.system.getForces() if isinstance(f, mm.NonbondedForce))
    nonbonded.setNonbondedMethod(mm.NonbondedForce.CutoffPeriodic)
    nonbonded.setCutoffDistance(1.0)
    periodic.system.setDefaultPeriodicBoxVectors(*[mm.Vec3(*row) for row in box])
    torch_force = openmm_force(model, periodic.system, 0, torch_force=True)
    assert torch_force.usesPeriodicBoundaryConditions()
    torch_force.setForceGroup(1)
    periodic.system.addForce(torch_force)
    context, _ = _context(periodic)
    context.setPositions(_split(positions[4], box, [0, 5, 6, 7, 18]))
    assert abs(context.getState(getEnergy=True, groups={1}).getPotentialEnergy()._value - expected[4, 0]) < 1e-5


def test_plumed_input_reads_whole_molecules_as_they_stand_and_prints_as_asked(alanine_model, tmp_path):
    """POSITION without NOPBC would take each atom's image nearest the origin, tearing the molecule again."""
    from neuralct.export.files import PLUMED_BUILD

    model_path, paths = alanine_model
    folder = tmp_path / "cvs"
    argv = ["export", str(model_path), "--plumed-stride", "7", "--plumed-format", "%.9g", "--output", str(folder)]
    assert main(argv) == 0
    lines = (folder / "plumed.dat").read_text().splitlines()
    positions = [line for line in lines if ": POSITION " in line]
    assert positions and all("NOPBC" in line.split() for line in positions)
    assert any("./configure --enable-libtorch --enable-modules=pytorch" in line for line in lines if line[0] == "#")
    assert [line for line in lines if line.startswith("PRINT")] == [
        "PRINT STRIDE=7 ARG=cv.node-0,cv.node-1 FILE=COLVAR FMT=%.9g"
    ]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["plumed"] == {"stride": 7, "format": "%.9g", "build": PLUMED_BUILD}

    # WHOLEMOLECULES moves each entry to the image nearest the entry before: consecutive entries must be neighbours.
    entity = [
        int(s) - 1 for s in next(line for line in lines if line.startswith("WHOLEMOLECULES")).split("=")[1].split(",")
    ]
    frames = mdtraj.load(paths[0], top=str(paths[0]).replace("replica-000.nc", "topology.pdb")).xyz
    steps = np.linalg.norm(frames[:, entity[1:]] - frames[:, entity[:-1]], axis=-1)
    assert set(entity) == set(manifest["system"]["atom_indices"]) and steps.max() < 0.2


def test_plumed_print_settings_that_plumed_would_refuse_are_one_line(alanine_model, tmp_path, capsys):
    model_path = str(alanine_model[0])
    for value in ("%d", "cv=%f", "%f %f", "f"):
        folder = tmp_path / "bad"
        assert main(["export", model_path, "--plumed-format", value, "--output", str(folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert "--plumed-format" in err and "printf" in err, err
        assert len(err.splitlines()) == 1 and not folder.exists(), err
    assert main(["export", model_path, "--plumed-stride", "0", "--output", str(tmp_path / "zero")]) == 2
    assert not (tmp_path / "zero").exists()


def test_a_periodic_export_refuses_to_run_without_the_box(exported, alanine_model, tmp_path):
    """openmm-torch's TorchForce passes no box unless told to: a periodic CV must not then read a torn molecule."""
    from neuralct.export import export_cvs

    model, folder, positions, expected = exported
    box = np.array([[2.5, 0.0, 0.0], [0.4, 2.6, 0.0], [-0.3, 0.5, 2.4]])
    split = torch.tensor(_split(positions[4], box, [0, 5, 6, 7, 18]))
    assert json.loads((folder / "manifest.json").read_text())["system"]["periodic_because"] == []
    periodic = tmp_path / "periodic"
    assert main(["export", str(alanine_model[0]), "--periodic", "--output", str(periodic)]) == 0
    recorded = neuralct.load(alanine_model[0])
    recorded.metadata["molecule"]["periodic"] = True
    from_model = tmp_path / "from-model"
    export_cvs(recorded, from_model, K)
    for exported_folder, because in (
        (periodic, "given"),
        (from_model, "the model's training frames had a periodic box"),
    ):
        assert json.loads((exported_folder / "manifest.json").read_text())["system"]["periodic_because"] == [because]
        for j in range(K):
            module = torch.jit.load(str(exported_folder / f"cv{j + 1}.pt"))
            with pytest.raises(torch.jit.Error, match=r"setUsesPeriodicBoundaryConditions\(True\)"):
                module(split)
            assert abs(float(module(split, torch.tensor(box))) - expected[4, j]) < 1e-5
        # The torch.export program takes the box too, and makes the torn molecule whole in it (float32 positions).
        program = torch.export.load(str(exported_folder / "cvs.pt2")).module()
        batch = torch.stack([split, split]).float()
        np.testing.assert_allclose(program(batch, torch.tensor(box).float()).numpy(), expected[[4, 4]], atol=1e-4)


def test_openmm_imported_before_torch_is_named_for_torch_force(monkeypatch):
    """openmm loads its plugins at import; openmm-torch's need LibTorch loaded first (the registry wheels)."""
    from neuralct.export.force import _check_torch_kernels

    cuda_only = "Error loading library /env/lib/plugins/libOpenMMTorchCUDA.so: libcuda.so.1: cannot open shared object"
    monkeypatch.setattr(mm.Platform, "getPluginLoadFailures", staticmethod(lambda: [cuda_only]))
    _check_torch_kernels()
    no_torch = "Error loading library /env/lib/plugins/libOpenMMTorchCPU.so: libtorch_cpu.so: cannot open shared object"
    monkeypatch.setattr(mm.Platform, "getPluginLoadFailures", staticmethod(lambda: [cuda_only, no_torch]))
    with pytest.raises(neuralct.errors.NeuralCTError, match="import torch .or neuralct. before openmm") as error:
        _check_torch_kernels()
    assert "libOpenMMTorchCPU.so" in str(error.value) and len(str(error.value).splitlines()) == 1


def test_analyze_places_a_distant_molecule_of_the_model_as_its_exported_cvs_do(gromacs_run, tmp_path):
    """A model of the alanine's backbone and a water 1.7-1.9 nm away in GROMACS's rhombic dodecahedron: `analyze`
    reads every atom of the system, whose water the loader places nearest the system's first atom; the CVs are those
    of the water placed nearest the model's first atom, as `cv1.pt` (and PLUMED's WHOLEMOLECULES) place it."""
    import MDAnalysis as mda

    from neuralct.data.periodic import box_vectors

    whole, split, run_input = (
        str(gromacs_run / name) for name in ("dodecahedron_whole.xtc", "dodecahedron_split.xtc", "dodecahedron.tpr")
    )
    small = ["--steps", "20", "--couplings", "1", "--hidden", "16", "--no-progress", "--seed", "0"]
    small += ["--selection", "(resname ALA and name N CA C) or index 412"]
    assert main(["train", whole, split, "--top", run_input, *small, "--output", str(tmp_path / "model")]) == 0
    model = str(tmp_path / "model" / "model.pt")
    assert main(["export", model, "--cvs", "1", "--output", str(tmp_path / "cvs")]) == 0
    assert main(["analyze", model, whole, "--top", run_input, "--no-progress", "--output", str(tmp_path / "a")]) == 0
    analyzed = np.loadtxt(tmp_path / "a" / "dodecahedron_whole.colvar")[:, 1]

    cv1 = torch.jit.load(str(tmp_path / "cvs" / "cv1.pt"))
    universe = mda.Universe(run_input, whole)
    exported = []
    for _ in universe.trajectory:
        box = box_vectors(universe.dimensions[:3] / 10.0, universe.dimensions[3:])
        exported.append(float(cv1(torch.tensor(universe.atoms.positions / 10.0).double(), torch.tensor(box))))
    np.testing.assert_allclose(analyzed, exported, atol=1e-5)


def test_the_plumed_walk_steps_along_tree_edges_through_every_atom_and_stops_at_the_last_new_one():
    """WHOLEMOLECULES moves each entry to the image nearest the one before: every step of the walk is an edge of
    the spanning tree, every atom is reached, and no steps back follow the last new atom (2 n - 1 entries at most)."""
    from neuralct.data.periodic import SpanningTree
    from neuralct.export.files import _tree_walk

    rng = np.random.default_rng(4)
    for n in (1, 2, 5, 12, 30):
        labels = rng.permutation(n)
        parents = np.full(n, -1)
        for i in range(1, n):
            parents[labels[i]] = labels[rng.integers(0, i)]  # a random tree rooted at labels[0]
        tree = SpanningTree(parents)
        walk = _tree_walk(tree)
        assert walk[0] == labels[0] and sorted(set(walk)) == list(range(n)) and len(walk) <= 2 * n - 1
        assert all(parents[a] == b or parents[b] == a for a, b in zip(walk[:-1], walk[1:]))
        assert walk.index(walk[-1]) == len(walk) - 1  # the walk ends where an atom is first reached


def test_the_plumed_features_named_in_the_manifest_give_the_cvs_when_read_by_those_names(exported, alanine_model):
    """``features`` names each input of ``plumed_model.ptc`` (``RES:ATOM.axis``): features gathered from a frame
    by those names, looked up in the system's topology, give the model's CVs."""
    model, folder, positions, expected = exported
    paths = alanine_model[1]
    topology = mdtraj.load_topology(str(paths[0]).replace("replica-000.nc", "topology.pdb"))
    manifest = json.loads((folder / "manifest.json").read_text())
    by_name = {f"{atom.residue.name}:{atom.name}": atom.index for atom in topology.atoms}
    assert len(by_name) == topology.n_atoms  # names are unique in alanine dipeptide
    assert [by_name[name] for name in manifest["system"]["atom_names"]] == manifest["system"]["atom_indices"]
    gather = [(by_name[feature[:-2]], "xyz".index(feature[-1])) for feature in manifest["features"]["plumed_model.ptc"]]
    features = torch.tensor([[positions[frame, atom, axis] for atom, axis in gather] for frame in (0, 7)])
    cvs = torch.jit.load(str(folder / "plumed_model.ptc"))(features)
    assert np.abs(cvs.numpy() - expected[[0, 7]]).max() < 1e-6


def test_every_latent_mode_and_no_other_is_a_cv(exported):
    """The CV module takes 1 to ``dim`` CVs and the PythonForce CV indices 0 to ``dim - 1``; one more is refused."""
    model, _, positions, expected = exported
    every = collective_variables(model, model.dim)(torch.tensor(positions[:3])).numpy()
    assert every.shape == (3, model.dim) and np.abs(every[:, :K] - expected[:3]).max() < 1e-6
    with pytest.raises(neuralct.errors.NeuralCTError, match=f"the number of CVs, {model.dim + 1}, is out of range"):
        collective_variables(model, model.dim + 1)
    system = build_system("alanine-dipeptide").system
    assert openmm_force(model, system, model.dim - 1) is not None  # the fastest mode is a CV too
    for k in (model.dim, -1):
        with pytest.raises(neuralct.errors.NeuralCTError, match=f"CV index {k} is out of range"):
            openmm_force(model, system, k)


@pytest.mark.parametrize("name", ["model_v1", "model_v2"])
def test_numpy_cvs_of_a_model_whose_modes_are_not_in_flow_order_are_the_cvs_it_recorded(name):
    """CV j is the latent mode ``mode_order()[j]``, not the flow's mode j: the NumPy CVs of a PythonForce give the
    CVs the fixtures recorded for a kinetic model (ranked by relaxation time) and one ranked by autocorrelation."""
    from pathlib import Path

    fixtures = Path(__file__).parents[1] / "fixtures"
    model = neuralct.load(fixtures / f"{name}.pt")
    assert not torch.equal(model.mode_order()[:3], torch.arange(3))  # the case this test is for
    expected = np.load(fixtures / f"{name}_expected.npz")
    atoms = molecule_description(model)["atom_indices"]
    fast = NumpyCollectiveVariables(collective_variables(model, model.dim, select=False))
    indices = [0, 2, 1]
    for frame, cvs in zip(expected["positions_nm"], expected["cvs"]):
        values, _ = fast(frame[atoms], indices)
        np.testing.assert_allclose(values, cvs[indices], rtol=1e-5, atol=1e-5)


def test_a_cv_that_is_not_finite_at_finite_positions_stops_the_force_naming_the_cv(exported):
    """Positions far outside the training data may give a CV of NaN: the force raises, one line, rather than pass
    a NaN energy on to the integrator."""
    from neuralct.export.force import _SharedEvaluator

    evaluator = _SharedEvaluator(collective_variables(exported[0], K, select=False))
    atoms = len(molecule_description(exported[0])["atom_indices"])
    evaluator.fast = lambda positions, indices, box: (np.full(len(indices), np.nan), np.zeros((len(indices), atoms, 3)))
    with pytest.raises(neuralct.errors.NeuralCTError, match=r"^the learned CV 2 is not finite \(nan\)[^\n]*$"):
        evaluator.evaluate(np.zeros((atoms, 3)), None, 1)


def test_the_manifest_records_the_temperature_of_the_models_training_frames(alanine_model, tmp_path):
    """The CVs' reduced unit is sqrt(kT) ps at the temperature the model was trained at, which the manifest records."""
    from neuralct.export import export_cvs

    model = neuralct.load(alanine_model[0])
    model.metadata["molecule"]["temperature_K"] = 350.0  # a model of frames simulated at 350 K
    manifest = export_cvs(model, tmp_path / "hot", 1)
    assert manifest["temperature_K"] == 350.0
    assert json.loads((tmp_path / "hot" / "manifest.json").read_text())["temperature_K"] == 350.0
