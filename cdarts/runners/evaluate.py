"""Runner of the ``evaluate`` stage: a retrained model on the held-out test split.

Writes ``metrics.json`` (top-1, top-5, loss, parameters with and without the auxiliary head,
multiply-adds, latency at batch 1 and throughput at a larger batch) and ``confusion_matrix.csv``.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from cdarts.atomic_files import write_text_atomic
from cdarts.config import ExperimentConfig
from cdarts.data.datasets import evaluation_loader, split_dataset
from cdarts.data.prepared import PreparedDataset
from cdarts.devices import resolve_device
from cdarts.errors import DataError, TrainingDivergedError
from cdarts.model_file import load_model, read_logged_model_reference
from cdarts.model_summary import summarize
from cdarts.seeding import seed_everything
from cdarts.spaces.shared.retrain_model import RetrainModel
from cdarts.tracking import Tracker
from cdarts.train.loops import evaluate

METRICS_NAME = "metrics.json"


@torch.inference_mode()
def median_forward_seconds(
    model: RetrainModel, batch_size: int, device: torch.device, repeats: int, warmup: int
) -> float:
    """Median wall time of one eval-mode forward pass on a random batch."""
    model.eval()
    spec = model.spec
    images = torch.randn(batch_size, spec.in_channels, spec.image_size, spec.image_size, device=device)
    for _ in range(warmup):
        model(images)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        model(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_evaluate(
    config: ExperimentConfig, dataset_dir: Path, model_path: Path, out_dir: Path, *, tracker: Tracker | None = None
) -> dict[str, Any]:
    """Evaluate ``model_path`` (a ``model.pt`` or a retrain output directory) on the test split."""
    cfg = config.evaluate
    device = resolve_device(config.device)
    prepared = PreparedDataset.load(dataset_dir)
    model, extra = load_model(model_path)
    if model.spec.num_classes != prepared.num_classes:
        raise DataError(
            f"the model predicts {model.spec.num_classes} classes but the dataset has {prepared.num_classes}"
        )
    if model.spec.in_channels != prepared.channels:
        raise DataError(f"the model takes {model.spec.in_channels} channels but the images have {prepared.channels}")
    seed_everything(config.seed, config.deterministic)
    size = summarize(model)
    model = model.to(device)

    test_set = split_dataset(prepared, "test", config.data, train=False)
    result = evaluate(model, evaluation_loader(test_set, cfg.batch_size, config.data), device, prepared.num_classes)
    for name, value in result.metrics().items():
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"the test {name} of {model_path} is {value}: the model's weights diverged; not writing {METRICS_NAME}"
            )
    latency = median_forward_seconds(model, 1, device, cfg.timing_repeats, cfg.timing_warmup)
    batch_time = median_forward_seconds(model, cfg.throughput_batch_size, device, cfg.timing_repeats, cfg.timing_warmup)
    metrics: dict[str, Any] = {
        "top1": result.top1,
        "top5": result.top5,
        "loss": result.loss,
        "num_test_images": result.count,
        **size.to_dict(),
        "multiply_adds_convention": "conv + linear multiply-accumulates for one input, eval mode (no aux head)",
        "latency_ms_batch1": latency * 1000,
        "throughput_images_per_s": cfg.throughput_batch_size / batch_time,
        "throughput_batch_size": cfg.throughput_batch_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "classes": prepared.classes,
        "confusion_matrix": result.confusion.tolist(),
        "dataset_digest": prepared.digest,
        "same_dataset_as_training": extra.get("dataset_digest") == prepared.digest,
        "genotype": model.genotype.to_string(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    header = ",".join(["true\\predicted", *prepared.classes])
    rows = [
        ",".join([name, *map(str, row)]) for name, row in zip(prepared.classes, result.confusion.tolist(), strict=True)
    ]
    (out_dir / "confusion_matrix.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    write_text_atomic(out_dir / METRICS_NAME, json.dumps(metrics, indent=2))
    if tracker is not None:
        scalars = {
            f"evaluate/{k}": float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        tracker.log_metrics(scalars, 0)
        tracker.set_tags({"cdarts.genotype": metrics["genotype"], "cdarts.dataset_digest": prepared.digest})
        tracker.log_dataset(config.data.source, prepared.digest, config.data.location or config.data.source, "test")
        reference = read_logged_model_reference(model_path)
        if reference is not None:  # the retrain run's LoggedModel: these are its test metrics
            quality = {f"evaluate/{k}": float(metrics[k]) for k in ("top1", "top5", "loss")}
            tracker.log_model_metrics(reference["model_id"], quality, config.data.source, prepared.digest)
            tracker.set_tags({"cdarts.logged_model_id": reference["model_id"]})
        tracker.log_artifact(out_dir / METRICS_NAME)
        tracker.log_artifact(out_dir / "confusion_matrix.csv")
    return metrics
