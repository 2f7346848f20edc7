"""Data-parallel training across processes with torch.distributed (torchrun, DDP)."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from ..errors import NeuralCTError
from .device import resolve_device

__all__ = [
    "TORCHRUN_VARIABLES",
    "launched_by_torchrun",
    "setup",
    "teardown",
    "process_group",
    "is_distributed",
    "rank",
    "world_size",
    "is_main_process",
    "mean_over_processes",
    "gather_generator_states",
    "data_parallel_loss",
]

#: Environment variables torchrun sets for every process it starts.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """True when this process was started by torchrun (every variable of :data:`TORCHRUN_VARIABLES` is set)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def setup(device: str = "auto") -> torch.device:
    """Join the process group torchrun described in the environment.

    The backend is gloo on the CPU and nccl on CUDA, where each process takes the GPU
    ``cuda:LOCAL_RANK`` (and makes it the current device, so ``device="cuda"`` means it).

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        The device to train on; ``auto`` is CUDA when a GPU is available.

    Returns
    -------
    torch.device
        The device this process trains on.

    Raises
    ------
    NeuralCTError
        If the process was not started by torchrun, or ``device`` names one GPU.
    """
    if not launched_by_torchrun():
        missing = ", ".join(name for name in TORCHRUN_VARIABLES if name not in os.environ)
        raise NeuralCTError(
            f"`distributed` needs the environment torchrun sets ({missing} missing); "
            "launch with `torchrun --nproc_per_node N -m neuralct train --distributed ...`"
        )
    if device.startswith("cuda:"):
        raise NeuralCTError(f"`device` {device}: under torchrun each process uses cuda:LOCAL_RANK; pass `device` cuda")
    torch_device = resolve_device(device)
    if torch_device.type == "cuda":
        torch_device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(torch_device)
    if not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=torch_device if torch_device.type == "cuda" else None)
    return torch_device


def teardown() -> None:
    """Leave the process group (no-op when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(device: str = "auto", enabled: bool = True) -> Iterator[None]:
    """Context of :func:`setup` and :func:`teardown`; with ``enabled=False``, one plain process.

    Raises
    ------
    NeuralCTError
        With ``enabled=False`` in a process that torchrun started as one of several:
        every process would train alone and overwrite the others' output.
    """
    if not enabled:
        if launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1:
            raise NeuralCTError(
                f"started by torchrun as one of {os.environ['WORLD_SIZE']} processes without --distributed; "
                "add --distributed (or run a single process without torchrun)"
            )
        yield
        return
    setup(device)
    try:
        yield
    finally:
        teardown()


def is_distributed() -> bool:
    """True when a torch.distributed process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Rank of this process in the group, 0 without one."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes in the group, 1 without one."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0, the process that writes checkpoints, models and summaries."""
    return rank() == 0


def mean_over_processes(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over all processes (``value`` itself without a group); a collective."""
    if not is_distributed():
        return value
    total = value.clone()
    dist.all_reduce(total)
    return total / world_size()


def gather_generator_states(generator: torch.Generator) -> list[torch.Tensor]:
    """The state of every process's ``generator``, in rank order (a collective)."""
    state = generator.get_state()
    if not is_distributed():
        return [state]
    states: list[Any] = [None] * world_size()
    dist.all_gather_object(states, state)
    return states


class _ObjectiveModule(nn.Module):
    """One training objective evaluated as the forward pass of a module owning the model.

    DDP reduces gradients only for work done inside its wrapper's ``forward``; routing the
    objective through here lets both objectives (likelihood and variational, which sample
    through the inverse flow) train under DDP with the objectives unchanged.
    """

    def __init__(self, model: nn.Module, objective: Any):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return self.objective.loss(self.model, batch_size, generator)


def data_parallel_loss(model: nn.Module, objective: Any) -> Callable[[int, torch.Generator], torch.Tensor]:
    """``loss(batch_size, generator)`` of ``objective`` whose backward averages gradients over processes.

    Wraps ``model`` in :class:`torch.nn.parallel.DistributedDataParallel` (which broadcasts
    rank 0's parameters and buffers to every process when it is built: a collective).
    DDP's gradient hooks fire when ``.grad`` is accumulated, i.e. in ``loss.backward()``;
    the ``torch.autograd.grad(..., create_graph=True)`` calls inside continuous layers
    differentiate with respect to phase-space points, not parameters, so they accumulate
    nothing and DDP reduces exactly the final gradient (the tests check it against the mean
    of per-process gradients). Without a process group, the plain
    ``objective.loss(model, ...)``.
    """
    if not is_distributed():
        return lambda batch_size, generator: objective.loss(model, batch_size, generator)
    return nn.parallel.DistributedDataParallel(_ObjectiveModule(model, objective))
