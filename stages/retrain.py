"""retrain component: a genotype artifact + a prepared Dataset -> a trained Model."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from stages.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def retrain(
    config: str,
    overrides: list,
    seed: int,
    retrain_epochs: int,
    checkpoint_root: str,
    checkpoint_scope: str,
    mlflow_parent_run_id: str,
    run_id: str,
    gpus: int,
    dataset: Input[Dataset],
    genotype: Input[Artifact],
    model: Output[Model],
    metrics: Output[Metrics],
    baseline: bool = False,
) -> None:
    """Train the genotype's network from scratch; ``model`` holds model.pt and the training log.
    The checkpoint is mirrored beside ``model`` in the object store (or, with a ``checkpoint_root``,
    to <root>/<scope or KFP run id>/), so a retried task resumes. With ``gpus`` > 1, data-parallel
    on that many processes (torchrun). ``baseline``: a random architecture the searched one is
    compared with (tracked as ``retrain_baseline``, its checkpoint named after the architecture)."""
    import hashlib
    import time
    from pathlib import Path

    from cdarts.architecture import read_architecture_file
    from cdarts.checkpoint_mirror import task_checkpoint_mirror
    from cdarts.config import load_config_spec, pipeline_overrides
    from cdarts.runners.launch import run_retrain_stage
    from cdarts.runners.tracked_stage import link_upstream_runs

    start = time.perf_counter()
    experiment = load_config_spec(config, [*overrides, *pipeline_overrides(seed=seed, retrain_epochs=retrain_epochs)])
    parsed = read_architecture_file(Path(genotype.path) / "genotype.json")
    upstream = [artifact.metadata.get("mlflow_run_id", "") for artifact in (dataset, genotype)]
    link_upstream_runs(experiment, upstream, mlflow_parent_run_id, run_id)
    stage, mirror_name = "retrain", "retrain"
    if baseline:  # several baselines share the run's checkpoint_root scope: one file per architecture
        digest = hashlib.sha256(parsed.to_json().encode()).hexdigest()[:12]
        stage, mirror_name = "retrain_baseline", f"retrain-baseline-{digest}"
    result = run_retrain_stage(
        experiment,
        Path(dataset.path),
        parsed,
        Path(model.path),
        processes=gpus,
        parent_run_id=mlflow_parent_run_id,
        kfp_run_id=run_id,
        checkpoint_mirror=task_checkpoint_mirror(checkpoint_root, checkpoint_scope or run_id, mirror_name, model.uri),
        stage=stage,
    )
    for name in ("final_test_top1", "final_test_top5", "best_test_top1_selected_on_test"):
        metrics.log_metric(name, result.summary[name])
    model.metadata.update(
        {
            "genotype": parsed.to_string(),
            "final_test_top1": result.summary["final_test_top1"],
            "params_without_aux": result.summary["params_without_aux"],
            "seconds": time.perf_counter() - start,
        }
    )
