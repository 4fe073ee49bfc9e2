"""Compile-time options of the pipelines: images, scheduling, resources, secrets, retries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from stages.images import CPU_IMAGE, GPU_IMAGE


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: Literal["Equal", "Exists"] = "Exists"
    value: str | None = None
    effect: Literal["NoExecute", "NoSchedule", "PreferNoSchedule"] | None = "NoSchedule"


@dataclass(frozen=True)
class PipelineOptions:
    """What is fixed when a pipeline is compiled (the rest are run-time parameters).

    Secrets are referenced by name only: the S3 secret holds the access key and secret key under
    the two field names of ``s3_secret_fields`` (``accesskey``/``secretkey`` in Kubeflow Pipelines'
    own ``mlpipeline-minio-artifact``), the MLflow one ``MLFLOW_TRACKING_USERNAME`` and
    ``MLFLOW_TRACKING_PASSWORD``. Endpoints come from the ``settings_config_map`` ConfigMap of the
    run's namespace (``CDARTS_MLFLOW_TRACKING_URI``, ``CDARTS_S3_ENDPOINT``). All are optional at run time
    (a cluster without them still runs, untracked). Every task carries the pod label
    ``cdarts.io/pipeline-task: "true"``, which the NetworkPolicies in ``k8s/`` admit.
    """

    gpu_image: str = GPU_IMAGE
    cpu_image: str = CPU_IMAGE
    accelerator_type: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = (Toleration("nvidia.com/gpu"),)
    s3_secret: str | None = "cdarts-s3"
    s3_secret_fields: tuple[str, str] = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    mlflow_secret: str | None = "cdarts-mlflow"
    settings_config_map: str | None = "cdarts-settings"
    pipeline_root: str | None = None
    gpu_cpu_request: str = "4"
    gpu_cpu_limit: str = "8"
    gpu_memory_request: str = "16G"
    gpu_memory_limit: str = "32G"
    shm_size: str = "8Gi"
    cpu_task_cpu_limit: str = "2"
    cpu_task_memory_limit: str = "8G"
    retries: int = 3
    retry_backoff: str = "60s"
    enable_caching: bool = True
