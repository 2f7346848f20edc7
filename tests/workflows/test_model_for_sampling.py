"""What a model lacks for sampling: from its metadata and from what `neuralct simulate` recorded beside its data."""

import copy
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from neuralct.model.transformation import load
from neuralct.sampling.targets import toy_target
from neuralct.workflows.model_for_sampling import advice_lines, check_model_for_sampling, recorded_constraints

MOLECULE = SimpleNamespace(kind="molecule", description={"atoms": 22, "placed_hydrogens": 0})


def _model(history=None, trajectories=()):
    """A model's metadata as `neuralct train` writes it for molecules (what the check reads of a model)."""
    metadata = {"molecule": {"kind": "molecule", "training_trajectories": list(trajectories)}}
    if history is not None:
        metadata["history"] = history
    return SimpleNamespace(metadata=metadata)


@pytest.mark.parametrize(
    "valid_loss, status, detail",
    [
        (
            [3.0, 2.0, 1.0],
            "lacks",
            "its validation loss was still falling when training stopped (kept step 300 of 300)",
        ),
        ([3.0, 1.0, 2.0], "has", "validation loss lowest at step 200 of 300"),
        ([3.0, math.nan, 2.5], "lacks", "still falling when training stopped (kept step 300 of 300)"),
        ([5.0], "lacks", "its validation loss was recorded at the last step only (kept step 100 of 100)"),
        ([math.nan, math.nan], "not known", "the model records no validation loss"),
    ],
)
def test_training_length_is_lacking_where_the_lowest_validation_loss_is_the_last(valid_loss, status, detail):
    steps = [100 * (k + 1) for k in range(len(valid_loss))]
    history = {"step": steps, "train_loss": [0.0] * len(steps), "valid_loss": valid_loss}
    record = check_model_for_sampling(_model(history), MOLECULE)
    finding = record["checked"]["training_length"]
    assert finding["status"] == status and detail in finding["detail"]
    assert ("training_length" in record["lacks"]) == (status == "lacks")
    lines = [line for line in advice_lines(record) if "validation loss" in line]
    assert lines == (
        [f"model: {finding['detail']}: train longer, `neuralct train --steps`"] if status == "lacks" else []
    )


def test_a_model_without_history_or_trajectories_is_not_known_and_prints_nothing():
    record = check_model_for_sampling(_model(), MOLECULE)
    assert record["checked"]["training_length"]["status"] == "not known"
    assert record["checked"]["unconstrained_data"] == {
        "status": "not known",
        "detail": "the model does not record its training trajectories",
    }
    assert record["lacks"] == [] and advice_lines(record) == []


def test_constraints_are_read_from_the_simulate_run_beside_the_trajectory(alanine_model, tmp_path):
    """The session's alanine model was trained on `neuralct simulate`'s default data: HBonds constraints."""
    _, paths = alanine_model
    constraints, source = recorded_constraints(paths[0])
    assert constraints == "hbonds" and source.endswith("summary.json")
    record = check_model_for_sampling(_model(trajectories=paths), MOLECULE)
    finding = record["checked"]["unconstrained_data"]
    assert finding["status"] == "lacks" and "(hbonds: 2 of 2 training and validation trajectories)" in finding["detail"]
    assert "--constraints none --timestep-fs 1" in finding["advice"] and record["lacks"] == ["unconstrained_data"]


def test_constraints_not_recorded_beside_the_trajectory_are_not_known(alanine_model, tmp_path):
    """Files of another engine, a trajectory beside another run's summary, a system read from an OpenMM System XML
    (no constraints in its settings), a moved file: not known, and nothing printed; a known constrained one counts."""
    _, paths = alanine_model
    recorded = json.loads((Path(paths[0]).parent / "summary.json").read_text())
    cases = {"alone": None, "another run": "replica-005.nc", "xml input": "replica-000.nc"}
    unknown = []
    for case, listed in cases.items():
        folder = tmp_path / case.replace(" ", "-")
        folder.mkdir()
        shutil.copy(paths[0], folder / "replica-000.nc")
        if listed is not None:
            summary = copy.deepcopy(recorded)
            summary["replicas"][0]["trajectory"] = listed
            if case == "xml input":
                summary["system_settings"] = {"nonbonded": "as serialized"}
            (folder / "summary.json").write_text(json.dumps(summary))
        constraints, reason = recorded_constraints(folder / "replica-000.nc")
        assert constraints is None and str(folder) in reason, case
        unknown.append(str(folder / "replica-000.nc"))
    assert recorded_constraints(tmp_path / "moved.nc") == (None, f"{tmp_path / 'moved.nc'} is not there any more")
    record = check_model_for_sampling(_model(trajectories=unknown), MOLECULE)
    finding = record["checked"]["unconstrained_data"]
    assert (
        finding["status"] == "not known"
        and "3 of 3 training and validation trajectories not recorded" in finding["detail"]
    )
    assert record["lacks"] == [] and advice_lines(record) == []
    mixed = check_model_for_sampling(_model(trajectories=[paths[0], *unknown]), MOLECULE)
    assert (
        mixed["lacks"] == ["unconstrained_data"]
        and "(hbonds: 1 of 4" in mixed["checked"]["unconstrained_data"]["detail"]
    )


def test_a_toy_model_has_no_atoms_nor_constraints_to_check(tmp_path):
    from neuralct.cli import main

    out = tmp_path / "toy"
    options = ["--toy", "curved-double-well", "--steps", "2", "--samples", "200", "--hidden", "8", "--couplings", "1"]
    assert main(["train", *options, "--batch-size", "32", "--no-progress", "--output", str(out)]) == 0
    model = load(out / "model.pt")
    record = check_model_for_sampling(model, toy_target(model))
    statuses = {name: finding["status"] for name, finding in record["checked"].items()}
    # A toy model keeps no training history.
    assert statuses == {
        "unconstrained_data": "not applicable",
        "training_length": "not known",
    }
    assert advice_lines(record) == []


def test_the_model_keeps_its_training_constraints_when_the_files_move(alanine_model, tmp_path):
    """`neuralct train` stores each training trajectory's constraints in the model; the check reads them first."""
    import neuralct

    model_path, _ = alanine_model
    model = neuralct.load(model_path)
    stored = model.metadata["molecule"]["training_constraints"]
    assert stored == {
        str(Path(path).resolve()): "hbonds" for path in model.metadata["molecule"]["training_trajectories"]
    }
    moved = [str(tmp_path / "gone" / Path(path).name) for path in stored]
    without = check_model_for_sampling(_model(trajectories=moved), MOLECULE)["checked"]["unconstrained_data"]
    assert without["status"] == "not known"
    kept = _model(trajectories=moved)
    kept.metadata["molecule"]["training_constraints"] = {path: "hbonds" for path in moved}
    finding = check_model_for_sampling(kept, MOLECULE)["checked"]["unconstrained_data"]
    assert finding["status"] == "lacks" and "(hbonds: 1 of 1 training and validation trajectories)" in finding["detail"]


def test_train_records_the_populations_of_its_frames_and_none_for_biased_ones(alanine_model, tmp_path):
    """What `neuralct sample` compares its chains with: every frame of the model's trajectories, read anew here."""
    import mdtraj
    import numpy as np

    import neuralct
    from neuralct.sampling.diagnostics import trajectory_basin_fractions
    from neuralct.sampling.targets import basin_indicators
    from neuralct.workflows.train import training_basins

    model_path, paths = alanine_model
    recorded = neuralct.load(model_path).metadata["molecule"]["training_basins"]["basins"]
    frames = [mdtraj.load(path, top=str(Path(path).parent / "topology.pdb")) for path in paths]
    indicators = [basin_indicators(frame.topology, frame.xyz.astype(np.float64)) for frame in frames]
    expected = trajectory_basin_fractions(
        {name: np.concatenate([found[name] for found in indicators]) for name in indicators[0]},
        [len(frame) for frame in frames],
    )
    assert recorded.keys() == expected.keys() and "alphaR (A:ALA2)" in recorded
    for name, figures in expected.items():
        assert recorded[name]["fraction"] == pytest.approx(figures["fraction"], abs=1e-12), name
        assert recorded[name]["stays"] == figures["stays"], name
    # Frames of a bias run (a COLVAR beside them), weighted or rescaled frames: not the density the chains sample.
    shutil.copytree(Path(paths[0]).parent, tmp_path / "bias")
    (tmp_path / "bias" / "COLVAR").write_text("#! FIELDS time cv1 bias\n")
    data = SimpleNamespace(paths=[str(tmp_path / "bias" / Path(paths[0]).name)], biased=[])
    assert training_basins(SimpleNamespace(data=data, weights=None, rescaled_time=None)) is None
    data = SimpleNamespace(paths=paths, biased=[])
    assert training_basins(SimpleNamespace(data=data, weights=np.ones(3), rescaled_time=None)) is None
    assert training_basins(SimpleNamespace(data=data, weights=None, rescaled_time=object())) is None
    marked = SimpleNamespace(paths=paths, biased=paths[:1])  # a bias run's trajectory away from its COLVAR
    assert training_basins(SimpleNamespace(data=marked, weights=None, rescaled_time=None)) is None


def test_a_validation_trajectory_with_constrained_bonds_is_data_the_model_was_fitted_to():
    model = _model(trajectories=["a.nc"])
    model.metadata["molecule"] |= {
        "validation_trajectories": ["b.nc"],
        "training_constraints": {"a.nc": "none", "b.nc": "hbonds"},
    }
    finding = check_model_for_sampling(model, MOLECULE)["checked"]["unconstrained_data"]
    assert finding["status"] == "lacks" and "(hbonds: 1 of 2 training and validation trajectories)" in finding["detail"]
