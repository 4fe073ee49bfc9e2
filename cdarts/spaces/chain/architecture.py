"""Chain-space architectures: the data type and the published CDARTS-a/b.

An architecture is the per-stage list of choice indices of the five searchable stages (the fixed
first block and last conv left out), 1 to 4 layers a stage. Its string form is ``chain:`` and the
stages' choice digits joined by ``-``: CDARTS-a is ``chain:3-33-313-3333-333``. From
../shared/reference/chain-space.md 3.1: CDARTS-a is the authors' "290M" list; CDARTS-b is their
"390M" list (reading R1, the one the released checkpoint was trained with: 21 layers, the
80-channel stage's last choice tied twice).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from cdarts.errors import GenotypeError
from cdarts.spaces.shared.architecture_base import ArchitectureBase

NUM_CHOICES = 6
NUM_STAGES = 5
MAX_LAYERS_PER_STAGE = 4
_STRING = re.compile(r"^chain:([0-9]{1,4})(?:-([0-9]{1,4})){4}$")

CHAIN_ARCHITECTURES: dict[str, list[list[int]]] = {
    "CDARTS_A": [[3], [3, 3], [3, 1, 3], [3, 3, 3, 3], [3, 3, 3]],
    "CDARTS_B": [[3, 4, 2, 0], [5, 2, 4, 0], [4, 3, 2, 2], [1, 3, 0, 1], [2, 4, 4, 2]],
}


@dataclass(frozen=True)
class ChainArchitecture(ArchitectureBase):
    """``choices[s][l]``: the block (0..5, see ``network.CHOICES``) of layer l of searchable stage s."""

    choices: tuple[tuple[int, ...], ...]
    space: ClassVar[str] = "chain"

    def __post_init__(self) -> None:
        if len(self.choices) != NUM_STAGES:
            raise GenotypeError(f"a chain architecture has {NUM_STAGES} searchable stages, got {len(self.choices)}")
        for stage, layers in enumerate(self.choices, start=1):
            if not 1 <= len(layers) <= MAX_LAYERS_PER_STAGE:
                raise GenotypeError(f"chain stage {stage} needs 1 to {MAX_LAYERS_PER_STAGE} layers, got {len(layers)}")
            if any(type(c) is not int or not 0 <= c < NUM_CHOICES for c in layers):
                raise GenotypeError(f"chain stage {stage}: choices must be integers 0..{NUM_CHOICES - 1}")

    @classmethod
    def from_lists(cls, choices: list[list[int]]) -> ChainArchitecture:
        return cls(tuple(tuple(stage) for stage in choices))

    def as_lists(self) -> list[list[int]]:
        return [list(stage) for stage in self.choices]

    # -- serialisation ------------------------------------------------------------------------

    def to_string(self) -> str:
        return "chain:" + "-".join("".join(str(c) for c in stage) for stage in self.choices)

    @classmethod
    def from_string(cls, text: str) -> ChainArchitecture:
        """Parse ``chain:3-33-313-3333-333``; anything else is a one-line GenotypeError."""
        text = text.strip()
        if not _STRING.match(text):
            raise GenotypeError(
                f"{text[:60]!r} is not a chain architecture string (chain: and five stages of 1-4 digits, "
                "joined by '-')"
            )
        return cls(tuple(tuple(int(c) for c in stage) for stage in text.removeprefix("chain:").split("-")))

    def to_dict(self) -> dict[str, Any]:
        return {"space": "chain", "choices": self.as_lists()}

    @classmethod
    def from_dict(cls, data: Any) -> ChainArchitecture:
        choices = data.get("choices") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or data.get("space") != "chain"
            or not isinstance(choices, list)
            or not all(isinstance(stage, list) for stage in choices)
        ):
            raise GenotypeError('a chain architecture is {"space": "chain", "choices": [[...], ...]}')
        return cls(tuple(tuple(stage) for stage in choices))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def __str__(self) -> str:
        return self.to_string()


def chain_architecture(name: str) -> list[list[int]]:
    """The choice lists of a published architecture (``CDARTS_A``, ``CDARTS_B``)."""
    try:
        return [list(stage) for stage in CHAIN_ARCHITECTURES[name.upper()]]
    except KeyError:
        known = ", ".join(sorted(CHAIN_ARCHITECTURES))
        raise GenotypeError(f"unknown chain-space architecture {name!r}; known: {known}") from None
