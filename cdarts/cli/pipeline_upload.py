"""``cdarts pipeline upload``: store a pipeline and a version of it on a KFP server, named after
the code, so that runs (``submit``, ``gitops sync``, the KFP UI) reference what they run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from cdarts.cli.errors import fail, handles_user_errors
from cdarts.cli.pipeline_options import (
    NO_FLAGS,
    CompileFlags,
    PipelineOption,
    check_pipeline,
    pipeline_options,
    with_compile_flags,
)
from cdarts.cli.pipeline_source import upload_state
from cdarts.cli.submit import HostOption, NamespaceOption

app = typer.Typer(no_args_is_help=True, help="Pipelines and pipeline versions stored on a KFP server.")

VersionNameOption = Annotated[
    str | None,
    typer.Option(
        help="Name of the version (default: git-<commit> of a clean checkout, else spec-<sha256 of the spec>)."
    ),
]


@app.command("upload")
@handles_user_errors
@with_compile_flags
def upload(
    host: HostOption,
    namespace: NamespaceOption = None,
    pipeline: PipelineOption = "search",
    version_name: VersionNameOption = None,
    package: Annotated[
        Path | None,
        typer.Option(help="Upload this compiled pipeline YAML instead (named spec-<sha256> by default)."),
    ] = None,
    flags: CompileFlags = NO_FLAGS,
) -> None:
    """Create the pipeline cdarts-<pipeline> if absent and a version of it holding the compiled
    spec; a version of that name that exists is reused, never duplicated."""
    check_pipeline(pipeline)
    from pipelines.compile import compile_pipeline
    from pipelines.pipeline_versions import PipelineStore, check_package, content_version_name, default_version_name

    pipeline_name = f"cdarts-{pipeline}"
    with tempfile.TemporaryDirectory() as tmp:
        if package is None:
            package = Path(tmp) / f"{pipeline_name}.yaml"
            compile_pipeline(pipeline, package, pipeline_options(flags))
            name = version_name or default_version_name(package)
        else:
            if flags != CompileFlags():
                raise fail("--package uploads a compiled file as it is; compile flags do not apply to it")
            check_package(package, pipeline_name)
            # Which commit the file was compiled from is unknown here: name it after its content.
            name = version_name or content_version_name(package)
        uploaded = PipelineStore(host, namespace).upload(pipeline_name, package, name)
    typer.echo(f"{pipeline_name} version {name}: {upload_state(uploaded)}")
    typer.echo(f"pipeline id: {uploaded.ref.pipeline_id}")
    typer.echo(f"version id: {uploaded.ref.version_id}")
    typer.echo(f"version name: {uploaded.ref.name}")
