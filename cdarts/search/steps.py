"""One optimisation step of each kind: warm-up steps and the CDARTS joint step.

Each step returns its named loss terms and accuracies as detached 0-d tensors (kept on the
device, so a GPU run does not synchronise every step).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cdarts.config import SearchConfig
from cdarts.devices import autocast
from cdarts.distributed import DistributedContext
from cdarts.metrics import topk_accuracy
from cdarts.search.losses import alpha_l1_penalty, distillation_loss
from cdarts.search.optimizers import CycleOptimizers
from cdarts.spaces.shared.joint_base import Branch, JointModel

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class SearchStepper:
    """Runs the steps of the cyclic search on one model with one config."""

    model: JointModel
    config: SearchConfig
    device: torch.device
    distributed: DistributedContext

    def __post_init__(self) -> None:
        candidates = self.model.candidates
        self._reg_columns = [candidates.index(p) for p in self.config.regularizer.primitives if p in candidates]

    # -- shared mechanics ---------------------------------------------------------------------

    def _to_device(self, batch: Batch) -> Batch:
        images, labels = batch
        return (images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True))

    def _zero_grad(self, *optimizers: torch.optim.Optimizer) -> None:
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=self.config.zero_grad_to_none)

    def _backward_and_clip(self, loss: torch.Tensor, stepped: Iterable[nn.Parameter]) -> None:
        loss.backward()  # type: ignore[no-untyped-call]
        self.distributed.average_gradients(self.model)
        # The reference clips the global norm over the whole module, stale gradients included.
        params = self.model.parameters() if self.config.grad_clip_scope == "all" else stepped
        nn.utils.clip_grad_norm_(list(params), self.config.grad_clip)

    # -- warm-up -------------------------------------------------------------------------------

    def warmup_step(self, batch: Batch, branch: Branch, optimizer: torch.optim.SGD) -> dict[str, torch.Tensor]:
        """One cross-entropy step of S (``search``, train split) or E (``eval``, val split)."""
        images, labels = self._to_device(batch)
        self._zero_grad(optimizer)
        with autocast(self.device, self.config.bf16):
            logits = self.model(images, branch, with_ensemble=False).logits
            loss = F.cross_entropy(logits.float(), labels)
        self._backward_and_clip(loss, _params(optimizer))
        optimizer.step()
        return {"loss": loss.detach(), "top1": topk_accuracy(logits.detach(), labels)}

    # -- the joint step --------------------------------------------------------------------------

    def joint_step(
        self, val_batch: Batch, train_batch: Batch, optimizers: CycleOptimizers, reg_coefficient: float
    ) -> dict[str, torch.Tensor]:
        """Step A on a val batch (E weights and alphas), then Step B on a train batch (S weights).

        Returns ``search/loss_cls``, ``search/loss_distill``, ``search/loss_reg``,
        ``search/loss_arch`` (their sum), ``search/loss_weight`` (Step B), ``search/top1_search``
        and ``search/top1_eval`` (on the val batch).
        """
        metrics = self.arch_step(val_batch, optimizers, reg_coefficient)
        metrics.update(self.search_weight_step(train_batch, optimizers))
        return metrics

    def arch_step(
        self, val_batch: Batch, optimizers: CycleOptimizers, reg_coefficient: float
    ) -> dict[str, torch.Tensor]:
        """Step A: ``[CE(S) + CE(E)] / lambda + lambda * T^2 * D(ens_S, ens_E) + L_reg`` on a val
        batch, then a W_E step and an alpha step."""
        cfg = self.config
        images, labels = self._to_device(val_batch)
        lam = cfg.distill_weight

        # 1. Forward S and E on the same val batch.
        self._zero_grad(optimizers.eval_weights, optimizers.arch)
        with autocast(self.device, cfg.bf16):
            out_search = self.model(images, "search")
            out_eval = self.model(images, "eval")
        assert out_search.ensemble is not None and out_eval.ensemble is not None

        # 2. Loss terms: classification of both networks, distillation between their ensembles
        #    (E is the teacher and is not detached), the L1 regulariser on the alphas.
        loss_cls = (
            F.cross_entropy(out_search.logits.float(), labels) + F.cross_entropy(out_eval.logits.float(), labels)
        ) / lam
        loss_distill = lam * distillation_loss(
            out_search.ensemble.float(),
            out_eval.ensemble.float(),
            cfg.distill_type,
            cfg.distill_temperature,
            cfg.kl_reduction,
        )
        loss_reg = torch.zeros((), device=self.device)
        if cfg.regularizer.enabled and reg_coefficient > 0:
            penalty = alpha_l1_penalty(self.model.arch_parameters(), self._reg_columns, cfg.regularizer.reduction)
            loss_reg = reg_coefficient * cfg.regularizer.stage_repeats * penalty
        loss_arch = loss_cls + loss_distill + loss_reg

        # 3. Update E's weights and the alphas. S's gradients from this step are discarded when
        #    W_S zeroes them in Step B.
        stepped = [*_params(optimizers.eval_weights), *self.model.arch_parameters()]
        self._backward_and_clip(loss_arch, stepped)
        optimizers.eval_weights.step()
        optimizers.arch.step()
        return {
            "search/loss_cls": loss_cls.detach(),
            "search/loss_distill": loss_distill.detach(),
            "search/loss_reg": loss_reg.detach(),
            "search/loss_arch": loss_arch.detach(),
            "search/top1_search": topk_accuracy(out_search.logits.detach(), labels),
            "search/top1_eval": topk_accuracy(out_eval.logits.detach(), labels),
        }

    def search_weight_step(self, train_batch: Batch, optimizers: CycleOptimizers) -> dict[str, torch.Tensor]:
        """Step B: plain cross-entropy of S on a train batch, then a W_S step."""
        images, labels = self._to_device(train_batch)
        self._zero_grad(optimizers.search_weights)
        with autocast(self.device, self.config.bf16):
            logits = self.model(images, "search", with_ensemble=False).logits
            loss_weight = F.cross_entropy(logits.float(), labels)
        self._backward_and_clip(loss_weight, _params(optimizers.search_weights))
        optimizers.search_weights.step()
        return {"search/loss_weight": loss_weight.detach()}


def _params(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for group in optimizer.param_groups for p in group["params"]]
