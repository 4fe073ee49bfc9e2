"""evaluate component: a retrained Model on the test split of a prepared Dataset."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from stages.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def evaluate(
    config: str,
    overrides: list,
    mlflow_parent_run_id: str,
    run_id: str,
    dataset: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[Markdown],
    evaluation: Output[Artifact],
    baseline: bool = False,
) -> None:
    """Top-1/top-5/loss, confusion matrix, size and speed (``evaluation`` holds metrics.json).
    ``baseline``: the model of a random architecture (tracked as ``evaluate_baseline``)."""
    import time
    from pathlib import Path

    from cdarts.config import load_config_spec
    from cdarts.report import evaluation_markdown
    from cdarts.runners.evaluate import run_evaluate
    from cdarts.runners.tracked_stage import tracked_stage

    start = time.perf_counter()
    experiment = load_config_spec(config, overrides)
    with tracked_stage(
        "evaluate_baseline" if baseline else "evaluate", experiment, mlflow_parent_run_id, run_id
    ) as tracker:
        result = run_evaluate(experiment, Path(dataset.path), Path(model.path), Path(evaluation.path), tracker=tracker)
    for name in ("top1", "top5", "loss", "params", "params_without_aux", "multiply_adds", "latency_ms_batch1"):
        metrics.log_metric(name, result[name])
    confusion.log_confusion_matrix(result["classes"], result["confusion_matrix"])
    Path(report.path).write_text(evaluation_markdown(result), encoding="utf-8")
    evaluation.metadata.update(
        {
            "genotype": result["genotype"],
            "top1": result["top1"],
            "top5": result["top5"],
            "seconds": time.perf_counter() - start,
        }
    )
