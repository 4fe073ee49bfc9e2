"""The retrained model file ``model.pt``: weights plus everything needed to rebuild the network."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, get_args

import torch

from cdarts.architecture import architecture_from_dict
from cdarts.atomic_files import write_text_atomic
from cdarts.checkpoint import check_state_dict, load_checkpoint, save_checkpoint
from cdarts.errors import CdartsError, CheckpointError
from cdarts.spaces.registry import build_retrain_network
from cdarts.spaces.shared.retrain_model import RetrainModel
from cdarts.spaces.shared.retrain_spec import RetrainSpec, StemKind

MODEL_FORMAT = 1
MODEL_FILE = "model.pt"


def save_model(model: RetrainModel, path: Path, extra: dict[str, Any] | None = None) -> None:
    """Write weights, genotype and architecture spec (plus ``extra`` plain data) atomically."""
    save_checkpoint(
        {
            "format": MODEL_FORMAT,
            "genotype": model.genotype.to_dict(),
            "spec": model.spec.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "extra": extra or {},
        },
        path,
    )


def load_model(path: Path) -> tuple[RetrainModel, dict[str, Any]]:
    """Rebuild the network of a model file (or a directory holding ``model.pt``) on the CPU.

    The content is schema-checked before torch sees it (a file can pass every digest and still be
    foreign or tampered): the keys and their types, the genotype, the spec within bounds, and the
    weights against the network the genotype and spec build (first on the meta device, so a
    tampered spec allocates nothing). Every refusal is one CheckpointError naming the file.
    """
    if path.is_dir():
        path = path / MODEL_FILE
    state = load_checkpoint(path)
    if state.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path} is not a cdarts model file (format {state.get('format')!r})")
    for key in ("genotype", "spec", "state_dict", "extra"):
        if key == "extra" and key not in state:
            continue
        if not isinstance(state.get(key), dict):
            found = "missing" if key not in state else f"a {type(state[key]).__name__}"
            raise CheckpointError(f"{path}: {key!r} must be a dictionary, found {found}")
    try:
        architecture = architecture_from_dict(state["genotype"])
    except CdartsError as error:
        raise CheckpointError(f"{path}: malformed genotype: {error}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{path}: malformed genotype ({type(error).__name__}: {error})") from None
    spec = _checked_spec(state["spec"], path)
    try:
        with torch.device("meta"):
            skeleton = build_retrain_network(architecture, spec)
    except CdartsError as error:
        raise CheckpointError(f"{path}: its genotype and spec build no network: {error}") from None
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: its genotype and spec build no network: {reason}") from None
    check_state_dict(skeleton, state["state_dict"], path)
    try:
        model = build_retrain_network(architecture, spec)
        model.load_state_dict(state["state_dict"], strict=True)
    except (KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"{path} does not hold a loadable model: {str(error).splitlines()[0]}") from None
    return model, dict(state.get("extra", {}))


# Generous bounds: far beyond any real network, small enough that a tampered spec cannot ask for
# millions of cells or channels (the chain space has fixed widths and stores 0 cells and channels).
_SPEC_BOUNDS = {
    "in_channels": (1, 64),
    "num_classes": (1, 1_000_000),
    "image_size": (1, 8192),
    "init_channels": (0, 4096),
    "cells": (0, 1000),
    "stem_multiplier": (1, 64),
}


def _checked_spec(data: dict[str, Any], path: Path) -> RetrainSpec:
    names = {f.name for f in dataclasses.fields(RetrainSpec)}
    required = {f.name for f in dataclasses.fields(RetrainSpec) if f.default is dataclasses.MISSING}
    unknown, missing = sorted(set(data) - names), sorted(required - set(data))
    if unknown or missing:
        raise CheckpointError(
            f"{path}: malformed spec (missing {missing or 'nothing'}, unknown {unknown or 'nothing'})"
        )
    if data["stem"] not in get_args(StemKind):
        raise CheckpointError(f"{path}: spec stem {data['stem']!r:.40} is not one of {', '.join(get_args(StemKind))}")
    for key, (low, high) in _SPEC_BOUNDS.items():
        value = data[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise CheckpointError(f"{path}: spec {key} must be an integer in {low}..{high}, found {value!r:.40}")
    if not isinstance(data["auxiliary"], bool):
        raise CheckpointError(f"{path}: spec auxiliary must be true or false, found {data['auxiliary']!r:.40}")
    dropout = data.get("dropout", 0.0)
    if not isinstance(dropout, int | float) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
        raise CheckpointError(f"{path}: spec dropout must be a number in [0, 1), found {dropout!r:.40}")
    return RetrainSpec.from_dict(data)


LOGGED_MODEL_FILE = "logged_model.json"
"""Beside ``model.pt`` when the retrain run logged the model to MLflow: its model and run ids."""


def write_logged_model_reference(model_dir: Path, model_id: str, run_id: str) -> None:
    write_text_atomic(model_dir / LOGGED_MODEL_FILE, json.dumps({"model_id": model_id, "run_id": run_id}, indent=2))


def read_logged_model_reference(model_path: Path) -> dict[str, str] | None:
    """The MLflow model and run ids retrain recorded for a model file or directory, if any."""
    model_dir = model_path if model_path.is_dir() else model_path.parent
    path = model_dir / LOGGED_MODEL_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {"model_id": str(data["model_id"]), "run_id": str(data["run_id"])}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise CheckpointError(f"{path} is not a logged-model reference") from None
