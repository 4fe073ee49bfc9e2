"""The three optimisers of the cyclic search and the constant / cosine learning rates."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cdarts.config import SearchConfig
from cdarts.spaces.shared.joint_base import JointModel


@dataclass
class CycleOptimizers:
    """W_S (S weights), W_E (E weights) and A (alphas); re-created every cycle, as the reference
    does, so SGD momentum and the Adam moments of the alphas start from zero each cycle."""

    search_weights: torch.optim.SGD
    eval_weights: torch.optim.SGD
    arch: torch.optim.Adam


def build_search_weight_optimizer(model: JointModel, config: SearchConfig) -> torch.optim.SGD:
    return torch.optim.SGD(
        model.search_weight_parameters(),
        lr=config.weight_lr,
        momentum=config.weight_momentum,
        weight_decay=config.weight_decay,
    )


def build_cycle_optimizers(model: JointModel, config: SearchConfig) -> CycleOptimizers:
    """Fresh W_S, W_E and A for the E that ``model`` currently holds.

    The stem, heads and ensemble logits are in both SGD optimisers (two momentum buffers on the
    same tensors), as in the reference.
    """
    eval_weights = torch.optim.SGD(
        model.eval_weight_parameters(),
        lr=config.eval_weight_lr,
        momentum=config.weight_momentum,
        weight_decay=config.weight_decay,
    )
    arch = torch.optim.Adam(
        model.arch_parameters(),
        lr=config.arch_lr,
        betas=config.arch_betas,
        weight_decay=config.arch_weight_decay,
    )
    return CycleOptimizers(build_search_weight_optimizer(model, config), eval_weights, arch)


def cosine_lr(base_lr: float, min_lr: float, epoch: int, total_epochs: int) -> float:
    """Closed-form cosine annealing from ``base_lr`` (epoch 0) towards ``min_lr``."""
    progress = min(epoch, total_epochs) / max(total_epochs, 1)
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
