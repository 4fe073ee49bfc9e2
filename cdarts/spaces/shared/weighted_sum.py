"""``sum_m w_m * t_m`` as one autograd node: the weighted sum of a search cell's node.

Written with ``*`` and ``+``, a node of ``M`` weighted terms costs ``2M - 1`` full-size
intermediate tensors in forward and, in backward, a full-size product ``grad * t_m`` per term
just to reduce it to the scalar gradient of ``w_m``. Here the forward accumulates in place into
one output, and the weight gradients are dot products that write nothing. The values and
gradients are the same (up to the order of floating-point sums); the memory kept for backward is
the same too (the terms, which the products would have saved as well).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.autograd.function import FunctionCtx


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


class _WeightedSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, weights: torch.Tensor, *terms: torch.Tensor) -> torch.Tensor:
        out = torch.mul(terms[0], weights[0])
        for weight, term in zip(weights[1:], terms[1:], strict=True):
            out.addcmul_(term, weight)
        ctx.save_for_backward(weights, *terms)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weights, *terms = ctx.saved_tensors
        grad_weights = None
        if ctx.needs_input_grad[0]:
            dots = [_dot(grad, term).to(weights.dtype) for term in terms]
            grad_weights = torch.stack(dots)
        grad_terms = [
            grad * weight.to(grad.dtype) if needed else None
            for weight, needed in zip(weights, ctx.needs_input_grad[1:], strict=True)
        ]
        return (grad_weights, *grad_terms)


def weighted_sum(weights: torch.Tensor, terms: Sequence[torch.Tensor]) -> torch.Tensor:
    """weights: (M,); terms: M tensors of one shape -> ``sum_m weights[m] * terms[m]``."""
    if weights.shape != (len(terms),):
        raise ValueError(f"weighted_sum needs one weight per term, got {tuple(weights.shape)} for {len(terms)}")
    result: torch.Tensor = _WeightedSum.apply(weights, *terms)
    return result
