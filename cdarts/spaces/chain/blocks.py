"""Blocks of the chain-structured (MobileNet-style) space: inverted residuals with squeeze-and-
excitation and Swish, as in ../shared/reference/chain-space.md section 1.2.

Convolutions are bias-free except the two SE convolutions; every other convolution is followed
by BatchNorm (PyTorch defaults). Padding is ``k // 2``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cdarts.spaces.shared.drop_path import DropPath


def round_to_8(value: float) -> int:
    """Nearest multiple of 8 (halves round up), at least 8, and never below 90 % of ``value``."""
    rounded = max(8, int(value + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * value else rounded


class SqueezeExcite(nn.Module):
    """Global average pool -> 1x1 conv (bias) -> ReLU -> 1x1 conv (bias) -> hard sigmoid gate."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.adaptive_avg_pool2d(x, 1)
        gate = self.expand(F.relu(self.reduce(gate)))
        return x * F.hardsigmoid(gate)  # relu6(g + 3) / 6


class ConvBNSwish(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            nn.SiLU(),
        )


class DepthwiseSeparable(nn.Module):
    """The fixed first block: depthwise k x k -> BN -> Swish -> SE (on its own width) -> 1x1 -> BN,
    with an identity shortcut when the shape allows."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = ConvBNSwish(c_in, c_in, kernel_size, stride, groups=c_in)
        self.squeeze_excite = SqueezeExcite(c_in, round_to_8(c_in / 4))
        self.project = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.project(self.squeeze_excite(self.depthwise(x)))
        return out + x if self.residual else out


class InvertedResidual(nn.Module):
    """MBConv(in, out, k, e, s): 1x1 expansion to ``round_to_8(in * e)`` -> depthwise k x k
    (stride s) -> SE with ``round_to_8(mid / 4)`` -> 1x1 projection (no activation); identity
    shortcut iff s = 1 and in = out, drop-path on the residual branch only."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, expansion: int, stride: int) -> None:
        super().__init__()
        mid = round_to_8(c_in * expansion)
        self.mid_channels = mid
        self.expand = ConvBNSwish(c_in, mid, 1)
        self.depthwise = ConvBNSwish(mid, mid, kernel_size, stride, groups=mid)
        self.squeeze_excite = SqueezeExcite(mid, round_to_8(mid / 4))
        self.project = nn.Sequential(nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.residual = stride == 1 and c_in == c_out
        self.drop_path = DropPath()  # on the residual branch only; its rate is set by the network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.project(self.squeeze_excite(self.depthwise(self.expand(x))))
        return self.drop_path(out) + x if self.residual else out


def init_efficientnet_style(module: nn.Module) -> None:
    """Conv weights ~ N(0, 2 / fan_out) with fan_out = k*k*out/groups, biases 0; BN gamma 1, beta 0;
    linear weights ~ U(+-1/sqrt(out_features)), bias 0 (the reference child nets' init)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            fan_out = layer.kernel_size[0] * layer.kernel_size[1] * layer.out_channels // layer.groups
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / fan_out))
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.Linear):
            bound = 1.0 / math.sqrt(layer.out_features)
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.zeros_(layer.bias)
