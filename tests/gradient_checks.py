"""One comparison for the fast formulations' tests: same output, same gradients (fp64)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

FP64_TOLERANCE = 1e-12


def assert_same_values_and_gradients(
    got: torch.Tensor, expected: torch.Tensor, inputs: Sequence[torch.Tensor], generator: torch.Generator
) -> None:
    """``got`` equals ``expected``, and so do their gradients with respect to every tensor of
    ``inputs`` for one random upstream gradient (drawn from ``generator``)."""
    torch.testing.assert_close(got, expected, rtol=FP64_TOLERANCE, atol=FP64_TOLERANCE)
    upstream = torch.randn(expected.shape, generator=generator, dtype=expected.dtype)
    want = torch.autograd.grad(expected, inputs, upstream)
    have = torch.autograd.grad(got, inputs, upstream)
    for a, b in zip(have, want, strict=True):
        torch.testing.assert_close(a, b, rtol=FP64_TOLERANCE, atol=FP64_TOLERANCE)
