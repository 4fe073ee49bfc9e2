"""Moving the champion alias: the automatic gate, operator promotion and rollback (a real MLflow
registry on an embedded sqlite store), and concurrent promotions against a real MLflow server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.tracking import CHAMPION, promote_if_better
from cdarts.tracking.promotion_lock import EXPIRES_TAG, HOLDER_TAG, LOCK_SUFFIX

runner = CliRunner()
NAME = "cdarts-test-model"
DIGEST = "sha256:" + "a" * 64


@pytest.fixture
def registry(tmp_path: Path) -> tuple[str, MlflowClient]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)
    for top1 in ("0.90", "0.93", "0.91"):
        version = client.create_model_version(NAME, source=str(tmp_path / "model"), run_id=None)
        client.set_model_version_tag(NAME, version.version, "test_top1", top1)
        client.set_model_version_tag(NAME, version.version, "dataset_digest", DIGEST)
    return uri, client


def _champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(NAME, CHAMPION).version)


def _cli(uri: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["registry", *args, "--tracking-uri", uri])
    return result.exit_code, result.output


def test_champion_moves_record_what_they_replaced_and_roll_back(registry: tuple[str, MlflowClient]) -> None:
    uri, client = registry
    assert promote_if_better(uri, NAME, "1", 0.90, 0.0, DIGEST)["decision"] == "promoted"
    assert promote_if_better(uri, NAME, "2", 0.93, 0.01, DIGEST)["decision"] == "promoted"
    assert promote_if_better(uri, NAME, "3", 0.91, 0.0, DIGEST)["decision"] == "kept_champion"
    assert _champion(client) == "2"
    code, output = _cli(uri, "rollback", NAME, "--reason", "v2 misbehaves in production")
    assert code == 0 and "champion is version 1" in output
    assert _champion(client) == "1"
    assert client.get_model_version(NAME, "2").tags["rollback.reason"] == "v2 misbehaves in production"
    code, output = _cli(uri, "rollback", NAME, "--reason", "again")
    assert code == 2 and "replaced no earlier champion" in output and _champion(client) == "1"


def test_an_operator_promotes_any_existing_version(registry: tuple[str, MlflowClient]) -> None:
    uri, client = registry
    code, output = _cli(uri, "promote", NAME, "3", "--reason", "better on the holdout slice")
    assert code == 0 and "champion is version 3 (was None)" in output
    code, _ = _cli(uri, "promote", NAME, "1", "--reason", "pin the baseline")
    assert code == 0 and _champion(client) == "1"
    tags = client.get_model_version(NAME, "1").tags
    assert tags["promotion.decision"] == "promoted_by_operator" and tags["champion.previous_version"] == "3"
    code, output = _cli(uri, "rollback", NAME, "--reason", "undo")
    assert code == 0 and _champion(client) == "3"
    code, output = _cli(uri, "promote", NAME, "9", "--reason", "typo")
    assert code == 2 and "has no version '9'" in output and _champion(client) == "3"
    code, output = _cli(uri, "rollback", "no-such-model", "--reason", "x")
    assert code == 2 and "no champion" in output


def test_the_gate_never_compares_models_of_different_datasets(registry: tuple[str, MlflowClient]) -> None:
    uri, client = registry
    assert promote_if_better(uri, NAME, "1", 0.90, 0.0, DIGEST)["decision"] == "promoted"
    other = "sha256:" + "b" * 64
    client.set_model_version_tag(NAME, "2", "dataset_digest", other)
    decision = promote_if_better(uri, NAME, "2", 0.99, 0.0, other)
    assert decision["decision"] == "kept_champion_other_dataset" and _champion(client) == "1"
    assert client.get_model_version(NAME, "2").tags["promotion.decision"] == "kept_champion_other_dataset"


def test_a_lock_left_by_a_dead_register_task_expires(registry: tuple[str, MlflowClient]) -> None:
    uri, client = registry
    lock = NAME + LOCK_SUFFIX
    client.create_registered_model(lock, tags={HOLDER_TAG: "dead-pod", EXPIRES_TAG: f"{time.time() - 1:.3f}"})
    assert promote_if_better(uri, NAME, "2", 0.93, 0.0, DIGEST)["decision"] == "promoted"
    assert _champion(client) == "2"
    assert not client.search_registered_models(filter_string=f"name = '{lock}'")  # released after use


@pytest.mark.slow
def test_concurrent_registrations_decide_one_after_the_other(mlflow_server: str) -> None:
    """Two register tasks finish together against a real MLflow server: both read the champion
    (v1, 0.90), v2 (0.95) and v3 (0.93) both beat it. Serialised, exactly one order of decisions
    happens and the best model ends as champion; racing, the slower write would win."""
    uri = mlflow_server
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = f"cdarts-race-{time.time_ns()}"
    client.create_registered_model(name)
    for top1 in ("0.90", "0.95", "0.93"):
        version = client.create_model_version(name, source="s3://models/none", run_id=None)
        client.set_model_version_tag(name, version.version, "test_top1", top1)
        client.set_model_version_tag(name, version.version, "dataset_digest", DIGEST)
    assert promote_if_better(uri, name, "1", 0.90, 0.0, DIGEST)["decision"] == "promoted"

    start = threading.Barrier(2)
    decisions: dict[str, dict[str, object]] = {}

    def register(version: str, top1: float) -> None:
        start.wait()
        decisions[version] = promote_if_better(
            uri, name, version, top1, 0.0, DIGEST, between_read_and_move=lambda: time.sleep(1.0)
        )

    threads = [threading.Thread(target=register, args=args) for args in (("2", 0.95), ("3", 0.93))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == "2"
    promoted = sorted(v for v, d in decisions.items() if d["decision"] == "promoted")
    if promoted == ["2"]:  # v2 decided first; v3 then lost to v2
        assert decisions["3"]["decision"] == "kept_champion" and decisions["3"]["champion_version"] == "2"
        assert decisions["2"]["champion_version"] == "1"
    else:  # v3 decided first and beat v1; v2 then beat v3
        assert promoted == ["2", "3"]
        assert decisions["3"]["champion_version"] == "1" and decisions["2"]["champion_version"] == "3"
    # Each champion move recorded what it replaced, as one unbroken chain back to v1.
    chain, current = [], "2"
    while current:
        chain.append(current)
        current = client.get_model_version(name, current).tags["champion.previous_version"]
    assert chain[-1] == "1" and len(chain) == len(promoted) + 1
    for version, decision in decisions.items():
        assert client.get_model_version(name, version).tags["promotion.decision"] == decision["decision"]
    assert not client.search_registered_models(filter_string=f"name = '{name}{LOCK_SUFFIX}'")
