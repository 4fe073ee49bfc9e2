"""From searched alphas to an architecture, in every search space (the derive_genotype rules).

* DARTS cells: per node the two strongest edges by their best non-``none`` op (derive_genotype).
* NAS-Bench-201: per edge the argmax over all five ops, ``none`` included.
* Chain: per slot the argmax over the blocks and skip (masked in a stage's first slot); skip
  slots are left out of the architecture.
"""

from __future__ import annotations

import torch

from cdarts.alphas_file import AlphasFile
from cdarts.architecture import Architecture
from cdarts.chain_space.supernet import architecture_from_probabilities, candidate_mask
from cdarts.errors import CheckpointError
from cdarts.genotype import derive_genotype
from cdarts.nasbench201.genotype import Nb201Genotype
from cdarts.search_space.cells import node_edge_offsets


def _stage_layers(alphas_file: AlphasFile) -> tuple[int, ...]:
    return tuple(int(n) for n in alphas_file.layout["stage_layers"])


def alpha_probabilities(alphas_file: AlphasFile) -> dict[str, torch.Tensor]:
    """softmax(alphas) per row, with the chain space's mask applied."""
    probabilities = {}
    for name, alphas in alphas_file.alphas.items():
        logits = alphas.detach().float()
        if alphas_file.space == "chain":
            logits = logits + candidate_mask(_stage_layers(alphas_file), bool(alphas_file.layout["allow_skip"]))
        probabilities[name] = torch.softmax(logits, dim=-1)
    return probabilities


def derive_architecture(alphas_file: AlphasFile) -> Architecture:
    """The architecture the alphas select (see the module docstring for each space's rule)."""
    alphas = alphas_file.alphas
    if alphas_file.space == "darts":
        n_nodes = int(alphas_file.layout["n_nodes"])
        return derive_genotype(alphas["alphas_normal"], alphas["alphas_reduce"], n_nodes, alphas_file.candidates)
    if alphas_file.space == "nasbench201":
        return Nb201Genotype.from_alphas(alphas["alphas"])
    if alphas_file.space == "chain":
        probabilities = alpha_probabilities(alphas_file)["alphas"]
        return architecture_from_probabilities(
            probabilities, _stage_layers(alphas_file), bool(alphas_file.layout["allow_skip"])
        )
    raise CheckpointError(f"alphas of unknown search space {alphas_file.space!r}")


def alpha_row_labels(alphas_file: AlphasFile) -> dict[str, list[str]]:
    """A label per row of each alphas tensor: ``j->i`` edges, or ``stage s slot l``."""
    if alphas_file.space == "darts":
        n_nodes = int(alphas_file.layout["n_nodes"])
        edges = [f"{j}->{i}" for i, _ in enumerate(node_edge_offsets(n_nodes)) for j in range(2 + i)]
        return {"alphas_normal": edges, "alphas_reduce": edges}
    if alphas_file.space == "nasbench201":
        return {"alphas": [f"{j}->{i}" for i in range(1, 4) for j in range(i)]}
    return {
        "alphas": [
            f"stage {stage + 1} slot {slot + 1}"
            for stage, count in enumerate(_stage_layers(alphas_file))
            for slot in range(count)
        ]
    }
