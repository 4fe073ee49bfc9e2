"""The search split: the training set cut into a "train" half (weights) and a "val" half
(alphas and E), stratified by class and seeded.

The reference splits by index; on class-sorted folders (ImageNet) that gives two halves with
nearly disjoint classes. A per-class split keeps every class in both halves.
"""

from __future__ import annotations

import torch


def stratified_halves(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (sorted) of the train and val halves; each class is split as evenly as possible.

    A class with an odd count gives its extra sample to the half that is currently smaller, so
    the halves differ in size by at most one.
    """
    generator = torch.Generator().manual_seed(seed)
    train_parts, val_parts = [], []
    train_size = val_size = 0
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        cut = len(members) // 2
        if len(members) % 2 and train_size <= val_size:
            cut += 1
        train_parts.append(members[:cut])
        val_parts.append(members[cut:])
        train_size += cut
        val_size += len(members) - cut
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values


def stratified_fraction(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded ``fraction`` of every class (at least one image per class)."""
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = max(1, round(len(members) * fraction)) if len(members) > 1 else 0
        picked.append(members[:count])
    return torch.cat(picked).sort().values
