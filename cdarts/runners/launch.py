"""Run the search or the retrain stage on one process or, data-parallel, on several of one node.

With ``processes > 1`` the stage's own CLI command (``cdarts stage search|retrain``) is started
under ``torchrun --standalone`` (one process per GPU on CUDA, gloo processes on CPU) and the
result is read back from the files rank 0 wrote; with one process the runner is called directly.
Either way the caller gets the same result object, so a pipeline task only chooses the count.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cdarts.alphas_file import load_alphas
from cdarts.architecture import Architecture, read_architecture_file
from cdarts.config import ExperimentConfig
from cdarts.errors import CdartsError
from cdarts.model_file import MODEL_FILE
from cdarts.runners.retrain import SUMMARY_NAME, RetrainResult, run_retrain
from cdarts.runners.search import SearchRunResult, run_search
from cdarts.runners.tracked_stage import tracked_stage


class LaunchError(CdartsError):
    """The processes of a multi-process stage failed."""


def torchrun_command(processes: int, cdarts_arguments: list[str]) -> list[str]:
    """``torchrun --standalone --nproc-per-node=N -m cdarts ARGS`` with this interpreter."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "cdarts",
        *cdarts_arguments,
    ]


def _run_processes(processes: int, stage: str, arguments: list[str]) -> None:
    # Output goes straight to this process's stdout/stderr: the task log on a cluster.
    completed = subprocess.run(torchrun_command(processes, ["stage", stage, "--no-progress", *arguments]))
    if completed.returncode != 0:
        raise LaunchError(f"the {processes} {stage} processes failed (torchrun exit code {completed.returncode})")


# The tracked names of a retrain: the searched (or imported) architecture's, a random baseline's.
RETRAIN_STAGES = ("retrain", "retrain_baseline")


def _tracking_arguments(parent_run_id: str, kfp_run_id: str, checkpoint_mirror: str | None) -> list[str]:
    arguments = ["--mlflow-parent-run-id", parent_run_id, "--kfp-run-id", kfp_run_id]
    return [*arguments, "--checkpoint-mirror", checkpoint_mirror] if checkpoint_mirror else arguments


def load_search_result(out_dir: Path) -> SearchRunResult:
    """The result of a finished search from its output directory."""
    genotype_path, alphas_path = out_dir / "genotype.json", out_dir / "alphas.pt"
    if not genotype_path.is_file() or not alphas_path.is_file():
        raise LaunchError(f"the search wrote no genotype.json and alphas.pt to {out_dir}")
    cycles = sorted((out_dir / "genotypes").glob("cycle_*.json"))
    final_metrics = json.loads(cycles[-1].read_text(encoding="utf-8"))["metrics"] if cycles else {}
    alphas = load_alphas(alphas_path).alphas
    return SearchRunResult(
        genotype=read_architecture_file(genotype_path),
        alphas=alphas,
        completed=True,
        out_dir=out_dir,
        alphas_path=alphas_path,
        genotype_path=genotype_path,
        cycles_completed=len(cycles),
        final_metrics=final_metrics,
    )


def run_search_stage(
    experiment: ExperimentConfig,
    dataset_dir: Path,
    out_dir: Path,
    *,
    processes: int = 1,
    parent_run_id: str = "",
    kfp_run_id: str = "",
    checkpoint_mirror: str | None = None,
) -> SearchRunResult:
    """The whole search, tracked as the ``search`` stage, on ``processes`` processes."""
    if processes <= 1:
        with tracked_stage("search", experiment, parent_run_id, kfp_run_id) as tracker:
            return run_search(experiment, dataset_dir, out_dir, tracker=tracker, checkpoint_mirror=checkpoint_mirror)
    with tempfile.TemporaryDirectory() as scratch:
        config_path = Path(scratch) / "config.yaml"
        config_path.write_text(experiment.to_yaml(), encoding="utf-8")
        arguments = ["--config", str(config_path), "--data", str(dataset_dir), "--out", str(out_dir)]
        _run_processes(
            processes, "search", [*arguments, *_tracking_arguments(parent_run_id, kfp_run_id, checkpoint_mirror)]
        )
    return load_search_result(out_dir)


def run_retrain_stage(
    experiment: ExperimentConfig,
    dataset_dir: Path,
    genotype: Architecture,
    out_dir: Path,
    *,
    processes: int = 1,
    parent_run_id: str = "",
    kfp_run_id: str = "",
    checkpoint_mirror: str | None = None,
    stage: str = "retrain",
) -> RetrainResult:
    """The whole retrain, tracked as ``stage`` (one of RETRAIN_STAGES), on ``processes`` processes."""
    if stage not in RETRAIN_STAGES:
        raise ValueError(f"unknown retrain stage {stage!r}")
    if processes <= 1:
        with tracked_stage(stage, experiment, parent_run_id, kfp_run_id) as tracker:
            return run_retrain(
                experiment, dataset_dir, genotype, out_dir, tracker=tracker, checkpoint_mirror=checkpoint_mirror
            )
    with tempfile.TemporaryDirectory() as scratch:
        config_path, genotype_path = Path(scratch) / "config.yaml", Path(scratch) / "genotype.json"
        config_path.write_text(experiment.to_yaml(), encoding="utf-8")
        genotype_path.write_text(genotype.to_json(), encoding="utf-8")
        arguments = ["--config", str(config_path), "--data", str(dataset_dir), "--genotype", str(genotype_path)]
        arguments += ["--out", str(out_dir), *_tracking_arguments(parent_run_id, kfp_run_id, checkpoint_mirror)]
        _run_processes(processes, "retrain", [*arguments, "--stage-name", stage])
    summary_path = out_dir / SUMMARY_NAME
    if not summary_path.is_file():
        raise LaunchError(f"the retrain wrote no {SUMMARY_NAME} to {out_dir}")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    return RetrainResult(True, int(summary["epochs"]), summary, out_dir / MODEL_FILE)
