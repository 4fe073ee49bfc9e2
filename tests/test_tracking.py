"""MLflow tracking, registry and lineage (embedded sqlite store; a real server in test_local_stack)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.config import load_config
from cdarts.errors import TrackingError
from cdarts.local_stack.ports import free_port_pairs
from cdarts.runners.register import run_register
from cdarts.tracking import lineage, redact_uri, resolve_tracking_uri, stage_run
from cdarts.tracking.registry import version_model_id
from tests.conftest import CONFIGS
from tests.holding_proxy import start_proxy

runner = CliRunner()
MARKER = "credential-marker-7f3a9c"  # planted in every credential variable; must never be recorded


def _all_recorded_text(client: MlflowClient) -> str:
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return json.dumps([{"params": r.data.params, "tags": r.data.tags} for r in runs])


SERVE_SCRIPT = """
import json, sys
import numpy as np
import mlflow
model = mlflow.pyfunc.load_model(sys.argv[1])
images, labels = np.load(sys.argv[2]), np.load(sys.argv[3])
shapes = [list(model.predict(images[:n]).shape) for n in (1, 3, 8)]
probabilities = np.concatenate([model.predict(images[i : i + 5]) for i in range(0, len(images), 5)])
print(json.dumps({
    "shapes": shapes,
    "row_sums": probabilities.sum(axis=1).tolist(),
    "top1": float((probabilities.argmax(axis=1) == labels).mean()),
    "first4": probabilities[:4].tolist(),
    "metadata": model.metadata.metadata["cdarts_serving"],
    "input_schema": model.metadata.get_input_schema().to_dict(),
}))
"""


def _predict_in_fresh_process(model_uri: str, dataset: Path, tracking_uri: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SERVE_SCRIPT,
            model_uri,
            str(dataset / "test_images.npy"),
            str(dataset / "test_labels.npy"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _serve_and_request(model_uri: str, tracking_uri: str, images: np.ndarray, workdir: Path) -> list[list[float]]:
    """``mlflow models serve`` on 127.0.0.1 and one batch request over REST."""
    (port,) = free_port_pairs(1, start=29100, stop=29900)
    log = (workdir / "serve.log").open("wb")
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"),
            *("-h", "127.0.0.1", "-p", str(port), "-w", "1"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # The scoring server runs `uvicorn` from PATH: the environment's bin, as when activated.
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": tracking_uri,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response,
            ):
                if response.status == 200:
                    break
            assert server.poll() is None, (workdir / "serve.log").read_text()[-2000:]
            time.sleep(0.5)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": images.tolist()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions: list[list[float]] = json.loads(response.read())["predictions"]
        return predictions
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.slow
def test_tracked_pipeline_registers_serves_promotes_and_traces_lineage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded store lives in ./.cdarts
    for name in ("AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD", "AWS_ACCESS_KEY_ID"):
        monkeypatch.setenv(name, MARKER)
    for name in ("MLFLOW_TRACKING_URI", "CDARTS_MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
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
    name = "cdarts-synthetic-darts"  # derived from the dataset and the search space
    assert model["name"] == name and model["version"] == "1" and model["decision"] == "promoted"
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
    by_stage = {r.info.run_name: r for r in children}
    search = by_stage["search"]
    assert search.data.params["search.arch_lr"] == "0.0003"  # the resolved config, flattened
    assert client.get_metric_history(search.info.run_id, "search/loss_cls_epoch")
    assert search.inputs.dataset_inputs[0].dataset.digest == summary["dataset_digest"].removeprefix("sha256:")[:36]
    artifacts = {a.path for a in client.list_artifacts(search.info.run_id)}
    assert {"config.yaml", "genotype.json", "alphas.pt", "genotypes"} <= artifacts
    assert all(r.data.tags["cdarts.config_digest"] == parent.data.tags["cdarts.config_digest"] for r in children)

    # The retrain run logged the model; the version points at it; evaluate's metrics are the model's.
    version = client.get_model_version(name, "1")
    assert version.run_id == by_stage["retrain"].info.run_id
    logged = client.get_logged_model(version_model_id(version))
    assert logged.source_run_id == by_stage["retrain"].info.run_id
    model_metrics = {(m.key, m.run_id, m.dataset_digest) for m in logged.metrics}
    short = summary["dataset_digest"].removeprefix("sha256:")[:36]
    assert ("evaluate/top1", by_stage["evaluate"].info.run_id, short) in model_metrics
    assert ("retrain/final_test_top1", by_stage["retrain"].info.run_id, short) in model_metrics
    assert not client.search_logged_models(
        [parent.info.experiment_id], filter_string=(f"source_run_id = '{by_stage['register'].info.run_id}'")
    )  # register logs no model of its own

    # The champion serves raw test images, in a fresh process, at any batch size, with the
    # evaluate stage's accuracy; and over REST from `mlflow models serve`.
    dataset = Path(summary["artifacts"]["data-prep/dataset"])
    served = _predict_in_fresh_process(f"models:/{name}@champion", dataset, uri)
    assert served["shapes"] == [[1, 4], [3, 4], [8, 4]]
    assert served["row_sums"] == pytest.approx([1.0] * len(served["row_sums"]), abs=1e-5)
    assert served["top1"] == pytest.approx(summary["top1"])
    assert served["metadata"]["classes"] == ["class_0", "class_1", "class_2", "class_3"]
    assert served["metadata"]["dataset_digest"] == summary["dataset_digest"]
    assert len(served["metadata"]["mean"]) == 3 and len(served["metadata"]["std"]) == 3
    assert served["input_schema"][0]["tensor-spec"] == {"dtype": "uint8", "shape": [-1, 8, 8, 3]}
    images = np.load(dataset / "test_images.npy")[:4]
    over_rest = _serve_and_request(f"models:/{name}@champion", uri, images, tmp_path)
    assert np.allclose(over_rest, served["first4"], atol=1e-6)

    located = runner.invoke(app, ["registry", "serving-uri", f"{name}@champion"])
    assert located.exit_code == 0 and located.stdout.strip() == logged.artifact_location

    # The chain from the champion back to the data.
    traced = runner.invoke(app, ["lineage", f"{name}@champion", "--json"])
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
            config, next(artifacts_root.glob("*/retrain/model")), worse, uri, tmp_path / "reg", tracker
        )
    assert decision["decision"] == "kept_champion" and decision["version"] == "2"
    assert decision["champion_top1"] == pytest.approx(metrics["top1"])
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "2"
    tags = client.get_model_version(name, "2").tags
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


@pytest.mark.slow
def test_a_slow_server_never_stalls_a_training_step(mlflow_server: str) -> None:
    """The server behind a proxy that holds every log-batch request until released: logging a
    step's metrics must return while the request is still held (a synchronous client would wait
    for the release, which comes only after it returned)."""
    proxy = start_proxy(mlflow_server, "/runs/log-batch")
    try:
        with stage_run("search", proxy.url, "cdarts", None, {}) as tracker:
            logging = threading.Thread(target=tracker.log_metrics, args=({"search/loss_cls": 1.5}, 3))
            logging.start()
            logging.join(timeout=20)
            assert not logging.is_alive(), "log_metrics waited for the server"
            deadline = time.monotonic() + 20
            while proxy.matched == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert proxy.matched >= 1  # the batch did leave and is held at the server
            proxy.release.set()
            run_id = tracker.run_id
    finally:
        proxy.stop()
    # The stage waited for its in-flight logging before it ended: the metric arrived.
    history = MlflowClient(tracking_uri=mlflow_server).get_metric_history(run_id, "search/loss_cls")
    assert [(m.step, m.value) for m in history] == [(3, 1.5)]


@pytest.mark.slow
def test_failing_tracking_warns_once_per_run_and_fails_the_register_stage(
    mlflow_server: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    proxy = start_proxy(mlflow_server, "/runs/log-batch", refuse_with=503)  # the server refuses writes
    try:
        with stage_run("search", proxy.url, "cdarts", None, {}) as tracker:
            for step in range(5):
                tracker.log_metrics({"search/loss_cls": 1.0}, step)  # training goes on
        err = capsys.readouterr().err
        assert err.count("cdarts: warning: MLflow log_metrics failed") == 1
        assert "5 of 5 MLflow logging calls" in err
        assert MlflowClient(tracking_uri=mlflow_server).get_run(tracker.run_id).info.status == "FINISHED"

        with (
            pytest.raises(TrackingError, match="1 MLflow call"),
            stage_run("register", proxy.url, "cdarts", None, {}, strict=True) as strict,
        ):
            strict.set_tags({"cdarts.promotion": "promoted"})
        assert MlflowClient(tracking_uri=mlflow_server).get_run(strict.run_id).info.status == "FAILED"
    finally:
        proxy.stop()


def test_a_kfp_task_without_a_tracking_server_refuses_before_any_work(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MLFLOW_TRACKING_URI", "CDARTS_MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KFP_POD_NAME", "cdarts-search-abc-123")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "s"
    result = runner.invoke(
        app,
        [
            *("stage", "search", "-c", str(CONFIGS / "tiny.yaml"), "-d", str(tiny_dataset), "-o", str(out)),
            *("--set", "tracking.enabled=true", "--no-progress"),
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "CDARTS_MLFLOW_TRACKING_URI" in result.stderr
    assert not out.exists() and not (tmp_path / ".cdarts").exists()  # no work, no throwaway store


def test_kfp_injected_tracking_is_never_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDARTS_MLFLOW_TRACKING_URI", "http://ours.example:5000")
    assert resolve_tracking_uri(None) == "http://ours.example:5000"
    assert resolve_tracking_uri("http://configured.example:5000") == "http://configured.example:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://kfp-plugin.example:5000")
    monkeypatch.setenv("MLFLOW_RUN_ID", "0123456789abcdef")
    assert resolve_tracking_uri("http://configured.example:5000") == "http://kfp-plugin.example:5000"


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
        lineage(uri, "missing/3")


def test_a_run_injected_by_kubeflow_is_used_and_left_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KFP 2.17's MLflow plugin creates the task's run and passes MLFLOW_RUN_ID."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    injected = client.create_run(client.create_experiment("kfp")).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", injected)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with stage_run("retrain", uri, "cdarts", "ignored-parent", {"kfp.run_id": "abc"}) as tracker:
        assert tracker.run_id == injected
        tracker.log_metrics({"retrain/test_top1": 0.5}, step=1)
    run = client.get_run(injected)
    assert run.info.status == "RUNNING"  # KFP, not the stage, ends the run
    assert run.data.tags["cdarts.stage"] == "retrain" and run.data.tags["kfp.run_id"] == "abc"
    assert run.data.metrics["retrain/test_top1"] == 0.5


def test_lineage_groups_the_stage_runs_of_a_kfp_run_without_a_parent(tmp_path: Path) -> None:
    """`kfp run create` without the MLflow plugin: no parent run, only the kfp.run_id tag."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("cdarts", artifact_location=(tmp_path / "artifacts").as_uri())
    runs = {}
    for kfp_run in ("kfp-run-a", "kfp-run-b"):  # two pipeline runs side by side
        for stage in ("data_prep", "search", "derive_genotype", "retrain", "evaluate", "register"):
            tags = {"kfp.run_id": kfp_run, "cdarts.stage": stage, "cdarts.genotype": f"genotype-{kfp_run}"}
            runs[kfp_run, stage] = client.create_run(experiment, run_name=stage, tags=tags).info.run_id
    client.create_registered_model("cdarts-x-darts")
    version = client.create_model_version(
        "cdarts-x-darts",
        source=str(tmp_path / "model"),
        run_id=runs["kfp-run-b", "retrain"],
        tags={"dataset_digest": "d"},
    )
    chain = {step["kind"]: step for step in lineage(uri, f"cdarts-x-darts/{version.version}")}
    for kind, stage in [("evaluate", "evaluate"), ("retrain", "retrain"), ("genotype", "derive_genotype")]:
        assert chain[kind]["run_id"] == runs["kfp-run-b", stage]
    assert chain["search"]["run_id"] == runs["kfp-run-b", "search"]
    assert chain["dataset"]["run_id"] == runs["kfp-run-b", "data_prep"] and chain["dataset"]["digest"] == "d"
    assert chain["genotype"]["genotype"] == "genotype-kfp-run-b"


@pytest.mark.slow
def test_a_retried_task_logging_into_the_same_run_leaves_no_duplicate_metric_steps(
    mlflow_server: str, tiny_dataset: Path, tmp_path: Path
) -> None:
    """A retried KFP task logs into the same injected run: the killed attempt's steps past its
    last checkpoint are replayed, and MLflow (which cannot delete values) must not get them twice."""
    import shutil

    from cdarts.runners.search import CHECKPOINT_NAME, run_search
    from cdarts.tracking.runs import MlflowTracker

    config = load_config(str(CONFIGS / "tiny.yaml"))
    client = MlflowClient(tracking_uri=mlflow_server)
    run_id = client.create_run(client.create_experiment("retried-task")).info.run_id
    out = tmp_path / "search"
    killed = MlflowTracker(mlflow_server, run_id)
    run_search(config, tiny_dataset, out, tracker=killed, max_iterations=1)
    shutil.copy(out / CHECKPOINT_NAME, tmp_path / "first.pt")
    run_search(config, tiny_dataset, out, tracker=killed, max_iterations=1)  # logged, then "killed"
    assert killed.close() == 0
    shutil.copy(tmp_path / "first.pt", out / CHECKPOINT_NAME)  # its second checkpoint never landed
    logged_before = {key: len(client.get_metric_history(run_id, key)) for key in client.get_run(run_id).data.metrics}

    retried = MlflowTracker(mlflow_server, run_id)
    run_search(config, tiny_dataset, out, tracker=retried)
    assert retried.close() == 0
    assert (out / "genotype.json").is_file()
    keys = client.get_run(run_id).data.metrics
    assert len(keys) > 4
    grew = 0
    for key in keys:
        steps = [metric.step for metric in client.get_metric_history(run_id, key)]
        assert len(steps) == len(set(steps)), f"{key} logged twice at a step: {sorted(steps)}"
        grew += len(steps) > logged_before.get(key, 0)
    assert grew > 0  # the third iteration's steps did arrive
