"""Multi-process data parallelism for the search and the retrain (torchrun; gloo on CPU, NCCL on CUDA).

Instead of wrapping the module in DDP (each backward touches a different part of it, and E is
rebuilt every cycle), gradients are averaged explicitly after every backward, over every
parameter that holds a gradient. Clipping then sees the same averaged gradients on every rank,
so every rank takes the same step and the alphas stay identical everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def average_gradients(self, module: nn.Module) -> None:
        """All-reduce (mean) the gradients of ``module``, flattened into one buffer."""
        if not self.enabled:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def average_values(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Mean over ranks of each 0-d tensor (for logging)."""
        if not self.enabled or not values:
            return values
        names = sorted(values)
        stacked = torch.stack([values[name].detach().float() for name in names])
        dist.all_reduce(stacked)
        return dict(zip(names, stacked / self.world_size, strict=True))

    def broadcast_module(self, module: nn.Module) -> None:
        """Make every rank start from rank 0's parameters and buffers."""
        if not self.enabled:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Make every rank hold rank 0's buffers (BatchNorm running statistics), as DDP does."""
        if not self.enabled:
            return
        for tensor in module.buffers():
            dist.broadcast(tensor.data, src=0)

    def max_difference_from_main(self, tensors: Sequence[torch.Tensor]) -> float:
        """Largest absolute difference between this rank's tensors and rank 0's (0 when equal)."""
        if not self.enabled:
            return 0.0
        flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
        reference = flat.clone()
        dist.broadcast(reference, src=0)
        difference = (flat - reference).abs().max()
        dist.all_reduce(difference, op=dist.ReduceOp.MAX)
        return float(difference)

    def any_rank(self, flag: bool, device: torch.device) -> bool:
        """True on every process when ``flag`` is true on any (so all take the same branch)."""
        if not self.enabled:
            return flag
        value = torch.tensor(float(flag), device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group torchrun describes in the environment (no-op for one process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size())


def device_for_rank(device: torch.device) -> torch.device:
    """Under torchrun on CUDA, each process takes the GPU of its LOCAL_RANK."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def destroy_process_group() -> None:
    """Leave the torchrun process group, if any (call once at process exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
