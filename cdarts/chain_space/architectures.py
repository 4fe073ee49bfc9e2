"""The published chain-space architectures, as per-stage choice lists of the searchable stages
(the fixed first block and last conv left out). From ../shared/reference/chain-space.md 3.1:
CDARTS-a is the authors' "290M" list; CDARTS-b is their "390M" list (reading R1, the one the
released checkpoint was trained with: 21 layers, the 80-channel stage's last choice tied twice).
"""

from __future__ import annotations

from cdarts.errors import GenotypeError

CHAIN_ARCHITECTURES: dict[str, list[list[int]]] = {
    "CDARTS_A": [[3], [3, 3], [3, 1, 3], [3, 3, 3, 3], [3, 3, 3]],
    "CDARTS_B": [[3, 4, 2, 0], [5, 2, 4, 0], [4, 3, 2, 2], [1, 3, 0, 1], [2, 4, 4, 2]],
}


def chain_architecture(name: str) -> list[list[int]]:
    try:
        return [list(stage) for stage in CHAIN_ARCHITECTURES[name.upper()]]
    except KeyError:
        known = ", ".join(sorted(CHAIN_ARCHITECTURES))
        raise GenotypeError(f"unknown chain-space architecture {name!r}; known: {known}") from None
