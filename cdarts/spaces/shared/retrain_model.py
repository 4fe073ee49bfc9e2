"""The base of every space's retrain network: what training, evaluation, serving and model files use."""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import nn

from cdarts.spaces.shared.architecture_base import ArchitectureBase
from cdarts.spaces.shared.retrain_spec import RetrainSpec


class RetrainModel(nn.Module):
    """The discrete network of ``genotype`` with shape ``spec``; ``forward`` maps images
    (N, C, H, W) to ``(logits (N, classes), aux_logits or None)`` (None in eval mode or without an
    auxiliary head)."""

    genotype: ArchitectureBase
    spec: RetrainSpec

    @abstractmethod
    def set_drop_path_prob(self, drop_prob: float) -> None:
        """The drop-path probability of the current epoch (a no-op where the space has none)."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    @abstractmethod
    def parameter_counts(self) -> tuple[int, int]:
        """(parameters, parameters without the auxiliary head)."""
