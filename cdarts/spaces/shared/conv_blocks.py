"""Small blocks more than one space builds from: ReLU-conv-BN and the ``none`` op."""

from __future__ import annotations

import torch
from torch import nn

from cdarts.spaces.shared.batch_norm import BatchNorm2d


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv (no bias) -> BN; used as the 1x1 cell-input preprocessing."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            BatchNorm2d(c_out, affine=affine),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros, subsampled by ``stride`` in both spatial dimensions."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)
