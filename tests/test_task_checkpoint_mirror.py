"""A retried KFP task resumes by default: its checkpoint is mirrored beside its own output artifact
(run-scoped by KFP), in the real S3 store; stores we cannot write fall back with a warning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cdarts.alphas_file import load_alphas
from cdarts.artifact_location import object_store_uri, sibling_location
from cdarts.checkpoint_mirror import task_checkpoint_mirror
from cdarts.config import ExperimentConfig
from cdarts.runners.search import run_search
from cdarts.storage import open_store

# What KFP's driver gives the search task's `supernet` output with the default pipeline root.
SUPERNET_URI = "minio://cdarts/v2/artifacts/cdarts-search/3f2a-run/search/8c1d/supernet"


def test_artifact_uris_map_to_our_store() -> None:
    assert object_store_uri(SUPERNET_URI) == "s3://cdarts/v2/artifacts/cdarts-search/3f2a-run/search/8c1d/supernet"
    assert object_store_uri("s3://bucket/a/b") == "s3://bucket/a/b"
    assert object_store_uri("/local/outputs/supernet") == "/local/outputs/supernet"  # kfp.local
    assert object_store_uri("gs://bucket/a") is None and object_store_uri("minio://") is None
    assert sibling_location("s3://b/k/model", ".checkpoint") == "s3://b/k/model.checkpoint"


def test_a_retried_search_task_resumes_beside_its_output_without_a_checkpoint_root(
    s3_env: str, tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    mirror = task_checkpoint_mirror("", "", "search", SUPERNET_URI)
    assert mirror == "s3://cdarts/v2/artifacts/cdarts-search/3f2a-run/search/8c1d/supernet.checkpoint/search-last.pt"
    config = tiny_config.model_copy(update={"search": tiny_config.search.model_copy(update={"search_iterations": 4})})
    run_search(config, tiny_dataset, tmp_path / "straight")
    # The first attempt is preempted; the retry gets a new, empty pod but the same output URI.
    first = run_search(config, tiny_dataset, tmp_path / "attempt-1", max_iterations=2, checkpoint_mirror=mirror)
    assert not first.completed
    store, key = open_store(mirror)
    assert store.exists(key)  # published outside the artifact, which KFP uploads only on success
    second = run_search(config, tiny_dataset, tmp_path / "attempt-2", checkpoint_mirror=mirror)
    assert second.completed
    straight = load_alphas(tmp_path / "straight" / "alphas.pt").alphas
    resumed = load_alphas(tmp_path / "attempt-2" / "alphas.pt").alphas
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)


def test_an_explicit_checkpoint_root_still_wins(s3_env: str) -> None:
    assert task_checkpoint_mirror("s3://cdarts/ck", "scope-1", "retrain", SUPERNET_URI) == (
        "s3://cdarts/ck/scope-1/retrain-last.pt"
    )


def test_stores_without_mirroring_fall_back_with_a_warning(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert task_checkpoint_mirror("", "", "search", "gs://bucket/run/search/supernet") is None
    assert "a retried search starts over" in capsys.readouterr().err
    assert task_checkpoint_mirror("", "", "search", "/kfp/local/outputs/supernet") is None  # kfp.local
    assert capsys.readouterr().err == ""
    # KFP's store is not the one our S3 settings reach: warn and train on, without a mirror.
    monkeypatch.setenv("CDARTS_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    assert task_checkpoint_mirror("", "", "retrain", SUPERNET_URI) is None
    warning = capsys.readouterr().err
    assert "cannot mirror checkpoints beside the task output" in warning and "retried retrain" in warning
    monkeypatch.delenv("CDARTS_S3_ENDPOINT")
    assert task_checkpoint_mirror("", "", "retrain", SUPERNET_URI) is None
    assert "no S3 endpoint configured" in capsys.readouterr().err
