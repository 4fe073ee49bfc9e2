"""Runner of the ``register`` stage: the model its retrain run logged becomes a registered
version (alias ``challenger``); ``champion`` moves to it only if it beats the current champion
of the same dataset. This stage only registers, gates and moves aliases: it logs no model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cdarts.atomic_files import write_text_atomic
from cdarts.config import ExperimentConfig
from cdarts.errors import DataError, TrackingError, TrainingDivergedError
from cdarts.model_file import read_logged_model_reference
from cdarts.runners.evaluate import METRICS_NAME
from cdarts.tracking import Tracker, model_aliases, promote_if_better, register_logged_model

REGISTRATION_NAME = "registration.json"


def run_register(
    config: ExperimentConfig,
    model_path: Path,
    evaluation_dir: Path,
    tracking_uri: str,
    out_dir: Path,
    tracker: Tracker | None = None,
) -> dict[str, Any]:
    """Register the model evaluated in ``evaluation_dir``; returns name, version, aliases and the
    promotion decision (also written to ``registration.json``)."""
    metrics_path = evaluation_dir / METRICS_NAME
    if not metrics_path.is_file():
        raise DataError(f"{evaluation_dir} holds no {METRICS_NAME}; run evaluate first")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    for key in ("top1", "top5", "loss"):
        value = metrics.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise TrainingDivergedError(
                f"{metrics_path}: {key} is {value!r}, not a finite number; a diverged model is not registered"
            )
    reference = read_logged_model_reference(model_path)
    if reference is None:
        raise TrackingError(
            f"{model_path} was not logged to MLflow by its retrain run (tracking off?); nothing to register"
        )
    if not metrics.get("same_dataset_as_training", False):
        raise DataError("the model was evaluated on another dataset than it was trained on; not registering it")
    name = config.registered_model_name()
    digest = str(metrics["dataset_digest"])
    version = register_logged_model(
        tracking_uri,
        reference["model_id"],
        name,
        {
            "test_top1": str(metrics["top1"]),
            "test_top5": str(metrics["top5"]),
            "genotype": metrics["genotype"],
            "dataset_digest": digest,
            "config_digest": config.digest(),
            "retrain_run_id": reference["run_id"],
        },
    )
    decision = promote_if_better(
        tracking_uri, name, version, float(metrics["top1"]), config.tracking.promotion_margin, digest
    )
    result = {
        "name": name,
        "version": version,
        "model_id": reference["model_id"],
        "aliases": model_aliases(tracking_uri, name, version),
        **decision,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / REGISTRATION_NAME, json.dumps(result, indent=2))
    if tracker is not None:
        tracker.set_tags(
            {
                "cdarts.registered_model": f"{name}/{version}",
                "cdarts.logged_model_id": reference["model_id"],
                "cdarts.promotion": decision["decision"],
                "cdarts.genotype": metrics["genotype"],
                "cdarts.dataset_digest": digest,
            }
        )
        tracker.log_metrics({"register/challenger_top1": float(metrics["top1"])}, 0)
        tracker.log_artifact(out_dir / REGISTRATION_NAME)
    return result
