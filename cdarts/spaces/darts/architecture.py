"""Genotypes of the DARTS cell space: the data type, derivation from alphas, JSON, look-up.

A genotype is plain data: per cell type (normal, reduce), per intermediate node, the
``(op_name, input_index)`` pairs kept for that node, strongest first. Input index 0 is c_{k-2},
1 is c_{k-1}, and 2.. are the intermediate nodes. It is never ``eval``-ed or pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from cdarts.errors import GenotypeError
from cdarts.spaces.darts.candidates import NONE_PRIMITIVE, PRIMITIVES
from cdarts.spaces.darts.cells import node_edge_offsets
from cdarts.spaces.darts.operations import OPS
from cdarts.spaces.shared.architecture_base import ArchitectureBase

GENOTYPE_SCHEMA_VERSION = 1

Gene = tuple[tuple[str, int], ...]
"""The ``(op_name, input_index)`` pairs of one node."""


@dataclass(frozen=True)
class Genotype(ArchitectureBase):
    """A discrete DARTS-space architecture (one normal and one reduction cell)."""

    normal: tuple[Gene, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Gene, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for cell_type in ("normal", "reduce"):
            _validate_cell(cell_type, getattr(self, cell_type), getattr(self, f"{cell_type}_concat"))
        if len(self.normal) != len(self.reduce):
            raise GenotypeError(
                f"normal and reduce cells differ in node count ({len(self.normal)} vs {len(self.reduce)})"
            )

    @property
    def n_nodes(self) -> int:
        return len(self.normal)

    def cell(self, reduction: bool) -> tuple[tuple[Gene, ...], tuple[int, ...]]:
        """The nodes and concat list of the reduction (True) or normal (False) cell."""
        return (self.reduce, self.reduce_concat) if reduction else (self.normal, self.normal_concat)

    # -- serialisation ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": GENOTYPE_SCHEMA_VERSION,
            "space": "darts",
            "normal": [[[op, index] for op, index in node] for node in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[[op, index] for op, index in node] for node in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Genotype:
        """Build from :meth:`to_dict` output; wrong versions or shapes raise GenotypeError."""
        if not isinstance(data, dict):
            raise GenotypeError("genotype JSON must be an object")
        version = data.get("schema_version")
        if version != GENOTYPE_SCHEMA_VERSION:
            raise GenotypeError(f"unsupported genotype schema_version {version!r} (expected {GENOTYPE_SCHEMA_VERSION})")
        if data.get("space", "darts") != "darts":
            raise GenotypeError(f"genotype space {data.get('space')!r} is not the DARTS cell space")
        try:
            return cls(
                normal=_nodes_from_json(data["normal"]),
                normal_concat=_ints(data["normal_concat"]),
                reduce=_nodes_from_json(data["reduce"]),
                reduce_concat=_ints(data["reduce_concat"]),
            )
        except KeyError as missing:
            raise GenotypeError(f"genotype JSON lacks the key {missing}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_string(self, flat: bool = False) -> str:
        """The ``Genotype(...)`` string: nested (CDARTS, one list per node) or flat (DARTS)."""

        def cell_text(nodes: tuple[Gene, ...]) -> str:
            pairs = [[f"('{op}', {index})" for op, index in node] for node in nodes]
            if flat:
                return "[" + ", ".join(p for node in pairs for p in node) + "]"
            return "[" + ", ".join("[" + ", ".join(node) + "]" for node in pairs) + "]"

        def concat_text(concat: tuple[int, ...]) -> str:
            if concat == tuple(range(concat[0], concat[-1] + 1)):
                return f"range({concat[0]}, {concat[-1] + 1})"
            return "[" + ", ".join(str(i) for i in concat) + "]"

        return (
            f"Genotype(normal={cell_text(self.normal)}, normal_concat={concat_text(self.normal_concat)}, "
            f"reduce={cell_text(self.reduce)}, reduce_concat={concat_text(self.reduce_concat)})"
        )

    def __str__(self) -> str:
        return self.to_string()


def _ints(values: Any) -> tuple[int, ...]:
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        raise GenotypeError(f"expected a list of integers, got {values!r}")
    return tuple(values)


def _nodes_from_json(nodes: Any) -> tuple[Gene, ...]:
    if not isinstance(nodes, list):
        raise GenotypeError("cell must be a list of nodes")
    result = []
    for node in nodes:
        if not isinstance(node, list):
            raise GenotypeError("each node must be a list of [op, input] pairs")
        pairs = []
        for pair in node:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) and type(pair[1]) is int):
                raise GenotypeError(f"malformed edge {pair!r}: expected [op_name, input_index]")
            pairs.append((pair[0], pair[1]))
        result.append(tuple(pairs))
    return tuple(result)


def _validate_cell(cell_type: str, nodes: tuple[Gene, ...], concat: tuple[int, ...]) -> None:
    if not nodes:
        raise GenotypeError(f"{cell_type} cell has no nodes")
    for i, node in enumerate(nodes):
        if not node:
            raise GenotypeError(f"{cell_type} node {i} has no edges")
        for op, index in node:
            if op not in OPS or op == NONE_PRIMITIVE:
                raise GenotypeError(f"{cell_type} node {i}: unknown operation {op!r}")
            if not 0 <= index < 2 + i:
                raise GenotypeError(f"{cell_type} node {i}: input index {index} out of range 0..{1 + i}")
    n_states = 2 + len(nodes)
    if not concat or any(not 2 <= c < n_states for c in concat) or len(set(concat)) != len(concat):
        raise GenotypeError(f"{cell_type}_concat {list(concat)} must list distinct node indices in 2..{n_states - 1}")


# -- derivation --------------------------------------------------------------------------------


def derive_cell(
    alphas: torch.Tensor, n_nodes: int, primitives: tuple[str, ...] = PRIMITIVES, k: int = 2
) -> tuple[Gene, ...]:
    """Discretise one cell type's alphas with the DARTS/CDARTS rule.

    For every node: softmax each incoming edge over all ops, drop ``none`` (the last column),
    take each edge's strongest op, keep the ``k`` strongest edges, strongest first.

    Args:
        alphas: (num_edges, len(primitives)) raw architecture logits, node-major edge order.
    """
    return cell_from_probabilities(torch.softmax(alphas.detach().float().cpu(), dim=-1), n_nodes, primitives, k)


def cell_from_probabilities(
    probabilities: torch.Tensor, n_nodes: int, primitives: tuple[str, ...] = PRIMITIVES, k: int = 2
) -> tuple[Gene, ...]:
    """The DARTS/CDARTS rule on softmax(alphas): (num_edges, len(primitives)), rows summing to 1."""
    if primitives[-1] != NONE_PRIMITIVE:
        raise ValueError("derivation expects 'none' to be the last primitive")
    probs = probabilities[:, :-1]
    genes = []
    for i, start in enumerate(node_edge_offsets(n_nodes)):
        node_probs = probs[start : start + 2 + i]
        edge_strength, edge_best_op = node_probs.max(dim=-1)
        top = torch.topk(edge_strength, min(k, 2 + i)).indices.tolist()
        genes.append(tuple((primitives[int(edge_best_op[j])], int(j)) for j in top))
    return tuple(genes)


def derive_genotype(
    alphas_normal: torch.Tensor,
    alphas_reduce: torch.Tensor,
    n_nodes: int,
    primitives: tuple[str, ...] = PRIMITIVES,
) -> Genotype:
    """The genotype of the current alphas; concat = every intermediate node."""
    concat = tuple(range(2, 2 + n_nodes))
    return Genotype(
        normal=derive_cell(alphas_normal, n_nodes, primitives),
        normal_concat=concat,
        reduce=derive_cell(alphas_reduce, n_nodes, primitives),
        reduce_concat=concat,
    )
