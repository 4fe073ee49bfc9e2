"""The shape of a retrain network besides its architecture, stored with the weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

StemKind = Literal["cifar", "imagenet"]


@dataclass(frozen=True)
class RetrainSpec:
    """Everything besides the genotype that fixes the architecture (stored with the weights).

    The DARTS space uses every field but ``dropout``. NAS-Bench-201 reads ``init_channels`` as C
    and ``cells`` as the cells per stage; the chain space has fixed widths and reads only the
    data fields and ``dropout``.
    """

    stem: StemKind
    in_channels: int
    num_classes: int
    image_size: int
    init_channels: int
    cells: int
    stem_multiplier: int
    auxiliary: bool
    dropout: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetrainSpec:
        return cls(**data)
