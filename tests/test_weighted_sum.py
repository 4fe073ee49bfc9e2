"""weighted_sum: the value and gradients of ``sum_m w_m * t_m`` written with ``*`` and ``+``,
with terms given as tensors or as the inputs of the BatchNorms that produce them."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch

from cdarts.spaces.shared.batch_norm import BatchNorm2d
from cdarts.spaces.shared.phase_split_conv import interleave_phases, polyphase_components
from cdarts.spaces.shared.weighted_sum import NormalisedTerm, folds_into_sum, weighted_sum


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


def _normalised_case(layout: str) -> tuple[torch.Tensor, list[torch.Tensor], list[BatchNorm2d], torch.Tensor]:
    """Weights, the BN inputs (the first two are plain terms), non-affine BNs, an upstream grad."""
    terms = _terms(layout, 5)
    generator = torch.Generator().manual_seed(1)
    terms = [(t.detach() * 3 + 2).requires_grad_() for t in terms]  # BN inputs far from standard
    batch_norms = [BatchNorm2d(4, affine=False).double() for _ in range(3)]
    weights = torch.softmax(torch.randn(5, generator=generator, dtype=torch.float64), 0).requires_grad_()
    return weights, terms, batch_norms, torch.randn(terms[0].shape, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("plain_first", [True, False])
def test_normalised_terms_give_the_batch_norms_values_gradients_and_statistics(layout: str, plain_first: bool) -> None:
    weights, inputs, batch_norms, upstream = _normalised_case(layout)
    twins = copy.deepcopy(batch_norms)
    order = [0, 1, 2, 3, 4] if plain_first else [2, 3, 0, 4, 1]  # a normalised term may come first
    expected_terms = inputs[:2] + [bn(x) for bn, x in zip(twins, inputs[2:], strict=True)]
    expected = sum(weights[m] * expected_terms[i] for m, i in enumerate(order))
    assert isinstance(expected, torch.Tensor)
    expected_grads = torch.autograd.grad(expected, [weights, *inputs], upstream)

    folded_terms: list[torch.Tensor | NormalisedTerm] = [
        *inputs[:2],
        *(NormalisedTerm(x, bn) for bn, x in zip(batch_norms, inputs[2:], strict=True)),
    ]
    fused = weighted_sum(weights, [folded_terms[i] for i in order])
    fused_grads = torch.autograd.grad(fused, [weights, *inputs], upstream)

    torch.testing.assert_close(fused, expected, rtol=1e-12, atol=1e-12)
    for got, want in zip(fused_grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for bn, twin in zip(batch_norms, twins, strict=True):
        assert int(bn.num_batches_tracked) == int(twin.num_batches_tracked) == 1
        torch.testing.assert_close(bn.running_mean, twin.running_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(bn.running_var, twin.running_var, rtol=1e-12, atol=1e-12)
    if layout == "channels_last":
        assert fused.is_contiguous(memory_format=torch.channels_last)


def _saved_activations(run: Callable[[], torch.Tensor]) -> int:
    """How many full-size tensors autograd keeps for the backward of ``run()``."""
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.numel() > 100:  # the activations, not the weights or per-channel statistics
            saved.append(t.data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return len(set(saved))


def test_the_normalised_tensors_are_not_kept_for_backward() -> None:
    weights, inputs, batch_norms, _ = _normalised_case("channels_last")
    normalised = [NormalisedTerm(x, bn) for bn, x in zip(batch_norms, inputs[2:], strict=True)]
    fused = _saved_activations(lambda: weighted_sum(weights, [*inputs[:2], *normalised]))
    written_out = _saved_activations(
        lambda: weighted_sum(weights, [*inputs[:2], *(bn(x) for bn, x in zip(batch_norms, inputs[2:], strict=True))])
    )
    assert fused == 5  # the two plain terms and the three BN inputs
    assert written_out == 8  # ... and the three BN outputs


def test_only_training_mode_batch_norms_without_affine_parameters_fold() -> None:
    x = torch.randn(2, 3, 4, 4)
    plain = BatchNorm2d(3, affine=False)
    assert folds_into_sum(plain, x)
    assert not folds_into_sum(BatchNorm2d(3, affine=True), x)
    assert not folds_into_sum(plain.eval(), x)
    assert folds_into_sum(BatchNorm2d(3, affine=False, track_running_stats=False).eval(), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not folds_into_sum(BatchNorm2d(3, affine=False), x)


@pytest.mark.parametrize("polyphase_first", [False, True])
def test_polyphase_terms_are_normalised_and_interleaved_in_the_sum(polyphase_first: bool) -> None:
    """A term given by its polyphase components (4N, C, H/2, W/2) is summed as the interleaved
    image, without an interleaved copy; its gradient comes back as components too."""
    weights, _, batch_norms, _ = _normalised_case("channels_last")
    image = torch.randn(3, 4, 6, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    components = polyphase_components(image).detach().requires_grad_()
    plain = torch.randn_like(image).requires_grad_()
    twin = copy.deepcopy(batch_norms[0])
    upstream = torch.randn_like(image)
    mix = weights[:2].detach().requires_grad_()

    expected = mix[0] * twin(interleave_phases(components)) + mix[1] * plain
    expected_grads = torch.autograd.grad(expected, [mix, components, plain], upstream)
    term = NormalisedTerm(components, batch_norms[0], polyphase=True)
    fused = weighted_sum(mix, [term, plain]) if polyphase_first else weighted_sum(mix.flip(0), [plain, term])
    fused_grads = torch.autograd.grad(fused, [mix, components, plain], upstream)

    torch.testing.assert_close(fused, expected, rtol=1e-12, atol=1e-12)
    assert fused.is_contiguous(memory_format=torch.channels_last)
    for got, want in zip(fused_grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(batch_norms[0].running_var, twin.running_var, rtol=1e-12, atol=1e-12)
