"""The chain-space network of an architecture as a retrain model (no auxiliary head)."""

from __future__ import annotations

import torch

from cdarts.spaces.chain.architecture import ChainArchitecture
from cdarts.spaces.chain.network import ChainNetwork
from cdarts.spaces.shared.retrain_model import RetrainModel
from cdarts.spaces.shared.retrain_spec import RetrainSpec


class ChainRetrainNetwork(RetrainModel):
    """``forward`` returns ``(logits, None)``; drop-path grows with depth (see ChainNetwork)."""

    def __init__(self, genotype: ChainArchitecture, spec: RetrainSpec) -> None:
        super().__init__()
        self.genotype, self.spec = genotype, spec
        self.network = ChainNetwork(genotype.as_lists(), spec.num_classes, spec.in_channels, spec.dropout)

    def set_drop_path_prob(self, drop_prob: float) -> None:
        self.network.set_drop_path_prob(drop_prob)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.network(x), None

    def parameter_counts(self) -> tuple[int, int]:
        """(all parameters, the same: there is no auxiliary head)."""
        total = sum(p.numel() for p in self.parameters())
        return total, total
