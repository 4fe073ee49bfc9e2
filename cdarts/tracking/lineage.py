"""From a registered model version back to the runs and the data that produced it."""

from __future__ import annotations

from typing import Any

from cdarts.errors import TrackingError
from cdarts.tracking.registry import CHAMPION, version_model_id
from cdarts.tracking.runs import _client, check_tracking

PIPELINE_STAGES = ("data_prep", "search", "derive_genotype", "import_genotype", "retrain", "evaluate", "register")


def model_version(client: Any, ref: str) -> Any:
    """The registered version ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME`` (its champion)."""
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return client.get_model_version_by_alias(name, alias)
        if "/" in ref:
            name, version = ref.rsplit("/", 1)
            return client.get_model_version(name, version)
        return client.get_model_version_by_alias(ref, CHAMPION)
    except Exception:
        raise TrackingError(f"no model version {ref!r} in the registry") from None


def pipeline_runs(client: Any, run: Any) -> list[Any]:
    """The stage runs of the pipeline run ``run`` belongs to: its siblings under one MLflow parent
    (``cdarts run``, ``cdarts submit``, GitOps, or KFP's plugin), else the runs tagged with the
    same KFP run id (``kfp run create`` without the plugin), else ``run`` alone."""
    tags = run.data.tags
    if parent := tags.get("mlflow.parentRunId"):
        query = f"tags.mlflow.parentRunId = '{parent}'"
    elif kfp_run := tags.get("kfp.run_id"):
        query = f"tags.`kfp.run_id` = '{kfp_run}'"
    else:
        return [run]
    return list(client.search_runs([run.info.experiment_id], filter_string=query, max_results=1000))


def _by_stage(runs: list[Any], model_id: str | None) -> dict[str, Any]:
    """One run per stage; where a stage ran more than once, the one that names this model."""
    found: dict[str, Any] = {}
    for run in runs:
        stage = run.data.tags.get("cdarts.stage", run.info.run_name)
        if stage not in PIPELINE_STAGES:
            continue
        names_model = model_id is not None and run.data.tags.get("cdarts.logged_model_id") == model_id
        if stage not in found or names_model:
            found[stage] = run
    return found


def _data_prep_run(client: Any, experiment_id: str, digest: str | None) -> Any:
    """The first data_prep run that prepared the dataset with ``digest``, or None."""
    if not digest:
        return None
    query = f"tags.`cdarts.stage` = 'data_prep' and tags.`cdarts.dataset_digest` = '{digest}'"
    found = client.search_runs(
        [experiment_id], filter_string=query, order_by=["attributes.start_time ASC"], max_results=1
    )
    return found[0] if found else None


def lineage(uri: str, ref: str) -> list[dict[str, Any]]:
    """The chain model version -> evaluate -> retrain -> genotype -> search -> dataset.

    ``ref`` is ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME`` (its champion). The version's run is
    the retrain run that logged the model.
    """
    check_tracking(uri)
    client = _client(uri)
    version = model_version(client, ref)
    source_run = client.get_run(version.run_id)
    model_id = version_model_id(version)
    stages = _by_stage(pipeline_runs(client, source_run), model_id)
    stages.setdefault("retrain", source_run)

    def entry(kind: str, run: Any, **facts: Any) -> dict[str, Any]:
        return {"kind": kind, "run_id": run.info.run_id if run is not None else None, **facts}

    evaluate, retrain = stages.get("evaluate"), stages["retrain"]
    genotype_run = stages.get("derive_genotype") or stages.get("import_genotype") or retrain
    digest = version.tags.get("dataset_digest") or retrain.data.tags.get("cdarts.dataset_digest")
    # A dataset served from KFP's cache was prepared by an earlier pipeline run: found by digest.
    data = stages.get("data_prep") or _data_prep_run(client, retrain.info.experiment_id, digest)
    return [
        {
            "kind": "model_version",
            "name": version.name,
            "version": str(version.version),
            "aliases": sorted(version.aliases),
            "model_id": model_id,
            "promotion": version.tags.get("promotion.decision"),
            "run_id": version.run_id,
        },
        entry("evaluate", evaluate, top1=evaluate.data.metrics.get("evaluate/top1") if evaluate else None),
        entry("retrain", retrain, final_test_top1=retrain.data.metrics.get("retrain/final_test_top1")),
        entry("genotype", genotype_run, genotype=genotype_run.data.tags.get("cdarts.genotype")),
        entry("search", stages.get("search")),
        entry("dataset", data, digest=digest),
    ]
