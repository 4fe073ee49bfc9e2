"""Shared fixtures: the tiny config and small networks built from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cdarts.config import ExperimentConfig, load_config
from cdarts.spaces.darts.joint_network import JointNetwork
from cdarts.spaces.darts.space import build_joint_network
from tests.fake_kfp_server import FakeKfp, start_fake_kfp

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"


@pytest.fixture
def tiny_config() -> ExperimentConfig:
    return load_config(str(CONFIGS / "tiny.yaml"))


def tiny_network(config: ExperimentConfig) -> JointNetwork:
    """The tiny joint network for the tiny config's synthetic images (4 classes, 3 x 8 x 8)."""
    assert config.data.num_classes is not None
    data = config.data
    return build_joint_network(config.search, config.darts, data.channels, data.num_classes, data.image_size)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny config's synthetic data, prepared once per test session."""
    from cdarts.runners.data_prep import run_data_prep

    config = load_config(str(CONFIGS / "tiny.yaml"))
    out = tmp_path_factory.mktemp("prepared") / "tiny"
    run_data_prep(config.data, config.seed, out)
    return out


@pytest.fixture
def tiny_model(tiny_config: ExperimentConfig) -> JointNetwork:
    torch.manual_seed(0)
    model = tiny_network(tiny_config)
    model.rebuild_eval_network(model.current_genotype())
    return model


def tiny_batch(config: ExperimentConfig, batch_size: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    data = config.data
    images = torch.randn(batch_size, data.channels, data.image_size, data.image_size, generator=generator)
    labels = torch.randint(0, data.num_classes, (batch_size,), generator=generator)
    return images, labels


# Tiny tensors run faster on one thread than split across cores, and results are repeatable.
torch.set_num_threads(1)


S3_ACCESS_KEY = "cdarts-test"
S3_SECRET_KEY = "test-secret-0123456789"  # a throwaway credential of the test server only


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real SeaweedFS S3 server on 127.0.0.1 for the session; yields its endpoint URL."""
    from cdarts.local_stack.seaweedfs import start_seaweedfs

    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), S3_ACCESS_KEY, S3_SECRET_KEY, ["cdarts", "data"])
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture
def s3_env(seaweedfs: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the storage layer at the test server with the right credentials."""
    monkeypatch.setenv("CDARTS_S3_ENDPOINT", seaweedfs)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    return seaweedfs


@pytest.fixture(scope="session")
def mlflow_server(seaweedfs: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server on 127.0.0.1 (sqlite backend, artifacts proxied to the
    SeaweedFS test server) for the session; yields its URI."""
    from cdarts.local_stack.mlflow_server import start_mlflow_server

    server = start_mlflow_server(
        tmp_path_factory.mktemp("mlflow-server"), seaweedfs, S3_ACCESS_KEY, S3_SECRET_KEY, bucket="cdarts"
    )
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def kfp_api() -> Iterator[FakeKfp]:
    """The in-memory fake of the KFP API, for one test."""
    fake = start_fake_kfp()
    try:
        yield fake
    finally:
        assert fake.server is not None
        fake.server.shutdown()
