"""The DARTS cell search space: candidate ops, mixed edges, search and derived cells."""

from __future__ import annotations

from cdarts.search_space.cells import DerivedCell, SearchCell, node_edge_offsets, num_edges
from cdarts.search_space.mixed_op import MixedOp
from cdarts.search_space.operations import OPS, FactorizedReduce, build_op
from cdarts.search_space.primitives import PARAMETER_FREE_PRIMITIVES, PRIMITIVES

__all__ = [
    "OPS",
    "PARAMETER_FREE_PRIMITIVES",
    "PRIMITIVES",
    "DerivedCell",
    "FactorizedReduce",
    "MixedOp",
    "SearchCell",
    "build_op",
    "node_edge_offsets",
    "num_edges",
]
