"""Runner of the ``retrain`` stage: a genotype + a prepared dataset -> a trained ``model.pt``.

Checkpoints after every epoch and resumes exactly. The reported result is the **final** epoch's
test accuracy; the best test accuracy over all epochs (how the reference reports) is logged too,
labelled as selected on the test set.

Under torchrun every process trains on its shard of each epoch and gradients are averaged after
every backward, so the weights stay identical on every process (checked each epoch); BatchNorm
running statistics are broadcast from rank 0 each epoch, as DDP does, and rank 0 evaluates,
checkpoints, tracks and saves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cdarts.architecture import Architecture, architecture_from_dict
from cdarts.atomic_files import write_text_atomic
from cdarts.checkpoint import check_state_dict, load_checkpoint, save_checkpoint
from cdarts.checkpoint_mirror import CheckpointMirror
from cdarts.config import ExperimentConfig
from cdarts.data.datasets import evaluation_loader, split_dataset
from cdarts.data.prepared import PreparedDataset
from cdarts.data.sampling import build_split_loader
from cdarts.data_compatibility import check_config_against_data
from cdarts.devices import resolve_device
from cdarts.distributed import device_for_rank, init_distributed
from cdarts.divergence import LossWatch, check_finite_state
from cdarts.errors import CheckpointError
from cdarts.model_file import MODEL_FILE, save_model, write_logged_model_reference
from cdarts.networks.retrain_network import RetrainSpec
from cdarts.resume_state import check_optimizer_state, require_count, require_entries, restore_checked_rng_state
from cdarts.search.cyclic_search import ProgressCallback
from cdarts.seeding import capture_rng_state, seed_everything
from cdarts.serving import example_images, serving_contract
from cdarts.spaces import build_retrain_network, space_of
from cdarts.tracking import FanOutTracker, JsonlTracker, Tracker
from cdarts.train.loops import TrainSettings, evaluate, train_one_epoch
from cdarts.train.recipe import drop_path_probability, learning_rate

CHECKPOINT_NAME = "checkpoints/retrain-last.pt"
SUMMARY_NAME = "retrain_summary.json"


@dataclass
class RetrainResult:
    completed: bool
    epochs_run: int
    summary: dict[str, Any]
    model_path: Path | None


def _step_reporter(progress: ProgressCallback | None, description: str, total: int) -> Callable[[int], None] | None:
    if progress is None:
        return None
    return lambda done: progress(description, done, total)


def retrain_spec(config: ExperimentConfig, genotype: Architecture, in_channels: int, num_classes: int) -> RetrainSpec:
    """The network's shape for the genotype's space (the retrain section for DARTS cells, the
    space's own section otherwise)."""
    return space_of(genotype).retrain_spec(config, in_channels, num_classes)


def run_retrain(
    config: ExperimentConfig,
    dataset_dir: Path,
    genotype: Architecture,
    out_dir: Path,
    *,
    tracker: Tracker | None = None,
    progress: ProgressCallback | None = None,
    max_epochs: int | None = None,
    checkpoint_mirror: str | None = None,
) -> RetrainResult:
    """Train the genotype's network on the prepared dataset (resuming from ``out_dir`` if a
    checkpoint is there, else from ``checkpoint_mirror`` if one is mirrored there); ``max_epochs``
    stops early with a checkpoint."""
    cfg = config.retrain
    device = resolve_device(config.device)
    prepared = PreparedDataset.load(dataset_dir)
    check_config_against_data(config, prepared, "retrain")
    distributed = init_distributed(device)
    device = device_for_rank(device)
    seed_everything(config.seed, config.deterministic)
    out_dir.mkdir(parents=True, exist_ok=True)

    cutout = cfg.cutout if config.data.augmentation == "cifar" else 0
    train_set = split_dataset(prepared, "train", config.data, train=True, cutout=cutout)
    test_set = split_dataset(prepared, "test", config.data, train=False)
    train_split = build_split_loader(
        train_set,
        torch.arange(len(prepared.labels("train"))),
        batch_size=cfg.batch_size,
        seed=config.seed,
        rank=distributed.rank,
        world_size=distributed.world_size,
        num_workers=config.data.num_workers,
        pin_memory=config.data.pin_memory,
    )
    test_loader = evaluation_loader(test_set, cfg.eval_batch_size, config.data)

    spec = retrain_spec(config, genotype, prepared.channels, prepared.num_classes)
    model = build_retrain_network(genotype, spec)
    params, params_without_aux = model.parameter_counts()
    weight_decay, max_drop_path = space_of(genotype).retrain_regularisation(config, params_without_aux)
    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=cfg.weight_lr,
        momentum=cfg.weight_momentum,
        weight_decay=weight_decay,
        fused=cfg.fused_optimizer or None,
    )
    # The compiled module shares the model's parameters; checkpoints keep the plain model's keys.
    trained: torch.nn.Module = torch.compile(model) if cfg.compile else model  # type: ignore[assignment]
    settings = TrainSettings(cfg.auxiliary_weight, cfg.label_smoothing, cfg.grad_clip, cfg.bf16, cfg.channels_last)

    trackers: list[Tracker] = []
    if distributed.is_main:
        trackers.append(JsonlTracker(out_dir / "metrics.jsonl"))
        if tracker is not None:
            trackers.append(tracker)
    log = FanOutTracker(trackers)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    mirror = CheckpointMirror(checkpoint_mirror) if checkpoint_mirror else None
    if mirror is not None and distributed.is_main:
        mirror.check()
        mirror.restore(checkpoint_path)
    distributed.barrier()  # the other processes read the restored checkpoint from the same disk
    next_epoch, history = 0, []
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        if state.get("config_digest") != config.digest() or state.get("dataset_digest") != prepared.digest:
            raise CheckpointError(f"{checkpoint_path} was written with another config or dataset; use a new --out")
        require_entries(
            state,
            checkpoint_path,
            {"genotype": dict, "model": dict, "optimizer": dict, "next_epoch": int, "history": list, "rng": dict},
        )
        if architecture_from_dict(state["genotype"]) != genotype:
            raise CheckpointError(f"{checkpoint_path} was written for another genotype; use a new --out")
        check_state_dict(model, state["model"], checkpoint_path, "retrain weights")
        check_optimizer_state(optimizer, state["optimizer"], checkpoint_path, "optimizer")
        next_epoch = require_count(state["next_epoch"], checkpoint_path, "next_epoch", cfg.epochs)
        history = state["history"]
        if len(history) != next_epoch or not all(isinstance(entry, dict) for entry in history):
            raise CheckpointError(f"{checkpoint_path}: the epoch history does not match next_epoch {next_epoch}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_checked_rng_state(state["rng"], checkpoint_path)
        log.resume_after(next_epoch)  # a killed run's lines past the checkpoint are logged again
    else:
        log.log_params(config.model_dump(mode="json", exclude={"tracking"}))
        log.set_tags({"cdarts.genotype": genotype.to_string(), "cdarts.dataset_digest": prepared.digest})
        log.log_dataset(config.data.source, prepared.digest, config.data.location or config.data.source, "training")
        log.log_metrics(
            {
                "retrain/params": params,
                "retrain/params_without_aux": params_without_aux,
                "retrain/weight_decay": weight_decay,
                "retrain/drop_path_prob_max": max_drop_path,
            },
            0,
        )
    distributed.broadcast_module(model)

    epochs_run = 0
    steps_per_epoch = len(train_split)
    while next_epoch < cfg.epochs and (max_epochs is None or epochs_run < max_epochs):
        epoch = next_epoch
        lr = learning_rate(epoch, cfg.weight_lr, cfg.weight_lr_min, cfg.epochs, cfg.warmup_epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.set_drop_path_prob(drop_path_probability(epoch, max_drop_path, cfg.epochs))

        description = f"retrain epoch {epoch + 1}/{cfg.epochs}"
        hint = "lower retrain.weight_lr or retrain.grad_clip"
        watch = LossWatch("retrain", f"epoch {epoch + 1}/{cfg.epochs}", epoch * steps_per_epoch + 1, hint)
        train_metrics = train_one_epoch(
            trained,
            train_split.epoch(epoch),
            optimizer,
            device,
            settings,
            on_step=_step_reporter(progress if distributed.is_main else None, description, steps_per_epoch),
            after_backward=lambda: distributed.average_gradients(model),
            watch=watch,
        )
        if distributed.enabled:  # report the mean over every process's batches
            averaged = distributed.average_values({k: torch.tensor(v, device=device) for k, v in train_metrics.items()})
            train_metrics = {name: float(value) for name, value in averaged.items()}
        watch.check(train_metrics)  # host values, the same on every process
        divergence = distributed.max_difference_from_main(list(model.parameters()))
        if divergence > 0:
            raise RuntimeError(f"retrain weights diverged across ranks (max difference {divergence})")
        distributed.broadcast_buffers(model)
        momentum = [
            (f"optimizer.state.{index}.{key}", value)
            for index, entry in enumerate(optimizer.state.values())
            for key, value in entry.items()
            if isinstance(value, torch.Tensor)
        ]
        check_finite_state(
            [*model.state_dict().items(), *momentum],
            stage="retrain",
            where=f"by step {(epoch + 1) * steps_per_epoch} (end of epoch {epoch + 1}/{cfg.epochs})",
            hint=hint,
            distributed=distributed,
            device=device,
        )
        next_epoch += 1
        epochs_run += 1
        if not distributed.is_main:
            continue
        test = evaluate(model, test_loader, device, prepared.num_classes, cfg.bf16, cfg.channels_last)
        record = {
            "epoch": epoch,
            "lr": lr,
            **{f"train_{k}": v for k, v in train_metrics.items()},
            **{f"test_{k}": v for k, v in test.metrics().items()},
        }
        history.append(record)
        log.log_metrics({f"retrain/{k}": float(v) for k, v in record.items() if k != "epoch"}, epoch + 1)
        save_checkpoint(
            {
                "config_digest": config.digest(),
                "dataset_digest": prepared.digest,
                "genotype": genotype.to_dict(),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "next_epoch": next_epoch,
                "history": history,
                "rng": capture_rng_state(),
            },
            checkpoint_path,
        )
        if mirror is not None:
            mirror.publish(checkpoint_path)

    distributed.barrier()
    completed = next_epoch >= cfg.epochs
    if not completed or not distributed.is_main:
        return RetrainResult(completed, epochs_run, {}, None)
    final = history[-1]
    best = max(history, key=lambda r: r["test_top1"])
    summary = {
        "final_test_top1": final["test_top1"],
        "final_test_top5": final["test_top5"],
        "final_test_loss": final["test_loss"],
        "best_test_top1_selected_on_test": best["test_top1"],
        "best_epoch_selected_on_test": best["epoch"],
        "epochs": cfg.epochs,
        "params": params,
        "params_without_aux": params_without_aux,
        "weight_decay": weight_decay,
        "drop_path_prob_max": max_drop_path,
        "genotype": genotype.to_string(),
        "dataset_digest": prepared.digest,
    }
    log.log_metrics(
        {"retrain/final_test_top1": final["test_top1"], "retrain/best_test_top1_selected_on_test": best["test_top1"]},
        cfg.epochs,
    )
    model_path = out_dir / MODEL_FILE
    contract = serving_contract(prepared, config.data)
    save_model(
        model,
        model_path,
        extra={
            "classes": prepared.classes,
            "normalization": prepared.manifest["normalization"],
            "dataset_digest": prepared.digest,
            "summary": summary,
            "serving": contract.to_dict(),
        },
    )
    # The run that trained the model logs it (raises if that fails: an unlogged model cannot be
    # registered, and a retry resumes from the finished checkpoint and logs it again).
    logged = log.log_served_model(
        model_path,
        contract.to_dict(),
        example_images(prepared),
        {"cdarts.genotype": genotype.to_string(), "cdarts.dataset_digest": prepared.digest},
    )
    if logged is not None:
        log.log_model_metrics(
            logged.model_id,
            {"retrain/final_test_top1": final["test_top1"], "retrain/final_test_loss": final["test_loss"]},
            config.data.source,
            prepared.digest,
        )
        write_logged_model_reference(out_dir, logged.model_id, logged.run_id)
    # Written last: the summary marks the stage as complete.
    write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2))
    log.log_artifact(out_dir / SUMMARY_NAME)
    return RetrainResult(True, epochs_run, summary, model_path)
