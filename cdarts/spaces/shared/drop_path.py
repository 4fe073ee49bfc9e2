"""Drop-path (stochastic depth on cell edges) for discrete cells, and the node sum it feeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.autograd.function import FunctionCtx


class DropPath(nn.Module):
    """Zero whole samples of an edge's output with probability :attr:`drop_prob` in training.

    Survivors are scaled by ``1 / keep_prob`` so the expectation is unchanged. The probability is
    a plain attribute that the retrain loop ramps per epoch; it is 0 during search.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def sample_mask(self, x: torch.Tensor) -> torch.Tensor | None:
        """x: (N, ...) -> the scaled keep mask (N, 1, ..., 1) this call would apply, or None when
        it would pass ``x`` through (eval mode, or a rate of 0). Draws from the global RNG."""
        if not self.training or self.drop_prob <= 0.0:
            return None
        keep_prob = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        mask = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(keep_prob)
        return mask.div_(keep_prob)  # scale the (N, 1, 1, 1) mask, not the activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.sample_mask(x)
        return x if mask is None else x * mask

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class _MaskedSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, masks: tuple[torch.Tensor | None, ...], *terms: torch.Tensor) -> torch.Tensor:
        if masks[0] is not None:
            out, start = torch.mul(terms[0], masks[0]), 1
        else:  # an unmasked first term (a skip): fold it into the first write instead of copying it
            second = masks[1]
            out = torch.add(terms[0], terms[1]) if second is None else torch.addcmul(terms[0], terms[1], second)
            start = 2
        for mask, term in zip(masks[start:], terms[start:], strict=True):
            if mask is None:
                out.add_(term)
            else:
                out.addcmul_(term, mask)
        ctx.masks = masks  # type: ignore[attr-defined]  # (N, 1, 1, 1) constants, no gradient
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_terms = [
            (grad if mask is None else grad * mask) if needed else None
            for mask, needed in zip(ctx.masks, ctx.needs_input_grad[1:], strict=True)
        ]
        return (None, *grad_terms)


def drop_path_sum(terms: Sequence[torch.Tensor], masks: Sequence[torch.Tensor | None]) -> torch.Tensor:
    """terms: M tensors (N, C, H, W); masks: per term a (N, 1, 1, 1) keep mask or None (kept
    whole) -> ``sum_m masks[m] * terms[m]`` as one autograd node.

    The same values and gradients as applying each :class:`DropPath` and adding with ``+``, less
    the masked copy of every term and the partial sums: one output tensor is written instead of
    ``2M - 1``, and backward scales the incoming gradient once per masked term (as ``*`` would).
    """
    if len(terms) != len(masks):
        raise ValueError(f"drop_path_sum needs one mask (or None) per term, got {len(masks)} for {len(terms)}")
    if len(terms) == 1:
        return terms[0] if masks[0] is None else terms[0] * masks[0]
    result: torch.Tensor = _MaskedSum.apply(tuple(masks), *terms)
    return result
