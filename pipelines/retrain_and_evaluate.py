"""The retrain -> evaluate -> register tail shared by both pipelines, and its retrain -> evaluate
part alone (a random baseline's)."""

from __future__ import annotations

from dataclasses import dataclass

from kfp import dsl
from kfp.dsl import PipelineTask
from kfp.dsl.pipeline_channel import PipelineChannel

from pipelines.options import PipelineOptions
from pipelines.task_settings import add_gpu_sizing, configure_cpu_task, configure_gpu_task
from stages import evaluate, register, retrain


@dataclass(frozen=True)
class RetrainInputs:
    """The pipeline parameters and upstream tasks every retrain and evaluation reads."""

    config: PipelineChannel
    overrides: PipelineChannel
    seed: PipelineChannel
    retrain_epochs: PipelineChannel
    gpus: PipelineChannel
    node_selector: PipelineChannel
    tolerations: PipelineChannel
    checkpoint_root: PipelineChannel
    checkpoint_scope: PipelineChannel
    mlflow_parent_run_id: PipelineChannel
    prepared: PipelineTask


def add_retrain_evaluate(
    options: PipelineOptions,
    inputs: RetrainInputs,
    genotype_task: PipelineTask,
    sizing: PipelineTask,
    *,
    baseline: bool = False,
) -> tuple[PipelineTask, PipelineTask]:
    """Retrain ``genotype_task``'s genotype and evaluate it: (retrain task, evaluate task).
    A ``baseline`` (random architecture) is tracked and checkpointed under its own names."""
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    role = " (random baseline)" if baseline else ""
    trained = retrain(
        config=inputs.config,
        overrides=inputs.overrides,
        seed=inputs.seed,
        retrain_epochs=inputs.retrain_epochs,
        checkpoint_root=inputs.checkpoint_root,
        checkpoint_scope=inputs.checkpoint_scope,
        mlflow_parent_run_id=inputs.mlflow_parent_run_id,
        run_id=run_id,
        gpus=inputs.gpus,
        dataset=inputs.prepared.outputs["dataset"],
        genotype=genotype_task.outputs["genotype"],
        baseline=baseline,
    )
    configure_gpu_task(
        trained, options, f"Retrain{role}", sizing, inputs.node_selector, inputs.tolerations, resumable=True
    )
    evaluated = evaluate(
        config=inputs.config,
        overrides=inputs.overrides,
        mlflow_parent_run_id=inputs.mlflow_parent_run_id,
        run_id=run_id,
        dataset=inputs.prepared.outputs["dataset"],
        model=trained.outputs["model"],
        baseline=baseline,
    )
    configure_gpu_task(
        evaluated, options, f"Evaluate{role}", None, inputs.node_selector, inputs.tolerations, resumable=False
    )
    return trained, evaluated


def add_retrain_sizing(options: PipelineOptions, inputs: RetrainInputs) -> PipelineTask:
    return add_gpu_sizing(options, inputs.gpus, 1, "Size retrain task")


def add_retrain_evaluate_register(
    options: PipelineOptions, inputs: RetrainInputs, genotype_task: PipelineTask
) -> tuple[PipelineTask, PipelineTask]:
    """Retrain ``genotype_task``'s genotype, evaluate it, register it: (evaluate task, register task)."""
    sizing = add_retrain_sizing(options, inputs)
    trained, evaluated = add_retrain_evaluate(options, inputs, genotype_task, sizing)
    registered = register(
        config=inputs.config,
        overrides=inputs.overrides,
        mlflow_parent_run_id=inputs.mlflow_parent_run_id,
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        model=trained.outputs["model"],
        evaluation=evaluated.outputs["evaluation"],
    )
    configure_cpu_task(registered, options, "Register and promote")
    # Registering and moving aliases are side effects on the registry: never served from a cache.
    return evaluated, registered.set_caching_options(False)
