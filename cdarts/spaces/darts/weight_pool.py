"""The weight pool: persistent storage for E's weights across cycles.

E is rebuilt from scratch every cycle, so its weights would be lost. The pool is a mixed-op
supernet with E's depth and width that is never run; it keeps, per cell, per edge and per
candidate op, the weights E had the last time that op was selected. Before a cycle E inherits
its selected ops (and both preprocessing convs of every cell) from the pool; after the cycle
they are written back. Only parameters move, not BN running statistics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn

from cdarts.spaces.darts.architecture import Genotype
from cdarts.spaces.darts.cells import NodeAggregation, node_edge_offsets
from cdarts.spaces.darts.eval_network import EvalNetwork
from cdarts.spaces.darts.layout import CellSpec
from cdarts.spaces.darts.operations import is_identity
from cdarts.spaces.darts.search_network import build_search_cells
from cdarts.spaces.shared.parameter_copy import copy_parameters

PoolTransfer = Literal["all", "reference"]
"""``all`` copies every selected op. ``reference`` reproduces the reference's loop, which stops
at a node whose strongest op is the stride-1 identity, so that node's second op is neither
inherited nor written back (a bug; see docs/reference-deviations.md)."""


class WeightPool(nn.Module):
    """Mixed-op cells laid out like E; holds weights only, never forwarded."""

    def __init__(
        self,
        plan: list[list[CellSpec]],
        n_nodes: int,
        primitives: tuple[str, ...],
        aggregation: NodeAggregation = "mean",
        pool_batchnorm: bool = False,
    ) -> None:
        super().__init__()
        self.n_nodes = n_nodes
        self.primitives = primitives
        self.pool_cells = build_search_cells(plan, n_nodes, primitives, aggregation, pool_batchnorm)
        self.cells = nn.ModuleList(self.pool_cells)

    def _module_pairs(
        self, eval_network: EvalNetwork, genotype: Genotype, mode: PoolTransfer
    ) -> Iterator[tuple[nn.Module, nn.Module]]:
        """(E module, pool module) pairs whose parameters correspond one to one."""
        offsets = node_edge_offsets(self.n_nodes)
        for eval_cell, pool_cell in zip(eval_network.derived_cells, self.pool_cells, strict=True):
            yield eval_cell.preprocess0, pool_cell.preprocess0
            yield eval_cell.preprocess1, pool_cell.preprocess1
            nodes, _ = genotype.cell(eval_cell.reduction)
            for i, node in enumerate(nodes):
                for position, (op_name, index) in enumerate(node):
                    eval_op = eval_cell.edge_op(i, position)
                    if mode == "reference" and is_identity(eval_op):
                        break
                    yield eval_op, pool_cell.edge(offsets[i] + index).op(self.primitives.index(op_name))

    @torch.no_grad()
    def inherit(self, eval_network: EvalNetwork, mode: PoolTransfer = "all") -> None:
        """Copy the pool's weights of every selected op into a freshly built E."""
        for eval_module, pool_module in self._module_pairs(eval_network, eval_network.genotype, mode):
            copy_parameters(source=pool_module, target=eval_module)

    @torch.no_grad()
    def write_back(self, eval_network: EvalNetwork, mode: PoolTransfer = "all") -> None:
        """Store E's current weights of every selected op in the pool."""
        for eval_module, pool_module in self._module_pairs(eval_network, eval_network.genotype, mode):
            copy_parameters(source=eval_module, target=pool_module)
