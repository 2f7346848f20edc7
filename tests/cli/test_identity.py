"""Every option that changes a result enters its command's run identity; config files follow the command line's rule.

A rerun with another value of such an option must be refused, never resumed into the folder of
the first run. The identity is read where the command hands it to its run folder, so an option
left out of it by mistake (as ``--bias-every`` once could be) fails here, for every command.
"""

import argparse
import shutil
from pathlib import Path

import mdtraj
import numpy as np
import pytest
import yaml

import neuralct.cli.options
import neuralct.cli.runs
from neuralct.cli import build_parser, main
from neuralct.cli.options import NUMERIC_TYPES, apply_config
from neuralct.data.netcdf import read_netcdf
from neuralct.errors import NeuralCTError

#: Options that do not change what a command computes, with why; every other option must change its identity.
NOT_IN_IDENTITY = {
    "*": {
        "config": "its values are the other options",
        "device": "the same result on any device, to rounding",
        "output": "where the run writes",
        "overwrite": "what happens to an earlier run",
        "no_progress": "what is shown",
    },
    "simulate": {
        "platform": "the same dynamics on any platform, to rounding",
        "threads": "the same dynamics, to rounding",
        "jobs": "a replica's random streams depend on the seed and its index only",
        "checkpoint_seconds": "a resumed run is bit-identical",
        "include_dir": "where a GROMACS top file's includes are read: the System they build enters by its content",
    },
    "train": {"checkpoint_every": "a resumed run is bit-identical"},
    "bias": {
        "platform": "the same dynamics on any platform, to rounding",
        "threads": "the same dynamics, to rounding",
        "cv_force": "the same CV and forces from NumPy or TorchScript, to rounding",
        "checkpoint_seconds": "a resumed run is bit-identical",
        "include_dir": "where a GROMACS top file's includes are read: the System they build enters by its content",
    },
    "sample": {"checkpoint_every": "a resumed run is bit-identical"},
    "explore": {
        "platform": "the same dynamics on any platform, to rounding",
        "threads": "the same dynamics, to rounding",
        "include_dir": "where a GROMACS top file's includes are read: the System they build enters by its content",
    },
}

#: Options naming input files: they enter the identity by their content (name, size, SHA-256).
FILE_OPTIONS = {"model", "trajectories", "top", "weights", "bias_colvar", "data"}
#: The same for one command only (elsewhere the name is a positional naming a system).
COMMAND_FILE_OPTIONS = {("export", "system")}

#: Values that a command accepts in place of the default (where doubling it is not valid).
OTHER_VALUES = {
    ("simulate", "forcefield"): ["amber14-all.xml"],
    ("simulate", "system"): ["double-well"],
    ("simulate", "report_ps"): ["2"],
    ("simulate", "timestep_fs"): ["1"],
    ("simulate", "padding_nm"): ["1.2"],
    ("simulate", "cutoff_nm"): ["0.9"],
    ("simulate", "ionic_strength_molar"): ["0.1"],
    ("simulate", "save"): ["not element H"],
    ("simulate", "replica_index"): ["0"],
    ("train", "temperature"): None,  # resolved from the files first: test_train_temperature_enters_resolved
    ("train", "selection"): ["all"],
    ("train", "layers"): ["point"],
    ("train", "vamp_lags_ps"): ["1"],
    ("train", "param"): ["n=6"],
    ("train", "toy"): ["harmonic-chain", "-p", "n=4"],
    ("train", "validation_trajectories"): ["2"],
    ("train", "frame_ps"): ["0.5"],
    # The shared trajectories have constraints, which --for-sampling refuses: tests/cli/test_train.py checks it.
    ("train", "for_sampling"): None,
    ("analyze", "residues"): ["2"],
    ("analyze", "test_trajectories"): ["1"],
    ("analyze", "lag_ps"): ["1"],
    ("analyze", "frame_ps"): ["0.5"],
    ("export", "plumed_format"): ["%.8g"],
    ("bias", "cv"): ["phi,psi"],
    ("bias", "cvs"): ["2"],
    ("bias", "bias_every"): ["2"],
    ("bias", "timestep_fs"): ["1"],
    ("bias", "report_ps"): ["2"],
    ("bias", "pace_ps"): ["2"],
    ("bias", "system"): ["{system}"],
    ("bias", "width_fraction"): ["0.1"],
    ("bias", "frozen_bias"): ["{frozen_bias}"],
    ("bias", "continue_bias"): ["{frozen_bias}"],
    ("bias", "forcefield"): ["amber14-all.xml"],
    ("bias", "padding_nm"): ["1.3"],
    ("bias", "cutoff_nm"): ["0.9"],
    ("bias", "ionic_strength_molar"): ["0.1"],
    ("sample", "target_acceptance"): ["0.8"],
    ("sample", "method"): ["hmc"],
    ("sample", "leapfrog_steps"): ["3"],
    ("sample", "system"): None,  # a toy has none; see test_a_system_file_is_identified_by_its_content
    ("explore", "system"): ["double-well"],
    ("explore", "unbiased_temperature"): ["400"],
    ("explore", "forcefield"): ["amber14-all.xml"],
    ("explore", "padding_nm"): ["1.3"],
    ("explore", "cutoff_nm"): ["0.9"],
    ("explore", "ionic_strength_molar"): ["0.1"],
    ("explore", "frame_ps"): ["0.5"],
}

#: Options that enter the identity resolved, under another key (the same atoms by any selection are the same run).
RESOLVED_AS = {("simulate", "save"): "saved_atoms"}

#: What other options an option needs in order to be accepted at all (given in both runs compared).
NEEDS = {
    ("simulate", "padding_nm"): ["--solvent", "tip3p"],
    ("simulate", "cutoff_nm"): ["--solvent", "tip3p"],
    ("simulate", "ionic_strength_molar"): ["--solvent", "tip3p"],
    ("simulate", "pressure_bar"): ["--solvent", "tip3p"],
    ("bias", "padding_nm"): ["--solvent", "tip3p"],
    ("bias", "cutoff_nm"): ["--solvent", "tip3p"],
    ("bias", "ionic_strength_molar"): ["--solvent", "tip3p"],
    ("bias", "pressure_bar"): ["--solvent", "tip3p"],
    ("explore", "padding_nm"): ["--solvent", "tip3p"],
    ("explore", "cutoff_nm"): ["--solvent", "tip3p"],
    ("explore", "ionic_strength_molar"): ["--solvent", "tip3p"],
    ("explore", "pressure_bar"): ["--solvent", "tip3p"],
    ("explore", "top"): ["--data", "{third}"],
    ("explore", "frame_ps"): ["--data", "{third}"],
    ("train", "rank_lag_ps"): [],
    ("train", "vamp_weight"): ["--lag-ps", "1"],
    ("train", "vamp_lags_ps"): ["--lag-ps", "1", "--vamp-weight", "1"],
    ("train", "vamp_modes"): ["--lag-ps", "1", "--vamp-weight", "1"],
    ("train", "validation_trajectories"): ["{third}"],
}

#: Options of `train` that only apply to a toy.
TOY_OPTIONS = {"toy", "param", "mode", "samples", "validation_fraction"}


class _Identity(Exception):
    """Raised by the stand-in run folder with the identity a command handed it."""


class _CapturingRunFolder(neuralct.cli.runs.RunFolder):
    def __enter__(self):
        raise _Identity(self.command, self.settings, [Path(path).name for path in self.inputs])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A molecular model with its trajectories and system file, and a toy model."""
    root = tmp_path_factory.mktemp("identity")
    assert (
        main(
            [
                "simulate",
                "alanine-dipeptide",
                "--length-ns",
                "0.02",
                "--report-ps",
                "0.5",
                "--replicas",
                "3",
                "--equilibration-ps",
                "0.1",
                "--platform",
                "Reference",
                "--no-progress",
                "--output",
                str(root / "md"),
            ]
        )
        == 0
    )
    paths = sorted(str(p) for p in (root / "md").glob("replica-*.nc"))
    small = ["--steps", "4", "--batch-size", "16", "--couplings", "1", "--hidden", "8", "--no-progress"]
    assert main(["train", *paths[:2], *small, "--output", str(root / "model")]) == 0
    assert (
        main(
            ["train", "--toy", "harmonic-chain", "-p", "n=4", "--samples", "500", *small, "--output", str(root / "toy")]
        )
        == 0
    )
    system = root / "alanine.pdb"
    shutil.copy(root / "md" / "topology.pdb", system)
    bias_run = ["--length-ns", "0.004", "--report-ps", "0.1", "--bias-every", "5", "--no-progress"]
    assert main(["bias", str(root / "model" / "model.pt"), *bias_run, "--output", str(root / "bias")]) == 0
    frames = sum(len(read_netcdf(path).time_ps) for path in paths[:2])
    weights = root / "weights.txt"
    weights.write_text("\n".join(["1"] * frames))
    colvar = root / "COLVAR"
    times = np.concatenate([read_netcdf(path).time_ps for path in paths[:2]])  # the frames' own
    colvar.write_text("#! FIELDS time bias rbias\n" + "".join(f"{t:.6f} 0.5 0.2\n" for t in times))
    # The water-box options of `bias` need a model whose frames' solvent is not known (the model's are in vacuum).
    any_solvent = neuralct.load(root / "model" / "model.pt")
    any_solvent.metadata["molecule"]["training_solvent"] = None
    any_solvent.save(root / "model-any-solvent.pt")
    return {
        "model": str(root / "model" / "model.pt"),
        "model_any_solvent": str(root / "model-any-solvent.pt"),
        "toy": str(root / "toy" / "model.pt"),
        "paths": paths,
        "system": str(system),
        "weights": str(weights),
        "bias_colvar": str(colvar),
        "top": str(root / "md" / "topology.pdb"),
        "frozen_bias": str(root / "bias"),
    }


def _base(command, dest, inputs):
    """A command line of ``command`` that reaches its run folder, for the option ``dest``."""
    if command == "simulate":
        return ["simulate", inputs["system"], "--platform", "Reference"]
    if command == "train":
        if dest in TOY_OPTIONS:
            return (
                ["train", "--toy", "curved-double-well"]
                if dest == "toy"
                else ["train", "--toy", "harmonic-chain", "-p", "n=4"]
            )
        return ["train", *inputs["paths"][:2]]
    if command == "analyze":
        return ["analyze", inputs["model"], *inputs["paths"]]
    if command == "bias" and "--solvent" in NEEDS.get((command, dest), []):
        return [command, inputs["model_any_solvent"]]
    if command in ("export", "bias"):
        return [command, inputs["model"]]
    if command == "sample":
        return ["sample", inputs["toy"]]
    if command == "explore":
        return ["explore", "alanine-dipeptide"]
    return [command]


def _identity(argv, monkeypatch, tmp_path):
    monkeypatch.setattr(neuralct.cli.runs, "RunFolder", _CapturingRunFolder)
    with pytest.raises(_Identity) as captured:
        main([*argv, "--output", str(tmp_path / "out")])
    return captured.value.args


def _other_value(command, action, inputs):
    """A valid value of ``action`` other than its default, as command-line words."""
    if OTHER_VALUES.get((command, action.dest), []) is None:
        pytest.skip(f"{command} {action.dest}: checked by a test of its own")
    if (command, action.dest) in OTHER_VALUES:
        return [value.format(**inputs) for value in OTHER_VALUES[(command, action.dest)]]
    if action.nargs == 0:
        return []
    if action.choices:
        return [next(str(choice) for choice in action.choices if choice != action.default)]
    if action.type in NUMERIC_TYPES:
        default = action.default if action.default is not None else 1
        return [str(default + 1 if isinstance(default, int) else default * 1.5 or 0.5)]
    raise AssertionError(f"give `{command} {action.option_strings[0]}` a value in OTHER_VALUES")


def _options():
    parser = build_parser()
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return [
        pytest.param(command, action, id=f"{command}-{action.dest}")
        for command, sub in subparsers.choices.items()
        for action in sub._actions
        if action.dest != "help"
        and action.dest not in NOT_IN_IDENTITY["*"]
        and action.dest not in NOT_IN_IDENTITY.get(command, {})
    ]


@pytest.mark.parametrize("command, action", _options())
def test_every_option_that_changes_a_result_enters_the_run_identity(inputs, monkeypatch, tmp_path, command, action):
    if action.dest == "distributed":  # a process group of one, as torchrun would set it up
        for name, value in {
            "RANK": "0",
            "LOCAL_RANK": "0",
            "WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": "29571",
        }.items():
            monkeypatch.setenv(name, value)
    base = _base(command, action.dest, inputs)
    needs = [word.format(third=inputs["paths"][2]) for word in NEEDS.get((command, action.dest), [])]
    if action.dest in FILE_OPTIONS or (command, action.dest) in COMMAND_FILE_OPTIONS:
        if not action.option_strings:
            return  # positional input files: they are the inputs themselves (checked below)
        value = inputs["paths"][0] if action.dest == "data" else inputs[action.dest]
        _, _, files = _identity([*base, *needs, action.option_strings[0], value], monkeypatch, tmp_path)
        assert Path(value).name in files, f"{command} {action.option_strings[0]} is not identified by content"
        return
    if not action.option_strings:  # a positional that names a system
        other = _other_value(command, action, inputs)
        first = _identity(base, monkeypatch, tmp_path)
        second = _identity(
            [base[0], base[1], *other] if command == "bias" else [base[0], *other], monkeypatch, tmp_path
        )
        assert first != second, f"{command} {action.dest} does not enter the run identity"
        return
    words = [action.option_strings[0], *_other_value(command, action, inputs)]
    _, before, _ = _identity([*base, *needs], monkeypatch, tmp_path)
    _, after, _ = _identity([*base, *needs, *words], monkeypatch, tmp_path)
    key = RESOLVED_AS.get((command, action.dest), action.dest)
    assert key in after and before.get(key) != after[key], (
        f"`{command} {' '.join(words)}` leaves the run identity unchanged: a rerun with it would resume the other run"
    )


def test_train_temperature_enters_resolved(inputs, monkeypatch, tmp_path):
    """The identity holds the temperature trained at: the files' record, the default 300 K, or the value given."""
    recorded = ["train", *inputs["paths"][:2]]
    assert _identity(recorded, monkeypatch, tmp_path)[1]["temperature"] == 300.0
    assert _identity([*recorded, "--temperature", "300"], monkeypatch, tmp_path)[1]["temperature"] == 300.0
    # Files without a record (DCD) train at whatever is given, and each value is a run of its own.
    dcd = tmp_path / "foreign.dcd"
    mdtraj.load(inputs["paths"][0], top=inputs["top"]).save_dcd(str(dcd))
    foreign = ["train", str(dcd), "--top", inputs["top"], "--frame-ps", "0.5"]
    assert _identity(foreign, monkeypatch, tmp_path)[1]["temperature"] == 300.0
    assert _identity([*foreign, "--temperature", "310"], monkeypatch, tmp_path)[1]["temperature"] == 310.0


@pytest.mark.parametrize("command", ["bias", "sample"])
def test_a_system_file_is_identified_by_its_content(inputs, monkeypatch, tmp_path, command):
    _, _, files = _identity([command, inputs["model"], inputs["system"]], monkeypatch, tmp_path)
    assert Path(inputs["system"]).name in files


@pytest.mark.parametrize("command", ["simulate", "bias", "sample"])
def test_a_copy_of_the_system_file_at_another_path_is_the_same_run(inputs, monkeypatch, tmp_path, command):
    """The run lists its input files by content: their folder does not enter, so a moved copy resumes the run."""
    copy = tmp_path / "elsewhere" / Path(inputs["system"]).name
    copy.parent.mkdir()
    shutil.copy(inputs["system"], copy)
    head = {"simulate": ["simulate"], "bias": ["bias", inputs["model"]], "sample": ["sample", inputs["model"]]}
    tail = ["--platform", "Reference"] if command == "simulate" else []
    here = _identity([*head[command], inputs["system"], *tail], monkeypatch, tmp_path)
    there = _identity([*head[command], str(copy), *tail], monkeypatch, tmp_path)
    assert here == there and here[2][-1] == copy.name


def test_a_rerun_with_another_bias_every_is_refused_end_to_end(alanine_model, tmp_path, capsys):
    model, _ = alanine_model
    out = tmp_path / "bias"
    common = [
        "bias",
        str(model),
        "--length-ns",
        "0.002",
        "--report-ps",
        "0.5",
        "--pace-ps",
        "0.5",
        "--no-progress",
        "--output",
        str(out),
    ]
    assert main([*common, "--bias-every", "2"]) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    assert main([*common, "--bias-every", "1"]) == 2
    err = capsys.readouterr().err
    assert "other bias_every;" in err and err.count("\n") == 1
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == before


# -- config files: a value is read as the same text on the command line ------------------------


def _numeric_options():
    parser = build_parser()
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return [
        (command, action)
        for command, sub in subparsers.choices.items()
        for action in sub._actions
        if action.type in NUMERIC_TYPES
    ]


def _parse(argv):
    parser = build_parser()
    try:
        return apply_config(parser, parser.parse_args(argv), argv)
    except SystemExit:
        return "refused"
    except NeuralCTError:
        return "refused"


POSITIONALS = {
    "simulate": ["double-well"],
    "analyze": ["model.pt", "traj.nc"],
    "export": ["model.pt"],
    "bias": ["model.pt"],
    "sample": ["model.pt"],
    "explore": ["alanine-dipeptide"],
}


@pytest.mark.parametrize(
    "command, action", _numeric_options(), ids=lambda x: x if isinstance(x, str) else x.option_strings[0]
)
def test_config_values_follow_the_command_line_rule_whatever_their_yaml_type(tmp_path, capsys, command, action):
    """Integers given as floats or strings, floats as integers or strings: accepted exactly when the same text is
    on the command line."""
    config = tmp_path / "config.yaml"
    positionals = POSITIONALS.get(command, [])
    for value in (3, 3.0, "3", 0.5, "0.5", 2.5e-3, "2.5e-3", "1e-3", 7, "7", 7.0):
        config.write_text(yaml.safe_dump({action.dest: value}))
        from_config = _parse([command, *positionals, "--config", str(config)])
        text = str(yaml.safe_load(config.read_text())[action.dest])
        from_line = _parse([command, *positionals, f"{action.option_strings[0]}={text}"])
        capsys.readouterr()
        if from_line == "refused":
            assert from_config == "refused", (action.dest, value)
        else:
            assert from_config != "refused" and getattr(from_config, action.dest) == getattr(from_line, action.dest), (
                action.dest,
                value,
            )


@pytest.mark.parametrize("command", [*POSITIONALS, "train"])
def test_a_saved_config_names_the_inputs_and_the_command_line_wins(tmp_path, command):
    """`neuralct COMMAND --config RUN/config.yaml` needs no inputs on the command line: the file's are taken."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    positionals = [action for action in sub._actions if not action.option_strings]
    values = {
        action.dest: (["a.nc", "b.nc"] if action.nargs in ("+", "*") else f"{action.dest}.file")
        for action in positionals
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(values))
    argv = [command, "--config", str(config)]
    neuralct.cli.options.config_positionals(parser, argv)
    args = apply_config(parser, parser.parse_args(argv), argv)
    assert {dest: getattr(args, dest) for dest in values} == values
    if positionals and positionals[0].nargs is None:
        # A value given on the command line replaces the file's.
        parser = build_parser()
        argv = [command, "other.file", "--config", str(config)]
        neuralct.cli.options.config_positionals(parser, argv)
        assert getattr(apply_config(parser, parser.parse_args(argv), argv), positionals[0].dest) == "other.file"


def test_a_run_replays_from_its_saved_config_alone(inputs, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    assert (
        main(["analyze", inputs["model"], *inputs["paths"], "--lag-ps", "1", "--no-progress", "--output", str(first)])
        == 0
    )
    assert main(["analyze", "--config", str(first / "config.yaml"), "--output", str(again)]) == 0
    written = sorted(path.name for path in first.glob("*.colvar"))
    assert written and written == sorted(path.name for path in again.glob("*.colvar"))
    assert all((first / name).read_bytes() == (again / name).read_bytes() for name in written)
