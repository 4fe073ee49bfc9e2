"""Options shared by the commands that compile a pipeline (compile, submit, gitops sync)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

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
ImageOption = Annotated[
    list[str] | None, typer.Option("--image", help="gpu=REF or cpu=REF: image for the GPU or CPU steps (repeatable).")
]
AcceleratorOption = Annotated[str, typer.Option(help="Kubernetes GPU resource name.")]
NodeSelectorOption = Annotated[list[str] | None, typer.Option(help="label=value for GPU steps (repeatable).")]
TolerationOption = Annotated[
    list[str] | None, typer.Option(help="Taint key tolerated by GPU steps, key or key=value (repeatable).")
]
S3SecretOption = Annotated[str, typer.Option(help="Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.")]
S3SecretKeysOption = Annotated[
    str,
    typer.Option(
        help="The S3 secret's two field names, ACCESS,SECRET (accesskey,secretkey for mlpipeline-minio-artifact)."
    ),
]
MlflowSecretOption = Annotated[str, typer.Option(help="Secret with MLflow credentials.")]
SettingsConfigMapOption = Annotated[
    str, typer.Option(help="ConfigMap with CDARTS_MLFLOW_TRACKING_URI and CDARTS_S3_ENDPOINT ('' for none).")
]
PipelineRootOption = Annotated[str | None, typer.Option(help="Pipeline root, e.g. minio://mlpipeline/v2/artifacts.")]


def check_pipeline(name: str) -> None:
    if name not in ("search", "retrain"):
        raise fail(f"unknown pipeline {name!r}; choose search or retrain")


def genotype_argument(spec: str) -> str:
    """Resolve a genotype name/file/string here, so the pipeline gets self-contained JSON."""
    from cdarts.architecture import resolve_architecture

    return resolve_architecture(spec).to_json()


def _pairs(values: list[str], what: str) -> dict[str, str]:
    result = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise fail(f"{what} {value!r} must look like key=value")
        result[key] = rest
    return result


def pipeline_options(
    images: list[str],
    accelerator_type: str,
    node_selector: list[str],
    tolerations: list[str],
    s3_secret: str,
    mlflow_secret: str,
    pipeline_root: str | None,
    s3_secret_keys: str = "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY",
    settings_config_map: str = "cdarts-settings",
) -> PipelineOptions:
    from pipelines.options import PipelineOptions, Toleration

    chosen = _pairs(images, "--image")
    unknown = set(chosen) - {"gpu", "cpu"}
    if unknown:
        raise fail(f"--image takes gpu=REF or cpu=REF, not {sorted(unknown)[0]}=...")
    fields = tuple(part.strip() for part in s3_secret_keys.split(","))
    if len(fields) != 2 or not all(fields):
        raise fail(f"--s3-secret-keys {s3_secret_keys!r} must name two fields, ACCESS,SECRET")
    defaults = PipelineOptions()
    parsed_tolerations = tuple(
        Toleration(key, "Equal", value) if value else Toleration(key)
        for key, _, value in (t.partition("=") for t in tolerations)
    )
    return PipelineOptions(
        gpu_image=chosen.get("gpu", defaults.gpu_image),
        cpu_image=chosen.get("cpu", defaults.cpu_image),
        accelerator_type=accelerator_type,
        node_selector=_pairs(node_selector, "--node-selector"),
        tolerations=parsed_tolerations or defaults.tolerations,
        s3_secret=s3_secret or None,
        s3_secret_fields=(fields[0], fields[1]),
        mlflow_secret=mlflow_secret or None,
        settings_config_map=settings_config_map or None,
        pipeline_root=pipeline_root,
    )
