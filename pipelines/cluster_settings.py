"""Cluster settings: every compile-time option of the pipelines as one typed YAML file.

``cdarts compile``, ``cdarts submit``, ``cdarts gitops sync`` and ``cdarts pipeline upload`` take
``--cluster-settings FILE``; a platform team keeps one such file per cluster (in git, or in the
trigger's ConfigMap). Command-line flags override single values. Example::

    images: {gpu: registry.example.com/cdarts-gpu@sha256:..., cpu: registry.example.com/cdarts-cpu@sha256:...}
    image_pull_secrets: [regcred]
    pod_labels: {kueue.x-k8s.io/queue-name: gpu-queue, cost-centre: nas-research}
    data_volumes: ["datasets:/data"]
    scratch: {size: 200Gi, storage_class: local-ssd}
    cpu_per_gpu: "6"
    memory_per_gpu: 24G
    gpu_task_timeout: 3d
    pipeline_ttl: 7d
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cdarts.errors import ConfigError
from cdarts.safe_yaml import load_yaml
from cdarts.task_resources import check_quantity
from pipelines.options import DataVolume, PipelineOptions, Toleration

MAX_SETTINGS_BYTES = 1 << 20
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PINNED = re.compile(r"@sha256:[0-9a-f]{64}$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def parse_duration(text: str | int, what: str) -> int:
    """``90``, ``90s``, ``30m``, ``6h``, ``7d`` -> seconds (``0``: none)."""
    match = _DURATION.match(str(text).strip())
    if match is None:
        raise ConfigError(f"{what} {text!r} is not a duration such as 90s, 30m, 6h or 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_data_volume(text: str) -> DataVolume:
    """``CLAIM:/mount/path`` -> DataVolume."""
    claim, sep, mount_path = text.partition(":")
    if not sep or not _K8S_NAME.match(claim) or not mount_path.startswith("/"):
        raise ConfigError(f"data volume {text!r} must look like CLAIM:/mount/path (a PVC name and an absolute path)")
    return DataVolume(claim, mount_path)


def is_pinned(image: str) -> bool:
    """True for an image reference pinned by digest (``...@sha256:<64 hex>``)."""
    return bool(_PINNED.search(image))


class TolerationSetting(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1)
    operator: Literal["Equal", "Exists"] = "Exists"
    value: str | None = None
    effect: Literal["NoExecute", "NoSchedule", "PreferNoSchedule"] | None = "NoSchedule"


class ScratchSetting(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    size: str
    storage_class: str | None = None

    @field_validator("size")
    @classmethod
    def _size(cls, value: str) -> str:
        return check_quantity(value, "scratch size")


class ClusterSettings(BaseModel):
    """The file's schema; unset keys keep :class:`PipelineOptions`' defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    images: dict[Literal["gpu", "cpu"], str] = Field(default_factory=dict)
    allow_unpinned_images: bool = False
    accelerator_type: str | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[TolerationSetting] | None = None
    image_pull_secrets: list[str] | None = None
    s3_secret: str | None = None
    s3_secret_keys: tuple[str, str] | None = None
    mlflow_secret: str | None = None
    settings_config_map: str | None = None
    pipeline_root: str | None = None
    cpu_per_gpu: str | None = None
    cpu_limit_per_gpu: str | None = None
    memory_per_gpu: str | None = None
    memory_limit_per_gpu: str | None = None
    shm_size: str | None = None
    scratch: ScratchSetting | None = None
    data_volumes: list[str] | None = None
    pod_labels: dict[str, str] | None = None
    pod_annotations: dict[str, str] | None = None
    gpu_task_timeout: str | int | None = None
    cpu_task_timeout: str | int | None = None
    pipeline_deadline: str | int | None = None
    pipeline_ttl: str | int | None = None
    retries: int | None = Field(default=None, ge=0, le=20)
    retry_backoff: str | int | None = None
    enable_caching: bool | None = None
    baseline_parallelism: int | None = Field(default=None, ge=0, le=1000)

    @field_validator("cpu_per_gpu", "cpu_limit_per_gpu", "memory_per_gpu", "memory_limit_per_gpu", "shm_size")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        return None if value is None else check_quantity(value, "resource quantity")


def load_cluster_settings(path: Path) -> ClusterSettings:
    """Read and validate a settings file; one-line :class:`ConfigError` naming the file otherwise."""
    try:
        if path.stat().st_size > MAX_SETTINGS_BYTES:
            raise ConfigError(f"{path}: a cluster settings file must be smaller than 1 MiB")
        raw = load_yaml(path.read_text(encoding="utf-8"), f"cluster settings {path}")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    except (UnicodeDecodeError, yaml.YAMLError):
        raise ConfigError(f"{path}: not valid UTF-8 YAML") from None
    return parse_cluster_settings(raw if raw is not None else {}, str(path))


def parse_cluster_settings(raw: Any, where: str) -> ClusterSettings:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: cluster settings must be a YAML mapping")
    try:
        return ClusterSettings.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}: {location}: {message}") from None
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def pipeline_options_from(settings: ClusterSettings, base: PipelineOptions | None = None) -> PipelineOptions:
    """``base`` (the defaults) with every key the settings set; images unpinned by digest are
    refused unless ``allow_unpinned_images``."""
    base = base or PipelineOptions()
    changes: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if value is not None:
            changes[name] = value

    put("gpu_image", settings.images.get("gpu"))
    put("cpu_image", settings.images.get("cpu"))
    put("accelerator_type", settings.accelerator_type)
    put("node_selector", settings.node_selector)
    if settings.tolerations is not None:
        changes["tolerations"] = tuple(Toleration(**t.model_dump()) for t in settings.tolerations)
    put("image_pull_secrets", tuple(settings.image_pull_secrets) if settings.image_pull_secrets is not None else None)
    put("s3_secret", settings.s3_secret)
    put("s3_secret_fields", settings.s3_secret_keys)
    put("mlflow_secret", settings.mlflow_secret)
    put("settings_config_map", settings.settings_config_map)
    put("pipeline_root", settings.pipeline_root)
    put("gpu_cpu_request", settings.cpu_per_gpu)
    put("gpu_cpu_limit", settings.cpu_limit_per_gpu)
    put("gpu_memory_request", settings.memory_per_gpu)
    put("gpu_memory_limit", settings.memory_limit_per_gpu)
    put("shm_size", settings.shm_size)
    if settings.scratch is not None:
        changes["scratch_size"] = settings.scratch.size
        changes["scratch_storage_class"] = settings.scratch.storage_class
    if settings.data_volumes is not None:
        changes["data_volumes"] = tuple(parse_data_volume(v) for v in settings.data_volumes)
    put("pod_labels", settings.pod_labels)
    put("pod_annotations", settings.pod_annotations)
    for field_name, option in (
        ("gpu_task_timeout", "gpu_task_timeout_seconds"),
        ("cpu_task_timeout", "cpu_task_timeout_seconds"),
        ("pipeline_deadline", "pipeline_deadline_seconds"),
        ("pipeline_ttl", "pipeline_ttl_seconds"),
    ):
        value = getattr(settings, field_name)
        if value is not None:
            changes[option] = parse_duration(value, field_name.replace("_", " "))
    if settings.retry_backoff is not None:
        changes["retry_backoff"] = f"{parse_duration(settings.retry_backoff, 'retry backoff')}s"
    put("retries", settings.retries)
    put("enable_caching", settings.enable_caching)
    put("baseline_parallelism", settings.baseline_parallelism)
    options = PipelineOptions(**{**base.__dict__, **changes})
    if not settings.allow_unpinned_images:
        check_images_pinned(options)
    return options


def check_images_pinned(options: PipelineOptions) -> None:
    """Refuse images not pinned by digest: a tag can be moved, or never have been published."""
    for role, image in (("gpu", options.gpu_image), ("cpu", options.cpu_image)):
        if not is_pinned(image):
            raise ConfigError(
                f"the {role} image {image} is not pinned by digest; give --image {role}=REPO@sha256:... "
                "(see README, Building and publishing the images) or opt out with --allow-unpinned-images"
            )
