"""The cyclic search end to end on the tiny config: outputs, determinism, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cdarts.alphas_file import load_alphas
from cdarts.checkpoint import load_checkpoint
from cdarts.config import ExperimentConfig
from cdarts.errors import CheckpointError
from cdarts.runners.data_prep import run_data_prep
from cdarts.runners.search import CHECKPOINT_NAME, run_search
from cdarts.spaces.darts.architecture import Genotype


def _alphas(out_dir: Path) -> dict[str, torch.Tensor]:
    return load_alphas(out_dir / "alphas.pt").alphas


def test_search_writes_genotypes_alphas_metrics_and_checkpoint(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    result = run_search(tiny_config, tiny_dataset, tmp_path)
    assert result.completed and result.cycles_completed == tiny_config.search.num_cycles
    genotype = Genotype.from_dict(json.loads((tmp_path / "genotype.json").read_text()))
    assert genotype == result.genotype
    cycle_files = sorted((tmp_path / "genotypes").glob("cycle_*.json"))
    assert [p.name for p in cycle_files] == ["cycle_000.json", "cycle_001.json"]
    last = json.loads(cycle_files[-1].read_text())
    assert Genotype.from_dict(last["genotype"]) == genotype
    probs = torch.tensor(last["alpha_probs"]["normal"])
    assert probs.shape == (14, 8) and torch.allclose(probs.sum(-1), torch.ones(14))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*records)
    assert {
        "search/loss_cls_epoch",
        "search/loss_distill_epoch",
        "search/loss_reg_epoch",
        "search/loss_weight_epoch",
        "search/top1_search_epoch",
        "search/top1_eval_epoch",
        "warmup_search/loss_epoch",
        "warmup_eval/loss_epoch",
    } <= keys
    steps = [r["step"] for r in records]
    assert steps == sorted(steps)
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert state["next_iteration"] == tiny_config.search.search_iterations
    assert not any(k.startswith("eval_network.") for k in state["model"])


def test_same_seed_gives_identical_alphas(tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path) -> None:
    run_search(tiny_config, tiny_dataset, tmp_path / "a")
    run_search(tiny_config, tiny_dataset, tmp_path / "b")
    other = tiny_config.model_copy(update={"seed": 1})
    run_search(other, tiny_dataset, tmp_path / "c")
    a, b, c = _alphas(tmp_path / "a"), _alphas(tmp_path / "b"), _alphas(tmp_path / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["alphas_normal"], c["alphas_normal"])


@pytest.mark.parametrize("stop_after", [1, 2])
def test_interrupted_and_resumed_search_equals_an_uninterrupted_one(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path, stop_after: int
) -> None:
    config = tiny_config.model_copy(update={"search": tiny_config.search.model_copy(update={"search_iterations": 4})})
    run_search(config, tiny_dataset, tmp_path / "straight")
    partial = run_search(config, tiny_dataset, tmp_path / "resumed", max_iterations=stop_after)
    assert not partial.completed
    # Nothing is marked complete before the search has finished.
    assert not (tmp_path / "resumed" / "genotype.json").exists()
    assert not (tmp_path / "resumed" / "alphas.pt").exists()
    resumed = run_search(config, tiny_dataset, tmp_path / "resumed")
    assert resumed.completed
    straight, again = _alphas(tmp_path / "straight"), _alphas(tmp_path / "resumed")
    assert all(torch.equal(straight[k], again[k]) for k in straight)
    state_a = load_checkpoint(tmp_path / "straight" / CHECKPOINT_NAME)["model"]
    state_b = load_checkpoint(tmp_path / "resumed" / CHECKPOINT_NAME)["model"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)  # pool and S weights too


def test_resume_with_a_different_config_is_refused(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    run_search(tiny_config, tiny_dataset, tmp_path, max_iterations=1)
    changed = tiny_config.model_copy(update={"seed": 5})
    with pytest.raises(CheckpointError, match="different config"):
        run_search(changed, tiny_dataset, tmp_path)


def test_corrupt_checkpoint_is_reported(tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_NAME
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        run_search(tiny_config, tiny_dataset, tmp_path)


def test_search_accuracy_rises_above_chance(tiny_config: ExperimentConfig, tmp_path: Path) -> None:
    # Synthetic classes are separable: a few epochs must beat the 25 % chance level clearly.
    config = tiny_config.model_copy(
        update={
            "data": tiny_config.data.model_copy(update={"num_train": 160}),
            "search": tiny_config.search.model_copy(
                update={"search_iterations": 4, "sample_ratio": 1.0, "batch_size": 16}
            ),
        }
    )
    dataset = run_data_prep(config.data, config.seed, tmp_path / "data")
    run_search(config, dataset.root, tmp_path / "search")
    records = [json.loads(line) for line in (tmp_path / "search" / "metrics.jsonl").read_text().splitlines()]
    last_joint = [r for r in records if "search/top1_eval_epoch" in r][-1]
    assert last_joint["search/top1_search_epoch"] > 0.5
    assert last_joint["search/top1_eval_epoch"] > 0.5


def test_resume_on_a_different_dataset_is_refused(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    run_search(tiny_config, tiny_dataset, tmp_path / "search", max_iterations=1)
    other = run_data_prep(tiny_config.data, tiny_config.seed + 1, tmp_path / "other")  # another split
    with pytest.raises(CheckpointError, match="different dataset"):
        run_search(tiny_config, other.root, tmp_path / "search")


@pytest.mark.slow
def test_search_killed_mid_cycle_resumes_to_the_same_alphas(
    tiny_config: ExperimentConfig, tiny_dataset: Path, tmp_path: Path
) -> None:
    """SIGKILL while a cycle is running, restart the same command, compare with a clean run."""
    import signal
    import subprocess
    import sys
    import time

    config_path = tmp_path / "slow.yaml"
    slow = tiny_config.model_copy(
        update={"search": tiny_config.search.model_copy(update={"search_iterations": 5, "sample_ratio": 1.0})}
    )
    config_path.write_text(slow.to_yaml())

    def command(out: str) -> list[str]:
        cdarts = str(Path(sys.executable).parent / "cdarts")
        return [
            cdarts,
            "stage",
            "search",
            "-c",
            str(config_path),
            "-d",
            str(tiny_dataset),
            "-o",
            str(tmp_path / out),
            "--no-progress",
        ]

    # Both runs in fresh processes with the same thread count (reductions are only bitwise
    # repeatable for a fixed number of threads).
    assert subprocess.run(command("straight"), capture_output=True, timeout=300).returncode == 0
    process = subprocess.Popen(command("killed"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = tmp_path / "killed" / CHECKPOINT_NAME
    deadline = time.monotonic() + 240
    # Wait for the checkpoint after the first cycle, then kill during the next one.
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.exists() and load_checkpoint(checkpoint)["next_iteration"] >= 2:
            break
        time.sleep(0.2)
    time.sleep(0.5)
    assert process.poll() is None, "the search finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "genotype.json").exists()
    resumed = subprocess.run(command("killed"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    straight, again = _alphas(tmp_path / "straight"), _alphas(tmp_path / "killed")
    assert all(torch.equal(straight[k], again[k]) for k in straight)
