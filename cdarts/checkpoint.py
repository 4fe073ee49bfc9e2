"""Atomic checkpoint files, loaded with ``weights_only=True``."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cdarts.atomic_files import write_with_atomic
from cdarts.errors import CheckpointError


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically: a crash never leaves a half-written checkpoint."""
    write_with_atomic(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with the safe loader; unreadable files raise CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a state dictionary")
    return state


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def check_state_dict(module: torch.nn.Module, weights: Any, path: Path, what: str = "weights") -> None:
    """Refuse ``weights`` that do not fit ``module`` exactly, in one line naming ``path``: another
    architecture's keys, values that are not dense tensors, other shapes, integer tensors where
    floats belong (or the reverse), NaN or infinite values. Run before ``load_state_dict``, whose
    own errors are long and partial. ``module`` may live on the meta device (nothing allocated)."""
    check_tensors(module.state_dict(), weights, path, what)


def check_tensors(expected: Mapping[str, torch.Tensor], weights: Any, path: Path, what: str) -> None:
    """``check_state_dict`` against an explicit name -> tensor mapping (a part of a state dict)."""
    if not isinstance(weights, dict) or not all(isinstance(key, str) for key in weights):
        raise CheckpointError(f"{path}: the {what} are not a dictionary of named tensors")
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        parts = [f"missing {len(missing)} ({_names(missing)})"] if missing else []
        parts += [f"unexpected {len(unexpected)} ({_names(unexpected)})"] if unexpected else []
        raise CheckpointError(f"{path}: the {what} belong to another architecture: {'; '.join(parts)}")
    for name, reference in expected.items():
        value = weights[name]
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided or value.is_meta:
            found = type(value).__name__ if not isinstance(value, torch.Tensor) else f"a {value.layout} tensor"
            raise CheckpointError(f"{path}: {what} {name} is {found}, not a dense tensor")
        if tuple(value.shape) != tuple(reference.shape):
            raise CheckpointError(
                f"{path}: {what} {name} has shape {tuple(value.shape)}, the model needs {tuple(reference.shape)}"
            )
        if value.dtype.is_complex or value.dtype.is_floating_point != reference.dtype.is_floating_point:
            raise CheckpointError(f"{path}: {what} {name} is {value.dtype}, the model needs {reference.dtype}")
        if value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: {what} {name} holds NaN or infinite values")
