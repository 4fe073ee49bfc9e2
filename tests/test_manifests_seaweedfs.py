"""The standalone-seaweedfs overlay's server, run from its rendered StatefulSet (command line and
environment; loopback addresses, free ports and a temporary volume are the test's): it creates
the bucket, requires signed requests with the Secret's keys, and honours conditional writes."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdarts.errors import StorageError
from cdarts.idempotency import open_ledger
from cdarts.local_stack.ports import free_port_pairs, wait_for_port
from cdarts.local_stack.seaweedfs import weed_binary
from tests.test_manifests import _expand, render

OVERLAY = "overlays/standalone-seaweedfs"
KEYS = {"AWS_ACCESS_KEY_ID": "standalone-test", "AWS_SECRET_ACCESS_KEY": "standalone-secret-0123456789"}


def _statefulset() -> dict[str, Any]:
    (statefulset,) = [doc for doc in render(OVERLAY) if doc["kind"] == "StatefulSet"]
    return statefulset


@pytest.fixture(scope="module")
def rendered_seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("seaweedfs-as-rendered")
    (container,) = _statefulset()["spec"]["template"]["spec"]["containers"]
    env = {"POD_IP": "127.0.0.1", "HOME": str(root), **KEYS}
    declared = {entry["name"] for entry in container["env"]}
    assert declared == set(env)
    (data,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data"]
    args = [_expand(arg, env).replace(f"-dir={data}", f"-dir={root / 'data'}") for arg in container["args"]]
    assert "-ip=127.0.0.1" in args and "-master.telemetry=false" in args and "-ip.bind=0.0.0.0" in args
    args = [arg.replace("-ip.bind=0.0.0.0", "-ip.bind=127.0.0.1") for arg in args]  # loopback only here
    s3, master, filer, volume, admin = free_port_pairs(5, start=36000, stop=40000)
    ports = [f"-s3.port={s3}", f"-master.port={master}", f"-filer.port={filer}", f"-volume.port={volume}"]
    (root / "data").mkdir()
    assert container["command"] == ["weed"]
    with (root / "weed.log").open("ab") as log:
        process = subprocess.Popen(
            [weed_binary(), *args, *ports, f"-admin.port={admin}"],
            env={**os.environ, **env, "S3_BUCKET": ""},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_for_port(s3, 60) and process.poll() is None, (root / "weed.log").read_text()[-2000:]
        time.sleep(1.0)  # the bucket appears just after the port opens
        yield f"http://127.0.0.1:{s3}"
    finally:
        process.terminate()
        process.wait(timeout=15)


def _use(monkeypatch: pytest.MonkeyPatch, endpoint: str, **overrides: str) -> None:
    monkeypatch.setenv("CDARTS_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("CDARTS_S3_RETRY_SECONDS", "5")
    for name, value in {**KEYS, **overrides}.items():
        monkeypatch.setenv(name, value)


@pytest.mark.slow
def test_the_rendered_server_serves_the_bucket_and_the_ledger(
    rendered_seaweedfs: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _use(monkeypatch, rendered_seaweedfs)
    ledger = open_ledger("s3://cdarts/gitops/idempotency")  # probes If-None-Match
    assert ledger.store.list_keys(ledger.prefix) == []
    from cdarts.storage import open_store

    store, _ = open_store("s3://cdarts")
    (tmp_path / "a.txt").write_text("a")
    store.upload_file(tmp_path / "a.txt", "checkpoints/a.txt")
    store.download_file("checkpoints/a.txt", tmp_path / "b.txt")
    assert (tmp_path / "b.txt").read_text() == "a"


@pytest.mark.slow
def test_the_rendered_server_refuses_anonymous_and_wrongly_signed_requests(
    rendered_seaweedfs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{rendered_seaweedfs}/cdarts?list-type=2", timeout=10)
    assert anonymous.value.code == 403
    _use(monkeypatch, rendered_seaweedfs, AWS_SECRET_ACCESS_KEY="wrong-secret-0000000000")
    from cdarts.storage import open_store

    with pytest.raises(StorageError, match="SignatureDoesNotMatch"):
        open_store("s3://cdarts")[0].check()


def test_the_settings_point_at_the_rendered_service() -> None:
    documents = render(OVERLAY)
    (service,) = [
        doc for doc in documents if doc["kind"] == "Service" and doc["metadata"]["name"] == "cdarts-seaweedfs"
    ]
    (port,) = service["spec"]["ports"]
    for doc in documents:
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "cdarts-settings":
            assert (
                doc["data"]["CDARTS_S3_ENDPOINT"] == f"http://cdarts-seaweedfs.cdarts.svc.cluster.local:{port['port']}"
            )
    (container,) = _statefulset()["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [port["port"]] == [8333]
    assert "-bucket=cdarts" in container["args"]
