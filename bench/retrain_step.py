"""Benchmark of the retrain training step (CIFAR paper size: C = 36, 20 cells, 32 px, auxiliary
head, drop-path), the eager baseline against the fast settings the retrain stage uses by default.

* ``eager``: contiguous (NCHW) tensors, the per-tensor SGD loop;
* ``fast``: channels-last weights and batches, the fused SGD kernel;
* ``compiled`` (with --compile): ``fast`` plus torch.compile of the forward; its compile time is
  reported separately from its step time.

Per batch size: seconds per training step of each (alternating, median of --steps), images/s,
the ratio to eager, and inference images/s of the fast model; with --memory, peak memory of each
in a fresh process.

    python bench/retrain_step.py --compare --batch-size 32 128 --steps 3 --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import machine, peak_memory_mb, reset_peak_memory, timed

from cdarts.devices import autocast, resolve_device
from cdarts.spaces.darts.parser import resolve_genotype
from cdarts.spaces.darts.retrain_network import RetrainNetwork
from cdarts.spaces.darts.space import PAPER_SIZES
from cdarts.spaces.shared.depthwise_conv import use_fast_depthwise

VARIANTS = ("eager", "fast", "compiled")


@dataclass
class Trainer:
    model: RetrainNetwork
    forward: torch.nn.Module
    optimizer: torch.optim.Optimizer
    images: torch.Tensor
    labels: torch.Tensor
    bf16: bool

    def step(self) -> None:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.images.device, self.bf16):
            logits, aux = self.forward(self.images)
        loss = F.cross_entropy(logits.float(), self.labels) + 0.4 * F.cross_entropy(aux.float(), self.labels)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.optimizer.step()

    @torch.inference_mode()
    def infer(self) -> None:
        self.model.eval()
        with autocast(self.images.device, self.bf16):
            self.forward(self.images)


def build_trainer(
    genotype: str,
    variant: str,
    batch_size: int,
    device: torch.device,
    bf16: bool = False,
    drop_path_prob: float = 0.2,
) -> Trainer:
    torch.manual_seed(0)
    model = RetrainNetwork(resolve_genotype(genotype), PAPER_SIZES["cifar10"]).to(device)
    model.set_drop_path_prob(drop_path_prob)
    images = torch.randn(batch_size, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (batch_size,), device=device)
    fast = variant != "eager"
    if fast:  # what the retrain stage does with channels_last and fused_optimizer (its defaults)
        model = model.to(memory_format=torch.channels_last)
        if variant != "compiled":
            use_fast_depthwise(model)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4, fused=fast or None)
    forward: torch.nn.Module = torch.compile(model) if variant == "compiled" else model  # type: ignore[assignment]
    return Trainer(model, forward, optimizer, images, labels, bf16)


def compare_batch_size(
    genotype: str, batch_size: int, steps: int, warmup: int, device: torch.device, variants: tuple[str, ...], bf16: bool
) -> dict[str, Any]:
    trainers = {variant: build_trainer(genotype, variant, batch_size, device, bf16) for variant in variants}
    row: dict[str, Any] = {"batch_size": batch_size}
    for variant, trainer in trainers.items():
        first = timed(trainer.step, device)  # includes compilation for the compiled variant
        if variant == "compiled":
            row["compile_seconds"] = first
        for _ in range(max(0, warmup - 1)):
            trainer.step()
    times: dict[str, list[float]] = {variant: [] for variant in variants}
    for round_index in range(steps):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for variant in order:
            times[variant].append(timed(trainers[variant].step, device))
    for variant in variants:
        seconds = statistics.median(times[variant])
        row[variant] = {
            "seconds_per_step": seconds,
            "seconds_per_step_all": times[variant],
            "images_per_s": batch_size / seconds,
        }
        if "eager" in row and variant != "eager":
            row[variant]["speedup_vs_eager"] = row["eager"]["seconds_per_step"] / seconds
    fastest = trainers["fast" if "fast" in trainers else variants[0]]
    fastest.infer()
    row["inference_images_per_s"] = batch_size / statistics.median(timed(fastest.infer, device) for _ in range(steps))
    return row


def probe_memory(genotype: str, variant: str, batch_size: int, device: torch.device) -> float:
    trainer = build_trainer(genotype, variant, batch_size, device)
    trainer.step()
    reset_peak_memory(device)
    trainer.step()
    return peak_memory_mb(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genotype", default="CDARTS_CIFAR")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compare", action="store_true", help="eager and fast side by side, alternating")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (compile time reported apart)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--memory", action="store_true", help="peak memory per variant (fresh processes)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--probe-memory", nargs=2, metavar=("VARIANT", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = resolve_device(args.device)

    if args.probe_memory:
        variant, batch = args.probe_memory
        print(json.dumps({"peak_memory_mb": probe_memory(args.genotype, variant, int(batch), device)}))
        return

    variants = ("eager", "fast") if args.compare else ("fast",)
    variants += ("compiled",) if args.compile else ()
    # Memory first, in fresh processes, while this one is still small: the timing runs below
    # leave their peak in this process's heap.
    memory = []
    if args.memory:
        for batch_size in args.batch_size:
            for variant in ("eager", "fast"):
                command = [sys.executable, __file__, "--genotype", args.genotype, "--device", str(device)]
                command += ["--probe-memory", variant, str(batch_size)]
                completed = subprocess.run(command, capture_output=True, text=True, check=True)
                peak = float(json.loads(completed.stdout.strip().splitlines()[-1])["peak_memory_mb"])
                memory.append({"variant": variant, "batch_size": batch_size, "peak_memory_mb": peak})
                print(f"memory: {variant} batch {batch_size}: {peak:.0f} MiB", flush=True)

    results = []
    for batch_size in args.batch_size:
        start = time.perf_counter()
        row = compare_batch_size(args.genotype, batch_size, args.steps, args.warmup, device, variants, args.bf16)
        line = f"batch {batch_size:4d}:"
        for variant in variants:
            line += f"  {variant} {row[variant]['seconds_per_step']:.2f} s ({row[variant]['images_per_s']:.1f} img/s)"
            if "speedup_vs_eager" in row[variant]:
                line += f" {row[variant]['speedup_vs_eager']:.2f}x"
        if "compile_seconds" in row:
            line += f"  compile {row['compile_seconds']:.0f} s"
        print(f"{line}  [{time.perf_counter() - start:.0f} s]", flush=True)
        results.append(row)

    report = {
        "benchmark": "retrain_step",
        **machine(device),
        "genotype": args.genotype,
        "bf16": args.bf16,
        "results": results,
        "memory": memory,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
