"""The ``chain:`` section: the searchable slots of S, the skip candidate and the classifier dropout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from cdarts.config_base import SpaceSection
from cdarts.spaces.chain.candidates import CHAIN_CANDIDATES, SKIP_CANDIDATE

if TYPE_CHECKING:
    from cdarts.config import ExperimentConfig


class ChainConfig(SpaceSection):
    """The chain-structured (mobile) space (``search_space: chain``)."""

    stage_layers: tuple[int, int, int, int, int] = Field(
        (4, 4, 4, 4, 4), description="searchable slots of S per stage (24, 40, 80, 96, 192 channels), 1 to 4"
    )
    allow_skip: bool = Field(True, description="every slot but a stage's first may choose skip (shallower stages)")
    dropout: float = Field(0.2, ge=0, lt=1, description="before the classifier")

    @model_validator(mode="after")
    def _layers_in_range(self) -> ChainConfig:
        if not all(1 <= n <= 4 for n in self.stage_layers):
            raise ValueError("stage_layers must be 1 to 4 per stage")
        return self

    def candidates(self) -> tuple[str, ...]:
        return CHAIN_CANDIDATES + ((SKIP_CANDIDATE,) if self.allow_skip else ())

    @classmethod
    def regularizer_defaults(cls, section: dict[str, Any]) -> dict[str, Any]:
        # Our adaptation: the L1 penalty on skip keeps S from collapsing to shallow stages; with
        # no skip candidate there is nothing to penalise.
        allow_skip = section.get("allow_skip", True)
        return {"primitives": [SKIP_CANDIDATE], "stage_repeats": 1, "reduction": "sum", "enabled": allow_skip is True}

    def check(self, experiment: ExperimentConfig) -> None:
        if experiment.data.image_size < 32:
            raise ValueError("the chain space downsamples 32x: data.image_size must be at least 32")
