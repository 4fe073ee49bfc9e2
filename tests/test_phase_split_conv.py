"""Dilated depthwise convolutions computed on the input's polyphase components: the same function
and gradients as the plain convolution (fp64), the same parameters, and only where it applies."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cdarts.spaces.darts.operations import build_op
from cdarts.spaces.shared.phase_split_conv import PhaseSplitConv2d, split_dilated_convs, to_channels_last


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(8, 8), (32, 16), (7, 9), (5, 6)])
def test_the_split_convolution_is_the_dilated_one(kernel: int, stride: int, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    plain = nn.Conv2d(6, 6, kernel, stride, padding=kernel - 1, dilation=2, groups=6, bias=False).double()
    split = copy.deepcopy(plain)
    assert split_dilated_convs(split) == 1 and type(split) is PhaseSplitConv2d
    x = torch.randn(3, 6, *size, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    expected, got = plain(x), split(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn_like(expected)
    want = torch.autograd.grad(expected, (x, plain.weight), upstream)
    have = torch.autograd.grad(got, (x, split.weight), upstream)
    for a, b in zip(have, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_only_dilation_2_depthwise_convolutions_with_same_padding_are_split() -> None:
    module = nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4),  # split
        nn.Conv2d(4, 4, 3, padding=1, groups=4),  # undilated
        nn.Conv2d(4, 8, 3, padding=2, dilation=2),  # not depthwise
        nn.Conv2d(4, 4, 3, padding=1, dilation=2, groups=4),  # not "same" padding
        nn.Conv2d(4, 4, 3, padding=4, dilation=4, groups=4),  # dilation 4
    )
    keys = list(module.state_dict())
    assert split_dilated_convs(module) == 1
    assert [type(m) is PhaseSplitConv2d for m in module] == [True, False, False, False, False]
    assert list(module.state_dict()) == keys


def test_the_dilated_ops_of_the_darts_space_are_split_in_channels_last() -> None:
    torch.manual_seed(0)
    for name in ("dil_conv_3x3", "dil_conv_5x5"):
        for stride in (1, 2):
            op = build_op(name, 8, stride, affine=True).double()
            fast = to_channels_last(copy.deepcopy(op))
            assert sum(type(m) is PhaseSplitConv2d for m in fast.modules()) == 1
            x = torch.randn(2, 8, 16, 16, dtype=torch.float64)
            torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), op(x))
            # NCHW input to a split convolution takes the plain path: the same values
            torch.testing.assert_close(fast(x), op(x))
