"""Runner of the ``register`` stage: log the retrained model to MLflow, register a version with
alias ``challenger``, and move ``champion`` to it only if it beats the current champion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cdarts.config import ExperimentConfig
from cdarts.errors import DataError
from cdarts.model_file import load_model
from cdarts.networks.retrain_factory import RetrainModel
from cdarts.runners.evaluate import METRICS_NAME
from cdarts.tracking import Tracker, model_aliases, promote_if_better, register_model

REGISTRATION_NAME = "registration.json"


class InferenceModel(nn.Module):
    """The retrained network as served: images (N, C, H, W) -> logits (N, K), eval mode."""

    def __init__(self, network: RetrainModel) -> None:
        super().__init__()
        self.network = network.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.network(images)[0]
        return logits


def run_register(
    config: ExperimentConfig,
    model_path: Path,
    evaluation_dir: Path,
    tracking_uri: str,
    run_id: str,
    out_dir: Path,
    tracker: Tracker | None = None,
) -> dict[str, Any]:
    """Register the model evaluated in ``evaluation_dir``; returns name, version, aliases and the
    promotion decision (also written to ``registration.json``)."""
    metrics_path = evaluation_dir / METRICS_NAME
    if not metrics_path.is_file():
        raise DataError(f"{evaluation_dir} holds no {METRICS_NAME}; run evaluate first")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    network, extra = load_model(model_path)
    spec = network.spec
    example = torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size).numpy()
    name = config.tracking.registered_model
    version = register_model(
        tracking_uri,
        run_id,
        InferenceModel(network),
        example,
        name,
        {
            "test_top1": str(metrics["top1"]),
            "test_top5": str(metrics["top5"]),
            "genotype": metrics["genotype"],
            "dataset_digest": str(extra.get("dataset_digest", "")),
            "config_digest": config.digest(),
        },
    )
    decision = promote_if_better(tracking_uri, name, version, float(metrics["top1"]), config.tracking.promotion_margin)
    result = {"name": name, "version": version, "aliases": model_aliases(tracking_uri, name, version), **decision}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / REGISTRATION_NAME).write_text(json.dumps(result, indent=2), encoding="utf-8")
    if tracker is not None:
        tracker.set_tags(
            {
                "cdarts.registered_model": f"{name}/{version}",
                "cdarts.promotion": decision["decision"],
                "cdarts.genotype": metrics["genotype"],
                "cdarts.dataset_digest": str(extra.get("dataset_digest", "")),
            }
        )
        tracker.log_metrics({"register/challenger_top1": float(metrics["top1"])}, 0)
        tracker.log_artifact(out_dir / REGISTRATION_NAME)
    return result
