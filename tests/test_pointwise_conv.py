"""1x1 convolutions as matrix products: the values and gradients of the convolution (fp64), the
convolution itself wherever the matrix form does not apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cdarts.spaces.shared.pointwise_conv import PointwiseConv2d, pointwise_applies, use_pointwise_matmul
from tests.gradient_checks import assert_same_values_and_gradients

CHANNELS_LAST = torch.channels_last


@pytest.mark.parametrize(("c_in", "c_out"), [(16, 16), (36, 72), (5, 3)])
def test_values_and_gradients_are_those_of_the_convolution(c_in: int, c_out: int) -> None:
    generator = torch.Generator().manual_seed(c_in)
    conv = nn.Conv2d(c_in, c_out, 1, bias=False).double().to(memory_format=CHANNELS_LAST)
    x = torch.randn(3, c_in, 7, 5, generator=generator, dtype=torch.float64).contiguous(memory_format=CHANNELS_LAST)
    x.requires_grad_(True)
    expected = conv(x)
    assert use_pointwise_matmul(conv) == 1 and type(conv) is PointwiseConv2d
    got = conv(x)
    assert got.grad_fn is not None and "PointwiseConv" in type(got.grad_fn).__name__
    assert got.is_contiguous(memory_format=CHANNELS_LAST)
    # The random upstream gradient is NCHW, not the output's layout: it is read correctly too.
    assert_same_values_and_gradients(got, expected, (x, conv.weight), generator)


def test_other_inputs_take_the_convolution() -> None:
    conv = nn.Conv2d(4, 6, 1, bias=False)
    use_pointwise_matmul(conv)
    nchw = torch.randn(2, 4, 5, 5, requires_grad=True)
    strided = torch.randn(2, 4, 10, 10).contiguous(memory_format=CHANNELS_LAST)[:, :, ::2, ::2]
    assert not pointwise_applies(nchw) and not pointwise_applies(strided)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not pointwise_applies(torch.randn(2, 4, 5, 5).contiguous(memory_format=CHANNELS_LAST))
    out = conv(nchw)
    assert "PointwiseConv" not in type(out.grad_fn).__name__
    torch.testing.assert_close(out, F.conv2d(nchw, conv.weight))
    torch.testing.assert_close(conv(strided), F.conv2d(strided, conv.weight))


def test_only_plain_1x1_convolutions_are_swapped() -> None:
    model = nn.Sequential(
        nn.Conv2d(4, 4, 1, bias=False),
        nn.Conv2d(4, 4, 1, bias=True),
        nn.Conv2d(4, 4, 1, stride=2, bias=False),
        nn.Conv2d(4, 4, 1, groups=2, bias=False),
        nn.Conv2d(4, 4, 3, padding=1, bias=False),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert use_pointwise_matmul(model) == 1
    assert [type(m) is PointwiseConv2d for m in model] == [True, False, False, False, False]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
