"""The torch device of ``--device auto|cpu|cuda``; the float32 precision and CPU threads of training."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..errors import NeuralCTError

__all__ = [
    "resolve_device",
    "float32_matmul_precision",
    "training_threads",
    "MATMUL_PRECISIONS",
    "ONE_THREAD_COORDINATES",
]

#: Configuration coordinates up to which training runs on one CPU thread. Measured (benchmarks/README.md,
#: B5): at alanine dipeptide's 24 a second thread gains nothing, and on a machine shared with other work
#: two threads took 67 s where one took 9 s (the quickstart's training stages 389 and 777 s against 36 s);
#: at 512 (a harmonic chain) two threads give 1.90x, so larger models keep torch's threads.
ONE_THREAD_COORDINATES = 64

#: ``highest``: IEEE float32 products; ``high``: TF32 tensor cores on CUDA (10-bit mantissa inputs,
#: float32 accumulation), no change on CPUs without reduced-precision float32 units.
MATMUL_PRECISIONS = ("highest", "high")


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``name``.

    Parameters
    ----------
    name : {"auto", "cpu", "cuda"} or "cuda:N"
        ``auto`` picks CUDA when a GPU is available, else the CPU.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise NeuralCTError("`device` cuda was asked for but no CUDA GPU is available; use `device` cpu or auto")
        return torch.device(name)
    raise NeuralCTError(f"unknown device {name!r}; use auto, cpu or cuda")


@contextlib.contextmanager
def float32_matmul_precision(name: str = "highest") -> Iterator[None]:
    """Run the block with float32 matrix products at precision ``name``, then restore the previous one.

    Parameters
    ----------
    name : {"highest", "high"}
        See :data:`MATMUL_PRECISIONS`.
    """
    if name not in MATMUL_PRECISIONS:
        raise NeuralCTError(f"--matmul-precision must be one of {', '.join(MATMUL_PRECISIONS)}, got {name!r}")
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(name)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


@contextlib.contextmanager
def training_threads(dim: int, device: torch.device) -> Iterator[None]:
    """Train a model of ``dim`` configuration coordinates on one CPU thread when it is small
    (:data:`ONE_THREAD_COORDINATES`), then restore torch's thread count; other models and GPUs as they are."""
    if device.type != "cpu" or dim > ONE_THREAD_COORDINATES:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
