"""Shared fixtures: the tiny config and small networks built from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cdarts.config import ExperimentConfig, load_config
from cdarts.networks.joint_network import JointNetwork
from cdarts.search.build import build_joint_network

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"


@pytest.fixture
def tiny_config() -> ExperimentConfig:
    return load_config(str(CONFIGS / "tiny.yaml"))


@pytest.fixture
def tiny_model(tiny_config: ExperimentConfig) -> JointNetwork:
    torch.manual_seed(0)
    model = build_joint_network(tiny_config.data, tiny_config.search)
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
