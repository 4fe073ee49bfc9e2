"""What the training stages (search, retrain) do before any work: the device, the prepared data
checked against the config, the process group, the seeds and the output directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from cdarts.config import ExperimentConfig
from cdarts.data.prepared import PreparedDataset
from cdarts.data_compatibility import check_config_against_data
from cdarts.devices import resolve_device
from cdarts.distributed import DistributedContext, device_for_rank, init_distributed
from cdarts.seeding import seed_everything


@dataclass(frozen=True)
class StageSetup:
    device: torch.device  # this process's device (its rank's GPU under torchrun)
    prepared: PreparedDataset
    distributed: DistributedContext


def set_up_stage(
    config: ExperimentConfig, dataset_dir: Path, out_dir: Path, stage: Literal["search", "retrain"]
) -> StageSetup:
    """Refuse a device or data the config cannot use before anything is written, then join the
    process group, seed every RNG and create ``out_dir``."""
    device = resolve_device(config.device)
    prepared = PreparedDataset.load(dataset_dir)
    check_config_against_data(config, prepared, stage)
    distributed = init_distributed(device)
    device = device_for_rank(device)
    seed_everything(config.seed, config.deterministic)
    out_dir.mkdir(parents=True, exist_ok=True)
    return StageSetup(device, prepared, distributed)
