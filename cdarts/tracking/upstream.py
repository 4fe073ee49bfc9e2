"""Runs of the cacheable stages, claimed by the pipeline run that consumes their output.

data_prep, derive_genotype and import_genotype take no per-run value (no KFP run id, no MLflow
parent), so that Kubeflow Pipelines can serve them from its cache; their MLflow runs are created
without the pipeline run's identity. The first stage of a pipeline run that consumes one of their
artifacts claims the run: a run that no pipeline run claimed yet (no parent, no KFP run id) was
produced for this pipeline run and is moved under its parent and tagged with its KFP run id. A
run that is already claimed was served from the cache to this pipeline run; it stays where it is,
and the consumer records it in the ``cdarts.upstream_runs`` tag (the dataset is linked by digest).
"""

from __future__ import annotations

from collections.abc import Iterable

from cdarts.errors import TrackingError
from cdarts.tracking.runs import _client

PARENT_TAG = "mlflow.parentRunId"
KFP_RUN_TAG = "kfp.run_id"
UPSTREAM_RUNS_TAG = "cdarts.upstream_runs"


def claim_upstream_runs(uri: str, run_ids: Iterable[str], parent_run_id: str, kfp_run_id: str) -> list[str]:
    """Claim the unclaimed runs of ``run_ids`` for this pipeline run; returns the ids claimed now.

    ``parent_run_id`` (may be empty) is the pipeline run's MLflow parent, ``kfp_run_id`` its KFP
    run id (may be empty). Runs already claimed (by this or another pipeline run) are left alone.
    """
    client = _client(uri)
    claimed = []
    for run_id in dict.fromkeys(r for r in run_ids if r):
        try:
            tags = client.get_run(run_id).data.tags
        except Exception as error:  # a run of another store, or deleted: the link is lost, say why
            raise TrackingError(f"upstream MLflow run {run_id} cannot be read ({type(error).__name__})") from None
        if tags.get(PARENT_TAG) or tags.get(KFP_RUN_TAG):
            continue
        if parent_run_id:
            client.set_tag(run_id, PARENT_TAG, parent_run_id)
        if kfp_run_id:
            client.set_tag(run_id, KFP_RUN_TAG, kfp_run_id)
        if parent_run_id or kfp_run_id:
            claimed.append(run_id)
    return claimed
