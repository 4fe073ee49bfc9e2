"""NAS-Bench-201 genotypes: one op per edge of the 4-node cell, in the benchmark's arch string.

Node 0 is the cell input; node i (1..3) sums one op on every earlier node. The arch string lists
the nodes separated by ``+``, each as ``|op~j|`` for its inputs j = 0..i-1, e.g.
``|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|``.
``none`` is a legal op (the edge carries zeros). Edges are numbered node-major: (1<-0), (2<-0),
(2<-1), (3<-0), (3<-1), (3<-2), the row order of the 6 x 5 alphas.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from cdarts.errors import GenotypeError
from cdarts.spaces.nasbench201.candidates import NB201_OPS
from cdarts.spaces.shared.architecture_base import ArchitectureBase

NB201_NODES = 4  # the input and three computed nodes
NB201_EDGES = 6
_NODE = re.compile(r"^\|(?:[a-z0-9_]+~\d+\|)+$")
MAX_ARCH_STRING = 512


@dataclass(frozen=True)
class Nb201Genotype(ArchitectureBase):
    """``nodes[i - 1][j]`` is the op from node j to node i (i = 1..3, j < i)."""

    nodes: tuple[tuple[str, ...], ...]
    space: ClassVar[str] = "nasbench201"

    def __post_init__(self) -> None:
        if len(self.nodes) != NB201_NODES - 1:
            raise GenotypeError(f"a NAS-Bench-201 cell has {NB201_NODES - 1} computed nodes, got {len(self.nodes)}")
        for index, ops in enumerate(self.nodes, start=1):
            if len(ops) != index:
                raise GenotypeError(f"node {index} needs one op per earlier node ({index}), got {len(ops)}")
            for op in ops:
                if op not in NB201_OPS:
                    raise GenotypeError(f"unknown NAS-Bench-201 op {op!r}; known: {', '.join(NB201_OPS)}")

    def edges(self) -> list[tuple[int, int, str]]:
        """(to_node, from_node, op) in the alphas' row order."""
        return [(i, j, op) for i, ops in enumerate(self.nodes, start=1) for j, op in enumerate(ops)]

    def to_arch_string(self) -> str:
        return "+".join("|" + "".join(f"{op}~{j}|" for j, op in enumerate(ops)) for ops in self.nodes)

    @classmethod
    def from_arch_string(cls, text: str) -> Nb201Genotype:
        """Parse an arch string; anything malformed is a one-line :class:`GenotypeError`."""
        text = text.strip()
        if len(text) > MAX_ARCH_STRING:
            raise GenotypeError("a NAS-Bench-201 arch string is at most a few hundred characters")
        parts = text.split("+")
        nodes = []
        for index, part in enumerate(parts, start=1):
            if not _NODE.match(part):
                raise GenotypeError(f"node {index} of the arch string is not of the form |op~j|...: {part[:60]!r}")
            ops = []
            for position, token in enumerate(part.strip("|").split("|")):
                op, _, source = token.partition("~")
                if int(source) != position:
                    raise GenotypeError(f"node {index} lists input {source} where input {position} belongs")
                ops.append(op)
            nodes.append(tuple(ops))
        return cls(tuple(nodes))

    @classmethod
    def from_alphas(cls, alphas: torch.Tensor) -> Nb201Genotype:
        """The argmax op of every edge over all five ops, ``none`` included. alphas: (6, 5)."""
        if tuple(alphas.shape) != (NB201_EDGES, len(NB201_OPS)):
            raise GenotypeError(f"NAS-Bench-201 alphas are {NB201_EDGES} x {len(NB201_OPS)}, got {tuple(alphas.shape)}")
        choice = alphas.detach().argmax(dim=-1).tolist()
        ops = [NB201_OPS[k] for k in choice]
        return cls((tuple(ops[0:1]), tuple(ops[1:3]), tuple(ops[3:6])))

    def to_string(self) -> str:
        return self.to_arch_string()

    def __str__(self) -> str:
        return self.to_arch_string()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"space": "nasbench201", "arch": self.to_arch_string()}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Nb201Genotype:
        if data.get("space") != "nasbench201" or not isinstance(data.get("arch"), str):
            raise GenotypeError('a NAS-Bench-201 genotype is {"space": "nasbench201", "arch": "|op~0|+..."}')
        return cls.from_arch_string(str(data["arch"]))
