"""Running kernels on a batch of chains: warm-up with adaptation, then fixed kernels applied in turn."""

from __future__ import annotations

from typing import Protocol, Sequence

import torch

from .hmc import ChainState, HamiltonianMonteCarlo

__all__ = ["Kernel", "warm_up", "end_warmup_iteration", "iterate", "sample_chains"]


class Kernel(Protocol):
    """A Markov kernel on a batch of chains (see :mod:`neuralct.sampling.hmc`)."""

    name: str

    def step(self, state: ChainState, generator: torch.Generator | None = None, adapt: bool = False) -> ChainState: ...


def iterate(
    kernels: Sequence[Kernel], state: ChainState, generator: torch.Generator | None = None, adapt: bool = False
) -> ChainState:
    """One iteration: each kernel once, in order. A composition of invariant kernels is invariant."""
    for kernel in kernels:
        state = kernel.step(state, generator, adapt=adapt)
    return state


def warm_up(
    kernels: Sequence[Kernel], state: ChainState, iterations: int, generator: torch.Generator | None = None
) -> ChainState:
    """``iterations`` adapting iterations (see :func:`end_warmup_iteration`); the kernels are fixed from here on."""
    for done in range(1, iterations + 1):
        state = iterate(kernels, state, generator, adapt=True)
        end_warmup_iteration(kernels, done, iterations)
    return state


def end_warmup_iteration(kernels: Sequence[Kernel], done: int, iterations: int) -> None:
    """After warm-up iteration ``done`` of ``iterations``: fit HMC mass matrices half-way, freeze step sizes at the end.

    For ``mass_matrix="curvature"`` the first quarter lets the chains relax from their starts
    (its curvature is discarded: ``E[grad U grad U^T]`` is the mean Hessian only at
    equilibrium), the second quarter collects the curvature of the visited states, and the
    second half adapts the step size to the fitted masses.
    """
    for kernel in kernels:
        if isinstance(kernel, HamiltonianMonteCarlo):
            if done == iterations // 4 and iterations // 4 < iterations // 2:
                kernel.discard_curvature()
            if done == iterations // 2:
                kernel.fit_mass_matrix()
            if done == iterations:
                kernel.freeze()


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
