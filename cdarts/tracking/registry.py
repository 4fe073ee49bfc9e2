"""The MLflow model registry: register a version (alias challenger), promote it to champion only
if it beats the current champion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdarts.errors import TrackingError
from cdarts.tracking.runs import _client, redact_uri

CHALLENGER, CHAMPION = "challenger", "champion"


def register_model(
    uri: str, run_id: str, model: Any, input_example: Any, name: str, version_tags: Mapping[str, str]
) -> str:
    """Log ``model`` in run ``run_id``, register it under ``name`` with alias ``challenger``."""
    import mlflow
    import mlflow.pytorch
    import torch

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pytorch.log_model(
                model,
                name="model",
                input_example=input_example,
                registered_model_name=name,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
    except Exception as error:
        raise TrackingError(f"registering the model in {redact_uri(uri)} failed ({type(error).__name__})") from None
    version = str(info.registered_model_version)
    client = _client(uri)
    client.set_registered_model_alias(name, CHALLENGER, version)
    for key, value in version_tags.items():
        client.set_model_version_tag(name, version, key, value)
    return version


def promote_if_better(uri: str, name: str, version: str, top1: float, margin: float) -> dict[str, Any]:
    """Move ``champion`` to ``version`` only if its test top-1 beats the champion's by more than
    ``margin`` (or there is no champion); the decision and both numbers go on the version."""
    client = _client(uri)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # no champion yet
        champion = None
    champion_top1 = float(champion.tags.get("test_top1", "nan")) if champion is not None else None
    promoted = champion is None or (champion_top1 is not None and top1 > champion_top1 + margin)
    decision = {
        "decision": "promoted" if promoted else "kept_champion",
        "challenger_version": version,
        "challenger_top1": top1,
        "champion_version": str(champion.version) if champion is not None else None,
        "champion_top1": champion_top1,
        "margin": margin,
    }
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    for key in ("decision", "champion_version", "champion_top1", "margin"):
        client.set_model_version_tag(name, version, f"promotion.{key}", str(decision[key]))
    return decision


def model_aliases(uri: str, name: str, version: str) -> list[str]:
    return sorted(_client(uri).get_model_version(name, version).aliases)
