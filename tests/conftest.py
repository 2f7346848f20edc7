"""Shared test settings: float64 by default, fixed seeds, and a skip for CUDA-only tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def float64_and_seed():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(1234)
    yield
    torch.set_default_dtype(previous)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device available")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def alanine_model(tmp_path_factory):
    """A tiny model of alanine dipeptide (heavy atoms) trained in seconds on short MD: (model, trajectory paths)."""
    from neuralct.cli import main

    root = tmp_path_factory.mktemp("alanine-model")
    assert (
        main(
            [
                "simulate",
                "alanine-dipeptide",
                "--length-ns",
                "0.02",
                "--report-ps",
                "0.5",
                "--replicas",
                "2",
                "--platform",
                "Reference",
                "--no-progress",
                "--output",
                str(root / "md"),
            ]
        )
        == 0
    )
    paths = sorted(str(p) for p in (root / "md").glob("replica-*.nc"))
    assert (
        main(
            [
                "train",
                *paths,
                "--steps",
                "20",
                "--batch-size",
                "32",
                "--couplings",
                "2",
                "--hidden",
                "16",
                "--no-progress",
                "--output",
                str(root / "model"),
            ]
        )
        == 0
    )
    return root / "model" / "model.pt", paths
