"""Dilated depthwise convolutions computed as undilated ones on the input's polyphase components.

On CPUs, oneDNN's kernels for a dilated depthwise convolution's backward pass are many times
slower than for an undilated one (a stride-2 ``dil_conv_5x5`` edge: its backward ~30x its
forward, an undilated 3x3 one ~2x). A dilation-2 convolution only ever combines pixels of one
parity: with ``x_ij = x[:, :, i::2, j::2]`` and "same" padding,

    conv(x, W, dilation=2, padding=p)[..., 2h + i, 2w + j] = conv(x_ij, W, padding=p / 2)[..., h, w]

(exactly, for even H and W: out-of-range taps are out of range in both), and with stride 2 only
the even phase is read: ``conv(x, W, dilation=2, stride=2, padding=p) = conv(x_00, W, padding=p/2)``
for any H and W. So the same function, with the same weight and the same gradients (up to the
order of floating-point sums), runs on the fast undilated kernels: the four phases are stacked
along the batch and run as one convolution.

Measured on a 2-core Zen 4 (``bench/vs_authors.py``, batch 32): the CIFAR search joint step goes
from 8.3 s to 6.3 s. The retrain network (C = 36, dilated convolutions only at stride 1 on 16 and
8 px maps of 72 and 144 channels) gets nothing from it, so the retrain does not use it.
"""

from __future__ import annotations

from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from cdarts.spaces.shared.depthwise_conv import depthwise_conv2d, use_fast_depthwise
from cdarts.spaces.shared.module_swap import swap_class
from cdarts.spaces.shared.pointwise_conv import use_pointwise_matmul

M = TypeVar("M", bound=nn.Module)


def polyphase_components(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) channels-last, H and W even -> (4N, C, H/2, W/2) channels-last: the four
    parity components ``x[:, :, i::2, j::2]`` stacked along the batch, (i, j) = (0, 0), (0, 1),
    (1, 0), (1, 1) (a copy)."""
    n, c, h, w = x.shape
    # Move the two parities of the (N, H/2, 2, W/2, 2, C) view in front of the batch, still
    # channels-last.
    phases = parity_view(x).permute(2, 4, 0, 1, 3, 5)
    return phases.reshape(4 * n, h // 2, w // 2, c).permute(0, 3, 1, 2)


def interleaved_view(y: torch.Tensor) -> torch.Tensor:
    """(4N, C, H, W) channels-last polyphase components -> the (N, H, 2, W, 2, C) view of them
    whose element [n, h, i, w, j, c] is pixel (2h + i, 2w + j) of the image they came from."""
    four_n, c, h, w = y.shape
    return y.permute(0, 2, 3, 1).view(2, 2, four_n // 4, h, w, c).permute(2, 3, 0, 4, 1, 5)


def parity_view(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) dense channels-last, H and W even -> the (N, H/2, 2, W/2, 2, C) view of it,
    indexed as :func:`interleaved_view`."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).view(n, h // 2, 2, w // 2, 2, c)


def interleave_phases(y: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`polyphase_components`: (4N, C, H, W) -> (N, C, 2H, 2W) channels-last."""
    four_n, c, h, w = y.shape
    return interleaved_view(y).reshape(four_n // 4, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


def phase_split_input(x: torch.Tensor, stride: int) -> torch.Tensor | None:
    """What a :class:`PhaseSplitConv2d` of ``stride`` convolves for the input ``x``: the even
    component ``x[:, :, ::2, ::2]`` (a view) at stride 2, the four stacked components at stride 1;
    None where the identity does not apply (not channels-last, odd H or W at stride 1)."""
    if not x.is_contiguous(memory_format=torch.channels_last):
        return None
    if stride == 2:
        return x[:, :, ::2, ::2]
    if stride != 1 or x.shape[2] % 2 or x.shape[3] % 2:
        return None
    return polyphase_components(x)


class PhaseSplitConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (depthwise, dilation 2) whose forward uses the polyphase identity on
    channels-last inputs; other inputs (contiguous NCHW, odd sizes at stride 1) take the plain
    convolution. Parameters and state dict are those of the convolution it replaces."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) -> (N, C, H / stride, W / stride)."""
        phases = phase_split_input(x, self.stride[0]) if self.stride[0] == self.stride[1] else None
        if phases is None:
            return super().forward(x)
        return self.forward_phases(phases)

    def forward_phases(self, phases: torch.Tensor, interleave: bool = True) -> torch.Tensor:
        """The output from :func:`phase_split_input` of the input (which several convolutions
        of one input may share): (N, C, H / stride, W / stride); at stride 1 with ``interleave``
        False, its polyphase components instead, (4N, C, H/2, W/2) (for ops that are the same
        per pixel, up to a consumer that reads them in place)."""
        padding = (self.padding[0] // 2, self.padding[1] // 2)  # type: ignore[operator]
        if self.bias is None and padding[0] == padding[1]:
            # The native weight gradient reads the strided view of stride 2 in place, and is
            # faster where oneDNN's is slow.
            y = depthwise_conv2d(phases, self.weight, 1, padding[0])
        else:
            y = F.conv2d(phases, self.weight, self.bias, 1, padding, 1, self.groups)
        return y if self.stride == (2, 2) or not interleave else interleave_phases(y)


def _splittable(module: nn.Module) -> bool:
    if type(module) is not nn.Conv2d or module.padding_mode != "zeros":
        return False
    depthwise = module.groups == module.in_channels == module.out_channels
    kernel, padding = module.kernel_size, module.padding
    if not (depthwise and module.dilation == (2, 2) and module.stride in ((1, 1), (2, 2))):
        return False
    if isinstance(padding, str):
        return False
    return all(k % 2 == 1 and p == (k - 1) for k, p in zip(kernel, padding, strict=True))  # "same" at dilation 2


def split_dilated_convs(module: nn.Module) -> int:
    """Turn every dilation-2 depthwise ``nn.Conv2d`` with "same" padding inside ``module`` into a
    :class:`PhaseSplitConv2d` (in place, keeping its parameters); returns how many."""
    return swap_class(module, _splittable, PhaseSplitConv2d)


def to_channels_last(module: M) -> M:
    """``module`` with channels-last weights, its dilated depthwise convolutions phase-split, its
    large undilated ones on the faster weight gradient (depthwise_conv.py) and its 1x1 ones as
    matrix products (pointwise_conv.py): the layout the fast search trains in (inputs must be
    channels-last too)."""
    module = module.to(memory_format=torch.channels_last)
    split_dilated_convs(module)
    use_fast_depthwise(module)
    use_pointwise_matmul(module)
    return module
