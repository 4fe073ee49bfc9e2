"""data_prep component: a data source -> a prepared Dataset artifact."""

# No `from __future__ import annotations` here: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Dataset, Output

from stages.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def data_prep(
    config: str,
    overrides: list,
    data_source: str,
    seed: int,
    dataset: Output[Dataset],
) -> None:
    """Validate the data source and write the prepared dataset (manifest + arrays or shards).

    Cacheable: the inputs are exactly what defines the output (no run id, no MLflow parent), so a
    re-run with equal inputs is served from KFP's cache. The MLflow run is claimed by the first
    consumer of this run's pipeline (cdarts.tracking.upstream); its id travels in the metadata."""
    import time
    from pathlib import Path

    from cdarts.config import load_config_spec, pipeline_overrides
    from cdarts.runners.data_prep import run_data_prep
    from cdarts.runners.tracked_stage import tracked_stage

    start = time.perf_counter()
    experiment = load_config_spec(config, [*overrides, *pipeline_overrides(data_source, seed)])
    with tracked_stage("data_prep", experiment) as tracker:
        prepared = run_data_prep(experiment.data, experiment.seed, Path(dataset.path), tracker)
        mlflow_run_id = getattr(tracker, "run_id", "")
    counts = prepared.manifest["counts"]
    dataset.metadata.update(
        {
            "digest": prepared.digest,
            "source": experiment.data.source,
            "num_classes": prepared.num_classes,
            "train_images": counts["train"],
            "test_images": counts["test"],
            "mlflow_run_id": mlflow_run_id,
            "seconds": time.perf_counter() - start,
        }
    )
