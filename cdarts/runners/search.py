"""Runner of the ``search`` stage: config -> checkpoints, ``alphas.pt``, per-cycle genotypes,
``genotype.json`` and ``metrics.jsonl`` in an output directory."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from cdarts.alphas_file import AlphasFile, save_alphas
from cdarts.architecture import Architecture
from cdarts.atomic_files import write_text_atomic
from cdarts.checkpoint_mirror import CheckpointMirror
from cdarts.config import ExperimentConfig
from cdarts.data.datasets import split_dataset
from cdarts.data.prepared import PreparedDataset
from cdarts.data.sampling import SplitLoader, build_split_loader
from cdarts.runners.stage_setup import StageSetup, set_up_stage
from cdarts.search.build import build_search_model
from cdarts.search.cyclic_search import CycleReport, CyclicSearch, ProgressCallback, SearchLoaders, SearchResult
from cdarts.spaces.registry import get_space
from cdarts.spaces.shared.joint_base import JointModel
from cdarts.tracking import FanOutTracker, JsonlTracker, Tracker

CHECKPOINT_NAME = "checkpoints/search-last.pt"
BenchmarkLookup = Callable[[Architecture], dict[str, float] | None]  # a tabular benchmark's numbers


@dataclass
class SearchRunResult:
    genotype: Architecture
    alphas: dict[str, torch.Tensor]
    completed: bool
    out_dir: Path
    alphas_path: Path | None
    genotype_path: Path | None
    cycles_completed: int
    final_metrics: dict[str, float]  # the last cycle's epoch means


def _build_loaders(config: ExperimentConfig, prepared: PreparedDataset, rank: int, world_size: int) -> SearchLoaders:
    """Both halves of the search split use the training augmentation (no cutout)."""
    dataset = split_dataset(prepared, "train", config.data, train=True)
    train_idx, val_idx = prepared.search_split()
    data = config.data

    def loader(indices: torch.Tensor, seed: int) -> SplitLoader:
        return build_split_loader(
            dataset,
            indices,
            batch_size=config.search.batch_size,
            seed=seed,
            rank=rank,
            world_size=world_size,
            num_workers=data.num_workers,
            pin_memory=data.pin_memory,
        )

    return SearchLoaders(train=loader(train_idx, config.seed), val=loader(val_idx, config.seed + 1))


def _alphas_file(config: ExperimentConfig, model: JointModel, alphas: dict[str, torch.Tensor]) -> AlphasFile:
    layout = get_space(config.search_space).alphas_layout(config)
    return AlphasFile(config.search_space, model.candidates, alphas, layout)


def _write_cycle(out_dir: Path, report: CycleReport, benchmark: dict[str, float] | None) -> None:
    cycle_dir = out_dir / "genotypes"
    cycle_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "cycle": report.cycle,
        "genotype": report.genotype.to_dict(),
        "genotype_string": report.genotype.to_string(),
        "alpha_probs": report.alpha_probs,
        "metrics": report.metrics,
        **({"benchmark": benchmark} if benchmark is not None else {}),
    }
    (cycle_dir / f"cycle_{report.cycle:03d}.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")


def run_search(
    config: ExperimentConfig,
    dataset_dir: Path,
    out_dir: Path,
    *,
    tracker: Tracker | None = None,
    progress: ProgressCallback | None = None,
    max_iterations: int | None = None,
    checkpoint_mirror: str | None = None,
) -> SearchRunResult:
    """Run (or resume) the cyclic search of ``config`` on a prepared dataset into ``out_dir``.

    Under torchrun every process calls this; only rank 0 writes files. With ``max_iterations``
    the run stops after that many search iterations with a checkpoint; calling again resumes.
    ``genotype.json`` and ``alphas.pt`` are written only when the whole search has finished.
    With ``checkpoint_mirror`` (a URI such as ``s3://bucket/runs/ID/search.pt``) every checkpoint
    is also uploaded there, and a run without a local checkpoint starts from the mirrored one.
    """
    setup = set_up_stage(config, dataset_dir, out_dir, "search")
    # Read before the search starts: a bad benchmark file fails the stage at once, not after a cycle.
    lookup = get_space(config.search_space).benchmark(config)
    model = _build_model(config, setup)
    log = _metrics_log(out_dir, setup, tracker)
    mirror = _restore_from_mirror(checkpoint_mirror, out_dir, setup)
    search = CyclicSearch(
        model,
        _build_loaders(config, setup.prepared, setup.distributed.rank, setup.distributed.world_size),
        config,
        setup.device,
        out_dir / CHECKPOINT_NAME,
        distributed=setup.distributed,
        tracker=log,
        progress=progress,
        on_cycle_end=_cycle_writer(out_dir, setup, lookup, log, tracker),
        dataset_digest=setup.prepared.digest,
        on_checkpoint=mirror.publish if mirror is not None else None,
    )
    _resume_or_start(search, log, config, setup, out_dir, tracker)
    result = search.run(max_iterations=max_iterations)
    return _finish(config, model, result, setup, out_dir, tracker)


def _build_model(config: ExperimentConfig, setup: StageSetup) -> JointModel:
    """The space's joint network on the stage's device, identical on every rank."""
    if setup.device.type == "cuda" and config.search.impl == "fast" and not config.deterministic:
        torch.backends.cudnn.benchmark = True  # fixed shapes: autotuned kernels pay off from step 2
    model = build_search_model(config, setup.prepared.channels, setup.prepared.num_classes).to(setup.device)
    setup.distributed.broadcast_module(model)
    return model


def _metrics_log(out_dir: Path, setup: StageSetup, tracker: Tracker | None) -> FanOutTracker:
    """metrics.jsonl on rank 0, plus the stage's tracker."""
    trackers: list[Tracker] = [JsonlTracker(out_dir / "metrics.jsonl")] if setup.distributed.is_main else []
    if tracker is not None:
        trackers.append(tracker)
    return FanOutTracker(trackers)


def _restore_from_mirror(uri: str | None, out_dir: Path, setup: StageSetup) -> CheckpointMirror | None:
    """The checkpoint mirror, checked, with its checkpoint copied in where there is none locally."""
    mirror = CheckpointMirror(uri) if uri else None
    if mirror is not None and setup.distributed.is_main:
        mirror.check()
        mirror.restore(out_dir / CHECKPOINT_NAME)
    setup.distributed.barrier()
    return mirror


def _cycle_writer(
    out_dir: Path, setup: StageSetup, lookup: BenchmarkLookup | None, log: FanOutTracker, tracker: Tracker | None
) -> Callable[[CycleReport], None]:
    """What happens at the end of every cycle (rank 0): the cycle's genotype file, the tabular
    benchmark's numbers for it, the file as a tracked artifact."""

    def on_cycle_end(report: CycleReport) -> None:
        if not setup.distributed.is_main:
            return
        benchmark = lookup(report.genotype) if lookup is not None else None
        _write_cycle(out_dir, report, benchmark)
        if lookup is not None:
            # Logged per cycle at the cycle's index; an architecture missing from the file is
            # recorded as such, not guessed.
            found = {f"benchmark/{name}": value for name, value in (benchmark or {}).items()}
            log.log_metrics({**found, "benchmark/found": float(benchmark is not None)}, report.cycle)
        if tracker is not None:
            tracker.log_artifact(out_dir / "genotypes" / f"cycle_{report.cycle:03d}.json", "genotypes")

    return on_cycle_end


def _resume_or_start(
    search: CyclicSearch,
    log: FanOutTracker,
    config: ExperimentConfig,
    setup: StageSetup,
    out_dir: Path,
    tracker: Tracker | None,
) -> None:
    """Continue from a checkpoint if there is one; record the config, parameters and dataset."""
    if search.try_resume():  # a killed run's lines past the checkpoint are logged again
        log.resume_after(search.global_step)
    if not setup.distributed.is_main:
        return
    (out_dir / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    if tracker is not None:
        tracker.log_params(config.model_dump(mode="json", exclude={"tracking"}))
        tracker.set_tags({"cdarts.dataset_digest": setup.prepared.digest})
        tracker.log_dataset(
            config.data.source, setup.prepared.digest, config.data.location or config.data.source, "training"
        )


def _finish(
    config: ExperimentConfig,
    model: JointModel,
    result: SearchResult,
    setup: StageSetup,
    out_dir: Path,
    tracker: Tracker | None,
) -> SearchRunResult:
    """After a whole search (not a stop at max_iterations): alphas.pt and genotype.json, tracked."""
    alphas_path = genotype_path = None
    if result.completed and setup.distributed.is_main:
        alphas_path = out_dir / "alphas.pt"
        save_alphas(_alphas_file(config, model, result.alphas), alphas_path)
        genotype_path = out_dir / "genotype.json"
        write_text_atomic(genotype_path, result.genotype.to_json())
        if tracker is not None:
            tracker.set_tags({"cdarts.genotype": result.genotype.to_string()})
            for path in (out_dir / "config.yaml", genotype_path, alphas_path):
                tracker.log_artifact(path)
    setup.distributed.barrier()
    return SearchRunResult(
        genotype=result.genotype,
        alphas=result.alphas,
        completed=result.completed,
        out_dir=out_dir,
        alphas_path=alphas_path,
        genotype_path=genotype_path,
        cycles_completed=len(result.cycles),
        final_metrics=result.cycles[-1].metrics if result.cycles else {},
    )
