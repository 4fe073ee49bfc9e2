"""Macro layout: which cells reduce and how wide every cell's inputs and output are.

Cells are grouped in stages; the last cell of every stage but the final one is a reduction
cell, and the width doubles there (DARTS' "reduce at layers/3 and 2*layers/3" for 8 and 20
cells). A cell's output has ``n_nodes * C`` channels.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdarts.spaces.shared.retrain_spec import StemKind


@dataclass(frozen=True)
class CellSpec:
    """Everything a cell constructor needs besides its edges."""

    c_prev_prev: int
    c_prev: int
    channels: int
    reduction: bool
    reduction_prev: bool

    def out_channels(self, n_nodes: int) -> int:
        return int(n_nodes * self.channels)


def plan_cells(
    cells_per_stage: tuple[int, ...],
    init_channels: int,
    stem_channels: int,
    n_nodes: int,
    stem: StemKind,
) -> list[list[CellSpec]]:
    """Per stage, the specs of its cells.

    Args:
        cells_per_stage: e.g. (3, 3, 2) for the 8-cell search network.
        init_channels: the width C of the first stage.
        stem_channels: width of both stem outputs.
        stem: ``imagenet`` stems already halve c_{k-2} relative to c_{k-1}, so the first cell
            treats its predecessor as a reduction cell.
    """
    if any(count < 1 for count in cells_per_stage):
        raise ValueError(f"every stage needs at least one cell, got {cells_per_stage}")
    stages: list[list[CellSpec]] = []
    c_prev_prev, c_prev, channels = stem_channels, stem_channels, init_channels
    reduction_prev = stem == "imagenet"
    last_stage = len(cells_per_stage) - 1
    for stage, count in enumerate(cells_per_stage):
        specs = []
        for index in range(count):
            reduction = stage < last_stage and index == count - 1
            if reduction:
                channels *= 2
            spec = CellSpec(c_prev_prev, c_prev, channels, reduction, reduction_prev)
            specs.append(spec)
            c_prev_prev, c_prev = c_prev, spec.out_channels(n_nodes)
            reduction_prev = reduction
        stages.append(specs)
    return stages


def stage_spatial_sizes(image_size: int, num_stages: int, stem: StemKind) -> list[int]:
    """Spatial size of each stage's output for a square input of ``image_size`` pixels."""
    size = image_size // 8 if stem == "imagenet" else image_size
    sizes = []
    for stage in range(num_stages):
        if stage < num_stages - 1:
            size //= 2
        sizes.append(size)
    return sizes


def required_divisor(num_stages: int, stem: StemKind) -> int:
    """Image sizes must be a multiple of this so every stride-2 step halves an even size."""
    stem_factor = 8 if stem == "imagenet" else 1
    return stem_factor * (1 << max(num_stages - 1, 0))
