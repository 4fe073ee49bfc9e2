from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cdarts.config import ExperimentConfig
from cdarts.spaces.darts.eval_network import EvalNetwork
from cdarts.spaces.darts.joint_network import JointNetwork
from cdarts.spaces.darts.layout import plan_cells
from cdarts.spaces.darts.parser import reference_genotype
from cdarts.spaces.darts.stems import CifarStem
from tests.conftest import tiny_batch, tiny_network


def test_cifar_search_layout_reduces_at_cells_2_and_5() -> None:
    plan = plan_cells((3, 3, 2), 16, 48, 4, "cifar")
    flat = [spec for stage in plan for spec in stage]
    assert [i for i, spec in enumerate(flat) if spec.reduction] == [2, 5]
    assert [spec.channels for spec in flat] == [16, 16, 32, 32, 32, 64, 64, 64]
    # The cell after a reduction halves c_{k-2} with a factorized reduce.
    assert [i for i, spec in enumerate(flat) if spec.reduction_prev] == [3, 6]
    assert flat[0].c_prev_prev == flat[0].c_prev == 48


def test_eval_layouts_match_the_reference_tables() -> None:
    cifar = [s for stage in plan_cells((7, 7, 6), 36, 108, 4, "cifar") for s in stage]
    imagenet = [s for stage in plan_cells((5, 5, 4), 48, 48, 4, "imagenet") for s in stage]
    assert [i for i, s in enumerate(cifar) if s.reduction] == [6, 13]
    assert [i for i, s in enumerate(imagenet) if s.reduction] == [4, 9]
    assert imagenet[0].reduction_prev  # the ImageNet stem already halves c_{k-2}


def test_joint_network_outputs_logits_and_stacked_ensemble(
    tiny_model: JointNetwork, tiny_config: ExperimentConfig
) -> None:
    images, _ = tiny_batch(tiny_config, batch_size=3)
    for branch in ("search", "eval"):
        out = tiny_model(images, branch)
        assert out.logits.shape == (3, tiny_config.data.num_classes)
        assert out.ensemble is not None and out.ensemble.shape == (9, tiny_config.data.num_classes)
        # The last third of the ensemble is the final logits scaled by its ensemble weight.
        weight = torch.softmax(tiny_model.ensemble_logits, 0)[2]
        assert torch.allclose(out.ensemble[6:], weight * out.logits, atol=1e-6)


def test_imagenet_layout_runs_at_small_size() -> None:
    model = JointNetwork(
        stem="imagenet",
        in_channels=3,
        num_classes=5,
        image_size=64,
        init_channels=4,
        stem_multiplier=1,
        search_cells=(1, 1, 1),
        eval_cells=(2, 1, 1),
        head_channels=(8, 8),
    )
    model.rebuild_eval_network(model.current_genotype())
    out = model(torch.randn(2, 3, 64, 64), "eval")
    assert out.logits.shape == (2, 5) and out.ensemble is not None


def test_bad_image_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        JointNetwork(
            stem="cifar",
            in_channels=3,
            num_classes=2,
            image_size=10,
            init_channels=4,
            stem_multiplier=1,
            search_cells=(1, 1, 1),
            eval_cells=(1, 1, 1),
        )


def test_arch_and_weight_parameters_are_disjoint_and_complete(tiny_model: JointNetwork) -> None:
    arch = {id(p) for p in tiny_model.arch_parameters()}
    weights = {id(p) for p in tiny_model.weight_parameters()}
    assert len(arch) == 2 and not arch & weights
    assert arch | weights == {id(p) for p in tiny_model.parameters()}
    assert not arch & {id(p) for p in tiny_model.search_weight_parameters()}
    assert not arch & {id(p) for p in tiny_model.eval_weight_parameters()}


def test_every_trainable_parameter_receives_a_gradient(tiny_config: ExperimentConfig) -> None:
    config = tiny_config.search.model_copy(update={"fix_heads": False})

    model = tiny_network(tiny_config.model_copy(update={"search": config}))
    model.rebuild_eval_network(model.current_genotype())
    images, labels = tiny_batch(tiny_config)
    out_s, out_e = model(images, "search"), model(images, "eval")
    assert out_s.ensemble is not None and out_e.ensemble is not None
    loss = F.cross_entropy(out_s.logits, labels) + F.cross_entropy(out_e.logits, labels)
    loss = loss + F.smooth_l1_loss(out_s.ensemble, out_e.ensemble)
    loss.backward()
    pool_ids = {id(p) for p in model.weight_pool.parameters()}
    missing = [
        name
        for name, p in model.named_parameters()
        if id(p) not in pool_ids and (p.grad is None or not torch.isfinite(p.grad).all())
    ]
    assert missing == []
    assert all(p.grad is None for p in model.weight_pool.parameters())  # the pool is never run


def test_fixed_heads_are_frozen_and_not_in_optimiser_groups(tiny_model: JointNetwork) -> None:
    head_ids = {id(p) for p in tiny_model.distill_heads.parameters()}
    assert all(not p.requires_grad for p in tiny_model.distill_heads.parameters())
    assert not head_ids & {id(p) for p in tiny_model.search_weight_parameters()}


def test_shared_parts_are_in_both_weight_groups(tiny_model: JointNetwork) -> None:
    search = {id(p) for p in tiny_model.search_weight_parameters()}
    evaluation = {id(p) for p in tiny_model.eval_weight_parameters()}
    shared = {id(p) for p in tiny_model.stem.parameters()} | {id(tiny_model.ensemble_logits)}
    assert shared <= search & evaluation
    assert not {id(p) for p in tiny_model.search_network.cells.parameters()} & evaluation
    assert not {id(p) for p in tiny_model.eval_classifier.parameters()} & search


def test_darts_v2_retrain_sized_network_has_the_published_parameter_count() -> None:
    # DARTS reports 3.3 M parameters for DARTS-V2 at C=36, 20 cells (no auxiliary head).
    plan = plan_cells((7, 7, 6), 36, 108, 4, "cifar")
    cells = EvalNetwork(reference_genotype("DARTS_V2"), plan, affine=True)
    stem = CifarStem(3, 108)
    classifier = nn.Linear(plan[-1][-1].out_channels(4), 10)
    total = sum(p.numel() for m in (cells, stem, classifier) for p in m.parameters())
    assert 3.30e6 < total < 3.40e6
