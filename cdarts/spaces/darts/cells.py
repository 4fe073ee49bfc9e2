"""Search cells (mixed edges, shared alphas) and derived cells (discrete edges from a genotype).

A cell reads the outputs of the two previous cells (``s0`` = c_{k-2}, ``s1`` = c_{k-1}),
preprocesses both to the cell width, computes ``n_nodes`` intermediate nodes and concatenates
them. Edges are stored node-major: node i has one edge from each of its ``2 + i`` predecessors,
so a 4-node cell has 2 + 3 + 4 + 5 = 14 edges, and row e of the alphas belongs to edge e.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from cdarts.spaces.darts.edge_input import EdgeInput
from cdarts.spaces.darts.mixed_op import MixedOp
from cdarts.spaces.darts.operations import FactorizedReduce, after_leading_relu, build_op, is_identity
from cdarts.spaces.shared.conv_blocks import ReLUConvBN
from cdarts.spaces.shared.drop_path import DropPath, drop_path_sum
from cdarts.spaces.shared.gradient_layout import with_dense_gradient
from cdarts.spaces.shared.weighted_sum import weighted_sum

NodeAggregation = Literal["mean", "sum"]


def num_edges(n_nodes: int) -> int:
    """Edges of a cell with ``n_nodes`` intermediate nodes (14 for 4 nodes)."""
    return sum(2 + i for i in range(n_nodes))


def node_edge_offsets(n_nodes: int) -> list[int]:
    """Index of the first edge of each node in the node-major edge order."""
    offsets, start = [], 0
    for i in range(n_nodes):
        offsets.append(start)
        start += 2 + i
    return offsets


def _preprocess(
    c_prev_prev: int, c_prev: int, channels: int, reduction_prev: bool, affine: bool
) -> tuple[nn.Module, nn.Module]:
    # c_{k-2} is twice as large as c_{k-1} after a reduction cell, so it must be halved too.
    pre0: nn.Module = (
        FactorizedReduce(c_prev_prev, channels, affine)
        if reduction_prev
        else ReLUConvBN(c_prev_prev, channels, 1, 1, 0, affine)
    )
    pre1 = ReLUConvBN(c_prev, channels, 1, 1, 0, affine)
    return pre0, pre1


def _preprocess_tails(pre0: nn.Module, pre1: nn.Module) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """Both preprocessors after their leading ReLU (they share the modules; keep them out of the
    tree), for :meth:`forward_rectified`."""
    tails = [after_leading_relu(pre0), after_leading_relu(pre1)]
    assert tails[0] is not None and tails[1] is not None, "every preprocessor starts with a ReLU"
    return [tails[0], tails[1]]


class SearchCell(nn.Module):
    """A cell whose every edge is a :class:`MixedOp`, weighted by alphas passed to forward.

    Args:
        n_nodes: intermediate nodes.
        c_prev_prev, c_prev: widths of c_{k-2} and c_{k-1}.
        channels: the cell width C; the output has ``n_nodes * C`` channels.
        reduction: stride 2 on the edges that leave the two cell inputs.
        reduction_prev: the previous cell reduced (or the stem did), so c_{k-2} is halved first.
        primitives: candidate ops, in alpha-column order.
        aggregation: ``mean`` (CDARTS reference: fixed uniform edge weights) or ``sum`` (DARTS).
        pool_batchnorm: DARTS-style BN after pooling ops.
        shared_relu: see :class:`MixedOp`.
        fused_sums: sum each node's weighted candidate outputs (every op of every edge into it)
            with one :func:`weighted_sum` instead of a product and a sum per op (same values);
            with ``shared_relu`` the final BatchNorm of each conv op is applied inside that sum
            (see :meth:`MixedOp.candidate_terms`).
    """

    def __init__(
        self,
        n_nodes: int,
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
        primitives: tuple[str, ...],
        aggregation: NodeAggregation = "mean",
        pool_batchnorm: bool = False,
        shared_relu: bool = False,
        fused_sums: bool = False,
    ) -> None:
        super().__init__()
        self.n_nodes = n_nodes
        self.reduction = reduction
        self.aggregation = aggregation
        self.fused_sums = fused_sums
        self.preprocess0, self.preprocess1 = _preprocess(c_prev_prev, c_prev, channels, reduction_prev, affine=False)
        self.preprocess_tails = _preprocess_tails(self.preprocess0, self.preprocess1)
        self.mixed_ops = [
            MixedOp(channels, 2 if reduction and j < 2 else 1, primitives, pool_batchnorm, shared_relu)
            for i in range(n_nodes)
            for j in range(2 + i)
        ]
        self.edges = nn.ModuleList(self.mixed_ops)
        self._active_columns = self.mixed_ops[0].active_columns

    def edge(self, index: int) -> MixedOp:
        """The mixed op of edge ``index`` (node-major order)."""
        return self.mixed_ops[index]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """s0, s1: cell inputs; weights: (num_edges, K) softmax(alphas) -> (N, n_nodes*C, H', W')."""
        return self._nodes([self.preprocess0(s0), self.preprocess1(s1)], weights)

    def forward_rectified(self, r0: torch.Tensor, r1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on ``relu(s0)``, ``relu(s1)``: both preprocessors begin with that ReLU,
        so a network can rectify each cell output once for the two cells that read it."""
        tail0, tail1 = self.preprocess_tails
        return self._nodes([tail0(r0), tail1(r1)], weights)

    def _nodes(self, states: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        """The preprocessed inputs -> the concatenated nodes."""
        # One EdgeInput per state: the edges leaving a state share what they derive from it.
        sources = [EdgeInput(state) for state in states]
        edge = 0
        for _ in range(self.n_nodes):
            inputs = len(sources)
            node_edges = self.mixed_ops[edge : edge + inputs]
            if self.fused_sums:
                terms = [out for op, x in zip(node_edges, sources, strict=True) for out in op.candidate_terms(x)]
                # (inputs, active ops) flattened edge-major: the order of ``terms``.
                node_weights = weights[edge : edge + inputs, self._active_columns].reshape(-1)
                if self.aggregation == "mean":
                    node_weights = node_weights / inputs
                node = weighted_sum(node_weights, terms)
            else:
                node = node_edges[0](sources[0], weights[edge])
                for j in range(1, inputs):
                    node = node + node_edges[j](sources[j], weights[edge + j])
                if self.aggregation == "mean":
                    node = node / inputs
            edge += inputs
            sources.append(EdgeInput(with_dense_gradient(node)))  # its gradient comes back as a slice of the cat's
        return torch.cat([source.state for source in sources[2:]], dim=1)


class DerivedCell(nn.Module):
    """A discrete cell built from one half (normal or reduce) of a genotype.

    Each node sums the outputs of its genotype edges; every non-identity op is followed by a
    :class:`DropPath`. The output concatenates the nodes listed in ``concat``. In forward, the
    ops that begin with a ReLU rectify a state once for all of them, and each node's masked sum
    is one :func:`drop_path_sum`: the same values, masks and gradients as running every
    ``Sequential(op, DropPath())`` and adding, with less memory traffic.

    Args:
        nodes: per node, the ``(op_name, input_index)`` pairs of the genotype, strongest first.
        concat: state indices concatenated into the output (2..n_nodes+1 in CDARTS).
        affine: BN affine flag (False during search, True in the retrain network).
    """

    def __init__(
        self,
        nodes: Sequence[Sequence[tuple[str, int]]],
        concat: Sequence[int],
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
        affine: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.concat = tuple(concat)
        self.inputs = tuple(tuple(index for _, index in node) for node in nodes)
        self.preprocess0, self.preprocess1 = _preprocess(c_prev_prev, c_prev, channels, reduction_prev, affine)
        self.preprocess_tails = _preprocess_tails(self.preprocess0, self.preprocess1)
        # Per node, per edge: the op itself (for pool transfers) and the op + drop-path (to run).
        self.edge_ops: list[list[nn.Module]] = []
        self.edge_paths: list[list[nn.Module]] = []
        # Plain lists (they share the modules of the tree): per edge, its DropPath (None for the
        # identity) and the op after its leading ReLU (None if it has none).
        self.edge_drop_paths: list[list[DropPath | None]] = []
        for node in nodes:
            ops = [build_op(op_name, channels, 2 if reduction and index < 2 else 1, affine) for op_name, index in node]
            drop_paths = [None if is_identity(op) else DropPath() for op in ops]
            self.edge_ops.append(ops)
            self.edge_drop_paths.append(drop_paths)
            self.edge_paths.append(
                [op if drop is None else nn.Sequential(op, drop) for op, drop in zip(ops, drop_paths, strict=True)]
            )
        self.nodes = nn.ModuleList(nn.ModuleList(paths) for paths in self.edge_paths)
        self.edge_tails = [[after_leading_relu(op) for op in ops] for ops in self.edge_ops]

    def set_drop_path_prob(self, drop_prob: float) -> None:
        for module in self.modules():
            if isinstance(module, DropPath):
                module.drop_prob = drop_prob

    def edge_op(self, node: int, position: int) -> nn.Module:
        """The candidate op (without its DropPath) of the ``position``-th edge of ``node``."""
        return self.edge_ops[node][position]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        return self._nodes([self.preprocess0(s0), self.preprocess1(s1)])

    def forward_rectified(self, r0: torch.Tensor, r1: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on ``relu(s0)``, ``relu(s1)`` (see :meth:`SearchCell.forward_rectified`)."""
        tail0, tail1 = self.preprocess_tails
        return self._nodes([tail0(r0), tail1(r1)])

    def _nodes(self, states: list[torch.Tensor]) -> torch.Tensor:
        """The preprocessed inputs -> the concatenated nodes."""
        rectified: dict[int, torch.Tensor] = {}
        for node, inputs in enumerate(self.inputs):
            terms, masks = [], []
            for op, tail, drop_path, index in zip(
                self.edge_ops[node], self.edge_tails[node], self.edge_drop_paths[node], inputs, strict=True
            ):
                if tail is None:
                    term = op(states[index])
                else:
                    if index not in rectified:
                        rectified[index] = F.relu(states[index])
                    term = tail(rectified[index])
                terms.append(term)
                masks.append(None if drop_path is None else drop_path.sample_mask(term))
            # The gradient of a node comes back as a slice of the cat's.
            states.append(with_dense_gradient(drop_path_sum(terms, masks)))
        return torch.cat([states[i] for i in self.concat], dim=1)
