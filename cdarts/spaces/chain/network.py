"""The chain-structured network: a fixed skeleton whose searchable layers each choose one of six
inverted-residual blocks, built from a per-stage list of choice indices
(../shared/reference/chain-space.md sections 1.1, 1.3, 1.4 and 3.1).

Skeleton for 224 px: stem 3x3/2 (16) -> DS block (16) -> stages of 24, 40, 80, 96, 192 channels
(first-layer strides 2, 2, 2, 1, 2) -> 1x1 conv to 960 -> pool -> 1x1 conv 960 -> 1280 (bias) ->
Swish -> dropout -> linear.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cdarts.spaces.chain.blocks import ConvBNSwish, DepthwiseSeparable, InvertedResidual, init_efficientnet_style
from cdarts.spaces.chain.candidates import CHOICES

STAGE_CHANNELS = (24, 40, 80, 96, 192)
STAGE_STRIDES = (2, 2, 2, 1, 2)
MAX_LAYERS_PER_STAGE = 4
# The fourth slot of the 80-channel stage repeats twice in the reference child-net builder, so a
# full stage of 4 choices builds 5 layers (the published CDARTS-b checkpoint has them).
TIED_SLOT = (2, 3, 2)  # (stage index among the searchable ones, slot, repeats)
STEM_CHANNELS, LAST_CHANNELS, HEAD_CHANNELS = 16, 960, 1280


@dataclass(frozen=True)
class LayerSpec:
    c_in: int
    c_out: int
    kernel_size: int
    expansion: int
    stride: int


def layer_specs(choices: list[list[int]]) -> list[list[LayerSpec]]:
    """The inverted-residual layers of each searchable stage for per-stage choice lists."""
    if len(choices) != len(STAGE_CHANNELS):
        raise ValueError(f"a chain architecture has {len(STAGE_CHANNELS)} searchable stages, got {len(choices)}")
    stages, c_in = [], STEM_CHANNELS
    for stage, (stage_choices, c_out, stride) in enumerate(zip(choices, STAGE_CHANNELS, STAGE_STRIDES, strict=True)):
        if not 1 <= len(stage_choices) <= MAX_LAYERS_PER_STAGE:
            raise ValueError(f"stage {stage + 1} needs 1 to {MAX_LAYERS_PER_STAGE} layers, got {len(stage_choices)}")
        layers: list[LayerSpec] = []
        for slot, choice in enumerate(stage_choices):
            if choice not in range(len(CHOICES)):
                raise ValueError(f"choice {choice} in stage {stage + 1} is not one of 0..{len(CHOICES) - 1}")
            kernel_size, expansion = CHOICES[choice]
            repeats = TIED_SLOT[2] if (stage, slot) == TIED_SLOT[:2] else 1
            for _ in range(repeats):
                layers.append(LayerSpec(c_in, c_out, kernel_size, expansion, stride if not layers else 1))
                c_in = c_out
        stages.append(layers)
    return stages


def build_chain_stem(in_channels: int) -> nn.Sequential:
    """Stem 3x3/2 conv (16) and the fixed depthwise-separable SE block (16): shared by S and E."""
    return nn.Sequential(
        ConvBNSwish(in_channels, STEM_CHANNELS, 3, stride=2), DepthwiseSeparable(STEM_CHANNELS, STEM_CHANNELS, 3)
    )


def build_chain_stages(choices: list[list[int]]) -> nn.ModuleList:
    """One ``nn.Sequential`` of inverted-residual layers per searchable stage."""
    return nn.ModuleList(
        nn.Sequential(*(InvertedResidual(s.c_in, s.c_out, s.kernel_size, s.expansion, s.stride) for s in layers))
        for layers in layer_specs(choices)
    )


class ChainHead(nn.Module):
    """1x1 conv to 960 -> global pool -> 1x1 conv 960 -> 1280 (bias) -> Swish -> dropout -> linear.

    Pooling comes before the 1280-wide conv (MobileNetV3's efficient head), so it runs on 1x1."""

    def __init__(self, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.last_conv = ConvBNSwish(STAGE_CHANNELS[-1], LAST_CHANNELS, 1)
        self.head_conv = nn.Conv2d(LAST_CHANNELS, HEAD_CHANNELS, 1, bias=True)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 192, H, W) output of the last stage -> (N, num_classes)."""
        pooled = F.adaptive_avg_pool2d(self.last_conv(x), 1)
        hidden = F.silu(self.head_conv(pooled)).flatten(1)
        logits: torch.Tensor = self.classifier(self.dropout(hidden))
        return logits


def set_chain_drop_path(layers: list[InvertedResidual], drop_prob: float) -> None:
    """Drop-path on residual branches, scaled by depth: ``drop_prob * index / count``."""
    for index, layer in enumerate(layers):
        layer.drop_path.drop_prob = drop_prob * index / len(layers)


class ChainNetwork(nn.Module):
    """A discrete network of the chain space (the evaluation / retrain network of CDARTS-a/b).

    Args:
        choices: per searchable stage, the choice index of each layer (1 to 4 layers).
        num_classes: classifier outputs (1000 for ImageNet).
        in_channels: image channels.
        dropout: before the classifier (0.2 in the reference child nets).
    """

    def __init__(self, choices: list[list[int]], num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2):
        super().__init__()
        self.choices = [list(stage) for stage in choices]
        self.stem = build_chain_stem(in_channels)
        self.stages = build_chain_stages(self.choices)
        self.head = ChainHead(num_classes, dropout)
        init_efficientnet_style(self)

    def layers(self) -> list[InvertedResidual]:
        return [layer for layer in self.stages.modules() if isinstance(layer, InvertedResidual)]

    def set_drop_path_prob(self, drop_prob: float) -> None:
        set_chain_drop_path(self.layers(), drop_prob)

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the first block and of every searchable stage, then of the last conv."""
        x = self.stem(x)
        outputs = [x]
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        outputs.append(self.head.last_conv(x))
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, num_classes)."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        logits: torch.Tensor = self.head(x)
        return logits
