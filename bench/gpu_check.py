"""The GPU check behind bench/gpu_check.sh: correctness first, then speed, in a few minutes.

1. Correctness: the fast search implementation against the reference in fp64 (same function);
   bf16 autocast against fp32 for the search Step A and the retrain step (loss and gradient
   direction).
2. Speed: images/s, peak memory and the fraction of the GPU's measured bf16 matmul rate for the
   search joint step (fast, bf16, official CIFAR sizes) and the retrain step (fast, bf16).

Prints a table and writes JSON. Exits 1 if a correctness check fails.

    python bench/gpu_check.py --json bench/results/gpu_check.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import machine, matmul_flops_per_second, peak_memory_mb, reset_peak_memory, timed, training_step_flops
from retrain_step import build_trainer
from search_step import REPO_ROOT, _step_a_gradients, build_setup, step_flops

from cdarts.devices import autocast, resolve_device

CONFIG = str(REPO_ROOT / "configs" / "cifar10.yaml")


def _cosine(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    flat_a = torch.cat([a[name].flatten() for name in sorted(b)])
    flat_b = torch.cat([b[name].flatten() for name in sorted(b)])
    return float(F.cosine_similarity(flat_a, flat_b, dim=0))


def check_search(device: torch.device, batch_size: int) -> dict[str, Any]:
    reference = build_setup(CONFIG, "reference", batch_size, device)
    fast = build_setup(CONFIG, "fast", batch_size, device)
    fast.model.load_state_dict(reference.model.state_dict())
    images, labels = reference.val
    exact = (images.double(), labels)
    loss64, grads64 = _step_a_gradients(copy.deepcopy(reference.model).double(), exact)
    fast_loss64, fast_grads64 = _step_a_gradients(copy.deepcopy(fast.model).double(), exact)
    loss32, grads32 = _step_a_gradients(fast.model, reference.val)
    with autocast(device, True):
        loss16, grads16 = _step_a_gradients(fast.model, reference.val)
    algorithm = max(float((fast_grads64[n] - g).norm() / g.norm().clamp_min(1e-30)) for n, g in grads64.items())
    return {
        "fp64_fast_vs_reference_max_gradient": algorithm,
        "fp64_fast_vs_reference_loss": abs(fast_loss64 - loss64) / abs(loss64),
        "bf16_vs_fp32_loss": abs(loss16 - loss32) / abs(loss32),
        "bf16_vs_fp32_gradient_cosine": _cosine(grads16, grads32),
        "fp32_vs_fp64_gradient_cosine": _cosine(grads32, fast_grads64),
    }


def check_retrain(device: torch.device, batch_size: int) -> dict[str, Any]:
    results = {}
    for bf16 in (False, True):
        trainer = build_trainer("CDARTS_CIFAR", "fast", batch_size, device, bf16)
        trainer.model.set_drop_path_prob(0.0)  # deterministic forward for the comparison
        trainer.model.train()
        with autocast(device, bf16):
            logits, aux = trainer.model(trainer.images)
        loss = F.cross_entropy(logits.float(), trainer.labels) + 0.4 * F.cross_entropy(aux.float(), trainer.labels)
        loss.backward()  # type: ignore[no-untyped-call]
        grads = {n: p.grad.detach().double() for n, p in trainer.model.named_parameters() if p.grad is not None}
        results[bf16] = (float(loss.detach()), grads)
    (loss32, grads32), (loss16, grads16) = results[False], results[True]
    return {
        "bf16_vs_fp32_loss": abs(loss16 - loss32) / abs(loss32),
        "bf16_vs_fp32_gradient_cosine": _cosine(grads16, grads32),
    }


def speed(step: Any, flops: int, images_per_step: int, steps: int, device: torch.device, peak: float) -> dict[str, Any]:
    step()
    reset_peak_memory(device)
    seconds = statistics.median(timed(step, device) for _ in range(steps))
    return {
        "seconds_per_step": seconds,
        "images_per_s": images_per_step / seconds,
        "peak_memory_mb": peak_memory_mb(device),
        "achieved_flops_per_s": flops / seconds,
        "fraction_of_bf16_matmul": flops / seconds / peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--search-batch", type=int, default=64)
    parser.add_argument("--retrain-batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    search_check = check_search(device, min(args.search_batch, 32))
    retrain_check = check_retrain(device, min(args.retrain_batch, 64))
    failures = []
    if search_check["fp64_fast_vs_reference_max_gradient"] > 1e-6:
        failures.append("fast and reference search differ in fp64")
    if search_check["bf16_vs_fp32_gradient_cosine"] < 0.9 or search_check["bf16_vs_fp32_loss"] > 0.05:
        failures.append("bf16 search step departs from fp32")
    if retrain_check["bf16_vs_fp32_gradient_cosine"] < 0.9 or retrain_check["bf16_vs_fp32_loss"] > 0.05:
        failures.append("bf16 retrain step departs from fp32")

    bf16_peak = matmul_flops_per_second(device, torch.bfloat16, size=8192 if device.type == "cuda" else 1024)
    search = build_setup(CONFIG, "fast", args.search_batch, device, bf16=True)
    search.step()
    search_speed = speed(search.step, step_flops(search), 2 * args.search_batch, args.steps, device, bf16_peak)
    retrain = build_trainer("CDARTS_CIFAR", "fast", args.retrain_batch, device, bf16=True)
    retrain.step()
    retrain_flops = training_step_flops(lambda: retrain.model(retrain.images))
    retrain_speed = speed(retrain.step, retrain_flops, args.retrain_batch, args.steps, device, bf16_peak)

    report = {
        "benchmark": "gpu_check",
        **machine(device),
        "bf16_matmul_flops_per_s": bf16_peak,
        "correctness": {"search": search_check, "retrain": retrain_check, "failures": failures},
        "search_step": {"batch_size": args.search_batch, **search_speed},
        "retrain_step": {"batch_size": args.retrain_batch, **retrain_speed},
    }
    print(f"{report['device_name']}: bf16 matmul {bf16_peak / 1e12:.1f} TFLOP/s")
    print(f"correctness: search {json.dumps(search_check)}")
    print(f"correctness: retrain {json.dumps(retrain_check)}")
    print("| step | batch | images/s | peak memory | of bf16 matmul |")
    print("|---|---|---|---|---|")
    for name, row in (
        ("search joint step (fast, bf16)", report["search_step"]),
        ("retrain step (fast, bf16)", report["retrain_step"]),
    ):
        print(
            f"| {name} | {row['batch_size']} | {row['images_per_s']:.0f} | {row['peak_memory_mb'] / 1024:.1f} GiB "
            f"| {row['fraction_of_bf16_matmul']:.1%} |"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
