"""What ``submit`` and ``gitops sync`` create runs from: by default a pipeline version stored on
the KFP server for the code being run (uploaded if absent), else an existing version by name, or
the compiled spec sent with each run (``--inline``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cdarts.cli.errors import fail

if TYPE_CHECKING:
    from pipelines.pipeline_versions import PipelineStore, UploadedVersion
    from pipelines.submit import RunSource

InlineOption = Annotated[
    bool,
    typer.Option(
        "--inline",
        help="Send the compiled spec with the run instead of creating it from a stored pipeline version.",
    ),
]
PipelineVersionOption = Annotated[
    str | None,
    typer.Option(
        "--pipeline-version",
        help="Create the run from this existing version of the pipeline (nothing is compiled or uploaded).",
    ),
]


def check_source_flags(inline: bool, pipeline_version: str | None) -> None:
    if inline and pipeline_version is not None:
        raise fail("--inline and --pipeline-version exclude each other")


def upload_state(uploaded: UploadedVersion) -> str:
    return "uploaded" if uploaded.created else "already uploaded, reused"


def run_source(
    store: PipelineStore | None,
    pipeline: str,
    package: Path,
    pipeline_version: str | None,
    version_name: str | None = None,
) -> RunSource:
    """The package itself when ``store`` is None (inline), else the version named
    ``pipeline_version`` (which must exist), else the version of ``package`` named
    ``version_name`` (default: after the code), uploaded if absent. Prints the version used."""
    from pipelines.pipeline_versions import default_version_name

    if store is None:
        return package
    pipeline_name = f"cdarts-{pipeline}"
    if pipeline_version is not None:
        ref, state = store.version(pipeline_name, pipeline_version), "existing"
    else:
        uploaded = store.upload(pipeline_name, package, version_name or default_version_name(package))
        ref, state = uploaded.ref, upload_state(uploaded)
    typer.echo(f"pipeline version: {pipeline_name} {ref.name} (id {ref.version_id}; {state})")
    return ref
