"""A dead object store fails a stage fast and never reads as a success.

S3 calls retry for at most ``$CDARTS_S3_RETRY_SECONDS`` after their first failure (which also
caps how long one attempt waits for an answer); MLflow artifact uploads share one such budget per
run, and a failed upload fails the stage when its run ends. The dead stores here are real: a
stopped SeaweedFS, a closed port, and a port that accepts connections but never answers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cdarts.errors import StorageError, TrackingError
from cdarts.local_stack.seaweedfs import start_seaweedfs
from cdarts.storage import S3Settings, S3Store, s3_retry_seconds
from cdarts.tracking import stage_run
from tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY


def _settings(endpoint: str) -> S3Settings:
    return S3Settings(endpoint, secure=False, region=None, access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def hung_endpoint() -> Iterator[str]:
    """A port whose kernel completes every TCP handshake but nobody ever answers (a hung server)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # never accept()ed: requests are sent and wait for an answer forever
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def test_a_hung_store_fails_within_the_retry_budget(hung_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before the budget: 4 attempts x a 120 s read timeout, about 8 minutes to fail.
    monkeypatch.setenv("CDARTS_S3_RETRY_SECONDS", "1")
    started = time.monotonic()
    with pytest.raises(StorageError, match=rf"cannot reach s3://cdarts at {hung_endpoint} .*gave up after 2 attempt"):
        S3Store(_settings(hung_endpoint), "cdarts").check()
    assert time.monotonic() - started < 6


def test_the_budget_not_the_attempt_count_stops_retries_on_a_closed_port(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = _settings(f"127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("CDARTS_S3_RETRY_SECONDS", "0.2")  # shorter than the first backoff (0.5 s)
    with pytest.raises(StorageError, match=r"gave up after 1 attempt\(s\)"):
        S3Store(dead, "cdarts").check()
    monkeypatch.delenv("CDARTS_S3_RETRY_SECONDS")  # the default budget (60 s) lets all 4 attempts run
    assert s3_retry_seconds() == 60
    with pytest.raises(StorageError, match=r"gave up after 4 attempt\(s\)"):
        S3Store(dead, "cdarts", backoff_seconds=0.01).check()


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan", "inf", "1e9"])
def test_a_bad_retry_budget_is_refused_in_one_line(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDARTS_S3_RETRY_SECONDS", value)
    with pytest.raises(StorageError, match=r"^CDARTS_S3_RETRY_SECONDS=.* is not a number of seconds") as raised:
        S3Store(_settings("127.0.0.1:9"), "cdarts")
    assert "\n" not in str(raised.value)


def test_a_seaweedfs_stopped_mid_stage_fails_the_next_call_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_seaweedfs(tmp_path / "weed", S3_ACCESS_KEY, S3_SECRET_KEY, ["cdarts"])
    try:
        store = S3Store(_settings(server.endpoint.removeprefix("http://")), "cdarts", retry_seconds=1)
        (tmp_path / "genotype.json").write_text("{}", encoding="utf-8")
        store.upload_file(tmp_path / "genotype.json", "run/genotype.json")
        assert store.exists("run/genotype.json")
    finally:
        server.stop()
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"^reading run/genotype\.json: cannot reach s3://cdarts .*; gave up"):
        store.download_file("run/genotype.json", tmp_path / "back.json")
    assert time.monotonic() - started < 4
    assert not (tmp_path / "back.json").exists()


@pytest.fixture
def dead_artifact_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """An embedded MLflow store whose experiment keeps its artifacts in S3 at a closed port
    (boto3 uploads straight to it); yields (tracking URI, experiment name)."""
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("CDARTS_S3_RETRY_SECONDS", "2")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).create_experiment("dead-store", artifact_location="s3://cdarts/mlruns")
    return uri, "dead-store"


def test_failed_artifact_uploads_fail_the_stage_at_its_end_and_fast(
    dead_artifact_store: tuple[str, str], tmp_path: Path
) -> None:
    uri, experiment = dead_artifact_store
    files = [tmp_path / f"cycle_{i:03d}.json" for i in range(6)]
    for path in files:
        path.write_text("{}", encoding="utf-8")
    started = time.monotonic()
    with (
        pytest.raises(TrackingError, match=r"^6 MLflow artifact upload\(s\) of the search stage failed") as raised,
        stage_run("search", uri, experiment, None, {}) as tracker,
    ):
        for step, path in enumerate(files):
            tracker.log_metrics({"search/loss_cls": 1.0}, step)  # training goes on meanwhile
            tracker.log_artifact(path, "genotypes")
    elapsed = time.monotonic() - started
    assert "\n" not in str(raised.value)
    # One budget (2 s) for the whole run, not one retry series (3 attempts, 1 + 2 s apart) per file.
    assert elapsed < 10, elapsed
    run = MlflowClient(tracking_uri=uri).get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert [m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(run.info.run_id, "search/loss_cls")] == [
        0,
        1,
        2,
        3,
        4,
        5,
    ]


def test_the_budget_is_per_outage_and_spent_budget_skips_uploads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDARTS_S3_RETRY_SECONDS", "0.5")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for name in ("first.json", "second.json", "late.json"):
        (tmp_path / name).write_text("{}", encoding="utf-8")
    missing = tmp_path / "missing.json"  # an upload that fails every time
    with (
        pytest.raises(TrackingError, match=r"^4 MLflow artifact upload\(s\) of the retrain stage failed"),
        stage_run("retrain", uri, "budget", None, {}) as tracker,
    ):
        tracker.backoff_seconds = 0.01
        tracker.log_artifact(missing)  # an outage starts: the budget runs
        tracker.log_artifact(tmp_path / "first.json")  # gets through: the outage is over
        time.sleep(0.6)  # longer than the first outage's budget
        tracker.log_artifact(missing)  # a new outage, with a fresh budget
        tracker.log_artifact(tmp_path / "second.json")  # within it (not the first one's): uploaded
        tracker.log_artifact(missing)  # a third outage...
        time.sleep(0.6)  # ...that outlasts its budget
        tracker.log_artifact(tmp_path / "late.json")  # skipped at once: the store counts as down
    uploaded = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(tracker.run_id)}
    assert uploaded == {"first.json", "second.json"}
