"""``neuralct bias`` under stress: free energies of unvisited basins, their error bars, the offset c(t) in rbias,
blow-ups, Ctrl-C."""

import json
import math
import signal
import time

import numpy as np
import pytest

from neuralct.analysis import read_colvar, write_colvar
from neuralct.analysis.reweighting import CORE_B, frame_weights, phi_free_energy_difference
from neuralct.cli import main
from neuralct.data.pairs import rescaled_lagged_pairs
from neuralct.units import kT_kj_per_mol

from tests.commands import start_neuralct

KT = kT_kj_per_mol(300.0)


def two_state_phi(rng, frames, leave_a=0.004, leave_b=0.012):
    """phi of a two-state chain in time order: -1.2 rad in core set A, 1.0 rad in B, leaving each with the given
    probability per frame."""
    pieces, total, state = [], 0, int(rng.integers(2))
    while total < frames:
        dwell = int(rng.geometric(leave_b if state else leave_a))
        pieces.append(np.full(dwell, 1.0 if state else -1.2))
        total, state = total + dwell, 1 - state
    return np.concatenate(pieces)[:frames]


def test_no_free_energy_for_a_basin_never_visited():
    rng = np.random.default_rng(0)
    # The beta basin only: phi around -2.9 rad, a few frames past -pi wrapped to phi near +pi (phi > 0, yet not
    # core set B).
    phi = np.angle(np.exp(1j * rng.normal(-2.9, 0.2, 500)))
    assert np.any(phi > 0) and not np.any((phi > CORE_B[0]) & (phi < CORE_B[1]))
    difference = phi_free_energy_difference(phi, np.ones_like(phi), KT)
    assert difference.value_kj is None and difference.standard_error_kj is None
    assert "never entered core set B" in difference.reason and "not computed" in difference.describe()
    only_b = phi_free_energy_difference(np.full(50, 1.0), np.ones(50), KT)
    assert only_b.value_kj is None and "never entered core set A" in only_b.reason
    short = phi_free_energy_difference(np.array([-1.2, 1.0, -1.2]), np.ones(3), KT)
    assert short.value_kj is None and "fewer than the 10 blocks" in short.reason


def test_block_standard_error_is_the_spread_of_the_free_energy_over_independent_runs():
    """A two-state chain with p_B = 1/4 (dF = kT ln 3) and lognormal frame weights independent of the state."""
    rng = np.random.default_rng(7)
    values, errors = [], []
    for _ in range(300):
        phi = two_state_phi(rng, 20000)
        weights = rng.lognormal(0.0, 0.5, len(phi))
        difference = phi_free_energy_difference(phi, weights, KT)
        assert difference.value_kj == pytest.approx(
            -KT * math.log(weights[phi > 0].sum() / weights[phi <= 0].sum()), rel=1e-12
        )
        values.append(difference.value_kj)
        errors.append(difference.standard_error_kj)
    values, errors = np.array(values), np.array(errors)
    spread = values.std(ddof=1)
    assert abs(values.mean() - KT * math.log(3)) < 4 * spread / math.sqrt(len(values))
    # The error bar of one run says how far its value is from the others' (frames instead of blocks would give a
    # tenth of it).
    assert 0.85 < math.sqrt(np.mean(errors**2)) / spread < 1.15


def test_rbias_is_the_bias_minus_the_offset_of_the_written_grid_and_the_weights_follow(alanine_model, tmp_path, capsys):
    """One Gaussian, deposited at 2.5 ps after that frame's report: up to it V = c = 0 (the frame at 2.5 ps felt no
    bias), after it the grid is bias.npy, whose c(t) is computed here from its definition."""
    out = tmp_path / "one-gaussian"
    assert (
        main(
            [
                "bias",
                str(alanine_model[0]),
                "--cv",
                "phi,psi",
                "--bias-every",
                "1",
                "--length-ns",
                "0.004",
                "--report-ps",
                "0.1",
                "--pace-ps",
                "2.5",
                "--height-kj",
                "10",
                "--width-rad",
                "1",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    fields, table = read_colvar(out / "COLVAR")
    time_ps, bias, rbias = table[:, 0], table[:, fields.index("bias")], table[:, fields.index("rbias")]
    before = time_ps < 2.5 + 1e-9
    assert before.sum() == 25 and np.all(bias[before] == 0) and np.all(rbias[before] == 0)
    assert np.all(bias[~before] > 0)
    # Tiwary & Parrinello: c = kT ln[sum exp(gamma/(gamma-1) V/kT) / sum exp(V/((gamma-1) kT))] over the grid
    # (periodic: the last point repeats the first).
    gamma, grid = 8.0, np.load(out / "bias.npy")[:-1, :-1]
    offset = KT * math.log(np.sum(np.exp(gamma / (gamma - 1) * grid / KT)) / np.sum(np.exp(grid / ((gamma - 1) * KT))))
    assert offset > 1.0
    assert np.allclose(rbias[~before], bias[~before] - offset, rtol=0, atol=1e-6)

    expected = np.exp((bias - np.where(before, 0.0, offset)) / KT)
    expected /= expected.sum()
    weights, _ = frame_weights(out / "COLVAR", "colvar", len(table), KT)
    assert np.allclose(weights, expected, rtol=1e-6, atol=0)
    assert (
        main(
            [
                "train",
                str(out / "trajectory.nc"),
                "--bias-colvar",
                str(out / "COLVAR"),
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
                str(tmp_path / "retrained"),
            ]
        )
        == 0
    )
    weighting = json.loads((tmp_path / "retrained" / "summary.json").read_text())["frame_weights"]
    assert weighting["kish_effective_frames"] == pytest.approx(1.0 / np.sum(expected**2), rel=1e-6)

    # With a lag, the kinetic objective in rescaled time: frame k lasts 0.1 ps exp((V - c)/kT), and the pairs that
    # 0.3 ps of it make are weighted by the rescaled time they span (the last 20% of the run validates).
    small = ["--steps", "5", "--batch-size", "16", "--couplings", "2", "--hidden", "16", "--no-progress"]
    rescaled = ["train", str(out / "trajectory.nc"), "--bias-colvar", str(out / "COLVAR"), "--lag-ps", "0.3", *small]
    assert main([*rescaled, "--output", str(tmp_path / "rescaled")]) == 0
    summary = json.loads((tmp_path / "rescaled" / "summary.json").read_text())
    first, second, spans = rescaled_lagged_pairs([len(table)], (bias - np.where(before, 0.0, offset)) / KT, 0.1, 0.3)
    train = second < int(round(0.8 * len(table)))
    assert summary["lagged_pairs"]["train"] == int(train.sum()) and len(first) < 2 * len(table)
    kish = spans[train].sum() ** 2 / (spans[train] ** 2).sum() / train.sum()
    assert summary["time"]["training_pairs_kish_fraction"] == pytest.approx(kish, rel=1e-5)
    assert str(out / "COLVAR") in summary["time"]["bias_from"] and summary["objective"]["objective"] == "kinetic"
    assert main([*rescaled[: -len(small) - 2], "--objective", "kinetic", *small, "--output", str(tmp_path / "x")]) == 2

    # The COLVAR of another run of as many frames (another seed), or rows at another spacing, is not these frames'.
    other = tmp_path / "other-seed"
    argv = ["bias", str(alanine_model[0]), "--cv", "phi,psi", "--bias-every", "1", "--length-ns", "0.004"]
    assert main([*argv, "--report-ps", "0.1", "--seed", "1", "--no-progress", "--output", str(other)]) == 0
    weighted = ["train", str(out / "trajectory.nc"), *small]
    assert main([*weighted, "--bias-colvar", str(other / "COLVAR"), "--output", str(tmp_path / "y")]) == 2
    assert "the trajectories given hold other frames" in capsys.readouterr().err
    fields, rows = read_colvar(out / "COLVAR")
    rows[:, 0] *= 2.0
    (tmp_path / "loose").mkdir()
    write_colvar(tmp_path / "loose" / "COLVAR", rows[:, 0], rows[:, 1:], fields[1:])
    assert main([*weighted, "--bias-colvar", str(tmp_path / "loose" / "COLVAR"), "--output", str(tmp_path / "z")]) == 2
    assert "a row every 0.2 ps and the trajectories a frame every 0.1 ps" in capsys.readouterr().err


def test_a_colvar_of_other_frames_or_a_growing_bias_without_rbias_is_refused_and_biased_frames_are_said(
    alanine_model, tmp_path, capsys
):
    """Another run's COLVAR copied out of its folder (as many rows, the same times: its phi column is not the frames'),
    rows whose time goes back (a restarted run's), and a well-tempered bias without its rbias column are refused;
    PLUMED's LABEL.rbias is read as rbias; the biased trajectory, analysed or trained on away from its COLVAR, is said
    to be biased and gives no unbiased basin populations."""
    import shutil

    from neuralct.model.transformation import load

    runs = {}
    for seed in (0, 1):
        runs[seed] = tmp_path / f"run-{seed}"
        argv = ["bias", str(alanine_model[0]), "--cv", "phi,psi", "--bias-every", "1", "--length-ns", "0.006"]
        argv += ["--report-ps", "0.1", "--pace-ps", "0.5", "--height-kj", "10", "--width-rad", "1", "--seed", str(seed)]
        assert main([*argv, "--no-progress", "--output", str(runs[seed])]) == 0
    small = ["--steps", "2", "--batch-size", "16", "--couplings", "1", "--hidden", "8", "--no-progress"]
    weighted = ["train", str(runs[0] / "trajectory.nc"), *small]
    fields, rows = read_colvar(runs[0] / "COLVAR")
    columns = {name: rows[:, fields.index(name)] for name in fields}
    variants = {
        "copied": (read_colvar(runs[1] / "COLVAR")[1], fields, "its phi column differs from the frames' phi in"),
        "restarted": (np.concatenate([rows[:30], rows[20:50]]), fields, "its time does not increase at row 30"),
        "bias alone": (rows[:, [0, 1, 2, 3]], fields[:4], "its bias column grows through the run"),
        "plumed": (rows, [*fields[:3], "metad.bias", "metad.rbias"], None),
    }
    assert fields == ["time", "phi", "psi", "bias", "rbias"] and len(rows) == 60 and columns["bias"][-1] > 4 * KT
    capsys.readouterr()
    for name, (table, names, refusal) in variants.items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        write_colvar(folder / "COLVAR", table[:, 0], table[:, 1:], names[1:])
        code = main([*weighted, "--bias-colvar", str(folder / "COLVAR"), "--output", str(folder / "model")])
        assert code == (0 if refusal is None else 2), name
        if refusal is not None:
            assert refusal in capsys.readouterr().err, name
    plumed = json.loads((tmp_path / "plumed" / "model" / "summary.json").read_text())["frame_weights"]
    expected = np.exp((columns["rbias"] - columns["rbias"].max()) / KT)
    assert plumed["kish_effective_frames"] == pytest.approx(expected.sum() ** 2 / (expected**2).sum(), rel=1e-6)

    # The biased trajectory away from its COLVAR: analysed, then trained on as it stands.
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(runs[0] / "trajectory.nc", moved / "trajectory.nc")
    shutil.copy(runs[0] / "topology.pdb", moved / "topology.pdb")
    assert main(["analyze", str(alanine_model[0]), str(moved / "trajectory.nc"), "--output", str(tmp_path / "a")]) == 0
    assert (
        f"frames of biased MD (neuralct bias) in {moved / 'trajectory.nc'}: the populations" in capsys.readouterr().err
    )
    assert "biased ensemble" in json.loads((tmp_path / "a" / "summary.json").read_text())["biased_frames"]
    assert main(["train", str(moved / "trajectory.nc"), *small, "--output", str(tmp_path / "t")]) == 0
    assert load(tmp_path / "t" / "model.pt").metadata["molecule"]["training_basins"] is None


def test_each_row_holds_the_bias_its_frame_felt_before_the_gaussian_deposited_there(alanine_model, tmp_path):
    """A Gaussian at every report: row k's bias is the sum of the Gaussians of rows 0..k-1, each of the well-tempered
    height h exp(-V_j / (kB dT)) with V_j row j's own bias; not the Gaussian deposited at row k itself."""
    out = tmp_path / "every-report"
    options = ["--cv", "phi,psi", "--bias-every", "1", "--length-ns", "0.005", "--report-ps", "0.1", "--pace-ps", "0.1"]
    assert main(["bias", str(alanine_model[0]), *options, "--no-progress", "--output", str(out)]) == 0
    fields, table = read_colvar(out / "COLVAR")
    phi, psi, bias = (table[:, fields.index(name)] for name in ("phi", "psi", "bias"))
    height, width, gamma = 1.2, 0.35, 8.0  # `neuralct bias`'s defaults for torsions

    def gaussian(a, b):
        d = np.abs(a - b) % (2 * np.pi)
        return np.exp(-0.5 * (np.minimum(d, 2 * np.pi - d) / width) ** 2)

    heights = height * np.exp(-bias / ((gamma - 1) * KT))
    felt = np.array([np.sum(heights[:k] * gaussian(phi[k], phi[:k]) * gaussian(psi[k], psi[:k])) for k in range(50)])
    assert bias[0] == 0 and len(bias) == 50 and bias.max() > 3 * height
    np.testing.assert_allclose(bias, felt, rtol=0, atol=0.02 * height)  # the grid's interpolation


@pytest.mark.parametrize("timestep_fs", ["10", "50"])
def test_a_simulation_that_blows_up_says_so(alanine_model, tmp_path, capsys, timestep_fs):
    """At 10 fs the learned CV's force meets NaN positions inside a step; at 50 fs the CV runs far off its grid
    first."""
    out = tmp_path / "blown"
    assert (
        main(
            [
                "bias",
                str(alanine_model[0]),
                "--timestep-fs",
                timestep_fs,
                "--length-ns",
                "0.002",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
        == 2
    )
    warning, err = capsys.readouterr().err.strip().splitlines()  # the step was warned of, then the one-line error
    assert warning.startswith(f"warning: a {timestep_fs} fs step with solute hydrogens of 1.008 amu may blow up")
    assert "blew up" in err and f"smaller --timestep-fs (now {timestep_fs} fs)" in err, err
    # In vacuum the bias force acts every 4 steps by default: going to every step comes first (B3).
    assert "rerun with --overwrite and --bias-every 1 (now 4: the bias acts as an impulse every 4 steps), or" in err
    assert "grid-margin" not in err and not (out / "summary.json").exists()


def test_ctrl_c_on_a_learned_cv_exits_130_in_one_line_and_the_rerun_resumes(alanine_model, tmp_path):
    out = tmp_path / "interrupted"
    # The first checkpoint says the MD loop runs; the next is 0.3 s away, so the signal lands inside a step, in the
    # CV's Python callback. 50 ps (about 2 s) so that the run cannot end before the signal on a quiet machine.
    command = [
        "bias",
        str(alanine_model[0]),
        "--length-ns",
        "0.05",
        "--report-ps",
        "0.1",
        "--bias-every",
        "5",
        "--checkpoint-seconds",
        "0.3",
        "--no-progress",
        "--output",
        str(out),
    ]
    run = start_neuralct(command)
    deadline = time.time() + 120
    while not (out / "checkpoint.npz").exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    parent = signal.getsignal(signal.SIGINT)
    assert run.returncode == 130 and err.strip() == "neuralct bias: interrupted; rerun the same command to resume", (
        err,
        parent,
    )
    with np.load(out / "checkpoint.npz") as checkpoint:
        done = len(checkpoint["rows"])
    assert 0 < done < 500 and not (out / "summary.json").exists()
    assert main(command) == 0
    assert json.loads((out / "summary.json").read_text())["resumed_from_report"] == done
    assert np.allclose(read_colvar(out / "COLVAR")[1][:, 0], 0.1 * np.arange(1, 501))
