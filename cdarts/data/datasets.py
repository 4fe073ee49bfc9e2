"""torch Datasets over a prepared dataset directory, and the loaders built on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Dataset

from cdarts.config import DataConfig
from cdarts.cpu_budget import capped_workers
from cdarts.data.prepared import PreparedDataset, Split, decode_image
from cdarts.data.transforms import build_transform

Transform = Callable[[Any], torch.Tensor]
Sample = tuple[torch.Tensor, int]
"""One image (C, H, W) and its label; a loader batches them into two tensors."""


class ArrayImages(Dataset[Sample]):
    """uint8 images (N, H, W, C), possibly memory-mapped."""

    def __init__(self, images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64], transform: Transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = torch.from_numpy(np.array(self.images[index])).permute(2, 0, 1)  # copy out of the memory map
        return self.transform(image), int(self.labels[index])


class EncodedImages(Dataset[Sample]):
    """Encoded image files packed back to back in one shard, decoded on access."""

    def __init__(
        self, shard: Path, index: npt.NDArray[np.int64], labels: npt.NDArray[np.int64], transform: Transform
    ) -> None:
        self.shard, self.index, self.labels, self.transform = shard, index, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        offset, length = (int(v) for v in self.index[item])
        with self.shard.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        return self.transform(decode_image(data)), int(self.labels[item])


def split_dataset(
    prepared: PreparedDataset, split: Split, data: DataConfig, *, train: bool, cutout: int = 0
) -> Dataset[Sample]:
    """The ``train``/``test`` split of a prepared dataset with the configured transform."""
    encoded = prepared.format == "encoded"
    transform = build_transform(
        data.augmentation,
        train=train,
        image_size=data.image_size,
        mean=prepared.mean,
        std=prepared.std,
        crop_padding=data.crop_padding,
        random_flip=data.random_flip,
        cutout=cutout,
        encoded=encoded,
    )
    labels = prepared.labels(split)
    if encoded:
        shard, index = prepared.encoded(split)
        return EncodedImages(shard, index, labels, transform)
    return ArrayImages(prepared.images(split), labels, transform)


def evaluation_loader(dataset: Dataset[Sample], batch_size: int, data: DataConfig) -> DataLoader[Sample]:
    """In-order loader over every sample (no shuffling, nothing dropped); workers capped by the
    CPUs this process may use."""
    workers = capped_workers(data.num_workers)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=data.pin_memory)
