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
from cdarts.data.sampling import build_split_loader
from cdarts.divergence import LossWatch, check_finite_state
from cdarts.errors import CheckpointError
from cdarts.model_file import MODEL_FILE, save_model, write_logged_model_reference
from cdarts.resume_state import (
    check_optimizer_state,
    check_resume_identity,
    require_count,
    require_entries,
    restore_checked_rng_state,
)
from cdarts.runners.stage_setup import StageSetup, set_up_stage
from cdarts.search.cyclic_search import ProgressCallback
from cdarts.seeding import capture_rng_state
from cdarts.serving import example_images, serving_contract
from cdarts.spaces.registry import build_retrain_network, space_of
from cdarts.spaces.shared.depthwise_conv import use_fast_depthwise
from cdarts.spaces.shared.retrain_spec import RetrainSpec
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
    setup = set_up_stage(config, dataset_dir, out_dir, "retrain")
    run = _RetrainRun(config, setup, genotype, out_dir, tracker, checkpoint_mirror)
    run.resume_or_start()
    epochs_run = run.train(max_epochs, progress)
    return run.finish(epochs_run)


class _RetrainRun:
    """The state of one retrain: data, network, optimiser, trackers, epoch history."""

    def __init__(
        self,
        config: ExperimentConfig,
        setup: StageSetup,
        genotype: Architecture,
        out_dir: Path,
        tracker: Tracker | None,
        checkpoint_mirror: str | None,
    ) -> None:
        cfg = self.cfg = config.retrain
        self.config, self.setup, self.genotype, self.out_dir = config, setup, genotype, out_dir
        prepared, distributed = setup.prepared, setup.distributed
        # 1. Data: the training split sharded over the processes, the whole test split on rank 0.
        cutout = cfg.cutout if config.data.augmentation == "cifar" else 0
        train_set = split_dataset(prepared, "train", config.data, train=True, cutout=cutout)
        self.train_split = build_split_loader(
            train_set,
            torch.arange(len(prepared.labels("train"))),
            batch_size=cfg.batch_size,
            seed=config.seed,
            rank=distributed.rank,
            world_size=distributed.world_size,
            num_workers=config.data.num_workers,
            pin_memory=config.data.pin_memory,
        )
        self.test_loader = evaluation_loader(
            split_dataset(prepared, "test", config.data, train=False), cfg.eval_batch_size, config.data
        )
        # 2. The network of the genotype's space, its regularisation and optimiser.
        space = space_of(genotype)
        model = build_retrain_network(genotype, space.retrain_spec(config, prepared.channels, prepared.num_classes))
        self.params, self.params_without_aux = model.parameter_counts()
        self.weight_decay, self.max_drop_path = space.retrain_regularisation(config, self.params_without_aux)
        model = model.to(setup.device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
            if not cfg.compile:  # the native weight gradient is a ctypes call: a graph break
                use_fast_depthwise(model)
        self.model = model
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=cfg.weight_lr,
            momentum=cfg.weight_momentum,
            weight_decay=self.weight_decay,
            fused=cfg.fused_optimizer or None,
        )
        # The compiled module shares the model's parameters; checkpoints keep the plain model's keys.
        self.trained: torch.nn.Module = torch.compile(self.model) if cfg.compile else self.model  # type: ignore[assignment]
        self.settings = TrainSettings(
            cfg.auxiliary_weight, cfg.label_smoothing, cfg.grad_clip, cfg.bf16, cfg.channels_last
        )
        # 3. Trackers (rank 0 only) and the checkpoint, with its mirror.
        trackers: list[Tracker] = []
        if distributed.is_main:
            trackers.append(JsonlTracker(out_dir / "metrics.jsonl"))
            if tracker is not None:
                trackers.append(tracker)
        self.log = FanOutTracker(trackers)
        self.checkpoint_path = out_dir / CHECKPOINT_NAME
        self.mirror = CheckpointMirror(checkpoint_mirror) if checkpoint_mirror else None
        self.next_epoch = 0
        self.history: list[dict[str, Any]] = []

    # -- steps -----------------------------------------------------------------------------------

    def resume_or_start(self) -> None:
        """Continue from the local (or mirrored) checkpoint, else log the run's parameters."""
        distributed, prepared = self.setup.distributed, self.setup.prepared
        if self.mirror is not None and distributed.is_main:
            self.mirror.check()
            self.mirror.restore(self.checkpoint_path)
        distributed.barrier()  # the other processes read the restored checkpoint from the same disk
        if self.checkpoint_path.exists():
            self._resume()
        else:
            self.log.log_params(self.config.model_dump(mode="json", exclude={"tracking"}))
            self.log.set_tags({"cdarts.genotype": self.genotype.to_string(), "cdarts.dataset_digest": prepared.digest})
            source = self.config.data.source
            self.log.log_dataset(source, prepared.digest, self.config.data.location or source, "training")
            self.log.log_metrics(
                {
                    "retrain/params": self.params,
                    "retrain/params_without_aux": self.params_without_aux,
                    "retrain/weight_decay": self.weight_decay,
                    "retrain/drop_path_prob_max": self.max_drop_path,
                },
                0,
            )
        distributed.broadcast_module(self.model)

    def _resume(self) -> None:
        path = self.checkpoint_path
        state = load_checkpoint(path)
        check_resume_identity(state, path, self.config.digest(), self.setup.prepared.digest)
        entries: dict[str, type | tuple[type, ...]] = {
            "genotype": dict,
            "model": dict,
            "optimizer": dict,
            "next_epoch": int,
            "history": list,
            "rng": dict,
        }
        require_entries(state, path, entries)
        if architecture_from_dict(state["genotype"]) != self.genotype:
            raise CheckpointError(f"{path} was written for another genotype; use a new --out")
        check_state_dict(self.model, state["model"], path, "retrain weights")
        check_optimizer_state(self.optimizer, state["optimizer"], path, "optimizer")
        next_epoch = require_count(state["next_epoch"], path, "next_epoch", self.cfg.epochs)
        history = state["history"]
        if len(history) != next_epoch or not all(isinstance(entry, dict) for entry in history):
            raise CheckpointError(f"{path}: the epoch history does not match next_epoch {next_epoch}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_checked_rng_state(state["rng"], path)
        self.next_epoch, self.history = next_epoch, history
        self.log.resume_after(next_epoch)  # a killed run's lines past the checkpoint are logged again

    def train(self, max_epochs: int | None, progress: ProgressCallback | None) -> int:
        """Epochs until the last (or ``max_epochs`` of them): train, check, evaluate, checkpoint."""
        epochs_run = 0
        while self.next_epoch < self.cfg.epochs and (max_epochs is None or epochs_run < max_epochs):
            epoch = self.next_epoch
            lr, train_metrics = self._train_epoch(epoch, progress)
            self._check_epoch(epoch)
            self.next_epoch += 1
            epochs_run += 1
            if self.setup.distributed.is_main:
                self._record_epoch(epoch, lr, train_metrics)
        self.setup.distributed.barrier()
        return epochs_run

    def _train_epoch(self, epoch: int, progress: ProgressCallback | None) -> tuple[float, dict[str, float]]:
        cfg, distributed, device = self.cfg, self.setup.distributed, self.setup.device
        lr = learning_rate(epoch, cfg.weight_lr, cfg.weight_lr_min, cfg.epochs, cfg.warmup_epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.set_drop_path_prob(drop_path_probability(epoch, self.max_drop_path, cfg.epochs))
        steps_per_epoch = len(self.train_split)
        description = f"retrain epoch {epoch + 1}/{cfg.epochs}"
        watch = LossWatch("retrain", f"epoch {epoch + 1}/{cfg.epochs}", epoch * steps_per_epoch + 1, _HINT)
        train_metrics = train_one_epoch(
            self.trained,
            self.train_split.epoch(epoch),
            self.optimizer,
            device,
            self.settings,
            on_step=_step_reporter(progress if distributed.is_main else None, description, steps_per_epoch),
            after_backward=lambda: distributed.average_gradients(self.model),
            watch=watch,
        )
        if distributed.enabled:  # report the mean over every process's batches
            averaged = distributed.average_values({k: torch.tensor(v, device=device) for k, v in train_metrics.items()})
            train_metrics = {name: float(value) for name, value in averaged.items()}
        watch.check(train_metrics)  # host values, the same on every process
        return lr, train_metrics

    def _check_epoch(self, epoch: int) -> None:
        """The processes still agree, and nothing the checkpoint would hold is NaN or infinite."""
        distributed, model = self.setup.distributed, self.model
        divergence = distributed.max_difference_from_main(list(model.parameters()))
        if divergence > 0:
            raise RuntimeError(f"retrain weights diverged across ranks (max difference {divergence})")
        distributed.broadcast_buffers(model)
        momentum = [
            (f"optimizer.state.{index}.{key}", value)
            for index, entry in enumerate(self.optimizer.state.values())
            for key, value in entry.items()
            if isinstance(value, torch.Tensor)
        ]
        check_finite_state(
            [*model.state_dict().items(), *momentum],
            stage="retrain",
            where=f"by step {(epoch + 1) * len(self.train_split)} (end of epoch {epoch + 1}/{self.cfg.epochs})",
            hint=_HINT,
            distributed=distributed,
            device=self.setup.device,
        )

    def _record_epoch(self, epoch: int, lr: float, train_metrics: dict[str, float]) -> None:
        """Rank 0: test accuracy, metrics, the checkpoint (and its mirror)."""
        prepared, cfg = self.setup.prepared, self.cfg
        test = evaluate(
            self.model, self.test_loader, self.setup.device, prepared.num_classes, cfg.bf16, cfg.channels_last
        )
        record = {
            "epoch": epoch,
            "lr": lr,
            **{f"train_{k}": v for k, v in train_metrics.items()},
            **{f"test_{k}": v for k, v in test.metrics().items()},
        }
        self.history.append(record)
        self.log.log_metrics({f"retrain/{k}": float(v) for k, v in record.items() if k != "epoch"}, epoch + 1)
        save_checkpoint(
            {
                "config_digest": self.config.digest(),
                "dataset_digest": prepared.digest,
                "genotype": self.genotype.to_dict(),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "next_epoch": self.next_epoch,
                "history": self.history,
                "rng": capture_rng_state(),
            },
            self.checkpoint_path,
        )
        if self.mirror is not None:
            self.mirror.publish(self.checkpoint_path)

    def finish(self, epochs_run: int) -> RetrainResult:
        """After the last epoch, on rank 0: the model file, its MLflow model, and the summary,
        written last (it marks the stage complete)."""
        completed = self.next_epoch >= self.cfg.epochs
        if not completed or not self.setup.distributed.is_main:
            return RetrainResult(completed, epochs_run, {}, None)
        prepared, genotype, log, out_dir = self.setup.prepared, self.genotype, self.log, self.out_dir
        final = self.history[-1]
        best = max(self.history, key=lambda r: r["test_top1"])
        summary = {
            "final_test_top1": final["test_top1"],
            "final_test_top5": final["test_top5"],
            "final_test_loss": final["test_loss"],
            "best_test_top1_selected_on_test": best["test_top1"],
            "best_epoch_selected_on_test": best["epoch"],
            "epochs": self.cfg.epochs,
            "params": self.params,
            "params_without_aux": self.params_without_aux,
            "weight_decay": self.weight_decay,
            "drop_path_prob_max": self.max_drop_path,
            "genotype": genotype.to_string(),
            "dataset_digest": prepared.digest,
        }
        log.log_metrics(
            {
                "retrain/final_test_top1": final["test_top1"],
                "retrain/best_test_top1_selected_on_test": best["test_top1"],
            },
            self.cfg.epochs,
        )
        model_path = out_dir / MODEL_FILE
        contract = serving_contract(prepared, self.config.data)
        save_model(
            self.model,
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
        tags = {"cdarts.genotype": genotype.to_string(), "cdarts.dataset_digest": prepared.digest}
        logged = log.log_served_model(model_path, contract.to_dict(), example_images(prepared), tags)
        if logged is not None:
            log.log_model_metrics(
                logged.model_id,
                {"retrain/final_test_top1": final["test_top1"], "retrain/final_test_loss": final["test_loss"]},
                self.config.data.source,
                prepared.digest,
            )
            write_logged_model_reference(out_dir, logged.model_id, logged.run_id)
        write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2))
        log.log_artifact(out_dir / SUMMARY_NAME)
        return RetrainResult(True, epochs_run, summary, model_path)


_HINT = "lower retrain.weight_lr or retrain.grad_clip"
