"""Resolve the ``--device auto|cpu|cuda`` option to a torch device."""

from __future__ import annotations

import torch

from .errors import NeuralCTError

__all__ = ["resolve_device"]


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
            raise NeuralCTError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
        return torch.device(name)
    raise NeuralCTError(f"unknown device {name!r}; use auto, cpu or cuda")
