"""Run a pipeline on this machine with ``kfp.local`` (no cluster, no services).

Every task runs as a subprocess of this Python (``SubprocessRunner(use_venv=False)``), with its
artifacts under ``<run_dir>/artifacts``. The tasks' own output goes to ``<run_dir>/pipeline.log``;
the terminal shows one line per stage. At the end a ``summary.json`` is written to the run
directory.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from kfp import local

from pipelines.options import PipelineOptions
from pipelines.registry import build_pipeline

StageCallback = Callable[[str, str, float], None]
"""(task name, "running" | "done", seconds since the run started)."""
STAGE_LABELS = {"running": "started", "done": "finished"}

# Display order of the tasks; kfp.local names task directories after the components.
STAGE_ORDER = (
    "data-prep",
    "import-genotype",
    "search",
    "derive-genotype",
    "retrain",
    "evaluate",
    "register",
    "random-baselines",
    "compare-baselines",
)
# The stages of each pipeline; one absent from a finished run's directory was served from the cache.
PIPELINE_STAGES = {
    "search": ("data-prep", "search", "derive-genotype", "retrain", "evaluate", "register"),
    "retrain": ("data-prep", "import-genotype", "retrain", "evaluate", "register"),
}


class LocalRunError(Exception):
    """A task of the local pipeline run failed."""


# One machine: every baseline's retrain already uses all its CPUs (and its own memory), so running
# them at once would only oversubscribe; they run one after another.
LOCAL_OPTIONS = PipelineOptions(baseline_parallelism=1)


def new_run_dir(root: Path) -> Path:
    return root / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


@contextmanager
def _output_to(log_path: Path) -> Iterator[int]:
    """Send this process's and its children's output to ``log_path``; yields a duplicate of the
    original stderr descriptor for the live display.

    kfp.local prints through ``sys.stdout`` (its log handler and the tasks' piped output), so the
    Python-level streams are redirected as well as descriptors 1 and 2.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.dup(2)
    with log_path.open("a", buffering=1, encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield terminal
        finally:
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            for fd in (saved_out, saved_err, terminal):
                os.close(fd)


def _watch(artifacts: Path, on_stage: StageCallback, stop: threading.Event, start: float) -> None:
    """Poll the artifact tree: a task directory appears when a task starts, its
    executor_output.json when it ends."""
    seen: dict[str, str] = {}
    while not stop.is_set():
        for task_dir in sorted(artifacts.glob("*/*")):
            name = task_dir.name
            state = "done" if (task_dir / "executor_output.json").exists() else "running"
            if task_dir.is_dir() and seen.get(name) != state:
                seen[name] = state
                on_stage(name, state, time.perf_counter() - start)
        stop.wait(0.5)


def _task_outputs(run_root: Path) -> dict[str, dict[str, Any]]:
    """Per task: each output artifact's ``uri`` and ``metadata`` (from executor_output.json)."""
    outputs: dict[str, dict[str, Any]] = {}
    for executor_output in run_root.glob("*/executor_output.json"):
        data = json.loads(executor_output.read_text())
        outputs[executor_output.parent.name] = {
            name: entry["artifacts"][0] for name, entry in data.get("artifacts", {}).items()
        }
    return outputs


def _baseline_summary(run_root: Path, outputs: dict[str, dict[str, Any]]) -> tuple[dict[str, Any] | None, float]:
    """The comparison with random baselines (None without one) and the seconds of the baselines'
    own tasks (import, retrain, evaluate of every loop iteration, as if run one after another)."""
    if "compare-baselines" not in outputs:
        return None, 0.0
    seconds = 0.0
    for executor_output in run_root.glob("for-loop-*-iteration-*/*/executor_output.json"):
        for entry in json.loads(executor_output.read_text()).get("artifacts", {}).values():
            seconds += float(entry["artifacts"][0].get("metadata", {}).get("seconds", 0.0))
    comparison_dir = Path(outputs["compare-baselines"]["comparison"]["uri"])
    comparison = json.loads((comparison_dir / "comparison.json").read_text())
    summary = {
        key: comparison[key] for key in ("rank", "random_count", "random_mean_top1", "random_std_top1", "gap_in_std")
    }
    summary["report"] = str(comparison_dir / "comparison.md")
    return summary, seconds


def summarize_run(run_dir: Path, pipeline: str = "search") -> dict[str, Any]:
    """The run's summary from its artifacts (keys: genotype, top1, top5, params, ...)."""
    run_roots = sorted((run_dir / "artifacts").glob("*"))
    if not run_roots:
        raise LocalRunError(f"no pipeline output under {run_dir / 'artifacts'}")
    outputs = _task_outputs(run_roots[-1])
    evaluation = outputs["evaluate"]["evaluation"]
    metrics = json.loads((Path(evaluation["uri"]) / "metrics.json").read_text())
    genotype_dir = None  # a genotype step served from the cache left nothing in this run
    for task in ("derive-genotype", "import-genotype"):
        if task in outputs:
            genotype_dir = Path(outputs[task]["genotype"]["uri"])
    stage_seconds = {  # the stages (the exit task that closes the MLflow run has no artifacts)
        task: round(float(max(a["metadata"].get("seconds", 0.0) for a in artifacts.values())), 2)
        for task, artifacts in outputs.items()
        if artifacts
    }
    baselines, baseline_seconds = _baseline_summary(run_roots[-1], outputs)
    if baselines is not None:
        stage_seconds["random-baselines"] = round(baseline_seconds, 2)
    registration_dir = Path(outputs["register"]["registration"]["uri"]) if "register" in outputs else None
    registration = (
        json.loads((registration_dir / "registration.json").read_text())
        if registration_dir is not None and (registration_dir / "registration.json").is_file()
        else {}
    )
    return {
        "genotype": metrics["genotype"],
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "params": metrics["params"],
        "params_without_aux": metrics["params_without_aux"],
        "multiply_adds": metrics["multiply_adds"],
        "stage_seconds": dict(sorted(stage_seconds.items(), key=lambda kv: STAGE_ORDER.index(kv[0]))),
        "artifacts": {
            f"{task}/{name}": artifact["uri"]
            for task, artifacts in sorted(outputs.items())
            for name, artifact in sorted(artifacts.items())
        },
        # normal.svg + reduce.svg (DARTS cells), cell.svg (NAS-Bench-201) or layers.svg (chain)
        "cell_diagrams": [str(path) for path in sorted(genotype_dir.glob("*.svg"))] if genotype_dir else [],
        "dataset_digest": metrics.get("dataset_digest"),
        "cached_tasks": [task for task in PIPELINE_STAGES[pipeline] if task not in outputs],
        "registered_model": (
            {key: registration[key] for key in ("name", "version", "aliases", "decision")}
            if "version" in registration
            else None
        ),
        "random_baselines": baselines,
        "run_dir": str(run_dir),
    }


def run_locally(
    pipeline: str,
    arguments: dict[str, Any],
    run_dir: Path,
    show_progress: bool = True,
    extra_summary: dict[str, Any] | None = None,
    cache_root: Path | None = None,
) -> dict[str, Any]:
    """Run ``pipeline`` (``search`` or ``retrain``) with ``arguments``; returns the summary.

    With ``show_progress`` a line per stage start and finish goes to the terminal (stderr). With
    ``cache_root`` kfp.local's task cache is on there: a cacheable task (data_prep, the genotype
    steps) whose inputs equal an earlier run's is not run again; its outputs are that run's, and
    the summary lists it under ``cached_tasks``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    artifacts = run_dir / "artifacts"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(artifacts),
        raise_on_error=True,
        enable_caching=cache_root is not None,
        cache_root=str(cache_root) if cache_root is not None else None,
    )
    pipeline_func = build_pipeline(pipeline, LOCAL_OPTIONS)
    stop = threading.Event()
    start = time.perf_counter()
    failure: BaseException | None = None
    with _output_to(run_dir / "pipeline.log") as terminal_fd, os.fdopen(os.dup(terminal_fd), "w") as terminal:

        def on_stage(name: str, state: str, seconds: float) -> None:
            if show_progress:
                terminal.write(f"[{seconds:7.1f} s] {name}: {STAGE_LABELS[state]}\n")
                terminal.flush()

        watcher = threading.Thread(target=_watch, args=(artifacts, on_stage, stop, start), daemon=True)
        watcher.start()
        # kfp.local indents task logs by swapping builtins.print for the task's duration; tasks of a
        # ParallelFor run in threads, so overlapping swaps can leave an indenting print installed
        # for good (every later print in this process would start with four spaces).
        original_print = builtins.print
        try:
            pipeline_func(**arguments)
        except Exception as error:  # kfp.local raises RuntimeError naming the failed task
            failure = error
        finally:
            builtins.print = original_print
            stop.set()
            watcher.join()
    if failure is not None:
        raise LocalRunError(f"{str(failure).splitlines()[0]} (task logs: {run_dir / 'pipeline.log'})") from None
    summary = summarize_run(run_dir, pipeline)
    summary["wall_seconds"] = round(time.perf_counter() - start, 2)
    summary.update(extra_summary or {})
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
