"""Run a TrainJob through the Kubernetes API (the ``kubernetes`` client): create it, follow its
conditions and rank 0's log until it finishes, and clean up when the caller is interrupted.

Kubeflow Trainer reports the outcome as the TrainJob condition ``Complete`` or ``Failed`` (with
a reason such as ``DeadlineExceeded``). Its pods are a JobSet's: labelled with the JobSet (the
TrainJob's name), the replicated job (``node``) and the job index, and annotated with their
completion index, which is the torchrun node rank. Every API failure becomes a one-line
:class:`TrainJobError`.
"""

from __future__ import annotations

import codecs
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from cdarts.trainjob.spec import API_GROUP, API_VERSION, NODE, PLURAL, TrainJobError

JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
JOB_INDEX_LABEL = "jobset.sigs.k8s.io/job-index"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
RBAC_HINT = "grant the pipeline's service account the Role in k8s/pipeline-namespace/rbac.yaml"
LOG_DRAIN_SECONDS = 60.0  # how long a finished TrainJob's last log lines may take to arrive
TRANSIENT_LIMIT = 5  # consecutive failed status reads (API server restarts) tolerated while waiting
T = TypeVar("T")


class KubernetesApiError(TrainJobError):
    """The API server refused a call; ``status`` is its HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class _NoTrainerApiError(KubernetesApiError):
    """404 for the resource type itself: the TrainJob CRD is not installed."""


class _TransientError(KubernetesApiError):
    """A 5xx answer or a broken connection: worth another try."""


class _Terminated(BaseException):
    """SIGTERM (a KFP run being stopped), raised in the main thread so that we unwind and clean up."""


def kubernetes_api_client() -> k8s.ApiClient:
    """An API client with the pod's service account (in a cluster) or else the kubeconfig."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        try:
            k8s_config.load_kube_config(client_configuration=configuration)
        except (k8s_config.ConfigException, OSError):
            raise TrainJobError(
                "no Kubernetes credentials: not in a pod with a service account token, and no usable kubeconfig"
            ) from None
    return k8s.ApiClient(configuration)


def _status_message(error: ApiException) -> str:
    """The API server's own message (a Status object's ``message``), on one line."""
    try:
        message = str(json.loads(error.body).get("message") or "")
    except (TypeError, ValueError, AttributeError):
        message = ""
    return " ".join((message or str(error.reason or "")).split())


@dataclass(frozen=True)
class TrainJobState:
    complete: bool
    failed: bool
    reason: str
    message: str


@dataclass(frozen=True)
class PodRef:
    name: str
    uid: str
    phase: str


def _state(trainjob: dict[str, Any]) -> TrainJobState:
    """The outcome from the status conditions; ``Failed`` wins over ``Complete``."""
    true = {
        c.get("type"): c for c in (trainjob.get("status") or {}).get("conditions") or [] if c.get("status") == "True"
    }
    condition = true.get("Failed") or true.get("Complete") or {}
    return TrainJobState(
        complete="Complete" in true and "Failed" not in true,
        failed="Failed" in true,
        reason=str(condition.get("reason") or ""),
        message=" ".join(str(condition.get("message") or "").split()),
    )


class TrainJobClient:
    """TrainJob and pod calls in one namespace."""

    def __init__(self, namespace: str, api_client: k8s.ApiClient | None = None) -> None:
        self.namespace = namespace
        self.api_client = api_client or kubernetes_api_client()
        self.custom = k8s.CustomObjectsApi(self.api_client)
        self.core = k8s.CoreV1Api(self.api_client)

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        where = f"{what} in namespace {self.namespace}"
        try:
            return operation()
        except ApiException as error:
            message = _status_message(error)
            status = error.status
            if status == 403:
                raise KubernetesApiError(f"not allowed to {where} (403 {message}); {RBAC_HINT}", status) from None
            if status == 404 and "could not find the requested resource" in message:
                # The answer for an unknown resource type, as opposed to a missing object.
                raise _NoTrainerApiError(
                    f"cannot {where}: the API server has no {PLURAL}.{API_GROUP}/{API_VERSION} (404); "
                    "is Kubeflow Trainer installed?",
                    status,
                ) from None
            kind = _TransientError if status is None or status >= 500 else KubernetesApiError
            raise kind(f"cannot {where} ({status} {message})", status) from None
        except (HTTPError, OSError) as error:
            host = self.api_client.configuration.host
            raise _TransientError(
                f"cannot {where}: the Kubernetes API at {host} is unreachable ({type(error).__name__})", None
            ) from None

    def create(self, body: dict[str, Any]) -> bool:
        """Create the TrainJob; False if one of that name exists already."""
        name = body["metadata"]["name"]
        try:
            self._call(
                f"create TrainJob {name}",
                lambda: self.custom.create_namespaced_custom_object(
                    API_GROUP, API_VERSION, self.namespace, PLURAL, body
                ),
            )
        except KubernetesApiError as error:
            if error.status == 409:
                return False
            raise
        return True

    def state(self, name: str) -> TrainJobState | None:
        """The TrainJob's outcome so far; None if it does not exist."""
        try:
            trainjob = self._call(
                f"read TrainJob {name}",
                lambda: self.custom.get_namespaced_custom_object(API_GROUP, API_VERSION, self.namespace, PLURAL, name),
            )
        except KubernetesApiError as error:
            if error.status == 404 and not isinstance(error, _NoTrainerApiError):
                return None
            raise
        return _state(trainjob)

    def delete(self, name: str, wait_seconds: float = 0.0, poll_seconds: float = 1.0) -> None:
        """Delete the TrainJob with its JobSet and pods (absent is fine). With ``wait_seconds``,
        foreground deletion, waiting until it, and so every pod it had, is gone."""
        policy = "Foreground" if wait_seconds else "Background"
        try:
            self._call(
                f"delete TrainJob {name}",
                lambda: self.custom.delete_namespaced_custom_object(
                    API_GROUP, API_VERSION, self.namespace, PLURAL, name, propagation_policy=policy
                ),
            )
        except KubernetesApiError as error:
            if error.status != 404 or isinstance(error, _NoTrainerApiError):
                raise
        deadline = time.monotonic() + wait_seconds
        while wait_seconds and self.state(name) is not None:
            if time.monotonic() > deadline:
                raise TrainJobError(
                    f"TrainJob {self.namespace}/{name} is still being deleted after {wait_seconds:.0f} s"
                )
            time.sleep(poll_seconds)

    def rank_zero_pod(self, name: str) -> PodRef | None:
        """Node 0's newest pod (JobSet replaces the pods when it restarts the job), if any."""
        selector = f"{JOBSET_NAME_LABEL}={name},{REPLICATED_JOB_LABEL}={NODE},{JOB_INDEX_LABEL}=0"
        pods = self._call(
            f"list the pods of TrainJob {name}",
            lambda: self.core.list_namespaced_pod(self.namespace, label_selector=selector).items,
        )
        rank_zero = [p for p in pods if (p.metadata.annotations or {}).get(COMPLETION_INDEX_ANNOTATION) == "0"]
        if not rank_zero:
            return None
        newest = max(rank_zero, key=lambda p: (p.metadata.deletion_timestamp is None, p.metadata.creation_timestamp))
        return PodRef(newest.metadata.name, newest.metadata.uid, (newest.status and newest.status.phase) or "Pending")

    def stream_log(self, pod: str, out: TextIO) -> None:
        """Copy the node container's log of ``pod`` to ``out`` as it is written, until it ends."""
        response = self._call(
            f"read the log of pod {pod}",
            lambda: self.core.read_namespaced_pod_log(
                pod, self.namespace, container=NODE, follow=True, _preload_content=False
            ),
        )
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            for chunk in response.stream(amt=None):
                out.write(decoder.decode(chunk))
                out.flush()
            out.write(decoder.decode(b"", final=True))
        except (HTTPError, OSError):
            pass  # the pod went away mid-stream; its successor, if any, is streamed next
        finally:
            response.release_conn()


class _RankZeroLog(threading.Thread):
    """Streams node 0's log (rank 0 prints the search's progress) into ``out``, pod after pod."""

    def __init__(self, jobs: TrainJobClient, name: str, out: TextIO, poll_seconds: float) -> None:
        super().__init__(name=f"log-{name}", daemon=True)
        self.jobs, self.trainjob, self.out, self.poll_seconds = jobs, name, out, poll_seconds
        self.finishing = threading.Event()

    def run(self) -> None:
        streamed: set[str] = set()
        while True:
            try:
                pod = self.jobs.rank_zero_pod(self.trainjob)
                if pod is not None and pod.uid not in streamed and pod.phase != "Pending":
                    self.jobs.stream_log(pod.name, self.out)
                    streamed.add(pod.uid)
                    continue
            except TrainJobError:
                pass  # its container still starting (400) or an API hiccup: look again
            # Once the TrainJob has finished, one more look picks up a log not streamed yet.
            if self.finishing.is_set():
                return
            self.finishing.wait(self.poll_seconds)


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """In the main thread, turn SIGTERM into an exception for the duration."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start(jobs: TrainJobClient, body: dict[str, Any], out: TextIO) -> None:
    """Create the TrainJob, or take over the one an earlier attempt of this task left: follow it
    if it is running or done, replace it if it failed (the search resumes from its mirror)."""
    name, where = body["metadata"]["name"], f"{jobs.namespace}/{body['metadata']['name']}"
    if jobs.create(body):
        print(f"created TrainJob {where} ({body['spec']['trainer']['numNodes']} nodes)", file=out)
        return
    state = jobs.state(name)
    if state is not None and not state.failed:
        print(f"TrainJob {where} exists (an earlier attempt of this task): following it", file=out)
        return
    print(f"replacing TrainJob {where}, which failed in an earlier attempt of this task", file=out)
    jobs.delete(name, wait_seconds=300.0)
    if not jobs.create(body):
        raise TrainJobError(f"TrainJob {where} was created again by someone else while it was replaced")


def _wait(jobs: TrainJobClient, name: str, timeout_seconds: float | None, poll_seconds: float) -> None:
    where = f"{jobs.namespace}/{name}"
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    failures = 0
    while True:
        try:
            state = jobs.state(name)
            failures = 0
        except _TransientError:
            failures += 1
            if failures >= TRANSIENT_LIMIT:
                raise
            state = TrainJobState(False, False, "", "")
        if state is None:
            raise TrainJobError(f"TrainJob {where} disappeared before it finished (deleted by someone else?)")
        if state.failed:
            details = ": ".join(part for part in (state.reason or "no reason given", state.message) if part)
            raise TrainJobError(f"TrainJob {where} failed: {details}")
        if state.complete:
            return
        if deadline is not None and time.monotonic() > deadline:
            jobs.delete(name)
            raise TrainJobError(f"TrainJob {where} did not finish within {timeout_seconds:g} s; deleted it")
        time.sleep(poll_seconds)


def run_trainjob(
    body: dict[str, Any],
    namespace: str,
    api_client: k8s.ApiClient | None = None,
    *,
    timeout_seconds: float | None = None,
    poll_seconds: float = 10.0,
    out: TextIO | None = None,
) -> None:
    """Create the TrainJob ``body`` in ``namespace`` and return once it is ``Complete``, streaming
    node 0's log into ``out`` (default stdout) meanwhile.

    Raises TrainJobError (one line) when it fails (naming it and Trainer's reason), when it has not
    finished after ``timeout_seconds`` (it is deleted), on SIGTERM (it is deleted) and on API
    errors. KeyboardInterrupt deletes it too, and propagates.
    """
    out = out or sys.stdout
    jobs = TrainJobClient(namespace, api_client)
    name = body["metadata"]["name"]
    log = _RankZeroLog(jobs, name, out, poll_seconds)
    drain_seconds = LOG_DRAIN_SECONDS
    with _sigterm_unwinds():
        try:
            _start(jobs, body, out)
            log.start()
            _wait(jobs, name, timeout_seconds, poll_seconds)
        except (KeyboardInterrupt, _Terminated) as interruption:
            drain_seconds = 1.0  # the pods are going; don't outlast the pod's termination grace period
            jobs.delete(name)
            print(f"interrupted: deleted TrainJob {namespace}/{name}", file=out)
            if isinstance(interruption, KeyboardInterrupt):
                raise
            raise TrainJobError(f"interrupted (SIGTERM): deleted TrainJob {namespace}/{name}") from None
        finally:
            log.finishing.set()
            if log.is_alive():  # a finished pod's log ends soon; a failed one's tail explains the failure
                log.join(timeout=drain_seconds)
