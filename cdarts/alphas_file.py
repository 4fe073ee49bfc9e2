"""The ``alphas.pt`` file: the search's architecture logits plus what is needed to read them."""

from __future__ import annotations

from pathlib import Path

import torch

from cdarts.checkpoint import load_checkpoint, save_checkpoint
from cdarts.errors import CheckpointError
from cdarts.search_space.cells import num_edges

ALPHAS_FORMAT = 1


def save_alphas(alphas: dict[str, torch.Tensor], primitives: tuple[str, ...], n_nodes: int, path: Path) -> None:
    """alphas: ``alphas_normal`` and ``alphas_reduce``, each (num_edges(n_nodes), len(primitives))."""
    save_checkpoint(
        {
            "format": ALPHAS_FORMAT,
            "primitives": list(primitives),
            "n_nodes": n_nodes,
            "alphas_normal": alphas["alphas_normal"].detach().cpu(),
            "alphas_reduce": alphas["alphas_reduce"].detach().cpu(),
        },
        path,
    )


def load_alphas(path: Path) -> tuple[dict[str, torch.Tensor], tuple[str, ...], int]:
    """Read and validate an alphas file -> (alphas, primitives, n_nodes)."""
    state = load_checkpoint(path)
    try:
        primitives = tuple(str(p) for p in state["primitives"])
        n_nodes = int(state["n_nodes"])
        alphas = {name: state[name] for name in ("alphas_normal", "alphas_reduce")}
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(
            f"{path} is not an alphas file (expected alphas_normal, alphas_reduce, primitives, n_nodes)"
        ) from None
    expected = (num_edges(n_nodes), len(primitives))
    for name, tensor in alphas.items():
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != expected:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise CheckpointError(f"{path}: {name} has shape {shape}, expected {expected}")
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: {name} contains NaN or infinite values")
    return alphas, primitives, n_nodes
