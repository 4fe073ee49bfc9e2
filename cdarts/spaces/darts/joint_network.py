"""JointNetwork: the DARTS-cell space's joint network (see joint_base for the parts).

S is the 8-cell mixed-op supernet, E the 20-cell (CIFAR) discrete network of the genotype, the
pool a mixed-op supernet laid out like E; the heads read the outputs of stages 0 and 1.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from cdarts.spaces.darts.architecture import Genotype, derive_genotype
from cdarts.spaces.darts.candidates import PRIMITIVES
from cdarts.spaces.darts.cells import NodeAggregation
from cdarts.spaces.darts.eval_network import EvalNetwork
from cdarts.spaces.darts.layout import plan_cells, required_divisor, stage_spatial_sizes
from cdarts.spaces.darts.search_network import SearchNetwork
from cdarts.spaces.darts.stems import build_stem
from cdarts.spaces.darts.weight_pool import PoolTransfer, WeightPool
from cdarts.spaces.shared.heads import DistillationHead
from cdarts.spaces.shared.joint_base import Branch, BranchFeatures, JointModel, NetworkOutput
from cdarts.spaces.shared.phase_split_conv import to_channels_last
from cdarts.spaces.shared.retrain_spec import StemKind

__all__ = ["Branch", "JointNetwork", "NetworkOutput"]

# Reference pooling kernels of the two distillation heads (for 32 px CIFAR / 224 px ImageNet).
_HEAD_KERNELS: dict[StemKind, tuple[int, int]] = {"cifar": (6, 6), "imagenet": (6, 5)}


class JointNetwork(JointModel):
    """S, E, pool and the shared parts of CDARTS.

    Args:
        stem: ``cifar`` (one 3x3 conv) or ``imagenet`` (three stride-2 convs).
        in_channels, num_classes, image_size: the data (square images).
        init_channels: width C of the first stage of S and of E during search.
        stem_multiplier: the stem has ``stem_multiplier * C`` channels.
        search_cells, eval_cells: cells per stage of S (3, 3, 2) and E (7, 7, 6).
        fix_heads: keep the distillation heads at their random init (CIFAR scripts).
        learnable_ensemble: learn the ensemble logits (init 0.333 * U(0, 1)); else equal weights.
        shared_relu: mixed ops rectify each input once for all their conv ops (see MixedOp).
        fused_sums: each node of S sums its weighted candidate outputs in one autograd node
            (see SearchCell).
        channels_last: keep weights and activations in channels-last layout (much faster
            depthwise convolutions on CPU, tensor cores on CUDA), dilated depthwise convolutions
            phase-split (see phase_split_conv); inputs are converted in forward.
        activation_checkpointing: recompute each cell of S and E in backward (see checkpointing).
    """

    def __init__(
        self,
        *,
        stem: StemKind,
        in_channels: int,
        num_classes: int,
        image_size: int,
        init_channels: int,
        stem_multiplier: int,
        search_cells: tuple[int, ...],
        eval_cells: tuple[int, ...],
        n_nodes: int = 4,
        primitives: tuple[str, ...] = PRIMITIVES,
        aggregation: NodeAggregation = "mean",
        pool_batchnorm: bool = False,
        head_channels: tuple[int, int] = (128, 768),
        fix_heads: bool = False,
        learnable_ensemble: bool = True,
        pool_transfer: PoolTransfer = "all",
        shared_relu: bool = False,
        fused_sums: bool = False,
        channels_last: bool = False,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if len(search_cells) != 3 or len(eval_cells) != 3:
            raise ValueError("S and E need exactly three stages (heads sit after stages 0 and 1)")
        divisor = required_divisor(len(search_cells), stem)
        if image_size % divisor:
            raise ValueError(f"image_size must be a multiple of {divisor} for the {stem} layout")
        self.n_nodes = n_nodes
        self.primitives = primitives
        self.candidates = primitives
        self.pool_transfer = pool_transfer
        stem_channels = init_channels * stem_multiplier
        search_plan = plan_cells(search_cells, init_channels, stem_channels, n_nodes, stem)
        self.eval_plan = plan_cells(eval_cells, init_channels, stem_channels, n_nodes, stem)

        self.stem = build_stem(stem, in_channels, stem_channels)
        self.search_network = SearchNetwork(
            search_plan, n_nodes, primitives, aggregation, pool_batchnorm, shared_relu, fused_sums
        )
        self.search_network.activation_checkpointing = activation_checkpointing
        self.activation_checkpointing = activation_checkpointing
        self.channels_last = channels_last
        final_channels = search_plan[-1][-1].out_channels(n_nodes)
        self.search_classifier = nn.Linear(final_channels, num_classes)
        self.weight_pool = WeightPool(self.eval_plan, n_nodes, primitives, aggregation, pool_batchnorm)
        self.eval_network = None
        self.eval_classifier = nn.Linear(final_channels, num_classes)

        sizes = stage_spatial_sizes(image_size, 3, stem)
        self.distill_heads = nn.ModuleList(
            DistillationHead(
                search_plan[stage][-1].out_channels(n_nodes),
                num_classes,
                sizes[stage],
                _HEAD_KERNELS[stem][stage],
                head_channels,
            )
            for stage in (0, 1)
        )
        self.init_ensemble(learnable_ensemble, fix_heads)
        if channels_last:
            to_channels_last(self)

    # -- E and the pool ---------------------------------------------------------------------

    def current_genotype(self) -> Genotype:
        """The genotype derived from the current alphas."""
        return derive_genotype(
            self.search_network.alphas_normal,
            self.search_network.alphas_reduce,
            self.n_nodes,
            self.primitives,
        )

    def rebuild_eval_network(self, genotype: Genotype) -> EvalNetwork:
        """Build a fresh E for ``genotype`` and initialise its cells from the pool."""
        device = self.search_classifier.weight.device
        eval_network = EvalNetwork(genotype, self.eval_plan, affine=False).to(device)
        if self.channels_last:
            eval_network = to_channels_last(eval_network)
        eval_network.activation_checkpointing = self.activation_checkpointing
        self.weight_pool.inherit(eval_network, self.pool_transfer)
        self.eval_network = eval_network
        return eval_network

    def write_back_to_pool(self) -> None:
        """Store E's selected-op weights in the pool (end of every cycle)."""
        self.weight_pool.write_back(self._require_eval(), self.pool_transfer)

    def named_alphas(self) -> dict[str, torch.Tensor]:
        return {"alphas_normal": self.search_network.alphas_normal, "alphas_reduce": self.search_network.alphas_reduce}

    def search_module_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.search_network.cell_parameters()
        yield from self.search_classifier.parameters()

    def eval_module_parameters(self) -> Iterator[nn.Parameter]:
        yield from self._require_eval().parameters()
        yield from self.eval_classifier.parameters()

    def _require_eval(self) -> EvalNetwork:
        eval_network = self.require_eval()
        assert isinstance(eval_network, EvalNetwork)
        return eval_network

    # -- forward ----------------------------------------------------------------------------

    def branch_features(self, x: torch.Tensor, branch: Branch) -> BranchFeatures:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        s0, s1 = self.stem(x)
        if branch == "search":
            stage_outputs = self.search_network(s0, s1)
            classifier = self.search_classifier
        else:
            stage_outputs = self._require_eval()(s0, s1)
            classifier = self.eval_classifier
        logits = classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(stage_outputs[-1], 1), 1))
        return BranchFeatures((stage_outputs[0], stage_outputs[1]), logits)
