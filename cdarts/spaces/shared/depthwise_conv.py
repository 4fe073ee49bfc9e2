"""Depthwise convolutions whose weight gradient avoids oneDNN's slow kernels on CPUs.

The forward pass and the input gradient are PyTorch's (oneDNN's are fast); only the weight
gradient changes, and only where oneDNN's is slow:

* ``gram``: maps no larger than the kernel, stride 1, "same" padding (small_map_depthwise);
* ``native``: kernels of 5 or more taps a side, channels-last on the CPU, fp32 or fp64 (the
  C++ kernel of cdarts/kernels/depthwise_weight_grad.cpp), when it is built.

Both compute the same sums as oneDNN in another order, so values agree to float rounding (fp64
tests). Everywhere else, and when the weight needs no gradient, it is plain ``F.conv2d``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import FunctionCtx

from cdarts.kernels.depthwise_weight_grad import depthwise_weight_grad, native_weight_grad_available
from cdarts.spaces.shared.module_swap import swap_class
from cdarts.spaces.shared.small_map_depthwise import covers_map, gram_weight_gradient

WeightGradient = Literal["gram", "native"]
# Below this kernel size oneDNN's own weight gradient is as fast as the native one (3x3: 0.15
# against 0.17 ms at (32, 16, 32, 32)).
NATIVE_MIN_KERNEL = 5


def weight_gradient_kind(
    x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, dilation: int
) -> WeightGradient | None:
    """Which weight gradient a depthwise convolution of ``x`` (N, C, H, W) with ``weight``
    (C, 1, k, k) takes: ``gram``, ``native`` or None (oneDNN's, through plain autograd)."""
    if x.device.type != "cpu" or not (torch.is_grad_enabled() and weight.requires_grad):
        return None
    kernel_size = weight.shape[-1]
    same = 2 * padding == kernel_size - 1
    if stride == 1 and dilation == 1 and same and covers_map(kernel_size, x.shape[2], x.shape[3]):
        return "gram"
    channels_dense = x.is_contiguous(memory_format=torch.channels_last) or x.stride(1) == 1
    if kernel_size >= NATIVE_MIN_KERNEL and channels_dense and native_weight_grad_available(x.dtype):
        return "native"
    return None


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor,
        stride: int,
        padding: int,
        dilation: int,
        kind: WeightGradient,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, dilation, kind)  # type: ignore[attr-defined]
        return F.conv2d(x, weight, None, stride, padding, dilation, weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding, dilation, kind = ctx.geometry
        # Under autocast the output (and so grad) may be bf16 while x or the weight are fp32.
        x_compute, weight_compute = x.to(grad.dtype), weight.to(grad.dtype)
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.ops.aten.convolution_backward(
                grad, x_compute, weight_compute, None, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0],
                weight.shape[0], [True, False, False],
            )[0].to(x.dtype)  # fmt: skip
        if ctx.needs_input_grad[1]:
            kernel_size = weight.shape[-1]
            if kind == "gram":
                grad_weight = gram_weight_gradient(grad, x_compute, kernel_size, padding)
            else:
                grad_weight = depthwise_weight_grad(x_compute, grad, kernel_size, stride, padding, dilation)
            if grad_weight is None:  # a dtype the native kernel lacks (bf16 under autocast)
                grad_weight = torch.ops.aten.convolution_backward(
                    grad, x_compute, weight_compute, None, [stride] * 2, [padding] * 2, [dilation] * 2, False,
                    [0, 0], weight.shape[0], [False, True, False],
                )[1]  # fmt: skip
            grad_weight = grad_weight.to(weight.dtype)
        return grad_input, grad_weight, None, None, None, None


def depthwise_conv2d(
    x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0, dilation: int = 1
) -> torch.Tensor:
    """Bias-free depthwise convolution, x (N, C, H, W), square ``weight`` (C, 1, k, k) ->
    (N, C, H', W'): ``F.conv2d(x, weight, None, stride, padding, dilation, C)`` with the weight
    gradient of :func:`weight_gradient_kind`."""
    kind = weight_gradient_kind(x, weight, stride, padding, dilation)
    if kind is None:
        return F.conv2d(x, weight, None, stride, padding, dilation, weight.shape[0])
    result: torch.Tensor = _DepthwiseConv.apply(x, weight, stride, padding, dilation, kind)
    return result


def _symmetric(pair: Any) -> int | None:
    """The single value of a (v, v) tuple, else None."""
    if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == pair[1] and isinstance(pair[0], int):
        return pair[0]
    return None


class FastDepthwiseConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (depthwise, square kernel, no bias) that runs :func:`depthwise_conv2d`.
    Parameters and state dict are those of the convolution it replaces."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> (N, C, H', W')."""
        stride, padding, dilation = _symmetric(self.stride), _symmetric(self.padding), _symmetric(self.dilation)
        if stride is None or padding is None or dilation is None:
            return super().forward(x)
        return depthwise_conv2d(x, self.weight, stride, padding, dilation)


def _replaceable(module: nn.Module) -> bool:
    if type(module) is not nn.Conv2d or module.padding_mode != "zeros" or module.bias is not None:
        return False
    depthwise = module.groups == module.in_channels == module.out_channels
    kernel = module.kernel_size
    return depthwise and kernel[0] == kernel[1] >= NATIVE_MIN_KERNEL and _symmetric(module.padding) is not None


def use_fast_depthwise(module: nn.Module) -> int:
    """Turn every plain depthwise ``nn.Conv2d`` of ``module`` with a square kernel of 5 or more taps
    into a :class:`FastDepthwiseConv2d` (in place, keeping its parameters); returns how many."""
    return swap_class(module, _replaceable, FastDepthwiseConv2d)
