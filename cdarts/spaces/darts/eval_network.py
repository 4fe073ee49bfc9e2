"""EvalNetwork (E): the deep network of discrete cells built from a genotype."""

from __future__ import annotations

import torch
from torch import nn

from cdarts.spaces.darts.architecture import Genotype
from cdarts.spaces.darts.cells import DerivedCell
from cdarts.spaces.darts.layout import CellSpec
from cdarts.spaces.darts.search_network import run_rectified_chain, stage_last_cells
from cdarts.spaces.shared.checkpointing import run_checkpointed, should_checkpoint


class EvalNetwork(nn.Module):
    """Stages of :class:`DerivedCell` that follow ``plan``; the genotype is fixed at build time.

    During search E has the width of S and non-affine BN (``affine=False``) and is rebuilt every
    cycle; the retrain network uses the same cells with ``affine=True``.
    """

    def __init__(self, genotype: Genotype, plan: list[list[CellSpec]], affine: bool) -> None:
        super().__init__()
        self.genotype = genotype
        self.derived_cells = [
            DerivedCell(
                *genotype.cell(spec.reduction),
                spec.c_prev_prev,
                spec.c_prev,
                spec.channels,
                spec.reduction,
                spec.reduction_prev,
                affine,
            )
            for stage in plan
            for spec in stage
        ]
        self.cells = nn.ModuleList(self.derived_cells)
        self.stage_ends = stage_last_cells(plan)
        self.activation_checkpointing = False

    def set_drop_path_prob(self, drop_prob: float) -> None:
        for cell in self.derived_cells:
            cell.set_drop_path_prob(drop_prob)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> list[torch.Tensor]:
        """(s0, s1) from the stem -> the output of every stage (last one = final features)."""
        if not should_checkpoint(self, self.activation_checkpointing):
            return run_rectified_chain(
                self.derived_cells, s0, s1, self.stage_ends, lambda cell, r0, r1: cell.forward_rectified(r0, r1)
            )
        outputs = []
        for index, cell in enumerate(self.derived_cells):
            s0, s1 = s1, run_checkpointed(cell, s0, s1)
            if index in self.stage_ends:
                outputs.append(s1)
        return outputs
