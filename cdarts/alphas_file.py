"""The ``alphas.pt`` file: the search's architecture logits plus what is needed to read them
(the search space, the candidate names of the columns, and the space's layout)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cdarts.checkpoint import load_checkpoint, save_checkpoint
from cdarts.errors import CheckpointError
from cdarts.spaces.registry import get_space, space_names

ALPHAS_FORMAT = 2


@dataclass(frozen=True)
class AlphasFile:
    """space: ``darts`` | ``nasbench201`` | ``chain``; alphas: name -> (rows, len(candidates));
    layout: ``{"n_nodes": 4}`` (darts) or ``{"stage_layers": [...], "allow_skip": bool}`` (chain)."""

    space: str
    candidates: tuple[str, ...]
    alphas: dict[str, torch.Tensor]
    layout: dict[str, Any] = field(default_factory=dict)

    def expected_rows(self) -> dict[str, int]:
        return get_space(self.space).expected_alpha_rows(self.layout)


def save_alphas(alphas_file: AlphasFile, path: Path) -> None:
    save_checkpoint(
        {
            "format": ALPHAS_FORMAT,
            "space": alphas_file.space,
            "candidates": list(alphas_file.candidates),
            "layout": alphas_file.layout,
            "alphas": {name: tensor.detach().cpu() for name, tensor in alphas_file.alphas.items()},
        },
        path,
    )


def load_alphas(path: Path) -> AlphasFile:
    """Read and validate an alphas file (format 1, DARTS-only, is read too)."""
    state = load_checkpoint(path)
    try:
        if state.get("format") == 1:
            alphas_file = AlphasFile(
                "darts",
                tuple(str(p) for p in state["primitives"]),
                {name: state[name] for name in ("alphas_normal", "alphas_reduce")},
                {"n_nodes": int(state["n_nodes"])},
            )
        else:
            alphas_file = AlphasFile(
                str(state["space"]),
                tuple(str(c) for c in state["candidates"]),
                dict(state["alphas"]),
                dict(state["layout"]),
            )
        if alphas_file.space not in space_names():
            raise CheckpointError(f"{path}: unknown search space {alphas_file.space!r:.40}")
        candidates = list(state["primitives"] if state.get("format") == 1 else state["candidates"])
        if not candidates or not all(isinstance(c, str) and c for c in candidates):
            raise CheckpointError(f"{path}: the candidates must be a list of operation names")
        expected_rows = alphas_file.expected_rows()
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        raise CheckpointError(f"{path} is not an alphas file (expected space, candidates, layout and alphas)") from None
    if any(rows < 1 for rows in expected_rows.values()):
        raise CheckpointError(f"{path}: its layout {alphas_file.layout} gives no alpha rows")
    if set(alphas_file.alphas) != set(expected_rows):
        raise CheckpointError(
            f"{path}: expected the alphas {sorted(expected_rows)}, found {sorted(alphas_file.alphas)}"
        )
    for name, tensor in alphas_file.alphas.items():
        expected = (expected_rows[name], len(alphas_file.candidates))
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != expected:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise CheckpointError(f"{path}: {name} has shape {shape}, expected {expected}")
        if not tensor.dtype.is_floating_point or tensor.layout != torch.strided:
            raise CheckpointError(f"{path}: {name} is a {tensor.dtype} {tensor.layout} tensor, expected dense floats")
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: {name} contains NaN or infinite values")
    return alphas_file
