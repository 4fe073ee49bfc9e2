"""Divergence is an error (issue 17): a non-finite loss term or non-finite weights stop the search
or the retrain with one line naming the step and the term; nothing is marked complete, no
checkpoint holds the non-finite weights, and a diverged model is neither evaluated nor registered."""

from __future__ import annotations

import json
import math
import multiprocessing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from cdarts.checkpoint import load_checkpoint, save_checkpoint
from cdarts.cli.main import app
from cdarts.config import ExperimentConfig, load_config
from cdarts.divergence import LossWatch
from cdarts.errors import TrainingDivergedError
from cdarts.runners import retrain as retrain_runner
from cdarts.runners.evaluate import METRICS_NAME, run_evaluate
from cdarts.runners.register import REGISTRATION_NAME, run_register
from cdarts.runners.retrain import CHECKPOINT_NAME as RETRAIN_CHECKPOINT
from cdarts.runners.retrain import SUMMARY_NAME, run_retrain
from cdarts.runners.search import CHECKPOINT_NAME as SEARCH_CHECKPOINT
from cdarts.runners.search import run_search
from cdarts.search import steps
from cdarts.spaces.darts.parser import reference_genotype
from tests.conftest import CONFIGS
from tests.divergence_worker import check_on_rank

TINY = str(CONFIGS / "tiny.yaml")
GENOTYPE = reference_genotype("CDARTS_CIFAR")
runner = CliRunner()

# Learning rates the config accepts that blow the tiny network up within a few steps: with weight
# decay 1 every SGD step multiplies the weights by about -(lr - 1).
ABSURD_SEARCH = ["search.weight_lr=100", "search.weight_decay=1", "search.grad_clip=1e6"]
ABSURD_RETRAIN = ["retrain.weight_lr=100", "retrain.weight_decay=1", "retrain.grad_clip=1e6"]

# The tiny search: 2 steps per epoch; S warm-up = steps 1-2; cycle 1 = E warm-up 3-4 and joint
# 5-6 (checkpoint); cycle 2 = E warm-up 7-8 and joint 9-10. The tiny retrain: 4 steps per epoch.


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)


def _assert_finite_checkpoint(path: Path) -> dict[str, Any]:
    state = load_checkpoint(path)
    floats = [t for t in _tensors(state) if t.is_floating_point()]
    assert floats and all(bool(torch.isfinite(t).all()) for t in floats)
    return state


def _assert_search_not_complete(out: Path) -> None:
    assert not (out / "genotype.json").exists()
    assert not (out / "alphas.pt").exists()
    log = out / "metrics.jsonl"
    assert not log.exists() or "NaN" not in log.read_text()  # the bad epoch is not logged


def _nan_on_call(function: Any, call: int) -> Any:
    """``function`` returning NaN on its ``call``-th call (still in the graph: the gradients are NaN too)."""
    calls = 0

    def wrapped(*args: Any, **kwargs: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        result = function(*args, **kwargs)
        return result * math.nan if calls == call else result

    return wrapped


# -- search ------------------------------------------------------------------------------------


def test_nan_distillation_term_stops_the_joint_step_and_resume_from_the_last_checkpoint_works(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "diverged"
    # The 4th joint step is the 2nd of cycle 2 (global step 10).
    monkeypatch.setattr(steps, "distillation_loss", _nan_on_call(steps.distillation_loss, 4))
    with pytest.raises(TrainingDivergedError) as caught:
        run_search(tiny_config, tiny_dataset, out)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("search diverged at step 10 (cycle 2/2: joint, iteration 2): loss terms ")
    # The injected term comes first; the sum and S's step (on NaN alphas) follow from it.
    assert "search/loss_distill, search/loss_arch, search/loss_weight are nan" in message
    assert "search/loss_cls" not in message and "lower search.weight_lr" in message
    _assert_search_not_complete(out)
    assert (out / "genotypes" / "cycle_000.json").exists() and not (out / "genotypes" / "cycle_001.json").exists()
    state = _assert_finite_checkpoint(out / SEARCH_CHECKPOINT)
    assert state["next_iteration"] == 2 and state["global_step"] == 6  # after cycle 1

    monkeypatch.undo()
    resumed = run_search(tiny_config, tiny_dataset, out)
    straight = run_search(tiny_config, tiny_dataset, tmp_path / "straight")
    assert resumed.completed and (out / "genotype.json").is_file()
    assert resumed.genotype == straight.genotype
    assert all(torch.equal(resumed.alphas[k], straight.alphas[k]) for k in straight.alphas)


@pytest.mark.parametrize(
    ("call", "expected", "checkpointed_iterations"),
    [
        (2, "search diverged at step 2 (S warm-up 1/1, iteration 2): loss term warmup_search/loss is nan", None),
        (4, "search diverged at step 4 (cycle 1/2: E warm-up, iteration 2): loss term warmup_eval/loss is nan", 1),
    ],
    ids=["S-warm-up", "E-warm-up"],
)
def test_a_nan_batch_in_a_warm_up_stops_the_search(
    call: int,
    expected: str,
    checkpointed_iterations: int | None,
    tiny_config: ExperimentConfig,
    tiny_dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = steps.SearchStepper.warmup_step
    calls = 0

    def poisoned(self: steps.SearchStepper, batch: steps.Batch, *args: Any) -> dict[str, torch.Tensor]:
        nonlocal calls
        calls += 1
        if calls == call:
            batch = (torch.full_like(batch[0], math.nan), batch[1])
        return real(self, batch, *args)

    monkeypatch.setattr(steps.SearchStepper, "warmup_step", poisoned)
    with pytest.raises(TrainingDivergedError) as caught:
        run_search(tiny_config, tiny_dataset, tmp_path)
    assert str(caught.value).startswith(expected + "; lower search.")
    _assert_search_not_complete(tmp_path)
    if checkpointed_iterations is None:
        assert not (tmp_path / SEARCH_CHECKPOINT).exists()
    else:
        assert _assert_finite_checkpoint(tmp_path / SEARCH_CHECKPOINT)["next_iteration"] == checkpointed_iterations


def test_an_absurd_learning_rate_fails_the_search_stage_in_one_line(tiny_dataset: Path, tmp_path: Path) -> None:
    overrides = [arg for item in ABSURD_SEARCH for arg in ("--set", item)]
    result = runner.invoke(
        app, ["stage", "search", "-c", TINY, "-d", str(tiny_dataset), *overrides, "-o", str(tmp_path), "--no-progress"]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    # The weights overflow (BatchNorm statistics first) before any loss term does.
    assert lines[0].startswith("cdarts: error: search diverged by step ")
    assert " is not finite; lower search.weight_lr" in lines[0]
    _assert_search_not_complete(tmp_path)
    if (tmp_path / SEARCH_CHECKPOINT).exists():
        _assert_finite_checkpoint(tmp_path / SEARCH_CHECKPOINT)


# -- retrain -----------------------------------------------------------------------------------


def test_a_nan_batch_stops_the_retrain_and_resume_from_the_last_checkpoint_works(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = retrain_runner.train_one_epoch
    epochs = 0

    def poisoned(model: torch.nn.Module, batches: Iterable[steps.Batch], *args: Any, **kwargs: Any) -> Any:
        nonlocal epochs
        epochs += 1

        def batches_with_nan() -> Iterator[steps.Batch]:
            for index, (images, labels) in enumerate(batches):
                yield (torch.full_like(images, math.nan) if (epochs, index) == (2, 1) else images), labels

        return real(model, batches_with_nan(), *args, **kwargs)

    out = tmp_path / "diverged"
    monkeypatch.setattr(retrain_runner, "train_one_epoch", poisoned)
    with pytest.raises(TrainingDivergedError) as caught:
        run_retrain(tiny_config, tiny_dataset, GENOTYPE, out)
    assert str(caught.value).startswith("retrain diverged at step 6 (epoch 2/2, iteration 2): loss terms loss, ")
    assert " are nan; lower retrain.weight_lr or retrain.grad_clip" in str(caught.value)
    assert not (out / "model.pt").exists() and not (out / SUMMARY_NAME).exists()
    assert _assert_finite_checkpoint(out / RETRAIN_CHECKPOINT)["next_epoch"] == 1

    monkeypatch.undo()
    resumed = run_retrain(tiny_config, tiny_dataset, GENOTYPE, out)
    straight = run_retrain(tiny_config, tiny_dataset, GENOTYPE, tmp_path / "straight")
    assert resumed.completed and (out / SUMMARY_NAME).is_file()
    assert resumed.summary == straight.summary


def test_an_absurd_learning_rate_fails_the_retrain_stage_in_one_line(tiny_dataset: Path, tmp_path: Path) -> None:
    overrides = [arg for item in ABSURD_RETRAIN for arg in ("--set", item)]
    args = ["stage", "retrain", "-c", TINY, "-d", str(tiny_dataset), "-g", "CDARTS_CIFAR", *overrides]
    result = runner.invoke(app, [*args, "-o", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("cdarts: error: retrain diverged by step 4 (end of epoch 1/2): ")
    assert lines[0].endswith(
        "is not finite; lower retrain.weight_lr or retrain.grad_clip (these weights are not checkpointed)"
    )
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / SUMMARY_NAME).exists()
    assert not (tmp_path / RETRAIN_CHECKPOINT).exists()  # the first epoch already diverged


# -- evaluate and register ---------------------------------------------------------------------


def test_evaluate_refuses_a_model_whose_test_loss_is_not_finite(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    run_retrain(tiny_config, tiny_dataset, GENOTYPE, tmp_path / "model")
    model_file = tmp_path / "model" / "model.pt"
    state = load_checkpoint(model_file)
    # Finite weights (a model file with NaN weights is refused on load) whose activations
    # overflow: the stem's sums of 27 products near float max are +-inf, and the first conv that
    # mixes them makes NaN. (Overflowing only the classifier depends on the trained features.)
    state["state_dict"]["stem.conv.0.weight"].fill_(3e38)
    save_checkpoint(state, model_file)
    with pytest.raises(TrainingDivergedError, match=r"^the test loss of .*model is nan: the model's weights diverged"):
        run_evaluate(tiny_config, tiny_dataset, tmp_path / "model", tmp_path / "eval")
    assert not (tmp_path / "eval" / METRICS_NAME).exists()


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [("top1", math.nan, "nan"), ("loss", math.inf, "inf"), ("top5", None, "None"), ("top1", "0.9", "'0.9'")],
)
def test_register_refuses_non_finite_evaluation_metrics(
    key: str, value: object, shown: str, tiny_config: ExperimentConfig, tmp_path: Path
) -> None:
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    metrics = {"top1": 0.5, "top5": 1.0, "loss": 1.2, "same_dataset_as_training": True, "dataset_digest": "d"}
    (evaluation / METRICS_NAME).write_text(json.dumps({**metrics, key: value}))  # json writes NaN / Infinity
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "logged_model.json").write_text(json.dumps({"model_id": "m-1", "run_id": "r-1"}))
    with pytest.raises(TrainingDivergedError, match=f"{key} is {shown}, not a finite number; a diverged model"):
        run_register(tiny_config, tmp_path / "model", evaluation, "http://127.0.0.1:9", tmp_path / "out")
    assert not (tmp_path / "out" / REGISTRATION_NAME).exists()


# -- the checks themselves ---------------------------------------------------------------------


def test_loss_watch_names_the_first_bad_step_and_only_decides_on_the_host_values() -> None:
    watch = LossWatch("search", "cycle 1/2: joint", 11, "lower it")
    watch.observe({"a/loss_x": torch.tensor(1.0), "a/top1": torch.tensor(math.nan)})  # accuracies are ignored
    watch.observe({"a/loss_x": torch.tensor(math.inf), "a/loss_y": torch.tensor(math.nan)})
    watch.observe({"a/loss_x": torch.tensor(math.nan), "a/loss_y": torch.tensor(math.nan)})
    watch.check({"a/loss_x": 2.0, "a/top1_epoch": math.nan})  # finite loss values: no decision
    with pytest.raises(
        TrainingDivergedError,
        match=r"^search diverged at step 12 \(cycle 1/2: joint, iteration 2\): "
        r"loss terms a/loss_x \(inf\), a/loss_y \(nan\); lower it$",
    ):
        watch.check({"a/loss_x_epoch": math.nan})


def test_loss_watch_reports_a_divergence_seen_only_by_another_process() -> None:
    watch = LossWatch("retrain", "epoch 3/5", 9, "lower it")
    watch.observe({"loss": torch.tensor(0.5)})
    watch.observe({"loss": torch.tensor(0.4)})
    with pytest.raises(
        TrainingDivergedError, match=r"^retrain diverged by step 10 \(epoch 3/5\): loss term loss is inf"
    ):
        watch.check({"loss": math.inf, "top1": 0.3})  # the all-reduced mean of every process


def test_every_process_stops_when_one_holds_non_finite_weights(tmp_path: Path) -> None:
    """Rank 1 alone holds an inf: both ranks raise (no rank waits for the other in a collective)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=check_on_rank, args=(rank, str(tmp_path / "init"), results)) for rank in (0, 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert all(worker.exitcode == 0 for worker in workers)
    outcome = dict(results.get(timeout=5) for _ in workers)
    assert outcome[0] == "search diverged by step 3: the weights are not finite on another process; lower it " + (
        "(these weights are not checkpointed)"
    )
    assert outcome[1].startswith("search diverged by step 3: w is not finite; lower it")


def test_the_absurd_values_are_accepted_by_the_config() -> None:
    """The divergence cases above rely on values the config accepts (not refused at the edge)."""
    assert load_config(TINY, ABSURD_SEARCH).search.weight_lr == 100
    assert load_config(TINY, ABSURD_RETRAIN).retrain.weight_decay == 1
