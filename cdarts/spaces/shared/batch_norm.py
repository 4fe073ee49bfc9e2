"""BatchNorm2d whose training pass stays fast on channels-last tensors of any width.

PyTorch's CPU batch norm vectorises channels-last tensors across channels and is slow at widths
that are no multiple of 8: at (32, 36, 32, 32), the retrain network's first stage (C = 36),
its forward + backward take 7.8 ms, the ops below 4.7 ms (tensors out of cache, Xeon with
AVX-512, 2 threads). At C = 16 or 72 PyTorch's kernel is the faster one (1.2 against 1.7 ms,
1.5 against 1.8 ms), so only the awkward widths come here. In channels-last memory an
(N, C, H, W) tensor is an (N*H*W, C) matrix, so the per-channel sums are column sums; folding
``k`` rows into one (``k*C`` a multiple of 16) keeps them on the fast reduction path. The
results are the same up to the order of floating-point sums; the variance is two-pass, and the
centred input is what backward keeps, in place of the input, so memory is unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable


def _column_sums(rows: torch.Tensor) -> torch.Tensor:
    """rows: (M, C) contiguous -> (C,) sums over M, read as (M/k, k*C) with k*C a multiple of 16."""
    m, c = rows.shape
    fold = 16 // math.gcd(c, 16)
    if fold == 1 or m % fold:
        return rows.sum(0)
    return rows.view(m // fold, fold * c).sum(0).view(fold, c).sum(0)


def _as_rows(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) channels-last -> the (N*H*W, C) matrix it is in memory (a view)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


class _ChannelsLastBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = _as_rows(x)
        count = rows.shape[0]
        mean = _column_sums(rows) / count
        centred = rows - mean
        out = torch.empty_like(x)  # channels-last, and not a view, so that a ReLU may run in place on it
        out_rows = _as_rows(out)
        variance = _column_sums(torch.mul(centred, centred, out=out_rows)) / count  # squares in out's memory
        inverse_std = torch.rsqrt(variance + eps)
        scale = inverse_std if weight is None else weight * inverse_std
        if bias is None:
            torch.mul(centred, scale, out=out_rows)
        else:
            torch.addcmul(bias, centred, scale, out=out_rows)
        ctx.save_for_backward(centred, inverse_std, weight)  # type: ignore[arg-type]  # weight may be None
        ctx.mark_non_differentiable(mean, variance)
        return out, mean, variance

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad: torch.Tensor, _grad_mean: torch.Tensor | None, _grad_variance: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        centred, inverse_std, weight = ctx.saved_tensors
        count = centred.shape[0]
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_rows = _as_rows(grad)
        grad_x = torch.empty_like(grad)
        grad_x_rows = _as_rows(grad_x)
        grad_sum = _column_sums(grad_rows)
        grad_dot_centred = _column_sums(torch.mul(grad_rows, centred, out=grad_x_rows))  # in grad_x's memory
        scale = inverse_std if weight is None else weight * inverse_std
        if ctx.needs_input_grad[0]:
            # d x = scale * (g - mean(g) - x_hat * mean(g * x_hat)), with x_hat = centred * inverse_std
            torch.addcmul(-scale * grad_sum / count, grad_rows, scale, out=grad_x_rows)
            grad_x_rows.addcmul_(centred, -scale * inverse_std.square() * grad_dot_centred / count)
        grad_weight = grad_dot_centred * inverse_std if ctx.needs_input_grad[1] else None
        grad_bias = grad_sum if ctx.needs_input_grad[2] else None
        return grad_x if ctx.needs_input_grad[0] else None, grad_weight, grad_bias, None


def _takes_channels_last_path(x: torch.Tensor) -> bool:
    return (
        x.dim() == 4
        and x.shape[1] % 8 != 0
        and x.dtype in (torch.float32, torch.float64)
        and x.device.type == "cpu"
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()  # dense in both layouts (H = W = 1): PyTorch's kernel is as good
        and not torch.is_autocast_enabled("cpu")
    )


class BatchNorm2d(nn.BatchNorm2d):
    """:class:`torch.nn.BatchNorm2d` (same parameters, buffers and state dict) that computes
    training-mode batch statistics itself for channels-last CPU inputs whose width is no
    multiple of 8; eval mode and every other input run PyTorch's kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        uses_batch_statistics = self.training or not self.track_running_stats
        if not uses_batch_statistics or not _takes_channels_last_path(x):
            return super().forward(x)
        out, mean, variance = _ChannelsLastBatchNorm.apply(x, self.weight, self.bias, self.eps)
        if self.training and self.track_running_stats:
            self._update_running_statistics(mean, variance, count=x.numel() // x.shape[1])
        result: torch.Tensor = out
        return result

    @torch.no_grad()
    def _update_running_statistics(self, mean: torch.Tensor, variance: torch.Tensor, count: int) -> None:
        """What PyTorch's kernel does: an exponential (or, with momentum None, cumulative) average
        of the batch mean and of the unbiased batch variance."""
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        unbiased = variance * (count / max(count - 1, 1))
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
