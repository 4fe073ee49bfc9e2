"""cdarts-search: data_prep -> search -> derive_genotype -> retrain -> evaluate -> register; with
``random_baselines`` > 0 also sample_baselines -> ParallelFor(import -> retrain -> evaluate) ->
compare_baselines, the searched architecture measured against random ones at the same budget."""

from collections.abc import Callable
from typing import Any

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import PipelineTask
from kfp.dsl.pipeline_channel import PipelineChannel

from pipelines.options import PipelineOptions, pipeline_config
from pipelines.retrain_and_evaluate import (
    RetrainInputs,
    add_retrain_evaluate,
    add_retrain_evaluate_register,
    add_retrain_sizing,
)
from pipelines.task_settings import (
    add_gpu_sizing,
    attach_trainjob_settings,
    configure_cpu_task,
    configure_gpu_task,
)
from stages import (
    close_tracking,
    compare_baselines,
    data_prep,
    derive_genotype,
    import_genotype,
    sample_baselines,
    search,
)


def build_search_pipeline(options: PipelineOptions) -> Callable[..., Any]:
    default_node_selector = dict(options.node_selector)
    default_tolerations = [toleration.to_json() for toleration in options.tolerations]

    @dsl.pipeline(
        name="cdarts-search",
        description="CDARTS cyclic architecture search, then retrain, evaluate and register the found cell.",
        pipeline_root=options.pipeline_root,
        pipeline_config=pipeline_config(options),
    )
    def cdarts_search(
        config: str = "demo",
        overrides: list = [],  # noqa: B006 - KFP reads the default from the signature
        data_source: str = "",
        seed: int = -1,
        search_iterations: int = 0,
        retrain_epochs: int = 0,
        gpus: int = 1,
        nodes: int = 1,
        node_selector: dict = default_node_selector,
        tolerations: list = default_tolerations,
        checkpoint_root: str = "",
        checkpoint_scope: str = "",
        mlflow_parent_run_id: str = "",
        random_baselines: int = 0,
    ) -> None:
        """config: preset name or YAML text; overrides: ["key.sub=value", ...]; data_source:
        digits | cifar10:LOCATION | cifar100:LOCATION | imagefolder:LOCATION, where LOCATION is
        s3://bucket/key or a path on a mounted data volume (empty: the config's); seed,
        search_iterations, retrain_epochs: -1 / 0 keep the config's; gpus: GPUs per GPU task (CPU
        and memory scale with it); nodes: > 1 runs the search as a Kubeflow Trainer TrainJob of
        that many nodes with `gpus` GPUs each; node_selector, tolerations: where the GPU tasks
        run (Kubernetes nodeSelector map and list of tolerations); checkpoint_root:
        s3://bucket/prefix for the search and retrain checkpoints (empty: beside each task's
        output artifact; either way a retried task resumes); checkpoint_scope: the sub-prefix
        under checkpoint_root (empty: the KFP run id; `cdarts run` fixes it so that --resume
        finds it); mlflow_parent_run_id: the MLflow run the stage runs nest under (empty: KFP's
        injected run, or top-level runs); random_baselines: > 0 also retrains and evaluates that many
        distinct random architectures of the space with the same recipe and budget, and compares
        the searched one with them (only the searched model is registered)."""
        run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        # The exit task runs last whatever happened, and ends the MLflow parent run accordingly.
        closer = close_tracking(config=config, overrides=overrides, mlflow_parent_run_id=mlflow_parent_run_id)
        configure_cpu_task(closer, options, "Close MLflow run").set_caching_options(False)
        with dsl.ExitHandler(closer):
            prepared = data_prep(
                config=config,
                overrides=overrides,
                data_source=data_source,
                seed=seed,
            )
            configure_cpu_task(prepared, options, "Prepare data", reads_data=True)
            search_size = add_gpu_sizing(options, gpus, nodes, "Size search task")
            searched = search(
                config=config,
                overrides=overrides,
                seed=seed,
                search_iterations=search_iterations,
                checkpoint_root=checkpoint_root,
                checkpoint_scope=checkpoint_scope,
                mlflow_parent_run_id=mlflow_parent_run_id,
                run_id=run_id,
                gpus=gpus,
                nodes=nodes,
                node_selector=node_selector,
                tolerations=tolerations,
                dataset=prepared.outputs["dataset"],
            )
            attach_trainjob_settings(searched, options)
            configure_gpu_task(
                searched, options, "Cyclic search", search_size, node_selector, tolerations, resumable=True
            )
            derived = derive_genotype(
                config=config,
                overrides=overrides,
                alphas=searched.outputs["alphas"],
            )
            configure_cpu_task(derived, options, "Derive genotype")
            inputs = RetrainInputs(
                config=config,
                overrides=overrides,
                seed=seed,
                retrain_epochs=retrain_epochs,
                gpus=gpus,
                node_selector=node_selector,
                tolerations=tolerations,
                checkpoint_root=checkpoint_root,
                checkpoint_scope=checkpoint_scope,
                mlflow_parent_run_id=mlflow_parent_run_id,
                prepared=prepared,
            )
            searched_evaluation, _ = add_retrain_evaluate_register(options, inputs, derived)
            with dsl.If(random_baselines > 0, name="random-baselines"):
                add_random_baselines(options, inputs, random_baselines, searched_evaluation)

    return cdarts_search


def add_random_baselines(
    options: PipelineOptions,
    inputs: RetrainInputs,
    count: PipelineChannel,
    searched_evaluation: PipelineTask,
) -> PipelineTask:
    """``count`` random architectures retrained and evaluated like the searched one (a ParallelFor
    over the sampled list), then the comparison; returns the compare task. Nothing here reaches
    the registry."""
    sampled = sample_baselines(config=inputs.config, overrides=inputs.overrides, seed=inputs.seed, count=count)
    configure_cpu_task(sampled, options, "Sample random architectures")
    with dsl.ParallelFor(sampled.output, name="baseline", parallelism=options.baseline_parallelism) as architecture:
        # Inside the loop: KFP 2.17's compiler does not pass an outer task's outputs to the
        # resource fields of the loop's tasks (a cached task of seconds per baseline).
        sizing = add_retrain_sizing(options, inputs)
        imported = import_genotype(config=inputs.config, overrides=inputs.overrides, genotype_spec=architecture)
        configure_cpu_task(imported, options, "Import random architecture")
        _, evaluated = add_retrain_evaluate(options, inputs, imported, sizing, baseline=True)
    compared = compare_baselines(
        config=inputs.config,
        overrides=inputs.overrides,
        mlflow_parent_run_id=inputs.mlflow_parent_run_id,
        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        searched=searched_evaluation.outputs["evaluation"],
        random=dsl.Collected(evaluated.outputs["evaluation"]),
    )
    return configure_cpu_task(compared, options, "Compare with random architectures")
