"""Compile-time options of the pipelines: images, scheduling, resources, secrets, retries, timeouts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kfp import dsl

from stages.images import CPU_IMAGE, GPU_IMAGE

DAY = 24 * 3600


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: Literal["Equal", "Exists"] = "Exists"
    value: str | None = None
    effect: Literal["NoExecute", "NoSchedule", "PreferNoSchedule"] | None = "NoSchedule"

    def to_json(self) -> dict[str, Any]:
        """The Kubernetes toleration object."""
        fields = {"key": self.key, "operator": self.operator, "value": self.value, "effect": self.effect}
        return {name: value for name, value in fields.items() if value is not None}


@dataclass(frozen=True)
class DataVolume:
    """A PersistentVolumeClaim mounted where data_prep reads sources (``--data-pvc NAME:/data``)."""

    claim: str
    mount_path: str


@dataclass(frozen=True)
class PipelineOptions:
    """What is fixed when a pipeline is compiled (the rest are run-time parameters).

    Secrets are referenced by name only: the S3 secret holds the access key and secret key under
    the two field names of ``s3_secret_fields`` (``accesskey``/``secretkey`` in Kubeflow Pipelines'
    own ``mlpipeline-minio-artifact``), the MLflow one ``MLFLOW_TRACKING_USERNAME`` and
    ``MLFLOW_TRACKING_PASSWORD``. Endpoints come from the ``settings_config_map`` ConfigMap of the
    run's namespace (``CDARTS_MLFLOW_TRACKING_URI``, ``CDARTS_S3_ENDPOINT``). All are optional at run time
    (a cluster without them still runs, untracked). Every task carries the pod label
    ``cdarts.io/pipeline-task: "true"``, which the NetworkPolicies in ``k8s/`` admit, plus
    ``pod_labels`` (a Kueue ``kueue.x-k8s.io/queue-name``, a cost centre) and ``pod_annotations``.

    GPU tasks ask for CPU and memory per GPU: a run with ``gpus=4`` gets four times
    ``gpu_cpu_request`` etc. ``node_selector`` and ``tolerations`` are the defaults of the
    pipeline's run-time parameters of the same names (a run or a retrain request may replace
    them). Timeouts are per task attempt (the pod's ``activeDeadlineSeconds``; 0: none), the
    pipeline deadline and TTL are for the whole run (None: the cluster's defaults).
    ``baseline_parallelism`` caps how many random baselines run at once (the ParallelFor's
    parallelism; 0: no cap), for a GPU quota smaller than the baselines asked for.
    """

    gpu_image: str = GPU_IMAGE
    cpu_image: str = CPU_IMAGE
    accelerator_type: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = (Toleration("nvidia.com/gpu"),)
    image_pull_secrets: tuple[str, ...] = ()
    s3_secret: str | None = "cdarts-s3"
    s3_secret_fields: tuple[str, str] = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    mlflow_secret: str | None = "cdarts-mlflow"
    settings_config_map: str | None = "cdarts-settings"
    pipeline_root: str | None = None
    gpu_cpu_request: str = "4"  # per GPU
    gpu_cpu_limit: str = "8"  # per GPU
    gpu_memory_request: str = "16G"  # per GPU
    gpu_memory_limit: str = "32G"  # per GPU
    shm_size: str = "8Gi"
    cpu_task_cpu_limit: str = "2"
    cpu_task_memory_limit: str = "8G"
    scratch_size: str | None = None  # a generic ephemeral volume at /scratch (TMPDIR) of this size
    scratch_storage_class: str | None = None
    data_volumes: tuple[DataVolume, ...] = ()
    pod_labels: dict[str, str] = field(default_factory=dict)
    pod_annotations: dict[str, str] = field(default_factory=dict)
    gpu_task_timeout_seconds: int = 7 * DAY
    cpu_task_timeout_seconds: int = 6 * 3600
    pipeline_deadline_seconds: int | None = None
    pipeline_ttl_seconds: int | None = None
    retries: int = 3
    retry_backoff: str = "60s"
    enable_caching: bool = True
    baseline_parallelism: int = 0  # random baselines trained at once; 0: all of them


def pipeline_config(options: PipelineOptions) -> dsl.PipelineConfig:
    """The run-level settings: a deadline for the whole run and how long its pods are kept."""
    return dsl.PipelineConfig(
        active_deadline_seconds=options.pipeline_deadline_seconds,
        ttl_seconds_after_finished=options.pipeline_ttl_seconds,
    )
