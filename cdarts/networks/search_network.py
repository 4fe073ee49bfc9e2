"""SearchNetwork (S): the shallow supernet of mixed-op cells that owns the alphas."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from cdarts.networks.layout import CellSpec
from cdarts.search_space.cells import NodeAggregation, SearchCell, num_edges


def build_search_stages(
    plan: list[list[CellSpec]],
    n_nodes: int,
    primitives: tuple[str, ...],
    aggregation: NodeAggregation,
    pool_batchnorm: bool,
) -> nn.ModuleList:
    """A ModuleList of stages, each a ModuleList of :class:`SearchCell` following ``plan``."""
    return nn.ModuleList(
        nn.ModuleList(
            SearchCell(
                n_nodes, spec.c_prev_prev, spec.c_prev, spec.channels, spec.reduction,
                spec.reduction_prev, primitives, aggregation, pool_batchnorm,
            )
            for spec in stage
        )
        for stage in plan
    )


class SearchNetwork(nn.Module):
    """The cells of S plus the one (normal, reduce) pair of alphas shared by all its cells.

    ``alphas_normal`` and ``alphas_reduce`` have shape (num_edges, len(primitives)), edges in
    node-major order (4 nodes: 14 rows), initialised as 1e-3 * N(0, 1).
    """

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
        self.stages = build_search_stages(plan, n_nodes, primitives, aggregation, pool_batchnorm)
        shape = (num_edges(n_nodes), len(primitives))
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(shape))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def cell_parameters(self) -> Iterator[nn.Parameter]:
        return self.stages.parameters()

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> list[torch.Tensor]:
        """(s0, s1) from the stem -> the output of every stage (last one = final features)."""
        weights_normal = torch.softmax(self.alphas_normal, dim=-1)
        weights_reduce = torch.softmax(self.alphas_reduce, dim=-1)
        outputs = []
        for stage in self.stages:
            for cell in stage:
                weights = weights_reduce if cell.reduction else weights_normal
                s0, s1 = s1, cell(s0, s1, weights)
            outputs.append(s1)
        return outputs
