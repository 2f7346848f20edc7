"""Resolve the ``--device auto|cpu|cuda`` option to a torch device."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ..errors import NeuralCTError

__all__ = ["resolve_device", "float32_matmul_precision", "MATMUL_PRECISIONS"]

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
