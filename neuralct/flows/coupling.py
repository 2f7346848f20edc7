"""Invertible maps of configuration space: real-NVP affine couplings, started at the identity.

Each map also carries momenta along in closed form (the cotangent lift ``P = (dF/dq)^-T p``):
a coupling's Jacobian is block triangular, so its transpose is solved by a diagonal scaling and
one vector-Jacobian product through the conditioner network, written out by hand (no autograd
pass inside the forward pass, no inverse map).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional

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


def _mlp_forward(net: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``net(x)`` for an :func:`mlp`, and the SiLU derivatives at each hidden layer (for :func:`_mlp_vjp`)."""
    *hidden, last = [module for module in net if isinstance(module, nn.Linear)]
    slopes = []
    for linear in hidden:
        pre = functional.linear(x, linear.weight, linear.bias)
        gate = torch.sigmoid(pre)
        x = pre * gate
        # d silu(a) / da = sigma(a) (1 + a (1 - sigma(a))) = sigma(a) (1 + a - silu(a))
        slopes.append(gate * (1 + pre - x))
    return functional.linear(x, last.weight, last.bias), slopes


def _mlp_vjp(net: nn.Sequential, slopes: list[torch.Tensor], cotangent: torch.Tensor) -> torch.Tensor:
    """``cotangent^T d net / d x`` row by row, at the point whose ``slopes`` :func:`_mlp_forward` returned."""
    linears = [module for module in net if isinstance(module, nn.Linear)]
    for linear, slope in zip(reversed(linears[1:]), reversed(slopes)):
        cotangent = (cotangent @ linear.weight) * slope
    return cotangent @ linears[0].weight


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
        # Coordinate order -> (a, b) blocks and back; not saved: they follow from the mask.
        split_order = torch.cat([self.conditioning, self.transformed])
        self.register_buffer("split_order", split_order, persistent=False)
        self.register_buffer("merge_order", torch.argsort(split_order), persistent=False)
        self.scale_bound = float(scale_bound)
        self.net = mlp(len(self.conditioning), 2 * len(self.transformed), hidden, depth)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_a, x_b)`` of ``x`` (batch, n): one gather, then two views."""
        return x.index_select(-1, self.split_order).split([len(self.conditioning), len(self.transformed)], dim=-1)

    def merge(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`split`: blocks back to coordinate order, shape (batch, n)."""
        return torch.cat([x_a, x_b], dim=-1).index_select(-1, self.merge_order)

    def _shift_and_log_scale(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_scale, shift = self.net(x_a).chunk(2, dim=-1)
        log_scale = self.scale_bound * torch.tanh(raw_scale / self.scale_bound)
        return shift, log_scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = self.split(x)
        shift, log_scale = self._shift_and_log_scale(x_a)
        return self.merge(x_a, x_b * torch.exp(log_scale) + shift), log_scale.sum(-1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y_a, y_b = self.split(y)
        shift, log_scale = self._shift_and_log_scale(y_a)
        return self.merge(y_a, (y_b - shift) * torch.exp(-log_scale)), -log_scale.sum(-1)

    def _conditioner_with_slopes(self, x_a: torch.Tensor):
        """``(shift, log_scale, d log_scale / d raw, slopes)`` at ``x_a``: what the momentum map needs."""
        out, slopes = _mlp_forward(self.net, x_a)
        raw_scale, shift = out.chunk(2, dim=-1)
        bounded = torch.tanh(raw_scale / self.scale_bound)
        return shift, self.scale_bound * bounded, 1 - bounded * bounded, slopes

    def _off_diagonal_pull_back(self, slopes, log_scale_slope, scaled_momentum_b: torch.Tensor, momentum_b: torch.Tensor) -> torch.Tensor:
        """``D^T m_b`` with ``D = d y_b / d x_a = diag(x_b e^s) ds/dx_a + dt/dx_a``.

        ``scaled_momentum_b`` is ``x_b e^s m_b``, the cotangent of ``s``.
        """
        cotangent = torch.cat([scaled_momentum_b * log_scale_slope, momentum_b], dim=-1)
        return _mlp_vjp(self.net, slopes, cotangent)

    def forward_blocks(self, x_a, x_b, p_a, p_b) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``y = G(x)`` and ``P = (dG/dx)^-T p`` on blocks: ``(y_a, y_b, P_a, P_b)``, each (batch, len(block)).

        ``dG/dx = [[I, 0], [D, diag(e^s)]]`` in (a, b) blocks, so ``P_b = e^-s p_b`` and
        ``P_a = p_a - D^T P_b``: one vector-Jacobian product through the conditioner.
        """
        shift, log_scale, log_scale_slope, slopes = self._conditioner_with_slopes(x_a)
        scale = torch.exp(log_scale)
        P_b = p_b / scale
        # x_b e^s P_b = x_b p_b: the scale cancels in the cotangent of s.
        P_a = p_a - self._off_diagonal_pull_back(slopes, log_scale_slope, x_b * p_b, P_b)
        return x_a, x_b * scale + shift, P_a, P_b

    def inverse_blocks(self, y_a, y_b, P_a, P_b) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x = G^-1(y)`` and ``p = (dG/dx)^T P`` on blocks: ``(x_a, x_b, p_a, p_b)``."""
        shift, log_scale, log_scale_slope, slopes = self._conditioner_with_slopes(y_a)
        moved_b = y_b - shift
        p_a = P_a + self._off_diagonal_pull_back(slopes, log_scale_slope, moved_b * P_b, P_b)
        scale = torch.exp(log_scale)
        return y_a, moved_b / scale, p_a, P_b * scale


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
        masks = _masks(dim, n_layers)
        self.couplings = nn.ModuleList(AffineCoupling(mask, hidden, depth, scale_bound) for mask in masks)
        # How each coupling splits the coordinates relative to the one before it (plain data,
        # decided once: no device round trip per step): "complement", "same" or "other".
        self._split_relation = ["other"] + [
            "complement" if torch.equal(mask, ~before) else "same" if torch.equal(mask, before) else "other"
            for before, mask in zip(masks, masks[1:])
        ]
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

    def _carry(self, u: torch.Tensor, m: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Push positions ``u`` and momenta ``m`` (batch, n) through the couplings, backwards if ``inverse``.

        Consecutive couplings that split the coordinates the same way (a pattern and its
        complement) pass their blocks on directly: coordinates are gathered into blocks
        and merged back only where the split changes.
        """
        order = range(len(self.couplings) - 1, -1, -1) if inverse else range(len(self.couplings))
        blocks, previous = None, None
        for index in order:
            coupling = self.couplings[index]
            # The relation between neighbours is symmetric, so it holds in both directions.
            relation = "other" if previous is None else self._split_relation[max(index, previous_index)]
            if relation == "complement":
                blocks = (blocks[1], blocks[0], blocks[3], blocks[2])
            elif relation == "other":
                if previous is not None:
                    u, m = previous.merge(blocks[0], blocks[1]), previous.merge(blocks[2], blocks[3])
                blocks = (*coupling.split(u), *coupling.split(m))
            blocks = (coupling.inverse_blocks if inverse else coupling.forward_blocks)(*blocks)
            previous, previous_index = coupling, index
        return previous.merge(blocks[0], blocks[1]), previous.merge(blocks[2], blocks[3])

    def forward_with_momenta(self, q: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``Q = F(q)`` and ``P = (dF/dq)^-T p``, shapes (batch, n) each, layer by layer in closed form.

        ``(dF/dq)^-T = J_k^-T ... J_1^-T`` for ``F = G_k o ... o G_1``: momenta are pushed
        through each map with its own Jacobian, like positions.
        """
        u, m = self._carry((q - self.loc) / self.scale, p * self.scale, inverse=False)
        return self.loc + self.scale * u, m / self.scale

    def inverse_with_momenta(self, Q: torch.Tensor, P: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``q = F^-1(Q)`` and ``p = (dF/dq)^T P`` (at ``q``), shapes (batch, n) each."""
        u, m = self._carry((Q - self.loc) / self.scale, P * self.scale, inverse=True)
        return self.loc + self.scale * u, m / self.scale

    @torch.no_grad()
    def initialize(self, q: torch.Tensor) -> None:
        """Set ``loc`` and ``scale`` to the mean and standard deviation of ``q`` (batch, n)."""
        self.loc.copy_(q.mean(0))
        self.scale.copy_(q.std(0).clamp_min(torch.finfo(q.dtype).eps ** 0.5))
