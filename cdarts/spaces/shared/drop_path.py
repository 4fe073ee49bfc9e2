"""Drop-path (stochastic depth on cell edges) for discrete cells."""

from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """Zero whole samples of an edge's output with probability :attr:`drop_prob` in training.

    Survivors are scaled by ``1 / keep_prob`` so the expectation is unchanged. The probability is
    a plain attribute that the retrain loop ramps per epoch; it is 0 during search.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob <= 0.0:
            return x
        keep_prob = 1.0 - self.drop_prob
        mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep_prob)
        return x * mask.div_(keep_prob)  # scale the (N, 1, 1, 1) mask, not the activation

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
