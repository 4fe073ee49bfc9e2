"""The overlays on Kubeflow Pipelines' SeaweedFS (single- and multi-user): our pods get past
KFP's own NetworkPolicy (rendered beside ours), and every prefix we use is one the key that
writes it may write, on a real SeaweedFS enforcing KFP's per-profile IAM policy."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdarts.errors import StorageError
from cdarts.idempotency import open_ledger
from cdarts.storage import S3Store, open_store
from tests.conftest import REPO_ROOT
from tests.network_policy_eval import Pod, ingress_admits
from tests.seaweedfs_iam import Keys, create_user, seaweedfs_with_iam
from tests.test_manifests import WORKLOAD_KINDS, render

KFP_POLICY = REPO_ROOT / "tests" / "fixtures" / "kfp" / "seaweedfs-networkpolicy.yaml"
CDARTS_POLICY = REPO_ROOT / "k8s" / "kfp-seaweedfs" / "cdarts-s3-policy.json"
SEAWEEDFS = Pod("kubeflow", {"app": "seaweedfs", "application-crd-id": "kubeflow-pipelines"})
PROFILE_LABELS = {"app.kubernetes.io/part-of": "kubeflow-profile", "pipelines.kubeflow.org/enabled": "true"}


def kfp_profile_policy(namespace: str) -> dict[str, Any]:
    """The inline policy KFP's profile controller puts on each profile's SeaweedFS user."""
    prefixes = ["artifacts/*", f"private-artifacts/{namespace}/*", f"private/{namespace}/*", "shared/*"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:Put*", "s3:Get*", "s3:List*"],
                "Resource": [f"arn:aws:s3:::mlpipeline/{prefix}" for prefix in prefixes],
            }
        ],
    }


def _settings(kustomization: str, namespace: str) -> dict[str, str]:
    (config_map,) = [
        doc
        for doc in render(kustomization)
        if doc["kind"] == "ConfigMap"
        and doc["metadata"]["name"] == "cdarts-settings"
        and doc["metadata"]["namespace"] == namespace
    ]
    return dict(config_map["data"])


def _pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    template = doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else doc["spec"]["template"]
    return dict(template["metadata"]["labels"])


def _object_store_clients(kustomization: str) -> list[Pod]:
    """Our pods that talk to the object store, as they run in namespace cdarts."""
    documents = [*render(kustomization), *render("gitops/scheduled")]
    clients = [
        Pod("cdarts", _pod_labels(doc))
        for doc in documents
        if doc["kind"] in WORKLOAD_KINDS and doc["metadata"].get("namespace") == "cdarts"
    ]
    assert len(clients) == 3  # MLflow, the trigger Job, the CronJob
    return clients


@pytest.mark.parametrize("kustomization", ["overlays/kfp-object-store", "overlays/kfp-multi-user"])
def test_our_pods_get_past_kfps_seaweedfs_policy_only_with_ours(kustomization: str) -> None:
    kfp = [doc for doc in yaml.safe_load_all(KFP_POLICY.read_text()) if doc]
    ours = [doc for doc in render(kustomization) if doc["kind"] == "NetworkPolicy"]
    assert {doc["metadata"]["namespace"] for doc in ours} == {"cdarts", "kubeflow"}
    for client in _object_store_clients(kustomization):
        assert not ingress_admits(kfp, SEAWEEDFS, client, 8333), "KFP's policy alone admits our pods?"
        assert ingress_admits([*kfp, *ours], SEAWEEDFS, client, 8333), client
        assert not ingress_admits([*kfp, *ours], SEAWEEDFS, client, 8111)  # the profile controller's port
    both = [*kfp, *ours]
    # Nothing else of KFP's policy changes: other cdarts pods, other namespaces stay out; profile
    # namespaces and KFP's own pods stay in.
    for outsider in (
        Pod("cdarts", {"app.kubernetes.io/name": "something-else"}),
        Pod("default", {"cdarts.io/object-store-client": "true"}),
        Pod("team-vision", {"cdarts.io/object-store-client": "true"}),
    ):
        assert not ingress_admits(both, SEAWEEDFS, outsider, 8333), outsider
    assert ingress_admits(
        both, SEAWEEDFS, Pod("team-vision", {"cdarts.io/pipeline-task": "true"}, PROFILE_LABELS), 8333
    )
    assert ingress_admits(both, SEAWEEDFS, Pod("kubeflow", {"app": "ml-pipeline"}), 8333)
    # Our policy selects KFP's SeaweedFS pod and nothing else of KFP's.
    (admit,) = [doc for doc in ours if doc["metadata"]["namespace"] == "kubeflow"]
    assert admit["spec"]["podSelector"] == {"matchLabels": {"app": "seaweedfs"}}


def test_the_overlays_put_each_prefix_where_its_writer_may_write() -> None:
    for kustomization, pipeline_namespace in [
        ("overlays/kfp-object-store", "kubeflow"),
        ("overlays/kfp-multi-user", "team-vision"),
    ]:
        cdarts = _settings(kustomization, "cdarts")
        tasks = _settings(kustomization, pipeline_namespace)
        assert cdarts["CDARTS_PIPELINE_NAMESPACE"] == pipeline_namespace
        assert (
            cdarts["CDARTS_S3_ENDPOINT"]
            == tasks["CDARTS_S3_ENDPOINT"]
            == "http://seaweedfs.kubeflow.svc.cluster.local:8333"
        )
        # Written by tasks with their profile's key: under private-artifacts/<their namespace>/.
        assert (
            cdarts["CDARTS_CHECKPOINT_ROOT"]
            == f"s3://mlpipeline/private-artifacts/{pipeline_namespace}/cdarts/checkpoints"
        )
        # Written by MLflow and the trigger with the cdarts key: a prefix no profile key reaches.
        for key in ("MLFLOW_ARTIFACTS_DESTINATION", "CDARTS_IDEMPOTENCY_LEDGER"):
            assert cdarts[key].startswith("s3://mlpipeline/cdarts/"), key
        assert (cdarts["CDARTS_TASK_S3_SECRET"], cdarts["CDARTS_TASK_S3_SECRET_KEYS"]) == (
            "mlpipeline-minio-artifact",
            "accesskey,secretkey",
        )
    multi_user = render("overlays/kfp-multi-user")
    bindings = {doc["metadata"]["name"]: doc for doc in multi_user if doc["kind"] == "RoleBinding"}
    assert bindings["cdarts-trainjob-launcher"]["metadata"]["namespace"] == "team-vision"
    assert bindings["cdarts-trainjob-launcher"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "default-editor", "namespace": "team-vision"}
    ]
    assert bindings["cdarts-retrain-trigger"]["subjects"][0]["namespace"] == "cdarts"


@pytest.fixture(scope="module")
def kfp_seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Keys]]]:
    """A real SeaweedFS set up as multi-user KFP sets it up: bucket mlpipeline, a user per profile
    with KFP's policy, and our cdarts user with the policy we ship."""
    with seaweedfs_with_iam(tmp_path_factory.mktemp("kfp-seaweedfs"), ["mlpipeline"]) as endpoint:
        keys = {
            "cdarts": create_user(endpoint, "cdarts", json.loads(CDARTS_POLICY.read_text())),
            "team-vision": create_user(endpoint, "team-vision", kfp_profile_policy("team-vision")),
            "team-b": create_user(endpoint, "team-b", kfp_profile_policy("team-b")),
        }
        time.sleep(1.5)  # the S3 gateway picks up IAM changes from the filer
        yield endpoint, keys


def _as(monkeypatch: pytest.MonkeyPatch, endpoint: str, keys: Keys) -> None:
    monkeypatch.setenv("CDARTS_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys.secret_key)
    monkeypatch.setenv("CDARTS_S3_RETRY_SECONDS", "5")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)


def _round_trip(uri: str, tmp_path: Path) -> None:
    store, prefix = open_store(uri)
    assert isinstance(store, S3Store)
    store.check()
    source = tmp_path / "probe.bin"
    source.write_bytes(b"cdarts" * 100)
    key = f"{prefix}/probe-{time.monotonic_ns()}.bin"
    store.upload_file(source, key)
    assert store.exists(key)
    store.download_file(key, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()


@pytest.mark.slow
def test_profile_keys_write_the_checkpoint_root_and_nothing_of_ours(
    kfp_seaweedfs: tuple[str, dict[str, Keys]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    endpoint, keys = kfp_seaweedfs
    settings = _settings("overlays/kfp-multi-user", "cdarts")
    _as(monkeypatch, endpoint, keys["team-vision"])
    _round_trip(settings["CDARTS_CHECKPOINT_ROOT"], tmp_path)
    # A tenant cannot forge a ledger record or an MLflow artifact.
    ledger_store, ledger_prefix = open_store(settings["CDARTS_IDEMPOTENCY_LEDGER"])
    with pytest.raises(StorageError, match="AccessDenied"):
        ledger_store.create_if_absent(f"{ledger_prefix}/records/forged", b"{}")
    with pytest.raises(StorageError, match="AccessDenied"):
        _round_trip(settings["MLFLOW_ARTIFACTS_DESTINATION"], tmp_path)
    # Another profile's key cannot touch this profile's checkpoints.
    _as(monkeypatch, endpoint, keys["team-b"])
    with pytest.raises(StorageError, match="AccessDenied"):
        _round_trip(settings["CDARTS_CHECKPOINT_ROOT"], tmp_path)
    # The mlpipeline/cdarts/... layout of the old overlay is out of a profile key's reach.
    with pytest.raises(StorageError, match="AccessDenied"):
        _round_trip("s3://mlpipeline/cdarts/checkpoints", tmp_path)


@pytest.mark.slow
def test_the_cdarts_key_runs_the_ledger_and_mlflow_prefixes_only(
    kfp_seaweedfs: tuple[str, dict[str, Keys]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    endpoint, keys = kfp_seaweedfs
    settings = _settings("overlays/kfp-multi-user", "cdarts")
    _as(monkeypatch, endpoint, keys["cdarts"])
    ledger = open_ledger(settings["CDARTS_IDEMPOTENCY_LEDGER"])  # probes conditional writes, removes the probe
    _round_trip(settings["MLFLOW_ARTIFACTS_DESTINATION"], tmp_path)
    store, prefix = open_store(settings["CDARTS_IDEMPOTENCY_LEDGER"])
    record = f"{prefix}/records/k-{time.monotonic_ns()}"
    assert store.create_if_absent(record, b"1") and not store.create_if_absent(record, b"2")
    version = store.read_versioned(record)
    assert version is not None and store.replace_if_version(record, b"3", version[1])
    assert ledger.store.list_keys(ledger.prefix) == [record]
    # Tenants' artifacts stay closed to it.
    with pytest.raises(StorageError, match="AccessDenied"):
        _round_trip(settings["CDARTS_CHECKPOINT_ROOT"], tmp_path)
