"""Moving the champion alias: the automatic gate, operator promotion and rollback (a real MLflow
registry on an embedded sqlite store)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.tracking import CHAMPION, promote_if_better

runner = CliRunner()
NAME = "cdarts-test-model"


@pytest.fixture
def registry(tmp_path: Path) -> tuple[str, MlflowClient]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)
    for top1 in ("0.90", "0.93", "0.91"):
        version = client.create_model_version(NAME, source=str(tmp_path / "model"), run_id=None)
        client.set_model_version_tag(NAME, version.version, "test_top1", top1)
    return uri, client


def _champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias(NAME, CHAMPION).version)


def _cli(uri: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["registry", *args, "--tracking-uri", uri])
    return result.exit_code, result.output


def test_champion_moves_record_what_they_replaced_and_roll_back(registry: tuple[str, MlflowClient]) -> None:
    uri, client = registry
    assert promote_if_better(uri, NAME, "1", 0.90, 0.0)["decision"] == "promoted"
    assert promote_if_better(uri, NAME, "2", 0.93, 0.01)["decision"] == "promoted"
    assert promote_if_better(uri, NAME, "3", 0.91, 0.0)["decision"] == "kept_champion"
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
