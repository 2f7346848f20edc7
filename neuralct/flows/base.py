"""The flow contract and the composition of symplectic layers."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

__all__ = ["SymplecticFlow", "SymplecticSequential", "split_phase_space", "join_phase_space", "map_in_chunks"]


def split_phase_space(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split phase-space points into positions and momenta.

    Parameters
    ----------
    x : torch.Tensor, shape=(batch, 2n)
        Positions first, then momenta.

    Returns
    -------
    q, p : torch.Tensor, shape=(batch, n)
    """
    n = x.shape[-1] // 2
    return x[..., :n], x[..., n:]


def join_phase_space(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`split_phase_space`: shape (batch, n) twice -> (batch, 2n)."""
    return torch.cat([q, p], dim=-1)


@torch.no_grad()
def map_in_chunks(flow: nn.Module, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """``flow(x)[0]`` without gradients, a chunk of rows at a time (bounded memory), shape of ``x``."""
    return torch.cat([flow(x[start : start + chunk])[0] for start in range(0, len(x), chunk)])


class SymplecticFlow(nn.Module):
    """A bijection on phase space ``x = (q, p)`` of shape (batch, 2n).

    Subclasses implement ``forward(x) -> (z, logdet)`` and ``inverse(z) -> (x, logdet)``,
    with ``logdet`` of shape (batch,) the log absolute Jacobian determinant of the
    direction computed. A canonical (symplectic) layer has ``logdet == 0``.

    ``acts_on_configuration`` is True for layers whose new positions depend on the old
    positions only (point transformations): then every latent position is a function
    of the configuration, a collective variable.
    """

    acts_on_configuration: bool = False

    def __init__(self, dim: int):
        super().__init__()
        self.dim = int(dim)

    def configuration_forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The configuration part ``Q = F(q)`` and its ``log|det dF/dq|``, shape (batch,).

        Only defined for point transformations.
        """
        raise NotImplementedError(
            f"{type(self).__name__} mixes positions and momenta: it has no configuration-space map"
        )

    def configuration_inverse(self, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q = F^-1(Q)`` and ``log|det dF^-1/dQ|``, shape (batch,); point transformations only."""
        raise NotImplementedError(
            f"{type(self).__name__} mixes positions and momenta: it has no configuration-space map"
        )

    def initialize(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation from phase-space samples ``x`` (batch, 2n); default: nothing."""


class SymplecticSequential(SymplecticFlow):
    """Composition ``T = T_k o ... o T_1`` of flows; log-determinants add."""

    def __init__(self, layers: Iterable[SymplecticFlow]):
        layers = list(layers)
        if not layers:
            raise ValueError("a composition needs at least one layer")
        dims = {layer.dim for layer in layers}
        if len(dims) != 1:
            raise ValueError(f"layers disagree on the dimension: {sorted(dims)}")
        super().__init__(dims.pop())
        self.layers = nn.ModuleList(layers)
        self.acts_on_configuration = all(layer.acts_on_configuration for layer in layers)

    @staticmethod
    def _compose(maps, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply ``maps`` in order, adding up their log-determinants."""
        logdet = x.new_zeros(x.shape[:-1])
        for map_ in maps:
            x, change = map_(x)
            logdet = logdet + change
        return x, logdet

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._compose(self.layers, x)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._compose([layer.inverse for layer in reversed(self.layers)], z)

    def configuration_forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._compose([layer.configuration_forward for layer in self.layers], q)

    def configuration_inverse(self, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._compose([layer.configuration_inverse for layer in reversed(self.layers)], Q)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Initialise each layer on the data pushed through the layers before it."""
        for layer in self.layers:
            layer.initialize(x)
            x = map_in_chunks(layer, x)
