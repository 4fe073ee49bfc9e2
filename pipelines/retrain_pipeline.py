"""cdarts-retrain: a given genotype -> retrain -> evaluate -> register (what GitOps submits)."""

from collections.abc import Callable
from typing import Any

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl

from pipelines.options import PipelineOptions, pipeline_config
from pipelines.retrain_and_evaluate import RetrainInputs, add_retrain_evaluate_register
from pipelines.task_settings import configure_cpu_task
from stages import close_tracking, data_prep, import_genotype


def build_retrain_pipeline(options: PipelineOptions) -> Callable[..., Any]:
    default_node_selector = dict(options.node_selector)
    default_tolerations = [toleration.to_json() for toleration in options.tolerations]

    @dsl.pipeline(
        name="cdarts-retrain",
        description="Retrain, evaluate and register a given CDARTS/DARTS genotype.",
        pipeline_root=options.pipeline_root,
        pipeline_config=pipeline_config(options),
    )
    def cdarts_retrain(
        genotype: str = "CDARTS_CIFAR",
        config: str = "demo",
        overrides: list = [],  # noqa: B006 - KFP reads the default from the signature
        data_source: str = "",
        seed: int = -1,
        retrain_epochs: int = 0,
        gpus: int = 1,
        node_selector: dict = default_node_selector,
        tolerations: list = default_tolerations,
        checkpoint_root: str = "",
        checkpoint_scope: str = "",
        mlflow_parent_run_id: str = "",
    ) -> None:
        """genotype: reference name, genotype JSON text or Genotype(...) string; the other
        parameters as in cdarts-search."""
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
            imported = import_genotype(
                config=config,
                overrides=overrides,
                genotype_spec=genotype,
            )
            configure_cpu_task(imported, options, "Import genotype")
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
            add_retrain_evaluate_register(options, inputs, imported)

    return cdarts_retrain
