"""with_dense_gradient: an identity in forward whose backward hands on a dense channels-last gradient."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cdarts.spaces.darts.operations import FactorizedReduce
from cdarts.spaces.shared.gradient_layout import with_dense_gradient


def _grad_of(x: torch.Tensor, make_output: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The gradient that reaches ``x`` when ``make_output(x)`` is backpropagated."""
    seen: list[torch.Tensor] = []
    x.register_hook(seen.append)  # type: ignore[no-untyped-call]
    out = make_output(x)
    out.backward(torch.randn_like(out))  # type: ignore[no-untyped-call]
    return seen[0]


def test_a_concatenated_node_hands_on_its_gradient_dense_and_unchanged() -> None:
    torch.manual_seed(0)
    node = (2 * torch.randn(2, 3, 4, 5)).contiguous(memory_format=torch.channels_last).requires_grad_()
    other = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)

    def concatenated(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, other], 1)

    sliced = _grad_of(node, concatenated)  # without the wrapper: a channel slice of the cat's gradient
    torch.manual_seed(1)
    plain = _grad_of(node, concatenated)
    torch.manual_seed(1)
    dense = _grad_of(node, lambda x: concatenated(with_dense_gradient(x)))

    assert not sliced.is_contiguous(memory_format=torch.channels_last) and not sliced.is_contiguous()
    assert dense.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(dense, plain, rtol=0, atol=0)
    torch.testing.assert_close(with_dense_gradient(node), node, rtol=0, atol=0)


def test_nchw_tensors_and_tensors_without_gradients_are_returned_as_they_are() -> None:
    nchw = torch.randn(2, 3, 4, 5, requires_grad=True)
    frozen = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    assert with_dense_gradient(nchw) is nchw and with_dense_gradient(frozen) is frozen


def test_factorized_reduce_hands_its_relu_a_channels_last_gradient() -> None:
    reduce = FactorizedReduce(4, 6, affine=False).to(memory_format=torch.channels_last)
    rectified = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    grad = _grad_of(rectified, reduce.after_relu)  # what the ReLU's backward will read
    assert grad.is_contiguous(memory_format=torch.channels_last)
