"""``neuralct train`` and ``neuralct analyze`` on the command line, good input and bad."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from neuralct.analysis import read_colvar
from neuralct.cli import main

TOY = [
    "train",
    "--toy",
    "harmonic-chain",
    "-p",
    "n=4",
    "--steps",
    "30",
    "--batch-size",
    "64",
    "--no-progress",
    "--samples",
    "2000",
]


def snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_toy_training_writes_model_summary_and_config(tmp_path):
    assert main(TOY + ["--output", str(tmp_path)]) == 0
    assert {"model.pt", "summary.json", "config.yaml", "checkpoint.pt"} <= {p.name for p in tmp_path.iterdir()}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frequencies"] == sorted(summary["frequencies"]) and len(summary["frequencies"]) == 4
    assert np.isfinite(summary["final_loss"])
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["toy"] == "harmonic-chain" and config["steps"] == 30


def test_variational_mode_reports_the_free_energy(tmp_path):
    assert main(TOY + ["--mode", "variational", "--eval-samples", "2000", "--output", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["free_energy_error"] > 0
    assert abs(summary["free_energy"] - summary["exact_free_energy"]) < 0.1


def test_config_file_values_apply_and_unknown_keys_fail(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("toy: harmonic-chain\nparam: [n=3]\nsteps: 10\nsamples: 500\nno_progress: true\n")
    assert main(["train", "--config", str(config), "--output", str(tmp_path / "a")]) == 0
    assert len(json.loads((tmp_path / "a" / "summary.json").read_text())["frequencies"]) == 3
    config.write_text("toy: harmonic-chain\nstepz: 10\n")
    assert main(["train", "--config", str(config), "--output", str(tmp_path / "b")]) == 2
    assert "unknown key(s) stepz" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--toy", "harmonic-ring"], "unknown toy system"),
        (["--toy", "harmonic-chain", "-p", "springs=2"], "unknown parameter"),
        (["--toy", "harmonic-chain", "-p", "n"], "expected KEY=VALUE"),
        (["--toy", "harmonic-chain", "--layers", "linear,magic"], "unknown layer"),
        (["--toy", "harmonic-chain", "--steps", "0"], "positive integer"),
        ([], "give trajectory files or --toy"),
        (["missing.nc"], "does not exist"),
    ],
)
def test_bad_input_is_a_one_line_error_and_overwrites_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(TOY + ["--output", str(out)]) == 0
    before = snapshot(out)
    assert main(["train", "--no-progress", "--output", str(out)] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert snapshot(out) == before


def test_console_script_exit_status_and_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "neuralct", "train", "--toy", "nope", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "neuralct train: error: unknown toy system 'nope'; available: harmonic-chain, curved-double-well"
    )
    result = subprocess.run(
        [sys.executable, "-m", "neuralct", "train", "--no-such-option"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


@pytest.fixture(scope="module")
def alanine(tmp_path_factory):
    """Three short alanine dipeptide trajectories and a model trained on the first two."""
    folder = tmp_path_factory.mktemp("alanine")
    md = folder / "md"
    assert (
        main(
            [
                "simulate",
                "alanine-dipeptide",
                "--length-ns",
                "0.03",
                "--report-ps",
                "0.5",
                "--replicas",
                "3",
                "--equilibration-ps",
                "1",
                "--platform",
                "Reference",
                "--no-progress",
                "--output",
                str(md),
            ]
        )
        == 0
    )
    paths = sorted(str(p) for p in md.glob("replica-*.nc"))
    model_dir = folder / "model"
    assert (
        main(
            [
                "train",
                *paths[:2],
                "--steps",
                "20",
                "--batch-size",
                "32",
                "--couplings",
                "2",
                "--hidden",
                "16",
                "--validation-trajectories",
                "1",
                "--no-progress",
                "--output",
                str(model_dir),
            ]
        )
        == 0
    )
    return paths, model_dir


def test_training_on_trajectories_summary(alanine):
    paths, model_dir = alanine
    summary = json.loads((model_dir / "summary.json").read_text())
    assert summary["dimension"] == 3 * 10 - 6  # 10 heavy atoms, rigid-body directions removed
    assert summary["frequencies"] == sorted(summary["frequencies"])
    assert len(summary["train_nll"]) == len(summary["validation_nll"]) > 0
    assert summary["samples_per_second"] > 0 and summary["peak_memory_mb"] > 0
    assert "held out" in summary["validation"]


def test_analyze_writes_colvar_plots_and_scores(alanine, tmp_path):
    paths, model_dir = alanine
    out = tmp_path / "analysis"
    assert (
        main(["analyze", str(model_dir / "model.pt"), *paths, "--lag-ps", "1", "--modes", "4", "--output", str(out)])
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    # The first trajectory trained the model, the second chose its kept state: only the third is scored.
    assert (
        summary["split"]["trained_the_model"] == paths[:1] and summary["split"]["selected_the_kept_state"] == paths[1:2]
    )
    assert {segment["trajectory"] for segment in summary["split"]["scored"]} == {paths[2]}
    for figure in summary["figures"].values():
        assert (out / figure.split("/")[-1]).stat().st_size > 1000
    fields, values = read_colvar(summary["colvar_files"][0])
    assert fields == ["time", "cv1", "cv2", "cv3", "cv4"]
    plain = np.loadtxt(summary["colvar_files"][0], comments="#")
    assert np.array_equal(plain, values) and len(plain) == 60
    assert summary["dependence"]["modes"] == [1, 2, 3, 4] and summary["dependence"]["dihedrals"] == [
        "phi A:ALA2",
        "psi A:ALA2",
    ]
    for key in ("learned_cvs", "tica", "pca", "backbone_dihedrals"):
        assert "vamp2" in summary[key]
    kinetics = summary["kinetics"]
    assert len(kinetics["learned_cvs"]["implied_timescales_ps"]) == 4 and "implied_timescales_ps" in kinetics["tica"]
    assert kinetics["tica"]["oscillating_components"] == [
        k + 1 for k, v in enumerate(kinetics["tica"]["eigenvalues"]) if v < 0
    ]
    assert "latent_dynamics" not in summary  # trained without --lag-ps: no relaxation times


def test_analyze_rejects_a_model_of_another_system(alanine, tmp_path, capsys):
    paths, _ = alanine
    toy = tmp_path / "toy"
    assert main(TOY + ["--output", str(toy)]) == 0
    assert main(["analyze", str(toy / "model.pt"), *paths, "--output", str(tmp_path / "a")]) == 2
    assert "not trained on molecular trajectories" in capsys.readouterr().err
    import mdtraj

    part = tmp_path / "part"
    part.mkdir()
    fewer = mdtraj.load(paths[0], top=str(Path(paths[0]).parent / "topology.pdb")).atom_slice(range(10))
    fewer.save_netcdf(str(part / "replica-000.nc"))
    fewer[0].save_pdb(str(part / "topology.pdb"))
    _, model_dir = alanine
    assert (
        main(["analyze", str(model_dir / "model.pt"), str(part / "replica-000.nc"), "--output", str(tmp_path / "b")])
        == 2
    )
    assert "atoms but the model was trained on" in capsys.readouterr().err


def test_empty_selection_and_corrupt_model_are_one_line_errors(alanine, tmp_path, capsys):
    paths, _ = alanine
    assert main(["train", *paths, "--selection", "name XYZ", "--output", str(tmp_path / "a")]) == 2
    assert "selection" in capsys.readouterr().err
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x00garbage")
    assert main(["analyze", str(bad), *paths, "--output", str(tmp_path / "b")]) == 2
    assert "cannot be read as a neuralct model" in capsys.readouterr().err


def test_nan_coordinates_in_a_trajectory_are_a_one_line_error(alanine, tmp_path, capsys):
    import mdtraj

    paths, _ = alanine
    topology = str(Path(paths[0]).parent / "topology.pdb")
    traj = mdtraj.load(paths[0], top=topology)
    traj.xyz[5, 1, 1] = np.nan  # atom 1 is the heavy methyl carbon of the ACE cap
    bad = tmp_path / "nan.dcd"
    traj.save_dcd(str(bad))
    assert main(["train", str(bad), paths[1], "--top", topology, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite coordinates (first: frame 5)" in err
    assert not (tmp_path / "out" / "model.pt").exists()


def test_momentum_mixing_layers_train_and_analyze(alanine, tmp_path):
    paths, _ = alanine
    out = tmp_path / "mixed"
    assert (
        main(
            [
                "train",
                *paths,
                "--layers",
                "linear,point,continuous",
                "--steps",
                "5",
                "--batch-size",
                "16",
                "--couplings",
                "2",
                "--hidden",
                "8",
                "--leapfrog-steps",
                "2",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert (
        main(
            ["analyze", str(out / "model.pt"), *paths, "--lag-ps", "1", "--modes", "3", "--output", str(tmp_path / "a")]
        )
        == 0
    )


def test_operating_system_errors_are_one_line_too(tmp_path, capsys):
    assert main(["train", "--toy", "harmonic-chain", "--config", str(tmp_path), "--output", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Is a directory" in err and str(tmp_path) in err


def test_recorded_momenta_need_velocities(alanine, tmp_path, capsys):
    import mdtraj

    paths, _ = alanine
    out = tmp_path / "recorded"
    assert (
        main(
            [
                "train",
                *paths,
                "--momenta",
                "recorded",
                "--steps",
                "5",
                "--batch-size",
                "16",
                "--couplings",
                "2",
                "--hidden",
                "8",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads((out / "summary.json").read_text())["momenta"] == "recorded on-step velocities"
    topology = str(Path(paths[0]).parent / "topology.pdb")
    no_velocities = tmp_path / "positions-only.dcd"
    mdtraj.load(paths[0], top=topology).save_dcd(str(no_velocities))
    assert (
        main(
            [
                "train",
                str(no_velocities),
                paths[1],
                "--top",
                topology,
                "--momenta",
                "recorded",
                "--output",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )
    assert "--momenta recorded needs trajectories with velocities" in capsys.readouterr().err


def test_truncated_trajectory_gives_exactly_one_line_and_no_output(alanine, tmp_path):
    paths, model_dir = alanine
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(Path(paths[0]).read_bytes()[:6000])
    topology = str(Path(paths[0]).parent / "topology.pdb")
    for command in (
        ["train", str(truncated), paths[1]],
        ["analyze", str(model_dir / "model.pt"), str(truncated), paths[1]],
    ):
        out = tmp_path / command[0]
        result = subprocess.run(
            [sys.executable, "-m", "neuralct", *command, "--top", topology, "--output", str(out)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "truncated.nc is damaged or truncated" in result.stderr, result.stderr
        assert not out.exists()


def test_position_noise_option(tmp_path, capsys):
    assert main(TOY + ["--position-noise", "0.2", "--output", str(tmp_path / "ml")]) == 0
    assert json.loads((tmp_path / "ml" / "summary.json").read_text())["position_noise"] == 0.2
    assert main(TOY + ["--mode", "variational", "--position-noise", "0.2", "--output", str(tmp_path / "vfe")]) == 2
    assert "use it with --mode ml" in capsys.readouterr().err
    assert main(TOY + ["--position-noise", "-1", "--output", str(tmp_path / "negative")]) == 2
    assert "--position-noise: must be a finite number >= 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options, reduce",
    [
        (["--samples", "2000000000"], "reduce --samples"),
        (["--batch-size", "1000000000"], "reduce --batch-size"),
        (["--hidden", "1000000"], "reduce --hidden, --depth or --couplings"),
    ],
)
def test_training_too_large_for_the_memory_is_refused_before_anything_is_built(
    tmp_path, capsys, monkeypatch, options, reduce
):
    import neuralct.workflows.memory

    monkeypatch.setattr(neuralct.workflows.memory, "available_memory_bytes", lambda: 4 * 10**9)
    out = tmp_path / "model"
    status = main(
        [
            "train",
            "--toy",
            "harmonic-chain",
            "-p",
            "n=32",
            "--steps",
            "2",
            "--no-progress",
            *options,
            "--output",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "but 4.0 GB is available" in err and err.strip().endswith(reduce), (
        err
    )
    assert not out.exists()


@pytest.mark.parametrize("layers", ["linear-point,point", "point,continuous"])
def test_the_memory_estimate_counts_the_networks_parameters_exactly(layers):
    from torch import nn

    from neuralct.model.transformation import NeuralCanonicalTransformation
    from neuralct.workflows.train import architecture_from_options, training_memory_needed

    architecture = architecture_from_options(layers, 3, 48, 2, 4)
    model = NeuralCanonicalTransformation(20, masses=torch.ones(20, dtype=torch.float64), architecture=architecture)
    parameters = sum(p.numel() for p in model.parameters())
    units = sum(m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    needed = training_memory_needed(20, architecture, 100, "float32")
    assert needed["the network, its gradients and optimizer state"][0] == 8 * parameters * 4
    assert needed["a minibatch's activations"][0] == 16 * 100 * (units + 80) * 4


def test_an_allocation_that_fails_anyway_is_one_line(tmp_path, capsys, monkeypatch):
    """Where no estimate foresaw it (another process took the memory meanwhile), the failure is still one line."""
    import neuralct.cli.train

    def fail(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 8000000000 bytes."
        )

    monkeypatch.setattr(neuralct.cli.train, "_toy_fit", fail)
    assert main(["train", "--toy", "harmonic-chain", "-p", "n=4", "--output", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ran out of memory (" in err and "reduce the sizes of the run" in err


def _parsed(argv):
    from neuralct.cli import build_parser
    from neuralct.cli.options import apply_config

    parser = build_parser()
    return apply_config(parser, parser.parse_args(argv), argv)


def test_for_sampling_sets_its_options_under_the_command_line_and_the_config_file(tmp_path):
    from neuralct.cli.train import FOR_SAMPLING

    plain = _parsed(["train", "a.nc"])
    assert (plain.selection, plain.objective, plain.position_noise, plain.steps) == ("heavy", "auto", 0.0, None)
    preset = _parsed(["train", "a.nc", "--for-sampling"])
    assert {name: getattr(preset, name) for name in FOR_SAMPLING} == FOR_SAMPLING
    assert FOR_SAMPLING["objective"] == "density" and FOR_SAMPLING["position_noise"] > 0
    given = _parsed(["train", "a.nc", "--for-sampling", "--steps", "50", "--selection", "all"])
    assert (given.steps, given.selection, given.objective) == (50, "all", "density")
    config = tmp_path / "config.yaml"
    config.write_text("for_sampling: true\nsteps: 70\n")
    from_file = _parsed(["train", "a.nc", "--config", str(config)])
    assert (from_file.steps, from_file.objective, from_file.position_noise) == (70, "density", 1.0)
    beaten = _parsed(["train", "a.nc", "--config", str(config), "--steps", "90"])
    assert beaten.steps == 90
    # The flag and what it set enter the run's identity: a rerun without it is another run.
    from neuralct.cli.options import result_settings

    changed = {key for key, value in result_settings(preset).items() if result_settings(plain)[key] != value}
    assert changed == {"for_sampling", *(key for key, value in FOR_SAMPLING.items() if getattr(plain, key) != value)}
    assert changed >= {"for_sampling", "objective", "position_noise", "steps"}


def test_for_sampling_refuses_constrained_data_and_toys_in_one_line(alanine, tmp_path, capsys):
    paths, _ = alanine  # simulated with the default constraints (hbonds)
    output = tmp_path / "model"
    assert main(["train", *paths[:2], "--for-sampling", "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "simulated with bond constraints" in err and "--constraints none" in err
    assert not output.exists()
    assert main(TOY + ["--for-sampling", "--output", str(output)]) == 2
    assert "--for-sampling is for molecules" in capsys.readouterr().err
    assert not output.exists()


def test_for_sampling_trains_a_density_model_with_position_noise_on_unconstrained_data(tmp_path, capsys):
    md = tmp_path / "md"
    simulate = ["simulate", "alanine-dipeptide", "--constraints", "none", "--timestep-fs", "1", "--length-ns", "0.03"]
    simulate += ["--report-ps", "0.2", "--replicas", "2", "--equilibration-ps", "1", "--platform", "Reference"]
    assert main([*simulate, "--no-progress", "--output", str(md)]) == 0
    capsys.readouterr()
    paths = sorted(str(p) for p in md.glob("replica-*.nc"))
    small = ["--steps", "20", "--batch-size", "32", "--couplings", "2", "--hidden", "16", "--no-progress"]
    assert main(["train", *paths, "--for-sampling", *small, "--output", str(tmp_path / "model")]) == 0
    out = capsys.readouterr().out
    assert "for sampling: 2 of 2 trajectories simulated without bond constraints" in out
    summary = json.loads((tmp_path / "model" / "summary.json").read_text())
    assert summary["dimension"] == 3 * 10 - 6 and summary["position_noise"] == 1.0  # the 10 heavy atoms
    assert summary["objective"]["objective"] == "density"
