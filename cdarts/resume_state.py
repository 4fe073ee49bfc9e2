"""Schema checks of a training checkpoint's non-weight content, run before anything is restored.

A checkpoint that passes its digest checks can still be tampered with or come from another
version; torch's own loaders then fail deep inside (an optimizer step with a momentum buffer of
the wrong shape, ``set_rng_state`` with a byte tensor of the wrong length). These checks refuse
such content in one line naming the file and the entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cdarts.errors import CheckpointError
from cdarts.seeding import restore_rng_state


def check_resume_identity(state: dict[str, Any], path: Path, config_digest: str, dataset_digest: str) -> None:
    """The one resume guard of every stage: a checkpoint continues only the run that wrote it,
    with the same config and the same prepared data."""
    if state.get("config_digest") != config_digest:
        raise CheckpointError(
            f"{path} was written with a different config (digest {str(state.get('config_digest'))[:16]} vs "
            f"{config_digest}); use a new output directory or the original config"
        )
    if state.get("dataset_digest") != dataset_digest:
        raise CheckpointError(f"{path} was written for a different dataset; use a new output directory")


def require_entries(state: dict[str, Any], path: Path, entries: dict[str, type | tuple[type, ...]]) -> None:
    """Every named entry is present with the given type (``bool`` never passes for ``int``)."""
    for name, expected in entries.items():
        if name not in state:
            raise CheckpointError(f"{path}: the checkpoint has no {name!r} entry")
        value = state[name]
        if isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,)):
            raise CheckpointError(f"{path}: checkpoint entry {name!r} is a bool")
        if not isinstance(value, expected):
            raise CheckpointError(f"{path}: checkpoint entry {name!r} is {type(value).__name__}")


def require_count(value: int, path: Path, name: str, upper: int) -> int:
    """A counter read from a checkpoint lies in ``[0, upper]``."""
    if not 0 <= value <= upper:
        raise CheckpointError(f"{path}: checkpoint entry {name!r} is {value}, outside 0..{upper}")
    return value


def check_optimizer_state(optimizer: torch.optim.Optimizer, saved: Any, path: Path, what: str) -> None:
    """``saved`` is a state dict of ``optimizer``'s kind for the same parameters: the same groups
    and parameter counts, and per-parameter buffers (momentum, Adam moments) of each parameter's
    shape, finite. ``optimizer.load_state_dict`` checks only the group sizes."""
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
        raise CheckpointError(f"{path}: the {what} state is not an optimizer state dictionary")
    groups = saved.get("param_groups")
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups
    ):
        raise CheckpointError(f"{path}: the {what} state has no valid parameter groups")
    ours = [group["params"] for group in optimizer.param_groups]
    if [len(g["params"]) for g in groups] != [len(params) for params in ours]:
        raise CheckpointError(f"{path}: the {what} state was saved for other parameters")
    shapes: dict[object, torch.Size] = {}
    for group, params in zip(groups, ours, strict=True):
        for index, parameter in zip(group["params"], params, strict=True):
            if isinstance(index, bool) or not isinstance(index, int):
                raise CheckpointError(f"{path}: the {what} state names a parameter {index!r}")
            shapes[index] = parameter.shape
    for index, buffers in saved["state"].items():
        if index not in shapes or not isinstance(buffers, dict):
            raise CheckpointError(f"{path}: the {what} state holds an entry for unknown parameter {index!r}")
        for key, value in buffers.items():
            if not isinstance(value, torch.Tensor):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    continue  # step counters
                raise CheckpointError(f"{path}: {what} buffer {index}.{key} is {type(value).__name__}")
            if value.dim() > 0 and value.shape != shapes[index]:
                raise CheckpointError(
                    f"{path}: {what} buffer {index}.{key} has shape {tuple(value.shape)}, "
                    f"the parameter has {tuple(shapes[index])}"
                )
            if not value.dtype.is_floating_point or not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"{path}: {what} buffer {index}.{key} is not a finite float tensor")


def restore_checked_rng_state(saved: Any, path: Path) -> None:
    """Restore the saved RNG states, refusing ones of another shape in one line."""
    try:
        restore_rng_state(saved)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as error:
        raise CheckpointError(f"{path}: the RNG state is malformed ({type(error).__name__})") from None
