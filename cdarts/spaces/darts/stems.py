"""Stems: the convolutions in front of the first cell; each returns ``(s0, s1)``."""

from __future__ import annotations

import torch
from torch import nn

from cdarts.spaces.shared.batch_norm import BatchNorm2d
from cdarts.spaces.shared.retrain_spec import StemKind


class CifarStem(nn.Module):
    """3x3 conv (stride 1) -> BN; its output feeds the first cell as both inputs."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.conv(x)
        return s, s


class ImageNetStem(nn.Module):
    """Two stride-2 convs (s0, 1/4 size) then one more stride-2 conv (s1, 1/8 size)."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, channels // 2, 3, stride=2, padding=1, bias=False),
            BatchNorm2d(channels // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1, bias=False),
            BatchNorm2d(channels),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, bias=False),
            BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


def build_stem(kind: StemKind, in_channels: int, channels: int) -> nn.Module:
    if kind == "cifar":
        return CifarStem(in_channels, channels)
    return ImageNetStem(in_channels, channels)
