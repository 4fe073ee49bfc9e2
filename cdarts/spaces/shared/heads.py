"""Classifier heads: the distillation heads shared by S and E during search."""

from __future__ import annotations

import torch
from torch import nn


def _head_pool(spatial_size: int, kernel_size: int) -> nn.Module:
    # The reference kernels (6 / 5, stride 2) assume 32 px CIFAR or 224 px ImageNet inputs; for
    # smaller inputs fall back to pooling to 2x2, the smallest map the 2x2 conv accepts.
    if (spatial_size - kernel_size) // 2 + 1 >= 2:
        return nn.AvgPool2d(kernel_size, stride=2, padding=0, count_include_pad=False)
    if spatial_size < 2:
        raise ValueError(f"a distillation head needs at least a 2x2 input, got {spatial_size}x{spatial_size}")
    return nn.AdaptiveAvgPool2d(2)


class DistillationHead(nn.Module):
    """Logits from an intermediate stage output, used for the ensemble distillation.

    ReLU -> avg-pool -> 1x1 conv -> BN -> ReLU -> 2x2 conv -> BN -> ReLU -> global pool -> linear.
    BN is non-affine, as everything else at search time.

    Args:
        in_channels: width of the stage output it reads.
        spatial_size: height (= width) of that stage output, to size the pooling.
        kernel_size: preferred pooling kernel (6 for CIFAR heads, 6 / 5 for ImageNet).
        hidden_channels: widths of the two convs (128, 768 in the paper).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_size: int,
        kernel_size: int,
        hidden_channels: tuple[int, int] = (128, 768),
    ) -> None:
        super().__init__()
        mid, wide = hidden_channels
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            _head_pool(spatial_size, kernel_size),
            nn.Conv2d(in_channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid, affine=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, wide, 2, bias=False),
            nn.BatchNorm2d(wide, affine=False),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(wide, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, in_channels, H, H) -> logits (N, num_classes)."""
        logits: torch.Tensor = self.classifier(self.features(x))
        return logits
