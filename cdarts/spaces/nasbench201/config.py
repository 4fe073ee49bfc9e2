"""The ``nasbench201:`` section: width, depth and head layout of S, E and the retrained network."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from cdarts.config_base import MAX_CELLS, MAX_CHANNELS, SpaceSection
from cdarts.spaces.nasbench201.candidates import NB201_OPS

if TYPE_CHECKING:
    from cdarts.config import ExperimentConfig


class NasBench201Config(SpaceSection):
    """The NAS-Bench-201 cell space (``search_space: nasbench201``); S, E and the retrained
    network all have this width and depth."""

    channels: int = Field(16, ge=1, le=MAX_CHANNELS, description="C of the first stage (16 in the benchmark)")
    cells_per_stage: int = Field(5, ge=1, le=MAX_CELLS, description="N cells per stage (5 in the benchmark)")
    benchmark_file: str | None = Field(
        None, description="JSON export of NAS-Bench-201 / NATS-Bench accuracies; looked up every cycle"
    )
    layout: Literal["authors", "stage_cells"] = Field(
        "authors",
        description="authors: heads after the stride-2 blocks (2C, 4C), the authors' BN affinities; "
        "stage_cells: heads after the first two stages' last cells (docs/reference-deviations.md)",
    )

    def candidates(self) -> tuple[str, ...]:
        return NB201_OPS

    @classmethod
    def regularizer_defaults(cls, section: dict[str, Any]) -> dict[str, Any]:
        # The authors' benchmark201 penalises the none op's alphas, averaged over the six edges.
        return {"primitives": ["none"], "stage_repeats": 1, "reduction": "mean"}

    def check(self, experiment: ExperimentConfig) -> None:
        if experiment.search.epochs_per_cycle != 1:
            raise ValueError("the nasbench201 search runs exactly one joint epoch per cycle (epochs_per_cycle: 1)")
        size = experiment.data.image_size
        if size % 4 or size < 8:
            raise ValueError(
                f"data.image_size {size} must be a multiple of 4 and at least 8 (the nasbench201 network halves "
                "it twice and a distillation head reads the quarter-size map)"
            )
