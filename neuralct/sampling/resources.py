"""Memory that one evaluation of a potential keeps per point, measured."""

from __future__ import annotations

from typing import Callable

import torch

from .hmc import evaluate_potential

__all__ = ["evaluation_bytes_per_row"]

#: Points in the smaller of the two batches whose saved tensors are compared (:func:`evaluation_bytes_per_row`).
PROBE_ROWS = 8


def evaluation_bytes_per_row(potential: Callable[[torch.Tensor], torch.Tensor], point: torch.Tensor) -> float:
    """Bytes that autograd keeps per point for one energy-and-gradient evaluation of ``potential``, measured.

    The tensors saved for the backward pass are counted (each storage once) for batches of
    :data:`PROBE_ROWS` and twice as many copies of ``point``; the difference is the cost per
    point, free of what every batch shares (the network's weights). Whatever the potential is
    made of (flow layers, OpenMM forces, the rigid-body frame, placed hydrogens) is counted.

    Parameters
    ----------
    potential : callable
        Points (batch, n) to energies (batch,) in kT.
    point : torch.Tensor, shape=(1, n)
        Any point of the potential's domain (a non-finite energy there costs the same).

    Returns
    -------
    float
        Bytes per point, >= 0.
    """

    def saved_bytes(rows: int) -> int:
        storages: dict[int, int] = {}

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            evaluate_potential(potential, point.expand(rows, -1).clone())
        return sum(storages.values())

    return max(saved_bytes(2 * PROBE_ROWS) - saved_bytes(PROBE_ROWS), 0) / PROBE_ROWS
