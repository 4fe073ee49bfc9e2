"""Retrain requests: the files under ``configs/retrain/`` that GitOps turns into KFP runs.

A request names a genotype and a training config::

    genotype: CDARTS_CIFAR          # reference name, Genotype(...) string or genotype JSON
    config: cifar10                 # preset name, or an inline mapping of a whole config
    overrides: [retrain.epochs=600] # dotted overrides applied to the config
    experiment: cdarts-retrain      # KFP experiment of the run
    gpus: 1                         # GPUs of the retrain task
    data_source: cifar10:s3://datasets/cifar-10-python.tar.gz   # where the pods read the data
    namespace: team-nas             # KFP namespace of the run (multi-user Kubeflow; default: the trigger's)
    node_selector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}  # where the GPU tasks run
    tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]

Its idempotency key is the file's git blob id (what ``git hash-object FILE`` prints: it changes
exactly when the file's bytes change) plus the file name, so a re-sync of an unchanged file
never submits again while every edit submits once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cdarts.architecture import resolve_architecture
from cdarts.config import ExperimentConfig, build_config, load_config, source_overrides
from cdarts.errors import CdartsError, ConfigError
from cdarts.safe_yaml import load_yaml

MAX_REQUEST_BYTES = 1 << 20


class Toleration(BaseModel):
    """A Kubernetes toleration of the GPU tasks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1)
    operator: Literal["Equal", "Exists"] = "Exists"
    value: str | None = None
    effect: Literal["NoExecute", "NoSchedule", "PreferNoSchedule"] | None = None


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    genotype: str = Field(min_length=1)
    config: str | dict[str, Any] = "cifar10"
    overrides: list[str] = Field(default_factory=list)
    experiment: str = Field(default="cdarts-retrain", min_length=1, max_length=128)
    gpus: int = Field(default=1, ge=1, le=64)
    description: str = ""
    data_source: str = ""  # as the pipeline's: digits, cifar10:s3://..., imagefolder:/data/... (into the config)
    namespace: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    node_selector: dict[str, str] | None = None  # None: the compiled pipeline's default
    tolerations: list[Toleration] | None = None


@dataclass(frozen=True)
class LoadedRequest:
    path: Path
    request: RetrainRequest
    experiment_config: ExperimentConfig
    genotype_json: str
    blob_id: str  # git blob SHA-1 of the file

    def idempotency_key(self, period: str | None = None) -> str:
        """``<blob id>:<file name>``, plus ``@<period>`` for scheduled retrains."""
        key = f"{self.blob_id}:{self.path.name}"
        return f"{key}@{period}" if period else key

    def pipeline_arguments(self, checkpoint_root: str = "") -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "genotype": self.genotype_json,
            "config": self.experiment_config.to_yaml(),
            "overrides": [],  # already applied to the config above
            "gpus": self.request.gpus,
            "checkpoint_root": checkpoint_root,
        }
        if self.request.node_selector is not None:
            arguments["node_selector"] = dict(self.request.node_selector)
        if self.request.tolerations is not None:
            arguments["tolerations"] = [t.model_dump(exclude_none=True) for t in self.request.tolerations]
        return arguments


def git_blob_id(data: bytes) -> str:
    """The id git gives these bytes as a blob (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def load_request(path: Path) -> LoadedRequest:
    """Read and fully validate a request (config, overrides and genotype resolved); raises
    :class:`ConfigError` with a one-line message naming the file."""
    try:
        if path.stat().st_size > MAX_REQUEST_BYTES:
            raise ConfigError(f"{path}: a retrain request must be smaller than 1 MiB")
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    try:
        raw = load_yaml(data.decode("utf-8"), f"retrain request {path}")
    except (UnicodeDecodeError, yaml.YAMLError):
        raise ConfigError(f"{path}: not valid UTF-8 YAML") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a retrain request must be a YAML mapping")
    try:
        request = RetrainRequest.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None
    try:
        # The data source is validated with the config (a bad one is refused before any submission).
        overrides = [*request.overrides, *source_overrides(request.data_source or None)]
        if isinstance(request.config, dict):
            experiment_config = build_config(request.config, overrides)
        else:
            experiment_config = load_config(request.config, overrides)
        genotype_json = resolve_architecture(request.genotype).to_json()
    except CdartsError as error:  # a bad config or genotype: name the file, keep one line
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{path}: {message}") from None
    return LoadedRequest(path, request, experiment_config, genotype_json, git_blob_id(data))


def request_files(directory: Path) -> list[Path]:
    """The request files of a directory (``*.yaml``/``*.yml``, not ``kustomization.yaml``), sorted."""
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory of retrain requests")
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in (".yaml", ".yml") and p.name != "kustomization.yaml" and p.is_file()
    )
