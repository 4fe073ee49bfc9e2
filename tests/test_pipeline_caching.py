"""KFP caching: data prep and the genotype steps are served from the cache on a re-run with equal
inputs (compiled cache keys, and kfp.local's cache for real), register never; the lineage of a
cached dataset still reaches the new run's MLflow tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.tracking import lineage, resolve_tracking_uri
from pipelines.compile import compile_pipeline
from tests.conftest import CONFIGS
from tests.kfp_cache_key import task_cache_key

runner = CliRunner()


def _ir(name: str, tmp_path: Path) -> dict[str, Any]:
    documents = compile_pipeline(name, tmp_path / f"{name}.yaml")
    return documents[0]


def _run_arguments(parent: str, **changes: Any) -> dict[str, Any]:
    """What `cdarts submit` passes: the resolved config, and a fresh MLflow parent per run."""
    return {"config": (CONFIGS / "tiny.yaml").read_text(), "mlflow_parent_run_id": parent, **changes}


@pytest.mark.parametrize(
    ("pipeline", "cached", "per_run"),
    [
        (
            "search",
            ["data-prep", "size-gpu-task", "size-gpu-task-2"],
            ["search", "derive-genotype", "retrain", "evaluate"],
        ),
        ("retrain", ["data-prep", "import-genotype", "size-gpu-task"], ["retrain", "evaluate"]),
    ],
)
def test_compiled_cache_keys_of_cacheable_tasks_do_not_change_between_runs(
    pipeline: str, cached: list[str], per_run: list[str], tmp_path: Path
) -> None:
    ir = _ir(pipeline, tmp_path)
    first, second = _run_arguments("parent-run-1"), _run_arguments("parent-run-2")
    for task in cached:
        key = task_cache_key(ir, task, first, "job-1")
        assert key is not None and key == task_cache_key(ir, task, second, "job-2"), task
    # What the stages do per run (train, tag the run's MLflow tree) is never served from the cache.
    for task in per_run:
        assert task_cache_key(ir, task, first, "job-1") != task_cache_key(ir, task, second, "job-2"), task
    assert task_cache_key(ir, "register", first, "job-1") is None  # side effects: caching off
    # The keys still follow what defines the output.
    data_prep = task_cache_key(ir, "data-prep", first, "job-1")
    assert task_cache_key(ir, "data-prep", {**first, "seed": 7}, "job-1") != data_prep
    assert task_cache_key(ir, "data-prep", {**first, "data_source": "digits"}, "job-1") != data_prep


def test_cacheable_components_take_no_per_run_parameter(tmp_path: Path) -> None:
    for pipeline in ("search", "retrain"):
        ir = _ir(pipeline, tmp_path)
        for component in ("comp-data-prep", "comp-import-genotype", "comp-derive-genotype"):
            if component not in ir["components"]:
                continue
            inputs = set(ir["components"][component]["inputDefinitions"]["parameters"])
            assert not inputs & {"run_id", "mlflow_parent_run_id", "checkpoint_scope"}, component
        text = yaml.safe_dump(ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]["data-prep"])
        assert "pipeline_job_uuid" not in text


@pytest.mark.slow
def test_a_second_local_run_serves_data_prep_and_the_genotype_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the embedded MLflow store lives in ./.cdarts
    for name in ("MLFLOW_TRACKING_URI", "CDARTS_MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    arguments = [
        "run",
        "--pipeline",
        "retrain",
        "--genotype",
        "DARTS_V2",
        "--config",
        str(CONFIGS / "tiny.yaml"),
        "--set",
        "tracking.enabled=true",
        "--set",
        "retrain.epochs=1",
        "--runs-root",
        str(tmp_path / "runs"),
        "--no-progress",
        "--cache",
    ]
    summaries = []
    for _ in range(2):
        result = runner.invoke(app, arguments)
        assert result.exit_code == 0, result.output
        run_dir = Path(result.stdout.strip().splitlines()[-1])
        summaries.append(json.loads((run_dir / "summary.json").read_text()))
    first, second = summaries
    assert first["cached_tasks"] == []
    assert second["cached_tasks"] == ["data-prep", "import-genotype"]
    # The second run trained on the very artifact the first prepared (no copy, no re-preparation).
    assert "data-prep/dataset" not in second["artifacts"] and second["dataset_digest"] == first["dataset_digest"]
    assert not list((Path(second["run_dir"]) / "artifacts").glob("*/data-prep"))

    uri = resolve_tracking_uri(None)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def children(parent_id: str) -> dict[str, Any]:
        parent = client.get_run(parent_id)
        query = f"tags.mlflow.parentRunId = '{parent_id}'"
        return {r.info.run_name: r for r in client.search_runs([parent.info.experiment_id], filter_string=query)}

    # The first run's tree holds the data_prep run its retrain claimed; the second holds none,
    # but its retrain run names the same dataset (by digest), and the lineage of its model
    # reaches the data_prep run of the first.
    first_tree, second_tree = children(first["mlflow_run_id"]), children(second["mlflow_run_id"])
    assert {"data_prep", "import_genotype", "retrain", "evaluate", "register"} <= set(first_tree)
    assert "data_prep" not in second_tree and "import_genotype" not in second_tree
    digest = second["dataset_digest"].removeprefix("sha256:")[:36]
    assert second_tree["retrain"].inputs.dataset_inputs[0].dataset.digest == digest
    name, version = second["registered_model"]["name"], second["registered_model"]["version"]
    chain = {step["kind"]: step for step in lineage(uri, f"{name}/{version}")}
    assert chain["retrain"]["run_id"] == second_tree["retrain"].info.run_id
    assert chain["dataset"]["run_id"] == first_tree["data_prep"].info.run_id
    assert chain["dataset"]["digest"] == second["dataset_digest"]
