"""The chain-space search network S: every searchable slot mixes the six inverted-residual
blocks (and, except in a stage's first slot, skip) with softmax(alphas) of that slot.

Our design, not reference behaviour (the authors' chain-space search code is not public; see
docs/search-spaces.md): one alpha row per slot, ``alphas``: (slots, candidates); a stage's first
slot changes width or stride, so its ``skip`` logit is masked to -inf and can never be chosen.
"""

from __future__ import annotations

import torch
from torch import nn

from cdarts.spaces.chain.architecture import ChainArchitecture
from cdarts.spaces.chain.blocks import InvertedResidual
from cdarts.spaces.chain.candidates import CHOICES
from cdarts.spaces.chain.network import STAGE_CHANNELS, STAGE_STRIDES, STEM_CHANNELS


def slot_shapes(stage_layers: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """(stage, c_in, c_out, stride) of every slot, stage by stage."""
    shapes, c_in = [], STEM_CHANNELS
    for stage, (count, c_out, stride) in enumerate(zip(stage_layers, STAGE_CHANNELS, STAGE_STRIDES, strict=True)):
        for slot in range(count):
            shapes.append((stage, c_in if slot == 0 else c_out, c_out, stride if slot == 0 else 1))
        c_in = c_out
    return shapes


def candidate_mask(stage_layers: tuple[int, ...], allow_skip: bool) -> torch.Tensor:
    """(slots, candidates): 0 where a candidate is allowed, -inf for skip in a stage's first slot."""
    mask = torch.zeros(sum(stage_layers), len(CHOICES) + int(allow_skip))
    if allow_skip:
        first_slots = [sum(stage_layers[:stage]) for stage in range(len(stage_layers))]
        mask[first_slots, -1] = float("-inf")
    return mask


def slot_probabilities(alphas: torch.Tensor, stage_layers: tuple[int, ...], allow_skip: bool) -> torch.Tensor:
    """softmax(alphas + mask) per slot on the CPU in float32: (slots, candidates). The one formula
    behind derivation, from the live model and from an alphas file alike."""
    return torch.softmax(alphas.detach().float().cpu() + candidate_mask(stage_layers, allow_skip), dim=-1)


def architecture_from_probabilities(
    probabilities: torch.Tensor, stage_layers: tuple[int, ...], allow_skip: bool
) -> ChainArchitecture:
    """Argmax per slot; slots whose argmax is skip are left out. probabilities: (slots, candidates),
    already masked (a stage's first slot never picks skip, so no stage ends up empty)."""
    best = probabilities.argmax(dim=-1).tolist()
    choices: list[list[int]] = []
    index = 0
    for count in stage_layers:
        stage = [best[index + slot] for slot in range(count)]
        choices.append([c for c in stage if not (allow_skip and c == len(CHOICES))])
        index += count
    return ChainArchitecture.from_lists(choices)


class MixedChainLayer(nn.Module):
    """``sum_k w_k * block_k(x)`` over the six blocks (plus ``w_skip * x``)."""

    def __init__(self, c_in: int, c_out: int, stride: int, with_skip: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(InvertedResidual(c_in, c_out, k, e, stride) for k, e in CHOICES)
        self.with_skip = with_skip

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: (N, c_in, H, W); weights: (candidates,) of this slot -> (N, c_out, H / stride, W / stride)."""
        out = sum(w * block(x) for w, block in zip(weights, self.blocks, strict=False))
        if self.with_skip:
            out = out + weights[-1] * x
        assert isinstance(out, torch.Tensor)
        return out


class ChainSupernet(nn.Module):
    """The searchable stages of S (stem and head live in the joint network).

    Args:
        stage_layers: slots per stage (1 to 4 each).
        allow_skip: add the skip candidate to every slot but a stage's first.
    """

    def __init__(self, stage_layers: tuple[int, ...], allow_skip: bool) -> None:
        super().__init__()
        self.stage_layers = stage_layers
        self.allow_skip = allow_skip
        self.slots = nn.ModuleList(
            MixedChainLayer(c_in, c_out, stride, allow_skip and c_in == c_out and stride == 1)
            for _, c_in, c_out, stride in slot_shapes(stage_layers)
        )
        self.stage_of_slot = [stage for stage, *_ in slot_shapes(stage_layers)]
        self.register_buffer("mask", candidate_mask(stage_layers, allow_skip), persistent=False)
        self.alphas = nn.Parameter(1e-3 * torch.randn(len(self.slots), len(CHOICES) + int(allow_skip)))

    def probabilities(self) -> torch.Tensor:
        """softmax(alphas + mask) per slot: (slots, candidates)."""
        mask: torch.Tensor = self.mask  # type: ignore[assignment]
        return torch.softmax(self.alphas + mask, dim=-1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage."""
        weights = self.probabilities()
        outputs: list[torch.Tensor] = []
        for index, slot in enumerate(self.slots):
            x = slot(x, weights[index])
            if index + 1 == len(self.slots) or self.stage_of_slot[index + 1] != self.stage_of_slot[index]:
                outputs.append(x)
        return outputs
