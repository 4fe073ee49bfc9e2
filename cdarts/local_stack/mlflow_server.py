"""Start and stop an MLflow tracking server (sqlite backend, artifacts proxied to S3) on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cdarts.errors import TrackingError
from cdarts.local_stack.ports import free_port_pairs


@dataclass
class MlflowServer:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_mlflow_server(
    state_dir: Path,
    s3_endpoint: str,
    access_key: str,
    secret_key: str,
    bucket: str = "mlflow",
    timeout: float = 120.0,
) -> MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a sqlite store in ``state_dir`` and artifacts proxied
    to ``s3://bucket`` (clients need no S3 credentials). The job runner is off (it forks about
    eight workers and is not needed)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (port,) = free_port_pairs(1, start=25000, stop=29000)
    env = {
        **os.environ,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{state_dir / 'mlflow.db'}",
        "--artifacts-destination",
        f"s3://{bucket}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = (state_dir / "mlflow.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log.close()
    server = MlflowServer(process, port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(server.uri):
            return server
        if process.poll() is not None:
            break
        time.sleep(0.5)
    server.stop()
    raise TrackingError(f"the MLflow server did not start; see {state_dir / 'mlflow.log'}")
