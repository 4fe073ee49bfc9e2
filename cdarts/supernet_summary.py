"""What a search builds, part by part: S, E, the weight pool, the distillation heads (with the
shape of the feature map each reads) and the alphas, with parameter counts.

Useful for memory planning (the pool and E's optimizer state are what grows with the search
space) and for checking a space against its paper: the head taps are measured with forward
hooks on one small batch, not derived from the code's own bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from cdarts.spaces.shared.joint_base import JointModel


@dataclass(frozen=True)
class HeadSummary:
    """A distillation head: the (C, H, W) map it reads and its parameter count."""

    input_shape: tuple[int, ...]
    params: int


@dataclass(frozen=True)
class SupernetSummary:
    """Parameter counts of every part of a joint network (each parameter counted once)."""

    search_network: int  # S: its cells or layers and classifier
    eval_network: int  # E for the architecture of the initial alphas, with its classifier
    weight_pool: int
    heads: list[HeadSummary]
    alphas: dict[str, tuple[int, ...]]
    other: int  # stems, the ensemble weights
    total: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _count(parameters: Iterable[nn.Parameter], seen: set[int]) -> int:
    """Elements of the parameters not yet in ``seen`` (ids), adding them to it."""
    total = 0
    for parameter in parameters:
        if id(parameter) not in seen:
            seen.add(id(parameter))
            total += parameter.numel()
    return total


@torch.no_grad()
def summarize_supernet(model: JointModel, in_channels: int, image_size: int) -> SupernetSummary:
    """Build E for the current alphas' architecture and run S and E once on two blank images
    (eval mode: BN statistics untouched) to record each head's input shape."""
    model.rebuild_eval_network(model.current_genotype())
    shapes: dict[int, tuple[int, ...]] = {}

    def recorder(index: int) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            shapes.setdefault(index, tuple(inputs[0].shape[1:]))  # (returns None: inputs unchanged)

        return record

    hooks = [head.register_forward_pre_hook(recorder(index)) for index, head in enumerate(model.distill_heads)]
    was_training = model.training
    model.eval()
    try:
        images = torch.zeros(2, in_channels, image_size, image_size)
        for branch in ("search", "eval"):
            model(images, branch)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    seen: set[int] = set()
    alphas = {name: tuple(tensor.shape) for name, tensor in model.named_alphas().items()}
    _count(model.arch_parameters(), seen)
    search = _count(model.search_module_parameters(), seen)
    evaluation = _count(model.eval_module_parameters(), seen)
    pool = _count(model.get_submodule("weight_pool").parameters(), seen)  # every space names it so
    heads = [
        HeadSummary(shapes[index], _count(head.parameters(), seen)) for index, head in enumerate(model.distill_heads)
    ]
    other = _count(model.parameters(), seen)
    total = sum(parameter.numel() for parameter in model.parameters())  # (deduplicated by torch)
    return SupernetSummary(search, evaluation, pool, heads, alphas, other, total)
