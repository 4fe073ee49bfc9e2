"""The retrain -> evaluate -> register tail shared by both pipelines."""

from __future__ import annotations

from kfp import dsl
from kfp.dsl import PipelineTask
from kfp.dsl.pipeline_channel import PipelineChannel

from pipelines.options import PipelineOptions
from pipelines.task_settings import add_gpu_sizing, configure_cpu_task, configure_gpu_task
from stages import evaluate, register, retrain


def add_retrain_evaluate_register(
    options: PipelineOptions,
    *,
    config: PipelineChannel,
    overrides: PipelineChannel,
    seed: PipelineChannel,
    retrain_epochs: PipelineChannel,
    gpus: PipelineChannel,
    node_selector: PipelineChannel,
    tolerations: PipelineChannel,
    checkpoint_root: PipelineChannel,
    checkpoint_scope: PipelineChannel,
    mlflow_parent_run_id: PipelineChannel,
    prepared: PipelineTask,
    genotype_task: PipelineTask,
) -> PipelineTask:
    """Retrain ``genotype_task``'s genotype, evaluate it, register it; returns the register task."""
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    sizing = add_gpu_sizing(options, gpus, 1, "Size retrain task")
    trained = retrain(
        config=config,
        overrides=overrides,
        seed=seed,
        retrain_epochs=retrain_epochs,
        checkpoint_root=checkpoint_root,
        checkpoint_scope=checkpoint_scope,
        mlflow_parent_run_id=mlflow_parent_run_id,
        run_id=run_id,
        gpus=gpus,
        dataset=prepared.outputs["dataset"],
        genotype=genotype_task.outputs["genotype"],
    )
    configure_gpu_task(trained, options, "Retrain", sizing, node_selector, tolerations, resumable=True)
    evaluated = evaluate(
        config=config,
        overrides=overrides,
        mlflow_parent_run_id=mlflow_parent_run_id,
        run_id=run_id,
        dataset=prepared.outputs["dataset"],
        model=trained.outputs["model"],
    )
    configure_gpu_task(evaluated, options, "Evaluate", None, node_selector, tolerations, resumable=False)
    registered = register(
        config=config,
        overrides=overrides,
        mlflow_parent_run_id=mlflow_parent_run_id,
        run_id=run_id,
        model=trained.outputs["model"],
        evaluation=evaluated.outputs["evaluation"],
    )
    configure_cpu_task(registered, options, "Register and promote")
    # Registering and moving aliases are side effects on the registry: never served from a cache.
    return registered.set_caching_options(False)
