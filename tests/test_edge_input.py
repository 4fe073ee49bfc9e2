"""Search cells share what the edges leaving one state derive from it (its ReLU, its pooled maps,
the polyphase components of its ReLU) and fold their ops' final BatchNorms into the node sums:
the same values, gradients and BN statistics as every edge computing its own, and each shared
tensor computed once per state."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from cdarts.spaces.darts import edge_input
from cdarts.spaces.darts.candidates import PRIMITIVES
from cdarts.spaces.darts.cells import SearchCell
from cdarts.spaces.darts.operations import FactorizedReduce
from cdarts.spaces.shared.phase_split_conv import PhaseSplitConv2d, to_channels_last

CHANNELS = 6
N_NODES = 4
STATES = 2 + N_NODES  # two cell inputs, four nodes; the last node feeds no edge


def _cells(reduction: bool) -> tuple[SearchCell, SearchCell]:
    """(sharing, plain) cells with equal weights: the fast form (channels-last, phase-split
    dilated convs, sharing) and the reference form (every op on its own input)."""
    torch.manual_seed(0)
    plain = SearchCell(N_NODES, CHANNELS, CHANNELS, CHANNELS, reduction, False, PRIMITIVES).double()
    sharing = SearchCell(
        N_NODES, CHANNELS, CHANNELS, CHANNELS, reduction, False, PRIMITIVES, shared_relu=True, fused_sums=True
    ).double()
    sharing.load_state_dict(plain.state_dict())
    return to_channels_last(sharing), plain


def _inputs(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    s0, s1 = (torch.randn(3, CHANNELS, size, size, generator=generator, dtype=torch.float64) for _ in range(2))
    weights = torch.softmax(torch.randn(14, len(PRIMITIVES), generator=generator, dtype=torch.float64), dim=-1)
    return s0, s1, weights.requires_grad_()


def _run(cell: SearchCell, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> list[torch.Tensor]:
    """The cell's output and the gradients of its weights, alphas' softmax and inputs under a
    fixed random upstream gradient."""
    layout = torch.channels_last if cell.fused_sums else torch.contiguous_format
    leaves = [s.detach().to(memory_format=layout).requires_grad_() for s in (s0, s1)]
    mix = weights.detach().clone().requires_grad_()
    out = cell(*leaves, mix)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
    (out * upstream).sum().backward()  # type: ignore[no-untyped-call]
    grads = [p.grad for p in cell.parameters() if p.grad is not None]
    assert len(grads) > 50
    assert all(leaf.grad is not None for leaf in leaves) and mix.grad is not None
    return [out.detach(), *grads, mix.grad, *(leaf.grad for leaf in leaves)]  # type: ignore[list-item]


# 7: odd maps, where the dilated convs run undivided (a reduction cell needs even ones).
@pytest.mark.parametrize(("reduction", "size"), [(False, 8), (True, 8), (False, 7)])
def test_sharing_across_edges_gives_the_plain_cells_values_and_gradients(reduction: bool, size: int) -> None:
    sharing, plain = _cells(reduction)
    assert any(isinstance(m, PhaseSplitConv2d) for m in sharing.modules())
    s0, s1, weights = _inputs(size)
    for got, expected in zip(_run(sharing, s0, s1, weights), _run(plain, s0, s1, weights), strict=True):
        torch.testing.assert_close(got, expected.to(memory_format=torch.contiguous_format), rtol=1e-10, atol=1e-12)
    # The BatchNorms folded into the node sums still track their running statistics.
    expected_buffers = dict(plain.named_buffers())
    for name, buffer in sharing.named_buffers():
        torch.testing.assert_close(buffer, expected_buffers[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", [False, True])
def test_each_state_is_pooled_phase_split_and_subsampled_once(reduction: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    sharing, _ = _cells(reduction)
    pool_calls: dict[type, int] = {nn.MaxPool2d: 0, nn.AvgPool2d: 0}

    def count_pool(module: nn.Module, *_: object) -> None:
        pool_calls[type(module)] += 1

    for module in sharing.modules():
        if type(module) in pool_calls:
            module.register_forward_hook(count_pool)
    phase_strides: list[int] = []
    split = edge_input.phase_split_input

    def counted_split(x: torch.Tensor, stride: int) -> torch.Tensor | None:
        phase_strides.append(stride)
        return split(x, stride)

    monkeypatch.setattr(edge_input, "phase_split_input", counted_split)
    subsamples_read: list[tuple[int, int]] = []
    reduce_from = FactorizedReduce.reduced_from_subsamples

    def recorded_reduce(op: FactorizedReduce, even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
        subsamples_read.append((id(even), id(odd)))
        return reduce_from(op, even, odd)

    monkeypatch.setattr(FactorizedReduce, "reduced_from_subsamples", recorded_reduce)
    s0, s1, weights = _inputs(8)
    sharing(s0.to(memory_format=torch.channels_last), s1.to(memory_format=torch.channels_last), weights)
    # 14 edges leave the first five states: once per state, not once per edge (or per op).
    assert pool_calls == {nn.MaxPool2d: STATES - 1, nn.AvgPool2d: STATES - 1}
    # The two cell inputs feed the stride-2 edges of a reduction cell, which read subsamples.
    assert phase_strides == [1] * (STATES - 1 - (2 if reduction else 0))
    # There, the 8 stride-2 skips (FactorizedReduce) read each input's two subsamples, shared.
    assert len(subsamples_read) == (8 if reduction else 0)
    assert len(set(subsamples_read)) == (2 if reduction else 0)


def test_nothing_shared_outlives_a_forward_pass() -> None:
    """What a state derives is kept for one forward only: a second batch gets its own."""
    sharing, _ = _cells(False)
    twin = copy.deepcopy(sharing)
    layout = torch.channels_last
    s0, s1, weights = _inputs(8)
    other0, other1 = s1.flip(0), s0.flip(0)
    sharing(s0.to(memory_format=layout), s1.to(memory_format=layout), weights)
    after_a_first_batch = sharing(other0.to(memory_format=layout), other1.to(memory_format=layout), weights)
    fresh = twin(other0.to(memory_format=layout), other1.to(memory_format=layout), weights)
    torch.testing.assert_close(after_a_first_batch, fresh, rtol=0, atol=0)
