"""Augmentations of the reference (CIFAR and ImageNet recipes) and the evaluation transforms.

Array images arrive as uint8 tensors (C, H, W); encoded images as PIL images. Every transform
returns a normalised float32 tensor (C, H, W).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torchvision.transforms import v2

Augmentation = Literal["cifar", "imagenet", "none"]


class Cutout(torch.nn.Module):
    """Zero one ``size`` x ``size`` square at a random centre (clipped at the border).

    Applied after normalisation, as in the reference, so the square becomes the value 0.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        cy = int(torch.randint(height, ()).item())
        cx = int(torch.randint(width, ()).item())
        half = self.size // 2
        out = image.clone()
        out[..., max(cy - half, 0) : min(cy + half, height), max(cx - half, 0) : min(cx + half, width)] = 0
        return out


def build_transform(
    augmentation: Augmentation,
    *,
    train: bool,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_padding: int = 4,
    random_flip: bool = True,
    cutout: int = 0,
    encoded: bool = False,
) -> Callable[[Any], torch.Tensor]:
    """The transform for one split.

    Args:
        augmentation: ``cifar`` (random crop with zero padding, flip), ``imagenet``
            (RandomResizedCrop, flip, colour jitter 0.4/0.4/0.4/0.2) or ``none``.
        train: training split (augment) or evaluation (``imagenet``: resize to 8/7 of the crop,
            then centre crop; others: nothing but normalisation).
        cutout: side of the cutout square (training only; 0 disables).
        encoded: inputs are PIL images of arbitrary size, resized for ``cifar``/``none``.
    """
    steps: list[Any] = [v2.ToImage()]
    if augmentation == "imagenet":
        if train:
            steps += [v2.RandomResizedCrop(image_size, antialias=True)]
            steps += [v2.RandomHorizontalFlip()] if random_flip else []
            steps += [v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2)]
        else:
            steps += [v2.Resize(round(image_size * 256 / 224), antialias=True), v2.CenterCrop(image_size)]
    else:
        if encoded:
            steps += [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
        if train and augmentation == "cifar":
            steps += [v2.RandomCrop(image_size, padding=crop_padding)] if crop_padding else []
            steps += [v2.RandomHorizontalFlip()] if random_flip else []
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if train and cutout > 0:
        steps.append(Cutout(cutout))
    return v2.Compose(steps)  # type: ignore[no-any-return]
