"""Benchmark of one CDARTS joint step (Step A + Step B) at the official CIFAR search sizes.

Reports, per batch size: seconds per joint step, images/s (a joint step consumes one val and
one train batch, so 2 x batch images), peak memory, the step's FLOPs (forward + backward, counted
with torch.utils.flop_counter) and the achieved FLOP/s as a fraction of a large fp32 matmul's
FLOP/s measured in the same run on the same device.

    python bench/search_step.py --batch-sizes 16 64 --steps 3 --json bench/results/search_step.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from cdarts.config import load_config
from cdarts.devices import resolve_device
from cdarts.distributed import DistributedContext
from cdarts.search.build import build_joint_network
from cdarts.search.optimizers import build_cycle_optimizers
from cdarts.search.steps import SearchStepper

REPO_ROOT = Path(__file__).resolve().parents[1]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_second(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large square fp32 matmul: the device's practical dense peak."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    for _ in range(2):
        a @ b
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        # Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM).
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_batch_size(
    config_path: str, batch_size: int, steps: int, warmup: int, device: torch.device
) -> dict[str, Any]:
    experiment = load_config(config_path)
    torch.manual_seed(0)
    data = experiment.data
    num_classes = data.num_classes or 10
    model = build_joint_network(experiment.search, 3, num_classes, data.image_size).to(device)
    model.rebuild_eval_network(model.current_genotype())
    model.train()
    stepper = SearchStepper(model, experiment.search, device, DistributedContext())
    optimizers = build_cycle_optimizers(model, experiment.search)
    shape = (batch_size, 3, data.image_size, data.image_size)
    val = (torch.randn(shape, device=device), torch.randint(0, num_classes, (batch_size,), device=device))
    train = (torch.randn(shape, device=device), torch.randint(0, num_classes, (batch_size,), device=device))

    for _ in range(warmup):
        stepper.joint_step(val, train, optimizers, 1.0)
    with FlopCounterMode(display=False) as counter:
        stepper.joint_step(val, train, optimizers, 1.0)
    flops = counter.get_total_flops()

    _synchronize(device)
    _reset_peak_memory(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        stepper.joint_step(val, train, optimizers, 1.0)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "batch_size": batch_size,
        "seconds_per_step": seconds,
        "seconds_per_step_all": times,
        "images_per_s": 2 * batch_size / seconds,
        "peak_memory_mb": _peak_memory_mb(device),
        "flops_per_step": flops,
        "achieved_flops_per_s": flops / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO_ROOT / "configs" / "cifar10.yaml"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--steps", type=int, default=3, help="timed joint steps per batch size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed joint steps first")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    device = resolve_device(args.device)
    matmul = matmul_flops_per_second(device)
    results = []
    for batch_size in args.batch_sizes:
        row = bench_batch_size(args.config, batch_size, args.steps, args.warmup, device)
        row["fraction_of_matmul"] = row["achieved_flops_per_s"] / matmul
        results.append(row)
        print(
            f"batch {batch_size:4d}: {row['seconds_per_step']:.3f} s/step, {row['images_per_s']:.1f} img/s, "
            f"peak {row['peak_memory_mb']:.0f} MiB, {row['achieved_flops_per_s'] / 1e9:.2f} GFLOP/s "
            f"= {row['fraction_of_matmul']:.1%} of matmul ({matmul / 1e9:.1f} GFLOP/s)",
            flush=True,
        )
    report = {
        "benchmark": "search_step",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "config": args.config,
        "matmul_flops_per_s": matmul,
        "results": results,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
