"""The Kubeflow Trainer v2 ``TrainJob`` of a multi-node search, as plain data (no API calls).

The TrainJob runs on the ``torch-distributed`` ClusterTrainingRuntime, which starts one pod per
node (a JobSet with one indexed Job, replicated job and container both named ``node``) and gives
each the torchrun rendezvous in ``PET_*`` variables. Every node runs :data:`NODE_SCRIPT`:
``torchrun`` over ``cdarts stage search``, whose processes fetch the prepared dataset from its
``s3://`` prefix once per node and whose rank 0 (on node 0) publishes the finished output
directory, manifest last. Everything else the pods need arrives as environment variables;
credentials only as references to Kubernetes Secrets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from cdarts.errors import CdartsError
from cdarts.safe_yaml import load_json

API_GROUP = "trainer.kubeflow.org"
API_VERSION = "v1alpha1"
PLURAL = "trainjobs"
# The trainer's replicated job and container in the torch runtimes (kubeflow/trainer constants.Node).
NODE = "node"
SETTINGS_ENV = "CDARTS_TRAINJOB_SETTINGS"
SCRATCH_PATH = "/scratch"
PATCH_MANAGER = "cdarts.io/multi-node-search"
POD_LABELS = {
    "cdarts.io/pipeline-task": "true",  # what our NetworkPolicies admit to MLflow and the object store
    "app.kubernetes.io/part-of": "cdarts-pipelines",
    "app.kubernetes.io/component": "search",
}
SETTINGS_KEYS = ("CDARTS_MLFLOW_TRACKING_URI", "CDARTS_S3_ENDPOINT")
MLFLOW_SECRET_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
_TUPLE_FIELDS = ("tolerations", "image_pull_secrets", "s3_secret_fields")  # JSON has lists only
_RFC1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class TrainJobError(CdartsError):
    """A TrainJob could not be built, created, followed, or it failed."""


@dataclass(frozen=True)
class TrainJobSettings:
    """Cluster-side settings of the TrainJob, handed to the search task by the compiled pipeline
    (values only known at run time, such as a run's tolerations, go in with ``dataclasses.replace``).

    ``namespace`` None: the launching pod's own. ``tolerations`` are Kubernetes toleration dicts
    (key, operator, value, effect). ``gpus_per_node`` is not here: it is a run-time parameter.
    ``timeout_seconds`` becomes the TrainJob's ``activeDeadlineSeconds`` (None: no deadline).
    ``scratch_size``: a generic ephemeral volume of that size at ``/scratch`` (``$TMPDIR``: the
    fetched dataset and the output go there), as the KFP tasks get; None: the container's own disk.
    The S3 Secret holds the access key and secret key under ``s3_secret_fields``; the MLflow one
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``; the ConfigMap the endpoints.
    """

    image: str
    namespace: str | None = None
    runtime: str = "torch-distributed"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()
    cpu_request: str = "4"
    cpu_limit: str = "8"
    memory_request: str = "16G"
    memory_limit: str = "32G"
    accelerator_resource: str = "nvidia.com/gpu"
    image_pull_secrets: tuple[str, ...] = ()
    pod_labels: dict[str, str] = field(default_factory=dict)
    pod_annotations: dict[str, str] = field(default_factory=dict)
    s3_secret: str | None = "cdarts-s3"
    s3_secret_fields: tuple[str, str] = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    mlflow_secret: str | None = "cdarts-mlflow"
    settings_config_map: str | None = "cdarts-settings"
    shm_size: str = "8Gi"
    scratch_size: str | None = None
    scratch_storage_class: str | None = None
    timeout_seconds: int | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainJobSettings:
        """The inverse of :meth:`to_json`; unknown or missing fields are a one-line error."""
        try:
            data = load_json(text, "the TrainJob settings")
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            values: dict[str, Any] = {k: tuple(v) if k in _TUPLE_FIELDS else v for k, v in data.items()}
            return cls(**values)
        except (ValueError, TypeError) as error:
            raise TrainJobError(f"TrainJob settings are not valid: {error}".splitlines()[0]) from None

    @classmethod
    def from_env(cls) -> TrainJobSettings:
        """The settings the compiled pipeline hands the task in ``$CDARTS_TRAINJOB_SETTINGS``."""
        text = os.environ.get(SETTINGS_ENV)
        if not text:
            raise TrainJobError(f"a multi-node search needs the TrainJob settings in ${SETTINGS_ENV}")
        return cls.from_json(text)


@dataclass(frozen=True)
class PodOwner:
    """The pod that launches the TrainJob; as its owner, its deletion garbage-collects the TrainJob."""

    name: str
    uid: str

    @classmethod
    def from_env(cls) -> PodOwner | None:
        """The KFP task pod (``KFP_POD_NAME``, ``KFP_POD_UID``, which KFP sets in task pods), if any."""
        name, uid = os.environ.get("KFP_POD_NAME"), os.environ.get("KFP_POD_UID")
        return cls(name, uid) if name and uid else None


def trainjob_name(output_uri: str) -> str:
    """A name derived from where the result goes: one per task execution (a KFP retry of the same
    task gets the same output URI, hence the same name, and finds its predecessor's TrainJob)."""
    return f"cdarts-search-{hashlib.sha256(output_uri.encode()).hexdigest()[:12]}"


def check_name(name: str, nodes: int) -> None:
    """TrainJob names are RFC 1035 labels, and JobSet names its pods
    ``<name>-node-0-<index>-<5 random>``, which must fit in 63 characters too."""
    longest_pod = f"{name}-{NODE}-0-{nodes - 1}-abcde"
    if not _RFC1035_LABEL.match(name) or len(longest_pod) > 63:
        raise TrainJobError(
            f"{name!r} is not a usable TrainJob name: lowercase letters, digits and '-', starting with a letter, "
            f"at most {63 - len(longest_pod) + len(name)} characters for {nodes} nodes"
        )


# Every node runs this. torchrun's processes fetch the dataset (once per node) and rank 0, on
# node 0, publishes the output; values come from the environment, so no URI is ever parsed by sh.
# The work directory is not called "cdarts": in the pod's working directory (an image with WORKDIR
# /tmp), `python -m cdarts` would import that directory instead of the package.
NODE_SCRIPT = """\
set -eu
work="${TMPDIR:-/tmp}/cdarts-node"
mkdir -p "$work"
printf '%s\\n' "$CDARTS_CONFIG_YAML" > "$work/config.yaml"
exec torchrun --nnodes="$PET_NNODES" --nproc-per-node="$PET_NPROC_PER_NODE" --node-rank="$PET_NODE_RANK" \\
  --master-addr="$PET_MASTER_ADDR" --master-port="$PET_MASTER_PORT" \\
  -m cdarts stage search --config "$work/config.yaml" --data "$CDARTS_DATASET_URI" --out "$work/search" \\
  --mlflow-parent-run-id "$CDARTS_MLFLOW_PARENT_RUN_ID" --kfp-run-id "$CDARTS_KFP_RUN_ID" \\
  --publish "$CDARTS_OUTPUT_URI" --no-progress"""
MIRROR_ARGUMENT = ' --checkpoint-mirror "$CDARTS_CHECKPOINT_MIRROR"'


def _env(
    settings: TrainJobSettings,
    dataset_uri: str,
    output_uri: str,
    config_yaml: str,
    checkpoint_mirror: str | None,
    parent_run_id: str,
    kfp_run_id: str,
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "CDARTS_DATASET_URI", "value": dataset_uri},
        {"name": "CDARTS_OUTPUT_URI", "value": output_uri},
        {"name": "CDARTS_CONFIG_YAML", "value": config_yaml},
        {"name": "CDARTS_MLFLOW_PARENT_RUN_ID", "value": parent_run_id},
        {"name": "CDARTS_KFP_RUN_ID", "value": kfp_run_id},
    ]
    if checkpoint_mirror:
        env.append({"name": "CDARTS_CHECKPOINT_MIRROR", "value": checkpoint_mirror})
    if settings.scratch_size:
        env.append({"name": "TMPDIR", "value": SCRATCH_PATH})
    if settings.settings_config_map:
        map_name = settings.settings_config_map
        env += [
            {"name": key, "valueFrom": {"configMapKeyRef": {"name": map_name, "key": key, "optional": True}}}
            for key in SETTINGS_KEYS
        ]
    # Credentials only as references, optional as in the KFP tasks (a cluster without them runs untracked).
    secrets: list[tuple[str, str, str]] = []
    if settings.s3_secret:
        access, secret = settings.s3_secret_fields
        secrets += [("AWS_ACCESS_KEY_ID", settings.s3_secret, access)]
        secrets += [("AWS_SECRET_ACCESS_KEY", settings.s3_secret, secret)]
    if settings.mlflow_secret:
        secrets += [(key, settings.mlflow_secret, key) for key in MLFLOW_SECRET_KEYS]
    env += [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
        for name, secret, key in secrets
    ]
    return env


def _pod_patch(settings: TrainJobSettings) -> dict[str, Any]:
    """What the runtime's node pods get beyond the trainer fields: labels, annotations,
    scheduling, pull secrets and a memory-backed /dev/shm (DataLoader workers share batches there)."""
    volumes: list[dict[str, Any]] = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}}]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if settings.scratch_size:
        claim: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": settings.scratch_size}},
        }
        if settings.scratch_storage_class:
            claim["storageClassName"] = settings.scratch_storage_class
        volumes.append({"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": claim}}})
        mounts.append({"name": "scratch", "mountPath": SCRATCH_PATH})
    spec: dict[str, Any] = {"volumes": volumes, "containers": [{"name": NODE, "volumeMounts": mounts}]}
    if settings.tolerations:
        spec["tolerations"] = [dict(toleration) for toleration in settings.tolerations]
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    metadata: dict[str, Any] = {"labels": {**settings.pod_labels, **POD_LABELS}}
    if settings.pod_annotations:
        metadata["annotations"] = dict(settings.pod_annotations)
    return {"metadata": metadata, "spec": spec}


def build_trainjob(
    settings: TrainJobSettings,
    name: str,
    nodes: int,
    gpus_per_node: int,
    dataset_uri: str,
    output_uri: str,
    config_yaml: str,
    checkpoint_mirror: str | None,
    parent_run_id: str,
    kfp_run_id: str,
    owner: PodOwner | None,
) -> dict[str, Any]:
    """The TrainJob body: ``nodes`` pods of ``gpus_per_node`` GPUs (0: one CPU process per node)
    running the search of ``config_yaml`` on the dataset at ``dataset_uri`` (``s3://`` prefix),
    rank 0 publishing the output directory to ``output_uri`` (``s3://`` prefix)."""
    if nodes < 1 or gpus_per_node < 0:
        raise TrainJobError(f"a TrainJob needs nodes >= 1 and gpus_per_node >= 0 (got {nodes} and {gpus_per_node})")
    for uri in (dataset_uri, output_uri):
        if not uri.startswith("s3://"):
            raise TrainJobError(f"the TrainJob's nodes read and write S3 only; {uri!r} is not an s3:// location")
    check_name(name, nodes)
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
        "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
    }
    if gpus_per_node:
        for bound in resources.values():
            bound[settings.accelerator_resource] = str(gpus_per_node)
    script = NODE_SCRIPT + (MIRROR_ARGUMENT if checkpoint_mirror else "")
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {key: value for key, value in POD_LABELS.items() if key.startswith("app.kubernetes.io/")},
        "annotations": {"cdarts.io/kfp-run-id": kfp_run_id, "cdarts.io/output-uri": output_uri},
    }
    if settings.namespace:
        metadata["namespace"] = settings.namespace
    if owner is not None:
        # No blockOwnerDeletion: setting it needs delete rights on the owner pod, and nothing waits on it.
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": owner.name, "uid": owner.uid}]
    node_patch = {"name": NODE, "template": {"spec": {"template": _pod_patch(settings)}}}
    spec: dict[str, Any] = {
        "runtimeRef": {"apiGroup": API_GROUP, "kind": "ClusterTrainingRuntime", "name": settings.runtime},
        "trainer": {
            "image": settings.image,
            "numNodes": nodes,
            "numProcPerNode": max(gpus_per_node, 1),
            "resourcesPerNode": resources,
            "command": ["/bin/sh", "-c", script],
            "env": _env(settings, dataset_uri, output_uri, config_yaml, checkpoint_mirror, parent_run_id, kfp_run_id),
        },
        "runtimePatches": [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [node_patch]}}},
            }
        ],
    }
    if settings.timeout_seconds:
        spec["activeDeadlineSeconds"] = settings.timeout_seconds
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "TrainJob", "metadata": metadata, "spec": spec}
