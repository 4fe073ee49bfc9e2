"""The retrain recipe's schedules: learning rate, drop-path ramp, the CIFAR parameter-count rule."""

from __future__ import annotations

import math


def learning_rate(epoch: int, base_lr: float, min_lr: float, epochs: int, warmup_epochs: int) -> float:
    """Linear warm-up ``base * (e + 1) / W`` for the first W epochs, then cosine to ``min_lr``.

    The reference overrides a closed-form cosine during its ImageNet warm-up and hard-codes the
    warm-up length; this is the explicit, schedule-only version (stepped once per epoch).
    """
    if epoch < warmup_epochs:
        return base_lr * (epoch + 1) / warmup_epochs
    progress = (epoch - warmup_epochs) / max(epochs - warmup_epochs, 1)
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def drop_path_probability(epoch: int, max_prob: float, epochs: int) -> float:
    """Linear ramp ``p_max * e / epochs`` (0 in the first epoch)."""
    return max_prob * epoch / epochs


def cifar_param_count_rule(params_without_aux: int) -> tuple[float, float]:
    """The reference's CIFAR override -> (weight decay, drop-path probability).

    Under 3.0 M parameters: (3e-4, 0.2); strictly between 3.0 M and 3.5 M: (3e-4, 0.3);
    otherwise (exactly 3.0 M or 3.5 M included): (5e-4, 0.3).
    """
    millions = params_without_aux / 1e6
    if millions < 3.0:
        return 3e-4, 0.2
    if 3.0 < millions < 3.5:
        return 3e-4, 0.3
    return 5e-4, 0.3
