"""Options shared by the commands that compile a pipeline (compile, submit, gitops sync, pipeline
upload): a cluster settings file, and flags that override single values of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cdarts.cli.errors import fail

if TYPE_CHECKING:
    from pipelines.options import PipelineOptions

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


@dataclass
class CompileFlags:
    """The flags every compiling command has (None / empty: not given, the file's value stays)."""

    cluster_settings: Path | None = None
    allow_unpinned_images: bool = False
    images: list[str] | None = None
    accelerator_type: str | None = None
    node_selector: list[str] | None = None
    tolerations: list[str] | None = None
    s3_secret: str | None = None
    s3_secret_keys: str | None = None
    mlflow_secret: str | None = None
    settings_config_map: str | None = None
    pipeline_root: str | None = None


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


def _flag_settings(flags: CompileFlags) -> dict[str, Any]:
    """The flags given, as keys of the cluster settings file."""
    raw: dict[str, Any] = {}
    if flags.images:
        chosen = pairs(flags.images, "--image")
        unknown = set(chosen) - {"gpu", "cpu"}
        if unknown:
            raise fail(f"--image takes gpu=REF or cpu=REF, not {sorted(unknown)[0]}=...")
        raw["images"] = chosen
    if flags.node_selector:
        raw["node_selector"] = pairs(flags.node_selector, "--node-selector")
    if flags.tolerations:
        raw["tolerations"] = [
            {"key": key, "operator": "Equal", "value": value} if value else {"key": key}
            for key, _, value in (t.partition("=") for t in flags.tolerations)
        ]
    if flags.s3_secret_keys is not None:
        fields = tuple(part.strip() for part in flags.s3_secret_keys.split(","))
        if len(fields) != 2 or not all(fields):
            raise fail(f"--s3-secret-keys {flags.s3_secret_keys!r} must name two fields, ACCESS,SECRET")
        raw["s3_secret_keys"] = list(fields)
    for name in ("accelerator_type", "pipeline_root"):
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


def pipeline_options(flags: CompileFlags, extra: dict[str, Any] | None = None) -> PipelineOptions:
    """The compile options: defaults, then the ``--cluster-settings`` file, then the flags and
    ``extra`` (more keys of the settings file, from command-specific flags)."""
    import yaml

    from pipelines.cluster_settings import parse_cluster_settings, pipeline_options_from
    from pipelines.options import PipelineOptions

    raw: dict[str, Any] = {}
    where = "command line"
    if flags.cluster_settings is not None:
        path = flags.cluster_settings
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise fail(f"{path}: cannot read ({error.strerror})") from None
        except (UnicodeDecodeError, yaml.YAMLError):
            raise fail(f"{path}: not valid UTF-8 YAML") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise fail(f"{path}: cluster settings must be a YAML mapping")
        raw.update(loaded or {})
        where = str(path)
    explicit = {**_flag_settings(flags), **(extra or {})}
    raw.update(explicit)
    # Null values in the file mean "none" for the secrets and the ConfigMap, "unset" otherwise.
    settings = parse_cluster_settings(raw, where)
    options = pipeline_options_from(settings, PipelineOptions())
    for name in ("s3_secret", "mlflow_secret", "settings_config_map"):
        if name in raw and raw[name] is None:
            options = PipelineOptions(**{**options.__dict__, name: None})
    return options
