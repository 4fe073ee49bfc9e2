"""Seeded, epoch-deterministic, rank-sharded sampling and the search loaders."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from cdarts.cpu_budget import capped_workers
from cdarts.data.datasets import Sample
from cdarts.errors import ConfigError


class ShardedSampler(torch.utils.data.Sampler[int]):
    """Shuffle with a generator seeded by (seed, epoch), pad to a multiple of the world size,
    and give every rank its strided share, so ranks see disjoint, equally long shards.

    The reference seeds a generator with the epoch and then shuffles with the global RNG; here
    the order depends only on ``seed`` and the epoch passed to :meth:`set_epoch`.
    """

    def __init__(self, num_samples: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.per_rank = -(-num_samples // world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        padding = self.per_rank * self.world_size - len(order)
        order += order[:padding]
        return iter(order[self.rank :: self.world_size])

    def __len__(self) -> int:
        return self.per_rank


@dataclass
class SplitLoader:
    """A loader over one half of the search split, with its sampler (for set_epoch)."""

    loader: DataLoader[Sample]
    sampler: ShardedSampler

    def epoch(self, epoch: int) -> DataLoader[Sample]:
        self.sampler.set_epoch(epoch)
        return self.loader

    def __len__(self) -> int:
        return len(self.loader)


def build_split_loader(
    dataset: Dataset[Sample],
    indices: torch.Tensor,
    *,
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> SplitLoader:
    """Loader over ``dataset[indices]``; incomplete last batches are dropped (BN needs > 1).
    ``num_workers`` is capped by the CPUs this process may use (:mod:`cdarts.cpu_budget`)."""
    num_workers = capped_workers(num_workers)
    sampler = ShardedSampler(len(indices), seed, rank, world_size)
    if len(sampler) < batch_size:
        raise ConfigError(
            f"a training split has {len(indices)} images ({len(sampler)} per process), fewer than "
            f"batch_size {batch_size}; lower the batch size or use more data"
        )
    loader = DataLoader(
        Subset(dataset, indices.tolist()),
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
    return SplitLoader(loader, sampler)
