"""``neuralct sample`` on the command line: toy and molecular models, resume, and bad input."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from neuralct.cli import main

SAMPLE = [
    "--chains",
    "6",
    "--samples",
    "30",
    "--warmup",
    "10",
    "--leapfrog-steps",
    "3",
    "--kish-samples",
    "50",
    "--no-progress",
]


def snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def read_summary(folder):
    """summary.json read as strict JSON (no NaN or Infinity, which jq and JavaScript refuse); every null explained."""

    def refuse(constant):
        raise ValueError(f"summary.json holds {constant}")

    summary = json.loads((folder / "summary.json").read_text(), parse_constant=refuse)
    assert_nulls_explained(summary)
    return summary


def assert_nulls_explained(figures, where="summary"):
    """Every null figure comes with its reason: in the ``undefined`` map beside it, or in a ``note``."""
    if isinstance(figures, dict):
        for key, value in figures.items():
            if value is None:
                assert key in figures.get("undefined", {}) or "note" in figures, (
                    f"{where}[{key!r}] is null without a reason"
                )
            assert_nulls_explained(value, f"{where}[{key!r}]")
    elif isinstance(figures, list):
        for index, value in enumerate(figures):
            assert value is not None, f"{where}[{index}] is null"
            assert_nulls_explained(value, f"{where}[{index}]")


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    assert (
        main(
            [
                "train",
                "--toy",
                "curved-double-well",
                "--steps",
                "30",
                "--batch-size",
                "64",
                "--samples",
                "1000",
                "--dtype",
                "float64",
                "--hidden",
                "16",
                "--couplings",
                "2",
                "--no-progress",
                "--output",
                str(folder),
            ]
        )
        == 0
    )
    return folder / "model.pt"


@pytest.mark.parametrize("method", ["auto", "latent-hmc", "hmc", "independence", "mixed"])
def test_toy_model_samples_its_toy_energy(toy_model, tmp_path, method):
    out = tmp_path / method
    assert main(["sample", str(toy_model), "--method", method, *SAMPLE, "--output", str(out)]) == 0
    summary = read_summary(out)
    assert summary["target"]["name"] == "curved-double-well"
    samples = np.load(out / "samples.npz")
    assert samples["q"].shape == (30, 6, 2) and np.isfinite(samples["q"]).all()
    kernels = summary["kernels"]
    if method == "auto":  # the toy's flow is good enough for independence moves
        assert summary["method_choice"]["chosen"] == "mixed" and set(kernels) == {"hmc", "independence"}
    else:
        assert set(kernels) == {"hmc", "independence"} if method == "mixed" else len(kernels) == 1
    assert summary["energy_evaluations"] == sum(k["energy_evaluations"] for k in kernels.values()) > 0
    for figures in [summary["potential_energy_kT"], *summary["indicators"].values()]:
        assert {"iat", "ess_per_evaluation", "ess_per_cpu_second", "r_hat"} <= set(figures)
    assert {"population", "standard_error", "chains_visiting", "stays"} <= set(summary["populations"]["x1 > 0"])
    assert summary["convergence"]["r_hat_limit"] == 1.05 and isinstance(summary["convergence"]["not_converged"], list)
    # Choosing the starts costs 8 flow draws per chain, counted with the warm-up.
    assert summary["warmup_energy_evaluations"] >= 8 * 6 + 6
    assert 0 < summary["flow_importance_weights"]["kish_ess"] <= 50
    assert summary["settings"]["mass_matrix"] == "curvature"
    curvature = summary["mean_curvature"]
    assert curvature["states"] == 30 * 6 and len(curvature["eigenvalues"]) == 2
    assert 0 < curvature["eigenvalues"][0] <= curvature["eigenvalues"][1] and curvature["condition_number"] >= 1
    # The toy's potential energy of the recorded samples is the analytic one.
    import torch

    from neuralct.toys.hamiltonians import CurvedDoubleWell

    q = torch.as_tensor(samples["q"].reshape(-1, 2))
    assert np.allclose(CurvedDoubleWell().potential(q).numpy(), samples["potential_energy_kT"].reshape(-1), atol=1e-8)


def interrupt_iteration(monkeypatch, at: int):
    """Make the sampling loop's ``at``-th iteration raise KeyboardInterrupt (Ctrl-C); returns the real ``iterate``."""
    import neuralct.workflows.sample as sampling_run

    calls = {"n": 0}
    original = sampling_run.iterate

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt
        return original(*a, **k)

    monkeypatch.setattr(sampling_run, "iterate", interrupted)
    return original


def test_interrupted_run_resumes_to_the_same_samples(toy_model, tmp_path, monkeypatch, capsys):
    args = ["sample", str(toy_model), "--method", "mixed", *SAMPLE, "--checkpoint-every", "7"]
    assert main([*args, "--output", str(tmp_path / "whole")]) == 0
    import neuralct.workflows.sample as sampling_run

    original = interrupt_iteration(monkeypatch, 25)
    assert main([*args, "--output", str(tmp_path / "split")]) == 130
    assert not (tmp_path / "split" / "summary.json").exists()
    import torch

    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["iteration"] == 21
    resumed = {"n": 0}

    def counted(*a, **k):
        resumed["n"] += 1
        return original(*a, **k)

    monkeypatch.setattr(sampling_run, "iterate", counted)
    assert main([*args, "--output", str(tmp_path / "split")]) == 0
    assert resumed["n"] == 40 - 21, "the rerun continues from the checkpoint"
    whole, split = np.load(tmp_path / "whole" / "samples.npz"), np.load(tmp_path / "split" / "samples.npz")
    assert np.array_equal(whole["q"], split["q"])
    curvature = [
        json.loads((tmp_path / name / "summary.json").read_text())["mean_curvature"] for name in ("whole", "split")
    ]
    assert curvature[0] == curvature[1], "the curvature sum is checkpointed with the samples"
    capsys.readouterr()
    # Another run's folder: refused with one line, nothing changed.
    before = snapshot(tmp_path / "whole")
    assert main(["sample", str(toy_model), "--method", "hmc", *SAMPLE, "--output", str(tmp_path / "whole")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err
    assert snapshot(tmp_path / "whole") == before


def test_a_folder_warmed_up_by_another_schedule_is_not_resumed(toy_model, tmp_path, capsys):
    out = tmp_path / "x"
    args = ["sample", str(toy_model), *SAMPLE, "--output", str(out)]
    assert main(args) == 0
    identity = json.loads((out / "run.json").read_text())
    assert identity["settings"]["warmup_schedule"].startswith("start: random frames of the model's training")
    del identity["settings"]["warmup_schedule"]  # as written before the schedule was recorded
    (out / "run.json").write_text(json.dumps(identity))
    before = snapshot(out)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "warmup_schedule" in err
    assert snapshot(out) == before


def test_chains_that_disagree_are_reported(toy_model, tmp_path, capsys, monkeypatch):
    import neuralct.sampling.diagnostics as diagnostics
    import neuralct.workflows.sample as sampling_run

    # Every observable counts as not converged: the limit where the figures are made and where they are reported.
    monkeypatch.setattr(diagnostics, "R_HAT_LIMIT", 0.0)
    monkeypatch.setattr(sampling_run, "R_HAT_LIMIT", 0.0)
    args = ["sample", str(toy_model), "--method", "latent-hmc", *SAMPLE, "--output", str(tmp_path / "x")]
    assert main(args) == 0
    summary = json.loads((tmp_path / "x" / "summary.json").read_text())
    assert summary["convergence"]["not_converged"][0] == "potential energy"
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: the chains disagree")]
    assert len(warning) == 1 and "potential energy" in warning[0] and "--samples" in warning[0]


def test_chains_start_at_the_lowest_energy_draws_of_the_flow(toy_model):
    import torch

    from neuralct.model.transformation import load
    from neuralct.sampling import LatentPotential
    from neuralct.sampling.chains import starting_points
    from neuralct.sampling.targets import toy_target

    model = load(toy_model).double()
    target = toy_target(model)
    latent = LatentPotential(model, target.potential)
    start, evaluations, source = starting_points(model, target, "latent-hmc", 5, torch.Generator().manual_seed(4))
    assert source == "the 5 lowest-energy of 40 draws of the flow (not a molecule with a configuration flow)"
    draws = torch.randn(40, model.dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        energies = latent(draws)
    assert evaluations == 40
    assert torch.equal(start, draws[torch.argsort(energies)[:5]])
    assert (latent(start) <= energies.kthvalue(5).values).all()
    physical, _, _ = starting_points(model, target, "hmc", 5, torch.Generator().manual_seed(4))
    assert torch.allclose(physical, latent.to_physical(start)[0])


@pytest.mark.parametrize("warmup", ["0", "1"])
def test_curvature_masses_without_a_warmup_to_fit_them_are_refused(toy_model, tmp_path, capsys, warmup):
    args = [
        "sample",
        str(toy_model),
        "--method",
        "latent-hmc",
        *SAMPLE,
        "--warmup",
        warmup,
        "--output",
        str(tmp_path / "x"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--warmup 2 or more" in err and "--mass-matrix unit" in err
    assert not (tmp_path / "x").exists()
    assert main([*args[:-2], "--mass-matrix", "unit", "--output", str(tmp_path / "unit")]) == 0


def test_toy_model_with_a_system_is_refused(toy_model, tmp_path, capsys):
    assert main(["sample", str(toy_model), "alanine-dipeptide", *SAMPLE, "--output", str(tmp_path / "x")]) == 2
    assert "leave SYSTEM out" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def with_fixed_basins(monkeypatch):
    """Give toy targets two more indicators: a basin no sample is in, and one every sample is in."""
    import neuralct.sampling.targets as sampling_targets

    original = sampling_targets.toy_target

    def toy_target(model):
        target = original(model)
        indicators = target.indicators
        target.indicators = lambda q: {**indicators(q), "nowhere": np.zeros(len(q)), "everywhere": np.ones(len(q))}
        return target

    monkeypatch.setattr(sampling_targets, "toy_target", toy_target)


def test_basins_never_visited_or_never_left_have_no_population_but_a_bound(toy_model, tmp_path, monkeypatch):
    with_fixed_basins(monkeypatch)
    out = tmp_path / "x"
    assert main(["sample", str(toy_model), *SAMPLE, "--output", str(out)]) == 0
    summary = read_summary(out)
    nowhere, everywhere = summary["populations"]["nowhere"], summary["populations"]["everywhere"]
    assert (
        nowhere["population"] is None
        and nowhere["standard_error"] is None
        and nowhere["note"].startswith("not visited")
    )
    assert nowhere["upper_bound_95"] == pytest.approx(1 - 0.05 ** (1 / 6)) and nowhere["chains_visiting"] == 0
    assert everywhere["population"] is None and everywhere["lower_bound_95"] == pytest.approx(0.05 ** (1 / 6))
    figures = summary["indicators"]["nowhere"]
    assert (
        figures["iat"] is None
        and figures["ess_per_evaluation"] is None
        and "the same value in every sample" in figures["undefined"]["iat"]
    )
    assert "nowhere" not in summary["convergence"]["not_converged"], "a constant says nothing about convergence"
    # The flow's draws agree that nothing is in "nowhere" and everything in "everywhere".
    assert nowhere["flow_draws_fraction"] == 0.0 and everywhere["flow_draws_fraction"] == 1.0
    assert 0.0 < summary["populations"]["x1 > 0"]["flow_draws_fraction"] < 1.0


def test_a_basin_the_flow_reaches_but_no_chain_entered_is_not_converged(toy_model, tmp_path, monkeypatch, capsys):
    import neuralct.workflows.sample as sampling_run

    with_fixed_basins(monkeypatch)
    measured = sampling_run.flow_basin_fractions

    def flow_reaches_nowhere(*args, **kwargs):
        return {**measured(*args, **kwargs), "nowhere": 0.4}

    monkeypatch.setattr(sampling_run, "flow_basin_fractions", flow_reaches_nowhere)
    out = tmp_path / "x"
    assert main(["sample", str(toy_model), *SAMPLE, "--output", str(out)]) == 0
    summary = read_summary(out)
    nowhere = summary["populations"]["nowhere"]
    assert nowhere["converged"] is False and nowhere["upper_bound_95"] is None
    assert "40% of 1000 draws of the flow lie in it" in nowhere["note"]
    assert "nowhere" in summary["convergence"]["not_converged"] and summary["convergence"]["unreached"] == ["nowhere"]
    assert "no chain entered (or left) nowhere, where the flow's draws go" in capsys.readouterr().err


def test_populations_far_from_the_training_trajectories_are_not_converged(toy_model, tmp_path, monkeypatch, capsys):
    import neuralct.model.transformation as transformation

    loaded = transformation.load

    def load_with_training_basins(path):
        # As `train` records them for a molecule: the trajectories put 60 +- 2 % of their frames in "everywhere",
        # and 90 +- 1 % in x1 > 0, which holds 29 % of the density.
        model = loaded(path)
        basins = {"everywhere": (0.6, 0.02), "x1 > 0": (0.9, 0.01)}
        model.metadata["molecule"] = {
            "training_basins": {
                "basins": {name: {"fraction": p, "standard_error": e, "stays": 50} for name, (p, e) in basins.items()}
            }
        }
        return model

    monkeypatch.setattr(transformation, "load", load_with_training_basins)
    with_fixed_basins(monkeypatch)
    out = tmp_path / "x"
    assert main(["sample", str(toy_model), *SAMPLE, "--output", str(out)]) == 0
    summary = read_summary(out)
    everywhere, right = summary["populations"]["everywhere"], summary["populations"]["x1 > 0"]
    assert everywhere["converged"] is False and everywhere["lower_bound_95"] is None
    assert everywhere["training_data_fraction"] == 0.6
    assert right["population"] < 0.5 and right["converged"] is False
    assert right["standard_error"] >= 0.9 - right["population"] - 1e-12, "no tighter than the gap"
    assert summary["populations"]["nowhere"].get("training_data_fraction") is None
    assert summary["convergence"]["disagree_with_training_data"] == ["x1 > 0", "everywhere"]
    assert {"x1 > 0", "everywhere"} <= set(summary["convergence"]["not_converged"])
    err = capsys.readouterr().err
    assert "the chains' populations of x1 > 0, everywhere disagree with the model's training trajectories" in err
    assert not any("split R-hat" in line and "x1 > 0" in line for line in err.splitlines()), "named once, for the data"


def forbid_sampling(monkeypatch):
    """Make the chains' first allocation fail the test at once (a refused run must not get there)."""
    import neuralct.workflows.sample as sampling_run

    def started(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(sampling_run, "starting_points", started)
    monkeypatch.setattr(sampling_run, "iterate", started)


@pytest.mark.parametrize(
    "options,reduce",
    [
        (["--chains", "10000000", "--samples", "1"], "reduce --chains"),
        (["--samples", "100000000"], "reduce --samples or --chains"),
        (["--kish-samples", "100000000000"], "reduce --kish-samples"),
        (["--warmup", "100000000000"], "reduce --warmup"),
    ],
)
def test_a_run_too_large_for_the_memory_is_refused_before_any_work(
    toy_model, tmp_path, capsys, monkeypatch, options, reduce
):
    import neuralct.workflows.memory

    forbid_sampling(monkeypatch)
    monkeypatch.setattr(neuralct.workflows.memory, "available_memory_bytes", lambda: 4 * 10**9)
    out = tmp_path / "x"
    assert main(["sample", str(toy_model), "--no-progress", *options, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1
        and "B of memory" in err
        and "but 4.0 GB is available" in err
        and err.endswith(reduce)
    ), err
    assert not out.exists()


def test_ten_million_chains_are_refused_on_this_machine(toy_model, tmp_path, capsys, monkeypatch):
    forbid_sampling(monkeypatch)
    out = tmp_path / "x"
    assert main(["sample", str(toy_model), "--chains", "10000000", "--no-progress", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "TB of memory" in err and "is available; reduce --samples or --chains" in err
    ), err
    assert not out.exists()


# Peak resident memory from /proc (VmHWM): getrusage's ru_maxrss would include the parent's, which survives fork
# and exec.
MEASURE_MEMORY = """
import json, sys, tempfile
from pathlib import Path
from neuralct.model.transformation import load
from neuralct.workflows.sample import SamplingSettings, run_sampling
from neuralct.sampling.resources import memory_needed
from neuralct.sampling.targets import toy_target

def resident(field):
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024

model = load(sys.argv[1]).double()
model.requires_grad_(False)
target = toy_target(model)
settings = SamplingSettings(chains=20000, samples=20, warmup=4, leapfrog_steps=2, kish_samples=0, progress=False)
sizes = {name: getattr(settings, name) for name in ("chains", "samples", "warmup", "kish_samples")}
needed = sum(size for size, _ in memory_needed(model, target, **sizes).values())
before = resident("VmRSS")
with tempfile.TemporaryDirectory() as folder:
    run_sampling(model, target, settings, Path(folder))
print(json.dumps({"needed": needed, "used": resident("VmHWM") - before}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_the_memory_estimate_bounds_what_a_run_takes(toy_model):
    """20,000 chains of the toy model in a fresh process: its peak memory stays below the estimate, not far below."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURE_MEMORY, str(toy_model)], capture_output=True, text=True, check=True, timeout=600
    )
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["used"] > 50e6, "a run big enough for the comparison to mean something"
    assert figures["used"] < figures["needed"] < 4 * figures["used"], figures


@pytest.mark.parametrize("damage", ["truncated", "not a sampling checkpoint", "chains of another shape"])
def test_a_damaged_checkpoint_is_refused_in_one_line(toy_model, tmp_path, monkeypatch, capsys, damage):
    import torch

    import neuralct.workflows.sample as sampling_run

    args = ["sample", str(toy_model), *SAMPLE, "--checkpoint-every", "7", "--output", str(tmp_path / "x")]
    original = interrupt_iteration(monkeypatch, 25)
    assert main(args) == 130
    monkeypatch.setattr(sampling_run, "iterate", original)
    checkpoint = tmp_path / "x" / "checkpoint.pt"
    if damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    elif damage == "not a sampling checkpoint":
        torch.save({"iteration": 21}, checkpoint)
    else:
        saved = torch.load(checkpoint, weights_only=True)
        saved["position"] = saved["position"][:3]
        torch.save(saved, checkpoint)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and f"checkpoint {checkpoint} is damaged" in err and "rerun with --overwrite" in err
    ), err
    assert main([*args, "--overwrite"]) == 0


@pytest.mark.parametrize("value", ["0", "1"])
def test_target_acceptance_must_be_strictly_between_zero_and_one(toy_model, tmp_path, capsys, value):
    assert main(["sample", str(toy_model), "--target-acceptance", value, "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "argument --target-acceptance: must be a number > 0 and < 1" in err, err
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def alanine_models(tmp_path_factory):
    """A short unconstrained alanine dipeptide trajectory and three tiny models: heavy, all and backbone atoms."""
    folder = tmp_path_factory.mktemp("alanine")
    md = folder / "md"
    assert (
        main(
            [
                "simulate",
                "alanine-dipeptide",
                "--constraints",
                "none",
                "--timestep-fs",
                "1",
                "--length-ns",
                "0.02",
                "--report-ps",
                "0.2",
                "--replicas",
                "2",
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
    models = {}
    for selection in ("heavy", "all", "backbone"):
        out = folder / selection
        assert (
            main(
                [
                    "train",
                    *paths,
                    "--selection",
                    selection,
                    "--steps",
                    "10",
                    "--batch-size",
                    "32",
                    "--couplings",
                    "2",
                    "--hidden",
                    "16",
                    "--no-progress",
                    "--output",
                    str(out),
                ]
            )
            == 0
        )
        models[selection] = out / "model.pt"
    return models


def test_molecular_chains_start_at_frames_of_the_training_trajectories(alanine_models, tmp_path):
    import mdtraj
    import torch

    from neuralct.md.systems import build_system
    from neuralct.model.transformation import load
    from neuralct.sampling import LatentPotential
    from neuralct.sampling.chains import starting_points
    from neuralct.sampling.targets import molecular_target

    model = load(alanine_models["heavy"]).double()
    target = molecular_target(model, build_system("alanine-dipeptide", constraints="none"), "alanine-dipeptide")
    md = alanine_models["heavy"].parent.parent / "md"
    frames = np.concatenate([mdtraj.load(str(p), top=str(md / "topology.pdb")).xyz for p in sorted(md.glob("*.nc"))])
    physical, evaluations, source = starting_points(model, target, "hmc", 6, torch.Generator().manual_seed(1))
    assert evaluations == 6 and source == "6 random frames of the 2 training and validation trajectories"
    # Each start is the internal coordinates of one of the frames, six different ones.
    internal = target.potential.coordinates(frames.astype(np.float64))
    matches = [int(torch.isclose(internal, start, atol=1e-9).all(-1).nonzero()[0]) for start in physical]
    assert len(set(matches)) == 6
    latent, _, _ = starting_points(model, target, "latent-hmc", 6, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(LatentPotential(model, target.potential).to_physical(latent)[0], physical, atol=1e-8)
    # Without readable frames of the target's atoms, the flow's draws, and why.
    moved = load(alanine_models["heavy"]).double()
    moved.metadata["molecule"]["training_trajectories"] = [str(tmp_path / "gone.nc")]
    _, evaluations, source = starting_points(moved, target, "hmc", 6, torch.Generator().manual_seed(1))
    assert evaluations == 48 and source.endswith(f"({tmp_path / 'gone.nc'} cannot be read)")
    # Another engine's DCD, no topology beside it: read with the system's.
    mdtraj.load(sorted(str(p) for p in md.glob("*.nc"))[0], top=str(md / "topology.pdb")).save_dcd(
        str(tmp_path / "foreign.dcd")
    )
    moved.metadata["molecule"]["training_trajectories"] = [str(tmp_path / "foreign.dcd")]
    _, evaluations, source = starting_points(moved, target, "hmc", 6, torch.Generator().manual_seed(1))
    assert evaluations == 6 and source == "6 random frames of the 2 training and validation trajectories"
    # Frames with every atom on one point have no finite energy: the flow's draws.
    collapsed = mdtraj.load(str(tmp_path / "foreign.dcd"), top=str(md / "topology.pdb"))
    collapsed.xyz = np.zeros_like(collapsed.xyz)
    collapsed.save_dcd(str(tmp_path / "collapsed.dcd"))
    moved.metadata["molecule"]["training_trajectories"] = [str(tmp_path / "collapsed.dcd")]
    moved.metadata["molecule"]["validation_trajectories"] = []
    _, evaluations, source = starting_points(moved, target, "hmc", 6, torch.Generator().manual_seed(1))
    assert evaluations == 6 + 48 and source.endswith("(a training frame has no finite energy in this system)")
    # Frames in a periodic box may hold molecules torn across it: not starts.
    boxed = mdtraj.load(str(tmp_path / "foreign.dcd"), top=str(md / "topology.pdb"))
    boxed.unitcell_vectors = np.tile(np.eye(3, dtype=np.float32) * 3.0, (boxed.n_frames, 1, 1))
    boxed.save_dcd(str(tmp_path / "boxed.dcd"))
    moved.metadata["molecule"]["training_trajectories"] = [str(tmp_path / "boxed.dcd")]
    _, _, source = starting_points(moved, target, "hmc", 6, torch.Generator().manual_seed(1))
    assert source.endswith(f"({tmp_path / 'boxed.dcd'} holds a periodic box: its molecules may be torn across it)")
    (tmp_path / "damaged.nc").write_bytes(b"CDF\x01" + bytes(60))
    moved.metadata["molecule"]["training_trajectories"] = [str(tmp_path / "damaged.nc")]
    _, _, source = starting_points(moved, target, "hmc", 6, torch.Generator().manual_seed(1))
    assert source.endswith(f"({tmp_path / 'damaged.nc'} cannot be read)")
    biased = load(alanine_models["heavy"]).double()
    biased.metadata["molecule"]["training_basins"] = None
    _, _, source = starting_points(biased, target, "hmc", 6, torch.Generator().manual_seed(1))
    assert "(the model records no unbiased training frames: trained on biased ones" in source


def test_all_atom_model_samples_alanine_dipeptide(alanine_models, tmp_path, capsys):
    import MDAnalysis
    import mdtraj

    out = tmp_path / "sample"
    assert (
        main(
            [
                "sample",
                str(alanine_models["all"]),
                "alanine-dipeptide",
                "--chains",
                "3",
                "--samples",
                "4",
                "--warmup",
                "3",
                "--leapfrog-steps",
                "2",
                "--step-size",
                "0.01",
                "--kish-samples",
                "10",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    summary = read_summary(out)
    traj = mdtraj.load(str(out / "samples.nc"), top=str(out / "topology.pdb"))
    assert traj.n_frames == 12 and traj.n_atoms == 22
    universe = MDAnalysis.Universe(str(out / "topology.pdb"), str(out / "samples.nc"))
    assert len(universe.trajectory) == 12
    from neuralct.analysis.states import STATE_NAMES

    populations = summary["populations"]
    (label,) = {name.rsplit("(", 1)[1].rstrip(")") for name in populations}  # one residue with phi and psi: ALA
    assert "ALA" in label and f"phi > 0 ({label})" in populations and f"psi in (-120, 50) deg ({label})" in populations
    regions = [populations[f"{name} ({label})"] for name in STATE_NAMES]
    assert sum(region["population"] or 0.0 for region in regions) <= 1 + 1e-9
    for region in regions:  # a region no chain entered has a bound, not a population of 0 +- 0
        # ... or, where the flow's draws or the training trajectories went there, no bound and not converged.
        assert (
            region["chains_visiting"] > 0
            or (region["upper_bound_95"] is None and region["converged"] is False)
            or (region["population"] is None and 0 < region["upper_bound_95"] < 1)
        )
    assert list(out.glob("phi_psi_free_energy_*.png")) and (out / "phi_psi_histogram.npz").exists()
    assert summary["target"]["atoms"] == 22
    # A model on unconstrained data lacks only training: 10 steps, validated once, at the last.
    model_check = summary["model_for_sampling"]
    assert model_check["lacks"] == ["training_length"]
    assert {name: finding["status"] for name, finding in model_check["checked"].items()} == {
        "unconstrained_data": "has",
        "training_length": "lacks",
    }
    assert model_lines(capsys) == [
        "model: its validation loss was recorded at the last step only (kept step 10 of 10): "
        "train longer, `neuralct train --steps`"
    ]
    # The samples are three chains laid end to end, stamped with their index: not a trajectory to time or score.
    assert main(["analyze", str(alanine_models["all"]), str(out / "samples.nc"), "--output", str(tmp_path / "a")]) == 0
    analysis = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert "cv_kinetics" not in analysis and "kinetics" not in analysis and "learned_cvs" not in analysis
    assert "holds Monte Carlo samples of 3 chains, 4 each" in analysis["skipped"]["cv_kinetics"]
    assert analysis["skipped"]["scores"] == analysis["skipped"]["cv_kinetics"] == analysis["time_step_unknown_because"]
    capsys.readouterr()
    argv = ["train", str(out / "samples.nc"), "--steps", "2", "--no-progress", "--output", str(tmp_path / "t")]
    assert main([*argv, "--lag-ps", "1"]) == 2
    assert "not a trajectory: its frames have no time" in capsys.readouterr().err


def model_lines(capsys):
    """The lines `neuralct sample` printed about what the model lacks for sampling."""
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("model: ")]


TINY_MOLECULAR = ["--chains", "2", "--samples", "4", "--warmup", "2", "--leapfrog-steps", "1", "--kish-samples", "0"]


def test_a_heavy_atom_model_on_constrained_data_trained_too_short_is_told_each_finding(alanine_model, tmp_path, capsys):
    """The session's model: heavy atoms, on `neuralct simulate`'s default HBonds data, 20 steps validated once."""
    model, _ = alanine_model
    out = tmp_path / "sample"
    assert (
        main(["sample", str(model), "alanine-dipeptide", *TINY_MOLECULAR, "--no-progress", "--output", str(out)]) == 0
    )
    # A model of the heavy atoms lacks nothing for being one (benchmark B4): two lines, not three.
    constrained, short = model_lines(capsys)
    assert constrained.startswith(
        "model: trained on data with constrained X-H bonds (hbonds: 2 of 2 training and validation trajectories)"
    )
    assert "sampled without constraints" in constrained and "--constraints none --timestep-fs 1" in constrained
    assert short.startswith("model: its validation loss was recorded at the last step only (kept step 20 of 20)")
    model_check = read_summary(out)["model_for_sampling"]
    assert model_check["lacks"] == ["unconstrained_data", "training_length"]
    checked = model_check["checked"]
    assert [constrained, short] == [
        f"model: {checked[name]['detail']}: {checked[name]['advice']}" for name in model_check["lacks"]
    ]


def test_an_all_atom_model_on_unconstrained_data_trained_past_its_best_gets_no_line(alanine_models, tmp_path, capsys):
    """Trained until its validation loss rose (a high learning rate on little data), on unconstrained data: nothing
    lacks, no line."""
    md = alanine_models["all"].parent.parent / "md"
    trained = tmp_path / "model"
    options = ["--selection", "all", "--steps", "200", "--batch-size", "16", "--couplings", "1", "--hidden", "8"]
    paths = [str(path) for path in sorted(md.glob("replica-*.nc"))]
    assert main(["train", *paths, *options, "--learning-rate", "1e-2", "--no-progress", "--output", str(trained)]) == 0
    history = json.loads((trained / "summary.json").read_text())["history"]
    assert len(history["step"]) > 1 and np.argmin(history["valid_loss"]) < len(history["step"]) - 1
    capsys.readouterr()  # what train printed
    out = tmp_path / "sample"
    command = ["sample", str(trained / "model.pt"), "alanine-dipeptide", *TINY_MOLECULAR, "--no-progress"]
    assert main([*command, "--output", str(out)]) == 0
    assert model_lines(capsys) == []
    model_check = read_summary(out)["model_for_sampling"]
    assert model_check["lacks"] == [] and {f["status"] for f in model_check["checked"].values()} == {"has"}
    assert model_check["checked"]["unconstrained_data"]["detail"] == (
        "2 of 2 training and validation trajectories simulated without constraints"  # one of each
    )


def test_heavy_atom_model_samples_alanine_dipeptide_with_placed_hydrogens(alanine_models, tmp_path, capsys):
    import mdtraj

    out = tmp_path / "sample"
    assert (
        main(
            [
                "sample",
                str(alanine_models["heavy"]),
                "alanine-dipeptide",
                "--chains",
                "3",
                "--samples",
                "6",
                "--warmup",
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
    summary = read_summary(out)
    assert summary["target"]["placed_hydrogens"] == 12 and summary["target"]["dimension"] == 24 + 36
    assert summary["flow_importance_weights"].startswith("not defined")
    # `--method auto`, the default: the flow cannot draw the placed hydrogens, so latent HMC alone, and why.
    choice = summary["method_choice"]
    assert (
        choice["reason"] == "placed_hydrogens"
        and choice["chosen"] == "latent-hmc"
        and set(summary["kernels"]) == {"hmc"}
    )
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("method auto: ")]
    assert "latent HMC alone" in line and "leaves 12 hydrogens out" in line and "--selection all" in line
    traj = mdtraj.load(str(out / "samples.nc"), top=str(out / "topology.pdb"))
    assert traj.n_frames == 18 and traj.n_atoms == 22
    # Every placed hydrogen sits at a bond length from its atom.
    bonds = np.array(
        [[a.index, b.index] for a, b in traj.topology.bonds if "H" in (a.element.symbol, b.element.symbol)]
    )
    lengths = mdtraj.compute_distances(traj, bonds)
    assert len(bonds) == 12 and 0.09 < lengths.min() and lengths.max() < 0.12
    assert np.isfinite(summary["potential_energy_kT"]["mean"])


def test_heavy_atom_model_resumes_to_the_same_samples(alanine_models, tmp_path, monkeypatch):
    """Interrupted in warm-up and resumed: the same samples of all 22 atoms, hydrogens included."""
    import mdtraj

    import neuralct.workflows.sample as sampling_run

    args = [
        "sample",
        str(alanine_models["heavy"]),
        "alanine-dipeptide",
        "--chains",
        "2",
        "--samples",
        "4",
        "--warmup",
        "8",
        "--leapfrog-steps",
        "2",
        "--checkpoint-every",
        "3",
        "--no-progress",
    ]
    assert main([*args, "--output", str(tmp_path / "whole")]) == 0
    original = interrupt_iteration(monkeypatch, 5)
    assert main([*args, "--output", str(tmp_path / "split")]) == 130
    monkeypatch.setattr(sampling_run, "iterate", original)
    assert main([*args, "--output", str(tmp_path / "split")]) == 0
    whole, split = (
        mdtraj.load(str(tmp_path / name / "samples.nc"), top=str(tmp_path / name / "topology.pdb"))
        for name in ("whole", "split")
    )
    assert whole.n_atoms == 22 and np.array_equal(whole.xyz, split.xyz)


@pytest.mark.parametrize(
    "which,system,message",
    [
        (
            "backbone",
            "alanine-dipeptide",
            "is not a hydrogen bonded to one of its atoms; "
            "the potential energy needs every atom: train with `--selection heavy`",
        ),
        ("all", "harmonic-chain", "trained on a system of 22"),
        ("all", None, "needs the SYSTEM"),
    ],
)
def test_molecular_bad_input_is_one_line(alanine_models, tmp_path, capsys, which, system, message):
    args = (
        ["sample", str(alanine_models[which])]
        + ([system] if system else [])
        + [*SAMPLE, "--output", str(tmp_path / "x")]
    )
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("method", ["independence", "mixed"])
def test_independence_moves_need_a_model_of_every_atom(alanine_models, tmp_path, capsys, method):
    assert (
        main(
            [
                "sample",
                str(alanine_models["heavy"]),
                "alanine-dipeptide",
                "--method",
                method,
                *SAMPLE,
                "--output",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "leaves 12 hydrogens out" in err and "--method latent-hmc" in err, err
    assert not (tmp_path / "x").exists()


def test_a_system_of_another_force_field_is_sampled_and_said_to_be_another(alanine_models, tmp_path, capsys):
    """The model's frames were simulated with amber99sbildn.xml: the same molecule with amber14-all.xml is sampled (the
    chains are exact for it) with a note saying the samples are of that force field; the model's own is not noted."""
    from pathlib import Path

    from neuralct.md.systems import systems_dir
    from neuralct.model.transformation import load

    other = tmp_path / "amber14.yaml"
    other.write_text(
        f"kind: pdb\ndescription: alanine dipeptide, amber14\npdb: {systems_dir() / 'alanine_dipeptide.pdb'}\n"
        "forcefield: [amber14-all.xml]\n"
    )
    assert load(alanine_models["heavy"]).metadata["molecule"]["training_forcefield"] == ["amber99sbildn.xml"]
    for system, noted in (("alanine-dipeptide", False), (str(other), True)):
        out = tmp_path / Path(system).stem
        assert main(["sample", str(alanine_models["heavy"]), system, *SAMPLE, "--output", str(out)]) == 0
        printed = capsys.readouterr().out
        target = read_summary(out)["target"]
        assert ("forcefield_note" in target) is noted and (f"note: {system} is built with" in printed) is noted
    assert target["forcefield"] == ["amber14-all.xml"]
    assert "built with amber14-all.xml, the model's training frames were simulated with amber99sbildn.xml" in printed


def test_a_system_in_explicit_water_is_refused_with_what_works_instead(alanine_models, tmp_path, capsys):
    args = ["sample", str(alanine_models["heavy"]), "alanine-dipeptide", "--solvent", "tip3p", *SAMPLE]
    assert main([*args, "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "explicit solvent" in err and "the flow models the solute" in err and "--solvent obc2" in err, err
    assert not (tmp_path / "x").exists()


def test_a_system_prepared_elsewhere_is_sampled_from_its_files_and_its_water_refused(alanine_models, tmp_path, capsys):
    """AMBER files written by ParmEd: the vacuum dipeptide samples as the bundled one does (same energies); in water,
    the same one-line refusal as a system built in water; in a box without water (GROMACS files), one saying so."""
    from tests.md.test_inputs import solvated_dipeptide, vacuum_dipeptide, write_inputs

    write_inputs(tmp_path, *vacuum_dipeptide(), "vacuum")
    write_inputs(tmp_path, *solvated_dipeptide(), "water")
    short = ["--chains", "3", "--samples", "4", "--warmup", "3", "--leapfrog-steps", "2", "--step-size", "0.01"]
    short += ["--kish-samples", "10", "--no-progress"]
    model = str(alanine_models["all"])
    energies = {}
    for name, system in (("bundled", ["alanine-dipeptide"]), ("amber", [str(tmp_path / "vacuum.prmtop")])):
        system = system if name == "bundled" else [*system, str(tmp_path / "vacuum.rst7")]
        assert main(["sample", model, *system, *short, "--output", str(tmp_path / name)]) == 0
        energies[name] = read_summary(tmp_path / name)["potential_energy_kT"]["mean"]
    assert energies["amber"] == pytest.approx(energies["bundled"], rel=1e-4)
    assert " at 300 K (the model's training temperature): acceptance" in capsys.readouterr().out

    # Water is what is refused, before what else the box or the System has that sample could not take either.
    import openmm as mm

    write_inputs(tmp_path, *solvated_dipeptide(box_nm=1.8), "small")  # narrower than twice the 1 nm cutoff
    constrained = mm.XmlSerializer.deserialize((tmp_path / "water.xml").read_text())
    constrained.addConstraint(0, 1, 0.1)
    (tmp_path / "constrained.xml").write_text(mm.XmlSerializer.serialize(constrained))
    for water in (("water.prmtop", "water.rst7"), ("small.prmtop", "small.rst7"), ("constrained.xml", "water.pdb")):
        files = [str(tmp_path / name) for name in water]
        assert main(["sample", model, *files, *short, "--output", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "explicit solvent" in err and "the flow models the solute" in err, err
        assert not (tmp_path / "x").exists()
    # A GROMACS system always has a box: without solvent it is refused for that, not called explicit solvent.
    gromacs = [str(tmp_path / "vacuum.top"), str(tmp_path / "vacuum.gro")]
    assert main(["sample", model, *gromacs, *short, "--output", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no solvent but has a periodic box" in err, err
    assert not (tmp_path / "g").exists()


def within_random_lengths(evaluations, trajectories, chains, length):
    """Whether ``evaluations`` fit ``trajectories`` of all ``chains``, each of 1 to 2 ``length`` - 1 leapfrog steps
    drawn once for all chains (the kernel's random trajectory length, mean ``length``)."""
    return evaluations % chains == 0 and trajectories * chains <= evaluations <= trajectories * chains * (
        2 * length - 1
    )


#: SAMPLE with the trajectory length chosen in warm-up (the default), which needs a warm-up of 24 or more.
AUTO_LENGTH = [*SAMPLE[:4], "--warmup", "24", "--leapfrog-steps", "auto", *SAMPLE[8:]]


def test_the_default_trajectory_length_is_chosen_in_warm_up_and_needs_a_warm_up_to_choose_it(
    toy_model, tmp_path, capsys
):
    from neuralct.cli import build_parser
    from neuralct.sampling import HamiltonianMonteCarlo

    parser = build_parser()
    assert parser.parse_args(["sample", str(toy_model)]).leapfrog_steps == "auto"
    shortest = HamiltonianMonteCarlo.WARMUP_TO_CHOOSE_LENGTH
    sample_help = next(a for a in parser._actions if a.dest == "command").choices["sample"].format_help()
    assert f"auto needs --warmup {shortest} or more" in " ".join(sample_help.split())
    out = tmp_path / "short"
    short = [*SAMPLE[:4], "--warmup", str(shortest - 1), *SAMPLE[8:]]
    assert main(["sample", str(toy_model), *short, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"--leapfrog-steps auto needs --warmup {shortest} or more" in err
    assert "or give --leapfrog-steps a number" in err and not out.exists()
    # A number needs no such warm-up; independence moves have no trajectories at all.
    assert main(["sample", str(toy_model), *short, "--leapfrog-steps", "3", "--output", str(out)]) == 0
    independence = ["--method", "independence", "--mass-matrix", "unit", "--output", str(tmp_path / "ind")]
    assert main(["sample", str(toy_model), *short, *independence]) == 0


def test_the_trajectory_length_can_be_chosen_in_warm_up(toy_model, tmp_path, capsys):
    """`--leapfrog-steps auto`: the length tried best in warm-up is fixed for sampling, recorded and printed."""
    out = tmp_path / "auto"
    argv = ["sample", str(toy_model), "--method", "latent-hmc", *AUTO_LENGTH]
    argv += ["--output", str(out)]
    assert main(argv) == 0
    assert "leapfrog steps chosen in warm-up: latent HMC " in capsys.readouterr().out
    summary = read_summary(out)
    chosen = summary["leapfrog_steps"]["hmc"]
    rates = summary["leapfrog_choice"]["hmc"]["expected_squared_jump_per_evaluation"]
    assert summary["settings"]["leapfrog_steps"] == "auto" and rates[str(chosen)] == max(rates.values())
    assert within_random_lengths(summary["kernels"]["hmc"]["energy_evaluations"], 30, 6, chosen)


def test_auto_is_the_default_and_chooses_its_cycle_in_warm_up(toy_model, tmp_path, capsys):
    """Without `--method`: the flow's Kish fraction admits independence moves, the warm-up picks how many follow each
    (auto-length) trajectory, and the frozen cycle is what sampling ran; printed, recorded, and in the run identity."""
    out = tmp_path / "auto"
    argv = ["sample", str(toy_model), *AUTO_LENGTH, "--output", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = read_summary(out)
    choice = summary["method_choice"]
    moves, length = choice["independence_moves_per_hmc_trajectory"], summary["leapfrog_steps"]["hmc"]
    assert summary["settings"]["method"] == "auto" and choice["reason"] == "warmup_measured" and moves > 0
    assert choice["kish_ess_fraction"] == summary["flow_importance_weights"]["kish_ess_fraction"] >= 0.03
    model = choice["measured"]["ess_per_evaluation_model"]
    assert model[str(moves)] == max(model.values())
    line = next(line for line in printed.splitlines() if line.startswith("method auto: "))
    assert f"{moves} independence moves from the flow per latent HMC trajectory" in line
    assert f"Kish's ESS fraction {choice['kish_ess_fraction']:.3g}" in line
    # Each of the 30 recorded moves per chain is the cycle's next: a trajectory, then the chosen independence moves.
    trajectories = math.ceil(30 / (moves + 1))
    assert summary["kernels"]["hmc"]["proposals"] == 6 * trajectories
    assert within_random_lengths(summary["kernels"]["hmc"]["energy_evaluations"], trajectories, 6, length)
    assert summary["kernels"]["independence"]["energy_evaluations"] == 6 * (30 - trajectories)
    # Kish's draws count with the warm-up's evaluations, with the starts' and the warm-up moves'.
    assert summary["warmup_energy_evaluations"] >= 50 + 8 * 6 + 6 + 10 * 6
    identity = json.loads((out / "run.json").read_text())["settings"]
    assert identity["method"] == "auto" and identity["method_choice"].startswith("flow admitted at Kish")
    before = snapshot(out)
    assert main(["sample", str(toy_model), "--method", "latent-hmc", *argv[2:]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "method" in err and "--overwrite" in err, err
    assert snapshot(out) == before


def test_an_interrupted_auto_run_resumes_to_the_same_samples(toy_model, tmp_path, monkeypatch):
    """The chosen cycle, the position in it and the flow's Kish figures are checkpointed: the resumed run is the
    uninterrupted one."""
    import neuralct.workflows.sample as sampling_run

    args = ["sample", str(toy_model), *SAMPLE, "--checkpoint-every", "7"]
    assert main([*args, "--output", str(tmp_path / "whole")]) == 0
    original = interrupt_iteration(monkeypatch, 25)
    assert main([*args, "--output", str(tmp_path / "split")]) == 130
    monkeypatch.setattr(sampling_run, "iterate", original)
    assert main([*args, "--output", str(tmp_path / "split")]) == 0
    whole, split = (read_summary(tmp_path / name) for name in ("whole", "split"))
    assert whole["method_choice"]["chosen"] == "mixed" and whole["method_choice"] == split["method_choice"]
    assert whole["flow_importance_weights"] == split["flow_importance_weights"]
    assert whole["kernels"] == split["kernels"]
    assert np.array_equal(
        np.load(tmp_path / "whole" / "samples.npz")["q"], np.load(tmp_path / "split" / "samples.npz")["q"]
    )


@pytest.mark.parametrize("flow", ["below the minimum", "not measured"])
def test_auto_without_a_flow_good_enough_runs_latent_hmc_alone_and_says_why(
    toy_model, tmp_path, capsys, monkeypatch, flow
):
    import neuralct.sampling.mixture

    options = [*SAMPLE]
    if flow == "below the minimum":
        monkeypatch.setattr(neuralct.sampling.mixture, "MIN_KISH_FRACTION", 1.01)  # no flow reaches it
    else:
        options[options.index("--kish-samples") + 1] = "0"
    out = tmp_path / "x"
    assert main(["sample", str(toy_model), *options, "--output", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("method auto: ")]
    summary = read_summary(out)
    choice = summary["method_choice"]
    assert choice["chosen"] == "latent-hmc" and choice["independence_moves_per_hmc_trajectory"] == 0
    assert set(summary["kernels"]) == {"hmc"} and within_random_lengths(summary["energy_evaluations"], 30, 6, 3)
    assert len(lines) == 1 and "latent HMC alone" in lines[0]
    if flow == "below the minimum":
        fraction = summary["flow_importance_weights"]["kish_ess_fraction"]
        assert choice["reason"] == "kish_below_minimum" and choice["kish_ess_fraction"] == fraction
        assert f"too weak for global moves (Kish's ESS fraction of its importance weights {fraction:.3g}" in lines[0]
        assert "a flow trained longer would help" in lines[0] and "--selection all" not in lines[0]
    else:
        assert choice["reason"] == "kish_not_measured" and "flow_importance_weights" not in summary
        assert "--kish-samples 0" in lines[0]


def test_efficiency_counts_the_sampling_phase_and_populations_are_those_of_the_recorded_chains(toy_model, tmp_path):
    """ESS per evaluation is the ESS over the sampling phase's evaluations alone (warm-up excluded), and each basin's
    population and visiting chains are those of the recorded samples, chain by chain."""
    out = tmp_path / "run"
    assert main(["sample", str(toy_model), "--method", "latent-hmc", *SAMPLE, "--output", str(out)]) == 0
    summary, q = read_summary(out), np.load(out / "samples.npz")["q"]
    energy = summary["potential_energy_kT"]
    assert summary["warmup_energy_evaluations"] > 0
    assert energy["ess_per_evaluation"] == pytest.approx(energy["ess"] / summary["energy_evaluations"], rel=1e-12)
    inside = q[:, :, 0] > 0  # samples x chains
    population = summary["populations"]["x1 > 0"]
    if population["population"] is not None:
        assert population["population"] == pytest.approx(inside.mean(), abs=1e-12)
    # A stay begins where a chain is in the basin and was not at the sample before (or starts there).
    entered = inside & ~np.vstack([np.zeros((1, inside.shape[1]), dtype=bool), inside[:-1]])
    assert population["stays"] == int(entered.sum()) and population["stays"] > 0
    assert population["chains_visiting"] == int(inside.any(axis=0).sum())


def test_every_sampling_option_reaches_the_samplers_settings():
    """Each option given on the command line, with a value other than its default, is the sampler's setting."""
    from dataclasses import asdict

    from neuralct.cli import build_parser
    from neuralct.cli.sample import _settings

    given = {
        "method": "hmc",
        "chains": 3,
        "samples": 7,
        "warmup": 30,
        "step_size": 0.2,
        "leapfrog_steps": 5,
        "target_acceptance": 0.8,
        "mass_matrix": "unit",
        "kish_samples": 11,
        "checkpoint_every": 13,
    }
    argv = ["sample", "model.pt", "--no-progress"]
    for name, value in given.items():
        argv += ["--" + name.replace("_", "-"), str(value)]
    assert asdict(_settings(build_parser().parse_args(argv))) == {**given, "progress": False}


def test_the_seed_draws_the_chains(toy_model, tmp_path):
    """The same --seed gives the same samples, another seed others."""
    samples = {}
    for name, seed in (("first", "1"), ("again", "1"), ("other", "2")):
        out = tmp_path / name
        assert main(["sample", str(toy_model), "--method", "latent-hmc", *SAMPLE, "--seed", seed, "-o", str(out)]) == 0
        samples[name] = np.load(out / "samples.npz")["q"]
    np.testing.assert_array_equal(samples["first"], samples["again"])
    assert not np.array_equal(samples["first"], samples["other"])
