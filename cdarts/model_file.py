"""The retrained model file ``model.pt``: weights plus everything needed to rebuild the network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdarts.architecture import architecture_from_dict
from cdarts.atomic_files import write_text_atomic
from cdarts.checkpoint import load_checkpoint, save_checkpoint
from cdarts.errors import CdartsError, CheckpointError
from cdarts.networks.retrain_factory import RetrainModel, build_retrain_network
from cdarts.networks.retrain_network import RetrainSpec

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
    """Rebuild the network of a model file (or a directory holding ``model.pt``) on the CPU."""
    if path.is_dir():
        path = path / MODEL_FILE
    state = load_checkpoint(path)
    if state.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path} is not a cdarts model file (format {state.get('format')!r})")
    try:
        model = build_retrain_network(architecture_from_dict(state["genotype"]), RetrainSpec.from_dict(state["spec"]))
        model.load_state_dict(state["state_dict"], strict=True)
    except CdartsError:
        raise
    except (KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"{path} does not hold a loadable model: {str(error).splitlines()[0]}") from None
    return model, dict(state.get("extra", {}))


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
