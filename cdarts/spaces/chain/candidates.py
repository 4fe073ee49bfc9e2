"""The candidate blocks of a searchable chain-space layer, in the index order every published
choice list uses: index = 2 * kernel position + expansion position over kernels {3, 5, 7} and
expansions {4, 6}. ``skip`` (an identity: the layer is left out) is a search-only extra
candidate for every slot but a stage's first (see ../../docs/search-spaces.md)."""

from __future__ import annotations

CHOICES: tuple[tuple[int, int], ...] = ((3, 4), (3, 6), (5, 4), (5, 6), (7, 4), (7, 6))
"""Choice index -> (kernel size, expansion ratio)."""

CHAIN_CANDIDATES: tuple[str, ...] = tuple(f"mbconv_k{kernel}_e{expansion}" for kernel, expansion in CHOICES)
SKIP_CANDIDATE = "skip"
