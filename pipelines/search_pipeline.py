"""cdarts-search: data_prep -> search -> derive_genotype -> retrain -> evaluate -> register."""

from collections.abc import Callable
from typing import Any

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl

from pipelines.options import PipelineOptions
from pipelines.retrain_and_evaluate import add_retrain_evaluate_register
from pipelines.task_settings import configure_cpu_task, configure_gpu_task
from stages import close_tracking, data_prep, derive_genotype, search


def build_search_pipeline(options: PipelineOptions) -> Callable[..., Any]:
    @dsl.pipeline(
        name="cdarts-search",
        description="CDARTS cyclic architecture search, then retrain, evaluate and register the found cell.",
        pipeline_root=options.pipeline_root,
    )
    def cdarts_search(
        config: str = "demo",
        overrides: list = [],  # noqa: B006 - KFP reads the default from the signature
        data_source: str = "",
        seed: int = -1,
        search_iterations: int = 0,
        retrain_epochs: int = 0,
        gpus: int = 1,
        checkpoint_root: str = "",
        checkpoint_scope: str = "",
        mlflow_parent_run_id: str = "",
    ) -> None:
        """config: preset name or YAML text; overrides: ["key.sub=value", ...]; data_source:
        digits | cifar10:PATH | cifar100:PATH | imagefolder:DIR (empty: the config's); seed,
        search_iterations, retrain_epochs: -1 / 0 keep the config's; gpus: GPUs per GPU step;
        checkpoint_root: s3://bucket/prefix where search and retrain mirror their checkpoints, so
        that a retried task resumes (empty: no mirror); checkpoint_scope: the sub-prefix (empty: the KFP
        run id; `cdarts run` fixes it so that --resume finds it); mlflow_parent_run_id: the MLflow run the
        stage runs nest under (empty: KFP's injected run, or top-level runs)."""
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
                mlflow_parent_run_id=mlflow_parent_run_id,
                run_id=run_id,
            )
            configure_cpu_task(prepared, options, "Prepare data")
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
                dataset=prepared.outputs["dataset"],
            )
            configure_gpu_task(searched, options, "Cyclic search", gpus, resumable=True)
            derived = derive_genotype(
                config=config,
                overrides=overrides,
                mlflow_parent_run_id=mlflow_parent_run_id,
                run_id=run_id,
                alphas=searched.outputs["alphas"],
            )
            configure_cpu_task(derived, options, "Derive genotype")
            add_retrain_evaluate_register(
                options,
                config=config,
                overrides=overrides,
                seed=seed,
                retrain_epochs=retrain_epochs,
                gpus=gpus,
                checkpoint_root=checkpoint_root,
                checkpoint_scope=checkpoint_scope,
                mlflow_parent_run_id=mlflow_parent_run_id,
                prepared=prepared,
                genotype_task=derived,
            )

    return cdarts_search
