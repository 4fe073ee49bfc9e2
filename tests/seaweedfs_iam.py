"""A real SeaweedFS with its IAM API writable, as Kubeflow Pipelines runs it in multi-user mode:
an admin identity, and users created through IAM with inline policies (KFP's profile
controller creates one per profile namespace this way)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from cdarts.local_stack.seaweedfs import start_seaweedfs

ADMIN_KEY = "kfp-admin"
ADMIN_SECRET = "kfp-admin-secret-0123456789"  # a throwaway credential of this test server only


@dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str


@contextmanager
def seaweedfs_with_iam(data_dir: Path, buckets: list[str]) -> Iterator[str]:
    """``weed mini`` on loopback with a writable IAM API and an admin identity; yields the S3
    endpoint URL."""
    server = start_seaweedfs(data_dir, ADMIN_KEY, ADMIN_SECRET, buckets, identity_name="admin", writable_iam=True)
    try:
        yield server.endpoint
    finally:
        server.stop()


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
