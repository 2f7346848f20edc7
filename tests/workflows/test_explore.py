"""``neuralct explore`` as a function: the stopping rule, a tiny loop's folders and figures, resume, bad settings."""

import dataclasses
import json
import re

import mdtraj
import numpy as np
import pytest

import neuralct.workflows.explore as explore
from neuralct.analysis import read_colvar
from neuralct.analysis.fes import free_energy_2d, free_energy_2d_errors
from neuralct.analysis.reweighting import count_transitions
from neuralct.data.pairs import rescaled_lagged_pairs
from neuralct.errors import NeuralCTError
from neuralct.md.systems import WaterBox, build_system
from neuralct.units import kT_kj_per_mol
from neuralct.workflows.explore import ExploreSettings, check_settings, run_explore, stopping_verdict
from neuralct.workflows.objective import KINETIC_LEARNING_RATE, KINETIC_STEPS

#: A loop small enough for seconds: 2 x 20 ps of MD, 4 ps rounds, tiny models trained for 10 steps.
TINY = {
    "replicas": 2,
    "unbiased_ns": 0.02,
    "round_ns": 0.004,
    "max_rounds": 2,
    "train_steps": 10,
    "batch_size": 16,
    "architecture": [{"type": "linear", "point": True}, {"type": "point", "n_layers": 1, "hidden": 8, "depth": 1}],
    "retrain_lag_ps": 0.2,
    "bias_report_ps": 0.1,
    "bias_every": 5,
    "platform": "Reference",
    "allow_oscillating_cvs": True,
    "device": "cpu",
    "progress": False,
}


def _phi(transitions, delta_f, error=0.5):
    return {
        "phi_transitions": transitions,
        "delta_F_phi_positive_minus_negative_kj": delta_f,
        "delta_F_standard_error_kj": error,
    }


def test_the_loop_converges_when_every_phi_crossed_in_both_rounds_and_its_difference_settled():
    verdict = stopping_verdict({"phi": _phi(12, 9.6)}, {"phi": _phi(30, 9.1)}, tolerance_kj=1.0)
    assert verdict.converged and verdict.changes_kj == {"phi": pytest.approx(-0.5)}
    moved = stopping_verdict({"phi": _phi(12, 9.6)}, {"phi": _phi(30, 11.0)}, tolerance_kj=1.0)
    assert not moved.converged and "changed by +1.40 kJ/mol" in moved.reason
    # The tolerance is exclusive: a change of exactly the tolerance has not settled.
    assert not stopping_verdict({"phi": _phi(3, 9.0)}, {"phi": _phi(3, 10.0)}, tolerance_kj=1.0).converged
    # Per residue: one residue that moved keeps the loop going.
    two = {"phi_A_ALA2": _phi(5, 4.0), "phi_A_ALA3": _phi(5, 6.0)}
    later = {"phi_A_ALA2": _phi(5, 4.2), "phi_A_ALA3": _phi(5, 8.0)}
    verdict = stopping_verdict(two, later, tolerance_kj=1.0)
    assert not verdict.converged and "phi_A_ALA3" in verdict.reason
    assert stopping_verdict(two, two, tolerance_kj=1.0).converged
    # A change inside the tolerance while the last estimate's block error is not: not settled (explore of
    # alanine dipeptide, seed 0: rounds 3 and 4 gave 8.94 and 7.98 +- 3.42 kJ/mol).
    noisy = stopping_verdict({"phi": _phi(36, 8.94, 0.9)}, {"phi": _phi(9, 7.98, 3.42)}, tolerance_kj=1.0)
    assert not noisy.converged and "its block standard error in the last round is 3.42 kJ/mol" in noisy.reason
    # Seed 1: rounds 1 and 2 gave 6.78 +- 3.93 and 7.25 +- 0.66 kJ/mol: the first is too uncertain to compare with.
    before = stopping_verdict({"phi": _phi(2, 6.78, 3.93)}, {"phi": _phi(84, 7.25, 0.66)}, tolerance_kj=1.0)
    assert not before.converged and "in the round before is 3.93 kJ/mol" in before.reason
    undefined = stopping_verdict({"phi": _phi(36, 8.94)}, {"phi": _phi(9, 8.5, None)}, tolerance_kj=1.0)
    assert not undefined.converged and "is undefined" in undefined.reason


def test_no_verdict_rests_on_a_frozen_run_without_its_own_estimate():
    # Explore of alanine dipeptide with round 0 at 600 K, seed 0: frozen rounds 2-6 pooled settled at 15.91 kJ/mol
    # (the reference 9.23), rounds 2, 5 and 6 with no estimate of their own, their weight in 1.2-1.6 Kish blocks.
    settled = ({"phi": _phi(85, 15.92, 0.9)}, {"phi": _phi(94, 15.91, 0.9)})
    assert stopping_verdict(*settled, tolerance_kj=1.0).converged
    own = [(3, {"phi": _phi(43, 17.05, 4.55)}), (4, {"phi": _phi(21, 14.25, 23.0)})]
    assert stopping_verdict(*settled, tolerance_kj=1.0, pooled_runs=own).converged
    unsampled = _phi(1, None, None) | {"delta_F_not_computed_because": "the weight sits in 1.23 of the 10 blocks"}
    verdict = stopping_verdict(*settled, tolerance_kj=1.0, pooled_runs=[(2, {"phi": unsampled}), *own])
    assert not verdict.converged
    assert verdict.reason == (
        "round 2 gives no F(phi>0) - F(phi<0) of its own (the weight sits in 1.23 of the 10 blocks): a run that "
        "did not sample its bias's ensemble, so the pooled estimate is not trusted"
    )


def test_the_loop_does_not_converge_without_transitions_states_or_a_round_to_compare():
    # A difference that did not change, but one round never crossed phi: no basis for it.
    verdict = stopping_verdict({"phi": _phi(0, None)}, {"phi": _phi(7, 9.0)}, tolerance_kj=1.0)
    assert not verdict.converged and verdict.reason == "no phi transitions in the round before"
    verdict = stopping_verdict({"phi": _phi(4, 9.0)}, {"phi": _phi(0, 9.0)}, tolerance_kj=1.0)
    assert not verdict.converged and verdict.reason == "no phi transitions in the last round"
    assert not stopping_verdict(None, {"phi": _phi(7, 9.0)}, tolerance_kj=1.0).converged
    no_states = stopping_verdict({}, {}, tolerance_kj=1.0)
    assert not no_states.converged and no_states.reason.startswith("no states defined")


def test_settings_that_cannot_run_are_refused_before_any_work():
    system = build_system("alanine-dipeptide")
    with pytest.raises(NeuralCTError, match="^`replicas` must be at least 2"):
        check_settings(ExploreSettings(**{**TINY, "replicas": 1}), system)
    with pytest.raises(NeuralCTError, match="^`retrain_lag_ps` 0.25 is not a whole multiple of the 0.1 ps between"):
        check_settings(ExploreSettings(**{**TINY, "retrain_lag_ps": 0.25}), system)
    with pytest.raises(NeuralCTError, match="^`round_ns` 0.001 leaves fewer than 2 frames"):
        check_settings(ExploreSettings(**{**TINY, "round_ns": 0.001}), system)
    with pytest.raises(NeuralCTError, match="^`unbiased_temperature` 290 K is below `temperature` 300 K"):
        check_settings(ExploreSettings(**{**TINY, "unbiased_temperature": 290.0}), system)
    check_settings(ExploreSettings(**{**TINY, "unbiased_temperature": 300.0}), system)


def test_a_heated_round_zero_is_refused_in_explicit_water():
    water = build_system("alanine-dipeptide", solvent="tip3p", water=WaterBox(padding_nm=0.6, cutoff_nm=0.7))
    check_settings(ExploreSettings(**TINY), water)
    with pytest.raises(NeuralCTError, match="^`unbiased_temperature` 600 K in explicit water: the barostat's water"):
        check_settings(ExploreSettings(**{**TINY, "unbiased_temperature": 600.0}), water)


#: Where each step of the loop writes, from the arguments of the function that runs it.
STEP_FOLDERS = {
    "run_simulation": lambda args, kwargs: args[1],
    "run_metadynamics": lambda args, kwargs: args[2],
    "fit_with_choice": lambda args, kwargs: args[4],
}


def _recording(monkeypatch, calls, interrupt_in=None):
    """Record the folder (``round-N/step``) of each step the loop runs; raise Ctrl-C in ``interrupt_in``."""
    for name, folder_of in STEP_FOLDERS.items():
        original = getattr(explore, name)

        def wrapper(*args, original=original, folder_of=folder_of, **kwargs):
            where = "/".join(folder_of(args, kwargs).parts[-2:])
            calls.append(where)
            if where == interrupt_in:
                raise KeyboardInterrupt
            return original(*args, **kwargs)

        monkeypatch.setattr(explore, name, wrapper)


def test_a_retraining_in_rescaled_time_pairs_the_rounds_frames_by_its_colvar(tmp_path):
    """Each frame of round 1 lasts 0.1 ps exp(rbias/kT): the retraining's pairs are those 0.2 ps of it apart."""
    settings = ExploreSettings(**TINY, retrain_time="rescaled")
    summary = run_explore(build_system("alanine-dipeptide"), settings, tmp_path / "explore", announce=lambda line: None)
    assert summary["retraining"]["time"] == "rescaled"
    fields, table = read_colvar(tmp_path / "explore" / "round-1" / "bias" / "COLVAR")
    trained = json.loads((tmp_path / "explore" / "round-1" / "model" / "summary.json").read_text())
    log_rates = table[:, fields.index("rbias")] / kT_kj_per_mol(300.0)
    first, second, spans = rescaled_lagged_pairs([len(table)], log_rates, 0.1, 0.2)
    train = second < int(round(0.8 * len(table)))
    assert trained["lagged_pairs"]["train"] == int(train.sum())
    kish = spans[train].sum() ** 2 / (spans[train] ** 2).sum() / train.sum()
    assert trained["time"]["training_pairs_kish_fraction"] == pytest.approx(kish, rel=1e-5)
    assert trained["time"]["bias_from"].endswith("round-1/bias/COLVAR")
    with pytest.raises(NeuralCTError, match="`retrain_time` must be simulation or rescaled"):
        check_settings(ExploreSettings(**TINY, retrain_time="wall-clock"), build_system("alanine-dipeptide"))


def test_a_tiny_loop_writes_its_rounds_resumes_after_an_interruption_and_skips_what_finished(tmp_path, monkeypatch):
    system, settings, out = build_system("alanine-dipeptide"), ExploreSettings(**TINY), tmp_path / "explore"
    calls = []
    _recording(monkeypatch, calls, interrupt_in="round-1/model")
    with pytest.raises(KeyboardInterrupt):
        run_explore(system, settings, out, announce=lambda line: None)
    assert calls == ["round-0/md", "round-0/model", "round-1/bias", "round-1/model"]
    finished = {
        path: path.read_bytes() for path in out.rglob("*") if path.is_file() and "round-1/model" not in str(path)
    }

    calls.clear()
    monkeypatch.undo()
    _recording(monkeypatch, calls)
    lines = []
    summary = run_explore(system, settings, out, announce=lines.append)
    # Only what the interruption left undone ran again: the round-1 model, then round 2 (the last: no model).
    assert calls == ["round-1/model", "round-2/bias"]
    assert all(path.read_bytes() == content for path, content in finished.items())

    assert [entry["round"] for entry in summary["rounds"]] == [0, 1, 2] and len(lines) == 3
    assert json.loads((out / "summary.json").read_text()) == summary
    unbiased = summary["rounds"][0]
    expected = 0
    for path in sorted((out / "round-0" / "md").glob("replica-*.nc")):
        frames = mdtraj.load(str(path), top=str(out / "round-0" / "md" / "topology.pdb"))
        expected += count_transitions(mdtraj.compute_phi(frames)[1][:, 0])
    assert unbiased["phi_transitions"] == expected and unbiased["ns_simulated"] == pytest.approx(0.04)
    assert unbiased["objective"]["objective"] == "density"
    first, last = summary["rounds"][1], summary["rounds"][2]
    fields, table = read_colvar(out / "round-1" / "bias" / "COLVAR")
    assert first["phi_transitions"] == count_transitions(table[:, fields.index("phi")])
    assert first["phi_transitions_per_ns"] == pytest.approx(first["phi_transitions"] / 0.004)
    assert set(first["phi_torsions"]["phi"]) >= {"delta_F_phi_positive_minus_negative_kj", "delta_F_standard_error_kj"}
    assert first["objective"]["objective"] == "kinetic" and first["objective"]["lag_ps"] == 0.2
    assert first["objective"]["vamp_weight"] == 100
    assert first["width_fraction"] == 0.06 and last["width_fraction"] == explore.LATER_WIDTH_FRACTION
    assert last["model"] is None and last["biased_model"] == str(out / "round-1" / "model" / "model.pt")
    assert summary["final_model"] == last["biased_model"]
    assert summary["converged"] == last["verdict"]["converged"]
    if not summary["converged"]:
        assert summary["stopped_because"].startswith("did not converge in 2 round(s)")
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert [cv["name"] for cv in manifest["cvs"]] == summary["exported_cvs"] == ["cv1", "cv2"]
    assert (out / "export" / "plumed.dat").exists() and (out / "export" / "cv1.pt").exists()

    # A finished loop rerun runs nothing again and gives the same summary.
    calls.clear()
    assert run_explore(system, settings, out, announce=lambda line: None) == summary and calls == []


def test_a_round_that_drives_phi_has_its_bias_frozen_and_the_frozen_rounds_pool_their_frames(tmp_path, monkeypatch):
    # The tiny rounds cannot cross phi; the rule that a round drove every phi is what is stood in for.
    monkeypatch.setattr(explore, "_drives_every_phi", lambda torsions, rate: True)
    system, out = build_system("alanine-dipeptide"), tmp_path / "explore"
    settings = ExploreSettings(**(TINY | {"max_rounds": 3}))
    calls, lines, pooled = [], [], []
    _recording(monkeypatch, calls)
    original_pooled = explore._pooled_phi_figures

    def recording_pooled(angles, weights, ns, kT):
        pooled.append((angles, weights, ns))
        return original_pooled(angles, weights, ns, kT)

    monkeypatch.setattr(explore, "_pooled_phi_figures", recording_pooled)
    summary = run_explore(system, settings, out, announce=lines.append)
    # No retraining after the frozen round: its model's CV is biased, with its bias, in the rounds after it.
    assert calls == ["round-0/md", "round-0/model", "round-1/bias", "round-2/bias", "round-3/bias"]
    rounds = summary["rounds"]
    assert [entry["kind"] for entry in rounds[1:]] == ["metadynamics"] + ["frozen bias of round 1"] * 2
    assert all(entry["biased_model"] == str(out / "round-0" / "model" / "model.pt") for entry in rounds[1:])
    assert rounds[1]["model"] is None and summary["final_model"] == rounds[-1]["biased_model"]
    metadynamics_bias = np.load(out / "round-1" / "bias" / "bias.npy")
    for index in (2, 3):
        run = json.loads((out / f"round-{index}" / "bias" / "summary.json").read_text())["settings"]
        assert run["frozen_bias_from"] == str(out / "round-1" / "bias") and run["seed"] == index
        assert run["width_fraction"] == 0.06  # round 1's width, whose bias it is
        assert np.array_equal(np.load(out / f"round-{index}" / "bias" / "bias.npy"), metadynamics_bias)
    assert rounds[2]["pooled"]["rounds"] == [2] and rounds[3]["pooled"]["rounds"] == [2, 3]
    # Round 3's estimate is over the frames of both frozen rounds, run by run, each frame with its weight.
    angles, weights, ns = pooled[-1]
    rows = [len(read_colvar(out / f"round-{index}" / "bias" / "COLVAR")[1]) for index in (2, 3)]
    assert [len(series) for series in angles["phi"]] == rows and len(weights) == sum(rows)
    assert ns == pytest.approx(rounds[2]["ns_simulated"] + rounds[3]["ns_simulated"])
    assert summary["final_estimate"] == rounds[3]["pooled"]
    assert rounds[2]["verdict"]["reason"] == "one round: nothing to compare with yet"
    # These tiny frozen runs never cross phi: none has an estimate of its own, and the verdict says so.
    assert rounds[3]["verdict"]["reason"].startswith("round 2 gives no F(phi>0) - F(phi<0) of its own (phi never")
    assert "frozen rounds 2, 3 pooled" in lines[-1]
    # The phi/psi surface of the frozen rounds pooled, each frame weighed exactly by the frozen bias.
    surfaces = ["free-energy/fes_phi_psi_reweighted.npy", "free-energy/fes_phi_psi_reweighted_error.npy"]
    assert list(summary["final_surfaces"]) == surfaces
    tables = [read_colvar(out / f"round-{index}" / "bias" / "COLVAR") for index in (2, 3)]
    phi, psi, rbias = (
        np.concatenate([table[:, fields.index(name)] for fields, table in tables]) for name in ("phi", "psi", "rbias")
    )
    kT = kT_kj_per_mol(300.0)
    expected, _, _ = free_energy_2d(
        phi, psi, bins=40, kT=kT, range=((-np.pi, np.pi), (-np.pi, np.pi)), weights=np.exp((rbias - rbias.max()) / kT)
    )
    np.testing.assert_allclose(np.load(out / "free-energy" / "fes_phi_psi_reweighted.npy"), expected, rtol=1e-12)
    errors = free_energy_2d_errors(
        phi, psi, 40, kT, ((-np.pi, np.pi), (-np.pi, np.pi)), weights=np.exp((rbias - rbias.max()) / kT)
    )
    np.testing.assert_allclose(np.load(out / "free-energy" / "fes_phi_psi_reweighted_error.npy"), errors, rtol=1e-12)


def _two_frozen_runs(folder):
    """Two frozen rounds' COLVARs (cv1, phi, psi, bias, rbias) in ``folder``: their phi and bias, and the run folders.
    Run 1 ends in core set B, run 2 starts in A: one after another they would show a transition that never was."""
    from neuralct.analysis.colvar import write_colvar

    phis = [np.array([-2.0, -1.5, 1.0, 1.2, -1.0, 0.9]), np.array([-2.5, -2.0, 1.1, 1.0])]
    biases = [np.array([9.0, 8.0, 1.0, 0.5, 7.0, 2.0]), np.array([9.5, 8.5, 1.5, 0.0])]
    runs = []
    for number, (phi, bias) in enumerate(zip(phis, biases)):
        run = folder / f"round-{number + 2}" / "bias"
        run.mkdir(parents=True)
        table = np.column_stack([phi * 0.1, phi, np.zeros_like(phi), bias, bias - 3.0])
        write_colvar(run / "COLVAR", np.arange(len(phi), dtype=float), table, ["cv1", "phi", "psi", "bias", "rbias"])
        runs.append(run)
    return phis, biases, runs


def test_the_frozen_rounds_pool_their_frames_with_exact_weights_and_count_transitions_run_by_run(tmp_path):
    kT = kT_kj_per_mol(300.0)
    phis, biases, runs = _two_frozen_runs(tmp_path)
    figures = explore._frozen_estimate(runs, ExploreSettings(bias_report_ps=1.0), ["phi"])["phi"]
    assert figures["phi_transitions"] == count_transitions(phis[0]) + count_transitions(phis[1]) == 4
    assert figures["phi_transitions_per_ns"] == pytest.approx(4 / 0.010)
    phi, bias = np.concatenate(phis), np.concatenate(biases)
    weights = np.exp(bias / kT)
    expected = -kT * np.log(weights[phi > 0].sum() / weights[phi <= 0].sum())
    assert figures["delta_F_phi_positive_minus_negative_kj"] == pytest.approx(expected, rel=1e-9)


def test_a_last_round_that_drives_phi_says_no_frozen_round_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr(explore, "_drives_every_phi", lambda torsions, rate: True)
    settings = ExploreSettings(**(TINY | {"max_rounds": 1}))
    summary = run_explore(build_system("alanine-dipeptide"), settings, tmp_path / "explore", announce=lambda line: None)
    last = summary["rounds"][-1]
    assert last["kind"] == "metadynamics" and last["model"] is None
    assert last["verdict"]["reason"] == "the CV drove every phi, but no round is left to run under its frozen bias"
    assert not summary["converged"] and summary["final_estimate"] is None and summary["final_surfaces"] == {}


def test_a_heated_round_zero_runs_hot_learns_kinetic_cvs_and_hands_the_rounds_the_temperature(tmp_path, monkeypatch):
    calls = []
    _recording(monkeypatch, calls)
    loads = []
    original_load = explore.load_trajectories

    def recording_load(paths, **kwargs):
        loads.append(kwargs["temperature"])
        return original_load(paths, **kwargs)

    monkeypatch.setattr(explore, "load_trajectories", recording_load)
    pooled_kT = []
    original_pooled = explore._pooled_phi_figures

    def recording_pooled(angles, weights, ns, kT):
        pooled_kT.append(kT)
        return original_pooled(angles, weights, ns, kT)

    monkeypatch.setattr(explore, "_pooled_phi_figures", recording_pooled)
    # Round 0 asks for the data's choice; these tiny trajectories are too short for the kinetic objective to be
    # chosen, so it is asked for outright, to see how such a model is trained.
    asked, schedules = [], []
    original_choose, original_fit = explore.choose_objective, explore.fit_with_choice

    def recording_choose(data, n_validation, **objective):
        asked.append(objective)
        return original_choose(data, n_validation, **(objective or {"objective": "kinetic"}))

    def recording_fit(data, choice, architecture, training, *args, **kwargs):
        schedules.append((training.steps, training.learning_rate))
        # The schedule asked for is recorded; 10 of its steps are run.
        return original_fit(data, choice, architecture, dataclasses.replace(training, steps=10), *args, **kwargs)

    monkeypatch.setattr(explore, "choose_objective", recording_choose)
    monkeypatch.setattr(explore, "fit_with_choice", recording_fit)
    settings = ExploreSettings(**(TINY | {"max_rounds": 2, "unbiased_temperature": 450.0}))
    out, lines = tmp_path / "explore", []
    summary = run_explore(build_system("alanine-dipeptide"), settings, out, announce=lines.append)
    assert calls == ["round-0/md", "round-0/model", "round-1/bias", "round-1/model", "round-2/bias"]
    md = json.loads((out / "round-0" / "md" / "summary.json").read_text())
    assert md["settings"]["temperature"] == 450.0
    # Round 0's frames are read at the temperature they ran at (their momenta), the biased ones at the rounds'.
    assert loads == [450.0, 300.0]
    unbiased = summary["rounds"][0]
    # Round 0's model is the data's choice, trained with its objective's schedule; the retraining as before.
    assert asked == [{}, {"lag_ps": settings.retrain_lag_ps, "vamp_weight": 100}]
    assert unbiased["temperature_k"] == 450.0 and unbiased["objective"]["objective"] == "kinetic"
    assert schedules == [(KINETIC_STEPS, KINETIC_LEARNING_RATE), (settings.train_steps, 1e-3)]
    assert lines[0].startswith("round 0, unbiased MD at 450 K (0.04 ns): ")
    for index in (1, 2):
        run = json.loads((out / f"round-{index}" / "bias" / "summary.json").read_text())["settings"]
        assert run["temperature"] == 300.0
    # Round 0's free-energy difference is that of its own ensemble (kT at 450 K), the frozen rounds' at 300 K.
    assert pooled_kT == [pytest.approx(kT_kj_per_mol(450.0), rel=1e-12)]


def test_given_trajectories_of_another_engine_are_round_zero_instead_of_its_md(
    tmp_path, monkeypatch, plain_openmm_alanine
):
    """Plain OpenMM's DCD (no time stamps) and XTC are round 0: read, counted and trained on; no MD runs."""
    data = plain_openmm_alanine
    files = (str(data / "A.dcd"), str(data / "B.xtc"))
    settings = ExploreSettings(
        **(TINY | {"data": files, "data_topology": str(data / "ala2.pdb"), "data_frame_ps": 0.1})
    )
    calls, lines = [], []
    _recording(monkeypatch, calls)
    out = tmp_path / "explore"
    summary = run_explore(build_system("alanine-dipeptide"), settings, out, announce=lines.append)
    assert calls == ["round-0/model", "round-1/bias", "round-1/model", "round-2/bias"]
    assert not (out / "round-0" / "md").exists()
    unbiased = summary["rounds"][0]
    expected = 0
    for name in files:
        expected += count_transitions(mdtraj.compute_phi(mdtraj.load(name, top=str(data / "ala2.pdb")))[1][:, 0])
    assert unbiased["phi_transitions"] == expected and unbiased["ns_simulated"] == pytest.approx(0.04)
    assert unbiased["given_data"] and unbiased["run"] == ", ".join(files)
    assert unbiased["objective"]["objective"] == "density"
    assert lines[0].startswith("round 0, the given unbiased trajectories at 300 K (0.04 ns): ")
    model = json.loads((out / "round-0" / "model" / "summary.json").read_text())
    assert model["trajectories"] == list(files)


def test_given_trajectories_are_refused_before_any_work_unless_the_loop_can_use_them(tmp_path, plain_openmm_alanine):
    data = plain_openmm_alanine
    given = TINY | {"data": (str(data / "A.dcd"), str(data / "B.xtc")), "data_topology": str(data / "ala2.pdb")}
    system = build_system("alanine-dipeptide")
    # A DCD holds no time: its frames' spacing must be given, and must agree with the XTC's stamps.
    with pytest.raises(NeuralCTError, match=r"A\.dcd holds no time stamps; .* or the time between their frames \(`d"):
        check_settings(ExploreSettings(**given), system)
    with pytest.raises(NeuralCTError, match=r"B\.xtc has frames 0\.1 ps apart but .*A\.dcd 0\.2 ps"):
        check_settings(ExploreSettings(**(given | {"data_frame_ps": 0.2})), system)
    check_settings(ExploreSettings(**(given | {"data_frame_ps": 0.1})), system)
    # One replica given is enough (its last 20 % validates); the data's atoms must be the system's.
    check_settings(ExploreSettings(**(given | {"data": given["data"][1:], "replicas": 1})), system)
    with pytest.raises(NeuralCTError, match="^system trialanine has 42 atoms but the `data` are of a system of 22"):
        check_settings(ExploreSettings(**(given | {"data_frame_ps": 0.1})), build_system("trialanine"))
    with pytest.raises(NeuralCTError, match="^`data_topology` and `data_frame_ps` describe `data`"):
        check_settings(ExploreSettings(**(TINY | {"data_frame_ps": 0.1})), system)


def _breaking_down_at(monkeypatch, report):
    """Make the metadynamics of round 1 break down (a stand-in grid exit) in its ``report``-th report interval."""
    import neuralct.workflows.bias as bias
    from neuralct.errors import RunBrokeDown

    checks = []
    original = bias._check_inside

    def check(values, variables, names, simulation):
        checks.append(None)
        if len(checks) == report:
            raise RunBrokeDown("cv1 left its grid (a stand-in)", "rerun ...")
        original(values, variables, names, simulation)

    monkeypatch.setattr(bias, "_check_inside", check)


def test_a_round_that_breaks_down_ends_there_and_its_frames_before_it_train_the_next_cv(tmp_path, monkeypatch):
    _breaking_down_at(monkeypatch, 35)
    system, out = build_system("alanine-dipeptide"), tmp_path / "explore"
    calls, lines = [], []
    _recording(monkeypatch, calls)
    summary = run_explore(system, ExploreSettings(**TINY), out, announce=lines.append)
    assert calls == ["round-0/md", "round-0/model", "round-1/bias", "round-1/model", "round-2/bias"]
    broken = summary["rounds"][1]
    assert broken["ended_early"] == "cv1 left its grid (a stand-in) after 34 reports"
    assert broken["ns_simulated"] == pytest.approx(0.0034)
    assert broken["verdict"]["reason"].startswith("the round ended early (cv1 left its grid (a stand-in) after 34")
    assert "; ended early: cv1 left its grid (a stand-in) after 34 reports" in lines[1]
    # The model of round 1 learned from the 34 frames before it (the last 20 % validate).
    model = json.loads((out / "round-1" / "model" / "summary.json").read_text())
    assert model["trajectories"] == [str(out / "round-1" / "bias" / "trajectory.nc")]
    assert model["frames"] == 34
    assert summary["rounds"][2]["biased_model"] == str(out / "round-1" / "model" / "model.pt")
    assert summary["rounds"][2]["ended_early"] is None


def test_the_verdict_on_a_last_round_that_ended_early_promises_no_cv_learned_after_it():
    from neuralct.workflows.explore import _after_metadynamics

    biased = {"phi_torsions": {}, "ended_early": "cv1 left its grid after 4 reports"}
    for last, then in ((False, "a CV is learned from its frames"), (True, "no round is left to learn a CV from")):
        _, verdict = _after_metadynamics(biased, ExploreSettings(**TINY), last_round=last)
        assert not verdict.converged and verdict.reason.startswith("the round ended early (cv1 left its grid after 4")
        assert then in verdict.reason


def test_a_round_that_breaks_down_with_too_few_frames_to_learn_from_stops_the_loop(tmp_path, monkeypatch):
    _breaking_down_at(monkeypatch, 5)
    with pytest.raises(NeuralCTError) as error:
        run_explore(build_system("alanine-dipeptide"), ExploreSettings(**TINY), tmp_path / "out", lambda line: None)
    assert str(error.value) == (
        "round 1 ended early (cv1 left its grid (a stand-in) after 4 reports), and no CV can be learned from its "
        "frames (only 3 training frames for 24 coordinates (need more than 24)); rerun with another `seed`"
    )


def test_a_round_that_breaks_down_at_once_stops_the_loop_in_one_line_naming_what_explore_can_change(
    tmp_path, monkeypatch
):
    _breaking_down_at(monkeypatch, 1)
    with pytest.raises(NeuralCTError) as error:
        run_explore(build_system("alanine-dipeptide"), ExploreSettings(**TINY), tmp_path / "out", lambda line: None)
    assert str(error.value) == (
        "round 1: cv1 left its grid (a stand-in) before its first report; rerun with another `seed`"
    )


def test_round_zero_md_that_blows_up_stops_the_loop_in_one_line_naming_what_explore_can_change(tmp_path, monkeypatch):
    original = ExploreSettings.simulation
    # 20 fs steps blow up; the replicas run in worker processes, which hand the error back.
    monkeypatch.setattr(
        ExploreSettings, "simulation", lambda self: dataclasses.replace(original(self), timestep_fs=20.0)
    )
    with pytest.raises(NeuralCTError) as error:
        run_explore(build_system("alanine-dipeptide"), ExploreSettings(**TINY), tmp_path / "out", lambda line: None)
    assert re.fullmatch(
        r"round 0's MD: the simulation blew up \((kinetic temperature \S+ K|coordinates became NaN) at frame \d+\); "
        r"check the structure and its force field, or rerun with another `seed`",
        str(error.value),
    )


def test_a_round_drives_phi_from_exactly_the_freeze_rate_and_only_when_every_phi_reaches_it():
    """`freeze_rate_per_ns` is the rate from which a bias is frozen: reached by every backbone phi, not by one."""
    at_rate = {"phi": {"phi_transitions_per_ns": 30.0}}
    assert explore._drives_every_phi(at_rate, 30.0)
    assert not explore._drives_every_phi({"phi": {"phi_transitions_per_ns": 29.9}}, 30.0)
    both = {"phi_A_ALA2": {"phi_transitions_per_ns": 45.0}, "phi_A_ALA3": {"phi_transitions_per_ns": 12.0}}
    assert not explore._drives_every_phi(both, 30.0)
    next_step, verdict = explore._after_metadynamics({"phi_torsions": both}, ExploreSettings(), last_round=False)
    assert next_step is explore.NextStep.RETRAIN and verdict.reason.startswith("phi_A_ALA3 crossed 12.0 times per ns")
    next_step, _ = explore._after_metadynamics({"phi_torsions": at_rate}, ExploreSettings(), last_round=False)
    assert next_step is explore.NextStep.FREEZE


def test_a_block_error_of_exactly_the_tolerance_has_not_settled():
    """Both estimates' block standard errors must lie below the tolerance, as the change must."""
    at_tolerance = stopping_verdict({"phi": _phi(30, 9.0, 0.6)}, {"phi": _phi(30, 9.2, 1.0)}, tolerance_kj=1.0)
    assert not at_tolerance.converged and "block standard error in the last round is 1.00 kJ/mol" in at_tolerance.reason
    assert stopping_verdict({"phi": _phi(30, 9.0, 0.6)}, {"phi": _phi(30, 9.2, 0.99)}, tolerance_kj=1.0).converged


def test_the_frozen_rounds_weigh_their_frames_at_the_rounds_temperature_when_round_zero_is_heated(tmp_path):
    """The frozen bias acts at `temperature`: exp(V / kT) at 300 K, whatever the heated round 0 ran at."""
    phis, biases, runs = _two_frozen_runs(tmp_path)
    settings = ExploreSettings(bias_report_ps=1.0, temperature=300.0, unbiased_temperature=600.0)
    figures = explore._frozen_estimate(runs, settings, ["phi"])["phi"]
    kT = kT_kj_per_mol(300.0)
    phi, weights = np.concatenate(phis), np.exp(np.concatenate(biases) / kT)
    expected = -kT * np.log(weights[phi > 0].sum() / weights[phi <= 0].sum())
    assert figures["delta_F_phi_positive_minus_negative_kj"] == pytest.approx(expected, rel=1e-9)
