"""with_dense_gradient: an identity in forward whose backward hands on a dense channels-last gradient."""

from __future__ import annotations

import torch

from cdarts.spaces.darts.operations import FactorizedReduce
from cdarts.spaces.shared.gradient_layout import with_dense_gradient


def _grad_of(x: torch.Tensor, make_output: object) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    x.register_hook(seen.append)
    out = make_output(x)  # type: ignore[operator]
    out.backward(torch.randn_like(out))
    return seen[0]


def test_a_concatenated_node_gets_its_gradient_dense_and_unchanged() -> None:
    torch.manual_seed(0)
    node = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    other = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    upstream = torch.randn(2, 6, 4, 5).contiguous(memory_format=torch.channels_last)

    plain = torch.autograd.grad(torch.cat([node * 2, other], 1), node, upstream)[0]
    grads: list[torch.Tensor] = []
    wrapped = with_dense_gradient(node * 2)
    wrapped.register_hook(grads.append)
    torch.testing.assert_close(wrapped, node * 2, rtol=0, atol=0)
    dense = torch.autograd.grad(torch.cat([wrapped, other], 1), node, upstream)[0]

    assert not grads[0].is_contiguous(memory_format=torch.channels_last)  # the cat's slice
    torch.testing.assert_close(dense, plain, rtol=0, atol=0)
    assert dense.is_contiguous(memory_format=torch.channels_last)


def test_nchw_tensors_and_tensors_without_gradients_are_returned_as_they_are() -> None:
    nchw = torch.randn(2, 3, 4, 5, requires_grad=True)
    frozen = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    assert with_dense_gradient(nchw) is nchw and with_dense_gradient(frozen) is frozen


def test_factorized_reduce_hands_its_relu_a_channels_last_gradient() -> None:
    reduce = FactorizedReduce(4, 6, affine=False).to(memory_format=torch.channels_last)
    rectified = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    grad = _grad_of(rectified, reduce.after_relu)  # what the ReLU's backward will read
    assert grad.is_contiguous(memory_format=torch.channels_last)
