"""Benchmark of the retrain network (CIFAR paper size: C=36, 20 cells, 32 px, auxiliary head).

Reports, per batch size: training-step time (forward + backward + SGD step), images/s and peak
memory; and eval-mode inference images/s. Same memory measure as bench/search_step.py.

    python bench/retrain_step.py --batch-sizes 32 128 --steps 3 --json bench/results/retrain_step.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_step import _peak_memory_mb, _reset_peak_memory, _synchronize

from cdarts.devices import resolve_device
from cdarts.genotype import resolve_genotype
from cdarts.model_summary import PAPER_SIZES
from cdarts.networks.retrain_network import RetrainNetwork


def _timed(fn: Any, steps: int, device: torch.device) -> float:
    times = []
    for _ in range(steps):
        _synchronize(device)
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_batch_size(genotype: str, batch_size: int, steps: int, warmup: int, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    model = RetrainNetwork(resolve_genotype(genotype), PAPER_SIZES["cifar10"]).to(device)
    model.set_drop_path_prob(0.2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    images = torch.randn(batch_size, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (batch_size,), device=device)

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        logits, aux = model(images)
        loss = F.cross_entropy(logits, labels) + 0.4 * F.cross_entropy(aux, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    @torch.inference_mode()
    def inference() -> None:
        model.eval()
        model(images)

    for _ in range(warmup):
        train_step()
    _reset_peak_memory(device)
    train_seconds = _timed(train_step, steps, device)
    peak = _peak_memory_mb(device)
    for _ in range(warmup):
        inference()
    inference_seconds = _timed(inference, steps, device)
    return {
        "batch_size": batch_size,
        "train_seconds_per_step": train_seconds,
        "train_images_per_s": batch_size / train_seconds,
        "train_peak_memory_mb": peak,
        "inference_images_per_s": batch_size / inference_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genotype", default="CDARTS_CIFAR")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    device = resolve_device(args.device)
    results = []
    for batch_size in args.batch_sizes:
        row = bench_batch_size(args.genotype, batch_size, args.steps, args.warmup, device)
        results.append(row)
        print(
            f"batch {batch_size:4d}: train {row['train_seconds_per_step']:.3f} s/step = "
            f"{row['train_images_per_s']:.1f} img/s, peak {row['train_peak_memory_mb']:.0f} MiB; "
            f"inference {row['inference_images_per_s']:.1f} img/s",
            flush=True,
        )
    report = {
        "benchmark": "retrain_step",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "genotype": args.genotype,
        "results": results,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
