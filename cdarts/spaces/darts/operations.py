"""Candidate operations of the DARTS space and the building blocks they are made of.

Every factory in :data:`OPS` maps ``(channels, stride, affine)`` to a module whose output has
``channels`` channels and spatial size ``ceil(H / stride)``. All convolutions are bias-free.
``affine`` is False in every search-time module and True in the retrain network.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cdarts.spaces.shared.batch_norm import BatchNorm2d
from cdarts.spaces.shared.conv_blocks import ReLUConvBN, Zero
from cdarts.spaces.shared.gradient_layout import with_dense_gradient


class DilConv(nn.Sequential):
    """ReLU -> depthwise (dilated) conv -> pointwise 1x1 conv -> BN."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in,
                c_in,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=c_in,
                bias=False,
            ),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked :class:`DilConv` units with dilation 1; only the first one strides.

    The second unit rectifies in place: its input is the first unit's BN output, which nothing
    else reads (BN's backward keeps its input, not its output), so the copy would be wasted.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool) -> None:
        second = DilConv(c_in, c_out, kernel_size, 1, padding, 1, affine)
        second[0] = nn.ReLU(inplace=True)
        super().__init__(DilConv(c_in, c_in, kernel_size, stride, padding, 1, affine), second)


class FactorizedConv(nn.Sequential):
    """ReLU -> (k x 1) conv -> (1 x k) conv -> BN (the non-searchable ``conv_7x1_1x7``)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, affine: bool) -> None:
        pad = kernel_size // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, (1, kernel_size), stride=(1, stride), padding=(0, pad), bias=False),
            nn.Conv2d(c_in, c_out, (kernel_size, 1), stride=(stride, 1), padding=(pad, 0), bias=False),
            BatchNorm2d(c_out, affine=affine),
        )


class FactorizedReduce(nn.Module):
    """Halve H and W without losing half the pixels.

    ReLU, then two 1x1 stride-2 convs with ``c_out // 2`` channels each: one sees the input as is,
    the other the input shifted by one pixel (first row and column removed); concatenated, then BN.
    Needs even H and W.

    The stride-2 1x1 convs are computed as stride-1 ones on the two subsampled grids
    (``x[..., ::2, ::2]`` and ``x[..., 1::2, 1::2]``): the same function and parameters. It is
    faster in channels-last (17.9-20.9 vs 30.3-31.0 ms forward + backward at (32, 64, 32, 32) on a
    2-core EPYC) and it avoids a torch 2.14 CPU fault: the weight gradient of a channels-last 1x1
    stride-2 conv with at most 4 input channels corrupts the heap when torch runs one thread.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even output width, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_even = nn.Conv2d(c_in, c_out // 2, 1, bias=False)  # applied to x[..., ::2, ::2]
        self.conv_odd = nn.Conv2d(c_in, c_out // 2, 1, bias=False)  # applied to x[..., 1::2, 1::2]
        self.bn = BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_relu(self.relu(x))

    def after_relu(self, x: torch.Tensor) -> torch.Tensor:
        """Everything but the leading ReLU, on an input that is already rectified."""
        normalised: torch.Tensor = self.bn(self.reduced(x))
        return normalised

    def reduced(self, x: torch.Tensor) -> torch.Tensor:
        """The two convolutions, concatenated (the BN's input), on a rectified input."""
        # The subsampling's backward scatters into new tensors: keep that gradient in x's layout.
        x = with_dense_gradient(x)
        return self.reduced_from_subsamples(x[:, :, ::2, ::2], x[:, :, 1::2, 1::2])

    def reduced_from_subsamples(self, even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
        """:meth:`reduced` from the rectified input's two diagonal subsamples, ``x[:, :, ::2, ::2]``
        and ``x[:, :, 1::2, 1::2]`` (which several ops of one input may share)."""
        return torch.cat([self.conv_even(even), self.conv_odd(odd)], dim=1)


OpFactory = Callable[[int, int, bool], nn.Module]


def _skip(channels: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels, affine)


OPS: dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine),
    "sep_conv_7x7": lambda C, stride, affine: SepConv(C, C, 7, stride, 3, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine),
    "conv_7x1_1x7": lambda C, stride, affine: FactorizedConv(C, C, 7, stride, affine),
}


def build_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    """Build the candidate op ``name`` (a key of :data:`OPS`)."""
    try:
        factory = OPS[name]
    except KeyError:
        raise ValueError(f"unknown operation {name!r}; known: {sorted(OPS)}") from None
    return factory(channels, stride, affine)


def after_leading_relu(op: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The rest of ``op`` after its leading ReLU, or None if it does not start with one.

    The returned module shares ``op``'s submodules (and so its parameters), so several conv ops
    of an edge can rectify their common input once. Keep it out of the module tree.
    """
    if isinstance(op, DilConv | FactorizedConv | ReLUConvBN):
        return nn.Sequential(*list(op.children())[1:])
    if isinstance(op, SepConv):
        first, second = op.children()
        return nn.Sequential(*list(first.children())[1:], second)
    if isinstance(op, FactorizedReduce):
        return op.after_relu
    return None


def is_identity(op: nn.Module) -> bool:
    """True for the stride-1 ``skip_connect`` (no drop-path, no parameters)."""
    return isinstance(op, nn.Identity)


def split_final_batch_norm(
    op: nn.Module,
) -> tuple[Callable[[torch.Tensor], torch.Tensor], BatchNorm2d] | None:
    """For an op that begins with a ReLU and ends in a BatchNorm: the part in between (on an
    input that is already rectified; it shares ``op``'s modules) and that BatchNorm, so that
    ``bn(body(relu(x))) == op(x)``; None for any other op."""
    if isinstance(op, DilConv | FactorizedConv | ReLUConvBN):
        *body, bn = list(op.children())[1:]
    elif isinstance(op, SepConv):
        first, second = op.children()
        *second_body, bn = second.children()
        body = [*list(first.children())[1:], *second_body]
    elif isinstance(op, FactorizedReduce):
        return op.reduced, op.bn
    else:
        return None
    return (nn.Sequential(*body), bn) if isinstance(bn, BatchNorm2d) else None
