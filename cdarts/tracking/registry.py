"""The MLflow model registry: register a version (alias challenger), promote it to champion only
if it beats the current champion; operators promote by hand and roll back.

Whenever ``champion`` moves, the version it moved to records the version it replaced
(``champion.previous_version``), so a rollback needs no other history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdarts.errors import TrackingError
from cdarts.tracking.runs import _client, redact_uri

CHALLENGER, CHAMPION = "challenger", "champion"
PREVIOUS_CHAMPION_TAG = "champion.previous_version"


def _current_champion(client: Any, name: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # no champion yet (MLflow raises for a missing alias)
        return None


def _move_champion(client: Any, name: str, version: str, previous: str | None) -> None:
    client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, previous or "")
    client.set_registered_model_alias(name, CHAMPION, version)


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
    champion = _current_champion(client, name)
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
        _move_champion(client, name, version, str(champion.version) if champion is not None else None)
    for key in ("decision", "champion_version", "champion_top1", "margin"):
        client.set_model_version_tag(name, version, f"promotion.{key}", str(decision[key]))
    return decision


def model_aliases(uri: str, name: str, version: str) -> list[str]:
    return sorted(_client(uri).get_model_version(name, version).aliases)


def _existing_version(client: Any, name: str, version: str) -> Any:
    try:
        return client.get_model_version(name, version)
    except Exception:
        raise TrackingError(f"model {name!r} has no version {version!r}") from None


def promote(uri: str, name: str, version: str, reason: str) -> dict[str, Any]:
    """Make ``version`` the champion by hand (an operator's decision, recorded with its reason)."""
    client = _client(uri)
    _existing_version(client, name, version)
    champion = _current_champion(client, name)
    previous = str(champion.version) if champion is not None else None
    if previous == version:
        return {"decision": "already_champion", "champion_version": version, "previous_version": previous}
    _move_champion(client, name, version, previous)
    client.set_model_version_tag(name, version, "promotion.decision", "promoted_by_operator")
    client.set_model_version_tag(name, version, "promotion.reason", reason)
    return {"decision": "promoted_by_operator", "champion_version": version, "previous_version": previous}


def rollback(uri: str, name: str, reason: str) -> dict[str, Any]:
    """Move ``champion`` back to the version it replaced last."""
    client = _client(uri)
    champion = _current_champion(client, name)
    if champion is None:
        raise TrackingError(f"model {name!r} has no champion to roll back")
    previous = champion.tags.get(PREVIOUS_CHAMPION_TAG) or ""
    if not previous:
        raise TrackingError(f"champion version {champion.version} of {name!r} replaced no earlier champion")
    _existing_version(client, name, previous)
    # The restored version keeps its own record of what it replaced; the rolled-back one is tagged.
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, str(champion.version), "rollback.reason", reason)
    return {"decision": "rolled_back", "champion_version": previous, "previous_version": str(champion.version)}
