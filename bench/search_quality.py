"""Does the search beat chance? The searched architecture against random architectures of the
same space and the published DARTS_V2 and CDARTS_CIFAR cells, all retrained with one recipe and
one budget and evaluated on the same test split.

Sizes:

* ``--smoke``: the synthetic ``tiny`` preset, seconds (used by a test; not a meaningful result);
* ``--cpu``: real Fashion-MNIST at 28 px on 2 CPU cores, a stratified 20,000-image training
  subset for search and retrain, the full 10,000-image test split; measured on 2 shared cores:
  search 51 min, 11-17 min per retrained row, so about 2 h for all six rows (--random to trim);
* ``--gpu``: the ``fashion-mnist-gpu`` preset, all 60,000 training images, three retrain seeds.

The search runs once (the config's seed); every row is retrained once per retrain seed, and its
``top1`` is the mean over those seeds. Writes ``search_quality.json`` (rows ``searched``,
``random``, ``published``, each with ``architecture``, ``top1``, ``params``, ``multiply_adds`` and
the shared ``budget``) and ``search_quality.png`` into --out. Run again with the same --out, it
resumes: the search and each retrain continue from their checkpoints, finished rows are reused.

    apt-get install -y dataset-fashion-mnist     # the IDX files in /usr/share/datasets/fashion-mnist
    python bench/search_quality.py --cpu --out .cdarts/bench/search-quality
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import machine

from cdarts.architecture import Architecture
from cdarts.baseline_comparison import ArchitectureScore, compare_with_random
from cdarts.config import ExperimentConfig, load_config_spec
from cdarts.data.mnist import FASHION_MNIST_CLASSES, read_mnist
from cdarts.data.prepared import PreparedDataset
from cdarts.devices import resolve_device
from cdarts.errors import CdartsError
from cdarts.runners.data_prep import run_data_prep
from cdarts.runners.evaluate import METRICS_NAME, run_evaluate
from cdarts.runners.launch import load_search_result
from cdarts.runners.retrain import run_retrain
from cdarts.runners.sample_baselines import BASELINE_SEED_OFFSET
from cdarts.runners.search import run_search
from cdarts.spaces.registry import get_space

PUBLISHED = ("DARTS_V2", "CDARTS_CIFAR")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Size:
    preset: str
    overrides: list[str]
    random_count: int
    retrain_seeds: int
    train_subset: int | None = None  # stratified training images kept (None: all)
    needs_fashion_mnist: bool = False
    notes: list[str] = field(default_factory=list)


SIZES = {
    "smoke": Size(
        "tiny",
        ["retrain.epochs=1", "search.search_iterations=2", "evaluate.timing_repeats=1"],
        random_count=2,
        retrain_seeds=2,
    ),
    "cpu": Size(
        "fashion-mnist",
        # 20,000 training images: sample_ratio 0.15 keeps the preset's 23 search batches per cycle.
        ["search.sample_ratio=0.15", "retrain.epochs=2", "evaluate.timing_repeats=3"],
        random_count=3,
        retrain_seeds=1,
        train_subset=20_000,
        needs_fashion_mnist=True,
    ),
    "gpu": Size("fashion-mnist-gpu", [], random_count=8, retrain_seeds=3, needs_fashion_mnist=True),
}


def _log(message: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:7.0f} s] {message}", file=sys.stderr, flush=True)


def _write_idx(path: Path, array: npt.NDArray[np.uint8]) -> None:
    """An uncompressed IDX file of unsigned bytes: magic 0x08 type, dimension count, big-endian sizes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_training_subset(source: Path, out: Path, count: int, seed: int) -> Path:
    """A Fashion-MNIST copy whose training split is ``count`` images, the same number per class
    (seeded), and whose test split is the whole original one."""
    splits = read_mnist(source, FASHION_MNIST_CLASSES)
    rng = np.random.default_rng(seed)
    per_class = count // len(splits.classes)
    keep = np.sort(
        np.concatenate(
            [rng.permutation(np.flatnonzero(splits.train_labels == c))[:per_class] for c in range(len(splits.classes))]
        )
    )
    out.mkdir(parents=True, exist_ok=True)
    _write_idx(out / "train-images-idx3-ubyte", splits.train_images[keep])
    _write_idx(out / "train-labels-idx1-ubyte", splits.train_labels[keep].astype(np.uint8))
    _write_idx(out / "t10k-images-idx3-ubyte", splits.test_images)
    _write_idx(out / "t10k-labels-idx1-ubyte", splits.test_labels.astype(np.uint8))
    return out


def _budget(config: ExperimentConfig, train_images: int, seeds: int) -> dict[str, Any]:
    """What every row was given, identical for all of them."""
    shape = config.darts.retrain if config.search_space == "darts" else None
    return {
        "retrain_epochs": config.retrain.epochs,
        "train_images": train_images,
        "images_seen_per_seed": config.retrain.epochs * train_images,
        "batch_size": config.retrain.batch_size,
        "weight_lr": config.retrain.weight_lr,
        "retrain_seeds": seeds,
        **({"init_channels": shape.init_channels, "cells": shape.cells} if shape is not None else {}),
    }


def _retrain_row(
    label: str,
    architecture: Architecture,
    configs: list[ExperimentConfig],
    prepared: Path,
    out: Path,
    budget: dict[str, Any],
    start: float,
    finished_only: bool,
) -> dict[str, Any] | None:
    """Retrain and evaluate ``architecture`` once per seed config; the row of the JSON (None
    with ``finished_only`` when a seed of it has not been evaluated yet)."""
    evaluations = []
    for config in configs:
        run_dir = out / label / f"seed-{config.seed}"
        finished = run_dir / "evaluate" / METRICS_NAME  # written last by the evaluation
        earlier = json.loads(finished.read_text()) if finished.is_file() else None
        if earlier is not None and earlier["genotype"] == architecture.to_string():
            _log(f"{label} (seed {config.seed}): evaluated by an earlier run of this --out, reused", start)
            evaluations.append(earlier)
            continue
        if finished_only:
            return None
        _log(f"retrain {label} (seed {config.seed})", start)
        run_retrain(config, prepared, architecture, run_dir / "retrain")  # resumes from its checkpoint
        evaluations.append(run_evaluate(config, prepared, run_dir / "retrain", run_dir / "evaluate"))
        _log(f"  {label} seed {config.seed}: top-1 {100 * evaluations[-1]['top1']:.2f} %", start)
    top1s = [float(e["top1"]) for e in evaluations]
    return {
        "label": label,
        "architecture": architecture.to_string(),
        "top1": statistics.fmean(top1s),
        "top1_per_seed": top1s,
        "top1_std": statistics.stdev(top1s) if len(top1s) > 1 else 0.0,
        "params": int(evaluations[0]["params_without_aux"]),
        "multiply_adds": int(evaluations[0]["multiply_adds"]),
        "budget": budget,
    }


def _score(row: dict[str, Any]) -> ArchitectureScore:
    return ArchitectureScore(row["label"], row["architecture"], row["top1"], row["params"], row["multiply_adds"])


def run_benchmark(
    size_name: str, out: Path, data_dir: Path, random_count: int | None, seeds: int | None, finished_only: bool = False
) -> dict[str, Any]:
    """The whole comparison into ``out``; with ``finished_only`` nothing is trained: the JSON is
    made of what an earlier (perhaps still running) run of this ``out`` has finished."""
    size = SIZES[size_name]
    start = time.perf_counter()
    overrides = [*size.overrides, "tracking.enabled=false", "device=auto"]
    if size.needs_fashion_mnist:
        if (
            not (data_dir / "train-images-idx3-ubyte.gz").exists()
            and not (data_dir / "train-images-idx3-ubyte").exists()
        ):
            raise CdartsError(
                f"no Fashion-MNIST IDX files in {data_dir}: "
                "`apt-get install -y dataset-fashion-mnist`, or pass --data DIR"
            )
        location = data_dir
        if size.train_subset is not None:
            location = out / "fashion-mnist-subset"
            if not finished_only:
                write_training_subset(data_dir, location, size.train_subset, seed=0)
        overrides.append(f"data.location={location}")
    config = load_config_spec(size.preset, overrides)
    seed_count = seeds or size.retrain_seeds
    seed_configs = [load_config_spec(size.preset, [*overrides, f"seed={config.seed + k}"]) for k in range(seed_count)]

    if finished_only:  # read only: a run still training reads these files
        prepared = PreparedDataset.load(out / "prepared")
    else:
        _log(f"data prep ({config.data.source})", start)
        prepared = run_data_prep(config.data, config.seed, out / "prepared")
    train_images = len(prepared.labels("train"))
    budget = _budget(config, train_images, seed_count)

    search_start = time.perf_counter()
    if finished_only:
        searched, search_seconds = load_search_result(out / "search"), None
    else:
        _log("search", start)
        searched = run_search(config, out / "prepared", out / "search")
        search_seconds = time.perf_counter() - search_start
    _log(f"searched: {searched.genotype.to_string()}", start)

    space = get_space(config.search_space)
    candidates = config.space_candidates()
    random_architectures = space.sample_architectures(
        random_count if random_count is not None else size.random_count,
        seed=config.seed + BASELINE_SEED_OFFSET,  # the pipeline's draws: the same baselines
        candidates=candidates,
        layout=space.alphas_layout(config),
    )
    published = [(name, space.parse(name)) for name in PUBLISHED if name in space.reference_names()]

    def row(label: str, architecture: Architecture) -> dict[str, Any] | None:
        return _retrain_row(
            label, architecture, seed_configs, out / "prepared", out / "rows", budget, start, finished_only
        )

    rows = {"searched": row("searched", searched.genotype)}
    rows |= {f"random-{k + 1}": row(f"random-{k + 1}", arch) for k, arch in enumerate(random_architectures)}
    rows |= {name: row(name, arch) for name, arch in published if arch is not None}
    missing = [label for label, result in rows.items() if result is None]
    finished = {label: result for label, result in rows.items() if result is not None}
    searched_row = finished.get("searched")
    random_rows = [result for label, result in finished.items() if label.startswith("random-")]
    published_rows = [finished[name] for name, _ in published if name in finished]
    if searched_row is None or not random_rows:
        raise CdartsError(f"nothing to compare yet under {out}: unfinished rows {', '.join(missing)}")
    comparison = compare_with_random(_score(searched_row), [_score(r) for r in random_rows])
    return {
        "benchmark": "search_quality",
        "size": size_name,
        "preset": size.preset,
        "overrides": overrides,
        "dataset": config.data.source,
        "search_space": config.search_space,
        "machine": machine(resolve_device(config.device)),
        "search": {"seconds": search_seconds, "seed": config.seed, "iterations": config.search.search_iterations},
        "budget": budget,
        "searched": searched_row,
        "random": random_rows,
        "published": published_rows,
        "comparison": {k: v for k, v in comparison.to_dict().items() if k not in ("searched", "random")},
        "unfinished_rows": missing,
        "seconds": time.perf_counter() - start,
    }


def write_plot(result: dict[str, Any], path: Path) -> None:
    """Top-1 per row with the spread over retrain seeds as error bars; the random mean dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [result["searched"], *result["random"], *result["published"]]
    colours = ["tab:red"] + ["tab:grey"] * len(result["random"]) + ["tab:blue"] * len(result["published"])
    figure, axes = plt.subplots(figsize=(1.2 * len(rows) + 2, 4))
    axes.bar(
        range(len(rows)),
        [100 * r["top1"] for r in rows],
        yerr=[100 * r["top1_std"] for r in rows],
        color=colours,
        capsize=4,
    )
    axes.axhline(
        100 * result["comparison"]["random_mean_top1"], color="black", linestyle="--", linewidth=1, label="random mean"
    )
    low = min(100 * (r["top1"] - r["top1_std"]) for r in rows)
    high = max(100 * (r["top1"] + r["top1_std"]) for r in rows)
    axes.set_ylim(max(0.0, low - 2.0), min(100.0, high + 1.0))
    axes.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=30, ha="right")
    axes.set_ylabel("test top-1 %")
    budget = result["budget"]
    axes.set_title(
        f"{result['dataset']}: {budget['retrain_epochs']} epochs x {budget['train_images']} images, "
        f"{budget['retrain_seeds']} seed(s)"
    )
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes = parser.add_mutually_exclusive_group(required=True)
    for name in SIZES:
        sizes.add_argument(f"--{name}", dest="size", action="store_const", const=name)
    parser.add_argument("--out", type=Path, default=Path(".cdarts/bench/search-quality"))
    parser.add_argument("--data", type=Path, default=FASHION_MNIST_DIR, help="the Fashion-MNIST IDX directory")
    parser.add_argument("--random", type=int, default=None, help="random architectures (default: per size)")
    parser.add_argument("--seeds", type=int, default=None, help="retrain seeds per row (default: per size)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="train nothing: report the rows an earlier run of this --out has finished (it may still be running)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("random", "seeds"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        result = run_benchmark(args.size, args.out, args.data, args.random, args.seeds, args.finished_only)
    except (CdartsError, ValueError) as error:
        print(f"search_quality: {error}", file=sys.stderr)
        return 1
    (args.out / "search_quality.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    write_plot(result, args.out / "search_quality.png")
    comparison = result["comparison"]
    published = ", ".join(f"{row['label']} {100 * row['top1']:.2f} %" for row in result["published"])
    rank = f"rank {comparison['rank']} of {comparison['random_count'] + 1}"
    print(
        f"searched {100 * result['searched']['top1']:.2f} %, random mean {100 * comparison['random_mean_top1']:.2f} % "
        f"(std {100 * comparison['random_std_top1']:.2f}, {rank}); "
        f"published: {published or 'none'}; "
        f"{args.out / 'search_quality.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
