"""The retrain -> evaluate tail shared by both pipelines."""

from __future__ import annotations

from kfp import dsl
from kfp.dsl import PipelineTask
from kfp.dsl.pipeline_channel import PipelineChannel

from pipelines.options import PipelineOptions
from pipelines.task_settings import configure_gpu_task
from stages import evaluate, retrain


def add_retrain_and_evaluate(
    options: PipelineOptions,
    *,
    config: PipelineChannel,
    overrides: PipelineChannel,
    seed: PipelineChannel,
    retrain_epochs: PipelineChannel,
    gpus: PipelineChannel,
    checkpoint_root: PipelineChannel,
    prepared: PipelineTask,
    genotype_task: PipelineTask,
) -> PipelineTask:
    """Add the retrain and evaluate tasks for ``genotype_task``'s genotype; returns evaluate."""
    trained = retrain(
        config=config,
        overrides=overrides,
        seed=seed,
        retrain_epochs=retrain_epochs,
        checkpoint_root=checkpoint_root,
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        dataset=prepared.outputs["dataset"],
        genotype=genotype_task.outputs["genotype"],
    )
    configure_gpu_task(trained, options, "Retrain", gpus, resumable=True)
    evaluated = evaluate(
        config=config, overrides=overrides, dataset=prepared.outputs["dataset"], model=trained.outputs["model"]
    )
    return configure_gpu_task(evaluated, options, "Evaluate", 1, resumable=False)
