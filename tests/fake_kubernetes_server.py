"""An in-memory stand-in for the part of the Kubernetes API that a TrainJob launcher uses through
the ``kubernetes`` client (no cluster can run on this machine).

Serves TrainJobs (trainer.kubeflow.org/v1alpha1: create, get, delete), the pods of each TrainJob
as its JobSet would label them (list by label selector), and node pods' logs (``follow=true``
streams, chunked, until the pod ends). What node 0 does is a function of the created body (a
"kubelet" the test chooses): it writes the log and decides the outcome; the TrainJob reports
``Complete`` or ``Failed`` once node 0 has ended and it has been read ``finish_after_polls``
times. Every created body and deletion is recorded; any operation can be made to fail (always,
or the first N times).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

TRAINJOBS = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/"
PODS = "/api/v1/namespaces/"
# node_zero(body, write_log, deleted) -> whether node 0 succeeded; it runs in its own thread.
NodeProgram = Callable[[dict[str, Any], Callable[[str], None], threading.Event], bool]


def scripted_node(lines: list[str], succeeds: bool = True) -> NodeProgram:
    def run(body: dict[str, Any], write: Callable[[str], None], deleted: threading.Event) -> bool:
        for line in lines:
            write(line + "\n")
        return succeeds

    return run


def hanging_node(lines: list[str]) -> NodeProgram:
    """Logs ``lines``, then runs until its TrainJob is deleted."""

    def run(body: dict[str, Any], write: Callable[[str], None], deleted: threading.Event) -> bool:
        for line in lines:
            write(line + "\n")
        deleted.wait(60)
        return False

    return run


@dataclass
class FakeTrainJob:
    body: dict[str, Any]
    log: list[str] = field(default_factory=list)
    succeeded: bool | None = None  # node 0's outcome; None while it runs
    polls: int = 0
    deleted: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@dataclass
class FakeKubernetes:
    node_zero: NodeProgram = field(default_factory=lambda: scripted_node([]))
    finish_after_polls: int = 2
    failure_reason: str = "FailedJobs"
    failure_message: str = "jobset failed: job cdarts-node-0 has failed pods"
    fail_with: dict[str, tuple[int, str]] = field(default_factory=dict)  # operation -> (status, message)
    fail_times: dict[str, int] = field(default_factory=dict)  # operation -> how often it fails (default: always)
    on_poll: Callable[[int], None] | None = None  # called with the poll count on every TrainJob read
    trainjobs: dict[str, FakeTrainJob] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)  # (name, propagationPolicy)
    log_requests: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, body: dict[str, Any], succeeded: bool | None) -> FakeTrainJob:
        """A TrainJob that exists before the test (an earlier attempt's), already ended or running."""
        job = FakeTrainJob(json.loads(json.dumps(body)), succeeded=succeeded, polls=self.finish_after_polls)
        job.body["metadata"].setdefault("uid", str(uuid.uuid4()))
        with self.changed:
            self.trainjobs[job.name] = job
        return job

    def _start(self, job: FakeTrainJob) -> None:
        def write(text: str) -> None:
            with self.changed:
                job.log.append(text)
                self.changed.notify_all()

        def run() -> None:
            try:
                succeeded = self.node_zero(job.body, write, job.deleted)
            except Exception as error:  # a crash of the fake program is a failed node
                write(f"node program crashed: {error!r}\n")
                succeeded = False
            with self.changed:
                job.succeeded = succeeded
                self.changed.notify_all()

        threading.Thread(target=run, daemon=True).start()

    def status(self, job: FakeTrainJob) -> dict[str, Any]:
        if job.succeeded is None or job.polls < self.finish_after_polls:
            return {"conditions": []}
        condition = {"type": "Complete", "status": "True", "reason": "JobsCompleted", "message": "jobs completed"}
        if not job.succeeded:
            condition = {
                "type": "Failed",
                "status": "True",
                "reason": self.failure_reason,
                "message": self.failure_message,
            }
        return {"conditions": [{**condition, "lastTransitionTime": "2026-12-01T00:00:00Z"}]}

    def pods(self, job: FakeTrainJob) -> list[dict[str, Any]]:
        """The node pods, named and labelled as JobSet does (pod index = completion index = node rank)."""
        uid = job.body["metadata"]["uid"]
        phase = "Running" if job.succeeded is None else ("Succeeded" if job.succeeded else "Failed")
        return [
            {
                "metadata": {
                    "name": f"{job.name}-node-0-{index}-{uid[:5]}",
                    "namespace": job.body["metadata"]["namespace"],
                    "uid": f"{uid}-{index}",
                    "creationTimestamp": "2026-12-01T00:00:00Z",
                    "labels": {
                        "jobset.sigs.k8s.io/jobset-name": job.name,
                        "jobset.sigs.k8s.io/replicatedjob-name": "node",
                        "jobset.sigs.k8s.io/job-index": "0",
                        "batch.kubernetes.io/job-completion-index": str(index),
                    },
                    "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
                },
                "status": {"phase": phase},
            }
            for index in range(int(job.body["spec"]["trainer"]["numNodes"]))
        ]


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _handler(state: FakeKubernetes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # chunked log streams

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length", 0))
            return dict(json.loads(self.rfile.read(length) or b"{}"))

        def _injected_failure(self, operation: str) -> bool:
            if operation not in state.fail_with or state.fail_times.get(operation, 1) <= 0:
                return False
            if operation in state.fail_times:
                state.fail_times[operation] -= 1
            code, message = state.fail_with[operation]
            reason = {400: "BadRequest", 403: "Forbidden", 404: "NotFound"}.get(code, "InternalError")
            self._reply(code, _status(code, reason, message))
            return True

        def _route(self) -> tuple[str, str, str, dict[str, str]]:
            """(kind, namespace, name, query) of the request; kind is trainjobs, pods, log or ''."""
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path.startswith(TRAINJOBS):
                parts = url.path[len(TRAINJOBS) :].split("/")
                if len(parts) in (2, 3) and parts[1] == "trainjobs":
                    return "trainjobs", parts[0], parts[2] if len(parts) == 3 else "", query
            if url.path.startswith(PODS):
                parts = url.path[len(PODS) :].split("/")
                if len(parts) == 2 and parts[1] == "pods":
                    return "pods", parts[0], "", query
                if len(parts) == 4 and parts[1] == "pods" and parts[3] == "log":
                    return "log", parts[0], parts[2], query
            return "", "", "", query

        def do_POST(self) -> None:
            kind, namespace, name, _ = self._route()
            body = self._body()
            if kind != "trainjobs" or name:
                self._reply(404, _status(404, "NotFound", "the server could not find the requested resource"))
                return
            if self._injected_failure("create"):
                return
            name = body["metadata"]["name"]
            with state.changed:
                if name in state.trainjobs:
                    message = f'trainjobs.trainer.kubeflow.org "{name}" already exists'
                    self._reply(409, _status(409, "AlreadyExists", message))
                    return
                body["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()))
                job = FakeTrainJob(body)
                state.trainjobs[name] = job
                state.created.append(json.loads(json.dumps(body)))
            state._start(job)
            self._reply(201, body)

        def do_GET(self) -> None:
            kind, _, name, query = self._route()
            if kind == "trainjobs" and name:
                if self._injected_failure("get"):
                    return
                with state.changed:
                    job = state.trainjobs.get(name)
                    if job is not None:
                        job.polls += 1
                        polls = job.polls
                        reply = {**job.body, "status": state.status(job)}
                if job is None:
                    self._reply(404, _status(404, "NotFound", f'trainjobs.trainer.kubeflow.org "{name}" not found'))
                    return
                if state.on_poll is not None:
                    state.on_poll(polls)
                self._reply(200, reply)
            elif kind == "pods":
                if self._injected_failure("pods"):
                    return
                wanted = dict(item.split("=", 1) for item in query.get("labelSelector", "").split(",") if item)
                with state.changed:
                    pods = [pod for job in state.trainjobs.values() for pod in state.pods(job)]
                items = [p for p in pods if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
                self._reply(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
            elif kind == "log":
                if self._injected_failure("log"):
                    return
                self._stream_log(name, query.get("follow", "").lower() in ("true", "t", "1"))  # Go's ParseBool
            else:
                self._reply(404, _status(404, "NotFound", "the server could not find the requested resource"))

        def _stream_log(self, pod: str, follow: bool) -> None:
            with state.changed:
                state.log_requests.append(pod)
                job = next(
                    (j for j in state.trainjobs.values() if any(p["metadata"]["name"] == pod for p in state.pods(j))),
                    None,
                )
            if job is None:
                self._reply(404, _status(404, "NotFound", f'pods "{pod}" not found'))
                return
            node_zero = pod.startswith(f"{job.name}-node-0-0-")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            while node_zero:
                with state.changed:
                    while follow and sent == len(job.log) and job.succeeded is None and not job.deleted.is_set():
                        state.changed.wait(1.0)
                    new, sent = job.log[sent:], len(job.log)
                    ended = job.succeeded is not None or job.deleted.is_set() or not follow
                for text in new:
                    data = text.encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                if ended and sent == len(job.log):
                    break
            self.wfile.write(b"0\r\n\r\n")

        def do_DELETE(self) -> None:
            kind, _, name, query = self._route()
            self._body()
            if kind != "trainjobs" or not name:
                self._reply(404, _status(404, "NotFound", "the server could not find the requested resource"))
                return
            if self._injected_failure("delete"):
                return
            with state.changed:
                job = state.trainjobs.pop(name, None)
                state.deleted.append((name, query.get("propagationPolicy", "")))
                if job is not None:
                    job.deleted.set()
                state.changed.notify_all()
            if job is None:
                self._reply(404, _status(404, "NotFound", f'trainjobs.trainer.kubeflow.org "{name}" not found'))
                return
            self._reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    return Handler


def start_fake_kubernetes(**settings: Any) -> FakeKubernetes:
    state = FakeKubernetes(**settings)
    state.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.server.daemon_threads = True
    threading.Thread(target=state.server.serve_forever, daemon=True).start()
    return state


def container_env(
    body: dict[str, Any], secrets: dict[str, dict[str, str]], config_maps: dict[str, dict[str, str]]
) -> dict[str, str]:
    """The trainer container's environment as the kubelet would resolve it: literal values, and
    Secret / ConfigMap key references (an optional reference to a missing key sets nothing)."""
    env: dict[str, str] = {}
    for entry in body["spec"]["trainer"].get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        source = entry["valueFrom"]
        reference, store = (
            (source["secretKeyRef"], secrets) if "secretKeyRef" in source else (source["configMapKeyRef"], config_maps)
        )
        value = store.get(reference["name"], {}).get(reference["key"])
        if value is None and not reference.get("optional"):
            raise KeyError(f"{entry['name']}: {reference['name']}/{reference['key']} is missing")
        if value is not None:
            env[entry["name"]] = value
    return env
