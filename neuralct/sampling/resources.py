"""Memory a sampling run needs: what one evaluation of a potential keeps per point (measured), and the run's arrays."""

from __future__ import annotations

from typing import Callable

import torch

from ..model.transformation import NeuralCanonicalTransformation
from .chains import EVALUATION_CHUNK, START_CANDIDATES_PER_CHAIN
from .diagnostics import KISH_CHUNK
from .hmc import evaluate_potential
from .targets import LatentPotential, SamplingTarget, flow_draws_whole_configurations

__all__ = ["evaluation_bytes_per_row", "memory_needed"]

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


#: Peak memory of an energy-and-gradient evaluation per byte that autograd saves for the backward pass (those
#: tensors, the gradients of the pass and the forward's temporaries): 1.3 to 2.2 measured on toy and alanine models.
EVALUATION_OVERHEAD = 3.0

#: Arrays of shape (chains, n) alive in one HMC step: position, gradient, momenta, proposal and row-selected copies.
CHAIN_ARRAYS = 16

#: Copies of each recorded point and energy alive at once, at worst: the recorded lists, their stack, the serialised
#: checkpoint and its bytes, the physical points of the report (freed memory is not always returned to the system).
RECORD_COPIES = 8

#: Copies of each recorded sample's atomic positions in the report: the frame's and the placed hydrogens' temporaries,
#: the dihedrals, the written frames (6 to 10 kB per alanine dipeptide sample measured, 12.5 kB counted with its
#: point).
POSITION_COPIES = 16

#: Floats per recorded sample in the autocorrelation of an observable (an FFT zero-padded to up to 4 times its
#: length, complex).
AUTOCORRELATION_FLOATS = 16

#: Bytes of the report whatever its size: the plotting library and the writers of the files.
REPORT_BYTES = 64e6

#: Bytes per recorded iteration beyond its numbers: the tensor objects in the recorded lists (measured 1.1 kB).
ITERATION_BYTES = 2048

#: Bytes per warm-up iteration: a float of the step-size history, and its copy in a checkpoint.
WARMUP_ITERATION_BYTES = 64

#: Copies of Kish's log-weights alive at once (the chunks, their concatenation, the array).
KISH_COPIES = 4


def memory_needed(
    model: NeuralCanonicalTransformation,
    target: SamplingTarget,
    *,
    chains: int,
    samples: int,
    warmup: int,
    kish_samples: int,
) -> dict[str, tuple[float, str]]:
    """A generous estimate of the memory a sampling run's large arrays take, in bytes, by what holds them.

    The memory of one energy-and-gradient evaluation per point is measured on a few points
    (:func:`evaluation_bytes_per_row`, times :data:`EVALUATION_OVERHEAD`); the rest is counted
    from the run's sizes: the chains' batch and their starting draws, the recorded samples (with
    their atomic positions for molecules) and their copies at a checkpoint and in the report,
    Kish's flow samples, the warm-up's history.

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        The model sampled through.
    target : SamplingTarget
        What the chains sample.
    chains, samples, warmup : int
        Chains, recorded iterations per chain, and warm-up iterations.
    kish_samples : int
        Flow draws for Kish's ESS (none are drawn where the flow's weights are not defined).

    Returns
    -------
    dict of str to (float, str)
        What holds the memory -> (bytes, the arguments that scale it, backquoted), for
        :func:`neuralct.workflows.memory.check_fits`.
    """
    float_bytes = model.masses.element_size()
    dim = model.dim + target.placed_dim
    atoms = target.description["atoms"] if target.kind == "molecule" else 0
    configuration_flow = model.flow.acts_on_configuration
    if configuration_flow:
        # The latent potential costs the most: the flow, then the physical potential.
        potential, point = LatentPotential(model, target.potential), torch.zeros(1, model.dim, dtype=model.masses.dtype)
    else:
        potential, point = target.potential, model.position_offset[None]
    point = torch.cat([point, target.placed_start.to(point.dtype)], dim=1)
    row = EVALUATION_OVERHEAD * evaluation_bytes_per_row(potential, point)
    draws = START_CANDIDATES_PER_CHAIN * chains if configuration_flow else 0
    recorded = samples * chains
    needed = {
        "the chains": (
            chains * (row + CHAIN_ARRAYS * dim * float_bytes)
            + draws * (dim + 2) * float_bytes
            + min(draws, EVALUATION_CHUNK) * row,
            "`chains`",
        ),
        "the recorded samples": (
            recorded * float_bytes * ((dim + 1) * RECORD_COPIES + 3 * atoms * POSITION_COPIES + AUTOCORRELATION_FLOATS)
            + samples * ITERATION_BYTES
            + min(recorded, EVALUATION_CHUNK) * row
            + REPORT_BYTES,
            "`samples` or `chains`",
        ),
        "the warm-up": (warmup * WARMUP_ITERATION_BYTES, "`warmup`"),
    }
    if kish_samples and flow_draws_whole_configurations(model, target):
        needed["Kish's flow samples"] = (
            kish_samples * float_bytes * KISH_COPIES + min(kish_samples, KISH_CHUNK) * row,
            "`kish_samples`",
        )
    return needed
