"""One training epoch and one evaluation pass of a retrain network (any search space)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cdarts.devices import autocast
from cdarts.divergence import LossWatch
from cdarts.metrics import MeanTracker, topk_accuracy

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TrainSettings:
    aux_weight: float
    label_smoothing: float
    grad_clip: float
    bf16: bool = False
    channels_last: bool = False


def _prepare(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    settings: TrainSettings,
    on_step: Callable[[int], None] | None = None,
    after_backward: Callable[[], None] | None = None,
    watch: LossWatch | None = None,
) -> dict[str, float]:
    """``loss = CE(logits) + aux_weight * CE(aux_logits)`` (label-smoothed if configured).

    ``after_backward`` runs between backward and clipping (data parallelism averages the
    gradients there, so that every process clips and steps identically). Returns the epoch
    means of ``loss``, ``loss_main``, ``loss_aux`` and ``top1`` over this process's batches.
    ``watch`` keeps every step's loss terms (no synchronisation), for the caller to check the
    epoch means with (see :class:`cdarts.divergence.LossWatch`).
    """
    model.train()
    meter = MeanTracker()
    for step, (images, labels) in enumerate(batches):
        images = _prepare(images, device, settings.channels_last)
        labels = labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, settings.bf16):
            logits, aux_logits = model(images)
        loss_main = F.cross_entropy(logits.float(), labels, label_smoothing=settings.label_smoothing)
        loss_aux = torch.zeros((), device=device)
        if aux_logits is not None and settings.aux_weight > 0:
            loss_aux = F.cross_entropy(aux_logits.float(), labels, label_smoothing=settings.label_smoothing)
        loss = loss_main + settings.aux_weight * loss_aux
        loss.backward()  # type: ignore[no-untyped-call]
        if after_backward is not None:
            after_backward()
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        values = {
            "loss": loss.detach(),
            "loss_main": loss_main.detach(),
            "loss_aux": loss_aux.detach(),
            "top1": topk_accuracy(logits.detach(), labels),
        }
        meter.update(values)
        if watch is not None:
            watch.observe(values)
        if on_step is not None:
            on_step(step + 1)
    return {name: float(value) for name, value in meter.mean_tensors().items()}


@dataclass
class EvaluationResult:
    loss: float
    top1: float
    top5: float
    count: int
    confusion: torch.Tensor  # (K, K): rows = true class, columns = predicted class

    def metrics(self) -> dict[str, float]:
        return {"loss": self.loss, "top1": self.top1, "top5": self.top5}


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    device: torch.device,
    num_classes: int,
    bf16: bool = False,
    channels_last: bool = False,
) -> EvaluationResult:
    """Sample-weighted loss, top-1, top-5 and the confusion matrix over every batch."""
    model.eval()
    loss_sum = top1_sum = top5_sum = 0.0
    count = 0
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for images, labels in batches:
        images = _prepare(images, device, channels_last)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, bf16):
            logits, _ = model(images)
        logits = logits.float()
        n = labels.shape[0]
        loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        top1_sum += float(topk_accuracy(logits, labels, 1)) * n
        top5_sum += float(topk_accuracy(logits, labels, 5)) * n
        count += n
        pairs = labels.cpu() * num_classes + logits.argmax(1).cpu()
        confusion += torch.bincount(pairs, minlength=num_classes**2).view(num_classes, num_classes)
    if count == 0:
        raise ValueError("evaluation on an empty split")
    return EvaluationResult(loss_sum / count, top1_sum / count, top5_sum / count, count, confusion)
