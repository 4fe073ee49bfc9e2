"""The NAS-Bench-201 joint network (../shared/reference/cdarts-algorithm.md section 7).

Unlike the DARTS space, S and E have the same depth and width: both are the benchmark's
skeleton (N cells, block, N cells, block, N cells). S's cells mix the five ops with one shared
6 x 5 alpha and non-affine BN; E holds the genotype's derived cells with affine BN. The pool is
a second search-shaped skeleton (never run) that keeps, per cell, edge and op, the weights E had
when that op was last selected, and both ResNet blocks whole; E inherits by position.

Two layouts (``nasbench201.layout``):
- ``authors`` (default), as the authors' benchmark201 code runs it: the distillation heads read
  the outputs of the two stride-2 ResNet blocks (2C at H/2, 4C at H/4); S's blocks have affine
  BN; the pool's cells have non-affine BN, so only conv weights move between E and the pool and
  E's cell BN scale and shift start afresh every cycle.
- ``stage_cells``: the heads read the last cell of the first and second stage (C at H, 2C at
  H/2), S's blocks are non-affine like its cells, the pool is affine throughout and E's BN scale
  and shift survive cycles (docs/reference-deviations.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn

from cdarts.spaces.nasbench201.architecture import NB201_EDGES, Nb201Genotype
from cdarts.spaces.nasbench201.candidates import NB201_OPS
from cdarts.spaces.nasbench201.networks import (
    Nb201DerivedCell,
    Nb201SearchCell,
    ResNetBasicBlock,
    build_nb201_layers,
    build_nb201_stem,
    nb201_block_positions,
    nb201_edge_index,
    run_nb201_layers,
)
from cdarts.spaces.shared.heads import DistillationHead
from cdarts.spaces.shared.joint_base import Branch, BranchFeatures, JointModel

Nb201Layout = Literal["authors", "stage_cells"]

_HEAD_KERNEL = 6  # the CIFAR heads' pooling kernel; smaller maps fall back to 2x2 pooling


class Nb201JointNetwork(JointModel):
    """S, E, pool, heads and ensemble of the NAS-Bench-201 search.

    Args:
        in_channels, num_classes, image_size: the data (square images, size divisible by 4).
        channels: C of the first stage (16 in the benchmark).
        cells_per_stage: N (5 in the benchmark).
        head_channels, fix_heads, learnable_ensemble: as in the DARTS space.
        layout: ``authors`` or ``stage_cells`` (module docstring).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        image_size: int,
        channels: int = 16,
        cells_per_stage: int = 5,
        head_channels: tuple[int, int] = (128, 768),
        fix_heads: bool = False,
        learnable_ensemble: bool = True,
        layout: Nb201Layout = "authors",
    ) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError("image_size must be a multiple of 4 (two stride-2 ResNet blocks)")
        authors = layout == "authors"
        if authors and image_size < 8:
            raise ValueError("image_size must be at least 8 (a head reads the H/4 map and needs 2x2)")
        self.layout = layout
        self.candidates = NB201_OPS
        self.channels, self.cells_per_stage = channels, cells_per_stage
        self.stem = build_nb201_stem(in_channels, channels)
        self.search_layers = build_nb201_layers(channels, cells_per_stage, None, affine=False, block_affine=authors)
        self.alphas = nn.Parameter(1e-3 * torch.randn(NB201_EDGES, len(NB201_OPS)))
        self.search_classifier = nn.Linear(4 * channels, num_classes)
        self.weight_pool = build_nb201_layers(channels, cells_per_stage, None, affine=not authors, block_affine=True)
        self.eval_network = None
        self.eval_classifier = nn.Linear(4 * channels, num_classes)
        if authors:  # after the two stride-2 blocks: 2C at H/2 and 4C at H/4
            self.head_layers = nb201_block_positions(cells_per_stage)
            taps = ((2 * channels, image_size // 2), (4 * channels, image_size // 4))
        else:  # after the last cell of stage 0 (C at H) and of stage 1 (2C at H/2)
            self.head_layers = (cells_per_stage - 1, 2 * cells_per_stage)
            taps = ((channels, image_size), (2 * channels, image_size // 2))
        self.head_inputs = tuple((width, size, size) for width, size in taps)
        self.distill_heads = nn.ModuleList(
            DistillationHead(width, num_classes, size, _HEAD_KERNEL, head_channels) for width, size in taps
        )
        self.init_ensemble(learnable_ensemble, fix_heads)

    # -- genotype, E and the pool ----------------------------------------------------------------

    def current_genotype(self) -> Nb201Genotype:
        # The same probabilities as an alphas file's derivation (CPU float32 softmax).
        return Nb201Genotype.from_alphas(torch.softmax(self.alphas.detach().float().cpu(), dim=-1))

    def rebuild_eval_network(self, genotype: Nb201Genotype) -> nn.Module:
        device = self.alphas.device
        eval_network = build_nb201_layers(self.channels, self.cells_per_stage, genotype, affine=True).to(device)
        self.eval_network = eval_network
        self._transfer(to_eval=True)
        return eval_network

    def write_back_to_pool(self) -> None:
        self._transfer(to_eval=False)

    @torch.no_grad()
    def _transfer(self, to_eval: bool) -> None:
        for eval_module, pool_module in self._module_pairs():
            source, target = (pool_module, eval_module) if to_eval else (eval_module, pool_module)
            _copy_shared_parameters(source, target)

    def _module_pairs(self) -> Iterator[tuple[nn.Module, nn.Module]]:
        """(E module, pool module) pairs by position: each kept edge's op, each block whole."""
        for eval_layer, pool_layer in zip(self.require_eval().children(), self.weight_pool, strict=True):
            if isinstance(eval_layer, ResNetBasicBlock):
                yield eval_layer, pool_layer
                continue
            assert isinstance(eval_layer, Nb201DerivedCell) and isinstance(pool_layer, Nb201SearchCell)
            kept = [(node, source, op) for node, source, op in eval_layer.genotype.edges() if op != "none"]
            for (node, source, op), eval_op in zip(kept, eval_layer.ops, strict=True):
                yield eval_op, pool_layer.edge_ops[nb201_edge_index(node, source)][NB201_OPS.index(op)]

    # -- parameter groups and forward ------------------------------------------------------------

    def named_alphas(self) -> dict[str, torch.Tensor]:
        return {"alphas": self.alphas}

    def search_module_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.search_layers.parameters()
        yield from self.search_classifier.parameters()

    def eval_module_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.require_eval().parameters()
        yield from self.eval_classifier.parameters()

    def branch_features(self, x: torch.Tensor, branch: Branch) -> BranchFeatures:
        x = self.stem(x)
        if branch == "search":
            outputs = run_nb201_layers(self.search_layers, x, torch.softmax(self.alphas, dim=-1))
            classifier = self.search_classifier
        else:
            eval_layers = self.require_eval()
            assert isinstance(eval_layers, nn.ModuleList)
            outputs = run_nb201_layers(eval_layers, x, None)
            classifier = self.eval_classifier
        logits = classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(outputs[-1], 1), 1))
        first, second = self.head_layers
        return BranchFeatures((outputs[first], outputs[second]), logits)


def _copy_shared_parameters(source: nn.Module, target: nn.Module) -> None:
    """Copy ``source``'s parameters into ``target``'s by name: the same op built twice, where one
    side may lack BN scale and shift (a non-affine pool op; E's own then keep their fresh values).
    Any other difference is a construction error."""
    source_params = dict(source.named_parameters())
    target_params = dict(target.named_parameters())
    unshared = source_params.keys() ^ target_params.keys()
    if unshared - _batchnorm_parameter_names(source) - _batchnorm_parameter_names(target):
        raise RuntimeError(f"pool and evaluation op differ beyond BN affinity: {sorted(unshared)[:3]}")
    for name in source_params.keys() & target_params.keys():
        if source_params[name].shape != target_params[name].shape:
            raise RuntimeError(f"pool transfer shape mismatch at {name}")
        target_params[name].copy_(source_params[name])


def _batchnorm_parameter_names(module: nn.Module) -> set[str]:
    return {
        f"{prefix}.{name}" if prefix else name
        for prefix, child in module.named_modules()
        if isinstance(child, nn.modules.batchnorm._BatchNorm)
        for name, _ in child.named_parameters(recurse=False)
    }
