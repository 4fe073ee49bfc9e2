from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cdarts.spaces.darts.candidates import PRIMITIVES
from cdarts.spaces.darts.cells import DerivedCell, SearchCell, num_edges
from cdarts.spaces.darts.mixed_op import MixedOp
from cdarts.spaces.darts.operations import OPS, FactorizedReduce, SepConv, build_op
from cdarts.spaces.shared.drop_path import DropPath, drop_path_sum


def test_primitives_are_the_cdarts_order_with_none_last() -> None:
    assert PRIMITIVES == (
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
        "none",
    )


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("affine", [False, True])
def test_every_op_keeps_width_and_strides(name: str, stride: int, affine: bool) -> None:
    op = build_op(name, 6, stride, affine)
    out = op(torch.randn(2, 6, 8, 8))
    assert out.shape == (2, 6, 8 // stride, 8 // stride)
    assert torch.isfinite(out).all()
    for module in op.modules():
        if isinstance(module, nn.Conv2d):
            assert module.bias is None
        if isinstance(module, nn.BatchNorm2d):
            assert module.affine is affine


def test_unknown_op_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        build_op("conv_9x9", 4, 1, False)


@pytest.mark.parametrize("channels_last", [False, True])
def test_factorized_reduce_is_two_stride_2_convs_one_on_the_shifted_input(channels_last: bool) -> None:
    torch.manual_seed(0)
    reduce = FactorizedReduce(3, 4, affine=False).double()
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    if channels_last:
        reduce, x = reduce.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    rectified = F.relu(x)
    even = F.conv2d(rectified, reduce.conv_even.weight, stride=2)
    odd = F.conv2d(rectified[:, :, 1:, 1:], reduce.conv_odd.weight, stride=2)  # the input shifted by one pixel
    expected = F.batch_norm(torch.cat([even, odd], dim=1), None, None, training=True)
    torch.testing.assert_close(reduce(x), expected, rtol=1e-12, atol=1e-12)


def test_none_op_is_zero_and_subsamples() -> None:
    out = build_op("none", 3, 2, False)(torch.randn(1, 3, 8, 8))
    assert out.shape == (1, 3, 4, 4) and out.abs().sum() == 0


def test_mixed_op_is_the_weighted_sum_of_its_ops() -> None:
    torch.manual_seed(0)
    mixed = MixedOp(4, 1, PRIMITIVES).eval()
    x = torch.randn(2, 4, 6, 6)
    weights = torch.softmax(torch.randn(len(PRIMITIVES)), dim=0)
    expected = sum(w * op(x) for w, op in zip(weights, mixed.ops, strict=True))
    assert torch.allclose(mixed(x, weights), expected, atol=1e-6)


def test_search_pools_have_no_batchnorm_unless_asked() -> None:
    plain = MixedOp(4, 1, PRIMITIVES, pool_batchnorm=False)
    darts = MixedOp(4, 1, PRIMITIVES, pool_batchnorm=True)
    pool_index = PRIMITIVES.index("max_pool_3x3")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.op(pool_index).modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in darts.op(pool_index).modules())


def test_search_cell_mean_is_sum_divided_by_in_degree() -> None:
    torch.manual_seed(0)
    mean_cell = SearchCell(2, 4, 4, 4, False, False, PRIMITIVES, "mean").eval()
    sum_cell = SearchCell(2, 4, 4, 4, False, False, PRIMITIVES, "sum").eval()
    sum_cell.load_state_dict(mean_cell.state_dict())
    # One-hot weights on skip_connect make node values easy to follow.
    weights = torch.zeros(num_edges(2), len(PRIMITIVES))
    weights[:, PRIMITIVES.index("skip_connect")] = 1.0
    s0, s1 = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    mean_out = mean_cell(s0, s1, weights)
    sum_out = sum_cell(s0, s1, weights)
    p0, p1 = mean_cell.preprocess0(s0), mean_cell.preprocess1(s1)
    node0_mean = (p0 + p1) / 2
    assert torch.allclose(mean_out[:, :4], node0_mean, atol=1e-6)
    assert torch.allclose(mean_out[:, 4:], (p0 + p1 + node0_mean) / 3, atol=1e-6)
    assert torch.allclose(sum_out[:, :4], p0 + p1, atol=1e-6)


def test_reduction_search_cell_halves_and_widens() -> None:
    cell = SearchCell(4, 12, 12, 8, reduction=True, reduction_prev=False, primitives=PRIMITIVES)
    out = cell(torch.randn(2, 12, 8, 8), torch.randn(2, 12, 8, 8), torch.ones(14, 8) / 8)
    assert out.shape == (2, 32, 4, 4)


def test_derived_cell_sums_genotype_edges_and_concats() -> None:
    nodes = [[("skip_connect", 0), ("skip_connect", 1)], [("skip_connect", 2), ("max_pool_3x3", 0)]]
    cell = DerivedCell(nodes, [2, 3], 4, 4, 4, reduction=False, reduction_prev=False, affine=True).eval()
    s0, s1 = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    out = cell(s0, s1)
    p0, p1 = cell.preprocess0(s0), cell.preprocess1(s1)
    node0 = p0 + p1
    node1 = node0 + nn.functional.max_pool2d(p0, 3, 1, 1)
    assert torch.allclose(out, torch.cat([node0, node1], dim=1), atol=1e-6)


def test_derived_cell_puts_drop_path_on_non_identity_ops_only() -> None:
    nodes = [[("skip_connect", 0), ("sep_conv_3x3", 1)]]
    cell = DerivedCell(nodes, [2], 4, 4, 4, reduction=False, reduction_prev=False, affine=True)
    drop_paths = [m for m in cell.modules() if isinstance(m, DropPath)]
    assert len(drop_paths) == 1
    cell.set_drop_path_prob(0.3)
    assert drop_paths[0].drop_prob == 0.3


def test_drop_path_drops_whole_samples_and_rescales() -> None:
    torch.manual_seed(0)
    drop = DropPath(0.5)
    x = torch.ones(400, 2, 3, 3)
    out = drop(x)
    per_sample = out.flatten(1)
    kept = per_sample[:, 0] > 0
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert (per_sample == per_sample[:, :1]).all()  # a sample is dropped as a whole
    assert 120 < int(kept.sum()) < 280
    assert torch.equal(drop.eval()(x), x)


def _drop_path_cell() -> DerivedCell:
    # s1 feeds three conv ops (one rectified copy), node 0 feeds a conv and a skip (one masked,
    # one whole term), and the reduction-free skip on s0 has no drop-path.
    nodes = [
        [("sep_conv_3x3", 1), ("dil_conv_3x3", 1)],
        [("skip_connect", 2), ("sep_conv_5x5", 1)],
        [("skip_connect", 0), ("max_pool_3x3", 2)],
    ]
    torch.manual_seed(0)
    cell = DerivedCell(nodes, [2, 3, 4], 4, 4, 4, reduction=False, reduction_prev=False, affine=True).double()
    cell.set_drop_path_prob(0.5)
    return cell


def _written_out_forward(cell: DerivedCell, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
    """The cell as its docstring states it: every Sequential(op, DropPath()) run and added."""
    states = [cell.preprocess0(s0), cell.preprocess1(s1)]
    for paths, inputs in zip(cell.edge_paths, cell.inputs, strict=True):
        out = paths[0](states[inputs[0]])
        for path, index in zip(paths[1:], inputs[1:], strict=True):
            out = out + path(states[index])
        states.append(out)
    return torch.cat([states[i] for i in cell.concat], dim=1)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_derived_cell_forward_matches_the_written_out_drop_path_sum(layout: torch.memory_format) -> None:
    cell = _drop_path_cell().to(memory_format=layout)
    s0 = torch.randn(8, 4, 6, 6, dtype=torch.float64).contiguous(memory_format=layout)
    s1 = torch.randn(8, 4, 6, 6, dtype=torch.float64).contiguous(memory_format=layout)
    upstream = torch.randn(8, 12, 6, 6, dtype=torch.float64)
    params = list(cell.parameters())

    torch.manual_seed(1)  # both draw the same drop-path masks, in the same order
    expected = _written_out_forward(cell, s0, s1)
    expected_grads = torch.autograd.grad(expected, params, upstream)
    torch.manual_seed(1)
    got = cell(s0, s1)
    got_grads = torch.autograd.grad(got, params, upstream)

    cell.set_drop_path_prob(0.0)
    assert not torch.allclose(cell(s0, s1), expected)  # the masks dropped something
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for mine, want in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(mine, want, rtol=1e-10, atol=1e-12)


def test_drop_path_sum_rejects_a_mask_count_that_does_not_match() -> None:
    with pytest.raises(ValueError, match="one mask"):
        drop_path_sum([torch.zeros(2, 1, 1, 1)] * 2, [None])


@pytest.mark.parametrize("affine", [True, False])
def test_sep_conv_rectifying_in_place_keeps_values_and_gradients(affine: bool) -> None:
    torch.manual_seed(0)
    op = build_op("sep_conv_3x3", 4, 1, affine).double()
    assert isinstance(op, SepConv) and op[1][0].inplace  # the second unit's ReLU reads BN's output
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    params = [x, *op.parameters()]
    in_place = torch.autograd.grad(op(x), params, upstream)
    op[1][0].inplace = False
    copied = torch.autograd.grad(op(x), params, upstream)
    for got, want in zip(in_place, copied, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
