"""Which parameters each phase of the cyclic search updates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cdarts.config import ExperimentConfig
from cdarts.distributed import DistributedContext
from cdarts.search.optimizers import build_cycle_optimizers
from cdarts.search.steps import SearchStepper
from cdarts.spaces.darts.joint_network import JointNetwork
from tests.conftest import tiny_batch, tiny_network


def _snapshot(module: nn.Module | list[nn.Parameter]) -> list[torch.Tensor]:
    params = module.parameters() if isinstance(module, nn.Module) else module
    return [p.detach().clone() for p in params]


def _changed(before: list[torch.Tensor], module: nn.Module | list[nn.Parameter]) -> bool:
    params = list(module.parameters() if isinstance(module, nn.Module) else module)
    return any(not torch.equal(a, b) for a, b in zip(before, params, strict=True))


GROUPS = ("search_cells", "search_classifier", "eval_cells", "eval_classifier", "alphas", "stem", "pool", "heads")


def _groups(model: JointNetwork) -> dict[str, nn.Module | list[nn.Parameter]]:
    assert model.eval_network is not None
    return {
        "search_cells": model.search_network.cells,
        "search_classifier": model.search_classifier,
        "eval_cells": model.eval_network,
        "eval_classifier": model.eval_classifier,
        "alphas": model.arch_parameters(),
        "stem": model.stem,
        "pool": model.weight_pool,
        "heads": model.distill_heads,
    }


def _which_changed(model: JointNetwork, run: object) -> set[str]:
    groups = _groups(model)
    before = {name: _snapshot(group) for name, group in groups.items()}
    run()  # type: ignore[operator]
    return {name for name, group in groups.items() if _changed(before[name], group)}


@pytest.fixture
def stepper(tiny_model: JointNetwork, tiny_config: ExperimentConfig) -> SearchStepper:
    return SearchStepper(tiny_model, tiny_config.search, torch.device("cpu"), DistributedContext())


def test_step_a_updates_eval_weights_and_alphas_only(stepper: SearchStepper, tiny_config: ExperimentConfig) -> None:
    optimizers = build_cycle_optimizers(stepper.model, stepper.config)
    changed = _which_changed(stepper.model, lambda: stepper.arch_step(tiny_batch(tiny_config), optimizers, 5.0))
    assert changed == {"eval_cells", "eval_classifier", "alphas", "stem"}


def test_step_b_updates_search_weights_only(stepper: SearchStepper, tiny_config: ExperimentConfig) -> None:
    optimizers = build_cycle_optimizers(stepper.model, stepper.config)
    stepper.arch_step(tiny_batch(tiny_config), optimizers, 5.0)  # leaves stale grads behind
    changed = _which_changed(
        stepper.model, lambda: stepper.search_weight_step(tiny_batch(tiny_config, seed=1), optimizers)
    )
    assert changed == {"search_cells", "search_classifier", "stem"}


def test_trainable_heads_are_updated_by_step_a(tiny_config: ExperimentConfig) -> None:

    search = tiny_config.search.model_copy(update={"fix_heads": False})
    model = tiny_network(tiny_config.model_copy(update={"search": search}))
    model.rebuild_eval_network(model.current_genotype())
    stepper = SearchStepper(model, search, torch.device("cpu"), DistributedContext())
    optimizers = build_cycle_optimizers(model, search)
    changed = _which_changed(model, lambda: stepper.arch_step(tiny_batch(tiny_config), optimizers, 0.0))
    assert "heads" in changed and "search_cells" not in changed


def test_warmup_steps_leave_alphas_alone(stepper: SearchStepper, tiny_config: ExperimentConfig) -> None:
    optimizers = build_cycle_optimizers(stepper.model, stepper.config)
    batch = tiny_batch(tiny_config)
    changed_s = _which_changed(stepper.model, lambda: stepper.warmup_step(batch, "search", optimizers.search_weights))
    assert changed_s == {"search_cells", "search_classifier", "stem"}
    changed_e = _which_changed(stepper.model, lambda: stepper.warmup_step(batch, "eval", optimizers.eval_weights))
    assert changed_e == {"eval_cells", "eval_classifier", "stem"}


def test_joint_step_returns_every_named_term(stepper: SearchStepper, tiny_config: ExperimentConfig) -> None:
    optimizers = build_cycle_optimizers(stepper.model, stepper.config)
    metrics = stepper.joint_step(tiny_batch(tiny_config), tiny_batch(tiny_config, seed=1), optimizers, 2.0)
    assert set(metrics) == {
        "search/loss_cls",
        "search/loss_distill",
        "search/loss_reg",
        "search/loss_arch",
        "search/loss_weight",
        "search/top1_search",
        "search/top1_eval",
    }
    total = metrics["search/loss_cls"] + metrics["search/loss_distill"] + metrics["search/loss_reg"]
    assert torch.allclose(metrics["search/loss_arch"], total)
    assert metrics["search/loss_reg"] > 0 and all(torch.isfinite(v) for v in metrics.values())


def test_regularizer_pulls_parameter_free_alphas_towards_zero(
    tiny_model: JointNetwork, tiny_config: ExperimentConfig
) -> None:
    search = tiny_config.search.model_copy(update={"arch_lr": 0.05})
    stepper = SearchStepper(tiny_model, search, torch.device("cpu"), DistributedContext())
    with torch.no_grad():
        for alphas in tiny_model.arch_parameters():
            alphas.fill_(1.0)
    optimizers = build_cycle_optimizers(tiny_model, search)
    stepper.arch_step(tiny_batch(tiny_config), optimizers, reg_coefficient=50.0)
    skip = tiny_model.primitives.index("skip_connect")
    conv = tiny_model.primitives.index("sep_conv_3x3")
    normal = tiny_model.search_network.alphas_normal.detach()
    assert (normal[:, skip] < 1.0).all()  # strong L1 pull dominates the task gradient
    assert (normal[:, skip] < normal[:, conv]).all()


def test_bf16_autocast_step_runs_on_cpu(tiny_model: JointNetwork, tiny_config: ExperimentConfig) -> None:
    search = tiny_config.search.model_copy(update={"bf16": True})
    stepper = SearchStepper(tiny_model, search, torch.device("cpu"), DistributedContext())
    optimizers = build_cycle_optimizers(tiny_model, search)
    metrics = stepper.joint_step(tiny_batch(tiny_config), tiny_batch(tiny_config, seed=1), optimizers, 1.0)
    assert all(torch.isfinite(v) for v in metrics.values())
    assert tiny_model.search_network.alphas_normal.dtype == torch.float32
