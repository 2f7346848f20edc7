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


def test_validation_frames_are_the_last_trajectories_or_the_last_fifth_and_never_train():
    from neuralct.workflows.train import split_trajectories

    train, valid, _ = split_trajectories([10], 1)
    assert train.tolist() == list(range(8)) and valid.tolist() == [8, 9]
    # Three trajectories of 3, 4 and 5 frames, concatenated: frames 0-2, 3-6 and 7-11.
    train, valid, how = split_trajectories([3, 4, 5], 1)
    assert train.tolist() == list(range(7)) and valid.tolist() == list(range(7, 12)) and "[2] held out" in how
    train, valid, _ = split_trajectories([3, 4, 5], 2)
    assert train.tolist() == [0, 1, 2] and valid.tolist() == list(range(3, 12))
    for lengths, held in (([10], 1), ([7], 1), ([3, 4, 5], 1), ([3, 4, 5], 2)):
        train, valid, _ = split_trajectories(lengths, held)
        assert not set(train) & set(valid) and sorted([*train, *valid]) == list(range(sum(lengths)))


def test_the_cv_ranges_a_model_records_are_those_of_its_training_frames(alanine):
    """The range of each CV (from which bias grids and Gaussian widths follow) is that of the training trajectory's
    frames; the held-out trajectory, which only chose the kept state, does not widen it."""
    import mdtraj

    import neuralct
    from neuralct.model.molecular import project_positions

    _, model_dir = alanine
    model = neuralct.load(model_dir / "model.pt")
    molecule = model.metadata["molecule"]

    def cvs(paths):
        frames = [mdtraj.load(path, top=str(Path(path).parent / "topology.pdb")) for path in paths]
        return project_positions(model, np.concatenate([frame.xyz.astype(np.float64) for frame in frames]))

    trained, everything = (
        cvs(molecule["training_trajectories"]),
        cvs(molecule["training_trajectories"] + molecule["validation_trajectories"]),
    )
    recorded = model.metadata["cv_ranges"]
    assert len(recorded) == model.dim == trained.shape[1]
    spans = trained.max(0) - trained.min(0)
    for key, values in (
        ("min", trained.min(0)),
        ("max", trained.max(0)),
        ("p01", np.percentile(trained, 1, axis=0)),
        ("p99", np.percentile(trained, 99, axis=0)),
    ):
        np.testing.assert_allclose([cv[key] for cv in recorded], values, rtol=0, atol=1e-3 * spans.max(), err_msg=key)
    widened = np.maximum(trained.min(0) - everything.min(0), everything.max(0) - trained.max(0))
    assert widened.max() > 0.05 * spans.max()


def test_the_kinetics_of_the_cvs_are_measured_on_the_training_frames_alone():
    from neuralct.workflows.train import split_trajectories, training_series

    values = np.arange(24.0).reshape(12, 2)
    train, _, _ = split_trajectories([3, 4, 5], 1)
    series = training_series(values, [3, 4, 5], train)
    assert [s.tolist() for s in series] == [values[0:3].tolist(), values[3:7].tolist()]
    train, _, _ = split_trajectories([10], 1)
    (only,) = training_series(values[:10], [10], train)
    np.testing.assert_array_equal(only, values[:8])


class _Stop(Exception):
    pass


def test_the_held_out_frames_validate_with_their_own_momenta_and_weights_and_never_train(monkeypatch):
    """Each role gets its own rows: training frames (with their momenta and weights) train and start the model,
    weighted; the held-out ones, with theirs, validate."""
    from neuralct.training.loop import TrainingSettings
    from neuralct.workflows import train as workflow

    rng = np.random.default_rng(0)
    y, p, weights = rng.normal(size=(50, 3)), rng.normal(size=(50, 3)), rng.uniform(0.5, 2.0, 50)
    train_index, valid_index = np.arange(40), np.arange(40, 50)
    seen = {}
    resample = workflow.weighted_resample

    def start(frames, start_weights, generator):
        seen["start"] = (frames, start_weights)
        return resample(frames, start_weights, generator)

    def objective(*args, **kwargs):
        seen["objective"] = args
        raise _Stop

    monkeypatch.setattr(workflow, "weighted_resample", start)
    monkeypatch.setattr(workflow, "MaximumLikelihood", objective)
    architecture = workflow.architecture_from_options("point", 1, 8, 1, 2)
    with pytest.raises(_Stop):
        workflow.fit_frames(
            y,
            1.0,
            architecture,
            TrainingSettings(steps=1),
            train_index=train_index,
            valid_index=valid_index,
            p=p,
            weights=weights,
            dtype="float64",
            device="cpu",
        )
    expected = (y[train_index], y[valid_index], p[train_index], p[valid_index], weights[train_index])
    expected += (weights[valid_index],)
    for got, want in zip(seen["objective"], expected, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(seen["start"][0].numpy(), y[train_index])
    np.testing.assert_array_equal(seen["start"][1].numpy(), weights[train_index])


def test_a_toys_validation_samples_never_train(monkeypatch):
    from neuralct.toys.hamiltonians import HarmonicChain
    from neuralct.training.loop import TrainingSettings
    from neuralct.workflows import train as workflow

    seen = {}

    def objective(q_train, q_valid, **kwargs):
        seen["train"], seen["valid"] = q_train.numpy(), q_valid.numpy()
        raise _Stop

    monkeypatch.setattr(workflow, "MaximumLikelihood", objective)
    system = HarmonicChain(n=3)
    architecture = workflow.architecture_from_options("point", 1, 8, 1, 2)
    with pytest.raises(_Stop):
        workflow.fit_toy(system, "ml", architecture, TrainingSettings(steps=1), samples=200, device="cpu")
    q, _ = system.sample(200, seed=0)
    assert len(seen["train"]) == 180 and len(seen["valid"]) == 20
    rows = {tuple(row) for row in seen["train"]}
    assert not rows & {tuple(row) for row in seen["valid"]}
    np.testing.assert_array_equal(np.sort(np.concatenate([seen["train"], seen["valid"]]), axis=0), np.sort(q, axis=0))


def test_the_kinetics_of_a_model_trained_with_a_lag_are_measured_at_that_lag(monkeypatch):
    """An AR(1) CV of autocorrelation 0.9 per 0.5 ps frame, trained at a 2 ps lag (4 frames): its kinetics are
    measured at 2 ps, autocorrelation 0.9^4."""
    from types import SimpleNamespace

    import neuralct.model.molecular as molecular
    from neuralct.workflows.train import training_cv_kinetics

    rng = np.random.default_rng(3)
    n, a = 50_000, 0.9
    x = np.empty(n)
    x[0] = rng.normal() / np.sqrt(1 - a**2)
    noise = rng.normal(size=n)
    for t in range(1, n):
        x[t] = a * x[t - 1] + noise[t]
    monkeypatch.setattr(molecular, "project_internal", lambda model, y: y)
    fit = SimpleNamespace(
        data=SimpleNamespace(traj_lengths=[n], timestep_ps=0.5),
        train_index=np.arange(n),
        lagged=SimpleNamespace(lag_frames=4, lag_ps=2.0),
        rank_pairs=None,
        rescaled_time=None,
    )
    kinetics = training_cv_kinetics(None, x[:, None], fit)
    assert kinetics["lag_ps"] == 2.0 and kinetics["lag_choice"] == "--lag-ps 2"
    assert kinetics["cvs"][0]["autocorrelation"][1] == pytest.approx(a**4, abs=0.02)


def test_the_kept_state_is_the_lowest_validation_loss_unless_keep_last(tmp_path):
    """200 steps validate at 100 and 200: the default keeps the state of the lower validation loss, --keep-last
    the last state."""
    for name, extra in (("best", []), ("last", ["--keep-last"])):
        assert main(TOY + ["--steps", "200", "--batch-size", "16", *extra, "--output", str(tmp_path / name)]) == 0
    best, last = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("best", "last"))
    steps, valid = best["history"]["step"], best["history"]["valid_loss"]
    assert steps == [100, 200]
    assert best["kept_state"] == "lowest validation loss" and best["kept_step"] == steps[valid.index(min(valid))]
    assert best["final_loss"] == min(valid)
    assert last["kept_state"] == "last step" and last["kept_step"] == 200
    assert last["final_loss"] == last["history"]["valid_loss"][-1]
    assert yaml.safe_load((tmp_path / "last" / "config.yaml").read_text())["keep_last"] is True


def test_a_checkpoint_is_written_every_checkpoint_every_steps_and_at_the_end(tmp_path, monkeypatch):
    from neuralct.training import loop

    saved, save = [], loop._TrainingState.save

    def recorded(state, path, settings):
        saved.append(state.step)
        save(state, path, settings)

    monkeypatch.setattr(loop._TrainingState, "save", recorded)
    assert main(TOY + ["--steps", "25", "--checkpoint-every", "10", "--output", str(tmp_path)]) == 0
    assert saved == [10, 20, 25]


def test_a_validation_fraction_of_zero_holds_no_toy_samples_out(tmp_path):
    """Without validation samples nothing validates: no validation loss, and the last state is kept."""
    assert main(TOY + ["--validation-fraction", "0", "--output", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["history"]["valid_loss"] == [None] and summary["kept_state"] == "last step"
    assert summary["final_loss"] == summary["history"]["train_loss"][-1]


def test_the_start_given_by_init_is_the_one_trained_from(tmp_path):
    """--init identity starts from unit frequencies, not the data's normal modes: another model, and recorded."""
    for name, extra in (("data", []), ("identity", ["--init", "identity"])):
        assert main(TOY + ["--steps", "1", *extra, "--output", str(tmp_path / name)]) == 0
    data, identity = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("data", "identity"))
    assert (data["init"], identity["init"]) == ("data", "identity")
    assert np.abs(np.array(identity["frequencies"]) - 1).max() < 0.05
    assert np.abs(np.array(data["frequencies"]) - 1).max() > 0.1


def test_every_analysis_option_reaches_the_analysis(alanine, tmp_path, capsys, monkeypatch):
    """Each option of `neuralct analyze` given with a value other than its default is the analysis's."""
    import neuralct.workflows.analyze
    from neuralct.errors import NeuralCTError

    paths, model_dir = alanine
    seen = {}

    def stopped(model, trajectories, output, **options):
        seen.update(options, trajectories=trajectories)
        raise NeuralCTError("stopped")

    monkeypatch.setattr(neuralct.workflows.analyze, "analyze_trajectories", stopped)
    given = {"modes": 3, "lag_ps": 2.0, "test_trajectories": 1, "stride": 2, "frame_ps": 0.5, "blocks": 3}
    given["temperature"] = 310.0
    options = [word for name, value in given.items() for word in ("--" + name.replace("_", "-"), str(value))]
    argv = ["analyze", str(model_dir / "model.pt"), *paths, *options, "--residues", "ALA2", "--chi", "--no-progress"]
    assert main([*argv, "--output", str(tmp_path / "analysis")]) == 2
    assert capsys.readouterr().err.strip() == "neuralct analyze: error: stopped"
    assert {name: seen[name] for name in given} == given
    assert (seen["trajectories"], seen["residues"], seen["chi"], seen["progress"]) == (paths, ["ALA2"], True, False)


def test_every_reading_option_reaches_the_trajectory_reader(alanine, tmp_path, capsys, monkeypatch):
    """Each option of `neuralct train` that says how to read the frames, given with a value other than its default,
    is the reader's."""
    import neuralct.data
    from neuralct.errors import NeuralCTError

    paths, _ = alanine
    seen = {}

    def stopped(trajectories, **options):
        seen.update(options, trajectories=trajectories)
        raise NeuralCTError("stopped")

    monkeypatch.setattr(neuralct.data, "load_trajectories", stopped)
    topology = str(Path(paths[0]).parent / "topology.pdb")
    given = {"top": topology, "selection": "all", "stride": 2, "temperature": 310.0, "seed": 5, "frame_ps": 0.5}
    options = [word for name, value in given.items() for word in ("--" + name.replace("_", "-"), str(value))]
    assert main(["train", *paths, *options, "--no-progress", "--output", str(tmp_path / "model")]) == 2
    assert capsys.readouterr().err.strip() == "neuralct train: error: stopped"
    renamed = {"top": "topology"}
    assert seen == {
        **{renamed.get(name, name): value for name, value in given.items()},
        "momenta": "auto",
        "trajectories": paths,
    }


def test_the_seed_draws_the_toys_samples_and_minibatches(tmp_path):
    """The same --seed trains the same model, another seed another."""
    frequencies = {}
    for name, seed in (("first", "3"), ("again", "3"), ("other", "4")):
        assert main(TOY + ["--steps", "5", "--seed", seed, "--output", str(tmp_path / name)]) == 0
        frequencies[name] = json.loads((tmp_path / name / "summary.json").read_text())["frequencies"]
    assert frequencies["first"] == frequencies["again"] != frequencies["other"]


def test_the_last_validation_trajectories_validate_and_never_train(alanine, tmp_path):
    paths, _ = alanine
    small = ["--steps", "2", "--batch-size", "16", "--couplings", "1", "--hidden", "8", "--no-progress"]
    assert main(["train", *paths, *small, "--validation-trajectories", "2", "--output", str(tmp_path)]) == 0
    import neuralct

    molecule = neuralct.load(tmp_path / "model.pt").metadata["molecule"]
    resolved = [str(Path(path).resolve()) for path in paths]
    assert molecule["training_trajectories"] == resolved[:1]
    assert molecule["validation_trajectories"] == resolved[1:]


def test_the_variational_free_energy_is_estimated_from_eval_samples_draws(tmp_path):
    assert main(TOY + ["--mode", "variational", "--eval-samples", "1500", "--output", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["samples"] == 1500


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_toy_trains_in_the_dtype_given(tmp_path, dtype):
    import neuralct

    assert main(TOY + ["--steps", "2", "--dtype", dtype, "--output", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["dtype"] == dtype
    model = neuralct.load(tmp_path / "model.pt")
    assert {parameter.dtype for parameter in model.parameters()} == {getattr(torch, dtype)}
