"""The chain-space joint network: our adaptation of the cyclic search to the mobile space.

The authors' chain-space search code is not public, so this is a design (docs/search-spaces.md):
S is the slot supernet (``ChainSupernet``), E the discrete network of the current architecture
(its stages rebuilt every cycle), both behind the shared stem (3x3/2 conv + the fixed DS block)
and each with its own head (960 conv, pool, 1280 conv, classifier). The pool keeps one block per
(stage, layer position, choice), so a layer inherits what that block learned the last time E
had it at that position (the tied fifth layer of the 80-channel stage included). The
distillation heads read the outputs of the 40- and 96-channel stages.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from cdarts.spaces.chain.architecture import ChainArchitecture
from cdarts.spaces.chain.blocks import InvertedResidual, init_efficientnet_style
from cdarts.spaces.chain.candidates import CHAIN_CANDIDATES, CHOICES, SKIP_CANDIDATE
from cdarts.spaces.chain.network import (
    STAGE_CHANNELS,
    STAGE_STRIDES,
    STEM_CHANNELS,
    TIED_SLOT,
    ChainHead,
    build_chain_stages,
    build_chain_stem,
    layer_specs,
)
from cdarts.spaces.chain.supernet import ChainSupernet, architecture_from_probabilities, slot_probabilities
from cdarts.spaces.shared.heads import DistillationHead
from cdarts.spaces.shared.joint_base import Branch, BranchFeatures, JointModel
from cdarts.spaces.shared.parameter_copy import copy_parameters

HEAD_STAGES = (1, 3)  # the 40- and 96-channel stages (strides 8 and 16)
_HEAD_KERNELS = (6, 5)  # the ImageNet heads' pooling kernels; small maps fall back to 2x2 pooling


def _pool_key(stage: int, position: int, choice: int) -> str:
    return f"s{stage}_p{position}_c{choice}"


class ChainJointNetwork(JointModel):
    """S, E, pool, heads and ensemble of the chain-space search.

    Args:
        in_channels, num_classes, image_size: the data (square images, at least 32 px).
        stage_layers: S's slots per searchable stage (1 to 4 each).
        allow_skip: a slot other than a stage's first may choose skip.
        dropout: before both classifiers.
        head_channels, fix_heads, learnable_ensemble: as in the DARTS space.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        image_size: int,
        stage_layers: tuple[int, ...] = (4, 4, 4, 4, 4),
        allow_skip: bool = True,
        dropout: float = 0.2,
        head_channels: tuple[int, int] = (128, 768),
        fix_heads: bool = False,
        learnable_ensemble: bool = True,
    ) -> None:
        super().__init__()
        if image_size < 32:
            raise ValueError("the chain space downsamples 32x: image_size must be at least 32")
        self.candidates = CHAIN_CANDIDATES + ((SKIP_CANDIDATE,) if allow_skip else ())
        self.stage_layers, self.allow_skip = tuple(stage_layers), allow_skip
        self.num_classes, self.dropout = num_classes, dropout
        self.stem = build_chain_stem(in_channels)
        self.search_network = ChainSupernet(self.stage_layers, allow_skip)
        self.search_head = ChainHead(num_classes, dropout)
        self.weight_pool = nn.ModuleDict(self._build_pool())
        self.eval_network = None
        self._eval_genotype: ChainArchitecture | None = None
        self.eval_head = ChainHead(num_classes, dropout)
        init_efficientnet_style(nn.ModuleList([self.stem, self.search_network, self.search_head]))
        init_efficientnet_style(nn.ModuleList([self.weight_pool, self.eval_head]))
        strides = (2 * 2 * 2, 2 * 2 * 2 * 2)  # stem, then stages 0 and 1 / up to stage 3
        self.distill_heads = nn.ModuleList(
            DistillationHead(STAGE_CHANNELS[stage], num_classes, -(-image_size // stride), kernel, head_channels)
            for stage, stride, kernel in zip(HEAD_STAGES, strides, _HEAD_KERNELS, strict=True)
        )
        self.init_ensemble(learnable_ensemble, fix_heads)

    def _build_pool(self) -> dict[str, nn.Module]:
        """One block per (stage, position, choice) that any derivable E can hold."""
        pool: dict[str, nn.Module] = {}
        c_in = STEM_CHANNELS
        for stage, (count, c_out, stride) in enumerate(
            zip(self.stage_layers, STAGE_CHANNELS, STAGE_STRIDES, strict=True)
        ):
            positions = count + (TIED_SLOT[2] - 1 if stage == TIED_SLOT[0] and count > TIED_SLOT[1] else 0)
            for position in range(positions):
                for choice, (kernel, expansion) in enumerate(CHOICES):
                    first = position == 0
                    block = InvertedResidual(c_in if first else c_out, c_out, kernel, expansion, stride if first else 1)
                    pool[_pool_key(stage, position, choice)] = block
            c_in = c_out
        return pool

    # -- genotype, E and the pool ----------------------------------------------------------------

    def current_genotype(self) -> ChainArchitecture:
        probabilities = slot_probabilities(self.search_network.alphas, self.stage_layers, self.allow_skip)
        return architecture_from_probabilities(probabilities, self.stage_layers, self.allow_skip)

    def rebuild_eval_network(self, genotype: ChainArchitecture) -> nn.Module:
        eval_network = build_chain_stages(genotype.as_lists()).to(self.search_network.alphas.device)
        self.eval_network = eval_network
        self._transfer(genotype, to_eval=True)
        self._eval_genotype = genotype
        return eval_network

    def write_back_to_pool(self) -> None:
        if self._eval_genotype is None:
            raise RuntimeError("the evaluation network has not been built yet")
        self._transfer(self._eval_genotype, to_eval=False)

    @torch.no_grad()
    def _transfer(self, genotype: ChainArchitecture, to_eval: bool) -> None:
        stages = self._eval_stages()
        for stage, (specs, layers) in enumerate(zip(layer_specs(genotype.as_lists()), stages, strict=True)):
            assert isinstance(layers, nn.Sequential)
            for position, (spec, layer) in enumerate(zip(specs, layers, strict=True)):
                pooled = self.weight_pool[_pool_key(stage, position, CHOICES.index((spec.kernel_size, spec.expansion)))]
                source, target = (pooled, layer) if to_eval else (layer, pooled)
                copy_parameters(source, target)

    def _eval_stages(self) -> nn.ModuleList:
        stages = self.require_eval()
        assert isinstance(stages, nn.ModuleList)
        return stages

    # -- parameter groups and forward ------------------------------------------------------------

    def named_alphas(self) -> dict[str, torch.Tensor]:
        return {"alphas": self.search_network.alphas}

    def alpha_probabilities(self) -> dict[str, torch.Tensor]:
        return {"alphas": slot_probabilities(self.search_network.alphas, self.stage_layers, self.allow_skip)}

    def search_module_parameters(self) -> Iterator[nn.Parameter]:
        yield from (p for name, p in self.search_network.named_parameters() if name != "alphas")
        yield from self.search_head.parameters()

    def eval_module_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.require_eval().parameters()
        yield from self.eval_head.parameters()

    def branch_features(self, x: torch.Tensor, branch: Branch) -> BranchFeatures:
        x = self.stem(x)
        if branch == "search":
            outputs = self.search_network(x)
            head = self.search_head
        else:
            outputs = []
            for stage in self._eval_stages():
                x = stage(x)
                outputs.append(x)
            head = self.eval_head
        first, second = HEAD_STAGES
        return BranchFeatures((outputs[first], outputs[second]), head(outputs[-1]))
