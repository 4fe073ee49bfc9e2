"""The whole cdarts-search pipeline against the local stack: a real SeaweedFS and a real MLflow
server, started and stopped by `cdarts services` (bound to 127.0.0.1)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.local_stack.stack import StackState, load_state
from tests.conftest import CONFIGS

runner = CliRunner()


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, StackState]]:
    state_dir = tmp_path_factory.mktemp("stack")
    started = runner.invoke(app, ["services", "up", "--state-dir", str(state_dir)])
    assert started.exit_code == 0, started.output
    state = load_state(state_dir)
    assert state is not None
    try:
        yield state_dir, state
    finally:
        stopped = runner.invoke(app, ["services", "down", "--state-dir", str(state_dir)])
        assert stopped.exit_code == 0 and "stopped" in stopped.stdout


@pytest.mark.slow
def test_services_report_status_and_keep_credentials_private(local_stack: tuple[Path, StackState]) -> None:
    state_dir, state = local_stack
    mode = stat.S_IMODE((state_dir / "stack.json").stat().st_mode)
    assert mode == 0o600
    report = runner.invoke(app, ["services", "status", "--state-dir", str(state_dir)])
    assert report.exit_code == 0
    status = json.loads(report.stdout)
    assert status["running"] and status["s3_reachable"] and status["tracking_healthy"]
    assert state.s3_endpoint.startswith("http://127.0.0.1:") and state.tracking_uri.startswith("http://127.0.0.1:")
    assert state.secret_key not in report.stdout


@pytest.mark.slow
def test_search_pipeline_on_the_local_stack(
    local_stack: tuple[Path, StackState], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_dir, state = local_stack
    monkeypatch.chdir(tmp_path)
    for name in (
        "MLFLOW_TRACKING_URI",
        "CDARTS_S3_ENDPOINT",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "MLFLOW_S3_ENDPOINT_URL",
    ):
        monkeypatch.delenv(name, raising=False)  # `run --stack local` sets them for its tasks
    result = runner.invoke(
        app,
        [
            "run",
            "--config",
            str(CONFIGS / "tiny.yaml"),
            "--set",
            "tracking.enabled=true",
            "--stack",
            "local",
            "--stack-dir",
            str(state_dir),
            "--runs-root",
            str(tmp_path / "r"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "AWS_SECRET_ACCESS_KEY" not in os.environ  # the stack's credentials were set for the run only
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["tracking_uri"] == state.tracking_uri
    model = summary["registered_model"]
    assert model["version"] == "1" and model["aliases"] == ["challenger", "champion"]

    client = MlflowClient(tracking_uri=state.tracking_uri, registry_uri=state.tracking_uri)
    name = "cdarts-synthetic-darts"
    version = client.get_model_version_by_alias(name, "champion")
    assert version.tags["genotype"] == summary["genotype"]
    traced = runner.invoke(app, ["lineage", f"{name}@champion", "--tracking-uri", state.tracking_uri, "--json"])
    chain = {step["kind"]: step for step in json.loads(traced.stdout)}
    assert chain["dataset"]["digest"] == summary["dataset_digest"] and chain["search"]["run_id"]

    s3 = Minio(state.s3_endpoint.removeprefix("http://"), state.access_key, state.secret_key, secure=False)
    checkpoints = [o.object_name for o in s3.list_objects("cdarts", prefix="checkpoints/", recursive=True)]
    assert {name.rsplit("/", 1)[1] for name in checkpoints} == {"search-last.pt", "retrain-last.pt"}
    artifacts = [str(o.object_name) for o in s3.list_objects("mlflow", recursive=True)]
    assert any(name.endswith("genotype.json") for name in artifacts)  # MLflow artifacts live in S3
    assert any("/models/" in name and name.endswith("MLmodel") for name in artifacts)
    # Where a KServe storage initializer downloads the champion from: the proxied location mapped
    # onto the server's artifact bucket, holding the MLflow model.
    located = runner.invoke(
        app,
        [
            *("registry", "serving-uri", f"{name}@champion"),
            *("--tracking-uri", state.tracking_uri, "--artifacts-destination", "s3://mlflow"),
        ],
    )
    assert located.exit_code == 0, located.output
    storage_uri = located.stdout.strip()
    assert storage_uri.startswith("s3://mlflow/") and "/models/m-" in storage_uri
    prefix = storage_uri.removeprefix("s3://mlflow/")
    assert f"{prefix}/MLmodel" in artifacts and f"{prefix}/artifacts/model.pt" in artifacts
    recorded = json.dumps(
        [
            {"params": r.data.params, "tags": r.data.tags}
            for r in client.search_runs([version.run_id and client.get_run(version.run_id).info.experiment_id])
        ]
    )
    assert state.secret_key not in recorded and state.secret_key not in (run_dir / "pipeline.log").read_text()


def test_run_on_a_stack_that_is_not_running_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "run",
            "--config",
            str(CONFIGS / "tiny.yaml"),
            "--stack",
            "local",
            "--stack-dir",
            str(tmp_path / "none"),
            "--runs-root",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 2 and "the local stack is not running" in result.stderr
    bad = runner.invoke(app, ["run", "--stack", "cloud", "--runs-root", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "unknown stack 'cloud'" in bad.stderr
