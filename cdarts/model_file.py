"""The retrained model file ``model.pt``: weights plus everything needed to rebuild the network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cdarts.architecture import architecture_from_dict
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
