"""Search spaces behind one interface (``base.SearchSpace``) and a registry."""

from __future__ import annotations

from cdarts.spaces.base import SearchSpace
from cdarts.spaces.registry import build_retrain_network, get_space, space_names, space_of

__all__ = ["SearchSpace", "build_retrain_network", "get_space", "space_names", "space_of"]
