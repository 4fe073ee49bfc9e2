"""The ``darts:`` section: S, E and the weight pool of the search, and (``darts.retrain:``) the
retrained network."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from cdarts.config_base import MAX_CELLS, MAX_CHANNELS, MAX_NODES, CellCount, ConfigSection, SpaceSection
from cdarts.spaces.darts.candidates import PRIMITIVES
from cdarts.spaces.darts.config_migration import migrate_space_sections

if TYPE_CHECKING:
    from cdarts.config import ExperimentConfig

Stem = Literal["cifar", "imagenet"]
StemMultiplier = Field(3, ge=1, le=16)


class DartsRetrainNetworkConfig(ConfigSection):
    """The retrained network of a DARTS genotype (the paper's "augment" network)."""

    stem: Stem = "cifar"
    init_channels: int = Field(36, ge=2, le=MAX_CHANNELS)
    cells: int = Field(
        20,
        ge=4,
        le=MAX_CELLS,
        description="cells in total (4 or more: every stage keeps one); reductions at cells/3 and 2*cells/3",
    )
    stem_multiplier: int = StemMultiplier
    param_count_rule: bool = Field(
        True, description="CIFAR reference rule: weight decay and drop-path chosen by parameter count"
    )

    @model_validator(mode="after")
    def _even(self) -> DartsRetrainNetworkConfig:
        if self.init_channels % 2:
            raise ValueError("init_channels must be even (factorized reduce halves it)")
        return self


class DartsConfig(SpaceSection):
    """The DARTS cell space (``search_space: darts``): the search networks S and E, the weight
    pool, and (``retrain:``) the retrained network."""

    stem: Stem = "cifar"
    init_channels: int = Field(16, ge=2, le=MAX_CHANNELS)
    stem_multiplier: int = StemMultiplier
    n_nodes: int = Field(4, ge=1, le=MAX_NODES)
    search_cells: tuple[CellCount, CellCount, CellCount] = (3, 3, 2)
    eval_cells: tuple[CellCount, CellCount, CellCount] = (7, 7, 6)
    node_aggregation: Literal["mean", "sum"] = "mean"
    pool_batchnorm: bool = False
    pool_transfer: Literal["all", "reference"] = "all"
    retrain: DartsRetrainNetworkConfig = DartsRetrainNetworkConfig()

    @model_validator(mode="after")
    def _even(self) -> DartsConfig:
        if self.init_channels % 2:
            raise ValueError("init_channels must be even (factorized reduce halves it)")
        return self

    def candidates(self) -> tuple[str, ...]:
        return PRIMITIVES

    @classmethod
    def migrate_config(cls, data: dict[str, Any]) -> dict[str, Any]:
        return migrate_space_sections(data)

    def check(self, experiment: ExperimentConfig) -> None:
        size = experiment.data.image_size
        for section, stem in (("darts", self.stem), ("darts.retrain", self.retrain.stem)):
            divisor = 32 if stem == "imagenet" else 4  # layout.required_divisor(3, stem), without torch
            if size % divisor:
                raise ValueError(f"data.image_size {size} must be a multiple of {divisor} ({section}.stem {stem})")
