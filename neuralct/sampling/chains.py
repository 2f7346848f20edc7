"""Running kernels on a batch of chains: warm-up with adaptation, then fixed kernels applied in turn."""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from .hmc import ChainState, HamiltonianMonteCarlo

__all__ = ["Kernel", "warm_up", "iterate", "sample_chains"]


class Kernel(Protocol):
    """A Markov kernel on a batch of chains (see :mod:`neuralct.sampling.hmc`)."""

    name: str

    def step(self, state: ChainState, generator: torch.Generator | None = None, adapt: bool = False) -> ChainState: ...


def iterate(kernels: Sequence[Kernel], state: ChainState, generator: torch.Generator | None = None, adapt: bool = False) -> ChainState:
    """One iteration: each kernel once, in order. A composition of invariant kernels is invariant."""
    for kernel in kernels:
        state = kernel.step(state, generator, adapt=adapt)
    return state


def warm_up(kernels: Sequence[Kernel], state: ChainState, iterations: int, generator: torch.Generator | None = None) -> ChainState:
    """``iterations`` adapting iterations, then freeze every step size (the kernels are fixed from here on)."""
    for _ in range(iterations):
        state = iterate(kernels, state, generator, adapt=True)
    for kernel in kernels:
        if isinstance(kernel, HamiltonianMonteCarlo):
            kernel.freeze()
    return state


def sample_chains(
    kernels: Sequence[Kernel], state: ChainState, warmup: int, samples: int, generator: torch.Generator | None = None
) -> tuple[ChainState, torch.Tensor]:
    """Warm up, then record the positions after each of ``samples`` iterations.

    Returns
    -------
    state : ChainState
        The final state.
    positions : torch.Tensor, shape=(samples, chains, n)
        Recorded positions in the kernels' space.
    """
    state = warm_up(kernels, state, warmup, generator)
    recorded = []
    for _ in range(samples):
        state = iterate(kernels, state, generator)
        recorded.append(state.position)
    return state, torch.stack(recorded)
