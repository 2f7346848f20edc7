"""The same physics on a CUDA device (skipped cleanly where there is none)."""

import json

import numpy as np
import pytest
import torch

from neuralct.cli import main
from neuralct.toys.hamiltonians import HarmonicChain
from neuralct.training.loop import TrainingSettings
from neuralct.workflows.train import fit_toy

from tests.flows.test_flows import CANONICAL, make

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("kind", CANONICAL)
def test_flows_round_trip_on_cuda(kind):
    flow = make(kind).cuda()
    x = torch.randn(64, 6, device="cuda")
    z, logdet = flow(x)
    assert (flow.inverse(z)[0] - x).abs().max() <= 1e-10 and torch.all(logdet == 0)
    cpu = flow.cpu()
    assert torch.allclose(cpu(x.cpu())[0], z.cpu(), atol=1e-10)


@pytest.mark.parametrize("mode", ["ml", "variational"])
def test_chain_training_on_cuda(mode):
    chain = HarmonicChain(16)
    settings = TrainingSettings(steps=120, batch_size=256, learning_rate=5e-4, progress=False)
    architecture = [{"type": "linear", "point": True}, {"type": "point", "n_layers": 4, "hidden": 32}]
    model, summary = fit_toy(chain, mode, architecture, settings, samples=60000, device="cuda", seed=1)
    assert summary["device"].startswith("cuda")
    errors = np.abs(np.array(summary["frequencies"]) / chain.frequencies() - 1)
    assert errors.max() < 0.02
    if mode == "variational":
        assert abs(summary["free_energy"] - chain.free_energy()) < 0.05


def test_cli_device_cuda(tmp_path):
    assert (
        main(
            [
                "train",
                "--toy",
                "harmonic-chain",
                "-p",
                "n=4",
                "--steps",
                "20",
                "--device",
                "cuda",
                "--no-progress",
                "--output",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "summary.json").read_text())["device"].startswith("cuda")
