"""Retrain (recipe, resume) and evaluate on the tiny config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cdarts.config import DataConfig, ExperimentConfig
from cdarts.errors import CheckpointError, DataError
from cdarts.model_file import load_model
from cdarts.runners.data_prep import run_data_prep
from cdarts.runners.evaluate import run_evaluate
from cdarts.runners.retrain import CHECKPOINT_NAME, run_retrain
from cdarts.spaces.darts.parser import reference_genotype
from cdarts.spaces.darts.retrain_network import RetrainNetwork, cells_per_stage
from cdarts.spaces.shared.retrain_spec import RetrainSpec
from cdarts.train.recipe import cifar_param_count_rule, drop_path_probability, learning_rate

GENOTYPE = reference_genotype("CDARTS_CIFAR")


def test_cells_per_stage_puts_reductions_where_darts_does() -> None:
    assert cells_per_stage(20) == (7, 7, 6)
    assert cells_per_stage(14) == (5, 5, 4)
    assert cells_per_stage(8) == (3, 3, 2)


def test_learning_rate_warms_up_linearly_then_follows_a_cosine() -> None:
    assert [learning_rate(e, 0.5, 0.0, 250, 5) for e in range(5)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert learning_rate(5, 0.5, 0.0, 250, 5) == pytest.approx(0.5)
    assert learning_rate(249, 0.5, 0.0, 250, 5) < 1e-3
    assert learning_rate(300, 0.025, 0.0, 600, 0) == pytest.approx(0.0125)


def test_drop_path_ramps_linearly_from_zero() -> None:
    assert drop_path_probability(0, 0.3, 600) == 0.0
    assert drop_path_probability(300, 0.3, 600) == pytest.approx(0.15)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (2_900_000, (3e-4, 0.2)),
        (3_000_000, (5e-4, 0.3)),
        (3_200_000, (3e-4, 0.3)),
        (3_500_000, (5e-4, 0.3)),
        (3_860_000, (5e-4, 0.3)),
    ],
)
def test_cifar_parameter_count_rule(params: int, expected: tuple[float, float]) -> None:
    assert cifar_param_count_rule(params) == expected


def test_auxiliary_head_runs_only_in_training() -> None:
    spec = RetrainSpec("cifar", 3, 10, 32, 8, 8, 3, auxiliary=True)
    model = RetrainNetwork(GENOTYPE, spec)
    images = torch.randn(2, 3, 32, 32)
    logits, aux = model(images)
    assert logits.shape == aux.shape == (2, 10)  # type: ignore[union-attr]
    model.eval()
    assert model(images)[1] is None
    total, without_aux = model.parameter_counts()
    assert total - without_aux == sum(p.numel() for p in model.auxiliary_head.parameters())  # type: ignore[union-attr]
    without = RetrainNetwork(GENOTYPE, RetrainSpec("cifar", 3, 10, 32, 8, 8, 3, auxiliary=False))
    assert without.parameter_counts() == (without_aux, without_aux)


def test_imagenet_retrain_network_at_small_size() -> None:
    model = RetrainNetwork(reference_genotype("CDARTS_IMAGENET"), RetrainSpec("imagenet", 3, 5, 64, 8, 5, 1, True))
    logits, aux = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 5) and aux is not None


def test_retrain_reports_final_and_labelled_best_and_saves_a_loadable_model(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    result = run_retrain(tiny_config, tiny_dataset, GENOTYPE, tmp_path)
    assert result.completed and result.model_path is not None
    summary = json.loads((tmp_path / "retrain_summary.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    per_epoch = [r for r in records if "retrain/test_top1" in r]
    assert len(per_epoch) == tiny_config.retrain.epochs
    assert summary["final_test_top1"] == per_epoch[-1]["retrain/test_top1"]
    assert summary["best_test_top1_selected_on_test"] == max(r["retrain/test_top1"] for r in per_epoch)
    assert per_epoch[0]["retrain/lr"] == pytest.approx(tiny_config.retrain.weight_lr)
    model, extra = load_model(tmp_path)
    assert model.genotype == GENOTYPE and extra["dataset_digest"] == summary["dataset_digest"]


def test_interrupted_and_resumed_retrain_equals_an_uninterrupted_one(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    # Random crops, flips and cutout draw from the RNG, so this also checks its restoration.
    config = tiny_config.model_copy(
        update={
            "data": tiny_config.data.model_copy(update={"augmentation": "cifar", "crop_padding": 1}),
            "retrain": tiny_config.retrain.model_copy(update={"epochs": 3, "cutout": 2}),
        }
    )
    run_retrain(config, tiny_dataset, GENOTYPE, tmp_path / "straight")
    partial = run_retrain(config, tiny_dataset, GENOTYPE, tmp_path / "resumed", max_epochs=1)
    assert not partial.completed
    assert not (tmp_path / "resumed" / "model.pt").exists()
    assert not (tmp_path / "resumed" / "retrain_summary.json").exists()
    run_retrain(config, tiny_dataset, GENOTYPE, tmp_path / "resumed")
    straight, _ = load_model(tmp_path / "straight")
    resumed, _ = load_model(tmp_path / "resumed")
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    summary_a = json.loads((tmp_path / "straight" / "retrain_summary.json").read_text())
    summary_b = json.loads((tmp_path / "resumed" / "retrain_summary.json").read_text())
    assert summary_a == summary_b


def test_retrain_resume_with_another_genotype_is_refused(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    run_retrain(tiny_config, tiny_dataset, GENOTYPE, tmp_path, max_epochs=1)
    with pytest.raises(CheckpointError, match="another genotype"):
        run_retrain(tiny_config, tiny_dataset, reference_genotype("DARTS_V2"), tmp_path)
    assert (tmp_path / CHECKPOINT_NAME).exists()


def test_evaluate_reports_consistent_metrics(tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path) -> None:
    run_retrain(tiny_config, tiny_dataset, GENOTYPE, tmp_path / "model")
    metrics = run_evaluate(tiny_config, tiny_dataset, tmp_path / "model", tmp_path / "eval")
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == metrics
    confusion = torch.tensor(metrics["confusion_matrix"])
    assert confusion.shape == (4, 4) and int(confusion.sum()) == metrics["num_test_images"] == 16
    assert metrics["top1"] == pytest.approx(confusion.diag().sum().item() / 16)
    assert metrics["top1"] <= metrics["top5"] == 1.0  # 4 classes: the true class is always in the top 5
    assert metrics["params"] > metrics["params_without_aux"] > 0 and metrics["multiply_adds"] > 0
    assert metrics["latency_ms_batch1"] > 0 and metrics["throughput_images_per_s"] > 0
    summary = json.loads((tmp_path / "model" / "retrain_summary.json").read_text())
    assert metrics["top1"] == pytest.approx(summary["final_test_top1"])  # same weights, same test split
    lines = (tmp_path / "eval" / "confusion_matrix.csv").read_text().splitlines()
    assert len(lines) == 5 and lines[0].startswith("true\\predicted,class_0")


def test_evaluate_refuses_a_dataset_with_another_class_count(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    run_retrain(tiny_config, tiny_dataset, GENOTYPE, tmp_path / "model")
    other = run_data_prep(
        DataConfig(source="synthetic", image_size=8, num_classes=5, num_train=40, num_test=10), 0, tmp_path / "other"
    )
    with pytest.raises(DataError, match="predicts 4 classes but the dataset has 5"):
        run_evaluate(tiny_config, other.root, tmp_path / "model", tmp_path / "eval")
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_corrupt_model_file_is_refused(tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        run_evaluate(tiny_config, tiny_dataset, tmp_path / "model.pt", tmp_path / "eval")
