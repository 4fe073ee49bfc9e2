"""search component: the cyclic joint search on a prepared Dataset."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from stages.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def search(
    config: str,
    overrides: list,
    seed: int,
    search_iterations: int,
    checkpoint_root: str,
    checkpoint_scope: str,
    mlflow_parent_run_id: str,
    run_id: str,
    gpus: int,
    nodes: int,
    node_selector: dict,
    tolerations: list,
    dataset: Input[Dataset],
    supernet: Output[Model],
    alphas: Output[Artifact],
    metrics: Output[Metrics],
) -> None:
    """Run the search; ``supernet`` holds the checkpoints and logs, ``alphas`` the final alphas.
    The checkpoint is mirrored beside ``supernet`` in the object store (or, with a
    ``checkpoint_root``, to <root>/<scope or KFP run id>/), so a retried task resumes. With
    ``gpus`` > 1, data-parallel on that many processes (torchrun); with ``nodes`` > 1, on
    ``nodes`` x ``gpus`` processes of a Kubeflow Trainer TrainJob that this task launches and
    waits for (its settings come from the compiled ``CDARTS_TRAINJOB_SETTINGS``, its placement
    from ``node_selector`` and ``tolerations``, the run's parameters)."""
    import shutil
    import time
    from pathlib import Path

    from cdarts.checkpoint_mirror import task_checkpoint_mirror
    from cdarts.config import load_config_spec, pipeline_overrides
    from cdarts.runners.launch import run_search_stage
    from cdarts.runners.tracked_stage import link_upstream_runs

    start = time.perf_counter()
    experiment = load_config_spec(
        config, [*overrides, *pipeline_overrides(seed=seed, search_iterations=search_iterations)]
    )
    link_upstream_runs(experiment, [dataset.metadata.get("mlflow_run_id", "")], mlflow_parent_run_id, run_id)
    mirror = task_checkpoint_mirror(checkpoint_root, checkpoint_scope or run_id, "search", supernet.uri)
    if nodes > 1:
        from cdarts.runners.multi_node_search import run_multi_node_search, trainjob_settings_for_run

        result = run_multi_node_search(
            experiment,
            dataset_uri=dataset.uri,
            output_uri=f"{supernet.uri}.trainjob",  # beside the artifact, which KFP uploads itself
            out_dir=Path(supernet.path),
            nodes=nodes,
            gpus_per_node=gpus,
            checkpoint_mirror=mirror,
            parent_run_id=mlflow_parent_run_id,
            kfp_run_id=run_id,
            settings=trainjob_settings_for_run(gpus, node_selector, tolerations),
        )
    else:
        result = run_search_stage(
            experiment,
            Path(dataset.path),
            Path(supernet.path),
            processes=gpus,
            parent_run_id=mlflow_parent_run_id,
            kfp_run_id=run_id,
            checkpoint_mirror=mirror,
        )
    assert result.alphas_path is not None
    shutil.copyfile(result.alphas_path, alphas.path)
    for name, value in result.final_metrics.items():
        metrics.log_metric(name.replace("/", "_"), value)
    supernet.metadata.update({"genotype": result.genotype.to_string(), "seconds": time.perf_counter() - start})
    alphas.metadata["genotype"] = result.genotype.to_string()
