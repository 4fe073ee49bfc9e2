"""MLflow tracking, registry and lineage (embedded sqlite store; a real server in test_local_stack)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.config import load_config
from cdarts.errors import TrackingError
from cdarts.runners.register import run_register
from cdarts.tracking import redact_uri, resolve_tracking_uri, stage_run
from tests.conftest import CONFIGS

runner = CliRunner()
MARKER = "credential-marker-7f3a9c"  # planted in every credential variable; must never be recorded


def _all_recorded_text(client: MlflowClient) -> str:
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return json.dumps([{"params": r.data.params, "tags": r.data.tags} for r in runs])


@pytest.mark.slow
def test_tracked_pipeline_registers_promotes_and_traces_lineage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded store lives in ./.cdarts
    for name in ("AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD", "AWS_ACCESS_KEY_ID"):
        monkeypatch.setenv(name, MARKER)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = runner.invoke(
        app,
        [
            "run",
            "--config",
            str(CONFIGS / "tiny.yaml"),
            "--set",
            "tracking.enabled=true",
            "--runs-root",
            str(tmp_path / "runs"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    summary = json.loads((run_dir / "summary.json").read_text())
    model = summary["registered_model"]
    assert model["name"] == "cdarts-model" and model["version"] == "1" and model["decision"] == "promoted"
    assert model["aliases"] == ["challenger", "champion"]
    uri = resolve_tracking_uri(None)
    assert summary["tracking_uri"] == uri and uri.startswith("sqlite:///")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    # One parent run, one nested run per stage.
    parent = client.get_run(summary["mlflow_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(r.info.run_name for r in children) == sorted(
        ["data_prep", "search", "derive_genotype", "retrain", "evaluate", "register"]
    )
    search = next(r for r in children if r.info.run_name == "search")
    assert search.data.params["search.arch_lr"] == "0.0003"  # the resolved config, flattened
    assert client.get_metric_history(search.info.run_id, "search/loss_cls_epoch")
    assert search.inputs.dataset_inputs[0].dataset.digest == summary["dataset_digest"].removeprefix("sha256:")[:36]
    artifacts = {a.path for a in client.list_artifacts(search.info.run_id)}
    assert {"config.yaml", "genotype.json", "alphas.pt", "genotypes"} <= artifacts
    assert all(r.data.tags["cdarts.config_digest"] == parent.data.tags["cdarts.config_digest"] for r in children)

    # The chain from the champion back to the data.
    traced = runner.invoke(app, ["lineage", "cdarts-model@champion", "--json"])
    assert traced.exit_code == 0, traced.output
    chain = {step["kind"]: step for step in json.loads(traced.stdout)}
    assert list(chain) == ["model_version", "evaluate", "retrain", "genotype", "search", "dataset"]
    assert all(step["run_id"] for step in chain.values())
    assert chain["genotype"]["genotype"] == summary["genotype"]
    assert chain["dataset"]["digest"] == summary["dataset_digest"]
    assert chain["evaluate"]["top1"] == pytest.approx(summary["top1"])

    # A worse challenger is registered but does not take the champion alias.
    artifacts_root = run_dir / "artifacts"
    evaluation = next(artifacts_root.glob("*/evaluate/evaluation"))
    worse = tmp_path / "worse-evaluation"
    worse.mkdir()
    metrics = json.loads((evaluation / "metrics.json").read_text())
    (worse / "metrics.json").write_text(json.dumps({**metrics, "top1": metrics["top1"] - 0.1}))
    config = load_config(str(CONFIGS / "tiny.yaml"), ["tracking.enabled=true"])
    with stage_run("register", uri, "cdarts", parent.info.run_id, {}) as tracker:
        decision = run_register(
            config, next(artifacts_root.glob("*/retrain/model")), worse, uri, tracker.run_id, tmp_path / "reg", tracker
        )
    assert decision["decision"] == "kept_champion" and decision["version"] == "2"
    assert decision["champion_top1"] == pytest.approx(metrics["top1"])
    assert str(client.get_model_version_by_alias("cdarts-model", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("cdarts-model", "challenger").version) == "2"
    tags = client.get_model_version("cdarts-model", "2").tags
    assert tags["promotion.decision"] == "kept_champion" and tags["promotion.champion_version"] == "1"

    # No credential value anywhere we record things.
    assert MARKER not in _all_recorded_text(client)
    assert MARKER not in (run_dir / "pipeline.log").read_text()
    assert MARKER not in (run_dir / "summary.json").read_text()


def test_unusable_tracking_fails_fast_before_any_training(tiny_dataset: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "stage",
            "search",
            "-c",
            str(CONFIGS / "tiny.yaml"),
            "-d",
            str(tiny_dataset),
            "-o",
            str(tmp_path / "s"),
            "--set",
            "tracking.enabled=true",
            "--set",
            "tracking.uri=http://user:hunter2@127.0.0.1:9",
            "--no-progress",
        ],
    )
    assert result.exit_code == 2
    assert "MLflow at http://127.0.0.1:9 is not usable" in result.stderr and "hunter2" not in result.stderr
    assert not (tmp_path / "s" / "metrics.jsonl").exists()


def test_redact_uri_drops_credentials() -> None:
    assert redact_uri("https://alice:secret@mlflow.example.com:5000/path") == "https://mlflow.example.com:5000/path"
    assert redact_uri("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_tracking_hiccups_never_stop_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with stage_run("search", uri, "cdarts", None, {}) as tracker:
        tracker.backoff_seconds = 0.01
        real_log_batch = tracker.client.log_batch
        failures = iter([ConnectionError("blip"), TimeoutError("slow")])

        def flaky(*args: Any, **kwargs: Any) -> Any:
            error = next(failures, None)
            if error is not None:  # a fault a healthy store cannot be made to produce on demand
                raise error
            return real_log_batch(*args, **kwargs)

        tracker.client.log_batch = flaky
        tracker.log_metrics({"search/loss_cls": 1.5}, step=3)
        history = MlflowClient(tracking_uri=uri).get_metric_history(tracker.run_id, "search/loss_cls")
        assert [(m.step, m.value) for m in history] == [(3, 1.5)]

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("down")

        tracker.client.log_batch = broken
        tracker.log_metrics({"search/loss_cls": 1.0}, step=4)  # must not raise
    assert "MLflow log_metrics failed: ConnectionError" in capsys.readouterr().err


def test_failed_stage_marks_its_run_failed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(RuntimeError), stage_run("retrain", uri, "cdarts", None, {}) as tracker:
        run_id = tracker.run_id
        raise RuntimeError("diverged")
    assert MlflowClient(tracking_uri=uri).get_run(run_id).info.status == "FAILED"


def test_lineage_of_an_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(app, ["lineage", "missing@champion", "--tracking-uri", uri])
    assert result.exit_code == 2 and "no model version 'missing@champion'" in result.stderr
    with pytest.raises(TrackingError):
        from cdarts.tracking import lineage

        lineage(uri, "missing/3")


def test_a_run_injected_by_kubeflow_is_used_and_left_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KFP 2.17's MLflow plugin creates the task's run and passes MLFLOW_RUN_ID."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    injected = client.create_run(client.create_experiment("kfp")).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", injected)
    with stage_run("retrain", uri, "cdarts", "ignored-parent", {"kfp.run_id": "abc"}) as tracker:
        assert tracker.run_id == injected
        tracker.log_metrics({"retrain/test_top1": 0.5}, step=1)
    run = client.get_run(injected)
    assert run.info.status == "RUNNING"  # KFP, not the stage, ends the run
    assert run.data.tags["cdarts.stage"] == "retrain" and run.data.tags["kfp.run_id"] == "abc"
    assert run.data.metrics["retrain/test_top1"] == 0.5
