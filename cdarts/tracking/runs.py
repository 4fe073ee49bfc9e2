"""MLflow runs: a parent run per pipeline run, a nested run per stage, a tracker that never
stops training, and the tags that tie a run to its code, image, config and KFP run."""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse, urlunparse

from cdarts.errors import TrackingError
from cdarts.tracking.protocol import LoggedModelRef

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


CDARTS_TRACKING_URI_ENV = "CDARTS_MLFLOW_TRACKING_URI"
"""Our own key for the MLflow endpoint (the cdarts-settings ConfigMap), so that the
``MLFLOW_TRACKING_URI`` Kubeflow's MLflow plugin injects is never overridden."""


def kfp_injected_run() -> tuple[str, str] | None:
    """(tracking URI, run id) when Kubeflow Pipelines' MLflow plugin injected a run for this task."""
    run_id, uri = os.environ.get("MLFLOW_RUN_ID"), os.environ.get("MLFLOW_TRACKING_URI")
    return (uri, run_id) if run_id and uri else None


def in_kfp_pod() -> bool:
    """True inside a task pod of a Kubeflow Pipelines cluster (the launcher sets KFP_POD_NAME)."""
    return bool(os.environ.get("KFP_POD_NAME"))


def resolve_tracking_uri(configured: str | None) -> str:
    """Where this process tracks.

    KFP's injected run and URI come first (never overridden), then the configured URI, then
    ``$CDARTS_MLFLOW_TRACKING_URI``, then ``$MLFLOW_TRACKING_URI``; outside a cluster, last, the
    embedded ``sqlite:`` file ``.cdarts/mlflow.db`` under the current directory. Inside a KFP
    pod there is no such fallback: a store in the pod would vanish with it, so tracking with no
    server configured is refused before any work.
    """
    injected = kfp_injected_run()
    if injected is not None:
        return injected[0]
    uri = configured or os.environ.get(CDARTS_TRACKING_URI_ENV) or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    if in_kfp_pod():
        raise TrackingError(
            f"tracking is on but no MLflow server is configured for this Kubeflow task: set "
            f"{CDARTS_TRACKING_URI_ENV} (key of the cdarts-settings ConfigMap) or tracking.uri, "
            "or turn tracking off with tracking.enabled=false"
        )
    store = Path.cwd() / ".cdarts" / "mlflow.db"
    store.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store}"


_READY_SQLITE_STORES: set[str] = set()


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    _bound_client_retries()
    if uri.startswith("sqlite:///") and uri not in _READY_SQLITE_STORES:
        with _sqlite_schema_lock(Path(uri.removeprefix("sqlite:///"))):
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # creates the tracking tables
            client.search_registered_models(max_results=1)  # and the registry's
        _READY_SQLITE_STORES.add(uri)
        return client
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def _sqlite_schema_lock(database: Path) -> Iterator[None]:
    """MLflow creates and migrates a ``sqlite:`` store's schema on its first use, and two
    processes doing that at once (two ``cdarts run`` on a fresh embedded store) both fail and
    leave it half-migrated. The first use of each store (tracking and registry tables) therefore
    happens under an exclusive lock on a file beside the database; whoever comes second waits a
    moment and finds the schema complete. The lock is released on exit, even on a kill."""
    if database.name in ("", ":memory:"):
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with database.with_name(f"{database.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _bound_client_retries() -> None:
    """MLflow's HTTP client retries a failing request for minutes by default; ours retries on
    top, so keep each attempt short unless the user chose otherwise."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    # Direct s3:// artifact stores go through boto3, whose standard retries add up on a dead store.
    os.environ.setdefault("AWS_MAX_ATTEMPTS", "2")


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
    """Logs into one MLflow run and never raises into training.

    Metrics, parameters and tags go through MLflow's asynchronous logging, so a slow or
    unreachable server never stalls a training step; artifacts are uploaded synchronously with
    retries. Failures print one warning per run and are counted; :meth:`close` waits for what is
    still in flight and returns the count. Artifact uploads retry for at most
    ``$CDARTS_S3_RETRY_SECONDS`` from the start of the run's first failing one, all uploads
    together: once that budget is spent the artifact store counts as down and later uploads fail
    at once (counted in ``artifact_failures``), so a dead store costs a stage about one budget,
    not one retry series per artifact. A successful upload resets the budget.
    """

    def __init__(self, uri: str, run_id: str, attempts: int = 3, backoff_seconds: float = 1.0) -> None:
        self.uri = uri
        self.run_id = run_id
        self.client = _client(uri)
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.calls = 0
        self.failures = 0
        self.artifact_failures = 0
        self._artifact_deadline: float | None = None  # set by the first failed upload
        self._replay_after: int | None = None  # set on resume: steps past it may be logged already
        self._logged_steps: dict[str, set[int]] = {}
        self._warned = False
        self._closed = False
        self._lock = threading.Lock()
        self._in_flight: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._watcher = threading.Thread(target=self._watch_in_flight, name="mlflow-async-watch", daemon=True)
        self._watcher.start()

    def _failed(self, what: str, error: BaseException) -> None:
        with self._lock:
            self.failures += 1
            first, self._warned = not self._warned, True
        if first:
            print(
                f"cdarts: warning: MLflow {what} failed for run {self.run_id} ({type(error).__name__}); "
                "later failures of this run are counted and reported when it ends",
                file=sys.stderr,
            )

    def _watch_in_flight(self) -> None:
        while (item := self._in_flight.get()) is not None:
            what, operations = item
            try:
                operations.wait()
            except Exception as error:  # the server refused or never answered this batch
                self._failed(what, error)

    def _submit(self, what: str, call: Callable[[], Any]) -> None:
        """Hand one batch to MLflow's async logging queue; its outcome is checked off-thread."""
        self.calls += 1
        try:
            operations = call()
        except Exception as error:  # rejected before it was even queued
            self._failed(what, error)
            return
        if operations is not None:
            self._in_flight.put((what, operations))

    def _retry(self, what: str, call: Callable[[], T], deadline: Callable[[], float | None] = lambda: None) -> T | None:
        """``call`` with retries; none is started at or after ``deadline()`` (monotonic seconds)."""
        self.calls += 1
        for attempt in range(1, self.attempts + 1):
            try:
                return call()
            except Exception as error:  # a tracking hiccup must not stop a long training run
                pause = self.backoff_seconds * 2 ** (attempt - 1)
                until = deadline()
                if attempt == self.attempts or (until is not None and time.monotonic() + pause >= until):
                    self._failed(what, error)
                    return None
                time.sleep(pause)
        return None

    def close(self) -> int:
        """Wait for in-flight logging; the number of calls of this run that failed."""
        if not self._closed:
            self._closed = True
            self._in_flight.put(None)
            self._watcher.join()
            if self.failures:
                print(
                    f"cdarts: warning: {self.failures} of {self.calls} MLflow logging calls of run "
                    f"{self.run_id} failed",
                    file=sys.stderr,
                )
        return self.failures

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if math.isfinite(v) and not self._already_logged(k, step)
        ]
        if not batch:
            return
        self._submit("log_metrics", lambda: self.client.log_batch(self.run_id, metrics=batch, synchronous=False))

    def resume_after(self, step: int) -> None:
        """MLflow cannot delete metric values, so a replayed step is not logged again where the
        killed attempt (the same run, e.g. a retried KFP task) logged it already."""
        self._replay_after = step
        self._logged_steps.clear()

    def _already_logged(self, key: str, step: int) -> bool:
        if self._replay_after is None:  # (per-cycle metrics use cycle indices: any step is checked)
            return False
        if key not in self._logged_steps:  # one history read per metric, on its first replayed step
            history = self._retry("get_metric_history", lambda: self.client.get_metric_history(self.run_id, key))
            self._logged_steps[key] = {int(m.step) for m in history or ()}
        return step in self._logged_steps[key]

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = [Param(k, v) for k, v in _flatten(params).items()]
        for start in range(0, len(flat), 100):  # the REST API takes at most 100 params per batch
            self._log_param_batch(flat[start : start + 100])

    def _log_param_batch(self, batch: list[Any]) -> None:
        self._submit("log_params", lambda: self.client.log_batch(self.run_id, params=batch, synchronous=False))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        self._submit("set_tags", lambda: self.client.log_batch(self.run_id, tags=batch, synchronous=False))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        started = time.monotonic()

        def upload() -> bool:
            try:
                if path.is_dir():
                    self.client.log_artifacts(self.run_id, str(path), artifact_path)
                else:
                    self.client.log_artifact(self.run_id, str(path), artifact_path)
            except Exception:
                # The budget runs from the start of the run's first failing upload: one attempt
                # against a hung store can itself take minutes (MLflow's and boto3's own retries).
                if self._artifact_deadline is None:
                    from cdarts.storage import s3_retry_seconds

                    self._artifact_deadline = started + s3_retry_seconds()
                raise
            self._artifact_deadline = None  # the store answers again: a later outage gets a fresh budget
            return True

        what = f"log_artifact {path.name}"
        if self._artifact_deadline is not None and time.monotonic() >= self._artifact_deadline:
            self.calls += 1  # the artifact store is down: spend no more time on it
            self.artifact_failures += 1
            self._failed(what, TimeoutError("artifact store retry budget spent"))
            return
        if self._retry(what, upload, lambda: self._artifact_deadline) is None:
            self.artifact_failures += 1

    def log_dataset(self, name: str, digest: str, source: str, context: str) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(
            name=name,
            digest=short_digest(digest),
            source_type="s3" if source.startswith("s3://") else "local",
            source=source,
        )
        inputs = [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])]
        self._retry("log_inputs", lambda: self.client.log_inputs(self.run_id, datasets=inputs))

    def log_served_model(
        self, model_file: Path, contract: Mapping[str, Any], input_example: Any, tags: Mapping[str, str]
    ) -> LoggedModelRef:
        """Unlike the other calls this one raises: a model that was not logged cannot be
        registered, so the stage must fail (and be retried) rather than report success."""
        from cdarts.tracking.models import log_served_model

        model_id = log_served_model(self.uri, self.run_id, model_file, contract, input_example, tags)
        return LoggedModelRef(model_id, self.run_id)

    def log_model_metrics(
        self, model_id: str, metrics: Mapping[str, float], dataset_name: str, dataset_digest: str
    ) -> None:
        from mlflow.entities import LoggedModelInput, Metric

        now, digest = int(time.time() * 1000), short_digest(dataset_digest)
        batch = [
            Metric(k, float(v), now, 0, model_id=model_id, dataset_name=dataset_name, dataset_digest=digest)
            for k, v in metrics.items()
            if math.isfinite(v)
        ]
        self._submit("log_metrics", lambda: self.client.log_batch(self.run_id, metrics=batch, synchronous=False))
        inputs = [LoggedModelInput(model_id)]
        self._retry("log_inputs", lambda: self.client.log_inputs(self.run_id, models=inputs))


def short_digest(digest: str) -> str:
    """MLflow keeps at most 36 characters of a dataset digest; the full one is a run tag."""
    return digest.removeprefix("sha256:")[:36]


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


def tag_run(uri: str, run_id: str, tags: Mapping[str, str]) -> None:
    client = _client(uri)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def end_run(uri: str, run_id: str, succeeded: bool) -> None:
    _client(uri).set_terminated(run_id, "FINISHED" if succeeded else "FAILED")


@contextlib.contextmanager
def stage_run(
    stage: str,
    uri: str,
    experiment: str,
    parent_run_id: str | None,
    tags: Mapping[str, str],
    *,
    strict: bool = False,
) -> Iterator[MlflowTracker]:
    """The MLflow run of one stage: KFP's injected run, else a run nested under the parent.

    On the way out the tracker's in-flight logging is awaited. A failed artifact upload fails
    every stage at its end: the artifacts (manifest, genotype and alphas, model and summary,
    metrics, registration) are the record of the stage's result, and a run without them must not
    read as a success. Other failed calls (metrics, params, tags) only warn, unless ``strict``
    (the register stage), where any failure fails the stage.
    """
    check_tracking(uri)
    client = _client(uri)
    injected = kfp_injected_run()
    if injected is not None:
        run_id, created = injected[1], False
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
        tracker.close()
        if created:
            client.set_terminated(run_id, "FAILED")
        raise
    failures = tracker.close()
    if tracker.artifact_failures or (strict and failures):
        if created:
            with contextlib.suppress(Exception):  # the server may be as unreachable as its store
                client.set_terminated(run_id, "FAILED")
        if tracker.artifact_failures:
            raise TrackingError(
                f"{tracker.artifact_failures} MLflow artifact upload(s) of the {stage} stage failed; "
                "its record is incomplete (is the artifact store reachable?), rerun the stage"
            )
        raise TrackingError(f"{failures} MLflow call(s) of the {stage} stage failed; its record is incomplete")
    if created:
        client.set_terminated(run_id, "FINISHED")
