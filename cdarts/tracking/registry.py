"""The MLflow model registry: register a version (alias challenger), promote it to champion only
if it beats the current champion; operators promote by hand and roll back.

Whenever ``champion`` moves, the version it moved to records the version it replaced
(``champion.previous_version``), so a rollback needs no other history."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cdarts.errors import TrackingError
from cdarts.tracking.promotion_lock import promotion_lock
from cdarts.tracking.runs import _client, redact_uri

CHALLENGER, CHAMPION = "challenger", "champion"
PREVIOUS_CHAMPION_TAG = "champion.previous_version"


def _current_champion(client: Any, name: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except Exception:  # no champion yet (MLflow raises for a missing alias)
        return None


def version_model_id(version: Any) -> str | None:
    """The LoggedModel a registry version was created from (the sqlite registry keeps it only in
    the version's ``models:/<id>`` source)."""
    if getattr(version, "model_id", None):
        return str(version.model_id)
    source = str(getattr(version, "source", "") or "")
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


def _move_champion(client: Any, name: str, version: str, previous: str | None) -> None:
    client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, previous or "")
    client.set_registered_model_alias(name, CHAMPION, version)


def register_logged_model(uri: str, model_id: str, name: str, version_tags: Mapping[str, str]) -> str:
    """Register logged model ``model_id`` (logged by its retrain run) as a new version of ``name``
    with alias ``challenger``; returns the version."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        registered = mlflow.register_model(f"models:/{model_id}", name, tags=dict(version_tags))
        version = str(registered.version)
        _client(uri).set_registered_model_alias(name, CHALLENGER, version)
    except Exception as error:
        raise TrackingError(
            f"registering model {model_id} as {name!r} in {redact_uri(uri)} failed ({type(error).__name__})"
        ) from None
    return version


def promote_if_better(
    uri: str,
    name: str,
    version: str,
    top1: float,
    margin: float,
    dataset_digest: str,
    *,
    between_read_and_move: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Move ``champion`` to ``version`` only if its test top-1 beats the champion's by more than
    ``margin`` on the same dataset (or there is no champion); the decision and both numbers go on
    the version.

    A champion evaluated on another dataset digest is not compared (its number means something
    else) and stays; an operator promotes by hand. Decisions are serialised across processes by
    :func:`promotion_lock`, so two register tasks finishing together decide one after the other.
    ``between_read_and_move`` runs inside the lock, between reading the champion and moving it
    (tests widen the race window with it).
    """
    client = _client(uri)
    with promotion_lock(client, name):
        champion = _current_champion(client, name)
        champion_top1 = float(champion.tags.get("test_top1", "nan")) if champion is not None else None
        champion_digest = champion.tags.get("dataset_digest", "") if champion is not None else None
        if champion is None:
            outcome = "promoted"
        elif champion_digest != dataset_digest:
            outcome = "kept_champion_other_dataset"
        elif champion_top1 is not None and top1 > champion_top1 + margin:
            outcome = "promoted"
        else:
            outcome = "kept_champion"
        decision = {
            "decision": outcome,
            "challenger_version": version,
            "challenger_top1": top1,
            "champion_version": str(champion.version) if champion is not None else None,
            "champion_top1": champion_top1,
            "margin": margin,
        }
        if between_read_and_move is not None:
            between_read_and_move()
        if outcome == "promoted":
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
    with promotion_lock(client, name):
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
    with promotion_lock(client, name):
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
