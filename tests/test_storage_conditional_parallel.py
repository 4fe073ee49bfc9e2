"""The ledger's conditional writes (boto3's public IfNoneMatch / IfMatch) and parallel prefix
downloads, against the real SeaweedFS test server."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import pytest

from cdarts.errors import StorageError
from cdarts.idempotency import open_ledger
from cdarts.parallel_download import download_all, download_concurrency
from cdarts.storage import S3Store, download_directory, fetch_to_local, open_store, upload_directory
from tests.conftest import REPO_ROOT


def _s3(uri: str) -> tuple[S3Store, str]:
    store, prefix = open_store(uri)
    assert isinstance(store, S3Store)
    return store, prefix


def test_no_private_minio_api_is_used_anywhere() -> None:
    for path in (REPO_ROOT / "cdarts").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        private = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "_put_object"]
        assert not private, f"{path.relative_to(REPO_ROOT)} calls minio's private _put_object"


def test_create_if_absent_and_replace_if_version_race_correctly(s3_env: str) -> None:
    store, prefix = _s3("s3://cdarts/tests/conditional")
    key = f"{prefix}/record-{time.monotonic_ns()}"
    assert store.read_versioned(key) is None
    assert not store.replace_if_version(key, b"x", "0" * 32)  # nothing to replace
    # Eight writers race to create the same key: exactly one wins.
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def create(value: int) -> None:
        barrier.wait()
        wins.append(_s3("s3://cdarts")[0].create_if_absent(key, str(value).encode()))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 7 + [True]
    found = store.read_versioned(key)
    assert found is not None
    data, version = found
    # Two writers that read the same version: one swap takes effect, the other sees it lost.
    assert store.replace_if_version(key, data + b"-a", version)
    assert not store.replace_if_version(key, data + b"-b", version)
    assert store.read_versioned(key) == (data + b"-a", store.read_versioned(key)[1])  # type: ignore[index]


def test_the_ledger_probe_passes_on_seaweedfs(s3_env: str) -> None:
    ledger = open_ledger(f"s3://cdarts/tests/ledger-{time.monotonic_ns()}")
    ledger.check()
    assert ledger.store.list_keys(ledger.prefix) == []


def test_conditional_writes_with_wrong_credentials_fail_in_one_line(
    s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-0000")
    store, prefix = _s3("s3://cdarts/tests/conditional")
    with pytest.raises(StorageError) as raised:
        store.create_if_absent(f"{prefix}/denied", b"x")
    assert "SignatureDoesNotMatch" in str(raised.value) and "not-the-secret" not in str(raised.value)


def test_a_dead_server_is_retried_within_the_budget_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from cdarts.local_stack.ports import free_port_pairs

    (port,) = free_port_pairs(1)
    monkeypatch.setenv("CDARTS_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CDARTS_S3_RETRY_SECONDS", "2")
    store, _ = _s3("s3://cdarts")
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"creating k: cannot reach .* gave up after \d attempt"):
        store.create_if_absent("k", b"x")
    assert time.monotonic() - started < 10


def _many_objects(tmp_path: Path, count: int) -> Path:
    source = tmp_path / "folder"
    for index in range(count):
        path = source / f"class{index % 4}" / f"img{index:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes([index % 256]) * (100 + index))
    return source


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class _Gauge:
    """Counts the downloads of a real store that are in flight at once."""

    def __init__(self, store: S3Store) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.now = self.peak = 0

    def download_file(self, key: str, local: Path) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            time.sleep(0.02)  # hold the slot long enough for the others to pile up
            self.store.download_file(key, local)
        finally:
            with self.lock:
                self.now -= 1


def test_a_prefix_downloads_in_parallel_with_bounded_concurrency(s3_env: str, tmp_path: Path) -> None:
    source = _many_objects(tmp_path, 48)
    store, prefix = _s3(f"s3://cdarts/tests/parallel-{time.monotonic_ns()}")
    for path in sorted(source.rglob("*.bin")):
        store.upload_file(path, f"{prefix}/folder/{path.relative_to(source).as_posix()}")
    gauge = _Gauge(store)
    keys = store.list_keys(f"{prefix}/folder/")
    target = tmp_path / "back"
    count = download_all(gauge.download_file, ((k, target / k.split("/folder/", 1)[1]) for k in keys), concurrency=6)
    assert count == 48 and _tree(target) == _tree(source)
    assert 2 <= gauge.peak <= 6
    # fetch_to_local, as data prep uses it on an s3:// image folder, gives the same tree.
    fetched = fetch_to_local(f"s3://cdarts/{prefix}/folder", tmp_path / "work")
    assert _tree(fetched) == _tree(source)


def test_a_published_directory_downloads_in_parallel_and_checks_its_manifest(s3_env: str, tmp_path: Path) -> None:
    source = _many_objects(tmp_path, 20)
    store, prefix = _s3(f"s3://cdarts/tests/published-{time.monotonic_ns()}")
    assert upload_directory(store, source, prefix) == 20
    assert download_directory(store, prefix, tmp_path / "back") == 20
    assert _tree(tmp_path / "back") == _tree(source)
    # One object replaced behind the manifest's back: the download fails, naming it.
    (tmp_path / "evil.bin").write_bytes(b"tampered")
    store.upload_file(tmp_path / "evil.bin", f"{prefix}/class1/img005.bin")
    with pytest.raises(StorageError, match=r"class1/img005\.bin does not match its manifest entry"):
        download_directory(store, prefix, tmp_path / "again")


def test_the_first_failure_stops_new_downloads(tmp_path: Path) -> None:
    done: list[str] = []

    def download(key: str, local: Path) -> None:
        if key == "k3":
            raise StorageError("no object 'k3'")
        time.sleep(0.01)
        done.append(key)

    with pytest.raises(StorageError, match="k3"):
        download_all(download, ((f"k{i}", tmp_path / f"k{i}") for i in range(1000)), concurrency=2)
    assert len(done) < 20  # the remaining hundreds were never started


def test_the_concurrency_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert download_concurrency() == 16
    monkeypatch.setenv("CDARTS_S3_DOWNLOAD_CONCURRENCY", "64")
    assert download_concurrency() == 64
    for bad in ("0", "-3", "many", "1000"):
        monkeypatch.setenv("CDARTS_S3_DOWNLOAD_CONCURRENCY", bad)
        with pytest.raises(StorageError, match="CDARTS_S3_DOWNLOAD_CONCURRENCY"):
            download_concurrency()


def test_wrong_keys_still_fail_the_check_when_the_region_is_named(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """From the environment a non-AWS endpoint is signed for us-east-1, so the bucket check is a
    HEAD (no error body); a wrong key is still told apart from a prefix-scoped one."""
    store, _ = _s3("s3://cdarts")
    assert store.settings.region == "us-east-1"
    store.check()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-0000")
    with pytest.raises(StorageError, match="SignatureDoesNotMatch"):
        _s3("s3://cdarts")[0].check()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    with pytest.raises(StorageError, match="InvalidAccessKeyId"):
        _s3("s3://cdarts")[0].check()
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "cdarts-test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-0123456789")
        _s3("s3://no-such-bucket")[0].check()
