"""The cyclic joint search of CDARTS."""

from __future__ import annotations

from cdarts.search.cyclic_search import CycleReport, CyclicSearch, SearchLoaders, SearchResult
from cdarts.search.steps import SearchStepper

__all__ = [
    "CycleReport",
    "CyclicSearch",
    "SearchLoaders",
    "SearchResult",
    "SearchStepper",
]
