"""The fast search implementation and activation checkpointing against the reference formulation:
the same losses, the same gradients, the same BatchNorm statistics, interchangeable checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from cdarts.config import ExperimentConfig
from cdarts.distributed import DistributedContext
from cdarts.kernels.depthwise_weight_grad import depthwise_weight_grad as native_weight_grad
from cdarts.search.losses import distillation_loss
from cdarts.search.optimizers import build_cycle_optimizers
from cdarts.search.steps import SearchStepper
from cdarts.spaces.darts.joint_network import JointNetwork
from cdarts.spaces.darts.space import build_joint_network
from cdarts.spaces.shared import depthwise_conv
from cdarts.spaces.shared.pointwise_conv import PointwiseConv2d
from tests.conftest import tiny_batch

RELATIVE_TOLERANCE = 1e-5


def _network(config: ExperimentConfig, **search: object) -> JointNetwork:
    torch.manual_seed(0)
    cfg = config.search.model_copy(update=search)
    assert config.data.num_classes is not None
    data = config.data
    model = build_joint_network(cfg, config.darts, data.channels, data.num_classes, data.image_size)
    model.rebuild_eval_network(model.current_genotype())
    model.train()
    return model


def _step_a_loss(model: JointNetwork, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Step A's classification + distillation loss, backpropagated into every parameter."""
    out_search, out_eval = model(images, "search"), model(images, "eval")
    assert out_search.ensemble is not None and out_eval.ensemble is not None
    loss = F.cross_entropy(out_search.logits, labels) + F.cross_entropy(out_eval.logits, labels)
    loss = loss + distillation_loss(out_search.ensemble, out_eval.ensemble, "kl", 2.0, "elementwise_mean")
    loss.backward()  # type: ignore[no-untyped-call]
    return loss.detach()


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def _assert_same_gradients(fast: JointNetwork, reference: JointNetwork) -> None:
    reference_grads = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    fast_grads = {n: p.grad for n, p in fast.named_parameters() if p.grad is not None}
    assert set(fast_grads) == set(reference_grads) and len(reference_grads) > 20
    for name, grad in reference_grads.items():
        assert _relative_difference(fast_grads[name], grad) < RELATIVE_TOLERANCE, name


def test_fast_and_reference_have_the_same_losses_and_gradients(
    tiny_config: ExperimentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    native_calls = []

    def counted_native_weight_grad(*args: object) -> torch.Tensor | None:
        native_calls.append(args)
        return native_weight_grad(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(depthwise_conv, "depthwise_weight_grad", counted_native_weight_grad)
    reference = _network(tiny_config, impl="reference")
    fast = _network(tiny_config, impl="fast")
    assert fast.state_dict().keys() == reference.state_dict().keys()  # checkpoints interchange
    fast.load_state_dict(reference.state_dict())
    assert fast.channels_last and not reference.channels_last
    images, labels = tiny_batch(tiny_config, batch_size=8)
    loss_reference = _step_a_loss(reference, images, labels)
    loss_fast = _step_a_loss(fast, images, labels)
    assert _relative_difference(loss_fast, loss_reference) < RELATIVE_TOLERANCE
    _assert_same_gradients(fast, reference)
    # The fast kernels were part of what agreed: the 1x1 convolutions as matrix products and the
    # native weight gradient of the 5x5 depthwise ones.
    assert any(isinstance(m, PointwiseConv2d) for m in fast.modules()) and native_calls
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_joint_steps_agree_step_after_step(tiny_config: ExperimentConfig) -> None:
    """Whole joint steps (Step A, Step B, the optimisers) stay together over several steps,
    across an E rebuild from the pool."""
    models = {impl: _network(tiny_config, impl=impl) for impl in ("reference", "fast")}
    models["fast"].load_state_dict(models["reference"].state_dict())
    results: dict[str, list[dict[str, float]]] = {}
    for impl, model in models.items():
        stepper = SearchStepper(model, tiny_config.search, torch.device("cpu"), DistributedContext())
        optimizers = build_cycle_optimizers(model, tiny_config.search)
        history = []
        for step in range(3):
            if step == 2:
                model.write_back_to_pool()
                model.rebuild_eval_network(model.current_genotype())
                optimizers = build_cycle_optimizers(model, tiny_config.search)
            val, train = tiny_batch(tiny_config, 8, seed=step), tiny_batch(tiny_config, 8, seed=100 + step)
            history.append({k: float(v) for k, v in stepper.joint_step(val, train, optimizers, 1.0).items()})
        results[impl] = history
    for fast_step, reference_step in zip(results["fast"], results["reference"], strict=True):
        for name, value in reference_step.items():
            assert fast_step[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    for name, tensor in models["reference"].named_parameters():
        other = dict(models["fast"].named_parameters())[name]
        assert torch.allclose(other, tensor, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_activation_checkpointing_changes_neither_gradients_nor_batchnorm_statistics(
    tiny_config: ExperimentConfig, impl: str
) -> None:
    plain = _network(tiny_config, impl=impl)
    checkpointed = _network(tiny_config, impl=impl, activation_checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.rebuild_eval_network(plain.current_genotype())
    assert checkpointed.eval_network is not None and checkpointed.eval_network.activation_checkpointing
    images, labels = tiny_batch(tiny_config, batch_size=8)
    before = copy.deepcopy(checkpointed.state_dict())
    assert _step_a_loss(checkpointed, images, labels) == pytest.approx(float(_step_a_loss(plain, images, labels)))
    _assert_same_gradients(checkpointed, plain)
    buffers = {n: b for n, b in checkpointed.named_buffers() if "running_mean" in n or "num_batches" in n}
    reference_buffers = dict(plain.named_buffers())
    assert buffers
    for name, buffer in buffers.items():
        assert torch.allclose(buffer, reference_buffers[name], rtol=1e-5, atol=1e-7), name
        if "num_batches" in name and name.startswith("search_network"):
            assert int(buffer) == int(before[name]) + 1  # one update per forward, not two
