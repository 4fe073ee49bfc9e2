"""SearchNetwork (S): the shallow supernet of mixed-op cells that owns the alphas."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from cdarts.spaces.darts.cells import NodeAggregation, SearchCell, num_edges
from cdarts.spaces.darts.layout import CellSpec
from cdarts.spaces.shared.checkpointing import run_checkpointed, should_checkpoint

CellT = TypeVar("CellT")


def build_search_cells(
    plan: list[list[CellSpec]],
    n_nodes: int,
    primitives: tuple[str, ...],
    aggregation: NodeAggregation,
    pool_batchnorm: bool,
    shared_relu: bool = False,
    fused_sums: bool = False,
) -> list[SearchCell]:
    """The :class:`SearchCell` of every spec in ``plan``, stages flattened in order."""
    return [
        SearchCell(
            n_nodes,
            spec.c_prev_prev,
            spec.c_prev,
            spec.channels,
            spec.reduction,
            spec.reduction_prev,
            primitives,
            aggregation,
            pool_batchnorm,
            shared_relu,
            fused_sums,
        )
        for stage in plan
        for spec in stage
    ]


def run_rectified_chain(
    cells: Sequence[CellT],
    s0: torch.Tensor,
    s1: torch.Tensor,
    stage_ends: tuple[int, ...],
    run_cell: Callable[[CellT, torch.Tensor, torch.Tensor], torch.Tensor],
) -> list[torch.Tensor]:
    """The cells in order on rectified inputs -> the output of every stage.

    Each cell output feeds the preprocessors of the next two cells, which both begin with a
    ReLU: it is rectified once here (and the stem's output once, when both cells get the same
    tensor), and ``run_cell(cell, relu(s0), relu(s1))`` runs the cell without its own ReLUs.
    """
    r1 = F.relu(s1)
    r0 = r1 if s0 is s1 else F.relu(s0)
    outputs, last = [], len(cells) - 1
    for index, cell in enumerate(cells):
        out = run_cell(cell, r0, r1)
        r0, r1 = r1, (F.relu(out) if index < last else out)  # no cell reads the last one
        if index in stage_ends:
            outputs.append(out)
    return outputs


def stage_last_cells(plan: list[list[CellSpec]]) -> tuple[int, ...]:
    """Flat index of the last cell of every stage (where stage outputs are taken)."""
    ends, total = [], 0
    for stage in plan:
        total += len(stage)
        ends.append(total - 1)
    return tuple(ends)


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
        shared_relu: bool = False,
        fused_sums: bool = False,
    ) -> None:
        super().__init__()
        self.n_nodes = n_nodes
        self.primitives = primitives
        self.activation_checkpointing = False
        self.shared_relu = shared_relu
        self.search_cells = build_search_cells(
            plan, n_nodes, primitives, aggregation, pool_batchnorm, shared_relu, fused_sums
        )
        self.cells = nn.ModuleList(self.search_cells)
        self.stage_ends = stage_last_cells(plan)
        shape = (num_edges(n_nodes), len(primitives))
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(shape))

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def cell_parameters(self) -> Iterator[nn.Parameter]:
        return self.cells.parameters()

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> list[torch.Tensor]:
        """(s0, s1) from the stem -> the output of every stage (last one = final features)."""
        weights_normal = torch.softmax(self.alphas_normal, dim=-1)
        weights_reduce = torch.softmax(self.alphas_reduce, dim=-1)
        outputs = []
        checkpointed = should_checkpoint(self, self.activation_checkpointing)
        if self.shared_relu and not checkpointed:  # same values and gradients, a pass and a tensor less
            return run_rectified_chain(
                self.search_cells,
                s0,
                s1,
                self.stage_ends,
                lambda cell, r0, r1: cell.forward_rectified(
                    r0, r1, weights_reduce if cell.reduction else weights_normal
                ),
            )
        for index, cell in enumerate(self.search_cells):
            weights = weights_reduce if cell.reduction else weights_normal
            s0, s1 = s1, run_checkpointed(cell, s0, s1, weights) if checkpointed else cell(s0, s1, weights)
            if index in self.stage_ends:
                outputs.append(s1)
        return outputs
