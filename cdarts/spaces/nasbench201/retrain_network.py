"""The NAS-Bench-201 network of a genotype as a retrain model (the benchmark's own training
setting: affine BN, no auxiliary head, no drop-path)."""

from __future__ import annotations

import torch

from cdarts.spaces.nasbench201.architecture import Nb201Genotype
from cdarts.spaces.nasbench201.networks import Nb201Network
from cdarts.spaces.shared.retrain_model import RetrainModel
from cdarts.spaces.shared.retrain_spec import RetrainSpec


class Nb201RetrainNetwork(RetrainModel):
    """``forward`` returns ``(logits, None)`` like the DARTS retrain network; C and N come from
    ``spec.init_channels`` and ``spec.cells``."""

    def __init__(self, genotype: Nb201Genotype, spec: RetrainSpec) -> None:
        super().__init__()
        if spec.image_size % 4:
            raise ValueError(f"image size {spec.image_size} is not a multiple of 4 (two stride-2 blocks)")
        self.genotype, self.spec = genotype, spec
        self.network = Nb201Network(spec.num_classes, spec.in_channels, spec.init_channels, spec.cells, genotype, True)

    def set_drop_path_prob(self, drop_prob: float) -> None:
        """NAS-Bench-201 trains without drop-path; kept for the common retrain interface."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.network(x), None

    def parameter_counts(self) -> tuple[int, int]:
        """(all parameters, the same: there is no auxiliary head)."""
        total = sum(p.numel() for p in self.parameters())
        return total, total
