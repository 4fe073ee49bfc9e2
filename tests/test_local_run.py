"""``run_locally``: what it hands kfp.local and what it leaves behind, without running a pipeline."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest
import yaml

import pipelines.local_run as local_run
from pipelines.compile import compile_pipeline
from pipelines.options import PipelineOptions


def test_a_local_run_leaves_print_as_it_found_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kfp.local's overlapping print swaps under a ParallelFor can leave an indenting print
    installed; a later one-line error would then start with spaces. Simulated here: the race
    itself cannot be forced."""
    original_print = builtins.print

    def leaky_pipeline(**_: Any) -> None:
        builtins.print = lambda *args, **kwargs: original_print("    ", *args, **kwargs)
        raise RuntimeError("Task 'search' finished with status FAILURE")

    monkeypatch.setattr(local_run, "build_pipeline", lambda name, options: leaky_pipeline)
    with pytest.raises(local_run.LocalRunError, match="Task 'search'"):
        local_run.run_locally("search", {}, tmp_path / "run", show_progress=False)
    assert builtins.print is original_print


def test_a_local_run_trains_its_random_baselines_one_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On one machine each baseline's retrain uses every CPU: kfp.local gets a ParallelFor of one."""
    built: list[PipelineOptions] = []

    def capture(name: str, options: PipelineOptions) -> Any:
        built.append(options)

        def stopped(**_: Any) -> None:  # the options are what matters here, not a run
            raise RuntimeError("Task 'search' finished with status FAILURE")

        return stopped

    monkeypatch.setattr(local_run, "build_pipeline", capture)
    with pytest.raises(local_run.LocalRunError):
        local_run.run_locally("search", {}, tmp_path / "run", show_progress=False)
    assert [options.baseline_parallelism for options in built] == [1]
    out = tmp_path / "local.yaml"
    compile_pipeline("search", out, built[0])
    components = next(yaml.safe_load_all(out.read_text()))["components"]
    loops = [c["dag"]["tasks"][t] for c in components.values() if "dag" in c for t in c["dag"]["tasks"]]
    assert [t["iteratorPolicy"] for t in loops if t.get("iteratorPolicy")] == [{"parallelismLimit": 1}]
