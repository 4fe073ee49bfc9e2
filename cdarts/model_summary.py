"""Model size and cost: parameters (with and without the auxiliary head) and multiply-adds.

Multiply-adds are counted with ``torch.utils.flop_counter`` on one input in eval mode (so
without the auxiliary head and drop-path): it counts the multiply-accumulates of convolutions,
linear layers and matrix products (FLOPs / 2). BatchNorm, activations, pooling and additions
are not counted, the usual convention of the "x+" column in NAS papers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from cdarts.architecture import Architecture
from cdarts.spaces.registry import build_retrain_network
from cdarts.spaces.shared.retrain_model import RetrainModel
from cdarts.spaces.shared.retrain_spec import RetrainSpec


@dataclass(frozen=True)
class ModelSummary:
    params: int
    params_without_aux: int
    multiply_adds: int

    def to_dict(self) -> dict[str, int]:
        return {
            "params": self.params,
            "params_without_aux": self.params_without_aux,
            "multiply_adds": self.multiply_adds,
        }


def count_multiply_adds(model: RetrainModel) -> int:
    """Multiply-adds of one forward pass on a single image (eval mode, no gradients)."""
    spec = model.spec
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    image = torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size, device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    model.train(was_training)
    return int(counter.get_total_flops() // 2)


def summarize(model: RetrainModel) -> ModelSummary:
    params, without_aux = model.parameter_counts()
    return ModelSummary(params, without_aux, count_multiply_adds(model))


def summarize_genotype(genotype: Architecture, spec: RetrainSpec) -> ModelSummary:
    return summarize(build_retrain_network(genotype, spec))
