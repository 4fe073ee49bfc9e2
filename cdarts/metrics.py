"""Classification metrics and running means."""

from __future__ import annotations

import torch


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Fraction (0..1, a 0-d tensor) of rows whose target is among the ``k`` largest logits."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == targets.unsqueeze(1)).any(dim=1).float().mean()


class MeanTracker:
    """Running means of named 0-d tensors, kept on the device (no per-step synchronisation)."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def update(self, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            value = value.detach().float()
            self._sums[name] = self._sums[name] + value if name in self._sums else value.clone()
        self._count += 1

    def mean_tensors(self) -> dict[str, torch.Tensor]:
        return {name: total / max(self._count, 1) for name, total in self._sums.items()}
