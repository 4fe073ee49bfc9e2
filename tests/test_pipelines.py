"""The KFP pipelines: compilation (golden files, cluster settings, secrets), components called
directly, a kfp.local end-to-end run, and submission to a recording fake KFP API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import dsl
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.config import load_config
from cdarts.spaces.darts.architecture import Genotype
from cdarts.spaces.darts.parser import reference_genotype
from cdarts.tracking import lineage
from pipelines.compile import compile_pipeline
from pipelines.options import PipelineOptions, Toleration
from tests.conftest import CONFIGS, REPO_ROOT
from tests.fake_kfp_server import FakeKfp

runner = CliRunner()
GOLDEN = REPO_ROOT / "tests" / "golden"


def _normalise(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop what changes with the SDK build rather than with our code."""
    first = json.loads(json.dumps(documents[0]))
    first.pop("sdkVersion", None)
    return [first, *documents[1:]]


@pytest.mark.parametrize("name", ["search", "retrain"])
def test_compiled_pipelines_match_the_golden_files(name: str, tmp_path: Path) -> None:
    documents = compile_pipeline(name, tmp_path / "p.yaml")
    golden = list(yaml.safe_load_all((GOLDEN / f"cdarts-{name}.yaml").read_text()))
    assert _normalise(documents) == _normalise(golden), "run `make golden` after an intended pipeline change"


def _executors(documents: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return documents[0]["deploymentSpec"]["executors"], documents[1]["platforms"]["kubernetes"]["deploymentSpec"][
        "executors"
    ]


def test_gpu_steps_get_accelerators_shm_retries_and_scheduling(tmp_path: Path) -> None:
    options = PipelineOptions(
        accelerator_type="nvidia.com/gpu",
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100"},
        tolerations=(Toleration("nvidia.com/gpu"), Toleration("team", "Equal", "nas")),
    )
    documents = compile_pipeline("search", tmp_path / "p.yaml", options)
    executors, platform = _executors(documents)
    tasks = documents[0]["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    for gpu_step in ("exec-search", "exec-retrain", "exec-evaluate"):
        resources = executors[gpu_step]["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        k8s = platform[gpu_step]
        assert k8s["emptyDirMounts"][0]["mountPath"] == "/dev/shm" and k8s["emptyDirMounts"][0]["medium"] == "Memory"
        # Where GPU tasks run is a run-time parameter whose default is the compile-time choice.
        assert k8s["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"] == "pipelinechannel--node_selector"
        assert k8s["tolerations"][0]["tolerationJson"]["componentInputParameter"] == "pipelinechannel--tolerations"
    parameters = documents[0]["root"]["inputDefinitions"]["parameters"]
    assert parameters["node_selector"]["defaultValue"] == {"cloud.google.com/gke-accelerator": "nvidia-h100"}
    assert parameters["tolerations"]["defaultValue"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "team", "operator": "Equal", "value": "nas", "effect": "NoSchedule"},
    ]
    # Search and retrain get accelerators, CPU and memory from their sizing task (x gpus);
    # evaluate runs on one GPU with one GPU's worth.
    for gpu_step, sizing in (("exec-search", "Size search task"), ("exec-retrain", "Size retrain task")):
        resources = executors[gpu_step]["container"]["resources"]
        task = tasks[gpu_step.removeprefix("exec-")]
        for field, output in (
            ("resourceCpuRequest", "cpu_request"),
            ("resourceCpuLimit", "cpu_limit"),
            ("resourceMemoryRequest", "memory_request"),
            ("resourceMemoryLimit", "memory_limit"),
        ):
            channel = resources[field].split("'")[1]
            source = task["inputs"]["parameters"][channel]["taskOutputParameter"]
            assert source["outputParameterKey"] == output
            assert tasks[source["producerTask"]]["taskInfo"]["name"] == sizing
            assert source["producerTask"] in task["dependentTasks"]  # it waits for its size
    evaluate = executors["exec-evaluate"]["container"]["resources"]
    assert evaluate["resourceCpuLimit"] == "8" and evaluate["resourceMemoryLimit"] == "32G"
    assert evaluate["accelerator"]["resourceCount"] == "1"
    for cpu_step in ("exec-data-prep", "exec-derive-genotype"):
        assert "accelerator" not in executors[cpu_step]["container"].get("resources", {})
        assert "emptyDirMounts" not in platform.get(cpu_step, {})
    # The stages run inside an exit handler whose exit task closes the MLflow parent run.
    root = documents[0]["root"]["dag"]["tasks"]
    assert set(root) == {"exit-handler-1", "close-tracking"}
    assert root["close-tracking"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    # The GPU count of search and retrain is a run-time parameter of the pipeline.
    gpus = tasks["search"]["inputs"]["parameters"]["gpus"]["componentInputParameter"]
    assert gpus == "pipelinechannel--gpus"
    assert parameters["gpus"]["parameterType"] == "NUMBER_INTEGER"
    retries = {name: task.get("retryPolicy") for name, task in tasks.items()}
    assert retries["search"]["maxRetryCount"] == 3 and retries["retrain"]["maxRetryCount"] == 3
    assert retries["evaluate"] is None and retries["data-prep"] is None


def test_credentials_are_secret_references_never_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_value = "s3cr3t-VALUE-never-in-yaml"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_value)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", secret_value)
    options = PipelineOptions(s3_secret="mlpipeline-minio-artifact", s3_secret_fields=("accesskey", "secretkey"))
    documents = compile_pipeline("retrain", tmp_path / "p.yaml", options)
    text = (tmp_path / "p.yaml").read_text()
    assert secret_value not in text
    _, platform = _executors(documents)
    for executor in platform.values():
        references = {entry["secretName"]: entry for entry in executor["secretAsEnv"]}
        assert set(references) == {"mlpipeline-minio-artifact", "cdarts-mlflow"}
        mapping = {pair["secretKey"]: pair["envVar"] for pair in references["mlpipeline-minio-artifact"]["keyToEnv"]}
        assert mapping == {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}
        assert references["mlpipeline-minio-artifact"]["optional"] is True
        # Endpoints from the namespace's settings ConfigMap; the label the NetworkPolicies admit.
        (settings,) = executor["configMapAsEnv"]
        assert settings["configMapName"] == "cdarts-settings" and settings["optional"] is True
        assert {pair["envVar"] for pair in settings["keyToEnv"]} == {"CDARTS_MLFLOW_TRACKING_URI", "CDARTS_S3_ENDPOINT"}
        assert executor["podMetadata"]["labels"] == {"cdarts.io/pipeline-task": "true"}


def test_compile_command_replaces_images_and_rejects_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "search.yaml"
    digest = "registry.example.com/cdarts-gpu@sha256:" + "a" * 64
    cpu_digest = "registry.example.com/cdarts-cpu@sha256:" + "b" * 64
    images = ["--image", f"gpu={digest}", "--image", f"cpu={cpu_digest}"]
    result = runner.invoke(app, ["compile", "--pipeline", "search", "--out", str(out), *images])
    assert result.exit_code == 0, result.output
    executors = next(iter(yaml.safe_load_all(out.read_text())))["deploymentSpec"]["executors"]
    assert executors["exec-search"]["container"]["image"] == digest
    assert executors["exec-data-prep"]["container"]["image"] == cpu_digest
    # A tag (the default images) is refused unless asked for: nothing compiles silently with it.
    refused = runner.invoke(app, ["compile", "--out", str(tmp_path / "tag.yaml"), "--image", f"gpu={digest}"])
    assert refused.exit_code == 2 and "cpu image ghcr.io/cdarts-pipelines/cdarts-cpu:" in refused.stderr
    assert "not pinned by digest" in refused.stderr and not (tmp_path / "tag.yaml").exists()
    allowed = runner.invoke(app, ["compile", "--out", str(out), "--allow-unpinned-images"])
    assert allowed.exit_code == 0, allowed.output
    for args, fragment in (
        (["compile", "--pipeline", "nas", "--out", str(out)], "unknown pipeline 'nas'"),
        (["compile", "--out", str(out), "--image", "tpu=x"], "gpu=REF or cpu=REF"),
        (["compile", "--out", str(out), "--node-selector", "novalue"], "key=value"),
    ):
        bad = runner.invoke(app, args)
        assert bad.exit_code == 2 and bad.stderr.strip().startswith("cdarts: error:") and fragment in bad.stderr


def test_component_bodies_run_directly_on_temporary_artifacts(tmp_path: Path) -> None:
    from stages import data_prep, evaluate, import_genotype, register, retrain

    config = (CONFIGS / "tiny.yaml").read_text()
    dataset = dsl.Dataset(name="dataset", uri=str(tmp_path / "dataset"), metadata={})
    ids = {"mlflow_parent_run_id": "", "run_id": "local"}
    # data_prep and the genotype steps take no per-run input (so that KFP can cache them).
    data_prep.python_func(config=config, overrides=[], data_source="", seed=-1, dataset=dataset)
    assert dataset.metadata["num_classes"] == 4 and dataset.metadata["digest"].startswith("sha256:")
    genotype = dsl.Artifact(name="genotype", uri=str(tmp_path / "genotype"), metadata={})
    cells = dsl.HTML(name="cells", uri=str(tmp_path / "cells.html"), metadata={})
    import_genotype.python_func(config=config, overrides=[], genotype_spec="DARTS_V2", genotype=genotype, cells=cells)
    assert genotype.metadata["genotype"] == reference_genotype("DARTS_V2").to_string()
    assert "<svg" in Path(cells.path).read_text()
    model = dsl.Model(name="model", uri=str(tmp_path / "model"), metadata={})
    metrics = dsl.Metrics(name="metrics", uri=str(tmp_path / "metrics"), metadata={})
    retrain.python_func(
        config=config,
        overrides=["retrain.epochs=1"],
        seed=-1,
        retrain_epochs=0,
        checkpoint_root="",
        checkpoint_scope="",
        gpus=2,  # two data-parallel processes under torchrun (gloo on this CPU)
        **ids,
        dataset=dataset,
        genotype=genotype,
        model=model,
        metrics=metrics,
    )
    assert (Path(model.path) / "model.pt").is_file() and "final_test_top1" in metrics.metadata
    outputs = {
        name: cls(name=name, uri=str(tmp_path / name), metadata={})
        for name, cls in (
            ("metrics", dsl.Metrics),
            ("confusion", dsl.ClassificationMetrics),
            ("report", dsl.Markdown),
            ("evaluation", dsl.Artifact),
        )
    }
    evaluate.python_func(config=config, overrides=[], dataset=dataset, model=model, **outputs, **ids)
    registration = dsl.Artifact(name="registration", uri=str(tmp_path / "registration"), metadata={})
    register.python_func(
        config=config, overrides=[], model=model, evaluation=outputs["evaluation"], registration=registration, **ids
    )
    assert registration.metadata["decision"] == "skipped: tracking disabled"  # tiny.yaml tracks nothing
    assert (
        outputs["metrics"].metadata["top1"]
        == json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["top1"]
    )
    assert len(outputs["confusion"].metadata["confusionMatrix"]["rows"]) == 4
    assert "| test top-1 |" in Path(outputs["report"].path).read_text()


def test_run_with_unknown_pipeline_or_bad_config_fails_cleanly(tmp_path: Path) -> None:
    for args, fragment in (
        (["run", "--pipeline", "nas"], "unknown pipeline"),
        (["run", "--config", str(CONFIGS / "tiny.yaml"), "--set", "search.nope=1"], "unknown key"),
        (
            ["run", "--pipeline", "retrain", "--genotype", "NOPE", "--config", str(CONFIGS / "tiny.yaml")],
            "neither a known architecture name",
        ),
    ):
        result = runner.invoke(app, [*args, "--runs-root", str(tmp_path)])
        assert result.exit_code == 2 and fragment in result.stderr, result.output
    assert not list(tmp_path.iterdir())  # nothing started


@pytest.mark.slow
def test_local_search_pipeline_produces_every_artifact(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["run", "--config", str(CONFIGS / "tiny.yaml"), "--runs-root", str(tmp_path), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    run_dir = Path(result.stdout.strip().splitlines()[-1])  # the run directory is the last line
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"genotype", "top1", "top5", "params", "multiply_adds", "stage_seconds", "artifacts"} <= set(summary)
    assert set(summary["stage_seconds"]) == {
        "data-prep",
        "search",
        "derive-genotype",
        "retrain",
        "evaluate",
        "register",
    }
    assert summary["registered_model"] is None and summary["mlflow_run_id"] is None  # tracking is off
    artifacts = {name: Path(path) for name, path in summary["artifacts"].items()}
    assert (artifacts["data-prep/dataset"] / "manifest.json").is_file()
    assert (artifacts["search/supernet"] / "checkpoints" / "search-last.pt").is_file()
    assert artifacts["search/alphas"].is_file()
    assert (artifacts["derive-genotype/genotype"] / "genotype.json").is_file()
    assert "<svg" in artifacts["derive-genotype/cells"].read_text()
    assert (artifacts["retrain/model"] / "model.pt").is_file()
    assert (artifacts["evaluate/evaluation"] / "metrics.json").is_file()
    assert all(Path(p).read_text().startswith("<svg") for p in summary["cell_diagrams"])
    searched = Genotype.from_dict(json.loads((artifacts["search/supernet"] / "genotype.json").read_text()))
    assert summary["genotype"] == searched.to_string()
    outputs = json.loads((artifacts["derive-genotype/genotype"].parent / "executor_output.json").read_text())
    assert outputs["artifacts"]["genotype"]["artifacts"][0]["metadata"]["genotype"] == searched.to_string()
    assert (run_dir / "pipeline.log").stat().st_size > 0


@pytest.mark.slow
def test_local_retrain_pipeline_uses_the_given_genotype(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "run",
            "--pipeline",
            "retrain",
            "--genotype",
            "PDARTS",
            "--config",
            str(CONFIGS / "tiny.yaml"),
            "--runs-root",
            str(tmp_path),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((Path(result.stdout.strip().splitlines()[-1]) / "summary.json").read_text())
    assert summary["genotype"] == reference_genotype("PDARTS").to_string()
    assert set(summary["stage_seconds"]) == {"data-prep", "import-genotype", "retrain", "evaluate", "register"}


def test_submit_creates_one_run_with_the_compiled_pipeline(kfp_api: FakeKfp) -> None:
    host = kfp_api.url
    result = runner.invoke(
        app,
        [
            "submit",
            "--allow-unpinned-images",
            "--inline",  # the spec sent with the run (runs from a pipeline version: test_pipeline_versions.py)
            "--host",
            host,
            "--experiment",
            "nas",
            "--pipeline",
            "retrain",
            "--genotype",
            "DARTS_V2",
            "--config",
            str(CONFIGS / "tiny.yaml"),
            "--run-name",
            "nightly",
        ],
    )
    assert result.exit_code == 0, result.output
    (experiment,) = kfp_api.experiments
    (run,) = kfp_api.runs
    assert "run id: " + run["run_id"] in result.stdout and f"{host}/#/runs/details/{run['run_id']}" in result.stdout
    assert run["experiment_id"] == experiment["experiment_id"] and experiment["display_name"] == "nas"
    assert run["display_name"] == "nightly"
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "cdarts-retrain"
    parameters = run["runtime_config"]["parameters"]
    assert load_config(str(CONFIGS / "tiny.yaml")).to_yaml() == parameters["config"]
    assert Genotype.from_dict(json.loads(parameters["genotype"])) == reference_genotype("DARTS_V2")


def test_submit_to_an_unreachable_host_is_a_one_line_error() -> None:
    result = runner.invoke(
        app,
        ["submit", "--host", "http://127.0.0.1:9", "--config", str(CONFIGS / "tiny.yaml"), "--allow-unpinned-images"],
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "connecting to http://127.0.0.1:9 failed" in lines[0]


@pytest.mark.slow
def test_killed_local_run_resumes_with_the_same_result(tmp_path: Path) -> None:
    """SIGKILL `cdarts run` (the whole process group) during the search, then `--resume` it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from cdarts.checkpoint import load_checkpoint

    cdarts = str(Path(sys.executable).parent / "cdarts")
    config = [
        "--config",
        str(CONFIGS / "tiny.yaml"),
        "--set",
        "search.search_iterations=6",
        "--set",
        "search.sample_ratio=1.0",
        "--no-progress",
    ]
    straight = subprocess.run(
        [cdarts, "run", *config, "--runs-root", str(tmp_path / "straight")], capture_output=True, text=True, timeout=600
    )
    assert straight.returncode == 0, straight.stderr
    expected = json.loads((Path(straight.stdout.strip().splitlines()[-1]) / "summary.json").read_text())

    process = subprocess.Popen(
        [cdarts, "run", *config, "--runs-root", str(tmp_path / "killed")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    mirrored: list[Path] = []
    while time.monotonic() < deadline and process.poll() is None:
        mirrored = list((tmp_path / "killed").glob("*/checkpoints/*/search-last.pt"))
        if mirrored and load_checkpoint(mirrored[0])["next_iteration"] >= 3:
            break
        time.sleep(0.3)
    assert process.poll() is None and mirrored, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    run_dir = mirrored[0].parents[2]
    assert not (run_dir / "summary.json").exists()

    resumed = subprocess.run(
        [cdarts, "run", "--resume", str(run_dir), "--no-progress"], capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["genotype"] == expected["genotype"]
    assert summary["top1"] == expected["top1"] and summary["dataset_digest"] == expected["dataset_digest"]

    # The resumed search started from the mirrored checkpoint, not from scratch.
    def first_step(summary_of_run: dict[str, Any]) -> int:
        log = Path(summary_of_run["artifacts"]["search/supernet"]) / "metrics.jsonl"
        return int(json.loads(log.read_text().splitlines()[0])["step"])

    assert first_step(summary) > first_step(expected)


@pytest.mark.parametrize(("final_state", "exit_code"), [("SUCCEEDED", 0), ("FAILED", 1)])
def test_submit_wait_reports_the_final_state_and_fails_with_the_run(
    kfp_api: FakeKfp, final_state: str, exit_code: int
) -> None:
    kfp_api.finish_as = final_state
    arguments = ["submit", "--host", kfp_api.url, "--pipeline", "retrain", "--genotype", "DARTS_V2"]
    arguments.append("--allow-unpinned-images")
    result = runner.invoke(app, [*arguments, "--config", str(CONFIGS / "tiny.yaml"), "--namespace", "team", "--wait"])
    assert result.exit_code == exit_code, result.output
    assert f"run state: {final_state}" in result.stdout
    assert ("ended FAILED" in result.stderr) == (final_state == "FAILED")


@pytest.mark.slow
def test_a_submitted_run_makes_one_mlflow_tree(
    kfp_api: FakeKfp, mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cdarts submit` opens the parent run before the KFP run exists and passes it on; the
    cluster's execution of that run (here kfp.local with the parameters KFP received, the tasks
    finding our server through CDARTS_MLFLOW_TRACKING_URI as the ConfigMap provides it) nests
    every stage run under it."""
    from mlflow.tracking import MlflowClient

    from pipelines.local_run import run_locally

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDARTS_MLFLOW_TRACKING_URI", mlflow_server)
    experiment_name = f"submitted-{time.time_ns()}"
    result = runner.invoke(
        app,
        [
            *("submit", "--host", kfp_api.url, "--pipeline", "retrain", "--genotype", "DARTS_V2"),
            "--allow-unpinned-images",
            *("--config", str(CONFIGS / "tiny.yaml"), "--set", "tracking.enabled=true"),
            *("--set", f"tracking.experiment={experiment_name}", "--run-name", "nightly"),
        ],
    )
    assert result.exit_code == 0, result.output
    (run,) = kfp_api.runs
    parameters = run["runtime_config"]["parameters"]
    parent_id = parameters["mlflow_parent_run_id"]
    assert f"mlflow parent run: {parent_id}" in result.stdout
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    parent = client.get_run(parent_id)
    assert parent.info.run_name == "nightly" and parent.data.tags["kfp.run_id"] == run["run_id"]

    run_locally("retrain", parameters, tmp_path / "cluster", show_progress=False)

    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(r.info.run_name for r in children) == sorted(
        ["data_prep", "import_genotype", "retrain", "evaluate", "register"]
    )
    assert len(client.search_runs([parent.info.experiment_id])) == 6  # the parent and its five stages
    chain = {step["kind"]: step for step in lineage(mlflow_server, "cdarts-synthetic-darts@champion")}
    retrain = next(r for r in children if r.info.run_name == "retrain")
    assert chain["retrain"]["run_id"] == retrain.info.run_id and chain["dataset"]["run_id"]
    assert client.get_run(parent_id).info.status == "FINISHED"  # ended by the pipeline's exit task


@pytest.mark.slow
def test_the_exit_task_marks_the_parent_run_failed_when_a_stage_fails(
    mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from pipelines.local_run import LocalRunError, run_locally

    monkeypatch.setenv("CDARTS_MLFLOW_TRACKING_URI", mlflow_server)
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.create_experiment(f"failing-{time.time_ns()}")
    parent_id = client.create_run(experiment, run_name="failing").info.run_id
    config = load_config(
        str(CONFIGS / "tiny.yaml"),
        ["tracking.enabled=true", "data.source=cifar10", f"data.location={tmp_path / 'no-such-archive.tar.gz'}"],
    )
    arguments = {"config": config.to_yaml(), "genotype": "DARTS_V2", "mlflow_parent_run_id": parent_id}
    with pytest.raises(LocalRunError, match="data-prep"):
        run_locally("retrain", arguments, tmp_path / "run", show_progress=False)
    assert client.get_run(parent_id).info.status == "FAILED"
