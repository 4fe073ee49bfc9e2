"""From a registered model version back to the runs and the data that produced it."""

from __future__ import annotations

from typing import Any

from cdarts.errors import TrackingError
from cdarts.tracking.registry import CHAMPION
from cdarts.tracking.runs import _client, check_tracking


def _model_version(client: Any, ref: str) -> Any:
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


def lineage(uri: str, ref: str) -> list[dict[str, Any]]:
    """The chain model version -> evaluate -> retrain -> genotype -> search -> dataset.

    ``ref`` is ``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME`` (its champion).
    """
    check_tracking(uri)
    client = _client(uri)
    version = _model_version(client, ref)
    register_run = client.get_run(version.run_id)
    parent = register_run.data.tags.get("mlflow.parentRunId")
    siblings: dict[str, Any] = {}
    if parent:
        runs = client.search_runs(
            [register_run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
        )
        for run in runs:
            siblings.setdefault(run.data.tags.get("cdarts.stage", run.info.run_name), run)

    def entry(kind: str, run: Any, **facts: Any) -> dict[str, Any]:
        return {"kind": kind, "run_id": run.info.run_id if run is not None else None, **facts}

    evaluate, retrain = siblings.get("evaluate"), siblings.get("retrain")
    genotype_run = siblings.get("derive_genotype") or siblings.get("import_genotype") or retrain
    search, data = siblings.get("search"), siblings.get("data_prep")
    genotype = genotype_run.data.tags.get("cdarts.genotype") if genotype_run is not None else None
    return [
        {
            "kind": "model_version",
            "name": version.name,
            "version": str(version.version),
            "aliases": sorted(version.aliases),
            "run_id": version.run_id,
        },
        entry("evaluate", evaluate, top1=evaluate.data.metrics.get("evaluate/top1") if evaluate else None),
        entry(
            "retrain", retrain, final_test_top1=retrain.data.metrics.get("retrain/final_test_top1") if retrain else None
        ),
        entry("genotype", genotype_run, genotype=genotype),
        entry("search", search),
        entry("dataset", data, digest=register_run.data.tags.get("cdarts.dataset_digest")),
    ]
