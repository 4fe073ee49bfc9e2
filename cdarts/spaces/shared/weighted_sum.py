"""``sum_m w_m * t_m`` as one autograd node: the weighted sum of a search cell's node.

Written with ``*`` and ``+``, a node of ``M`` weighted terms costs ``2M - 1`` full-size
intermediate tensors in forward and, in backward, a full-size product ``grad * t_m`` per term
just to reduce it to the scalar gradient of ``w_m``. Here the forward accumulates in place into
one output, and the weight gradients are dot products that write nothing. The values and
gradients are the same (up to the order of floating-point sums); the memory kept for backward is
the same too (the terms, which the products would have saved as well).

Most candidate ops of a search cell end in a BatchNorm without affine parameters, in training
mode: ``t_m = (x_m - mean_m) * invstd_m`` per channel. Such a term can be handed over as its BN
input (:class:`NormalisedTerm`) and is then normalised inside the sum, ``w_m * invstd_m`` times
``x_m`` accumulated in place plus one per-channel shift for all of them: the normalised tensor is
never written, nor kept for backward (the BN input is, as BatchNorm keeps it). In backward, one
BatchNorm backward per such term, given ``w_m`` as its per-channel scale, yields both the input
gradient and, as its weight gradient ``sum(grad * t_m)`` per channel, the gradient of ``w_m``:
the products ``grad * w_m`` and the dot products of those terms go away. The BN modules' running
statistics are updated as their own forward would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import FunctionCtx

from cdarts.spaces.shared.batch_norm import BatchNorm2d
from cdarts.spaces.shared.phase_split_conv import interleaved_view, parity_view, polyphase_components


@dataclass(frozen=True)
class NormalisedTerm:
    """The term ``batch_norm(x)`` of a training-mode :class:`BatchNorm2d` without affine
    parameters, given by the BN's input x (N, C, H, W); with ``polyphase``, x holds the term's
    polyphase components instead, (4N, C, H/2, W/2) channels-last (phase_split_conv.py): the
    sum reads them in place, so the term is never interleaved (BatchNorm is the same per pixel,
    so normalising the components is normalising the term)."""

    x: torch.Tensor
    batch_norm: BatchNorm2d
    polyphase: bool = False


def folds_into_sum(batch_norm: BatchNorm2d, x: torch.Tensor) -> bool:
    """True where ``batch_norm(x)`` may be handed to :func:`weighted_sum` as a
    :class:`NormalisedTerm`: no affine parameters, batch statistics (training mode or no running
    statistics), outside autocast (which would run the BN in another precision)."""
    uses_batch_statistics = batch_norm.training or not batch_norm.track_running_stats
    return uses_batch_statistics and not batch_norm.affine and not torch.is_autocast_enabled(x.device.type)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum of ``a * b`` over every element, without a temporary when both share a dense layout."""
    if a.dtype == b.dtype:
        if a.is_contiguous() and b.is_contiguous():
            return torch.dot(a.view(-1), b.view(-1))
        layout = torch.channels_last
        if a.dim() == 4 and a.is_contiguous(memory_format=layout) and b.is_contiguous(memory_format=layout):
            # (N, C, H, W) channels-last is (N, H, W, C) in memory: flatten that view.
            return torch.dot(a.permute(0, 2, 3, 1).reshape(-1), b.permute(0, 2, 3, 1).reshape(-1))
    return (a * b).sum()


def _per_channel(v: torch.Tensor) -> torch.Tensor:
    """(C,) -> (1, C, 1, 1), to broadcast over an (N, C, H, W) tensor."""
    return v.view(1, -1, 1, 1)


def _layout_of(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


class _WeightedSum(torch.autograd.Function):
    """weights (M,), then the plain terms, then the BN inputs of the normalised terms; the
    positions of the plain ones among the M, one eps and one polyphase flag per normalised one
    are arguments."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        weights: torch.Tensor,
        plain_positions: tuple[int, ...],
        epsilons: tuple[float, ...],
        polyphase: tuple[bool, ...],
        *tensors: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        plain, inputs = tensors[: len(plain_positions)], tensors[len(plain_positions) :]
        normalised_positions = tuple(m for m in range(weights.shape[0]) if m not in plain_positions)
        out: torch.Tensor | None = None
        for position, term in zip(plain_positions, plain, strict=True):
            if out is None:
                out = torch.mul(term, weights[position])
            else:
                out.addcmul_(term, weights[position])
        shift: torch.Tensor | None = None
        # The polyphase terms last: they accumulate into an output that exists.
        order = sorted(range(len(inputs)), key=lambda index: polyphase[index])
        statistics: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # mean, variance, invstd
        for index in order:
            x, eps = inputs[index], epsilons[index]
            mean, variance = torch.batch_norm_update_stats(x, None, None, 0.0)
            inverse_std = torch.rsqrt(variance + eps)
            scale = inverse_std * weights[normalised_positions[index]].to(x.dtype)
            # w * (x - mean) * invstd as PyTorch's CPU kernel forms it: x * scale + shift.
            if polyphase[index]:
                if out is None:
                    four_n, c, h, w = x.shape
                    shape = (four_n // 4, c, 2 * h, 2 * w)
                    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last).zero_()
                parity_view(out).addcmul_(interleaved_view(x), scale)
            elif out is None:
                out = torch.mul(x, _per_channel(scale))
            else:
                out.addcmul_(x, _per_channel(scale))
            shift = -scale * mean if shift is None else shift.sub_(scale * mean)
            statistics[index] = (mean, variance, inverse_std)
        assert out is not None
        if shift is not None:
            out.add_(_per_channel(shift))
        ctx.plain_positions = plain_positions  # type: ignore[attr-defined]
        ctx.epsilons = epsilons  # type: ignore[attr-defined]
        ctx.polyphase = polyphase  # type: ignore[attr-defined]
        empty = weights.new_empty(0)
        rows = [statistics[index] for index in range(len(inputs))]
        if rows:
            mean_rows, variance_rows, inverse_std_rows = (torch.stack(v) for v in zip(*rows, strict=True))
        else:
            mean_rows = variance_rows = inverse_std_rows = empty
        ctx.save_for_backward(weights, mean_rows, inverse_std_rows, *tensors)
        # The (biased) batch statistics, for the BN modules' running statistics.
        ctx.mark_non_differentiable(mean_rows, variance_rows)
        return out, mean_rows, variance_rows

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, *_: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        weights, mean_rows, inverse_std_rows, *tensors = ctx.saved_tensors
        plain_positions, epsilons = ctx.plain_positions, ctx.epsilons
        plain, inputs = tensors[: len(plain_positions)], tensors[len(plain_positions) :]
        normalised_positions = [m for m in range(weights.shape[0]) if m not in plain_positions]
        plain_needs = ctx.needs_input_grad[4 : 4 + len(plain)]
        normalised_needs = ctx.needs_input_grad[4 + len(plain) :]
        weight_grads: list[torch.Tensor] = [weights.new_zeros(())] * weights.shape[0]
        tensor_grads: list[torch.Tensor | None] = []
        for position, term, needed in zip(plain_positions, plain, plain_needs, strict=True):
            if ctx.needs_input_grad[0]:
                weight_grads[position] = _dot(grad, term).to(weights.dtype)
            tensor_grads.append(grad * weights[position].to(grad.dtype) if needed else None)
        if inputs:
            grad = grad.contiguous(memory_format=_layout_of(inputs[0]))
        grad_phases: torch.Tensor | None = None  # the gradient's polyphase components, for all such terms
        for index, (position, x, needed) in enumerate(zip(normalised_positions, inputs, normalised_needs, strict=True)):
            if ctx.polyphase[index] and grad_phases is None:
                grad_phases = polyphase_components(grad.contiguous(memory_format=torch.channels_last))
            term_grad = grad_phases if ctx.polyphase[index] else grad
            channels = x.shape[1]
            scale = weights[position].to(x.dtype).expand(channels).contiguous()
            # Training-mode BN backward with w as its per-channel weight: the input gradient of
            # w * bn(x), and sum(grad * bn(x)) per channel as the "weight" gradient.
            grad_x, grad_scale, _ = torch.ops.aten.native_batch_norm_backward(
                term_grad, x, scale, None, None, mean_rows[index], inverse_std_rows[index], True,
                epsilons[index], [needed, ctx.needs_input_grad[0], False],
            )  # fmt: skip
            if ctx.needs_input_grad[0]:
                weight_grads[position] = grad_scale.sum().to(weights.dtype)
            tensor_grads.append(grad_x if needed else None)
        grad_weights = torch.stack(weight_grads) if ctx.needs_input_grad[0] else None
        return (grad_weights, None, None, None, *tensor_grads)


def weighted_sum(weights: torch.Tensor, terms: Sequence[torch.Tensor | NormalisedTerm]) -> torch.Tensor:
    """weights: (M,); terms: M tensors of one shape, or :class:`NormalisedTerm` of BN inputs of
    that shape -> ``sum_m weights[m] * terms[m]``."""
    if weights.shape != (len(terms),):
        raise ValueError(f"weighted_sum needs one weight per term, got {tuple(weights.shape)} for {len(terms)}")
    plain_positions = tuple(m for m, term in enumerate(terms) if not isinstance(term, NormalisedTerm))
    normalised = [term for term in terms if isinstance(term, NormalisedTerm)]
    tensors = [term for term in terms if not isinstance(term, NormalisedTerm)] + [term.x for term in normalised]
    epsilons = tuple(term.batch_norm.eps for term in normalised)
    polyphase = tuple(term.polyphase for term in normalised)
    out, means, variances = _WeightedSum.apply(weights, plain_positions, epsilons, polyphase, *tensors)
    for index, term in enumerate(normalised):
        if term.batch_norm.track_running_stats:
            count = term.x.numel() // term.x.shape[1]
            term.batch_norm.update_running_statistics(means[index], variances[index], count)
    result: torch.Tensor = out
    return result
