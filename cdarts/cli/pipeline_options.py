"""Options shared by the commands that compile a pipeline (compile, submit, gitops sync, pipeline
upload): a cluster settings file, and flags that override single values of it."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from cdarts.cli.errors import fail

if TYPE_CHECKING:
    from pipelines.options import PipelineOptions

R = TypeVar("R")

PipelineOption = Annotated[str, typer.Option("--pipeline", "-p", help="search (the full workflow) or retrain.")]
GenotypeOption = Annotated[
    str,
    typer.Option(
        "--genotype",
        "-g",
        help="retrain pipeline: architecture name, genotype file, Genotype(...), arch (|op~0|+...) or chain string.",
    ),
]
ClusterSettingsOption = Annotated[
    Path | None,
    typer.Option(
        "--cluster-settings",
        help="YAML file of every compile-time setting (images, pull secrets, labels, volumes, timeouts, ...; "
        "see pipelines/cluster_settings.py). Flags override its values.",
    ),
]
AllowUnpinnedOption = Annotated[
    bool,
    typer.Option(
        "--allow-unpinned-images",
        help="Compile with images that are not pinned by digest (refused otherwise: tags move or were never "
        "published).",
    ),
]
ImageOption = Annotated[
    list[str] | None, typer.Option("--image", help="gpu=REF or cpu=REF: image for the GPU or CPU steps (repeatable).")
]
AcceleratorOption = Annotated[str | None, typer.Option(help="Kubernetes GPU resource name (default: nvidia.com/gpu).")]
NodeSelectorOption = Annotated[list[str] | None, typer.Option(help="label=value for GPU steps (repeatable).")]
TolerationOption = Annotated[
    list[str] | None, typer.Option(help="Taint key tolerated by GPU steps, key or key=value (repeatable).")
]
S3SecretOption = Annotated[
    str | None, typer.Option(help="Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (default: cdarts-s3).")
]
S3SecretKeysOption = Annotated[
    str | None,
    typer.Option(
        help="The S3 secret's two field names, ACCESS,SECRET (accesskey,secretkey for mlpipeline-minio-artifact)."
    ),
]
MlflowSecretOption = Annotated[
    str | None, typer.Option(help="Secret with MLflow credentials (default: cdarts-mlflow).")
]
SettingsConfigMapOption = Annotated[
    str | None,
    typer.Option(
        help="ConfigMap with CDARTS_MLFLOW_TRACKING_URI and CDARTS_S3_ENDPOINT ('' for none) "
        "(default: cdarts-settings)."
    ),
]
PipelineRootOption = Annotated[str | None, typer.Option(help="Pipeline root, e.g. minio://mlpipeline/v2/artifacts.")]


ImagePullSecretOption = Annotated[list[str] | None, typer.Option(help="Secret for pulling the images (repeatable).")]
CpuPerGpuOption = Annotated[
    str | None, typer.Option(help="CPU request per GPU of a GPU task (default 4; the limit is twice it).")
]
MemoryPerGpuOption = Annotated[
    str | None, typer.Option(help="Memory request per GPU of a GPU task (default 16G; the limit is twice it).")
]
DataPvcOption = Annotated[
    list[str] | None, typer.Option(help="CLAIM:/path: mount a PersistentVolumeClaim for data_prep (repeatable).")
]
ScratchSizeOption = Annotated[
    str | None, typer.Option(help="Request a scratch volume of this size at /scratch (TMPDIR) in every task.")
]
PodLabelOption = Annotated[
    list[str] | None, typer.Option(help="key=value label on every task pod, e.g. a Kueue queue (repeatable).")
]
PodAnnotationOption = Annotated[list[str] | None, typer.Option(help="key=value annotation on every task pod.")]
GpuTaskTimeoutOption = Annotated[
    str | None, typer.Option(help="Per-attempt deadline of GPU tasks, e.g. 3d; 0: none (default 7d).")
]
CpuTaskTimeoutOption = Annotated[
    str | None, typer.Option(help="Per-attempt deadline of CPU tasks (0: none; default 6h).")
]
PipelineDeadlineOption = Annotated[str | None, typer.Option(help="Deadline of the whole run, e.g. 10d.")]
PipelineTtlOption = Annotated[str | None, typer.Option(help="Delete a finished run's pods after this, e.g. 1d.")]


@dataclass(frozen=True)
class CompileFlags:
    """The flags of every command that compiles a pipeline (compile, submit, gitops sync, pipeline
    upload), added to each by :func:`with_compile_flags`. None / False: not given, the cluster
    settings file's value (or the default) stays."""

    cluster_settings: Path | None = None
    allow_unpinned_images: bool = False
    image: list[str] | None = None
    image_pull_secret: list[str] | None = None
    accelerator_type: str | None = None
    node_selector: list[str] | None = None
    toleration: list[str] | None = None
    cpu_per_gpu: str | None = None
    memory_per_gpu: str | None = None
    data_pvc: list[str] | None = None
    scratch_size: str | None = None
    pod_label: list[str] | None = None
    pod_annotation: list[str] | None = None
    gpu_task_timeout: str | None = None
    cpu_task_timeout: str | None = None
    pipeline_deadline: str | None = None
    pipeline_ttl: str | None = None
    s3_secret: str | None = None
    s3_secret_keys: str | None = None
    mlflow_secret: str | None = None
    settings_config_map: str | None = None
    pipeline_root: str | None = None


NO_FLAGS = CompileFlags()  # the ``flags`` default of a decorated command (the decorator always passes them)

# The Typer option of each flag (CompileFlags' field names are the commands' parameter names).
_FLAG_OPTIONS: dict[str, Any] = {
    "cluster_settings": ClusterSettingsOption,
    "allow_unpinned_images": AllowUnpinnedOption,
    "image": ImageOption,
    "image_pull_secret": ImagePullSecretOption,
    "accelerator_type": AcceleratorOption,
    "node_selector": NodeSelectorOption,
    "toleration": TolerationOption,
    "cpu_per_gpu": CpuPerGpuOption,
    "memory_per_gpu": MemoryPerGpuOption,
    "data_pvc": DataPvcOption,
    "scratch_size": ScratchSizeOption,
    "pod_label": PodLabelOption,
    "pod_annotation": PodAnnotationOption,
    "gpu_task_timeout": GpuTaskTimeoutOption,
    "cpu_task_timeout": CpuTaskTimeoutOption,
    "pipeline_deadline": PipelineDeadlineOption,
    "pipeline_ttl": PipelineTtlOption,
    "s3_secret": S3SecretOption,
    "s3_secret_keys": S3SecretKeysOption,
    "mlflow_secret": MlflowSecretOption,
    "settings_config_map": SettingsConfigMapOption,
    "pipeline_root": PipelineRootOption,
}


def with_compile_flags(command: Callable[..., R]) -> Callable[..., R]:
    """Give a Typer command every :class:`CompileFlags` option; the command receives them as one
    keyword argument ``flags``. Written once here instead of in each command's signature."""
    signature = inspect.signature(command, eval_str=True)
    own = [parameter for name, parameter in signature.parameters.items() if name != "flags"]
    added = [
        inspect.Parameter(
            flag.name, inspect.Parameter.KEYWORD_ONLY, default=flag.default, annotation=_FLAG_OPTIONS[flag.name]
        )
        for flag in dataclasses.fields(CompileFlags)
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        values = {flag.name: kwargs.pop(flag.name, flag.default) for flag in dataclasses.fields(CompileFlags)}
        return command(*args, flags=CompileFlags(**values), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
    return wrapper


def check_pipeline(name: str) -> None:
    if name not in ("search", "retrain"):
        raise fail(f"unknown pipeline {name!r}; choose search or retrain")


def genotype_argument(spec: str) -> str:
    """Resolve a genotype name/file/string here, so the pipeline gets self-contained JSON."""
    from cdarts.architecture import resolve_architecture

    return resolve_architecture(spec).to_json()


def pairs(values: list[str], what: str) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}``; anything else is a one-line error naming ``what``."""
    result = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise fail(f"{what} {value!r} must look like key=value")
        result[key] = rest
    return result


def _twice(quantity: str, flag: str) -> str:
    from cdarts.task_resources import check_quantity, scale_quantity

    return scale_quantity(check_quantity(quantity, flag), 2)


def _flag_settings(flags: CompileFlags) -> dict[str, Any]:
    """The flags given, as keys of the cluster settings file."""
    raw: dict[str, Any] = {}
    if flags.image:
        chosen = pairs(flags.image, "--image")
        unknown = set(chosen) - {"gpu", "cpu"}
        if unknown:
            raise fail(f"--image takes gpu=REF or cpu=REF, not {sorted(unknown)[0]}=...")
        raw["images"] = chosen
    if flags.node_selector:
        raw["node_selector"] = pairs(flags.node_selector, "--node-selector")
    if flags.toleration:
        raw["tolerations"] = [
            {"key": key, "operator": "Equal", "value": value} if value else {"key": key}
            for key, _, value in (t.partition("=") for t in flags.toleration)
        ]
    if flags.s3_secret_keys is not None:
        fields = tuple(part.strip() for part in flags.s3_secret_keys.split(","))
        if len(fields) != 2 or not all(fields):
            raise fail(f"--s3-secret-keys {flags.s3_secret_keys!r} must name two fields, ACCESS,SECRET")
        raw["s3_secret_keys"] = list(fields)
    if flags.image_pull_secret:
        raw["image_pull_secrets"] = flags.image_pull_secret
    if flags.cpu_per_gpu is not None:
        raw["cpu_per_gpu"] = flags.cpu_per_gpu
        raw["cpu_limit_per_gpu"] = _twice(flags.cpu_per_gpu, "--cpu-per-gpu")
    if flags.memory_per_gpu is not None:
        raw["memory_per_gpu"] = flags.memory_per_gpu
        raw["memory_limit_per_gpu"] = _twice(flags.memory_per_gpu, "--memory-per-gpu")
    if flags.data_pvc:
        raw["data_volumes"] = flags.data_pvc
    if flags.scratch_size is not None:
        raw["scratch"] = {"size": flags.scratch_size}
    if flags.pod_label:
        raw["pod_labels"] = pairs(flags.pod_label, "--pod-label")
    if flags.pod_annotation:
        raw["pod_annotations"] = pairs(flags.pod_annotation, "--pod-annotation")
    for name in (
        "accelerator_type",
        "pipeline_root",
        "gpu_task_timeout",
        "cpu_task_timeout",
        "pipeline_deadline",
        "pipeline_ttl",
    ):
        if getattr(flags, name) is not None:
            raw[name] = getattr(flags, name)
    # '' switches a secret or the ConfigMap off; the settings file spells that as null.
    for name in ("s3_secret", "mlflow_secret", "settings_config_map"):
        value = getattr(flags, name)
        if value is not None:
            raw[name] = value or None
    if flags.allow_unpinned_images:
        raw["allow_unpinned_images"] = True
    return raw


def pipeline_options(flags: CompileFlags) -> PipelineOptions:
    """The compile options: defaults, then the ``--cluster-settings`` file, then the flags."""
    import yaml

    from cdarts.safe_yaml import load_yaml
    from pipelines.cluster_settings import parse_cluster_settings, pipeline_options_from
    from pipelines.options import PipelineOptions

    raw: dict[str, Any] = {}
    where = "command line"
    if flags.cluster_settings is not None:
        path = flags.cluster_settings
        try:
            loaded = load_yaml(path.read_text(encoding="utf-8"), f"cluster settings {path}")
        except OSError as error:
            raise fail(f"{path}: cannot read ({error.strerror})") from None
        except (UnicodeDecodeError, yaml.YAMLError):
            raise fail(f"{path}: not valid UTF-8 YAML") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise fail(f"{path}: cluster settings must be a YAML mapping")
        raw.update(loaded or {})
        where = str(path)
    raw.update(_flag_settings(flags))
    # Null values in the file mean "none" for the secrets and the ConfigMap, "unset" otherwise.
    settings = parse_cluster_settings(raw, where)
    options = pipeline_options_from(settings, PipelineOptions())
    for name in ("s3_secret", "mlflow_secret", "settings_config_map"):
        if name in raw and raw[name] is None:
            options = PipelineOptions(**{**options.__dict__, name: None})
    return options
