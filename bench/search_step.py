"""Benchmark of one CDARTS joint step (Step A + Step B) at the official CIFAR search sizes
(S: 8 cells, E: 20 cells, C = 16, 32 px), reference formulation against the fast one.

Per batch size: seconds per joint step and images/s of each implementation (with --compare the
two alternate step by step, so drift hits both alike) and their ratio; the step's FLOPs (3 x its
forward passes' convolutions and matrix products) and the achieved fraction of a large matmul's
FLOP/s measured in the same run; before timing, the losses and gradients of both implementations
from the same weights (largest relative difference). With --memory, the peak memory of each
implementation, and of the fast one with activation checkpointing at --checkpointing-batch, each
measured in a fresh process.

    python bench/search_step.py --compare --batch-size 16 32 64 --steps 3 --memory --json OUT.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import (
    machine,
    matmul_flops_per_second,
    peak_memory_mb,
    reset_peak_memory,
    timed,
    training_step_flops,
)

from cdarts.config import load_config
from cdarts.devices import resolve_device
from cdarts.distributed import DistributedContext
from cdarts.search.optimizers import CycleOptimizers, build_cycle_optimizers
from cdarts.search.steps import Batch, SearchStepper
from cdarts.spaces.darts.joint_network import JointNetwork
from cdarts.spaces.darts.parser import reference_genotype
from cdarts.spaces.darts.space import build_joint_network

REPO_ROOT = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = ("reference", "fast")
EVAL_GENOTYPE = "CDARTS_CIFAR"  # E of the benchmark: the paper's searched CIFAR cell


@dataclass
class Setup:
    """One implementation's network, stepper, optimisers and fixed batches."""

    model: JointNetwork
    stepper: SearchStepper
    optimizers: CycleOptimizers
    val: Batch
    train: Batch

    def step(self) -> None:
        self.stepper.joint_step(self.val, self.train, self.optimizers, 1.0)


def build_setup(
    config_path: str,
    impl: str,
    batch_size: int,
    device: torch.device,
    checkpointing: bool = False,
    bf16: bool = False,
    eval_genotype: str = EVAL_GENOTYPE,
) -> Setup:
    """``impl``'s joint network at the config's sizes, E built from ``eval_genotype``."""
    experiment = load_config(config_path)
    search = experiment.search.model_copy(
        update={"impl": impl, "activation_checkpointing": checkpointing, "bf16": bf16}
    )
    num_classes = experiment.data.num_classes or 10
    size = experiment.data.image_size
    torch.manual_seed(0)
    model = build_joint_network(search, experiment.darts, 3, num_classes, size).to(device)
    model.rebuild_eval_network(reference_genotype(eval_genotype))
    model.train()
    generator = torch.Generator().manual_seed(1)

    def batch() -> Batch:
        images = torch.randn(batch_size, 3, size, size, generator=generator)
        return images.to(device), torch.randint(0, num_classes, (batch_size,), generator=generator).to(device)

    stepper = SearchStepper(model, search, device, DistributedContext())
    return Setup(model, stepper, build_cycle_optimizers(model, search), batch(), batch())


def _step_a_gradients(model: JointNetwork, batch: Batch) -> tuple[float, dict[str, torch.Tensor]]:
    """Step A's classification + distillation loss and the gradient of every parameter."""
    images, labels = batch
    model.zero_grad(set_to_none=True)
    out_search, out_eval = model(images, "search"), model(images, "eval")
    assert out_search.ensemble is not None and out_eval.ensemble is not None
    loss = F.cross_entropy(out_search.logits, labels) + F.cross_entropy(out_eval.logits, labels)
    loss = loss + F.smooth_l1_loss(out_search.ensemble, out_eval.ensemble)
    loss.backward()  # type: ignore[no-untyped-call]
    grads = {name: p.grad.detach().double() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def _worst_relative_difference(grads: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    return max(float((grads[name] - g).norm() / g.norm().clamp_min(1e-30)) for name, g in reference.items())


def equivalence(reference: Setup, fast: Setup) -> dict[str, float]:
    """Step A's loss and gradients of both implementations from equal weights, in fp32 and in fp64.

    fp64 isolates the algorithm (the two compute the same function up to summation order); the
    fp32 rows show how far rounding moves each of them from the fp64 (exact) gradient: at the
    official sizes and at initialisation the gradient is ill-conditioned, so the reference itself
    is far from exact in fp32 and any change of kernel moves it by as much."""
    fast.model.load_state_dict(reference.model.state_dict())
    images, labels = reference.val
    loss32, grads32 = _step_a_gradients(reference.model, reference.val)
    fast_loss32, fast_grads32 = _step_a_gradients(fast.model, reference.val)
    exact_batch = (images.double(), labels)
    loss64, grads64 = _step_a_gradients(copy.deepcopy(reference.model).double(), exact_batch)
    fast_loss64, fast_grads64 = _step_a_gradients(copy.deepcopy(fast.model).double(), exact_batch)
    return {
        "fp64_fast_vs_reference_loss": abs(fast_loss64 - loss64) / abs(loss64),
        "fp64_fast_vs_reference_max_gradient": _worst_relative_difference(fast_grads64, grads64),
        "fp32_fast_vs_reference_loss": abs(fast_loss32 - loss32) / abs(loss32),
        "fp32_fast_vs_reference_max_gradient": _worst_relative_difference(fast_grads32, grads32),
        "fp32_reference_vs_exact_max_gradient": _worst_relative_difference(grads32, grads64),
        "fp32_fast_vs_exact_max_gradient": _worst_relative_difference(fast_grads32, grads64),
        "gradients_compared": len(grads64),
    }


def step_flops(setup: Setup) -> int:
    """3 x the forward FLOPs of a joint step: Step A runs S and E (with the heads) on the val
    batch, Step B runs S (without the heads) on the train batch."""
    model = setup.model

    def forwards() -> None:
        model(setup.val[0], "search")
        model(setup.val[0], "eval")
        model(setup.train[0], "search", with_ensemble=False)

    return training_step_flops(forwards)


def compare_batch_size(
    config: str,
    batch_size: int,
    steps: int,
    warmup: int,
    device: torch.device,
    impls: tuple[str, ...],
    bf16: bool,
    check_equivalence: bool,
) -> dict[str, Any]:
    setups = {impl: build_setup(config, impl, batch_size, device, bf16=bf16) for impl in impls}
    row: dict[str, Any] = {"batch_size": batch_size}
    if len(impls) == 2 and check_equivalence:
        row["equivalence"] = equivalence(setups["reference"], setups["fast"])
    for setup in setups.values():
        for _ in range(warmup):
            setup.step()
    row["flops_per_step"] = step_flops(next(iter(setups.values())))
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    for round_index in range(steps):
        order = impls if round_index % 2 == 0 else impls[::-1]  # alternate who goes first
        for impl in order:
            times[impl].append(timed(setups[impl].step, device))
    for impl in impls:
        seconds = statistics.median(times[impl])
        row[impl] = {
            "seconds_per_step": seconds,
            "seconds_per_step_all": times[impl],
            "images_per_s": 2 * batch_size / seconds,  # a joint step takes a val and a train batch
            "achieved_flops_per_s": row["flops_per_step"] / seconds,
        }
    if len(impls) == 2:
        row["speedup"] = row["reference"]["seconds_per_step"] / row["fast"]["seconds_per_step"]
    return row


def probe_memory(config: str, impl: str, batch_size: int, checkpointing: bool, device: torch.device) -> float:
    """Peak memory (MiB) of one joint step, after one warm-up step."""
    setup = build_setup(config, impl, batch_size, device, checkpointing)
    setup.step()
    reset_peak_memory(device)
    setup.step()
    return peak_memory_mb(device)


def memory_in_fresh_process(config: str, impl: str, batch_size: int, checkpointing: bool, device: str) -> float:
    command = [sys.executable, __file__, "--config", config, "--device", device]
    command += ["--probe-memory", impl, str(batch_size), "1" if checkpointing else "0"]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(json.loads(completed.stdout.strip().splitlines()[-1])["peak_memory_mb"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO_ROOT / "configs" / "cifar10.yaml"))
    parser.add_argument("--batch-size", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--steps", type=int, default=3, help="timed joint steps per implementation")
    parser.add_argument("--warmup", type=int, default=1, help="untimed joint steps first")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compare", action="store_true", help="reference and fast side by side, alternating")
    parser.add_argument("--impl", choices=IMPLEMENTATIONS, default="fast", help="without --compare")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--memory", action="store_true", help="peak memory per implementation (fresh processes)")
    parser.add_argument("--checkpointing-batch", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--probe-memory", nargs=3, metavar=("IMPL", "BATCH", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = resolve_device(args.device)

    if args.probe_memory:
        impl, batch, checkpointing = args.probe_memory
        print(json.dumps({"peak_memory_mb": probe_memory(args.config, impl, int(batch), checkpointing == "1", device)}))
        return

    impls = IMPLEMENTATIONS if args.compare else (args.impl,)
    matmul = matmul_flops_per_second(device)
    # Memory first, in fresh processes, while this one is still small: the timing runs below
    # leave their peak in this process's heap.
    memory = []
    if args.memory:
        plan = [(impl, batch, False) for batch in args.batch_size for impl in impls]
        plan.append(("fast", args.checkpointing_batch, True))
        for impl, batch, checkpointing in plan:
            peak = memory_in_fresh_process(args.config, impl, batch, checkpointing, str(device))
            memory.append(
                {"impl": impl, "batch_size": batch, "activation_checkpointing": checkpointing, "peak_memory_mb": peak}
            )
            print(
                f"memory: {impl}{' + checkpointing' if checkpointing else ''} batch {batch}: {peak:.0f} MiB", flush=True
            )

    results = []
    for index, batch_size in enumerate(args.batch_size):
        check = index == 0  # the equivalence check once, at the first batch size
        row = compare_batch_size(args.config, batch_size, args.steps, args.warmup, device, impls, args.bf16, check)
        line = f"batch {batch_size:4d}:"
        for impl in impls:
            row[impl]["fraction_of_matmul"] = row[impl]["achieved_flops_per_s"] / matmul
            line += f"  {impl} {row[impl]['seconds_per_step']:.2f} s ({row[impl]['images_per_s']:.1f} img/s,"
            line += f" {row[impl]['fraction_of_matmul']:.0%} of matmul)"
        if "speedup" in row:
            line += f"  speedup {row['speedup']:.2f}x"
        if "equivalence" in row:
            same = row["equivalence"]
            line += f"; max gradient difference fp64 {same['fp64_fast_vs_reference_max_gradient']:.0e}"
            line += f", fp32 {same['fp32_fast_vs_reference_max_gradient']:.0e}"
            line += f" (reference fp32 vs exact {same['fp32_reference_vs_exact_max_gradient']:.0e})"
        print(line, flush=True)
        results.append(row)

    report = {
        "benchmark": "search_step",
        **machine(device),
        "config": str(Path(args.config).relative_to(REPO_ROOT))
        if args.config.startswith(str(REPO_ROOT))
        else args.config,
        "bf16": args.bf16,
        "matmul_flops_per_s": matmul,
        "results": results,
        "memory": memory,
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
