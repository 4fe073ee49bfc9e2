"""Multi-node search on Kubeflow Trainer: the TrainJob body (valid for the published CRD, the
task's image and scheduling, credentials only as references), the launcher against a fake
Kubernetes API (complete, failed, node 0's log, API refusals, interruption, timeout, an earlier
attempt's TrainJob), and the per-node script under sh against a real S3 server."""

from __future__ import annotations

import _thread
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from cdarts.config import load_config
from cdarts.errors import DataError
from cdarts.runners.multi_node_search import run_multi_node_search, trainjob_settings_from_env
from cdarts.storage import open_store
from cdarts.trainjob import node_data
from cdarts.trainjob.client import run_trainjob
from cdarts.trainjob.spec import (
    POD_LABELS,
    PodOwner,
    TrainJobError,
    TrainJobSettings,
    build_trainjob,
    check_name,
    trainjob_name,
)
from tests.conftest import CONFIGS, REPO_ROOT, S3_ACCESS_KEY, S3_SECRET_KEY
from tests.fake_kubernetes_server import (
    FakeKubernetes,
    FakeTrainJob,
    container_env,
    hanging_node,
    scripted_node,
    start_fake_kubernetes,
)
from tests.test_manifests import _validate_custom_resource

SETTINGS = TrainJobSettings(
    image="registry.example.com/ml/cdarts-gpu@sha256:" + "0" * 64,
    namespace="kubeflow",
    node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
    image_pull_secrets=("regcred",),
    pod_labels={"team": "nas"},
    pod_annotations={"sidecar.istio.io/inject": "false"},
    s3_secret="mlpipeline-minio-artifact",
    s3_secret_fields=("accesskey", "secretkey"),
    shm_size="16Gi",
    scratch_size="500Gi",
    scratch_storage_class="local-ssd",
    timeout_seconds=86400,
)
OWNER = PodOwner("cdarts-search-x7k2p-system-container-impl-2219", "6f1c2d3e-0000-4000-8000-000000000001")
NAME = "cdarts-search-0123456789ab"
FAST = {"poll_seconds": 0.02}


def _body(**changes: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "settings": SETTINGS,
        "name": NAME,
        "nodes": 2,
        "gpus_per_node": 8,
        "dataset_uri": "s3://mlpipeline/v2/artifacts/run-1/data-prep/dataset",
        "output_uri": "s3://mlpipeline/v2/artifacts/run-1/search/supernet.trainjob",
        "config_yaml": "name: tiny\n",
        "checkpoint_mirror": "s3://cdarts/checkpoints/run-1/search",
        "parent_run_id": "parent-run",
        "kfp_run_id": "run-1",
        "owner": OWNER,
    }
    return build_trainjob(**{**arguments, **changes})


def _pod_template(body: dict[str, Any]) -> dict[str, Any]:
    (patch,) = body["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"  # the torch runtimes' replicated job
    return dict(node["template"]["spec"]["template"])


def _api(fake: FakeKubernetes) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    configuration.host = fake.url
    return k8s.ApiClient(configuration)


def _end(fake: FakeKubernetes, job: FakeTrainJob, succeeded: bool) -> None:
    with fake.changed:
        job.succeeded = succeeded
        fake.changed.notify_all()


# -- the TrainJob body ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{}, {"gpus_per_node": 0, "checkpoint_mirror": None, "owner": None}, {"settings": TrainJobSettings(image="i")}],
    ids=["gpu", "cpu", "defaults"],
)
def test_the_trainjob_matches_the_published_crd_schema(changes: dict[str, Any]) -> None:
    body = _body(**changes)
    _validate_custom_resource(body)
    assert body["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }


def test_the_trainjob_carries_the_tasks_image_scheduling_labels_and_owner() -> None:
    body = _body()
    trainer = body["spec"]["trainer"]
    assert trainer["image"] == SETTINGS.image
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 8)
    assert trainer["resourcesPerNode"] == {
        "requests": {"cpu": "4", "memory": "16G", "nvidia.com/gpu": "8"},
        "limits": {"cpu": "8", "memory": "32G", "nvidia.com/gpu": "8"},
    }
    pod = _pod_template(body)
    assert pod["metadata"]["labels"]["cdarts.io/pipeline-task"] == "true"  # admitted by our NetworkPolicies
    assert pod["metadata"]["labels"]["team"] == "nas"
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "500Gi"}}}
    assert pod["spec"]["volumes"] == [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
        {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {**claim, "storageClassName": "local-ssd"}}}},
    ]
    (node,) = pod["spec"]["containers"]
    assert node == {
        "name": "node",
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "scratch", "mountPath": "/scratch"}],
    }
    assert {"name": "TMPDIR", "value": "/scratch"} in trainer["env"]  # the dataset and the output go there
    assert body["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": OWNER.name, "uid": OWNER.uid}
    ]
    assert body["metadata"]["namespace"] == "kubeflow"
    assert body["spec"]["activeDeadlineSeconds"] == 86400
    # Trainer's torch plugin sets the rendezvous and rejects a TrainJob that sets it itself.
    assert not [env for env in trainer["env"] if env["name"].startswith("PET_")]
    script = trainer["command"][-1]
    assert '--checkpoint-mirror "$CDARTS_CHECKPOINT_MIRROR"' in script
    assert '--node-rank="$PET_NODE_RANK"' in script and '--publish "$CDARTS_OUTPUT_URI"' in script

    cpu = _body(gpus_per_node=0, checkpoint_mirror=None, owner=None)
    assert cpu["spec"]["trainer"]["numProcPerNode"] == 1
    assert "nvidia.com/gpu" not in cpu["spec"]["trainer"]["resourcesPerNode"]["limits"]
    assert (
        "ownerReferences" not in cpu["metadata"] and "--checkpoint-mirror" not in cpu["spec"]["trainer"]["command"][-1]
    )
    defaults = _body(settings=TrainJobSettings(image="i"))
    assert [volume["name"] for volume in _pod_template(defaults)["spec"]["volumes"]] == ["dshm"]
    assert "TMPDIR" not in {env["name"] for env in defaults["spec"]["trainer"]["env"]}


def test_the_hand_run_template_patches_the_node_pods_as_the_launcher_does() -> None:
    (template,) = yaml.safe_load_all((REPO_ROOT / "k8s" / "trainer" / "search-trainjob.yaml").read_text())
    built, hand_run = _body(), template["spec"]["runtimePatches"][0]
    assert hand_run["manager"] == built["spec"]["runtimePatches"][0]["manager"]
    pod = _pod_template(template)
    assert pod["metadata"]["labels"] == POD_LABELS
    shm_mount = {"name": "dshm", "mountPath": "/dev/shm"}
    assert pod["spec"]["containers"] == [{"name": "node", "volumeMounts": [shm_mount]}]
    assert shm_mount in _pod_template(built)["spec"]["containers"][0]["volumeMounts"]
    assert [v["emptyDir"]["medium"] for v in pod["spec"]["volumes"] if v["name"] == "dshm"] == ["Memory"]
    assert '--publish "$CDARTS_OUTPUT_URI"' in template["spec"]["trainer"]["command"][-1]


def test_credentials_reach_the_nodes_only_as_secret_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)  # what the launching task holds
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "mlflow-password-42")
    body = _body()
    env = {entry["name"]: entry for entry in body["spec"]["trainer"]["env"]}
    secret = {name: entry["valueFrom"]["secretKeyRef"] for name, entry in env.items() if "secretKeyRef" in str(entry)}
    assert secret == {
        "AWS_ACCESS_KEY_ID": {"name": "mlpipeline-minio-artifact", "key": "accesskey", "optional": True},
        "AWS_SECRET_ACCESS_KEY": {"name": "mlpipeline-minio-artifact", "key": "secretkey", "optional": True},
        "MLFLOW_TRACKING_USERNAME": {"name": "cdarts-mlflow", "key": "MLFLOW_TRACKING_USERNAME", "optional": True},
        "MLFLOW_TRACKING_PASSWORD": {"name": "cdarts-mlflow", "key": "MLFLOW_TRACKING_PASSWORD", "optional": True},
    }
    for key in ("CDARTS_MLFLOW_TRACKING_URI", "CDARTS_S3_ENDPOINT"):
        assert env[key]["valueFrom"]["configMapKeyRef"] == {"name": "cdarts-settings", "key": key, "optional": True}
    text = json.dumps(body)
    assert S3_SECRET_KEY not in text and "mlflow-password-42" not in text
    for name, entry in env.items():
        if re.search(r"SECRET|PASSWORD|ACCESS_KEY|TOKEN", name):
            assert "value" not in entry, name
    bare = _body(settings=TrainJobSettings(image="i", s3_secret=None, mlflow_secret=None, settings_config_map=None))
    assert "valueFrom" not in json.dumps(bare["spec"]["trainer"]["env"])


def test_trainjob_names_are_per_output_location_and_fit_jobset_pod_names() -> None:
    name = trainjob_name("s3://mlpipeline/v2/artifacts/run-1/search/supernet")
    assert name == trainjob_name("s3://mlpipeline/v2/artifacts/run-1/search/supernet")
    assert name != trainjob_name("s3://mlpipeline/v2/artifacts/run-2/search/supernet")
    check_name(name, 128)
    check_name("c" * 47, 16)  # its last pod: 47 + len("-node-0-15-abcde") = 63 characters
    for bad in ["Cdarts-search", "1-search", "cdarts_search", "cdarts-search-", "c" * 48]:
        with pytest.raises(TrainJobError, match="not a usable TrainJob name"):
            check_name(bad, 16)
    with pytest.raises(TrainJobError, match="not an s3:// location"):
        _body(dataset_uri="/mnt/data/prepared")
    with pytest.raises(TrainJobError, match="nodes >= 1"):
        _body(nodes=0)


def test_settings_travel_as_one_json_value(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TrainJobSettings.from_json(SETTINGS.to_json()) == SETTINGS
    monkeypatch.setenv("CDARTS_TRAINJOB_SETTINGS", SETTINGS.to_json())
    assert trainjob_settings_from_env() == SETTINGS  # what the search stage calls
    for text in ['{"image": "i", "gpus": 8}', "[]", "{"]:
        with pytest.raises(TrainJobError, match="TrainJob settings are not valid") as caught:
            TrainJobSettings.from_json(text)
        assert "\n" not in str(caught.value)
    monkeypatch.delenv("CDARTS_TRAINJOB_SETTINGS")
    with pytest.raises(TrainJobError, match="CDARTS_TRAINJOB_SETTINGS"):
        TrainJobSettings.from_env()


# -- the launcher against a fake API server ------------------------------------------------------------


def test_a_completed_trainjob_returns_after_streaming_node_zeros_log() -> None:
    fake = start_fake_kubernetes(node_zero=scripted_node(["rank 0: cycle 1/2", "rank 0: cycle 2/2"]))
    out = io.StringIO()
    run_trainjob(_body(), "kubeflow", _api(fake), out=out, **FAST)
    assert [body["metadata"]["name"] for body in fake.created] == [NAME]
    assert fake.created[0]["spec"] == _body()["spec"]
    assert "rank 0: cycle 1/2\nrank 0: cycle 2/2\n" in out.getvalue()
    assert fake.log_requests and all(pod.startswith(f"{NAME}-node-0-0-") for pod in fake.log_requests)
    assert fake.deleted == []  # kept; it goes with the task pod that owns it


def test_a_log_is_streamed_once_its_container_has_started() -> None:
    fake = start_fake_kubernetes(
        node_zero=scripted_node(["rank 0: started"]),
        finish_after_polls=10,
        fail_with={"log": (400, 'container "node" in pod "p" is waiting to start: ContainerCreating')},
        fail_times={"log": 2},
    )
    out = io.StringIO()
    run_trainjob(_body(), "kubeflow", _api(fake), out=out, **FAST)
    assert out.getvalue().count("rank 0: started") == 1
    assert len(fake.log_requests) == 1 and fake.fail_times == {"log": 0}  # served after two refusals


def test_a_failed_trainjob_is_one_line_naming_it_and_the_reason() -> None:
    fake = start_fake_kubernetes(
        node_zero=scripted_node(["Traceback (most recent call last):", "RuntimeError: NCCL error"], succeeds=False),
        failure_reason="FailedJobs",
        failure_message="jobset failed:\n job cdarts-node-0 has failed pods",
    )
    out = io.StringIO()
    with pytest.raises(TrainJobError) as caught:
        run_trainjob(_body(), "kubeflow", _api(fake), out=out, **FAST)
    assert (
        str(caught.value)
        == f"TrainJob kubeflow/{NAME} failed: FailedJobs: jobset failed: job cdarts-node-0 has failed pods"
    )
    assert "RuntimeError: NCCL error" in out.getvalue()  # the failed rank 0's own words are in the task log


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (
            403,
            'trainjobs.trainer.kubeflow.org is forbidden: User "system:serviceaccount:kubeflow:default" cannot create '
            'resource "trainjobs" in API group "trainer.kubeflow.org" in the namespace "kubeflow"',
            f"not allowed to create TrainJob {NAME} in namespace kubeflow (403 trainjobs.trainer.kubeflow.org is "
            "forbidden",
        ),
        (404, "the server could not find the requested resource", "is Kubeflow Trainer installed?"),
        (500, "etcdserver: request timed out", f"cannot create TrainJob {NAME} in namespace kubeflow (500 etcdserver"),
    ],
    ids=["forbidden", "no-crd", "server-error"],
)
def test_api_refusals_are_one_line_errors(status: int, message: str, expected: str) -> None:
    fake = start_fake_kubernetes(fail_with={"create": (status, message)})
    with pytest.raises(TrainJobError) as caught:
        run_trainjob(_body(), "kubeflow", _api(fake), out=io.StringIO(), **FAST)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)
    if status == 403:
        assert "k8s/pipeline-namespace/rbac.yaml" in str(caught.value)
    assert fake.created == []


def test_an_unreachable_api_server_is_one_line() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    with pytest.raises(TrainJobError, match=f"the Kubernetes API at http://127.0.0.1:{port} is unreachable"):
        run_trainjob(_body(), "kubeflow", k8s.ApiClient(configuration), out=io.StringIO(), **FAST)


def _sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize(
    ("interrupt", "raised"),
    [(_sigterm, TrainJobError), (_thread.interrupt_main, KeyboardInterrupt)],
    ids=["sigterm", "ctrl-c"],
)
def test_an_interrupted_launcher_deletes_its_trainjob(
    interrupt: Callable[[], None], raised: type[BaseException]
) -> None:
    fake = start_fake_kubernetes(node_zero=hanging_node(["rank 0: started"]))
    fake.on_poll = lambda polls: interrupt() if polls == 3 else None
    handler = signal.getsignal(signal.SIGTERM)
    out = io.StringIO()
    # What a terminal's ctrl-c reaches, even when the suite itself runs as a background job
    # (which inherits SIGINT ignored, and then interrupt_main does nothing).
    sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(raised) as caught:
            run_trainjob(_body(), "kubeflow", _api(fake), out=out, **FAST)
    finally:
        signal.signal(signal.SIGINT, sigint)
    assert [name for name, _ in fake.deleted] == [NAME]
    assert f"interrupted: deleted TrainJob kubeflow/{NAME}" in out.getvalue()
    if raised is TrainJobError:
        assert str(caught.value) == f"interrupted (SIGTERM): deleted TrainJob kubeflow/{NAME}"
    assert signal.getsignal(signal.SIGTERM) is handler  # restored


def test_a_trainjob_that_outlasts_the_timeout_is_deleted() -> None:
    fake = start_fake_kubernetes(node_zero=hanging_node([]))
    with pytest.raises(TrainJobError, match=f"TrainJob kubeflow/{NAME} did not finish within 0.2 s; deleted it"):
        run_trainjob(_body(), "kubeflow", _api(fake), timeout_seconds=0.2, out=io.StringIO(), **FAST)
    assert [name for name, _ in fake.deleted] == [NAME]


@pytest.mark.parametrize("earlier_failed", [False, True], ids=["running", "failed"])
def test_a_retried_task_follows_a_running_predecessor_and_replaces_a_failed_one(earlier_failed: bool) -> None:
    fake = start_fake_kubernetes(node_zero=scripted_node(["attempt 2"]))
    earlier = fake.add(_body(), succeeded=False if earlier_failed else None)
    if not earlier_failed:
        threading.Timer(0.2, _end, (fake, earlier, True)).start()
    out = io.StringIO()
    run_trainjob(_body(), "kubeflow", _api(fake), out=out, **FAST)
    if earlier_failed:  # deleted with its pods before the new one starts, which then completes
        assert fake.deleted == [(NAME, "Foreground")] and len(fake.created) == 1
        assert "replacing TrainJob" in out.getvalue() and "attempt 2" in out.getvalue()
    else:
        assert fake.deleted == [] and fake.created == []
        assert "an earlier attempt of this task): following it" in out.getvalue()


def test_the_launcher_refuses_locations_the_nodes_cannot_reach(tmp_path: Path) -> None:
    experiment = load_config(str(CONFIGS / "tiny.yaml"))
    for dataset in ["gs://bucket/dataset", str(tmp_path)]:
        with pytest.raises(TrainJobError, match="reach S3 only"):
            run_multi_node_search(
                experiment, dataset, "minio://b/out", tmp_path, 2, 1, None, "", "run-1", SETTINGS, api_client=object()
            )


# -- what the nodes run, against a real S3 server -------------------------------------------------------


def _upload_as_artifact(local: Path, uri: str) -> None:
    """Upload the files of ``local`` under ``uri`` as KFP does for an output artifact (no manifest)."""
    store, prefix = open_store(uri)
    for path in sorted(local.rglob("*")):
        if path.is_file():
            store.upload_file(path, f"{prefix}/{path.relative_to(local).as_posix()}")


def test_the_processes_of_a_node_fetch_the_dataset_once(
    s3_env: str, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"s3://cdarts/v2/artifacts/{uuid.uuid4().hex}/dataset"
    _upload_as_artifact(tiny_dataset, uri)
    fetches: list[str] = []
    fetch = node_data.fetch_to_local
    monkeypatch.setattr(node_data, "fetch_to_local", lambda u, w: (fetches.append(u), fetch(u, w))[1])
    with ThreadPoolExecutor(4) as pool:  # as torchrun's processes on one node
        paths = list(pool.map(lambda _: node_data.fetch_prepared_dataset(uri, tmp_path / "cache"), range(4)))
    assert len(set(paths)) == 1 and fetches == [uri]
    assert sorted(p.name for p in paths[0].iterdir()) == sorted(p.name for p in tiny_dataset.iterdir())
    assert not list((tmp_path / "cache").glob("*.partial"))
    not_prepared = f"s3://cdarts/v2/artifacts/{uuid.uuid4().hex}/dataset"
    store, prefix = open_store(not_prepared)
    store.upload_file(tiny_dataset / "train_labels.npy", f"{prefix}/train_labels.npy")
    with pytest.raises(DataError, match="is not a prepared dataset"):
        node_data.fetch_prepared_dataset(not_prepared, tmp_path / "cache")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_a_multi_node_search_returns_what_rank_0_published(
    s3_env: str, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The TrainJob's own command runs under sh with the environment the kubelet would give it
    (its Secret and ConfigMap references resolved, Trainer's PET_* rendezvous): real torchrun,
    the dataset fetched from S3, the search, rank 0's publish; the launcher returns that result."""
    run = uuid.uuid4().hex
    _upload_as_artifact(tiny_dataset, f"s3://cdarts/v2/artifacts/{run}/data-prep/dataset")
    secrets = {"mlpipeline-minio-artifact": {"accesskey": S3_ACCESS_KEY, "secretkey": S3_SECRET_KEY}}
    config_maps = {"cdarts-settings": {"CDARTS_S3_ENDPOINT": s3_env}}
    node_tmp = tmp_path / "node-0"
    node_tmp.mkdir()

    def kubelet(body: dict[str, Any], write: Callable[[str], None], deleted: threading.Event) -> bool:
        trainer = body["spec"]["trainer"]
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(node_tmp),
            "TMPDIR": str(node_tmp),
            "PET_NNODES": str(trainer["numNodes"]),
            "PET_NPROC_PER_NODE": str(trainer["numProcPerNode"]),
            "PET_NODE_RANK": "0",
            "PET_MASTER_ADDR": "127.0.0.1",
            "PET_MASTER_PORT": str(_free_port()),
            **container_env(body, secrets, config_maps),
        }
        process = subprocess.Popen(
            trainer["command"], env=env, cwd=node_tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            write(line)
        return process.wait() == 0

    fake = start_fake_kubernetes(node_zero=kubelet, finish_after_polls=1)
    experiment = load_config(
        str(CONFIGS / "tiny.yaml"),
        ["search.search_iterations=1", "search.warmup_epochs=0", "search.eval_warmup_epochs=0"],
    )
    settings = TrainJobSettings(
        image="cdarts-cpu",
        namespace="kubeflow",
        s3_secret="mlpipeline-minio-artifact",
        s3_secret_fields=("accesskey", "secretkey"),
    )
    out_dir = tmp_path / "supernet"
    result = run_multi_node_search(
        experiment,
        f"minio://cdarts/v2/artifacts/{run}/data-prep/dataset",
        f"minio://cdarts/v2/artifacts/{run}/search/supernet.trainjob",
        out_dir,
        nodes=1,
        gpus_per_node=0,
        checkpoint_mirror=None,
        parent_run_id="",
        kfp_run_id=run,
        settings=settings,
        api_client=_api(fake),
        poll_seconds=0.1,
    )
    output = capsys.readouterr().out
    assert result.completed and result.cycles_completed == 1
    assert result.genotype_path == out_dir / "genotype.json" and result.alphas_path == out_dir / "alphas.pt"
    assert f"genotype: {result.genotype.to_string()}" in output  # rank 0's log, streamed into ours
    assert re.search(r"published \d+ files -> s3://cdarts/v2/artifacts/\w+/search/supernet.trainjob", output)
    assert list((node_tmp / "cdarts-data").iterdir())  # fetched from S3 on the node, not read from here
