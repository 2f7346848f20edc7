"""``neuralct quickstart`` end to end with a tiny budget."""

import json

from neuralct.cli import main


def test_quickstart_runs_the_whole_chain(tmp_path, capsys):
    out = tmp_path / "qs"
    assert (
        main(
            [
                "quickstart",
                "--replicas",
                "3",
                "--length-ns",
                "0.03",
                "--steps",
                "10",
                "--density-steps",
                "10",
                "--batch-size",
                "32",
                "--lag-ps",
                "1",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    for figure in summary["figures"].values():
        assert figure in printed
        assert (out / "analysis" / figure.split("/")[-1]).stat().st_size > 1000
    assert (out / "model" / "model.pt").exists() and len(summary["trajectories"]) == 3
    # The CVs are the kinetic objective's, ranked by relaxation time, the slowest first.
    assert summary["objective"]["objective"] == "kinetic" and summary["objective"]["momenta"] == "recorded"
    assert summary["relaxation_times_ps"] == sorted(summary["relaxation_times_ps"], reverse=True)
    assert "slow CVs: kinetic (time-lagged, lag" in printed and "mutual information with psi" in printed
    # The comparison with TICA: block error bars, TICA's spectrum with oscillations flagged, timescales side by side.
    assert summary["lag_ps"] == 1.0 and summary["vamp2_scored_segments"] == 4
    assert summary["vamp2_learned_standard_error"] > 0 and summary["vamp2_tica_standard_error"] > 0
    assert summary["vamp2_learned_minus_tica"]["standard_error"] > 0
    tica = summary["kinetics"]["tica"]
    assert tica["oscillating_components"] == [k + 1 for k, v in enumerate(tica["eigenvalues"]) if v < 0]
    assert all(
        t is None for k, t in enumerate(tica["implied_timescales_ps"]) if k + 1 in tica["oscillating_components"]
    )
    assert len(summary["kinetics"]["learned_cvs"]["implied_timescales_ps"]) == 6
    assert (
        "TICA eigenvalues at 1 ps" in printed
        and "paired over blocks" in printed
        and "implied timescales (ps): learned" in printed
    )
    # The density model: maximum likelihood, frequencies ascending, scored the same way after the CVs.
    density = summary["density_model"]
    assert density["steps"] == 10 and density["frequencies_slowest"] == sorted(density["frequencies_slowest"])
    assert density["vamp2_standard_error"] > 0 and density["minus_tica"]["standard_error"] > 0
    assert (out / "density_model" / "model.pt").exists()
    assert printed.index("slow CVs: kinetic") < printed.index("maximum likelihood (--objective density)")
    assert all(
        (out / "analysis" / "density" / figure.split("/")[-1]).exists() for figure in density["figures"].values()
    )
    # Rerunning resumes: every stage finds its outputs and nothing fails.
    assert (
        main(
            [
                "quickstart",
                "--replicas",
                "3",
                "--length-ns",
                "0.03",
                "--steps",
                "10",
                "--density-steps",
                "10",
                "--batch-size",
                "32",
                "--lag-ps",
                "1",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
        == 0
    )


def test_quickstart_without_the_density_model(tmp_path, capsys):
    out = tmp_path / "qs"
    assert (
        main(
            [
                "quickstart",
                "--replicas",
                "3",
                "--length-ns",
                "0.03",
                "--steps",
                "10",
                "--density-steps",
                "0",
                "--batch-size",
                "32",
                "--lag-ps",
                "1",
                "--no-progress",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "[3/3] analyzing" in printed and "maximum likelihood" not in printed
    assert (
        json.loads((out / "summary.json").read_text())["density_model"] is None and not (out / "density_model").exists()
    )
