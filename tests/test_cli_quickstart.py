"""``neuralct quickstart`` end to end with a tiny budget."""

import json

from neuralct.cli import main


def test_quickstart_runs_the_whole_chain(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--replicas", "3", "--length-ns", "0.03", "--steps", "10", "--batch-size", "32",
                 "--lag-ps", "1", "--no-progress", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    for figure in summary["figures"].values():
        assert figure in printed
        assert (out / "analysis" / figure.split("/")[-1]).stat().st_size > 1000
    assert (out / "model" / "model.pt").exists() and len(summary["trajectories"]) == 3
    assert summary["frequencies_slowest"] == sorted(summary["frequencies_slowest"])
    assert "mutual information with psi" in printed
    # Rerunning resumes: every stage finds its outputs and nothing fails.
    assert main(["quickstart", "--replicas", "3", "--length-ns", "0.03", "--steps", "10", "--batch-size", "32",
                 "--lag-ps", "1", "--no-progress", "--output", str(out)]) == 0
