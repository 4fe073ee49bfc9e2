"""weighted_sum: the value and gradients of ``sum_m w_m * t_m`` written with ``*`` and ``+``."""

from __future__ import annotations

import pytest
import torch

from cdarts.spaces.shared.weighted_sum import weighted_sum


def _terms(layout: str, count: int = 5) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    terms = [torch.randn(3, 4, 5, 6, generator=generator, dtype=torch.float64) for _ in range(count)]
    if layout == "channels_last":
        terms = [t.contiguous(memory_format=torch.channels_last) for t in terms]
    elif layout == "strided":
        terms = [t.transpose(2, 3) for t in terms]  # dense in neither layout: the fallback product
    return [t.requires_grad_() for t in terms]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_value_and_gradients_match_the_written_out_sum(layout: str) -> None:
    terms = _terms(layout)
    weights = torch.softmax(torch.randn(len(terms), dtype=torch.float64), 0).detach().requires_grad_()
    upstream = torch.randn_like(terms[0])

    expected = sum(w * t for w, t in zip(weights, terms, strict=True))
    assert isinstance(expected, torch.Tensor)
    expected_grads = torch.autograd.grad(expected, [weights, *terms], upstream)
    fused = weighted_sum(weights, terms)
    fused_grads = torch.autograd.grad(fused, [weights, *terms], upstream)

    torch.testing.assert_close(fused, expected, rtol=1e-12, atol=1e-12)
    for got, want in zip(fused_grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    if layout == "channels_last":
        assert fused.is_contiguous(memory_format=torch.channels_last)


def test_only_the_inputs_that_need_gradients_get_them() -> None:
    terms = _terms("contiguous", 3)
    frozen = terms[1].detach()
    weights = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)  # constant weights
    out = weighted_sum(weights, [terms[0], frozen, terms[2]])
    out.sum().backward()  # type: ignore[no-untyped-call]
    assert weights.grad is None and frozen.grad is None
    assert terms[0].grad is not None and torch.allclose(terms[0].grad, torch.full_like(terms[0], 0.2))


def test_one_weight_per_term_is_required() -> None:
    with pytest.raises(ValueError, match="one weight per term"):
        weighted_sum(torch.ones(2), _terms("contiguous", 3))
