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
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

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


def _silu_with_slope(pre: torch.Tensor, one: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``h = silu(a)``, ``sigma(a)`` and ``d silu / da = sigma + h (1 - sigma)`` at pre-activations ``a``;
    ``one`` is a 0-d tensor holding 1 (the slope is ``lerp(sigma, 1, h)``: one pass over the data)."""
    gate = torch.sigmoid(pre)
    value = pre * gate
    return value, gate, torch.lerp(gate, one, value)


def _silu_curvature(gate: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """``d^2 silu / da^2 = sigma (1 - sigma) (2 + a (1 - 2 sigma))``, written as ``s + sigma (1 - 2 s)``
    with ``s = d silu / da`` (:func:`_silu_with_slope`): two operations, no pre-activation kept."""
    return torch.add(slope, gate).addcmul_(gate, slope, value=-2)


def _lift_forward(inverse: bool, scale_bound: float, differentiable: bool, a, b, m_a, m_b, weights, biases):
    """One coupling's map of positions and momenta (the formulas are in :class:`_StackMomentumLift`).

    Parameters
    ----------
    inverse : bool
        Map ``(y_b, P_a, P_b)`` back instead of ``(x_b, p_a, p_b)`` forward.
    scale_bound : float
        ``c`` of the bounded log-scale ``s = c tanh(raw / c)``.
    differentiable : bool
        Also form the SiLU curvature terms that :func:`_lift_backward` needs.
    a, b, m_a, m_b : torch.Tensor, shape=(batch, len(block))
        Positions and momenta in the coupling's conditioning (a) and transformed (b) blocks.
    weights, biases : sequence of torch.Tensor
        The conditioner's layers in order (``weight`` of shape (out, in)).

    Returns
    -------
    outputs : tuple of torch.Tensor
        ``(new_b, new_m_a, new_m_b)``, shapes as ``b``, ``m_a``, ``m_b``; ``a`` passes through.
    intermediates : tuple
        What :func:`_lift_backward` needs; its curvature entries are None unless ``differentiable``.
    """
    inputs, gates, slopes = [], [], []
    hidden, one = a, a.new_ones(())
    for weight, bias in zip(weights[:-1], biases[:-1]):
        inputs.append(hidden)
        hidden, gate, slope = _silu_with_slope(F.linear(hidden, weight, bias), one)
        gates.append(gate)
        slopes.append(slope)
    inputs.append(hidden)
    raw, shift = F.linear(hidden, weights[-1], biases[-1]).chunk(2, dim=-1)
    bounded = raw.div_(scale_bound).tanh_()
    log_scale_slope = 1 - bounded * bounded
    scale = torch.exp(bounded * scale_bound)
    if inverse:
        moved = b - shift
        new_b, new_m_b = moved / scale, m_b * scale
        # The cotangent of s is x_b e^s P_b = (y_b - t) P_b.
        scale_cotangent, momentum_out = moved * m_b, m_b
    else:
        moved = None
        new_b, new_m_b = torch.addcmul(shift, b, scale), m_b / scale
        # x_b e^s P_b = x_b p_b: the scale cancels in the cotangent of s.
        scale_cotangent, momentum_out = b * m_b, new_m_b
    cotangent = torch.cat([scale_cotangent * log_scale_slope, momentum_out], dim=-1)
    # D^T P_b through the conditioner, last layer first: the cotangent ``u`` reaching hidden
    # layer l leaves it as ``slope_scaled[l] = u * silu'``. The backward pass needs ``u`` only
    # times silu'' (the derivative of that product by the pre-activation): kept as one tensor.
    slope_scaled, curvature_scaled = [None] * len(slopes), [None] * len(slopes)
    vjp = cotangent @ weights[-1]
    for layer in reversed(range(len(slopes))):
        slope_scaled[layer] = vjp * slopes[layer]
        if differentiable:
            curvature_scaled[layer] = _silu_curvature(gates[layer], slopes[layer]).mul_(vjp)
        vjp = slope_scaled[layer] @ weights[layer]
    new_m_a = m_a + vjp if inverse else m_a - vjp
    return (new_b, new_m_a, new_m_b), (
        scale,
        bounded,
        log_scale_slope,
        scale_cotangent,
        cotangent,
        moved,
        inputs,
        slopes,
        slope_scaled,
        curvature_scaled,
    )


def _lift_backward(
    inverse: bool,
    scale_bound: float,
    input_grad: bool,
    grad_new_b,
    grad_new_m_a,
    grad_new_m_b,
    b,
    m_b,
    new_b,
    new_m_b,
    weights,
    intermediates,
):
    """The gradients of one coupling's map (:func:`_lift_forward`, run with ``differentiable=True``).

    ``grad_new_b``, ``grad_new_m_a``, ``grad_new_m_b`` are the gradients of its outputs; ``b``,
    ``m_b``, ``new_b``, ``new_m_b`` its inputs and outputs; ``intermediates`` what it returned.

    Returns
    -------
    tuple
        ``(grad_a, grad_b, grad_m_a, grad_m_b, grad_weights, grad_biases)``: the gradients of the
        inputs, shapes as the inputs (``grad_a`` only through the conditioner, and None unless
        ``input_grad``), and lists of the conditioner's parameter gradients in layer order.
    """
    (
        scale,
        bounded,
        log_scale_slope,
        scale_cotangent,
        cotangent,
        moved,
        inputs,
        slopes,
        slope_scaled,
        curvature_scaled,
    ) = intermediates
    depth = len(slopes)
    grad_weights = [None] * len(weights)
    grad_biases = [None] * len(weights)

    # Back through the vector-Jacobian product, first hidden layer to the last layer.
    grad_vjp = grad_new_m_a if inverse else -grad_new_m_a
    # ``grad_pres[l]`` collects the gradient of hidden layer l's pre-activation: here its part
    # through silu' in the product, below its part through the layer's output.
    grad_pres = [None] * depth
    for layer in range(depth):
        grad_weights[layer] = slope_scaled[layer].t() @ grad_vjp
        grad_scaled = grad_vjp @ weights[layer].t()
        grad_pres[layer] = grad_scaled * curvature_scaled[layer]
        grad_vjp = grad_scaled.mul_(slopes[layer])
    grad_weights[-1] = cotangent.t() @ grad_vjp
    grad_scale_term, grad_momentum_out = (grad_vjp @ weights[-1].t()).chunk(2, dim=-1)

    # Back through the coupling's own algebra: gradients of b, m_b, s (log-scale) and t (shift).
    grad_scale_cotangent = grad_scale_term * log_scale_slope
    if inverse:
        grad_b = torch.addcmul(grad_new_b / scale, grad_scale_cotangent, m_b)
        grad_shift = -grad_b
        grad_m_b = torch.addcmul(grad_momentum_out, grad_scale_cotangent, moved).addcmul_(grad_new_m_b, scale)
        grad_log_scale = torch.addcmul(grad_new_m_b * new_m_b, grad_new_b, new_b, value=-1)
    else:
        grad_m_b_out = grad_new_m_b + grad_momentum_out
        scaled_grad_new_b = grad_new_b * scale
        grad_b = torch.addcmul(scaled_grad_new_b, grad_scale_cotangent, m_b)
        grad_m_b = torch.addcmul(grad_m_b_out / scale, grad_scale_cotangent, b)
        grad_log_scale = torch.addcmul(scaled_grad_new_b * b, grad_m_b_out, new_m_b, value=-1)
        grad_shift = grad_new_b
    # s = c tanh(raw / c): ds/draw = 1 - tanh^2 and d(1 - tanh^2)/draw = -2 tanh (1 - tanh^2) / c.
    grad_log_scale_slope = grad_scale_term * scale_cotangent
    grad_raw = grad_log_scale.addcmul_(bounded, grad_log_scale_slope, value=-2 / scale_bound).mul_(log_scale_slope)
    grad_out = torch.cat([grad_raw, grad_shift], dim=-1)

    # Back through the conditioner itself, last layer first.
    grad_biases[-1] = grad_out.sum(0)
    grad_weights[-1] = grad_weights[-1].addmm_(grad_out.t(), inputs[-1])
    grad_hidden = grad_out @ weights[-1]
    for layer in reversed(range(depth)):
        grad_pre = grad_pres[layer].addcmul_(grad_hidden, slopes[layer])
        grad_biases[layer] = grad_pre.sum(0)
        grad_weights[layer] = grad_weights[layer].addmm_(grad_pre.t(), inputs[layer])
        grad_hidden = grad_pre @ weights[layer] if layer > 0 or input_grad else None
    return grad_hidden, grad_b, grad_new_m_a, grad_m_b, grad_weights, grad_biases


class _StackMomentumLift(torch.autograd.Function):
    """All couplings of a :class:`CouplingStack` carrying positions and momenta, as one autograd node
    with a hand-written backward pass.

    Coupling k, in its (a, b) blocks, with the conditioner output ``(raw, t) = net(x_a)`` and the
    bounded log-scale ``s = c tanh(raw / c)``, maps forward (``inverse=False``)
    ``y_b = x_b e^s + t``, ``P_b = e^-s p_b``, ``P_a = p_a - D^T P_b``, where ``D^T P_b`` is the
    conditioner's vector-Jacobian product with the cotangent ``(x_b p_b ds/draw, P_b)`` of
    ``(raw, t)`` (``D = d y_b / d x_a``); the inverse (``inverse=True``) maps ``(y_b, P_a, P_b)``
    back: ``x_b = (y_b - t) e^-s``, ``p_b = e^s P_b``, ``p_a = P_a + D^T P_b``
    (:func:`_lift_forward`). Between couplings the blocks are swapped, passed on, or merged and
    split again (:meth:`CouplingStack._schedule`).

    The backward pass differentiates all of it, the vector-Jacobian products included (so second
    derivatives of the conditioners), coupling by coupling in reverse (:func:`_lift_backward`),
    in a few fused tensor operations per layer and one autograd node for the whole stack, where
    autograd would record dozens of small nodes per coupling: training at batch 200 is bound by
    the number of tensor operations, not by arithmetic. It is differentiable once (no
    ``create_graph`` through it); ``tests/flows/test_flows.py`` checks it against finite differences
    and against autograd.

    ``parameters`` are the conditioners' ``(weight, bias)`` pairs, coupling by coupling in stack
    order and layer by layer (:meth:`CouplingStack._conditioner_parameters`); each conditioner's
    last layer is linear, the others SiLU.
    """

    @staticmethod
    def forward(ctx, stack: "CouplingStack", inverse: bool, u, m, *parameters):
        ctx.stack, ctx.inverse = stack, inverse
        # The parameters go through save_for_backward (version checks); the intermediates, private
        # to this pass and never outputs, are a plain attribute (cheaper to keep, no cycle).
        ctx.save_for_backward(*parameters)
        out_u, out_m, ctx.passes = stack._run(u, m, inverse, parameters, keep=True)
        return out_u, out_m

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_u, grad_m):
        stack, inverse, passes = ctx.stack, ctx.inverse, ctx.passes
        parameters = ctx.saved_tensors
        offsets = stack._parameter_offsets
        schedule = stack._schedule(inverse)
        grad_parameters: list[torch.Tensor | None] = [None] * len(parameters)
        last = stack.couplings[schedule[-1][0]]
        # Gradients of the blocks (a, b, m_a, m_b) the coupling at hand left.
        grads = (*last.split(grad_u), *last.split(grad_m))
        for position in reversed(range(len(schedule))):
            index, relation = schedule[position]
            coupling = stack.couplings[index]
            b, m_b, new_b, new_m_b, intermediates = passes[position]
            grad_a_out, grad_new_b, grad_new_m_a, grad_new_m_b = grads
            grad_hidden, grad_b, grad_m_a, grad_m_b, grad_weights, grad_biases = _lift_backward(
                inverse,
                coupling.scale_bound,
                position > 0 or ctx.needs_input_grad[2],
                grad_new_b,
                grad_new_m_a,
                grad_new_m_b,
                b,
                m_b,
                new_b,
                new_m_b,
                parameters[offsets[index] : offsets[index + 1] : 2],
                intermediates,
            )
            grad_parameters[offsets[index] : offsets[index + 1]] = [
                grad for pair in zip(grad_weights, grad_biases) for grad in pair
            ]
            # x_a passes through the coupling and feeds its conditioner.
            grads = (grad_a_out if grad_hidden is None else grad_a_out + grad_hidden, grad_b, grad_m_a, grad_m_b)
            # Back through the rearrangement that brought the blocks to this coupling.
            if relation == "complement":
                grads = (grads[1], grads[0], grads[3], grads[2])
            elif relation in ("other", "first"):
                grad_u, grad_m = coupling.merge(grads[0], grads[1]), coupling.merge(grads[2], grads[3])
                if relation == "other":
                    previous = stack.couplings[schedule[position - 1][0]]
                    grads = (*previous.split(grad_u), *previous.split(grad_m))
        return None, None, grad_u, grad_m, *grad_parameters


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
        # Whether the conditioning block is the first half of the coordinates (True), the second
        # (False), or neither (None): halves are split and merged without a gather.
        self.conditioning_first = _halves_order(mask)
        self.scale_bound = float(scale_bound)
        self.net = mlp(len(self.conditioning), 2 * len(self.transformed), hidden, depth)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_a, x_b)`` of ``x`` (batch, n): two views, after one gather unless the blocks are halves."""
        sizes = [len(self.conditioning), len(self.transformed)]
        if self.conditioning_first is None:
            return x.index_select(-1, self.split_order).split(sizes, dim=-1)
        if self.conditioning_first:
            return x.split(sizes, dim=-1)
        x_b, x_a = x.split(sizes[::-1], dim=-1)
        return x_a, x_b

    def merge(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`split`: blocks back to coordinate order, shape (batch, n)."""
        if self.conditioning_first is None:
            return torch.cat([x_a, x_b], dim=-1).index_select(-1, self.merge_order)
        return torch.cat([x_a, x_b] if self.conditioning_first else [x_b, x_a], dim=-1)

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


def _halves_order(mask: torch.Tensor) -> bool | None:
    """True if ``mask`` (bool, shape (n,)) is True on a first block of coordinates and False on the
    rest, False for the reverse, None if the two blocks interleave."""
    changes = int((mask[1:] != mask[:-1]).sum())
    return bool(mask[0]) if changes == 1 else None


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
        # The conditioners' linear layers in order (a plain list: they are registered through
        # ``couplings``), and where each coupling's parameters start in :meth:`_conditioner_parameters`.
        self._linear_layers = [
            module for coupling in self.couplings for module in coupling.net if isinstance(module, nn.Linear)
        ]
        counts = [2 * sum(isinstance(module, nn.Linear) for module in coupling.net) for coupling in self.couplings]
        self._parameter_offsets = [sum(counts[:index]) for index in range(len(counts) + 1)]
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

    def _schedule(self, inverse: bool) -> list[tuple[int, str]]:
        """The couplings' indices in the order they act (``inverse`` reverses it), each with how its
        blocks follow from those the coupling before it left: ``"first"`` (split from the input),
        ``"complement"`` (the same split, a and b swapped), ``"same"`` (passed on) or ``"other"``
        (merged and split again). The relation between neighbours is symmetric, so it holds in
        both directions."""
        order = range(len(self.couplings) - 1, -1, -1) if inverse else range(len(self.couplings))
        schedule, previous = [], None
        for index in order:
            schedule.append((index, "first" if previous is None else self._split_relation[max(index, previous)]))
            previous = index
        return schedule

    def _conditioner_parameters(self) -> list[torch.Tensor]:
        """Every conditioner's ``(weight, bias)`` pairs, coupling by coupling in stack order."""
        return [tensor for linear in self._linear_layers for tensor in (linear.weight, linear.bias)]

    def _run(self, u: torch.Tensor, m: torch.Tensor, inverse: bool, parameters, keep: bool):
        """Push positions ``u`` and momenta ``m`` (batch, n) through the couplings, backwards if
        ``inverse``, with the conditioner ``parameters`` of :meth:`_conditioner_parameters`.

        Returns ``(u, m)`` after the couplings and, if ``keep``, what each coupling's backward pass
        needs, in the order they acted (else None). Couplings that split the coordinates the same
        way (a pattern and its complement) pass their blocks on directly: coordinates are
        gathered into blocks and merged back only where the split changes.
        """
        passes = [] if keep else None
        offsets = self._parameter_offsets
        blocks, coupling = None, None
        for index, relation in self._schedule(inverse):
            previous, coupling = coupling, self.couplings[index]
            if relation == "complement":
                blocks = (blocks[1], blocks[0], blocks[3], blocks[2])
            elif relation in ("other", "first"):
                if relation == "other":
                    u, m = previous.merge(blocks[0], blocks[1]), previous.merge(blocks[2], blocks[3])
                blocks = (*coupling.split(u), *coupling.split(m))
            a, b, m_a, m_b = blocks
            own = parameters[offsets[index] : offsets[index + 1]]
            (new_b, new_m_a, new_m_b), intermediates = _lift_forward(
                inverse, coupling.scale_bound, keep, a, b, m_a, m_b, own[0::2], own[1::2]
            )
            if keep:
                passes.append((b, m_b, new_b, new_m_b, intermediates))
            blocks = (a, new_b, new_m_a, new_m_b)
        return coupling.merge(blocks[0], blocks[1]), coupling.merge(blocks[2], blocks[3]), passes

    def _carry(self, u: torch.Tensor, m: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Push positions ``u`` and momenta ``m`` (batch, n) through the couplings, backwards if
        ``inverse``: one autograd node when gradients are wanted, plain tensor operations if not."""
        parameters = self._conditioner_parameters()
        if torch.is_grad_enabled() and (
            u.requires_grad or m.requires_grad or any(parameter.requires_grad for parameter in parameters)
        ):
            return _StackMomentumLift.apply(self, inverse, u, m, *parameters)
        return self._run(u, m, inverse, parameters, keep=False)[:2]

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
