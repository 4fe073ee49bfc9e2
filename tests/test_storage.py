"""The object store against a real SeaweedFS server (and the local-directory store)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
import torch
from minio import Minio

from cdarts.alphas_file import load_alphas
from cdarts.checkpoint_mirror import mirror_uri
from cdarts.config import DataConfig, ExperimentConfig
from cdarts.errors import StorageError
from cdarts.model_file import load_model
from cdarts.runners.data_prep import run_data_prep
from cdarts.runners.retrain import run_retrain
from cdarts.runners.search import run_search
from cdarts.spaces.darts.parser import reference_genotype
from cdarts.storage import (
    MANIFEST_NAME,
    LocalStore,
    S3Settings,
    S3Store,
    download_directory,
    open_store,
    upload_directory,
)
from tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY
from tests.test_data_prep import write_cifar10


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _sample_directory(root: Path, big_bytes: int = 0) -> Path:
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "a.json").write_text('{"x": 1}')
    (root / "nested" / "b.bin").write_bytes(os.urandom(3000))
    (root / "nested" / "deeper" / "c.txt").write_text("c" * 10)
    if big_bytes:
        (root / "big.bin").write_bytes(os.urandom(big_bytes))
    return root


def _raw_client(endpoint: str) -> Minio:
    return Minio(endpoint.removeprefix("http://"), access_key=S3_ACCESS_KEY, secret_key=S3_SECRET_KEY, secure=False)


def test_directory_round_trip_with_multipart_objects(s3_env: str, tmp_path: Path) -> None:
    source = _sample_directory(tmp_path / "src", big_bytes=20 * 1024 * 1024)  # > one 16 MiB part
    store, prefix = open_store("s3://cdarts/tests/round-trip")
    store.check()
    assert upload_directory(store, source, prefix) == 4
    assert f"{prefix}/{MANIFEST_NAME}" in store.list_keys(prefix)
    assert download_directory(store, prefix, tmp_path / "back") == 4
    assert _tree(tmp_path / "back") == _tree(source)
    etag = _raw_client(s3_env).stat_object("cdarts", f"{prefix}/big.bin").etag
    assert etag is not None and etag.endswith("-2")  # uploaded in two parts


def test_local_store_has_the_same_semantics(tmp_path: Path) -> None:
    source = _sample_directory(tmp_path / "src")
    store = LocalStore(tmp_path / "store")
    store.check()
    upload_directory(store, source, "run/1")
    download_directory(store, "run/1", tmp_path / "back")
    assert _tree(tmp_path / "back") == _tree(source)
    with pytest.raises(StorageError, match="escapes the store root"):
        store.upload_file(source / "a.json", "../outside.json")


def test_a_prefix_without_manifest_is_not_a_directory(s3_env: str, tmp_path: Path) -> None:
    store, _ = open_store("s3://cdarts")
    source = _sample_directory(tmp_path / "src")
    store.upload_file(source / "a.json", "half-written/a.json")
    with pytest.raises(StorageError, match="not a complete published directory"):
        download_directory(store, "half-written", tmp_path / "back")


def test_corrupted_object_is_detected_on_download(s3_env: str, tmp_path: Path) -> None:
    store, _ = open_store("s3://cdarts")
    original = tmp_path / "original.bin"
    original.write_bytes(b"x" * 5000)
    store.upload_file(original, "corrupt/file.bin")
    # Replace the bytes but keep the recorded checksum: what bit rot or a bad writer looks like.
    client = _raw_client(s3_env)
    metadata = client.stat_object("cdarts", "corrupt/file.bin").metadata
    sha = {k.lower(): v for k, v in metadata.items()}["x-amz-meta-sha256"]
    client.put_object("cdarts", "corrupt/file.bin", io.BytesIO(b"y" * 5000), 5000, metadata={"sha256": sha})
    with pytest.raises(StorageError, match="corrupt"):
        store.download_file("corrupt/file.bin", tmp_path / "copy.bin")
    assert not (tmp_path / "copy.bin").exists()


def test_wrong_credentials_are_refused_without_echoing_them(seaweedfs: str) -> None:
    wrong_secret = "definitely-not-the-secret"
    settings = S3Settings(seaweedfs.removeprefix("http://"), False, None, S3_ACCESS_KEY, wrong_secret)
    with pytest.raises(StorageError, match="SignatureDoesNotMatch") as info:
        S3Store(settings, "cdarts", attempts=2, backoff_seconds=0.01).check()
    assert wrong_secret not in str(info.value)
    unknown = S3Settings(seaweedfs.removeprefix("http://"), False, None, "nobody", wrong_secret)
    with pytest.raises(StorageError, match="InvalidAccessKeyId"):
        S3Store(unknown, "cdarts", attempts=2, backoff_seconds=0.01).check()


def test_unreachable_endpoint_and_missing_bucket_are_reported_clearly(seaweedfs: str) -> None:
    dead = S3Settings("127.0.0.1:9", False, None, S3_ACCESS_KEY, S3_SECRET_KEY)
    with pytest.raises(StorageError, match=r"cannot reach s3://cdarts at 127\.0\.0\.1:9"):
        S3Store(dead, "cdarts", attempts=2, backoff_seconds=0.01).check()
    live = S3Settings(seaweedfs.removeprefix("http://"), False, None, S3_ACCESS_KEY, S3_SECRET_KEY)
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        S3Store(live, "no-such-bucket").check()


def test_missing_endpoint_configuration_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CDARTS_S3_ENDPOINT", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StorageError, match="no S3 endpoint configured"):
        open_store("s3://cdarts/x")


def test_transient_failures_are_retried_with_backoff(s3_env: str, tmp_path: Path) -> None:
    store, _ = open_store("s3://cdarts")
    assert isinstance(store, S3Store)
    store.backoff_seconds = 0.01
    real_put = store.client.fput_object
    failures = iter([ConnectionResetError("reset by peer"), TimeoutError("timed out")])

    def flaky_put(*args: object, **kwargs: object) -> object:
        # A fault a healthy server cannot be made to produce on demand: two dropped connections.
        error = next(failures, None)
        if error is not None:
            raise error
        return real_put(*args, **kwargs)  # type: ignore[arg-type]

    store.client.fput_object = flaky_put  # type: ignore[method-assign]
    payload = tmp_path / "p.txt"
    payload.write_text("eventually")
    store.upload_file(payload, "retry/p.txt")
    store.download_file("retry/p.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "eventually"


def test_data_prep_reads_a_cifar_archive_from_s3(s3_env: str, tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    store, _ = open_store("s3://data")
    store.upload_file(archive, "cifar/cifar-10-python.tar.gz")
    remote = run_data_prep(
        DataConfig(source="cifar10", location="s3://data/cifar/cifar-10-python.tar.gz"), 0, tmp_path / "remote"
    )
    local = run_data_prep(DataConfig(source="cifar10", location=str(archive)), 0, tmp_path / "local")
    assert remote.digest == local.digest
    assert remote.manifest["source"]["location"] == "s3://data/cifar/cifar-10-python.tar.gz"
    with pytest.raises(StorageError, match="nothing found"):
        run_data_prep(DataConfig(source="cifar10", location="s3://data/missing/"), 0, tmp_path / "none")


def test_a_fresh_task_resumes_the_search_from_the_mirrored_checkpoint(
    s3_env: str, tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    """What a KFP retry on another pod sees: an empty output directory, a checkpoint in S3."""
    config = tiny_config.model_copy(update={"search": tiny_config.search.model_copy(update={"search_iterations": 4})})
    mirror = mirror_uri("s3://cdarts/checkpoints", "run-1", "search")
    assert mirror == "s3://cdarts/checkpoints/run-1/search-last.pt"
    run_search(config, tiny_dataset, tmp_path / "straight")
    first = run_search(config, tiny_dataset, tmp_path / "pod-1", max_iterations=2, checkpoint_mirror=mirror)
    assert not first.completed
    second = run_search(config, tiny_dataset, tmp_path / "pod-2", checkpoint_mirror=mirror)  # a new, empty pod
    assert second.completed and second.cycles_completed == config.search.num_cycles
    straight = load_alphas(tmp_path / "straight" / "alphas.pt").alphas
    resumed = load_alphas(tmp_path / "pod-2" / "alphas.pt").alphas
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_a_fresh_task_resumes_the_retrain_from_a_mirrored_checkpoint(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    config = tiny_config.model_copy(update={"retrain": tiny_config.retrain.model_copy(update={"epochs": 3})})
    genotype = reference_genotype("DARTS_V1")
    mirror = str(tmp_path / "mirror" / "retrain-last.pt")  # the local-directory store
    run_retrain(config, tiny_dataset, genotype, tmp_path / "straight")
    run_retrain(config, tiny_dataset, genotype, tmp_path / "pod-1", max_epochs=2, checkpoint_mirror=mirror)
    result = run_retrain(config, tiny_dataset, genotype, tmp_path / "pod-2", checkpoint_mirror=mirror)
    assert result.completed and result.epochs_run == 1  # only the last epoch was left
    a, _ = load_model(tmp_path / "straight")
    b, _ = load_model(tmp_path / "pod-2")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_unreachable_mirror_fails_before_training(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDARTS_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(StorageError, match="cannot reach"):
        run_search(tiny_config, tiny_dataset, tmp_path / "s", checkpoint_mirror="s3://cdarts/ck/search-last.pt")
    assert not (tmp_path / "s" / "metrics.jsonl").exists()
