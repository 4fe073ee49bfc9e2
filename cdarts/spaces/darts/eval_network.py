"""EvalNetwork (E): the deep network of discrete cells built from a genotype."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cdarts.spaces.darts.architecture import Genotype
from cdarts.spaces.darts.cells import DerivedCell
from cdarts.spaces.darts.layout import CellSpec
from cdarts.spaces.darts.search_network import rectify_pair, stage_last_cells
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
        outputs = []
        checkpointed = should_checkpoint(self, self.activation_checkpointing)
        if not checkpointed:
            # As in SearchNetwork: each cell output is rectified once for the two cells reading it.
            r0, r1 = rectify_pair(s0, s1)
            last = len(self.derived_cells) - 1
            for index, cell in enumerate(self.derived_cells):
                out = cell.forward_rectified(r0, r1)
                r0, r1 = r1, (F.relu(out) if index < last else out)  # no cell reads the last one
                if index in self.stage_ends:
                    outputs.append(out)
            return outputs
        for index, cell in enumerate(self.derived_cells):
            s0, s1 = s1, run_checkpointed(cell, s0, s1) if checkpointed else cell(s0, s1)
            if index in self.stage_ends:
                outputs.append(s1)
        return outputs
