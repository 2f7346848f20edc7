"""Which frames fit the baselines and which are scored: never frames that trained the model or chose its kept state."""

from pathlib import Path

import pytest

from neuralct.errors import NeuralCTError
from neuralct.workflows.analyze import default_lag_frames, scoring_split

PATHS = [f"/data/r{i}.nc" for i in range(5)]
LENGTHS = [400, 400, 400, 400, 400]


def metadata(trained, validation=None):
    molecule = {"training_trajectories": [str(Path(PATHS[i]).resolve()) for i in trained]}
    if validation is not None:
        molecule["validation_trajectories"] = [str(Path(PATHS[i]).resolve()) for i in validation]
    return {"molecule": molecule}


def test_training_trajectories_fit_and_unseen_ones_are_scored_one_by_one():
    split = scoring_split(PATHS, LENGTHS, metadata([0, 1], [2]))
    assert split["fit"] == [(0, 0, 400), (1, 0, 400)]
    assert split["scored"] == [(3, 0, 400), (4, 0, 400)]
    assert split["record"]["selected_the_kept_state"] == [PATHS[2]] and "caveat" not in split["record"]


def test_one_unseen_trajectory_is_scored_in_blocks_with_a_caveat():
    split = scoring_split(PATHS[:4], LENGTHS[:4], metadata([0, 1], [2]), blocks=4)
    assert split["scored"] == [(3, 0, 100), (3, 100, 200), (3, 200, 300), (3, 300, 400)]
    assert "correlated" in split["record"]["caveat"]


def test_a_model_that_saw_none_of_them_fits_on_some_and_scores_the_others():
    split = scoring_split(PATHS[3:], LENGTHS[3:], metadata([0, 1], [2]))
    assert split["fit"] == [(0, 0, 400)] and split["scored"] == [
        (1, 0, 100),
        (1, 100, 200),
        (1, 200, 300),
        (1, 300, 400),
    ]
    alone = scoring_split(PATHS[4:], LENGTHS[4:], metadata([0, 1], [2]), blocks=2)
    assert alone["fit"] == [(0, 0, 200)] and alone["scored"] == [(0, 200, 300), (0, 300, 400)]
    with pytest.raises(NeuralCTError, match="--test-trajectories"):
        scoring_split(PATHS[3:], LENGTHS[3:], metadata([0]), test_trajectories=2)


def test_trajectories_the_model_has_seen_are_never_scored():
    split = scoring_split(PATHS[:3], LENGTHS[:3], metadata([0, 1], [2]))
    assert split["scored"] == [] and "trained the model" in split["record"]["no_scores"]
    # An older model file that does not name its validation trajectories says so.
    older = scoring_split(PATHS[:3], LENGTHS[:3], metadata([0, 1]))
    assert older["scored"] == [(2, 0, 100), (2, 100, 200), (2, 200, 300), (2, 300, 400)]
    assert "not recorded" in older["record"]["selected_the_kept_state"]


def test_the_default_lag_follows_the_frames():
    assert default_lag_frames([(0, 0, 1000)]) == 10
    assert default_lag_frames([(0, 0, 1000), (1, 0, 50)]) == 5
    assert default_lag_frames([(0, 0, 5)]) == 1


def test_a_copy_of_a_trajectory_the_model_saw_is_known_by_its_content(tmp_path):
    """A training or validation file under another name (a copy, a moved folder) is not scored as unseen."""
    from neuralct.io import sha256

    files = []
    for i in range(4):
        files.append(tmp_path / "run" / f"r{i}.nc")
        files[-1].parent.mkdir(exist_ok=True)
        files[-1].write_bytes(bytes([i]) * 100)
    molecule = {
        "training_trajectories": [str(files[0].resolve())],
        "validation_trajectories": [str(files[1].resolve())],
        "trajectory_sha256": {str(files[i].resolve()): sha256(files[i]) for i in (0, 1)},
    }
    (tmp_path / "copies").mkdir()
    copies = [tmp_path / "copies" / name for name in ("train.nc", "valid.nc")]
    for source, copy in zip(files, copies):
        copy.write_bytes(source.read_bytes())
    split = scoring_split([*map(str, copies), str(files[2]), str(files[3])], [400] * 4, {"molecule": molecule})
    assert split["record"]["trained_the_model"] == [str(copies[0])]
    assert split["record"]["selected_the_kept_state"] == [str(copies[1])]
    assert split["fit"] == [(0, 0, 400)] and split["scored"] == [(2, 0, 400), (3, 0, 400)]


def test_trajectories_of_one_name_from_two_folders_get_two_colvar_files():
    from neuralct.workflows.analyze import colvar_names

    assert colvar_names(["a/replica-000.nc", "b/replica-000.nc", "b/replica-001.nc"]) == [
        "a-replica-000.colvar",
        "b-replica-000.colvar",
        "replica-001.colvar",
    ]
    assert colvar_names(["x/a/r.nc", "y/a/r.nc"]) == ["a-r-1.colvar", "a-r-2.colvar"]


def test_a_rerun_with_the_same_seed_is_known_by_its_frames_in_any_format(alanine_model, tmp_path):
    """`simulate` again with the default seed gives the training frames again: a shorter run (another file,
    another SHA-256), and its copy as a DCD, are training data, not held-out data."""
    import json

    import mdtraj

    from neuralct.cli import main

    model, _ = alanine_model
    common = ["simulate", "alanine-dipeptide", "--report-ps", "0.5", "--platform", "Reference", "--no-progress"]
    assert main([*common, "--length-ns", "0.01", "--replicas", "2", "--output", str(tmp_path / "again")]) == 0
    assert main([*common, "--length-ns", "0.01", "--seed", "7", "--output", str(tmp_path / "other")]) == 0
    again = sorted(str(p) for p in (tmp_path / "again").glob("replica-*.nc"))
    top = str(tmp_path / "again" / "topology.pdb")
    dcd, xtc = str(tmp_path / "again-000.dcd"), str(tmp_path / "again-001.xtc")
    mdtraj.load(again[0], top=top).save_dcd(dcd)
    mdtraj.load(again[1], top=top).save_xtc(xtc)  # 1e-3 nm precision: its frames are the training frames rounded
    other = str(tmp_path / "other" / "replica-000.nc")
    argv = ["analyze", str(model), *again, dcd, xtc, other, "--top", top, "--frame-ps", "0.5"]
    assert main([*argv, "--output", str(tmp_path / "a")]) == 0
    split = json.loads((tmp_path / "a" / "summary.json").read_text())["split"]
    seen = split["trained_the_model"] + split["selected_the_kept_state"]
    assert sorted(seen) == sorted([*again, dcd, xtc]) and split["never_seen_by_the_model"] == [other]
    assert set(split["holds_frames_of"]) == {*again, dcd, xtc}


def test_a_model_keeps_at_most_64_frames_of_a_trajectory_and_a_mebibyte_of_them_in_all():
    from neuralct.analysis.training_match import MARK_VALUES, marked_frames

    assert len(range(4000)[marked_frames(4000, 24, 3)]) == 64 and len(range(10)[marked_frames(10, 24, 2)]) == 10
    kept = len(range(4000)[marked_frames(4000, 3000, 10)])
    assert kept * 3000 * 10 <= MARK_VALUES and kept >= 4


def test_two_given_trajectories_that_hold_the_same_frames_are_refused():
    """A copy (another format's rounding, 1e-4) or a subsampled one of a trajectory given beside it: one would fit
    TICA and the other be scored on the same frames. Two trajectories of one molecule that share no frame pass."""
    import numpy as np

    rng = np.random.default_rng(0)
    features = [rng.normal(size=(400, 12)) for _ in range(3)]
    copy = features[1][::5] + rng.normal(scale=1e-4, size=(80, 12))
    with pytest.raises(NeuralCTError, match="r1.nc and /data/r3.nc hold the same frames"):
        scoring_split(PATHS[:4], [400, 400, 400, 80], metadata([]), features=[*features, copy])
    # Trajectories that all trained the model leave nothing to compare.
    assert scoring_split(PATHS[:2], LENGTHS[:2], metadata([0, 1]), features=features[:2])["scored"] == []
    # Replicas started from one structure, each writing it as its first frame (as GROMACS does), are no copies.
    for replica in features:
        replica[0] = features[0][0]
    split = scoring_split(PATHS[:3], LENGTHS[:3], metadata([]), features=features)
    assert {segment[0] for segment in split["fit"] + split["scored"]} == {0, 1, 2}


def test_the_next_part_of_a_continued_run_shares_only_its_first_frame_and_is_scored():
    """GROMACS's `mdrun -cpi -noappend` writes the checkpoint's frame again as the next part's first: a part that
    holds a kept frame of the model's training trajectory only there, or only as its own last frame, was not trained
    on; a piece of the training trajectory itself was, and so was a short rerun with its seed (its first frame)."""
    import numpy as np

    from neuralct.analysis.training_match import marked_frames

    rng = np.random.default_rng(1)
    trained = rng.normal(size=(421, 12))  # every 7th frame kept, the last one too
    kept = trained[marked_frames(len(trained), 12, 1)]
    assert np.array_equal(kept[0], trained[0]) and np.array_equal(kept[-1], trained[-1])  # both ends are kept
    meta = metadata([0])
    meta["molecule"]["frame_marks"] = {str(Path(PATHS[0]).resolve()): kept}
    after = np.concatenate([trained[-1:], rng.normal(size=(60, 12))])  # the next part
    before = np.concatenate([rng.normal(size=(60, 12)), trained[:1]])  # the part before, ending where it starts
    piece = trained[100:200]  # frames the model trained on
    rerun = trained[:5]  # a rerun with the training run's seed, stopped after 5 frames: only its first is kept
    split = scoring_split(PATHS[1:5], [61, 61, 100, 5], meta, features=[after, before, piece, rerun])
    assert split["record"]["trained_the_model"] == PATHS[3:5]
    assert split["record"]["never_seen_by_the_model"] == PATHS[1:3]
