"""An in-memory stand-in for the part of the KFP v2beta1 REST API that ``kfp.Client`` uses to
find and create runs (no KFP server can run on this machine: it needs Kubernetes).

Serves healthz, experiments (list with a display-name filter, create) and runs (list with an
experiment and display-name filter, create, get). Creating a run can be slowed down to widen
race windows; every created run is kept so tests can count them.
"""

from __future__ import annotations

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

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length", 0))
            return dict(json.loads(self.rfile.read(length) or b"{}"))

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
                    found = [e for e in state.experiments if name is None or e["display_name"] == name]
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
            body = self._body()
            if url.path == f"{API}/experiments":
                with state.lock:
                    experiment = {
                        "experiment_id": str(uuid.uuid4()),
                        "display_name": body["display_name"],
                        "namespace": body.get("namespace") or "",
                    }
                    state.experiments.append(experiment)
                self._reply(200, experiment)
            elif url.path == f"{API}/runs":
                if "pipeline_spec" not in body or not body.get("display_name"):
                    self._reply(400, {"error": "a run needs a pipeline_spec and a display_name"})
                    return
                time.sleep(state.create_delay_seconds)
                with state.lock:
                    run = {
                        "run_id": str(uuid.uuid4()),
                        "display_name": body["display_name"],
                        "experiment_id": body["experiment_id"],
                        "state": "PENDING",
                        "runtime_config": body.get("runtime_config", {}),
                        "pipeline_spec": body["pipeline_spec"],
                        "created_at": f"2026-11-29T00:00:{len(state.runs):02d}Z",
                    }
                    state.runs.append(run)
                self._reply(200, run)
            else:
                self._reply(404, {"error": f"not served by the fake: {url.path}"})

    return Handler


def start_fake_kfp(create_delay_seconds: float = 0.0) -> FakeKfp:
    state = FakeKfp(create_delay_seconds=create_delay_seconds)
    state.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    threading.Thread(target=state.server.serve_forever, daemon=True).start()
    return state
