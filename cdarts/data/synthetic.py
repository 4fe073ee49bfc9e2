"""Synthetic image classification data, for tests.

Each class has a fixed random prototype image; a sample is its class prototype plus Gaussian
noise, so the task is learnable (accuracy rises above chance) yet costs nothing to make.
"""

from __future__ import annotations

import torch


def make_synthetic(
    num_samples: int,
    channels: int,
    image_size: int,
    num_classes: int,
    seed: int,
    noise: float = 48.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, C, H, W) uint8 and labels (N,) int64, balanced over classes."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randint(32, 224, (num_classes, channels, image_size, image_size), generator=generator)
    labels = torch.arange(num_samples) % num_classes
    labels = labels[torch.randperm(num_samples, generator=generator)]
    noisy = prototypes[labels].float() + noise * torch.randn(
        num_samples, channels, image_size, image_size, generator=generator
    )
    return noisy.round().clamp(0, 255).to(torch.uint8), labels
