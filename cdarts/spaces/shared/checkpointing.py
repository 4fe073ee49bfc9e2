"""Activation checkpointing of whole cells, safe for BatchNorm.

A checkpointed cell keeps only its inputs during the forward pass and runs again in the backward
pass to rebuild what the gradients need. Running it again would update BatchNorm's running
statistics a second time with the same batch, so the recomputation restores them afterwards: the
losses, the gradients and the running statistics are those of an ordinary forward pass.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop


def _batchnorm_buffers(module: nn.Module) -> list[torch.Tensor]:
    return [
        buffer
        for submodule in module.modules()
        if isinstance(submodule, nn.modules.batchnorm._BatchNorm)
        for buffer in submodule.buffers()
    ]


def run_checkpointed(cell: nn.Module, *inputs: Any) -> torch.Tensor:
    """``cell(*inputs)``, storing only ``inputs`` for backward (recomputing the rest there)."""
    buffers = _batchnorm_buffers(cell)
    calls = 0

    def run(*args: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 1:
            output: torch.Tensor = cell(*args)
            return output
        saved = [buffer.clone() for buffer in buffers]
        output = cell(*args)
        with torch.no_grad():
            for buffer, value in zip(buffers, saved, strict=True):
                buffer.copy_(value)
        return output

    # Early stopping would abandon the recomputation once the needed tensors exist, before the
    # statistics are restored; the cell is small, so recompute it whole.
    with set_checkpoint_early_stop(False):
        result: torch.Tensor = checkpoint(run, *inputs, use_reentrant=False)
    return result


def should_checkpoint(module: nn.Module, enabled: bool) -> bool:
    """Checkpoint only when it saves something: training with gradients."""
    return enabled and module.training and torch.is_grad_enabled()
