"""The cyclic joint search loop (S warm-up, then cycles of derive -> rebuild E -> warm E up ->
joint epochs -> write back), with a resumable checkpoint after every search iteration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cdarts.architecture import Architecture, architecture_from_dict
from cdarts.checkpoint import check_tensors, load_checkpoint, save_checkpoint
from cdarts.config import ExperimentConfig, SearchConfig
from cdarts.data.sampling import SplitLoader
from cdarts.distributed import DistributedContext
from cdarts.divergence import LossWatch, check_finite_state
from cdarts.errors import CheckpointError
from cdarts.metrics import MeanTracker
from cdarts.resume_state import (
    check_optimizer_state,
    check_resume_identity,
    require_count,
    require_entries,
    restore_checked_rng_state,
)
from cdarts.search.losses import regularizer_coefficient
from cdarts.search.optimizers import (
    CycleOptimizers,
    build_cycle_optimizers,
    build_search_weight_optimizer,
    cosine_lr,
    set_lr,
)
from cdarts.search.steps import SearchStepper
from cdarts.seeding import capture_rng_state
from cdarts.spaces.shared.joint_base import Branch, JointModel
from cdarts.tracking import NullTracker, Tracker

CHECKPOINT_FORMAT = 1
ProgressCallback = Callable[[str, int, int], None]
"""(description, completed steps, total steps) for a progress display."""

# Offsets that give every kind of epoch its own shuffle order (see _epoch_key).
_EVAL_WARMUP_KEY = 1_000_000


@dataclass
class CycleReport:
    """What one cycle produced: the new genotype, softmax(alphas) and the epoch's metrics."""

    cycle: int
    genotype: Architecture
    alpha_probs: dict[str, list[list[float]]]
    metrics: dict[str, float]


@dataclass
class SearchResult:
    genotype: Architecture
    alphas: dict[str, torch.Tensor]
    completed: bool
    cycles: list[CycleReport] = field(default_factory=list)


@dataclass
class SearchLoaders:
    train: SplitLoader
    val: SplitLoader


def _alpha_probs(model: JointModel) -> dict[str, list[list[float]]]:
    return {name.removeprefix("alphas_"): probs.tolist() for name, probs in model.alpha_probabilities().items()}


def model_state_for_checkpoint(model: JointModel) -> dict[str, torch.Tensor]:
    """Everything but E's cells, which are rebuilt from the genotype and the pool each cycle."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("eval_network.")}


class CyclicSearch:
    """Runs the whole search on one process (of possibly several under torchrun).

    Args:
        experiment: the resolved config (its digest guards resumes against config changes).
        checkpoint_path: where the per-iteration checkpoint lives; resumed from when present.
        tracker: receives per-step (every ``log_interval`` steps) and per-epoch metrics.
        on_cycle_end: called (on every rank) with each cycle's report.
        dataset_digest: the prepared dataset's digest; a resume on other data is refused.
        on_checkpoint: called on the main process with the path of every checkpoint written.
    """

    def __init__(
        self,
        model: JointModel,
        loaders: SearchLoaders,
        experiment: ExperimentConfig,
        device: torch.device,
        checkpoint_path: Path,
        *,
        distributed: DistributedContext | None = None,
        tracker: Tracker | None = None,
        progress: ProgressCallback | None = None,
        on_cycle_end: Callable[[CycleReport], None] | None = None,
        log_interval: int = 10,
        dataset_digest: str = "",
        on_checkpoint: Callable[[Path], None] | None = None,
    ) -> None:
        self.model = model
        self.loaders = loaders
        self.experiment = experiment
        self.config: SearchConfig = experiment.search
        self.device = device
        self.checkpoint_path = checkpoint_path
        self.distributed = distributed or DistributedContext()
        self.tracker = tracker or NullTracker()
        self.progress = progress
        self.on_cycle_end = on_cycle_end
        self.log_interval = log_interval
        self.dataset_digest = dataset_digest
        self.on_checkpoint = on_checkpoint
        self.stepper = SearchStepper(model, self.config, device, self.distributed)
        self.steps_per_epoch = max(1, int(min(len(loaders.train), len(loaders.val)) * self.config.sample_ratio))
        self.global_step = 0
        self.next_iteration = 0
        self.genotype = model.current_genotype()
        self.cycles: list[CycleReport] = []
        self.warmup_optimizer = build_search_weight_optimizer(model, self.config)

    # -- checkpointing ------------------------------------------------------------------------

    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config_digest": self.experiment.digest(),
            "config": self.experiment.model_dump(mode="json"),
            "dataset_digest": self.dataset_digest,
            "next_iteration": self.next_iteration,
            "global_step": self.global_step,
            "genotype": self.genotype.to_dict(),
            "model": model_state_for_checkpoint(self.model),
            "warmup_optimizer": self.warmup_optimizer.state_dict(),
            # Stale gradients enter the global clipping norm (alphas accumulate them during the
            # S warm-up), so an exact resume needs them too.
            "grads": {
                name: p.grad
                for name, p in self.model.named_parameters()
                if p.grad is not None and not name.startswith("eval_network.")
            },
            "cycles": [{"cycle": c.cycle, "genotype": c.genotype.to_dict(), "metrics": c.metrics} for c in self.cycles],
            "rng": capture_rng_state(),
        }

    def _check_finite_state(self, where: str) -> None:
        """Before anything of the iteration is written: every tensor the checkpoint would hold
        (weights, alphas, BatchNorm statistics, stale gradients, momentum) is finite."""
        momentum = [
            (f"warmup_optimizer.state.{index}.{key}", value)
            for index, entry in enumerate(self.warmup_optimizer.state.values())
            for key, value in entry.items()
            if isinstance(value, torch.Tensor)
        ]
        grads = [
            (f"{name}.grad", p.grad)
            for name, p in self.model.named_parameters()
            if p.grad is not None and not name.startswith("eval_network.")
        ]
        check_finite_state(
            [*model_state_for_checkpoint(self.model).items(), *grads, *momentum],
            stage="search",
            where=f"by step {self.global_step} ({where})",
            hint="lower search.weight_lr, search.eval_weight_lr, search.arch_lr or search.grad_clip",
            distributed=self.distributed,
            device=self.device,
        )

    def save(self) -> None:
        if self.distributed.is_main:
            save_checkpoint(self._checkpoint_state(), self.checkpoint_path)
            if self.on_checkpoint is not None:
                self.on_checkpoint(self.checkpoint_path)
        self.distributed.barrier()

    def try_resume(self) -> bool:
        """Continue from the checkpoint if there is one; False when starting fresh."""
        if not self.checkpoint_path.exists():
            return False
        state = load_checkpoint(self.checkpoint_path)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{self.checkpoint_path}: unsupported checkpoint format")
        check_resume_identity(state, self.checkpoint_path, self.experiment.digest(), self.dataset_digest)
        path = self.checkpoint_path
        entries = {"model": dict, "warmup_optimizer": dict, "grads": dict, "genotype": dict, "cycles": list}
        require_entries(state, path, {**entries, "next_iteration": int, "global_step": int, "rng": dict})
        check_tensors(model_state_for_checkpoint(self.model), state["model"], path, "search weights")
        check_optimizer_state(self.warmup_optimizer, state["warmup_optimizer"], path, "warm-up optimizer")
        params = dict(self.model.named_parameters())
        grads = state["grads"]
        check_tensors({name: params[name] for name in grads if name in params}, grads, path, "stale gradients")
        iterations = self.config.search_iterations
        next_iteration = require_count(state["next_iteration"], path, "next_iteration", iterations)
        try:
            self.model.load_state_dict(state["model"], strict=True)
            self.warmup_optimizer.load_state_dict(state["warmup_optimizer"])
            for name, grad in grads.items():
                params[name].grad = grad.to(params[name].device)
            self.genotype = architecture_from_dict(state["genotype"])
            self.cycles = [
                CycleReport(int(c["cycle"]), architecture_from_dict(c["genotype"]), {}, dict(c["metrics"]))
                for c in state["cycles"]
            ]
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise CheckpointError(f"{path} does not match this model: {error}") from None
        self.next_iteration = next_iteration
        self.global_step = require_count(state["global_step"], path, "global_step", 1 << 40)
        restore_checked_rng_state(state["rng"], path)
        return True

    # -- epochs ----------------------------------------------------------------------------------

    def _log(self, metrics: dict[str, torch.Tensor], watch: LossWatch | None = None) -> dict[str, float]:
        averaged = self.distributed.average_values(metrics)
        values = {name: float(value) for name, value in averaged.items()}
        if watch is not None:  # the values are on the host (and the same on every rank) anyway
            watch.check(values)
        if self.distributed.is_main:
            self.tracker.log_metrics(values, self.global_step)
        return values

    def _report_progress(self, description: str, done: int) -> None:
        if self.progress is not None and self.distributed.is_main:
            self.progress(description, done, self.steps_per_epoch)

    def _warmup_epoch(
        self, description: str, loader: SplitLoader, epoch_key: int, branch: Branch, optimizer: torch.optim.SGD
    ) -> dict[str, float]:
        """One epoch of plain cross-entropy training of S or E (no alphas, no distillation)."""
        prefix = f"warmup_{branch}"
        self.model.train()
        meter = MeanTracker()
        lr_key = "search.weight_lr" if branch == "search" else "search.eval_weight_lr"
        watch = LossWatch("search", description, self.global_step + 1, f"lower {lr_key} or search.grad_clip")
        for step, batch in enumerate(loader.epoch(epoch_key)):
            if step >= self.steps_per_epoch:
                break
            result = {f"{prefix}/{k}": v for k, v in self.stepper.warmup_step(batch, branch, optimizer).items()}
            meter.update(result)
            watch.observe(result)
            self.global_step += 1
            self._report_progress(description, step + 1)
        return self._log({f"{k}_epoch": v for k, v in meter.mean_tensors().items()}, watch)

    def _joint_epoch(self, description: str, search_epoch: int, optimizers: CycleOptimizers) -> dict[str, float]:
        cfg = self.config
        self.model.train()
        coefficient = (
            regularizer_coefficient(
                search_epoch,
                cfg.regularizer.coeff,
                cfg.warmup_epochs,
                cfg.search_iterations,
                cfg.epochs_per_cycle,
                cfg.regularizer.ratio,
            )
            if cfg.regularizer.enabled
            else 0.0
        )
        if cfg.weight_lr_schedule == "cosine":
            total = cfg.search_iterations * cfg.epochs_per_cycle
            set_lr(optimizers.search_weights, cosine_lr(cfg.weight_lr, cfg.weight_lr_min, search_epoch, total))
        meter = MeanTracker()
        watch = LossWatch(
            "search",
            description,
            self.global_step + 1,
            "lower search.weight_lr, search.eval_weight_lr, search.arch_lr or search.grad_clip",
        )
        batches = zip(self.loaders.train.epoch(search_epoch), self.loaders.val.epoch(search_epoch), strict=False)
        for step, (train_batch, val_batch) in enumerate(batches):
            if step >= self.steps_per_epoch:
                break
            result = self.stepper.joint_step(val_batch, train_batch, optimizers, coefficient)
            meter.update(result)
            watch.observe(result)
            self.global_step += 1
            if self.log_interval and (step + 1) % self.log_interval == 0:
                self._log(result, watch)
            self._report_progress(description, step + 1)
        epoch_metrics = {f"{k}_epoch": v for k, v in meter.mean_tensors().items()}
        epoch_metrics["search/reg_coefficient"] = torch.tensor(coefficient)
        return self._log(epoch_metrics, watch)

    # -- the loop --------------------------------------------------------------------------------

    def _cycle(self, iteration: int) -> CycleReport:
        cfg = self.config
        cycle = iteration - cfg.warmup_epochs
        # Rebuild E for the current genotype, inherit its weights from the pool, fresh optimisers.
        # The reference deep-copies the whole module here, which drops every gradient.
        self.model.zero_grad(set_to_none=True)
        self.model.rebuild_eval_network(self.genotype)
        optimizers = build_cycle_optimizers(self.model, cfg)
        if cfg.weight_lr_schedule == "cosine":
            # W_E's cosine runs over the cycle's joint epochs; during E warm-up it is at its start.
            set_lr(optimizers.eval_weights, cfg.eval_weight_lr)
        for warm in range(cfg.eval_warmup_epochs):
            self._warmup_epoch(
                f"cycle {cycle + 1}/{cfg.num_cycles}: E warm-up",
                self.loaders.val,
                _EVAL_WARMUP_KEY + cycle * cfg.eval_warmup_epochs + warm,
                "eval",
                optimizers.eval_weights,
            )
        metrics: dict[str, float] = {}
        for sub_epoch in range(cfg.epochs_per_cycle):
            search_epoch = iteration * cfg.epochs_per_cycle + sub_epoch
            if cfg.weight_lr_schedule == "cosine":
                set_lr(
                    optimizers.eval_weights,
                    cosine_lr(cfg.eval_weight_lr, cfg.weight_lr_min, sub_epoch, cfg.epochs_per_cycle),
                )
            metrics = self._joint_epoch(f"cycle {cycle + 1}/{cfg.num_cycles}: joint", search_epoch, optimizers)
        # The newly derived genotype replaces the old one unconditionally; E goes back to the pool.
        self.genotype = self.model.current_genotype()
        self.model.write_back_to_pool()
        divergence = self.distributed.max_difference_from_main(self.model.arch_parameters())
        if divergence > 0:
            raise RuntimeError(f"alphas diverged across ranks (max difference {divergence})")
        return CycleReport(cycle, self.genotype, _alpha_probs(self.model), metrics)

    def run(self, max_iterations: int | None = None) -> SearchResult:
        """Run (or continue) the search; stop early after ``max_iterations`` iterations."""
        cfg = self.config
        ran = 0
        while self.next_iteration < cfg.search_iterations:
            if max_iterations is not None and ran >= max_iterations:
                break
            iteration = self.next_iteration
            if iteration < cfg.warmup_epochs:
                self._warmup_epoch(
                    f"S warm-up {iteration + 1}/{cfg.warmup_epochs}",
                    self.loaders.train,
                    iteration * cfg.epochs_per_cycle,
                    "search",
                    self.warmup_optimizer,
                )
                self._check_finite_state(f"S warm-up {iteration + 1}/{cfg.warmup_epochs}")
            else:
                report = self._cycle(iteration)
                self._check_finite_state(f"cycle {report.cycle + 1}/{cfg.num_cycles}")
                self.cycles.append(report)
                if self.on_cycle_end is not None:
                    self.on_cycle_end(report)
            self.next_iteration += 1
            ran += 1
            self.save()
        return SearchResult(
            genotype=self.genotype,
            alphas={name: alphas.detach().cpu().clone() for name, alphas in self.model.named_alphas().items()},
            completed=self.next_iteration >= cfg.search_iterations,
            cycles=self.cycles,
        )
