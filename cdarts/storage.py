"""Object storage: an S3 store (MinIO, SeaweedFS, AWS; minio SDK) and a local-directory store
behind one interface. The only module that imports the minio SDK.

URIs are ``s3://bucket/prefix`` or plain paths. Uploaded objects carry their SHA-256 in the
object metadata and downloads are checked against it and the size. Directories are published
manifest-last: every file first, then ``_MANIFEST.json`` listing them, so a prefix without a
manifest is incomplete and is never read as a directory. Small records can be written
conditionally (create-if-absent, replace-if-unchanged: S3 ``If-None-Match`` / ``If-Match``, sent
through boto3's public API in ``cdarts.s3_conditional``), the compare-and-swap that the
idempotency ledger builds on. Prefixes download in parallel, a bounded number at a time
(``cdarts.parallel_download``). Credentials come from the environment
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``; on a cluster from Kubernetes Secrets) and
never appear in messages.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlparse

from cdarts.atomic_files import atomic_writer
from cdarts.errors import StorageError
from cdarts.parallel_download import download_all, download_concurrency
from cdarts.s3_conditional import ConditionalWriter

MANIFEST_NAME = "_MANIFEST.json"
_ACCESS_PROBE_KEY = ".cdarts-access-check"  # read (never written) to test a prefix-scoped key
PART_SIZE = 16 * 1024 * 1024
_SHA_KEY = "sha256"
T = TypeVar("T")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_remote(uri: str) -> bool:
    return uri.startswith("s3://")


class ObjectStore(Protocol):
    """Keys are ``/``-separated paths inside the store's bucket or root directory."""

    def check(self) -> None: ...
    def upload_file(self, local: Path, key: str) -> None: ...
    def download_file(self, key: str, local: Path) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list_keys(self, prefix: str) -> list[str]: ...

    # Conditional writes of small records; a version is an opaque token of one object state.
    def read_versioned(self, key: str) -> tuple[bytes, str] | None: ...
    def create_if_absent(self, key: str, data: bytes) -> bool: ...
    def replace_if_version(self, key: str, data: bytes, version: str) -> bool: ...
    def delete(self, key: str) -> None: ...


# -- local directory store ------------------------------------------------------------------------


class LocalStore:
    """A directory on this machine (the embedded default); same semantics as the S3 store."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents and path != self.root.resolve():
            raise StorageError(f"key {key!r} escapes the store root")
        return path

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"store directory {self.root} is not writable")

    def upload_file(self, local: Path, key: str) -> None:
        with local.open("rb") as source, atomic_writer(self._path(key)) as target:
            shutil.copyfileobj(source, target)

    def download_file(self, key: str, local: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise StorageError(f"no object {key!r} in {self.root}")
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, local)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.endswith((".partial", ".lock"))
        )

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        data = path.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def create_if_absent(self, key: str, data: bytes) -> bool:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.{time.monotonic_ns()}.partial")
        partial.write_bytes(data)
        try:
            os.link(partial, target)  # atomic, and fails if the target exists
            return True
        except FileExistsError:
            return False
        finally:
            partial.unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def replace_if_version(self, key: str, data: bytes, version: str) -> bool:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with (target.parent / f"{target.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the compare and the swap happen under one lock
            current = self.read_versioned(key)
            if current is None or current[1] != version:
                return False
            partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
            partial.write_bytes(data)
            os.replace(partial, target)
            return True


# -- S3 store -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Settings:
    endpoint: str  # host:port
    secure: bool
    region: str | None
    access_key: str | None
    secret_key: str | None

    @classmethod
    def from_env(cls) -> S3Settings:
        """``CDARTS_S3_ENDPOINT`` (or ``AWS_ENDPOINT_URL`` / ``MLFLOW_S3_ENDPOINT_URL``) as a URL,
        ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``."""
        raw = (
            os.environ.get("CDARTS_S3_ENDPOINT")
            or os.environ.get("AWS_ENDPOINT_URL")
            or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
        )
        if not raw:
            raise StorageError("no S3 endpoint configured: set CDARTS_S3_ENDPOINT (e.g. http://minio:9000)")
        parsed = urlparse(raw if "://" in raw else f"https://{raw}")
        if not parsed.hostname:
            raise StorageError(f"S3 endpoint {raw!r} is not a URL")
        port = f":{parsed.port}" if parsed.port else ""
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region is None and not parsed.hostname.endswith(".amazonaws.com"):
            # MinIO and SeaweedFS sign and answer in us-east-1 whatever the name; naming it saves
            # the GetBucketLocation lookup, which prefix-scoped keys (KFP's per-profile keys) may
            # not make. AWS endpoints keep looking their bucket's region up.
            region = "us-east-1"
        return cls(
            endpoint=f"{parsed.hostname}{port}",
            secure=parsed.scheme == "https",
            region=region,
            access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        )


# S3 error codes that no retry can fix: report them at once.
_PERMANENT_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "NoSuchKey",
    "InvalidBucketName",
    "AllAccessDisabled",
}


S3_RETRY_SECONDS_ENV = "CDARTS_S3_RETRY_SECONDS"
DEFAULT_S3_RETRY_SECONDS = 60.0


def s3_retry_seconds() -> float:
    """How long S3 calls keep retrying after their first failure: ``$CDARTS_S3_RETRY_SECONDS``
    (default 60). It also caps how long one attempt may wait for an answer, so a dead or hung
    object store fails a stage in about twice this time, not in minutes of retries."""
    raw = os.environ.get(S3_RETRY_SECONDS_ENV, "").strip()
    if not raw:
        return DEFAULT_S3_RETRY_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or not 0 < seconds <= 3600:
        raise StorageError(f"{S3_RETRY_SECONDS_ENV}={raw!r} is not a number of seconds in (0, 3600]")
    return seconds


class S3Store:
    """One bucket of an S3-compatible server."""

    def __init__(
        self,
        settings: S3Settings,
        bucket: str,
        attempts: int = 4,
        backoff_seconds: float = 0.5,
        retry_seconds: float | None = None,
    ) -> None:
        import urllib3
        from minio import Minio

        self.settings = settings
        self.bucket = bucket
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.retry_seconds = s3_retry_seconds() if retry_seconds is None else retry_seconds
        self._writer: ConditionalWriter | None = None
        # Our own retry loop handles transient failures; the HTTP layer fails fast. A read that
        # waits longer than the retry budget is treated as a dead server.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(5.0, self.retry_seconds), read=min(120.0, self.retry_seconds)),
            retries=urllib3.Retry(total=0, raise_on_status=False),
            maxsize=max(10, download_concurrency()),  # one connection per parallel download
        )
        self.client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
            http_client=http,
        )

    def _describe(self) -> str:
        return f"s3://{self.bucket} at {self.settings.endpoint}"

    def _call(self, what: str, operation: Callable[[], T]) -> T:
        """Run ``operation``, retrying transient failures with exponential backoff for at most
        ``retry_seconds`` after the first failure (and at most ``attempts`` times)."""
        from minio.error import S3Error
        from urllib3.exceptions import HTTPError

        deadline: float | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                return operation()
            except S3Error as error:
                failure = f"{what} on {self._describe()} failed: {error.code}"
                if error.code in _PERMANENT_CODES:
                    raise StorageError(failure) from None
            except (OSError, ValueError, HTTPError) as error:  # connection refused, reset, timed out
                failure = f"{what}: cannot reach {self._describe()} ({type(error).__name__})"
            pause = self.backoff_seconds * 2 ** (attempt - 1)
            deadline = deadline or time.monotonic() + self.retry_seconds
            if attempt == self.attempts or time.monotonic() + pause >= deadline:
                raise StorageError(f"{failure}; gave up after {attempt} attempt(s)") from None
            time.sleep(pause)
        raise AssertionError("unreachable")

    def check(self) -> None:
        """Fail fast with a clear message if the server, the credentials or the bucket are wrong.

        A key limited to some prefixes (Kubeflow Pipelines' per-profile keys) may not ask about
        the bucket itself; then a read of an object nobody writes tells a wrong key (refused
        signature) from a scoped one (access denied), and a missing bucket from an existing one.
        """
        from minio.error import S3Error

        def bucket_answer() -> bool | None:
            try:
                return bool(self.client.bucket_exists(self.bucket))
            except S3Error as error:
                if error.code == "AccessDenied":
                    return None
                raise

        exists = self._call("checking the bucket", bucket_answer)
        if exists is None:
            exists = self._call("checking the bucket", self._scoped_key_sees_bucket)
        if not exists:
            raise StorageError(f"bucket {self.bucket!r} does not exist at {self.settings.endpoint}")

    def _scoped_key_sees_bucket(self) -> bool:
        from minio.error import S3Error

        try:
            response = self.client.get_object(self.bucket, _ACCESS_PROBE_KEY)
        except S3Error as error:
            if error.code == "NoSuchBucket":
                return False
            if error.code in ("NoSuchKey", "NoSuchObject", "AccessDenied"):
                return True
            raise
        response.close()
        response.release_conn()
        return True

    def upload_file(self, local: Path, key: str) -> None:
        digest = sha256_file(local)
        self._call(
            f"uploading {key}",
            lambda: self.client.fput_object(
                self.bucket, key, str(local), metadata={_SHA_KEY: digest}, part_size=PART_SIZE
            ),
        )

    def download_file(self, key: str, local: Path) -> None:
        stat = self._call(f"reading {key}", lambda: self.client.stat_object(self.bucket, key))
        expected = {k.lower(): v for k, v in (stat.metadata or {}).items()}.get(f"x-amz-meta-{_SHA_KEY}")
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(local.name + ".partial")
        self._call(f"downloading {key}", lambda: self.client.fget_object(self.bucket, key, str(partial)))
        size = partial.stat().st_size
        if size != stat.size or (expected is not None and sha256_file(partial) != expected):
            partial.unlink(missing_ok=True)
            raise StorageError(f"{key} from {self._describe()} is corrupt (size or checksum mismatch)")
        os.replace(partial, local)

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, key)
            return True
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject"):
                return False
            raise StorageError(f"checking {key} on {self._describe()} failed: {error.code}") from None

    def list_keys(self, prefix: str) -> list[str]:
        objects = self._call(
            f"listing {prefix}", lambda: list(self.client.list_objects(self.bucket, prefix=prefix, recursive=True))
        )
        return sorted(str(o.object_name) for o in objects)

    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        from minio.error import S3Error

        def read() -> tuple[bytes, str] | None:
            try:
                response = self.client.get_object(self.bucket, key)
            except S3Error as error:
                if error.code in ("NoSuchKey", "NoSuchObject"):
                    return None
                raise
            try:
                return response.read(), str(response.headers.get("ETag", "")).strip('"')
            finally:
                response.close()
                response.release_conn()

        return self._call(f"reading {key}", read)

    def _conditional(self) -> ConditionalWriter:
        if self._writer is None:
            scheme = "https" if self.settings.secure else "http"
            self._writer = ConditionalWriter(
                f"{scheme}://{self.settings.endpoint}",
                self.bucket,
                self.settings.region,
                self.settings.access_key,
                self.settings.secret_key,
                self.retry_seconds,
            )
        return self._writer

    def create_if_absent(self, key: str, data: bytes) -> bool:
        """PUT with ``If-None-Match: *`` (boto3); False when the object already exists."""
        return self._call(f"creating {key}", lambda: self._conditional().create(key, data))

    def delete(self, key: str) -> None:
        self._call(f"deleting {key}", lambda: self.client.remove_object(self.bucket, key))

    def replace_if_version(self, key: str, data: bytes, version: str) -> bool:
        """PUT with ``If-Match: <etag>`` (boto3); False when the object changed or is gone."""
        return self._call(f"replacing {key}", lambda: self._conditional().replace(key, data, version))


# -- URIs and directories ------------------------------------------------------------------------------


def open_store(uri: str) -> tuple[ObjectStore, str]:
    """``s3://bucket/prefix`` -> (S3 store, "prefix"); a path -> (local store at that path, "")."""
    if is_remote(uri):
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise StorageError(f"{uri!r} names no bucket")
        return S3Store(S3Settings.from_env(), parsed.netloc), parsed.path.strip("/")
    return LocalStore(Path(uri)), ""


def _join(prefix: str, name: str) -> str:
    return f"{prefix.rstrip('/')}/{name}" if prefix else name


def _files(directory: Path) -> Iterator[Path]:
    # Temp files of the atomic writer and the output directory's lock are not part of it.
    return (p for p in sorted(directory.rglob("*")) if p.is_file() and not p.name.endswith((".partial", ".lock")))


def upload_directory(store: ObjectStore, local: Path, prefix: str) -> int:
    """Upload every file of ``local`` under ``prefix``, then the manifest; returns the file count."""
    entries = {}
    for path in _files(local):
        name = path.relative_to(local).as_posix()
        store.upload_file(path, _join(prefix, name))
        entries[name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = local.parent / f".{local.name}{MANIFEST_NAME}.partial"
    manifest.write_text(json.dumps({"files": entries}, indent=1), encoding="utf-8")
    try:
        store.upload_file(manifest, _join(prefix, MANIFEST_NAME))  # published last
    finally:
        manifest.unlink(missing_ok=True)
    return len(entries)


def download_directory(store: ObjectStore, prefix: str, local: Path) -> int:
    """Download a published directory (its manifest must exist); returns the file count."""
    manifest_key = _join(prefix, MANIFEST_NAME)
    if not store.exists(manifest_key):
        raise StorageError(f"{prefix or '(root)'} is not a complete published directory (no {MANIFEST_NAME})")
    local.mkdir(parents=True, exist_ok=True)
    manifest_path = local / MANIFEST_NAME
    store.download_file(manifest_key, manifest_path)
    entries = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    manifest_path.unlink()

    def fetch(name: str, target: Path) -> None:
        entry = entries[name]
        store.download_file(_join(prefix, name), target)
        if target.stat().st_size != entry["size"] or sha256_file(target) != entry["sha256"]:
            raise StorageError(f"{_join(prefix, name)} does not match its manifest entry")

    return download_all(fetch, ((name, local / name) for name in entries))


def fetch_to_local(uri: str, workdir: Path) -> Path:
    """A local path for a data location: paths are returned as they are; ``s3://`` objects are
    downloaded into ``workdir`` (one object, or every object under a prefix)."""
    if not is_remote(uri):
        return Path(uri)
    store, key = open_store(uri)
    store.check()
    name = key.rstrip("/").rsplit("/", 1)[-1] or "data"
    if key and store.exists(key):
        target = workdir / name
        store.download_file(key, target)
        return target
    keys = store.list_keys(_join(key, ""))
    if not keys:
        raise StorageError(f"nothing found at {uri}")
    target = workdir / name
    download_all(store.download_file, ((k, target / k[len(key) :].lstrip("/")) for k in keys))
    return target
