"""A real SeaweedFS with its IAM API writable, as Kubeflow Pipelines runs it in multi-user mode:
an admin identity, and users created through IAM with inline policies (KFP's profile
controller creates one per profile namespace this way)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from cdarts.local_stack.ports import free_port_pairs, wait_for_port
from cdarts.local_stack.seaweedfs import weed_binary

ADMIN_KEY = "kfp-admin"
ADMIN_SECRET = "kfp-admin-secret-0123456789"  # a throwaway credential of this test server only


@dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str


@contextmanager
def seaweedfs_with_iam(data_dir: Path, buckets: list[str]) -> Iterator[str]:
    """``weed mini`` on loopback with a writable IAM API; yields the S3 endpoint URL."""
    config = data_dir / "s3.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    admin = {
        "name": "admin",
        "credentials": [{"accessKey": ADMIN_KEY, "secretKey": ADMIN_SECRET}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    config.write_text(json.dumps({"identities": [admin]}), encoding="utf-8")
    s3, master, filer, volume, admin_port = free_port_pairs(5, start=29000, stop=33000)
    (data_dir / "data").mkdir(exist_ok=True)
    command = [
        weed_binary(),
        "mini",
        f"-dir={data_dir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={config}",
        "-s3.iam.readOnly=false",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.port={s3}",
        f"-master.port={master}",
        f"-filer.port={filer}",
        f"-volume.port={volume}",
        f"-admin.port={admin_port}",
        f"-bucket={','.join(buckets)}",
    ]
    with (data_dir / "weed.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "S3_BUCKET": ""})
    try:
        assert wait_for_port(s3, 60) and process.poll() is None, (data_dir / "weed.log").read_text()[-2000:]
        yield f"http://127.0.0.1:{s3}"
    finally:
        process.terminate()
        process.wait(timeout=15)


def _client(service: str, endpoint: str, keys: Keys) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=keys.access_key,
        aws_secret_access_key=keys.secret_key,
    )


def admin_keys() -> Keys:
    return Keys(ADMIN_KEY, ADMIN_SECRET)


def create_user(endpoint: str, name: str, policy: dict[str, Any]) -> Keys:
    """An IAM user with one access key and ``policy`` inline, created with the admin's keys."""
    iam = _client("iam", endpoint, admin_keys())
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
    return Keys(key["AccessKeyId"], key["SecretAccessKey"])


def s3_client(endpoint: str, keys: Keys) -> Any:
    return _client("s3", endpoint, keys)
