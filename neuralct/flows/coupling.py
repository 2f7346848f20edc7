"""Invertible maps of configuration space: real-NVP affine couplings, started at the identity."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["AffineCoupling", "CouplingStack", "mlp"]


def mlp(n_in: int, n_out: int, hidden: int, depth: int, output_bias: bool = True) -> nn.Sequential:
    """A smooth (SiLU) multilayer perceptron whose last layer starts at zero.

    Smoothness matters: momenta transform with the Jacobian of the map, so training
    differentiates the network twice. Networks used as energies take
    ``output_bias=False``: a constant offset has no effect on their gradient.
    """
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    last = nn.Linear(width, n_out, bias=output_bias)
    nn.init.zeros_(last.weight)
    if output_bias:
        nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class AffineCoupling(nn.Module):
    """``y_b = x_b * exp(s(x_a)) + t(x_a)``, ``y_a = x_a``, for a fixed split ``(a, b)``.

    The log-scale is bounded, ``s = scale_bound * tanh(raw / scale_bound)``, which keeps
    the map well conditioned; at initialisation ``s = t = 0`` (identity).

    Parameters
    ----------
    mask : torch.Tensor of bool, shape=(n,)
        True for the conditioning coordinates ``a`` (left unchanged).
    hidden, depth : int
        Width and number of hidden layers of the conditioner network.
    """

    def __init__(self, mask: torch.Tensor, hidden: int = 64, depth: int = 2, scale_bound: float = 2.0):
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        self.register_buffer("conditioning", torch.nonzero(mask).flatten())
        self.register_buffer("transformed", torch.nonzero(~mask).flatten())
        self.scale_bound = float(scale_bound)
        self.net = mlp(len(self.conditioning), 2 * len(self.transformed), hidden, depth)

    def _shift_and_log_scale(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_scale, shift = self.net(x_a).chunk(2, dim=-1)
        log_scale = self.scale_bound * torch.tanh(raw_scale / self.scale_bound)
        return shift, log_scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a = x[..., self.conditioning]
        shift, log_scale = self._shift_and_log_scale(x_a)
        y = x.clone()
        y[..., self.transformed] = x[..., self.transformed] * torch.exp(log_scale) + shift
        return y, log_scale.sum(-1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y_a = y[..., self.conditioning]
        shift, log_scale = self._shift_and_log_scale(y_a)
        x = y.clone()
        x[..., self.transformed] = (y[..., self.transformed] - shift) * torch.exp(-log_scale)
        return x, -log_scale.sum(-1)


def _masks(n: int, count: int) -> list[torch.Tensor]:
    """Alternating split patterns: even/odd, then first/second half, and their complements.

    Every coordinate is transformed in every pair of consecutive layers, and the two
    patterns mix neighbours and distant coordinates.
    """
    index = torch.arange(n)
    patterns = [index % 2 == 0, index < math.ceil(n / 2)]
    masks = []
    for layer in range(count):
        pattern = patterns[(layer // 2) % len(patterns)]
        masks.append(pattern if layer % 2 == 0 else ~pattern)
    return masks


class CouplingStack(nn.Module):
    """A bijection ``F(q) = loc + scale * G((q - loc) / scale)`` of R^n, G a stack of couplings.

    ``loc`` and ``scale`` are fixed buffers (set from data by :meth:`initialize`) so the
    networks see coordinates of order one; ``F`` is the identity at initialisation.
    """

    def __init__(self, dim: int, n_layers: int = 4, hidden: int = 64, depth: int = 2, scale_bound: float = 2.0):
        super().__init__()
        if dim < 2:
            raise ValueError("coupling layers need at least 2 coordinates")
        self.dim = dim
        self.couplings = nn.ModuleList(AffineCoupling(mask, hidden, depth, scale_bound) for mask in _masks(dim, n_layers))
        self.register_buffer("loc", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``Q = F(q)`` and ``log|det dF/dq|``; shapes (batch, n) and (batch,)."""
        u = (q - self.loc) / self.scale
        logdet = q.new_zeros(q.shape[:-1])
        for coupling in self.couplings:
            u, step = coupling(u)
            logdet = logdet + step
        return self.loc + self.scale * u, logdet

    def inverse(self, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q = F^-1(Q)`` and ``log|det dF^-1/dQ|``; shapes (batch, n) and (batch,)."""
        u = (Q - self.loc) / self.scale
        logdet = Q.new_zeros(Q.shape[:-1])
        for coupling in reversed(self.couplings):
            u, step = coupling.inverse(u)
            logdet = logdet + step
        return self.loc + self.scale * u, logdet

    @torch.no_grad()
    def initialize(self, q: torch.Tensor) -> None:
        """Set ``loc`` and ``scale`` to the mean and standard deviation of ``q`` (batch, n)."""
        self.loc.copy_(q.mean(0))
        self.scale.copy_(q.std(0).clamp_min(torch.finfo(q.dtype).eps ** 0.5))
