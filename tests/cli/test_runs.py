"""Run folders (identity, lock, stale temporaries, --overwrite), umask-respecting atomic writes, checked option
types."""

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

from neuralct.cli.options import (
    OneLineArgumentParser,
    apply_config,
    fraction,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    result_settings,
)
from neuralct.cli.runs import IDENTITY_FILE, LOCK_FILE, OUTPUT_LOG, RunFolder, fingerprint
from neuralct.errors import NeuralCTError
from neuralct.io import ArrayCheckpoint, atomic_path, atomic_write_text, is_atomic_temporary


def snapshot(folder):
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()
    }


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "input.dat"
    path.write_bytes(b"frames" * 1000)
    return path


def test_fingerprint_is_name_size_and_sha256(data):
    assert fingerprint(data) == {
        "name": "input.dat",
        "size": 6000,
        "sha256": hashlib.sha256(b"frames" * 1000).hexdigest(),
    }
    with pytest.raises(NeuralCTError, match="does not exist"):
        fingerprint(data.parent / "missing.dat")


def test_same_identity_resumes_and_the_identity_is_recorded(tmp_path, data):
    out = tmp_path / "out"
    with RunFolder(out, "train", {"seed": 1, "stride": 2}, inputs=[data]) as run:
        assert run.path == out and not run.resuming
        (out / "model.pt").write_bytes(b"weights")
    recorded = json.loads((out / IDENTITY_FILE).read_text())
    assert recorded == {
        "command": "train",
        "settings": {"seed": 1, "stride": 2},
        "inputs": [fingerprint(data)],
        "outputs": {"model.pt": hashlib.sha256(b"weights").hexdigest()},
    }
    with RunFolder(out, "train", {"stride": 2, "seed": 1}, inputs=[data]) as run:
        assert run.resuming


@pytest.mark.parametrize(
    "command, settings, new_content, message",
    [
        ("train", {"seed": 2, "stride": 2}, None, "other seed;"),
        ("train", {"seed": 1, "stride": 3, "dtype": "float64"}, None, "other dtype, stride;"),
        ("train", {"seed": 1, "stride": 2}, b"other frames", "content of input file(s) input.dat"),
        ("simulate", {"seed": 1, "stride": 2}, None, "holds output of `neuralct train`, not of simulate"),
    ],
)
def test_another_identity_is_refused_in_one_line_and_changes_nothing(
    tmp_path, data, command, settings, new_content, message
):
    out = tmp_path / "out"
    with RunFolder(out, "train", {"seed": 1, "stride": 2}, inputs=[data]):
        (out / "model.pt").write_bytes(b"weights")
    before = snapshot(out)
    if new_content is not None:
        data.write_bytes(new_content)
    with pytest.raises(NeuralCTError) as error:
        with RunFolder(out, command, settings, inputs=[data]):
            pytest.fail("entered a folder of another run")
    text = str(error.value)
    assert message in text and "--overwrite" in text and "\n" not in text
    assert snapshot(out) == before


def test_overwrite_clears_a_neuralct_folder_only(tmp_path, data):
    out = tmp_path / "out"
    with RunFolder(out, "train", {"seed": 1}, inputs=[data]):
        (out / "sub").mkdir()
        (out / "sub" / "old.txt").write_text("old")
        (out / "model.pt").write_bytes(b"weights")
    with RunFolder(out, "train", {"seed": 2}, inputs=[data], overwrite=True) as run:
        assert not run.resuming
        assert {p.name for p in out.iterdir()} == {IDENTITY_FILE, LOCK_FILE, OUTPUT_LOG}
    assert json.loads((out / IDENTITY_FILE).read_text())["settings"] == {"seed": 2}

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(NeuralCTError, match="no neuralct run recorded"):
            with RunFolder(foreign, "train", {}, overwrite=overwrite):
                pass
    assert (foreign / "thesis.tex").read_text() == "keep me"


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_refused_until_the_first_dies(tmp_path, data):
    out = tmp_path / "out"
    with RunFolder(out, "simulate", {"seed": 1}):
        pass
    before = snapshot(out)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out / LOCK_FILE)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(NeuralCTError, match="in use by another neuralct run") as error:
            with RunFolder(out, "simulate", {"seed": 2}):
                pass
        assert "\n" not in str(error.value)
        assert snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()
    # The kernel releases the lock of a killed process.
    with RunFolder(out, "simulate", {"seed": 1}) as run:
        assert run.resuming


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    with RunFolder(out, "simulate", {}):
        (out / "replica-000.nc").write_bytes(b"frames")
        (out / ".hidden-user-file").write_text("keep")
    stale = [out / ".replica-000.nc.k3j_x9ab.tmp", out / ".summary.json.abcdefgh.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    with RunFolder(out, "simulate", {}):
        assert not any(path.exists() for path in stale)
        assert (out / "replica-000.nc").exists() and (out / ".hidden-user-file").exists()


def test_temporary_names_match_the_atomic_write_pattern(tmp_path):
    with atomic_path(tmp_path / "model.pt") as tmp:
        assert is_atomic_temporary(tmp.name)
        tmp.write_bytes(b"x")
    assert not is_atomic_temporary("model.pt") and not is_atomic_temporary(".model.pt.tmp")


def test_a_failed_run_leaves_no_folder_it_created(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(NeuralCTError):
        with RunFolder(out, "train", {}):
            raise NeuralCTError("trajectory too short")
    assert not out.exists()
    with RunFolder(out, "train", {}):
        (out / "checkpoint.pt").write_bytes(b"progress")
    with pytest.raises(NeuralCTError):
        with RunFolder(out, "train", {}):
            raise NeuralCTError("diverged")
    assert (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_writes_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "summary.json", "{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize(
    "kind, good, bad",
    [
        (positive_int, {"1": 1, "250": 250}, ["0", "-1", "1.5", "nan", "inf", "abc", ""]),
        (nonnegative_int, {"0": 0, "7": 7}, ["-1", "nan", "2.0", "abc"]),
        (positive_float, {"0.5": 0.5, "1e-3": 1e-3, "300": 300.0}, ["0", "-1", "nan", "inf", "-inf", "1e400", "abc"]),
        (nonnegative_float, {"0": 0.0, "2.5": 2.5}, ["-1", "-0.1", "nan", "inf", "abc"]),
        (fraction, {"0": 0.0, "0.1": 0.1, "0.5": 0.5}, ["1", "-1", "-0.1", "1.5", "nan", "inf", "abc"]),
    ],
)
def test_option_types_accept_good_values_and_refuse_bad_ones(kind, good, bad):
    for text, value in good.items():
        assert kind(text) == value and type(kind(text)) is type(value)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError, match="must be"):
            kind(text)


def _parser():
    parser = OneLineArgumentParser(prog="tool")
    sub = parser.add_subparsers(dest="command").add_parser("go")
    sub.add_argument("--steps", type=positive_int, default=5)
    sub.add_argument("--rate", type=positive_float, default=1.0)
    sub.add_argument("--mode", choices=("a", "b"), default="a")
    sub.add_argument("--quiet", action="store_true")
    sub.add_argument("--names", nargs="+", default=["x"])
    sub.add_argument("--config")
    return parser


@pytest.mark.parametrize(
    "text, message",
    [
        ("steps: 0", "steps: must be a positive integer, got '0'"),
        ("steps: 2.5", "steps: must be a positive integer"),
        ("steps: [1, 2]", "steps: must be a single number"),
        ("steps: true", "steps: must be a single number"),
        ("rate: .nan", "rate: must be a finite number > 0"),
        ("rate: fast", "rate: must be a finite number > 0, got 'fast'"),
        ("mode: c", "mode: must be one of a, b"),
        ("quiet: 1", "quiet: must be true or false"),
    ],
)
def test_config_values_go_through_the_option_types(tmp_path, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text + "\n")
    parser = _parser()
    argv = ["go", "--config", str(config)]
    with pytest.raises(NeuralCTError, match="config file") as error:
        apply_config(parser, parser.parse_args(argv), argv)
    assert message in str(error.value)


def test_config_values_are_converted_and_the_command_line_wins(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("steps: 12\nrate: 1e-3\nmode: b\nquiet: true\nnames: [p, q]\n")
    parser = _parser()
    argv = ["go", "--config", str(config), "--steps", "3"]
    args = apply_config(parser, parser.parse_args(argv), argv)
    assert (args.steps, args.rate, args.mode, args.quiet, args.names) == (3, 1e-3, "b", True, ["p", "q"])


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["go", "--steps", "-1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --steps: must be a positive integer, got '-1'" in err


# -- what --overwrite may delete, and a finished run's outputs ---------------------------------


def test_overwrite_never_deletes_what_a_user_put_in_a_neuralct_folder(tmp_path, data):
    out = tmp_path / "out"
    with RunFolder(out, "export", {"cvs": 2}, inputs=[data]):
        atomic_write_text(out / "plumed.dat", "cv")
        (out / "sub").mkdir()
        atomic_write_text(out / "sub" / "cv1.pt", "cv1")
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    (out / "mine" / "figure.png").write_bytes(b"png")
    (out / "sub" / "extra.txt").write_text("mine too")
    before = snapshot(out)
    with pytest.raises(NeuralCTError) as error:
        with RunFolder(out, "export", {"cvs": 1}, inputs=[data], overwrite=True):
            pytest.fail("cleared a folder holding a user's files")
    text = str(error.value)
    assert "neuralct did not write (mine/figure.png, notes.txt, sub/extra.txt)" in text and "\n" not in text
    assert snapshot(out) == before
    for path in (out / "notes.txt", out / "mine" / "figure.png", out / "sub" / "extra.txt"):
        path.unlink()
    (out / "mine").rmdir()
    with RunFolder(out, "export", {"cvs": 1}, inputs=[data], overwrite=True) as run:
        assert not run.resuming and not (out / "sub").exists() and not (out / "plumed.dat").exists()


def test_the_output_log_lists_a_file_before_it_appears(tmp_path):
    out = tmp_path / "out"
    with RunFolder(out, "train", {}):
        with atomic_path(out / "model.pt") as tmp:
            tmp.write_bytes(b"weights")
            assert "model.pt" not in (out / OUTPUT_LOG).read_text().splitlines()
        # Listed now, before the run ends: a run killed here still owns its model.pt.
        assert "model.pt" in (out / OUTPUT_LOG).read_text().splitlines()


def test_files_written_plainly_during_a_run_are_its_outputs_and_older_ones_are_not(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with RunFolder(out, "sample", {}):
        (out / "samples.npz").write_bytes(b"samples")
    (out / "later.txt").write_text("a user's")
    os.utime(out / "later.txt", (1, 1))  # written long before any rerun
    with RunFolder(out, "sample", {}):
        pass
    recorded = json.loads((out / IDENTITY_FILE).read_text())["outputs"]
    assert set(recorded) == {"samples.npz"}
    with pytest.raises(NeuralCTError, match=r"did not write \(later.txt\)"):
        with RunFolder(out, "sample", {"seed": 1}, overwrite=True):
            pass


def test_a_killed_runs_staging_folder_is_removed(tmp_path):
    out = tmp_path / "out"
    with RunFolder(out, "export", {}):
        pass
    staging = out / ".export.ab12_xyz.tmp"
    staging.mkdir()
    (staging / "cv1.pt").write_bytes(b"half an export")
    user = out / ".export.mine"
    user.mkdir()
    with RunFolder(out, "export", {}):
        assert not staging.exists() and user.exists()


def test_a_finished_runs_changed_outputs_are_rebuilt_or_refused(tmp_path, data):
    out = tmp_path / "out"
    settings = {"seed": 1}
    with RunFolder(out, "bias", settings, inputs=[data]):
        for name in ("COLVAR", "fes.png", "summary.json", "checkpoint.npz"):
            atomic_write_text(out / name, name)
    with RunFolder(out, "bias", settings, inputs=[data], rebuilt=("*.png", "summary.json")) as run:
        assert run.resuming and run.finished and run.changed_outputs == []
    (out / "fes.png").unlink()
    atomic_write_text(out / "summary.json", "edited")
    with RunFolder(out, "bias", settings, inputs=[data], rebuilt=("*.png", "summary.json")) as run:
        assert run.changed_outputs == ["fes.png", "summary.json"]
        atomic_write_text(out / "fes.png", "fes.png")
        atomic_write_text(out / "summary.json", "summary.json")
    with RunFolder(out, "bias", settings, inputs=[data], rebuilt=("*.png", "summary.json")) as run:
        assert run.changed_outputs == []
    (out / "COLVAR").write_text("edited")
    before = snapshot(out)
    with pytest.raises(NeuralCTError) as error:
        with RunFolder(out, "bias", settings, inputs=[data], rebuilt=("*.png", "summary.json")):
            pytest.fail("resumed a finished run whose COLVAR changed")
    text = str(error.value)
    assert (
        "COLVAR of the finished `neuralct bias` run is missing or changed" in text
        and "--overwrite" in text
        and "\n" not in text
    )
    assert snapshot(out) == before
    with RunFolder(out, "bias", settings, inputs=[data], overwrite=True) as run:
        assert not run.resuming and not (out / "COLVAR").exists()


def test_an_unfinished_run_is_not_checked_and_a_failed_rerun_keeps_the_record(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with RunFolder(out, "train", {}):
            atomic_write_text(out / "checkpoint.pt", "step 10")
            raise RuntimeError("killed")
    (out / "checkpoint.pt").write_text("step 20")
    with RunFolder(out, "train", {}) as run:
        assert run.resuming and not run.finished


def test_a_folder_without_its_output_log_gives_up_only_the_outputs_its_run_recorded(tmp_path, data):
    """A finished run's recorded outputs are its own; a user's file beside them, or an unfinished run's files, are
    never deleted by --overwrite."""
    out = tmp_path / "out"
    with RunFolder(out, "train", {}, inputs=[data]):
        atomic_write_text(out / "model.pt", "weights")
    (out / OUTPUT_LOG).unlink()  # e.g. a copy that left out dot files
    (out / "notes.txt").write_text("mine")
    with pytest.raises(NeuralCTError, match=r"did not write \(notes.txt\)"):
        with RunFolder(out, "train", {"seed": 3}, inputs=[data], overwrite=True):
            pytest.fail("cleared a user's file")
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.pt").exists()
    (out / "notes.txt").unlink()
    with RunFolder(out, "train", {"seed": 3}, inputs=[data], overwrite=True):
        assert not (out / "model.pt").exists()

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / IDENTITY_FILE).write_text(json.dumps({"command": "train", "settings": {}, "inputs": []}))
    (unfinished / "model.pt").write_bytes(b"weights")
    with pytest.raises(NeuralCTError, match=r"did not write \(model.pt\)"):
        with RunFolder(unfinished, "train", {"seed": 3}, overwrite=True):
            pytest.fail("cleared files that no record names")


def test_overwrite_never_deletes_the_runs_own_inputs(tmp_path, data):
    out = tmp_path / "out"
    with RunFolder(out, "train", {}, inputs=[data]):
        atomic_write_text(out / "model.pt", "weights")
    before = snapshot(out)
    with pytest.raises(NeuralCTError, match=r"would delete input file .*model.pt, which lies in the output folder"):
        with RunFolder(out, "analyze", {}, inputs=[out / "model.pt"], overwrite=True):
            pytest.fail("cleared its own input")
    assert snapshot(out) == before


def test_summaries_are_standard_json(tmp_path):
    import numpy as np

    from neuralct.io import write_json

    write_json(
        tmp_path / "s.json",
        {"a": float("nan"), "b": [1.0, float("inf")], "c": np.float32(2.5), "d": np.array([np.nan, 1.0])},
    )

    def refuse(constant):
        raise ValueError(f"not standard JSON: {constant}")

    assert json.loads((tmp_path / "s.json").read_text(), parse_constant=refuse) == {
        "a": None,
        "b": [1.0, None],
        "c": 2.5,
        "d": [None, 1.0],
    }


def test_an_array_checkpoint_reads_back_what_it_saved(tmp_path):
    import numpy as np

    state = bytes(range(256)) + b"\x00"
    rows = np.arange(12.0).reshape(3, 4)
    ArrayCheckpoint({"step": 7, "platform": "Reference", "state": state, "rows": rows}, {"seed": 1, "b": [2]}).save(
        tmp_path / "c.npz"
    )
    entries = {"step": int, "platform": str, "state": bytes, "rows": np.asarray}
    checkpoint = ArrayCheckpoint.load(tmp_path / "c.npz", entries, "start again")
    assert checkpoint["step"] == 7 and checkpoint["platform"] == "Reference" and checkpoint["state"] == state
    assert np.array_equal(checkpoint["rows"], rows) and checkpoint.settings == {"seed": 1, "b": [2]}
    assert list(tmp_path.iterdir()) == [tmp_path / "c.npz"]  # written through a temporary, nothing left beside it


@pytest.mark.parametrize("content", ["damaged", "missing entry"])
def test_an_unreadable_array_checkpoint_is_one_line_with_the_advice(tmp_path, content):
    path = tmp_path / "c.npz"
    ArrayCheckpoint({"step": 7}, {}).save(path)
    if content == "damaged":
        path.write_bytes(path.read_bytes()[:-16])
    entries = {"step": int, "state": bytes} if content == "missing entry" else {"step": int}
    message = rf"^checkpoint {re.escape(str(path))} cannot be read \(\w+\); delete it to start again$"
    with pytest.raises(NeuralCTError, match=message):
        ArrayCheckpoint.load(path, entries, "delete it to start again")


def test_an_identity_recorded_by_an_earlier_version_is_read_as_it_ran(tmp_path):
    """Earlier versions recorded input files by their path and no `equilibration_ps` for bias (they ran none): such a
    run resumes with the same files by name and `--equilibration-ps 0`, and is refused, naming it, with 10."""
    system = tmp_path / "inputs" / "system.pdb"
    system.parent.mkdir()
    system.write_text("ATOM\n")
    out = tmp_path / "out"
    out.mkdir()
    recorded = {"system": ["inputs/system.pdb"], "forcefield": "amber14/tip3p.xml", "seed": 0}
    identity = {"command": "bias", "settings": recorded, "inputs": [fingerprint(system)]}
    (out / IDENTITY_FILE).write_text(json.dumps(identity))
    (out / OUTPUT_LOG).write_text(IDENTITY_FILE + "\n")
    same = {"system": ["system.pdb"], "forcefield": "amber14/tip3p.xml", "seed": 0, "equilibration_ps": 0.0}
    with pytest.raises(
        NeuralCTError, match=r"with other equilibration_ps \(a run of an earlier version, which ran 0\); rerun"
    ):
        with RunFolder(out, "bias", same | {"equilibration_ps": 10.0}, inputs=[system]):
            pass
    with RunFolder(out, "bias", same, inputs=[system]) as folder:
        assert folder.resuming
    with pytest.raises(NeuralCTError, match="with other equilibration_ps; rerun"):  # recorded now
        with RunFolder(out, "bias", same | {"equilibration_ps": 10.0}, inputs=[system]):
            pass
    with pytest.raises(NeuralCTError, match="with other system; rerun"):
        with RunFolder(out, "bias", same | {"system": ["other.pdb"]}, inputs=[system]):
            pass
    # A text with a folder part that names no input file is compared whole: OpenMM's tip3p.xml is another force field.
    with pytest.raises(NeuralCTError, match="with other forcefield; rerun"):
        with RunFolder(out, "bias", same | {"forcefield": "tip3p.xml"}, inputs=[system]):
            pass


def test_a_setting_that_names_a_file_or_folder_enters_by_name_and_any_text_stays_as_it_is(tmp_path):
    (tmp_path / "system.pdb").write_text("")
    selection = " or ".join(f"(resname ALA and name CA and resid {i})" for i in range(20))  # no path can be this long
    args = argparse.Namespace(system=[str(tmp_path / "system.pdb")], frozen_bias=str(tmp_path), selection=selection)
    settings = result_settings(args)
    assert settings == {"system": ["system.pdb"], "frozen_bias": tmp_path.name, "selection": selection}


_RECORDED = {"seed": 1, "stride": 2, "widths": [0.1, 0.2], "forcefield": ["amber14-all.xml", "amber14/opc.xml"]}


@pytest.mark.parametrize(
    "settings, message",
    [
        ({key: value for key, value in _RECORDED.items() if key != "stride"}, "other stride;"),
        (_RECORDED | {"widths": [0.1, 0.2, 0.3]}, "other widths;"),
        (_RECORDED | {"widths": [0.1]}, "other widths;"),
        (_RECORDED | {"forcefield": ["amber14-all.xml", "other/opc.xml"]}, "other forcefield;"),
    ],
    ids=["a setting left out", "a longer list", "a shorter list", "a path in another folder"],
)
def test_a_rerun_that_leaves_out_a_setting_or_changes_a_list_is_refused(tmp_path, data, settings, message):
    """Every recorded setting is compared, a list item by item and in full; a path only by its name where the
    rerun gives the name alone."""
    out = tmp_path / "out"
    with RunFolder(out, "bias", _RECORDED, inputs=[data]):
        pass
    with pytest.raises(NeuralCTError, match=re.escape(message)):
        with RunFolder(out, "bias", settings, inputs=[data]):
            pytest.fail("entered a folder of another run")


def test_a_rerun_with_an_input_file_of_the_same_name_and_size_but_other_content_is_refused(tmp_path, data):
    out = tmp_path / "out"
    with RunFolder(out, "train", {"seed": 1}, inputs=[data]):
        pass
    data.write_bytes(b"FRAMES" * 1000)
    with pytest.raises(NeuralCTError, match="content of input file\\(s\\) input.dat"):
        with RunFolder(out, "train", {"seed": 1}, inputs=[data]):
            pytest.fail("entered a folder of another run")


def test_a_setting_an_earlier_version_did_not_record_is_presumed_only_for_the_command_that_lacked_it(tmp_path):
    """bias once ran without `equilibration_ps` (none: 0); a simulate record without it is not a run of 0 ps."""
    identity = {"command": "simulate", "settings": {"seed": 0}, "inputs": []}
    (tmp_path / IDENTITY_FILE).write_text(json.dumps(identity))
    (tmp_path / OUTPUT_LOG).write_text(IDENTITY_FILE + "\n")
    with pytest.raises(NeuralCTError, match="with other equilibration_ps; rerun"):
        with RunFolder(tmp_path, "simulate", {"seed": 0, "equilibration_ps": 0.0}):
            pytest.fail("entered a folder of another run")
