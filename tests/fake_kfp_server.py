"""An in-memory stand-in for the part of the KFP v2beta1 REST API that ``kfp.Client`` uses to
find and create runs (no KFP server can run on this machine: it needs Kubernetes).

Serves healthz, experiments (list with a display-name filter, create), runs (list with an
experiment and display-name filter, create from an inline spec or a pipeline version reference,
get), pipelines (list with a display-name and namespace filter, create) and pipeline versions
(multipart upload, list with a display-name filter). Names are unique as on the real server
(a second pipeline or version of the same name is a 409). Creating a run can be slowed down to
widen race windows; every created run and uploaded package is kept so tests can count them.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

API = "/apis/v2beta1"


@dataclass
class FakeKfp:
    create_delay_seconds: float = 0.0
    finish_as: str | None = None  # a run looked up by id ends in this state (None: stays PENDING)
    experiments: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    pipelines: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    packages: dict[str, str] = field(default_factory=dict)  # version id -> the uploaded YAML
    authorizations: list[str] = field(default_factory=list)  # the Authorization header of each request
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def run_names(self) -> list[str]:
        with self.lock:
            return [run["display_name"] for run in self.runs]

    def version_names(self) -> list[str]:
        with self.lock:
            return [version["display_name"] for version in self.versions]


def _multipart_file(content_type: str, body: bytes) -> bytes:
    """The ``uploadfile`` part of a multipart/form-data body, as the client sends a package."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            return bytes(part.get_payload(decode=True))
    raise ValueError("no uploadfile part")


def _display_name_filter(raw: str | None) -> str | None:
    """The display name of an EQUALS filter; anything else is a request this fake rejects."""
    if not raw:
        return None
    predicates = json.loads(raw)["predicates"]
    (predicate,) = predicates
    if predicate["key"] != "display_name" or predicate["operation"] not in ("EQUALS", 1):
        raise ValueError(f"unsupported filter {raw}")
    return str(predicate.get("stringValue", predicate.get("string_value")))


def _handler(state: FakeKfp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _raw_body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def _record_authorization(self) -> None:
            with state.lock:
                state.authorizations.append(self.headers.get("Authorization", ""))

        def do_GET(self) -> None:
            self._record_authorization()
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                name = _display_name_filter(query.get("filter"))
            except (ValueError, KeyError) as error:
                self._reply(400, {"error": str(error)})
                return
            with state.lock:
                if url.path == f"{API}/healthz":
                    self._reply(200, {"multi_user": False})
                elif url.path == f"{API}/experiments":
                    # Experiments are per namespace (multi-user KFP); without one, any matches.
                    found = [
                        e
                        for e in state.experiments
                        if (name is None or e["display_name"] == name)
                        and query.get("namespace", e["namespace"]) == e["namespace"]
                    ]
                    self._reply(200, {"experiments": found, "total_size": len(found)} if found else {})
                elif url.path == f"{API}/runs":
                    found = [
                        r
                        for r in state.runs
                        if (name is None or r["display_name"] == name)
                        and r["experiment_id"] == query.get("experiment_id", r["experiment_id"])
                    ]
                    found = found[: int(query.get("page_size", 10))]
                    self._reply(200, {"runs": found, "total_size": len(found)} if found else {})
                elif url.path == f"{API}/pipelines":
                    namespace = query.get("namespace", "")
                    found = [
                        p
                        for p in state.pipelines
                        if (name is None or p["display_name"] == name) and p["namespace"] == namespace
                    ]
                    self._reply(200, {"pipelines": found, "total_size": len(found)} if found else {})
                elif url.path.startswith(f"{API}/pipelines/") and url.path.endswith("/versions"):
                    pipeline_id = url.path.split("/")[-2]
                    found = [
                        v
                        for v in state.versions
                        if v["pipeline_id"] == pipeline_id and (name is None or v["display_name"] == name)
                    ]
                    found = found[: int(query.get("page_size", 10))]
                    self._reply(200, {"pipeline_versions": found, "total_size": len(found)} if found else {})
                elif url.path.startswith(f"{API}/runs/"):
                    run_id = url.path.rsplit("/", 1)[-1]
                    match = [r for r in state.runs if r["run_id"] == run_id]
                    if match and state.finish_as is not None:
                        match[0]["state"] = state.finish_as  # the run "finishes" once it is looked at
                    self._reply(200, match[0]) if match else self._reply(404, {"error": "no such run"})
                else:
                    self._reply(404, {"error": f"not served by the fake: {url.path}"})

        def do_POST(self) -> None:
            self._record_authorization()
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            raw = self._raw_body()
            if url.path == f"{API}/pipelines/upload_version":
                self._upload_version(query, raw)
                return
            body = dict(json.loads(raw or b"{}"))
            if url.path == f"{API}/pipelines":
                self._create_pipeline(body)
            elif url.path == f"{API}/experiments":
                with state.lock:
                    experiment = {
                        "experiment_id": str(uuid.uuid4()),
                        "display_name": body["display_name"],
                        "namespace": body.get("namespace") or "",
                    }
                    state.experiments.append(experiment)
                self._reply(200, experiment)
            elif url.path == f"{API}/runs":
                self._create_run(body)
            else:
                self._reply(404, {"error": f"not served by the fake: {url.path}"})

        def _create_run(self, body: dict[str, Any]) -> None:
            reference = body.get("pipeline_version_reference")
            if ("pipeline_spec" in body) == (reference is not None) or not body.get("display_name"):
                self._reply(400, {"error": "a run needs a display_name and a pipeline_spec or a version reference"})
                return
            if reference is not None:
                with state.lock:
                    known = {(v["pipeline_id"], v["pipeline_version_id"]) for v in state.versions}
                if (reference.get("pipeline_id"), reference.get("pipeline_version_id")) not in known:
                    self._reply(404, {"error": f"no such pipeline version {reference}"})
                    return
            time.sleep(state.create_delay_seconds)
            with state.lock:
                run = {
                    "run_id": str(uuid.uuid4()),
                    "display_name": body["display_name"],
                    "experiment_id": body["experiment_id"],
                    "state": "PENDING",
                    "runtime_config": body.get("runtime_config", {}),
                    "pipeline_spec": body.get("pipeline_spec"),
                    "pipeline_version_reference": reference,
                    "created_at": f"2026-11-29T00:00:{len(state.runs):02d}Z",
                }
                state.runs.append(run)
            self._reply(200, run)

        def _create_pipeline(self, body: dict[str, Any]) -> None:
            name = body.get("name") or body.get("display_name")
            namespace = body.get("namespace") or ""
            with state.lock:
                if any(p["name"] == name and p["namespace"] == namespace for p in state.pipelines):
                    self._reply(409, {"error": f"pipeline {name} already exists"})
                    return
                pipeline = {
                    "pipeline_id": str(uuid.uuid4()),
                    "name": name,
                    "display_name": body.get("display_name") or name,
                    "namespace": namespace,
                    "created_at": "2026-11-29T00:00:00Z",
                }
                state.pipelines.append(pipeline)
            self._reply(200, pipeline)

        def _upload_version(self, query: dict[str, str], raw: bytes) -> None:
            try:
                package = _multipart_file(self.headers.get("Content-Type", ""), raw).decode()
            except ValueError as error:
                self._reply(400, {"error": str(error)})
                return
            pipeline_id, name = query.get("pipelineid"), query.get("name")
            with state.lock:
                if not name or pipeline_id not in {p["pipeline_id"] for p in state.pipelines}:
                    self._reply(400, {"error": "a version needs a name and a known pipelineid"})
                    return
                if any(v["pipeline_id"] == pipeline_id and v["name"] == name for v in state.versions):
                    self._reply(409, {"error": f"pipeline version {name} already exists"})
                    return
                version = {
                    "pipeline_id": pipeline_id,
                    "pipeline_version_id": str(uuid.uuid4()),
                    "name": name,
                    "display_name": query.get("display_name") or name,
                    "description": query.get("description", ""),
                    "created_at": f"2026-11-29T00:00:{len(state.versions):02d}Z",
                }
                state.versions.append(version)
                state.packages[version["pipeline_version_id"]] = package
            self._reply(200, version)

    return Handler


def start_fake_kfp(create_delay_seconds: float = 0.0) -> FakeKfp:
    state = FakeKfp(create_delay_seconds=create_delay_seconds)
    state.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    threading.Thread(target=state.server.serve_forever, daemon=True).start()
    return state
