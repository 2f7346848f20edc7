"""Beyond alanine dipeptide: the bundled tri-alanine and a non-peptide toy through simulate, train and analyze."""

import json
import os

import numpy as np
import pytest

from neuralct.analysis.colvar import read_colvar
from neuralct.cli import main
from neuralct.errors import NeuralCTError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def simulate_train(folder, system, replicas, jobs, extra=()):
    """Tiny replicas, a model trained on the first, validated on the second."""
    md = folder / "md"
    assert (
        main(
            [
                "simulate",
                system,
                "--length-ns",
                "0.004",
                "--report-ps",
                "0.02",
                "--equilibration-ps",
                "0.2",
                "--replicas",
                str(replicas),
                "--jobs",
                str(jobs),
                "--output",
                str(md),
                "--no-progress",
                *extra,
            ]
        )
        == 0
    )
    paths = [str(md / f"replica-00{r}.nc") for r in range(replicas)]
    assert (
        main(
            [
                "train",
                *paths[:2],
                "--validation-trajectories",
                "1",
                "--steps",
                "10",
                "--batch-size",
                "64",
                "--couplings",
                "2",
                "--hidden",
                "16",
                "--output",
                str(folder / "model"),
                "--no-progress",
            ]
        )
        == 0
    )
    return folder / "model" / "model.pt", paths


@pytest.fixture(scope="module")
def trialanine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trialanine")
    model, paths = simulate_train(folder, "trialanine", 3, 2)
    return folder, model, paths


def test_trialanine_is_simulated_in_implicit_solvent_by_parallel_jobs(trialanine):
    folder, _, _ = trialanine
    summary = json.loads((folder / "md" / "summary.json").read_text())
    assert summary["system_settings"]["solvent"] == "obc2" and summary["n_atoms"] == 42
    assert summary["settings"]["jobs"] == 2 and [r["frames"] for r in summary["replicas"]] == [200] * 3
    # The platform probe ran with the threads each of the two jobs got.
    threads = max(1, os.cpu_count() // 2)
    assert summary["settings"]["threads_per_job"] == summary["platform_probe_threads"] == threads
    assert set(summary["platform_probe_steps_per_second"]) >= {"Reference", "CPU"}


def test_trialanine_end_to_end(trialanine, capsys):
    folder, model, paths = trialanine
    out = folder / "analysis"
    assert main(["analyze", str(model), *paths, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    residues = ["A:ALA2", "A:ALA3", "A:ALA4"]
    assert summary["residues"] == residues and len(summary["dihedrals"]) == 6
    # COLVAR of every trajectory, the CVs of each frame.
    for path in summary["colvar_files"]:
        fields, values = read_colvar(path)
        assert fields[:3] == ["time", "cv1", "cv2"] and values.shape[0] == 200
    for name in ("ramachandran", "dependence", "free_energy", "spectrum"):
        assert (out / summary["figures"][name].split("/")[-1]).read_bytes().startswith(PNG_SIGNATURE)
    table = summary["dependence"]
    assert table["dihedrals"] == [f"{kind} {r}" for r in residues for kind in ("phi", "psi")]
    assert np.array(table["mutual_information_nats"]).shape == (6, 6)
    assert all(0 <= r <= 1 for row in table["circular_correlation"] for r in row)
    # Scores only on the trajectory that neither trained the model nor selected its kept state, in blocks.
    split = summary["split"]
    assert split["trained_the_model"] == [paths[0]] and split["selected_the_kept_state"] == [paths[1]]
    assert {s["trajectory"] for s in split["scored"]} == {paths[2]} and len(split["scored"]) == 4
    assert "blocks" in split["caveat"]
    for method in ("learned_cvs", "tica", "pca", "backbone_dihedrals"):
        assert len(summary[method]["vamp2_per_segment"]) == 4 and summary[method]["vamp2_standard_error"] >= 0
    assert set(summary["states"]) == set(residues)
    assert "alphaR" in summary["conventions"]["state_regions"] and summary["skipped"] == {}
    assert "VAMP-2" in printed and "mutual information with" in printed


def test_one_trajectory_gets_its_cvs_and_block_scores(trialanine):
    folder, model, paths = trialanine
    out = folder / "one"
    assert main(["analyze", str(model), paths[2], "--residues", "3", "--lag-ps", "0.1", "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["residues"] == ["A:ALA3"] and list(summary["states"]) == ["A:ALA3"]
    assert summary["lag_frames"] == 5 and summary["n_scored_segments"] == 4 and "caveat" in summary["split"]
    assert (out / "replica-002.colvar").exists()


def test_a_residue_that_does_not_exist_is_a_one_line_error(trialanine, capsys):
    folder, model, paths = trialanine
    out = folder / "bad"
    assert main(["analyze", str(model), *paths, "--residues", "ALA7", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--residues ALA7" in err and "A:ALA2 A:ALA3 A:ALA4" in err and "\n" not in err
    assert not out.exists()


def test_a_toy_without_backbone_goes_through_with_notes(tmp_path, capsys):
    system = tmp_path / "chain.yaml"
    system.write_text("kind: harmonic-chain\nn: 5\ntethered: false\n")  # a free chain: a molecule without backbone
    model, paths = simulate_train(tmp_path, str(system), 3, 1, ["--platform", "Reference"])
    out = tmp_path / "analysis"
    assert main(["analyze", str(model), *paths, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dihedrals"] == [] and summary["residues"] == []
    assert sorted(summary["skipped"]) == ["backbone_dihedrals", "dependence", "ramachandran", "states"]
    assert summary["learned_cvs"]["vamp2"] is not None and summary["tica"]["vamp2"] is not None
    assert set(summary["figures"]) >= {"free_energy", "spectrum"} and "ramachandran" not in summary["figures"]
    assert len(summary["colvar_files"]) == 3 and "skipped ramachandran" in printed
    biased = tmp_path / "bias"
    assert (
        main(["bias", str(model), str(system), "--length-ns", "0.004", "--no-progress", "--output", str(biased)]) == 0
    )
    assert "no backbone phi torsion" in capsys.readouterr().out
    fields, table = read_colvar(biased / "COLVAR")
    assert fields == ["time", "cv1", "bias", "rbias"] and table.shape == (4, 4)
    assert json.loads((biased / "summary.json").read_text())["phi_torsions"] == {}


def test_a_failing_score_keeps_the_cvs(trialanine, capsys, monkeypatch):
    import neuralct.analysis

    def failing_report(*args, **kwargs):
        raise NeuralCTError("TICA found only 1 linearly independent feature combination")

    monkeypatch.setattr(neuralct.analysis, "cv_quality_report", failing_report)
    folder, model, paths = trialanine
    out = folder / "failing"
    assert main(["analyze", str(model), paths[2], "--modes", "2", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "scores failed: TICA" in err and str(out) in err and "\n" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert "TICA" in summary["skipped"]["scores"]
    assert read_colvar(out / "replica-002.colvar")[1].shape == (200, 3)


def test_trialanine_learned_cvs_are_biased_with_every_backbone_torsion_recorded(trialanine, capsys):
    folder, model, _ = trialanine
    out = folder / "bias"
    assert (
        main(
            [
                "bias",
                str(model),
                "trialanine",
                "--cvs",
                "2",
                "--length-ns",
                "0.004",
                "--grid-margin",
                "3",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    torsions = [f"{kind}_A_ALA{number}" for number in (2, 3, 4) for kind in ("phi", "psi")]
    fields, table = read_colvar(out / "COLVAR")
    assert fields == ["time", "cv1", "cv2", *torsions, "bias", "rbias"] and table.shape == (4, 11)
    assert np.all(np.abs(table[:, 3:9]) <= np.pi)
    summary = json.loads((out / "summary.json").read_text())
    assert (
        list(summary["phi_torsions"]) == ["phi_A_ALA2", "phi_A_ALA3", "phi_A_ALA4"] and "phi_transitions" not in summary
    )
    for suffix in ("A_ALA2", "A_ALA3", "A_ALA4"):
        assert (out / f"fes_phi_psi_reweighted_{suffix}.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "phi_A_ALA3 transitions" in printed
    assert (
        main(
            [
                "bias",
                str(model),
                "trialanine",
                "--cv",
                "phi",
                "--length-ns",
                "0.004",
                "--no-progress",
                "--output",
                str(folder / "phi"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "--cv phi: this system has no torsion phi; its backbone torsions: phi_A_ALA2, psi_A_ALA2," in err
    assert len(err.splitlines()) == 1 and not (folder / "phi").exists()
    # One residue's torsions by their names: the bias acts on them, the others are recorded beside.
    residue = folder / "residue-3"
    argv = ["bias", str(model), "trialanine", "--cv", "phi_A_ALA3,psi_A_ALA3", "--length-ns", "0.004"]
    assert main([*argv, "--report-ps", "1", "--no-progress", "--output", str(residue)]) == 0
    summary = json.loads((residue / "summary.json").read_text())
    assert [grid["name"] for grid in summary["grids"]] == ["phi_A_ALA3", "psi_A_ALA3"]
    fields, table = read_colvar(residue / "COLVAR")
    assert fields[:3] == ["time", "phi_A_ALA3", "psi_A_ALA3"] and "phi_A_ALA2" in fields and table.shape[0] == 4


def test_trialanine_bias_loop_retrains_with_the_time_lagged_objective(trialanine):
    """The loop beyond the dipeptide: bias, retrain on the biased frames by their dynamics, bias the new CV."""
    folder, model, _ = trialanine
    first = folder / "loop-bias1"
    assert (
        main(
            [
                "bias",
                str(model),
                "trialanine",
                "--length-ns",
                "0.01",
                "--report-ps",
                "0.1",
                "--bias-every",
                "5",
                "--platform",
                "Reference",  # `auto` takes the fastest of a timed probe: under load another platform, other frames
                "--no-progress",
                "--output",
                str(first),
            ]
        )
        == 0
    )
    retrained = folder / "loop-model2"
    assert (
        main(
            [
                "train",
                str(first / "trajectory.nc"),
                "--lag-ps",
                "0.2",
                "--vamp-weight",
                "10",
                "--steps",
                "5",
                "--batch-size",
                "16",
                "--couplings",
                "2",
                "--hidden",
                "16",
                "--no-progress",
                "--output",
                str(retrained),
            ]
        )
        == 0
    )
    assert "relaxation_times_ps" in json.loads((retrained / "summary.json").read_text())
    again = folder / "loop-bias2"
    assert (
        main(
            [
                "bias",
                str(retrained / "model.pt"),
                "trialanine",
                "--length-ns",
                "0.004",
                "--platform",
                "Reference",
                "--no-progress",
                "--output",
                str(again),
            ]
        )
        == 0
    )
    assert list(json.loads((again / "summary.json").read_text())["phi_torsions"]) == [
        "phi_A_ALA2",
        "phi_A_ALA3",
        "phi_A_ALA4",
    ]


def test_trialanine_is_sampled_exactly_in_its_own_implicit_solvent(tmp_path):
    """All-atom tri-alanine: latent HMC in the system file's solvent (OBC2), indicators per residue."""
    md = tmp_path / "md"
    assert (
        main(
            [
                "simulate",
                "trialanine",
                "--constraints",
                "none",
                "--timestep-fs",
                "1",
                "--length-ns",
                "0.004",
                "--report-ps",
                "0.02",
                "--equilibration-ps",
                "0.2",
                "--replicas",
                "2",
                "--no-progress",
                "--output",
                str(md),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                str(md / "replica-000.nc"),
                str(md / "replica-001.nc"),
                "--selection",
                "all",
                "--steps",
                "10",
                "--batch-size",
                "64",
                "--couplings",
                "2",
                "--hidden",
                "16",
                "--no-progress",
                "--output",
                str(tmp_path / "model"),
            ]
        )
        == 0
    )
    out = tmp_path / "sample"
    assert (
        main(
            [
                "sample",
                str(tmp_path / "model" / "model.pt"),
                "trialanine",
                "--chains",
                "4",
                "--samples",
                "20",
                "--warmup",
                "10",
                "--leapfrog-steps",
                "3",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["target"]["solvent"] == "obc2"
        and summary["target"]["atoms"] == 42
        and summary["target"]["dimension"] == 120
    )
    # 20 trajectories of all 4 chains, each of 1 to 5 leapfrog steps (a random length of mean 3).
    assert summary["energy_evaluations"] % 4 == 0 and 4 * 20 <= summary["energy_evaluations"] <= 4 * 20 * 5
    assert 0 < summary["kernels"]["hmc"]["acceptance_rate"] <= 1
    assert {f"phi > 0 ({residue})" for residue in ("A:ALA2", "A:ALA3", "A:ALA4")} <= set(summary["indicators"])
    import mdtraj

    assert mdtraj.load(str(out / "samples.nc"), top=str(out / "topology.pdb")).n_frames == 4 * 20
