from __future__ import annotations

import torch

from cdarts.spaces.darts.architecture import Genotype
from cdarts.spaces.darts.candidates import PRIMITIVES
from cdarts.spaces.darts.cells import node_edge_offsets
from cdarts.spaces.darts.joint_network import JointNetwork


def _small_model(pool_transfer: str = "all") -> JointNetwork:
    torch.manual_seed(0)
    return JointNetwork(
        stem="cifar",
        in_channels=3,
        num_classes=3,
        image_size=8,
        init_channels=4,
        stem_multiplier=1,
        search_cells=(1, 1, 1),
        eval_cells=(2, 1, 1),
        head_channels=(4, 4),
        pool_transfer=pool_transfer,  # type: ignore[arg-type]
    )


# Node 0's strongest op is the stride-1 identity in the normal cell: the reference bug case.
_NODES = (
    (("skip_connect", 1), ("sep_conv_3x3", 0)),
    (("sep_conv_5x5", 2), ("dil_conv_3x3", 0)),
    (("max_pool_3x3", 1), ("sep_conv_3x3", 3)),
    (("dil_conv_5x5", 4), ("skip_connect", 0)),
)
GENOTYPE = Genotype(_NODES, (2, 3, 4, 5), _NODES, (2, 3, 4, 5))


def _pool_op(model: JointNetwork, cell: int, node: int, index: int, op: str) -> torch.nn.Module:
    edge = node_edge_offsets(4)[node] + index
    return model.weight_pool.pool_cells[cell].edge(edge).op(PRIMITIVES.index(op))


def test_rebuilt_eval_network_inherits_selected_ops_from_the_pool() -> None:
    model = _small_model()
    eval_net = model.rebuild_eval_network(GENOTYPE)
    for cell_index, cell in enumerate(eval_net.derived_cells):
        pool_cell = model.weight_pool.pool_cells[cell_index]
        assert torch.equal(cell.preprocess1[1].weight, pool_cell.preprocess1[1].weight)
        for node, pairs in enumerate(_NODES):
            for position, (op, index) in enumerate(pairs):
                mine = list(cell.edge_op(node, position).parameters())
                pooled = list(_pool_op(model, cell_index, node, index, op).parameters())
                assert all(torch.equal(a, b) for a, b in zip(mine, pooled, strict=True))


def test_write_back_stores_trained_weights_and_next_eval_network_gets_them() -> None:
    model = _small_model()
    eval_net = model.rebuild_eval_network(GENOTYPE)
    with torch.no_grad():
        for p in eval_net.parameters():
            p.add_(1.0)
    trained = [p.clone() for p in eval_net.parameters()]
    model.write_back_to_pool()
    again = model.rebuild_eval_network(GENOTYPE)
    assert again is not eval_net
    assert all(torch.equal(a, b) for a, b in zip(trained, again.parameters(), strict=True))


def test_ops_not_selected_keep_their_pool_weights() -> None:
    model = _small_model()
    untouched = _pool_op(model, 0, 0, 1, "sep_conv_5x5")  # edge 1 -> node 0 is not selected
    before = [p.clone() for p in untouched.parameters()]
    eval_net = model.rebuild_eval_network(GENOTYPE)
    with torch.no_grad():
        for p in eval_net.parameters():
            p.mul_(-3.0)
    model.write_back_to_pool()
    assert all(torch.equal(a, b) for a, b in zip(before, untouched.parameters(), strict=True))


def test_reference_transfer_skips_the_op_after_a_leading_identity() -> None:
    fixed, reference = _small_model("all"), _small_model("reference")
    reference.load_state_dict(fixed.state_dict())
    for model, expect_inherited in ((fixed, True), (reference, False)):
        eval_net = model.rebuild_eval_network(GENOTYPE)
        normal_cell = eval_net.derived_cells[0]
        second = list(normal_cell.edge_op(0, 1).parameters())  # sep_conv_3x3 after the identity
        pooled = list(_pool_op(model, 0, 0, 0, "sep_conv_3x3").parameters())
        inherited = all(torch.equal(a, b) for a, b in zip(second, pooled, strict=True))
        assert inherited is expect_inherited
        # Node 3's identity is second, so its first op is still transferred in both modes.
        first = list(normal_cell.edge_op(3, 0).parameters())
        pooled3 = list(_pool_op(model, 0, 3, 4, "dil_conv_5x5").parameters())
        assert all(torch.equal(a, b) for a, b in zip(first, pooled3, strict=True))
