"""How steep a learned CV gets: its largest gradient with respect to one atom, recorded in training, read by bias."""

from types import SimpleNamespace

import mdtraj
import numpy as np
import torch

from neuralct.export.cv import STEEPNESS_CVS, collective_variables, cv_steepness
from neuralct.model.transformation import load
from neuralct.workflows.bias import MAX_SEPARATE_CVS, STEEP_CV_SPANS_PER_NM, default_bias_every, steep_cvs
from neuralct.workflows.explore import ExploreSettings, round_line


def _model_frames(model_path, trajectory):
    """The model and its atoms' positions (frames, atoms, 3) in nm from a trajectory of its system."""
    model = load(model_path)
    frames = mdtraj.load(trajectory, top=str(model_path.parent.parent / "md" / "topology.pdb"))
    return model, frames.xyz[:, model.metadata["molecule"]["atom_indices"]].astype(np.float64)


def test_steepness_is_the_largest_finite_difference_gradient_of_one_atom_per_span(alanine_model):
    model_path, paths = alanine_model
    model, x = _model_frames(model_path, paths[0])
    x = x[:6]
    spans = np.array([0.5, 2.0])
    cvs = collective_variables(model, 2, select=False)
    h = 1e-6
    largest = np.zeros(2)
    for frame in x:
        gradient = np.zeros((2, len(frame), 3))
        for atom in range(len(frame)):
            for axis in range(3):
                up, down = frame.copy(), frame.copy()
                up[atom, axis] += h
                down[atom, axis] -= h
                with torch.no_grad():
                    change = cvs(torch.as_tensor(up)) - cvs(torch.as_tensor(down))
                gradient[:, atom, axis] = change.numpy() / (2 * h)
        largest = np.maximum(largest, np.linalg.norm(gradient, axis=-1).max(axis=1))
    assert np.allclose(cv_steepness(model, x, spans), largest / spans, rtol=1e-6)


def test_training_records_the_steepness_of_the_slowest_cvs_on_its_training_frames(alanine_model):
    model_path, paths = alanine_model
    model, x = _model_frames(model_path, paths[0])  # the first replica trains, the last validates
    assert STEEPNESS_CVS == MAX_SEPARATE_CVS
    recorded = model.metadata["cv_steepness"]
    spans = [cv["p99"] - cv["p01"] for cv in model.metadata["cv_ranges"][:STEEPNESS_CVS]]
    assert len(recorded) == STEEPNESS_CVS
    # The record comes from the aligned frames: rigid motions change no gradient's length.
    assert np.allclose(cv_steepness(model, x, np.array(spans)), recorded, rtol=1e-4)


def test_a_steep_cv_is_biased_every_step_by_default():
    vacuum, box = SimpleNamespace(periodic=False), SimpleNamespace(periodic=True)
    smooth = SimpleNamespace(metadata={"cv_steepness": [12.0, STEEP_CV_SPANS_PER_NM * 3]})
    older = SimpleNamespace(metadata={})
    assert default_bias_every(vacuum) == default_bias_every(vacuum, smooth) == default_bias_every(vacuum, older) == 4
    assert default_bias_every(box, smooth) == 1
    # Only the CVs biased count: the second is steep.
    assert steep_cvs(smooth, 1) == [] and steep_cvs(smooth, 2) == ["cv2 (600 ranges per nm)"]
    assert default_bias_every(vacuum, smooth, 2) == 1
    steep = SimpleNamespace(metadata={"cv_steepness": [STEEP_CV_SPANS_PER_NM]})
    assert ExploreSettings().bias(2, vacuum, None, steep).bias_every == 1
    assert ExploreSettings().bias(2, vacuum, None, smooth).bias_every == 4
    assert ExploreSettings(bias_every=2).bias(2, vacuum, None, steep).bias_every == 2
    entry = {"round": 3, "kind": "metadynamics", "ns_simulated": 2.0, "phi_torsions": {}, "objective": None}
    assert "every step" not in round_line(entry | {"steep_cvs": []})
    assert "; biased every step: cv1 (200 ranges per nm) steep on its training frames" in round_line(
        entry | {"steep_cvs": steep_cvs(steep, 1)}
    )


def test_bias_says_it_evaluates_a_steep_cv_every_step_and_does(alanine_model, tmp_path, capsys):
    import json

    from neuralct.cli import main

    model_path, _ = alanine_model
    model = load(model_path)
    model.metadata["cv_steepness"] = [STEEP_CV_SPANS_PER_NM * 2, 1.0]
    model.save(tmp_path / "steep.pt")
    run = ["bias", str(tmp_path / "steep.pt"), "--length-ns", "0.002", "--report-ps", "0.4", "--pace-ps", "0.4"]
    assert main([*run, "--no-progress", "--output", str(tmp_path / "auto")]) == 0
    out = capsys.readouterr().out
    assert "cv1 (400 ranges per nm) steep on its training frames: the bias is evaluated every step" in out
    summary = json.loads((tmp_path / "auto" / "summary.json").read_text())
    assert summary["settings"]["bias_every"] == 1
    # A value given is kept, without the line.
    assert main([*run, "--bias-every", "4", "--no-progress", "--output", str(tmp_path / "given")]) == 0
    assert "steep" not in capsys.readouterr().out
    assert json.loads((tmp_path / "given" / "summary.json").read_text())["settings"]["bias_every"] == 4
