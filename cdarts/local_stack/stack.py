"""``cdarts services up|down|status``: SeaweedFS + MLflow on 127.0.0.1 for this checkout.

Generated credentials and the endpoints are kept in ``<state>/stack.json`` (mode 0600); the
processes outlive the command and are stopped with ``down``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

from cdarts.errors import CdartsError
from cdarts.local_stack.mlflow_server import healthy, start_mlflow_server
from cdarts.local_stack.ports import wait_for_port
from cdarts.local_stack.seaweedfs import start_seaweedfs

DEFAULT_STATE_DIR = Path(".cdarts/stack")
STATE_FILE = "stack.json"
BUCKETS = ("cdarts", "mlflow")


@dataclass(frozen=True)
class StackState:
    s3_endpoint: str
    tracking_uri: str
    access_key: str
    secret_key: str
    seaweedfs_pid: int
    mlflow_pid: int

    def environment(self) -> dict[str, str]:
        """What a client process needs: endpoints and the S3 credentials (environment only)."""
        return {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "CDARTS_S3_ENDPOINT": self.s3_endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def load_state(state_dir: Path = DEFAULT_STATE_DIR) -> StackState | None:
    path = state_dir / STATE_FILE
    if not path.is_file():
        return None
    return StackState(**json.loads(path.read_text(encoding="utf-8")))


def running_state(state_dir: Path = DEFAULT_STATE_DIR) -> StackState:
    """The state of a running stack, or a clear error telling how to start one."""
    state = load_state(state_dir)
    if state is None or not (_alive(state.seaweedfs_pid) and _alive(state.mlflow_pid)):
        raise CdartsError(f"the local stack is not running; start it with `cdarts services up` ({state_dir})")
    return state


def up(state_dir: Path = DEFAULT_STATE_DIR) -> StackState:
    """Start both services (or report the running ones)."""
    existing = load_state(state_dir)
    if existing is not None and _alive(existing.seaweedfs_pid) and _alive(existing.mlflow_pid):
        return existing
    access_key, secret_key = f"cdarts-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    seaweed = start_seaweedfs(state_dir / "seaweedfs", access_key, secret_key, list(BUCKETS))
    try:
        mlflow = start_mlflow_server(state_dir / "mlflow", seaweed.endpoint, access_key, secret_key)
    except Exception:
        seaweed.stop()
        raise
    state = StackState(seaweed.endpoint, mlflow.uri, access_key, secret_key, seaweed.process.pid, mlflow.process.pid)
    path = state_dir / STATE_FILE
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(asdict(state), indent=1), encoding="utf-8")
    return state


def down(state_dir: Path = DEFAULT_STATE_DIR) -> bool:
    """Stop both services; False when nothing was running."""
    state = load_state(state_dir)
    if state is None:
        return False
    for pid in (state.mlflow_pid, state.seaweedfs_pid):
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except OSError:
                os.kill(pid, signal.SIGTERM)
    (state_dir / STATE_FILE).unlink()
    return True


def status(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, object]:
    state = load_state(state_dir)
    if state is None:
        return {"running": False}
    s3_port = int(state.s3_endpoint.rsplit(":", 1)[1])
    return {
        "running": _alive(state.seaweedfs_pid) and _alive(state.mlflow_pid),
        "s3_endpoint": state.s3_endpoint,
        "s3_reachable": wait_for_port(s3_port, timeout=1),
        "tracking_uri": state.tracking_uri,
        "tracking_healthy": healthy(state.tracking_uri),
    }
