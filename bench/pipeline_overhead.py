"""Overhead of running the stages as a pipeline: a local ``cdarts-search`` run on a config (kfp.local
SubprocessRunner: one process per task, artifacts copied between tasks, the pipeline compiled)
against the same runners called one after the other in one process.

Reports both wall times, the overhead in seconds and as a fraction of the runners' time, and the
per-stage times of both. The pipeline runs in a subprocess (`cdarts run`), as a user runs it.

    python bench/pipeline_overhead.py --config tiny --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import machine

from cdarts.config import ExperimentConfig, load_config
from cdarts.devices import resolve_device
from cdarts.runners.data_prep import run_data_prep
from cdarts.runners.derive_genotype import run_derive_genotype
from cdarts.runners.evaluate import run_evaluate
from cdarts.runners.retrain import run_retrain
from cdarts.runners.search import run_search


def runners_in_one_process(config: ExperimentConfig, workdir: Path) -> dict[str, float]:
    """Seconds of each runner of the search pipeline, called directly in this process."""
    seconds: dict[str, float] = {}

    def timed(stage: str, call: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = call()
        seconds[stage] = time.perf_counter() - start
        return result

    data, search, genotype, model = (workdir / name for name in ("data", "search", "genotype", "model"))
    timed("data-prep", lambda: run_data_prep(config.data, config.seed, data))
    searched = timed("search", lambda: run_search(config, data, search))
    derived = timed("derive-genotype", lambda: run_derive_genotype(searched.alphas_path, genotype))
    timed("retrain", lambda: run_retrain(config, data, derived.genotype, model))
    timed("evaluate", lambda: run_evaluate(config, data, model, workdir / "evaluation"))
    return seconds


def pipeline_run(config: str, runs_root: Path) -> tuple[float, dict[str, Any]]:
    """Wall seconds of ``cdarts run`` and its summary."""
    cdarts = Path(sys.executable).parent / "cdarts"
    command = [str(cdarts), "run", "--config", config, "--runs-root", str(runs_root), "--no-progress"]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"cdarts run failed:\n{completed.stderr[-2000:]}")
    run_dir = Path(completed.stdout.strip().splitlines()[-1])
    return wall, json.loads((run_dir / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    config = load_config(args.config)
    if config.tracking.enabled:
        raise SystemExit("use a config without tracking (tiny): tracking would be timed in one run only")

    with tempfile.TemporaryDirectory(prefix="cdarts-overhead-") as scratch:
        start = time.perf_counter()
        runner_seconds = runners_in_one_process(config, Path(scratch) / "direct")
        direct_wall = time.perf_counter() - start
        pipeline_wall, summary = pipeline_run(args.config, Path(scratch) / "runs")

    runners_total = sum(runner_seconds.values())
    overhead = pipeline_wall - runners_total
    report = {
        "benchmark": "pipeline_overhead",
        **machine(resolve_device(config.device)),
        "config": args.config,
        "pipeline_wall_seconds": pipeline_wall,
        "runners_total_seconds": runners_total,
        "runners_wall_seconds": direct_wall,
        "overhead_seconds": overhead,
        "overhead_fraction_of_runners": overhead / runners_total,
        "runner_seconds": runner_seconds,
        "pipeline_stage_seconds": summary.get("stage_seconds", {}),
    }
    print(
        f"pipeline {pipeline_wall:.1f} s vs runners {runners_total:.1f} s: overhead {overhead:.1f} s "
        f"({overhead / runners_total:.0%} of the runners' time)"
    )
    for stage, seconds in runner_seconds.items():
        in_pipeline = report["pipeline_stage_seconds"].get(stage)
        shown = f"{in_pipeline:.1f} s" if isinstance(in_pipeline, int | float) else "-"
        print(f"  {stage:16s} runner {seconds:6.1f} s   pipeline task {shown}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
