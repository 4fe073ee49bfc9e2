"""The Gram weight gradient of depthwise convolutions on maps their kernel covers: the same
values and gradients as the plain convolution (fp64), taken only where it pays."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cdarts.spaces.shared.depthwise_conv import depthwise_conv2d, weight_gradient_kind
from cdarts.spaces.shared.small_map_depthwise import covers_map
from tests.gradient_checks import assert_same_values_and_gradients


@pytest.mark.parametrize(("kernel", "size"), [(5, (4, 4)), (5, (3, 2)), (7, (6, 4)), (5, (1, 1))])
@pytest.mark.parametrize("channels_last", [True, False])
def test_value_and_gradients_are_those_of_the_plain_convolution(
    kernel: int, size: tuple[int, int], channels_last: bool
) -> None:
    assert covers_map(kernel, *size)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, *size, generator=generator, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(5, 1, kernel, kernel, generator=generator, dtype=torch.float64)
    x.requires_grad_(True)
    weight.requires_grad_(True)
    padding = kernel // 2
    expected = F.conv2d(x, weight, None, 1, padding, 1, 5)
    assert weight_gradient_kind(x, weight, 1, padding, 1) == "gram"
    got = depthwise_conv2d(x, weight, 1, padding)
    assert_same_values_and_gradients(got, expected, (x, weight), generator)


def test_larger_maps_small_kernels_and_frozen_weights_take_the_plain_convolution() -> None:
    assert not covers_map(5, 8, 8) and not covers_map(3, 2, 2) and not covers_map(5, 4, 5)
    weight = torch.randn(2, 1, 5, 5, requires_grad=True)
    assert weight_gradient_kind(torch.randn(1, 2, 8, 8), weight, 1, 2, 1) != "gram"
    assert weight_gradient_kind(torch.randn(1, 2, 4, 4), weight.detach(), 1, 2, 1) is None
    assert weight_gradient_kind(torch.randn(1, 2, 4, 4), weight, 2, 2, 1) != "gram"  # stride 2


def test_bf16_outputs_give_gradients_in_the_dtypes_of_the_inputs() -> None:
    x = torch.randn(4, 3, 4, 4, requires_grad=True)
    weight = torch.randn(3, 1, 5, 5, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = depthwise_conv2d(x, weight, 1, 2)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()  # type: ignore[no-untyped-call]
    assert x.grad is not None and x.grad.dtype == torch.float32
    assert weight.grad is not None and weight.grad.dtype == torch.float32
    exact = torch.autograd.grad(F.conv2d(x, weight, None, 1, 2, 1, 3).sum(), weight)[0]
    assert float((weight.grad - exact).norm() / exact.norm()) < 2e-2  # bf16 rounding, not a wrong gradient
