"""Cluster settings in the compiled pipeline: pull secrets, timeouts, deadline/TTL, scratch, data
volumes, pod labels and annotations, per-GPU requests scaled by the run's GPUs; bad values refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cdarts.cli.main import app
from cdarts.errors import ConfigError
from cdarts.task_resources import gpu_task_size, scale_quantity
from pipelines.cluster_settings import parse_cluster_settings, parse_duration, pipeline_options_from
from stages import size_gpu_task

runner = CliRunner()
GPU = "registry.example.com/cdarts-gpu@sha256:" + "a" * 64
CPU = "registry.example.com/cdarts-cpu@sha256:" + "b" * 64


def _compile(tmp_path: Path, *flags: str) -> list[dict[str, Any]]:
    out = tmp_path / "p.yaml"
    result = runner.invoke(
        app, ["compile", "--out", str(out), "--image", f"gpu={GPU}", "--image", f"cpu={CPU}", *flags]
    )
    assert result.exit_code == 0, result.output
    return list(yaml.safe_load_all(out.read_text()))


def test_per_gpu_requests_scale_with_the_runs_gpus() -> None:
    assert scale_quantity("16G", 4) == "64G" and scale_quantity("1.5Gi", 3) == "4.5Gi"
    assert scale_quantity("500m", 3) == "1500m" and scale_quantity("4", 8) == "32"
    size = gpu_task_size(4, 1, ("4", "8"), ("16G", "32G"))
    assert (size.accelerators, size.cpu_request, size.cpu_limit, size.memory_request, size.memory_limit) == (
        4,
        "16",
        "32",
        "64G",
        "128G",
    )
    launcher = gpu_task_size(8, 2, ("4", "8"), ("16G", "32G"))  # the TrainJob's nodes get the GPUs
    assert launcher.accelerators == 0 and launcher.cpu_limit == "1"
    # The component itself, as the cluster runs it.
    outputs = size_gpu_task.python_func(
        gpus=2, nodes=1, cpu_per_gpu="6", cpu_limit_per_gpu="12", memory_per_gpu="24G", memory_limit_per_gpu="48G"
    )
    assert tuple(outputs) == (2, "12", "24", "48G", "96G")
    with pytest.raises(ConfigError, match="at least 1"):
        gpu_task_size(0, 1, ("4", "8"), ("16G", "32G"))


def test_compile_flags_reach_every_task(tmp_path: Path) -> None:
    documents = _compile(
        tmp_path,
        "--image-pull-secret",
        "regcred",
        "--pod-label",
        "kueue.x-k8s.io/queue-name=gpu-queue",
        "--pod-label",
        "cost-centre=nas",
        "--pod-annotation",
        "owner=platform@example.com",
        "--data-pvc",
        "datasets:/data",
        "--scratch-size",
        "200Gi",
        "--cpu-per-gpu",
        "6",
        "--memory-per-gpu",
        "24G",
        "--gpu-task-timeout",
        "3d",
        "--cpu-task-timeout",
        "2h",
        "--pipeline-deadline",
        "10d",
        "--pipeline-ttl",
        "1d",
    )
    ir, platform = documents[0], documents[1]["platforms"]["kubernetes"]
    executors = platform["deploymentSpec"]["executors"]
    gpu_tasks = {"exec-search", "exec-retrain", "exec-evaluate"}
    assert gpu_tasks < set(executors)
    for name, executor in executors.items():
        assert [s["secretName"] for s in executor["imagePullSecret"]] == ["regcred"]
        labels = executor["podMetadata"]["labels"]
        assert labels["kueue.x-k8s.io/queue-name"] == "gpu-queue" and labels["cost-centre"] == "nas"
        assert labels["cdarts.io/pipeline-task"] == "true"  # what the NetworkPolicies admit stays
        assert executor["podMetadata"]["annotations"] == {"owner": "platform@example.com"}
        (scratch,) = executor["genericEphemeralVolume"]
        assert scratch["mountPath"] == "/scratch" and scratch["size"] == "200Gi"
        # exec-retrain-2, exec-evaluate-2: the random baselines' retrain and evaluate, GPU tasks too
        deadline = 3 * 86400 if name.rstrip("-0123456789") in gpu_tasks else 2 * 3600
        assert int(executor["activeDeadlineSeconds"]) == deadline, name
        assert ("pvcMount" in executor) == (name == "exec-data-prep"), name  # only data_prep reads sources
    assert executors["exec-data-prep"]["pvcMount"][0]["mountPath"] == "/data"
    assert platform["pipelineConfig"] == {"activeDeadlineSeconds": 10 * 86400, "resourceTtlOnCompletion": 86400}
    containers = ir["deploymentSpec"]["executors"]
    assert containers["exec-data-prep"]["container"]["env"] == [{"name": "TMPDIR", "value": "/scratch"}]
    # Per-GPU requests go to the sizing tasks, doubled for the limits; evaluate has one GPU's worth.
    tasks = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    sizing = tasks["size-gpu-task"]["inputs"]["parameters"]
    assert {k: v["runtimeValue"]["constant"] for k, v in sizing.items() if "runtimeValue" in v} == {
        "cpu_per_gpu": "6",
        "cpu_limit_per_gpu": "12",
        "memory_per_gpu": "24G",
        "memory_limit_per_gpu": "48G",
    }
    evaluate = containers["exec-evaluate"]["container"]["resources"]
    assert evaluate["resourceCpuRequest"] == "6" and evaluate["resourceMemoryLimit"] == "48G"


def test_a_cluster_settings_file_is_typed_and_flags_override_it(tmp_path: Path) -> None:
    settings = tmp_path / "cluster.yaml"
    settings.write_text(
        yaml.safe_dump(
            {
                "images": {"gpu": GPU, "cpu": CPU},
                "image_pull_secrets": ["from-file"],
                "pod_labels": {"kueue.x-k8s.io/queue-name": "file-queue"},
                "gpu_task_timeout": "12h",
                "mlflow_secret": None,
                "baseline_parallelism": 2,
            }
        )
    )
    out = tmp_path / "p.yaml"
    result = runner.invoke(
        app, ["compile", "--out", str(out), "--cluster-settings", str(settings), "--image-pull-secret", "from-flag"]
    )
    assert result.exit_code == 0, result.output
    executors = list(yaml.safe_load_all(out.read_text()))[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    search = executors["exec-search"]
    assert [s["secretName"] for s in search["imagePullSecret"]] == ["from-flag"]
    assert search["podMetadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "file-queue"
    assert search["activeDeadlineSeconds"] == "43200"
    assert {s["secretName"] for s in search["secretAsEnv"]} == {"cdarts-s3"}  # mlflow_secret: null -> none
    components = next(yaml.safe_load_all(out.read_text()))["components"]
    loops = [c["dag"]["tasks"][t] for c in components.values() if "dag" in c for t in c["dag"]["tasks"]]
    assert [t["iteratorPolicy"] for t in loops if t.get("iteratorPolicy")] == [{"parallelismLimit": 2}]
    for content, fragment in (
        ("imagess: {}", "imagess: Extra inputs are not permitted"),
        ("cpu_per_gpu: lots", "not a positive Kubernetes quantity"),
        ("gpu_task_timeout: soon", "is not a duration"),
        ("data_volumes: [datasets]", "CLAIM:/mount/path"),
        ("baseline_parallelism: -1", "baseline_parallelism: Input should be greater than or equal to 0"),
        ("- a list", "must be a YAML mapping"),
    ):
        settings.write_text(content)
        bad = runner.invoke(app, ["compile", "--out", str(out), "--cluster-settings", str(settings)])
        assert bad.exit_code == 2 and bad.stderr.startswith("cdarts: error:"), bad.output
        assert fragment in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--cpu-per-gpu", "-1"], "not a positive Kubernetes quantity"),
        (["--data-pvc", "Bad_Name:/data"], "CLAIM:/mount/path"),
        (["--data-pvc", "datasets:relative"], "CLAIM:/mount/path"),
        (["--pod-label", "novalue"], "key=value"),
        (["--gpu-task-timeout", "3 weeks"], "is not a duration"),
        (["--scratch-size", "big"], "not a positive Kubernetes quantity"),
    ],
)
def test_bad_compile_flags_are_one_line_errors(flags: list[str], fragment: str, tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    result = runner.invoke(app, ["compile", "--out", str(out), "--allow-unpinned-images", *flags])
    assert result.exit_code == 2 and fragment in result.stderr, result.output
    assert not out.exists()


def test_durations_and_pinning_rules() -> None:
    assert [parse_duration(d, "t") for d in ("90", "90s", "30m", "6h", "7d", "0")] == [90, 90, 1800, 21600, 604800, 0]
    unpinned = parse_cluster_settings({"images": {"gpu": "ghcr.io/x/gpu:1.0", "cpu": CPU}}, "test")
    with pytest.raises(ConfigError, match=r"gpu image ghcr\.io/x/gpu:1\.0 is not pinned by digest"):
        pipeline_options_from(unpinned)
    allowed = parse_cluster_settings({"images": {"gpu": "ghcr.io/x/gpu:1.0"}, "allow_unpinned_images": True}, "t")
    assert pipeline_options_from(allowed).gpu_image == "ghcr.io/x/gpu:1.0"


def test_the_search_task_carries_its_trainjob_settings_scaled_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdarts.runners.multi_node_search import trainjob_settings_for_run
    from cdarts.trainjob.spec import SETTINGS_ENV, TrainJobSettings

    documents = _compile(tmp_path, "--image-pull-secret", "regcred", "--pod-label", "team=nas", "--cpu-per-gpu", "6")
    env = {
        e["name"]: e["value"] for e in documents[0]["deploymentSpec"]["executors"]["exec-search"]["container"]["env"]
    }
    compiled = TrainJobSettings.from_json(env[SETTINGS_ENV])
    assert compiled.image == GPU and compiled.image_pull_secrets == ("regcred",)
    assert compiled.pod_labels == {"team": "nas"} and compiled.cpu_request == "6" and compiled.cpu_limit == "12"
    assert compiled.timeout_seconds == 7 * 86400
    monkeypatch.setenv(SETTINGS_ENV, env[SETTINGS_ENV])
    toleration = {"key": "pool", "operator": "Equal", "value": "h100", "effect": "NoSchedule"}
    run = trainjob_settings_for_run(8, {"pool": "h100"}, [toleration])
    assert (run.cpu_request, run.cpu_limit, run.memory_request, run.memory_limit) == ("48", "96", "128G", "256G")
    assert run.node_selector == {"pool": "h100"} and run.tolerations == (toleration,)
