"""Loss terms of the joint step: ensemble distillation and the alpha regulariser."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

DistillType = Literal["smooth_l1", "kl", "mse", "cosine"]
KlReduction = Literal["elementwise_mean", "batchmean"]


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    distill_type: DistillType,
    temperature: float,
    kl_reduction: KlReduction = "elementwise_mean",
) -> torch.Tensor:
    """``T^2 * D(student, teacher)`` between S's (student) and E's (teacher) ensemble outputs.

    Args:
        student, teacher: (3N, K) stacked weighted logits. The teacher is deliberately not
            detached: the term trains E (and the shared stem, heads, ensemble) towards S too.
        distill_type: ``kl`` = KL(softmax(teacher/T) || softmax(student/T)); ``cosine`` = minus
            the mean cosine similarity of rows; ``mse``; ``smooth_l1`` (beta 1). The reference
            multiplies every type by T^2, not only KL.
        kl_reduction: ``elementwise_mean`` averages over all 3N*K elements (the reference,
            PyTorch's legacy default); ``batchmean`` is the textbook per-sample KL.
    """
    if distill_type == "kl":
        log_student = F.log_softmax(student / temperature, dim=1)
        log_teacher = F.log_softmax(teacher / temperature, dim=1)
        total = F.kl_div(log_student, log_teacher, reduction="sum", log_target=True)
        # Explicit divisors: PyTorch's "mean" is the element mean today but is slated to change.
        loss = total / (student.numel() if kl_reduction == "elementwise_mean" else student.shape[0])
    elif distill_type == "cosine":
        loss = -F.cosine_similarity(student, teacher, dim=1, eps=1e-6).mean()
    elif distill_type == "mse":
        loss = F.mse_loss(student, teacher)
    elif distill_type == "smooth_l1":
        loss = F.smooth_l1_loss(student, teacher, beta=1.0)
    else:
        raise ValueError(f"unknown distillation type {distill_type!r}")
    return loss * temperature**2


def regularizer_coefficient(
    epoch: int,
    coeff: float,
    warmup_epochs: int,
    search_iterations: int,
    epochs_per_cycle: int,
    ratio: float,
) -> float:
    """``max(coeff * (1 - (epoch - P) / ((I - P) * E_it * r)), 0)``, the reference's decay.

    ``epoch`` is the global search-epoch counter, ``iteration * epochs_per_cycle + sub_epoch``;
    the formula mixes iteration and epoch units when epochs_per_cycle > 1, as the reference does.
    """
    span = (search_iterations - warmup_epochs) * epochs_per_cycle * ratio
    return max(coeff * (1.0 - (epoch - warmup_epochs) / span), 0.0)


def alpha_l1_penalty(
    alphas: Sequence[torch.Tensor], columns: list[int], reduction: Literal["sum", "mean"] = "sum"
) -> torch.Tensor:
    """Sum of |alpha| over the given op columns of every edge (row) of every alpha tensor;
    ``mean`` divides each tensor's sum by its number of edges (the NAS-Bench-201 variant).

    Penalising the raw logits pulls them towards 0 (negative values are penalised too), which
    is what the reference does.
    """
    per_tensor = [a[:, columns].abs().sum() / (a.shape[0] if reduction == "mean" else 1) for a in alphas]
    return torch.stack(per_tensor).sum()
