"""RetrainNetwork: the discrete network of a genotype, trained from scratch after the search."""

from __future__ import annotations

import torch
from torch import nn

from cdarts.errors import GenotypeError
from cdarts.spaces.darts.architecture import Genotype
from cdarts.spaces.darts.eval_network import EvalNetwork
from cdarts.spaces.darts.layout import plan_cells, required_divisor, stage_spatial_sizes
from cdarts.spaces.darts.stems import build_stem
from cdarts.spaces.shared.retrain_model import RetrainModel
from cdarts.spaces.shared.retrain_spec import RetrainSpec, StemKind


def cells_per_stage(total_cells: int) -> tuple[int, int, int]:
    """DARTS placement: reductions at cells ``total/3`` and ``2*total/3`` (20 -> 7, 7, 6)."""
    first, second = total_cells // 3, 2 * total_cells // 3
    return first + 1, second - first, total_cells - second - 1


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier on the output of stage 1 (after the second reduction cell).

    CIFAR (8x8 input): ReLU -> avg-pool 5 stride 3 -> 1x1 conv 128 -> BN -> ReLU -> 2x2 conv 768
    -> BN -> ReLU -> linear. ImageNet (7x7): pool stride 2 and no BN after the 2x2 conv (as DARTS).
    Smaller maps than the pooling window are pooled to 2x2 instead.
    """

    def __init__(self, in_channels: int, num_classes: int, spatial_size: int, stem: StemKind) -> None:
        super().__init__()
        stride = 2 if stem == "imagenet" else 3
        pool: nn.Module = (
            nn.AvgPool2d(5, stride=stride, padding=0, count_include_pad=False)
            if spatial_size >= 5 + stride
            else nn.AdaptiveAvgPool2d(2)
        )
        layers: list[nn.Module] = [
            nn.ReLU(inplace=False),
            pool,
            nn.Conv2d(in_channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
        ]
        if stem == "cifar":
            layers.append(nn.BatchNorm2d(768))
        layers += [nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.features(x))
        return logits


class RetrainNetwork(RetrainModel):
    """Stem -> discrete cells (affine BN, drop-path) -> global pool -> linear, plus the auxiliary head.

    ``forward`` returns ``(logits, aux_logits)``; ``aux_logits`` is None in eval mode or without
    the head.
    """

    def __init__(self, genotype: Genotype, spec: RetrainSpec) -> None:
        super().__init__()
        if len(genotype.normal_concat) != len(genotype.reduce_concat):
            raise GenotypeError("normal and reduce cells must concatenate the same number of nodes")
        divisor = required_divisor(3, spec.stem)
        if spec.image_size % divisor:
            raise GenotypeError(f"image size {spec.image_size} is not a multiple of {divisor} ({spec.stem} layout)")
        self.spec = spec
        self.genotype = genotype
        multiplier = len(genotype.normal_concat)
        stem_channels = spec.init_channels * spec.stem_multiplier
        plan = plan_cells(cells_per_stage(spec.cells), spec.init_channels, stem_channels, multiplier, spec.stem)
        self.stem = build_stem(spec.stem, spec.in_channels, stem_channels)
        self.cells = EvalNetwork(genotype, plan, affine=True)
        self.auxiliary_head = (
            AuxiliaryHead(
                plan[1][-1].out_channels(multiplier),
                spec.num_classes,
                stage_spatial_sizes(spec.image_size, 3, spec.stem)[1],
                spec.stem,
            )
            if spec.auxiliary
            else None
        )
        self.classifier = nn.Linear(plan[-1][-1].out_channels(multiplier), spec.num_classes)

    def set_drop_path_prob(self, drop_prob: float) -> None:
        self.cells.set_drop_path_prob(drop_prob)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0, s1 = self.stem(x)
        stage_outputs = self.cells(s0, s1)
        aux_logits = None
        if self.auxiliary_head is not None and self.training:
            aux_logits = self.auxiliary_head(stage_outputs[1])
        features = torch.flatten(nn.functional.adaptive_avg_pool2d(stage_outputs[-1], 1), 1)
        return self.classifier(features), aux_logits

    def parameter_counts(self) -> tuple[int, int]:
        """(all parameters, parameters without the auxiliary head)."""
        total = sum(p.numel() for p in self.parameters())
        aux = sum(p.numel() for p in self.auxiliary_head.parameters()) if self.auxiliary_head is not None else 0
        return total, total - aux
