"""Data-parallel search and retrain on several processes of one node (torchrun + gloo on CPU),
through the same entry points the pipeline tasks use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdarts.config import load_config
from cdarts.errors import CdartsError
from cdarts.runners.launch import load_search_result, run_retrain_stage, run_search_stage, torchrun_command
from cdarts.spaces.darts.parser import reference_genotype
from tests.conftest import CONFIGS


def test_the_launch_command_runs_this_interpreters_torchrun_on_the_cdarts_module() -> None:
    command = torchrun_command(4, ["stage", "search"])
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m"]
    assert command[6:] == ["cdarts", "stage", "search"]


@pytest.mark.slow
def test_two_process_search_returns_what_rank_0_wrote(tmp_path: Path, tiny_dataset: Path) -> None:
    config = load_config(str(CONFIGS / "tiny.yaml"))
    result = run_search_stage(config, tiny_dataset, tmp_path / "search", processes=2)
    assert result.completed and result.genotype_path is not None
    assert json.loads(result.genotype_path.read_text()) == result.genotype.to_dict()
    assert result.cycles_completed == config.search.num_cycles and result.final_metrics
    assert set(result.alphas) == {"alphas_normal", "alphas_reduce"}
    assert load_search_result(tmp_path / "search").genotype == result.genotype


@pytest.mark.slow
def test_two_process_retrain_keeps_ranks_identical_and_resumes(tmp_path: Path, tiny_dataset: Path) -> None:
    config = load_config(str(CONFIGS / "tiny.yaml"), ["retrain.epochs=2"])
    out = tmp_path / "retrain"
    # Each epoch checks that the weights of both processes are equal (gradients averaged).
    result = run_retrain_stage(config, tiny_dataset, reference_genotype("DARTS_V2"), out, processes=2)
    assert result.completed and result.model_path is not None and result.model_path.is_file()
    assert result.summary["epochs"] == 2 and 0.0 <= result.summary["final_test_top1"] <= 1.0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert sum('"retrain/test_top1"' in line for line in lines) == 2  # rank 0 logged, once per epoch
    # A finished retrain is not trained again: the launch returns the recorded result.
    again = run_retrain_stage(config, tiny_dataset, reference_genotype("DARTS_V2"), out, processes=2)
    assert again.summary == result.summary


def test_failed_processes_are_one_clear_error(tmp_path: Path) -> None:
    config = load_config(str(CONFIGS / "tiny.yaml"))
    with pytest.raises(CdartsError, match="the 2 search processes failed"):
        run_search_stage(config, tmp_path / "no-such-dataset", tmp_path / "search", processes=2)
