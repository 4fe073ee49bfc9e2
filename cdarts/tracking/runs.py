"""MLflow runs: a parent run per pipeline run, a nested run per stage, a tracker that never
stops training, and the tags that tie a run to its code, image, config and KFP run."""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse, urlunparse

from cdarts.errors import TrackingError

T = TypeVar("T")
MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value


def redact_uri(uri: str) -> str:
    """The URI without any user:password part (safe to print)."""
    parsed = urlparse(uri)
    if parsed.password is None and parsed.username is None:
        return uri
    host = parsed.hostname or ""
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    return urlunparse(parsed._replace(netloc=netloc))


def resolve_tracking_uri(configured: str | None) -> str:
    """The configured URI, else ``$MLFLOW_TRACKING_URI``, else the embedded ``sqlite:`` file
    ``.cdarts/mlflow.db`` under the current directory."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    store = Path.cwd() / ".cdarts" / "mlflow.db"
    store.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store}"


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    _bound_client_retries()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _bound_client_retries() -> None:
    """MLflow's HTTP client retries a failing request for minutes by default; ours retries on
    top, so keep each attempt short unless the user chose otherwise."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


def check_tracking(uri: str) -> None:
    """Fail fast, before any training, when the tracking store cannot be used."""
    previous = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "1"  # an unreachable server answers in seconds
    try:
        _client(uri).search_experiments(max_results=1)
    except Exception as error:  # connection, auth and schema errors all mean "unusable"
        raise TrackingError(f"MLflow at {redact_uri(uri)} is not usable ({type(error).__name__})") from None
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = previous


def _artifact_location(uri: str) -> str | None:
    """For the embedded ``sqlite:`` store, artifacts go next to the database file (MLflow would
    otherwise write ``./mlruns`` wherever the process happens to run)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return None


def _experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=_artifact_location(client.tracking_uri)))
    except Exception:  # created concurrently by another task
        return str(client.get_experiment_by_name(name).experiment_id)


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{name}.")
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


class MlflowTracker:
    """Logs into one MLflow run; every call is retried and never raises into training."""

    def __init__(self, uri: str, run_id: str, attempts: int = 3, backoff_seconds: float = 1.0) -> None:
        self.uri = uri
        self.run_id = run_id
        self.client = _client(uri)
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds

    def _retry(self, what: str, call: Callable[[], T]) -> T | None:
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except Exception as error:  # a tracking hiccup must not stop a long training run
                if attempt == self.attempts:
                    print(f"cdarts: warning: MLflow {what} failed: {type(error).__name__}", file=sys.stderr)
                    return None
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if math.isfinite(v)]
        self._retry("log_metrics", lambda: self.client.log_batch(self.run_id, metrics=batch))

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = [Param(k, v) for k, v in _flatten(params).items()]
        for start in range(0, len(flat), 100):  # the REST API takes at most 100 params per batch
            self._log_param_batch(flat[start : start + 100])

    def _log_param_batch(self, batch: list[Any]) -> None:
        self._retry("log_params", lambda: self.client.log_batch(self.run_id, params=batch))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self._retry("set_tags", lambda: self.client.log_batch(self.run_id, tags=batch))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        def upload() -> None:
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path)
            else:
                self.client.log_artifact(self.run_id, str(path), artifact_path)

        self._retry(f"log_artifact {path.name}", upload)

    def log_dataset(self, name: str, digest: str, source: str, context: str) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        # MLflow keeps at most 36 characters of a dataset digest; the full one is a run tag.
        short = digest.removeprefix("sha256:")[:36]
        dataset = Dataset(
            name=name, digest=short, source_type="s3" if source.startswith("s3://") else "local", source=source
        )
        inputs = [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])]
        self._retry("log_inputs", lambda: self.client.log_inputs(self.run_id, datasets=inputs))


def git_commit() -> str:
    """``$CDARTS_GIT_COMMIT`` (set in images), else the checkout's HEAD, else ``unknown``."""
    if commit := os.environ.get("CDARTS_GIT_COMMIT"):
        return commit
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent
        )
        if done.returncode == 0:
            return done.stdout.strip()
    return "unknown"


def lineage_tags(config_digest: str, kfp_run_id: str = "", kfp_task: str = "") -> dict[str, str]:
    """Tags on every run: config digest, git commit, image, KFP run and task."""
    tags = {
        "cdarts.config_digest": config_digest,
        "mlflow.source.git.commit": git_commit(),
        "cdarts.image": os.environ.get("CDARTS_IMAGE", "local"),
    }
    if kfp_run_id:
        tags["kfp.run_id"] = kfp_run_id
    if kfp_task:
        tags["kfp.task"] = kfp_task
    return tags


def start_parent_run(uri: str, experiment: str, name: str, tags: Mapping[str, str]) -> str:
    """Create the parent run of a pipeline run; returns its id."""
    check_tracking(uri)
    client = _client(uri)
    run = client.create_run(_experiment_id(client, experiment), run_name=name, tags=dict(tags))
    return str(run.info.run_id)


def end_run(uri: str, run_id: str, succeeded: bool) -> None:
    _client(uri).set_terminated(run_id, "FINISHED" if succeeded else "FAILED")


@contextlib.contextmanager
def stage_run(
    stage: str, uri: str, experiment: str, parent_run_id: str | None, tags: Mapping[str, str]
) -> Iterator[MlflowTracker]:
    """The MLflow run of one stage: KFP's injected run, else a run nested under the parent."""
    check_tracking(uri)
    client = _client(uri)
    injected = os.environ.get("MLFLOW_RUN_ID")
    if injected:
        run_id, created = injected, False
    else:
        run_tags = {**tags, "cdarts.stage": stage}
        if parent_run_id:
            run_tags["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(_experiment_id(client, experiment), run_name=stage, tags=run_tags)
        run_id, created = str(run.info.run_id), True
    tracker = MlflowTracker(uri, run_id)
    if not created:
        tracker.set_tags({**tags, "cdarts.stage": stage})
    try:
        yield tracker
    except BaseException:
        if created:
            client.set_terminated(run_id, "FAILED")
        raise
    if created:
        client.set_terminated(run_id, "FINISHED")
