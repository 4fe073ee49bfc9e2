"""Measurement helpers shared by the benchmarks: timing, peak memory, matmul reference rates."""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of ``fn``, with the device drained before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], Any], steps: int, device: torch.device) -> float:
    return statistics.median(timed(fn, device) for _ in range(steps))


def matmul_flops_per_second(
    device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048, repeats: int = 10
) -> float:
    """FLOP/s of a large square matmul in ``dtype``: the device's practical dense peak."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    seconds = timed(lambda: [a @ b for _ in range(repeats)], device)
    return 2 * size**3 * repeats / seconds


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        # Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM) to the current.
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated CUDA memory, or the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine(device: torch.device) -> dict[str, Any]:
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def training_step_flops(forwards: Callable[[], Any]) -> int:
    """Work of a training step as 3 x the FLOPs of its forward passes (convolutions and matrix
    products; ``forwards`` runs each of them once). Forward FLOPs are counted without autograd:
    FlopCounterMode's convolution-backward formula ignores ``groups`` and would count every
    depthwise weight gradient ``groups`` times over. Backward costs about twice the forward
    (input and weight gradients), the usual convention."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        forwards()
    return 3 * int(counter.get_total_flops())
