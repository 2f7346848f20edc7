"""Data-parallel training: DDP averages gradients through the point layers' double backward, on 2 gloo processes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from neuralct.errors import NeuralCTError
from neuralct.model.transformation import NeuralCanonicalTransformation
from neuralct.toys.hamiltonians import HarmonicChain
from neuralct.training import distributed
from neuralct.training.loop import TrainingSettings, train
from neuralct.training.objectives import MaximumLikelihood

REPO = Path(__file__).resolve().parents[2]
WORLD_SIZE = 2
SEED = 7
#: A linear point layer and a point transformation, whose momenta come from
#: torch.autograd.grad(..., create_graph=True) inside the forward pass.
ARCHITECTURE = [{"type": "linear", "point": True}, {"type": "point", "n_layers": 2, "hidden": 16, "depth": 1}]
#: The pilot-started maximum-likelihood run compared between 2 processes and 1.
PILOT = dict(n=6, samples=20000, valid=2000, pilot=64, steps=300, learning_rate=2e-2, batch_size=256)


class _Interrupted(Exception):
    pass


def _chain_setup(n=4, samples=2000):
    """The same model and data on every process: the seed is fixed, not per rank."""
    torch.manual_seed(SEED)
    chain = HarmonicChain(n)
    q = torch.as_tensor(chain.sample(samples, seed=SEED)[0])
    model = NeuralCanonicalTransformation(n, architecture=ARCHITECTURE)
    model.initialize(q, generator=torch.Generator().manual_seed(SEED))
    return model, MaximumLikelihood(q[samples // 10 :], q[: samples // 10])


def _first_step_gradients():
    """``.grad`` of every parameter after train()'s first backward (a huge clip leaves it untouched), and the loss
    train() recorded for that step (under ``"loss"``)."""
    model, objective = _chain_setup()
    gradients = {}

    def capture(step, loss):
        gradients.update({name: p.grad.clone() for name, p in model.named_parameters()})
        gradients["loss"] = loss

    train(
        model,
        objective,
        TrainingSettings(steps=1, batch_size=64, gradient_clip=1e12, progress=False),
        seed=SEED,
        on_step=capture,
    )
    return gradients


def _interrupted_and_resumed(folder: Path):
    """A 30-step run, and the same run stopped after step 15 and resumed from its step-10 checkpoint."""
    settings = TrainingSettings(steps=30, batch_size=32, checkpoint_every=10, validate_every=10, progress=False)
    reference, objective = _chain_setup()
    train(reference, objective, settings, seed=SEED, checkpoint=folder / "reference.pt")

    def interrupt(step, loss):
        if step == 15:
            raise _Interrupted

    model, objective = _chain_setup()
    with pytest.raises(_Interrupted):
        train(model, objective, settings, seed=SEED, checkpoint=folder / "run.pt", on_step=interrupt)
    resumed, objective = _chain_setup()
    result = train(resumed, objective, settings, seed=SEED, checkpoint=folder / "run.pt")
    return {
        "reference": reference.state_dict(),
        "resumed": resumed.state_dict(),
        "resumed_from_step": result.resumed_from_step,
    }


def _pilot_training(batch_size: int):
    """Maximum likelihood on a chain, started from the normal modes of a 64-frame pilot sample."""
    torch.manual_seed(SEED)
    chain = HarmonicChain(PILOT["n"])
    q = torch.as_tensor(chain.sample(PILOT["samples"], seed=SEED)[0])
    model = NeuralCanonicalTransformation(PILOT["n"], architecture=ARCHITECTURE)
    model.initialize(q[: PILOT["pilot"]], generator=torch.Generator().manual_seed(SEED))
    start = model.frequencies.detach().clone()
    objective = MaximumLikelihood(q[PILOT["valid"] :], q[: PILOT["valid"]])
    settings = TrainingSettings(
        steps=PILOT["steps"],
        batch_size=batch_size,
        learning_rate=PILOT["learning_rate"],
        validate_every=100,
        progress=False,
    )
    result = train(model, objective, settings, seed=SEED)
    return {
        "start": start.numpy(),
        "frequencies": model.frequencies.detach().numpy(),
        "exact": chain.frequencies(),
        "valid_loss": result.history["valid_loss"][-1],
        "state": model.state_dict(),
    }


def _worker(rank: int, port: int, folder: Path) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    with distributed.process_group("cpu"):
        results = {
            "gradients": _first_step_gradients(),
            "resume": _interrupted_and_resumed(folder),
            "pilot": _pilot_training(PILOT["batch_size"] // WORLD_SIZE),
        }
    torch.save(results, folder / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of 2 gloo processes measured (one spawn for the tests below)."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), folder), nprocs=WORLD_SIZE, join=True)
    return [torch.load(folder / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]


def test_ddp_gradient_is_the_mean_of_the_per_process_gradients(ranks):
    """Each rank's first-step batch is the one drawn with seed + rank; DDP must average, not sum."""
    model, objective = _chain_setup()
    per_rank, losses = [], []
    for rank in range(WORLD_SIZE):
        model.zero_grad()
        loss = objective.loss(model, 64, torch.Generator().manual_seed(SEED + rank))
        loss.backward()
        losses.append(float(loss.detach()))
        per_rank.append({name: p.grad.clone() for name, p in model.named_parameters()})
    # The loss recorded for the step is the mean over the processes too (the same on every rank).
    assert losses[0] != pytest.approx(losses[1], rel=1e-6)
    for result in ranks:
        assert result["gradients"]["loss"] == pytest.approx(sum(losses) / WORLD_SIZE, rel=1e-12)
    distinct = 0
    for name in per_rank[0]:
        mean = sum(gradients[name] for gradients in per_rank) / WORLD_SIZE
        for rank, result in enumerate(ranks):
            assert torch.allclose(result["gradients"][name], mean, rtol=0, atol=1e-10), (rank, name)
        distinct += not torch.allclose(per_rank[0][name], per_rank[1][name], rtol=0, atol=1e-6)
    # The ranks saw different batches, so neither rank's own gradient (nor their sum) passes.
    assert distinct >= len(per_rank[0]) // 2


def test_parameters_stay_identical_across_ranks(ranks):
    for key in ("resume", "pilot"):
        state = ranks[0][key]["resumed" if key == "resume" else "state"]
        other = ranks[1][key]["resumed" if key == "resume" else "state"]
        assert all(torch.equal(state[name], other[name]) for name in state), key


def test_resume_under_ddp_continues_every_rank_own_minibatches(ranks):
    """Stopped after 16 steps, resumed from the step-10 checkpoint: bit-for-bit the uninterrupted run.

    Only true if every rank restores its own generator (ranks reusing rank 0's would draw
    the same minibatches and the average would differ).
    """
    for result in ranks:
        assert result["resume"]["resumed_from_step"] == 10
        reference, resumed = result["resume"]["reference"], result["resume"]["resumed"]
        assert all(torch.equal(reference[name], resumed[name]) for name in reference)


def test_two_processes_reach_the_single_process_frequencies(ranks):
    """2 x 128 samples per step against 1 x 256, both from a 64-frame pilot start (errors up to 40%).

    Both runs minimise the same expected loss; they differ only by SGD noise and see the same
    18000 training frames. Tolerance: the ML frequencies of 18000 frames scatter by
    1/sqrt(2 N) = 0.5% around the exact ones; after 300 steps, single-process runs with
    different seeds differ by up to 4% per mode (measured), so each run must lie within 5% of
    the exact frequencies and within 6% of the other; the validation losses, on the same
    2000 frames, within 0.01 nats (seed-to-seed spread 0.003).
    """
    single = _pilot_training(PILOT["batch_size"])
    parallel = ranks[0]["pilot"]
    exact = single["exact"]
    assert np.abs(parallel["start"] / exact - 1).max() > 0.2
    assert np.abs(single["frequencies"] / exact - 1).max() < 0.05
    assert np.abs(parallel["frequencies"] / exact - 1).max() < 0.05
    assert np.abs(parallel["frequencies"] / single["frequencies"] - 1).max() < 0.06
    assert abs(parallel["valid_loss"] - single["valid_loss"]) < 0.01


def _torchrun(folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={WORLD_SIZE}",
        "-m",
        "neuralct",
        "train",
    ]
    command += ["--toy", "harmonic-chain", "-p", "n=4", "--samples", "2000", "--steps", "20", "--batch-size", "32"]
    command += ["--couplings", "1", "--hidden", "8", "--device", "cpu", "--no-progress", "-o", str(folder), *options]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_cli_under_torchrun_writes_the_model_and_summary_once(tmp_path):
    run = _torchrun(tmp_path / "run", "--distributed")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("model: ") == 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["processes"] == WORLD_SIZE
    assert summary["frequencies"] == sorted(summary["frequencies"])
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 20
    assert len(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["generators"]) == WORLD_SIZE
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == [
        ".neuralct.files",
        ".neuralct.lock",
        "checkpoint.pt",
        "config.yaml",
        "model.pt",
        "run.json",
        "summary.json",
    ]


def test_setup_outside_torchrun_says_how_to_launch(monkeypatch):
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(NeuralCTError, match="torchrun --nproc_per_node"):
        distributed.setup("cpu")
    assert not distributed.is_distributed() and distributed.world_size() == 1 and distributed.is_main_process()


def test_a_process_with_only_some_of_torchruns_variables_was_not_started_by_it(monkeypatch):
    """A RANK and WORLD_SIZE left in the shell by hand are no torchrun launch: setup names what is missing."""
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.launched_by_torchrun()
    with pytest.raises(NeuralCTError, match="LOCAL_RANK, MASTER_ADDR, MASTER_PORT missing"):
        distributed.setup("cpu")
    assert not distributed.is_distributed()


def test_one_of_several_torchrun_processes_without_distributed_is_refused(monkeypatch):
    """Each would train alone and overwrite the others' output."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    with pytest.raises(NeuralCTError, match="add --distributed"):
        with distributed.process_group("cpu", enabled=False):
            pass


def test_a_checkpoint_of_two_processes_is_refused_by_one(tmp_path):
    model, objective = _chain_setup()
    settings = TrainingSettings(steps=4, batch_size=16, progress=False)
    train(model, objective, settings, checkpoint=tmp_path / "c.pt")
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    state["generators"] = state["generators"] * WORLD_SIZE
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(NeuralCTError, match="written by 2 process"):
        train(model, objective, settings, checkpoint=tmp_path / "c.pt")
