"""The MLflow server exactly as the rendered Deployment runs it (its init container's script,
its command line, its environment; only paths, the port and Secret values are the test's):
authentication on, Host headers from the settings, no job runner, artifacts under the scoped
prefix of KFP's SeaweedFS. And the production overlay's database upgrade step."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cdarts.local_stack.ports import free_port_pairs
from tests.seaweedfs_iam import admin_keys, create_user, s3_client, seaweedfs_with_iam
from tests.test_manifests import _expand, render

OVERLAY = "overlays/kfp-multi-user"
CDARTS_POLICY = Path(__file__).resolve().parents[1] / "k8s" / "kfp-seaweedfs" / "cdarts-s3-policy.json"
ADMIN = ("mlflow-admin", "admin-password-for-this-test-only-0")
SERVICE_HOST = "cdarts-mlflow.cdarts.svc.cluster.local:5000"


def _deployment(kustomization: str) -> dict[str, Any]:
    (deployment,) = [doc for doc in render(kustomization) if doc["kind"] == "Deployment"]
    return deployment


def _settings(kustomization: str) -> dict[str, str]:
    (config_map,) = [
        doc for doc in render(kustomization) if doc["kind"] == "ConfigMap" and doc["metadata"]["namespace"] == "cdarts"
    ]
    return dict(config_map["data"])


def _environment(
    container: dict[str, Any], settings: dict[str, str], secrets: dict[tuple[str, str], str]
) -> dict[str, str]:
    """A container's env as the kubelet resolves it (literal values, ConfigMap and Secret keys)."""
    env = {}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        source = entry["valueFrom"]
        if "configMapKeyRef" in source:
            assert source["configMapKeyRef"]["name"] == "cdarts-settings"
            env[entry["name"]] = settings[source["configMapKeyRef"]["key"]]
        else:
            reference = source["secretKeyRef"]
            env[entry["name"]] = secrets[(reference["name"], reference["key"])]
    return env


def _relocated(text: str, mounts: dict[str, Path]) -> str:
    """Mount paths in ``text`` replaced, in one pass, by the local directories standing in for them."""
    if not mounts:
        return text
    pattern = "|".join(re.escape(mount) for mount in sorted(mounts, key=len, reverse=True))
    return re.sub(rf"(?<![\w.-])({pattern})(?=/|\b|$)", lambda m: str(mounts[m.group(1)]), text)


def _run_container(container: dict[str, Any], env: dict[str, str], mounts: dict[str, Path]) -> None:
    command = [_relocated(_expand(part, env), mounts) for part in [*container["command"], *container.get("args", [])]]
    local_env = {**os.environ, **{k: _relocated(v, mounts) for k, v in env.items()}, "PATH": _path()}
    subprocess.run(command, env=local_env, check=True, timeout=120, capture_output=True)


def _path() -> str:
    return f"{Path(sys.executable).parent}:{os.environ['PATH']}"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    s3_endpoint: str


def _request(
    server: Server, path: str, auth: tuple[str, str] | None = None, host: str = SERVICE_HOST, body: Any = None
) -> tuple[int, str]:
    request = urllib.request.Request(
        server.url + path,
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Host": host, "Content-Type": "application/json"},
    )
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(scope="module")
def rendered_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("mlflow-as-rendered")
    with seaweedfs_with_iam(root / "seaweedfs", ["mlpipeline"]) as s3_endpoint:
        cdarts_keys = create_user(s3_endpoint, "cdarts", json.loads(CDARTS_POLICY.read_text()))
        time.sleep(1.5)
        deployment = _deployment(OVERLAY)
        pod = deployment["spec"]["template"]["spec"]
        settings = {**_settings(OVERLAY), "CDARTS_S3_ENDPOINT": s3_endpoint}
        (port,) = free_port_pairs(1, start=33000, stop=36000)
        # The Ingress hostname added the way docs/operations.md shows, and the address of this
        # test's client (what `kubectl port-forward svc/cdarts-mlflow PORT:5000` would give).
        settings["MLFLOW_SERVER_ALLOWED_HOSTS"] += f",mlflow.example.com,localhost:{port}"
        secrets = {
            ("cdarts-mlflow-admin", "MLFLOW_AUTH_ADMIN_USERNAME"): ADMIN[0],
            ("cdarts-mlflow-admin", "MLFLOW_AUTH_ADMIN_PASSWORD"): ADMIN[1],
            ("cdarts-mlflow-admin", "MLFLOW_FLASK_SERVER_SECRET_KEY"): "csrf-key-of-this-test-only",
            ("cdarts-s3", "AWS_ACCESS_KEY_ID"): cdarts_keys.access_key,
            ("cdarts-s3", "AWS_SECRET_ACCESS_KEY"): cdarts_keys.secret_key,
        }
        mounts = {}
        for container in [*pod["initContainers"], *pod["containers"]]:
            for mount in container.get("volumeMounts", []):
                mounts[mount["mountPath"]] = root / mount["name"]
                (root / mount["name"]).mkdir(exist_ok=True)
        (init,) = pod["initContainers"]
        _run_container(init, _environment(init, settings, secrets), mounts)
        ini = (mounts["/etc/mlflow-auth"] / "basic_auth.ini").read_text()
        assert f"database_uri = sqlite:///{mounts['/var/lib/mlflow']}/basic_auth.db" in ini, ini
        (container,) = pod["containers"]
        env = _environment(container, settings, secrets)
        # Every path the server writes is inside this test's directory (never the real /var/lib).
        for value in (env["MLFLOW_BACKEND_STORE_URI"], env["MLFLOW_AUTH_CONFIG_PATH"]):
            assert str(root) in _relocated(value, mounts), value
        args = [_relocated(_expand(arg, env), mounts) for arg in container["args"]]
        assert "--host=0.0.0.0" in args and "--port=5000" in args
        args = [a.replace("--host=0.0.0.0", "--host=127.0.0.1").replace("--port=5000", f"--port={port}") for a in args]
        local_env = {**os.environ, **{k: _relocated(v, mounts) for k, v in env.items()}, "PATH": _path()}
        local_env.pop("MLFLOW_TRACKING_URI", None)
        with (root / "mlflow.log").open("ab") as log:
            process = subprocess.Popen(
                [*container["command"], *args],
                env=local_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(f"http://localhost:{port}", process, s3_endpoint)
        try:
            deadline = time.monotonic() + 150
            while _health(server) != 200:
                assert process.poll() is None and time.monotonic() < deadline, (root / "mlflow.log").read_text()[-3000:]
                time.sleep(0.5)
            yield server
        finally:
            os.killpg(process.pid, 15)
            process.wait(timeout=30)


def _health(server: Server) -> int:
    try:
        return _request(server, "/health")[0]
    except OSError:
        return 0


@pytest.mark.slow
def test_requests_without_credentials_are_refused_and_with_them_accepted(rendered_mlflow: Server) -> None:
    search = "/api/2.0/mlflow/experiments/search?max_results=5"
    assert _request(rendered_mlflow, "/health")[0] == 200  # the probes need no credentials
    assert _request(rendered_mlflow, search)[0] == 401
    assert _request(rendered_mlflow, search, auth=(ADMIN[0], "wrong-password"))[0] == 401
    assert _request(rendered_mlflow, search, auth=("nobody", ADMIN[1]))[0] == 401
    assert _request(rendered_mlflow, search, auth=ADMIN)[0] == 200


@pytest.mark.slow
def test_the_pipeline_user_logs_runs_and_artifacts_others_cannot_read(
    rendered_mlflow: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    for user in ("cdarts-pipelines", "someone-else"):
        status, body = _request(
            rendered_mlflow,
            "/api/2.0/mlflow/users/create",
            auth=ADMIN,
            body={"username": user, "password": f"{user}-pw-0123456789"},
        )
        assert status == 200, body
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "cdarts-pipelines")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "cdarts-pipelines-pw-0123456789")
    client = MlflowClient(rendered_mlflow.url)
    experiment = client.create_experiment(f"auth-{time.monotonic_ns()}")
    run = client.create_run(experiment)
    (tmp_path / "genotype.json").write_text('{"schema_version": 1}')
    client.log_artifact(run.info.run_id, str(tmp_path / "genotype.json"))
    client.set_terminated(run.info.run_id)
    # The artifact went through the server to the scoped prefix of KFP's bucket.
    listing = s3_client(rendered_mlflow.s3_endpoint, admin_keys()).list_objects_v2(
        Bucket="mlpipeline", Prefix="cdarts/mlflow/"
    )
    keys = [item["Key"] for item in listing.get("Contents", [])]
    assert any(key.endswith(f"{run.info.run_id}/artifacts/genotype.json") for key in keys), keys
    # NO_PERMISSIONS by default: another user cannot read what the pipeline user created.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "someone-else")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "someone-else-pw-0123456789")
    with pytest.raises(MlflowException, match=r"(?i)permission"):
        MlflowClient(rendered_mlflow.url).get_run(run.info.run_id)
    assert mlflow.__version__.startswith("3.")


@pytest.mark.slow
def test_only_the_configured_hosts_are_answered(rendered_mlflow: Server) -> None:
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    for host in ("cdarts-mlflow", "cdarts-mlflow.cdarts:5000", SERVICE_HOST, "mlflow.example.com"):
        assert _request(rendered_mlflow, search, auth=ADMIN, host=host)[0] == 200, host
    for host in ("mlflow.attacker.example", "10.0.0.7:5000"):
        assert _request(rendered_mlflow, search, auth=ADMIN, host=host)[0] == 403, host
    assert _request(rendered_mlflow, "/health", host="10.0.0.7:5000")[0] == 200  # kubelet probes by pod IP


def _descendants(pid: int) -> list[str]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            pending.append(child)
            with contextlib.suppress(OSError):
                found.append((Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


@pytest.mark.slow
def test_the_job_runner_is_off(rendered_mlflow: Server) -> None:
    processes = _descendants(rendered_mlflow.process.pid)
    assert not [p for p in processes if re.search(r"huey|job", p)], processes
    assert len(processes) <= 4, processes  # uvicorn's supervisor and its two workers


@pytest.mark.slow
def test_the_production_init_step_upgrades_both_databases(tmp_path: Path) -> None:
    pod = _deployment("overlays/production")["spec"]["template"]["spec"]
    init = {container["name"]: container for container in pod["initContainers"]}
    assert list(init) == ["db-upgrade", "auth-config"]  # the schema is current before anything else
    tracking, auth = tmp_path / "tracking.db", tmp_path / "auth.db"
    secrets = {
        ("cdarts-mlflow-db", "MLFLOW_BACKEND_STORE_URI"): f"sqlite:///{tracking}",
        ("cdarts-mlflow-db", "MLFLOW_AUTH_DATABASE_URI"): f"sqlite:///{auth}",
    }
    env = {**_environment(init["db-upgrade"], {}, secrets), "HOME": str(tmp_path)}
    for _ in range(2):  # a restarted pod runs it again: a no-op
        _run_container(init["db-upgrade"], env, {})
    with sqlite3.connect(tracking) as db:
        assert db.execute("select version_num from alembic_version").fetchone()
    with sqlite3.connect(auth) as db:
        assert db.execute("select version_num from alembic_version_auth").fetchone()
    # The auth settings file points the basic-auth app at the second database.
    _run_container(init["auth-config"], _environment(init["auth-config"], {}, secrets), {"/etc/mlflow-auth": tmp_path})
    ini = (tmp_path / "basic_auth.ini").read_text()
    assert f"database_uri = sqlite:///{auth}" in ini and "default_permission = NO_PERMISSIONS" in ini
    (mlflow,) = pod["containers"]
    assert "--app-name=basic-auth" in mlflow["args"]
