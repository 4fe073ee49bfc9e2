"""The root ``cdarts`` command."""

from __future__ import annotations

from typing import Annotated

import typer

from cdarts import __version__
from cdarts.cli import genotype, gitops, lineage, model, pipeline, pipeline_upload, registry, services, stage, submit

app = typer.Typer(
    name="cdarts",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
    help="CDARTS cyclic differentiable architecture search, as pipeline stages.",
)
app.add_typer(stage.app, name="stage")
app.add_typer(genotype.app, name="genotype")
app.add_typer(model.app, name="model")
app.add_typer(services.app, name="services")
app.add_typer(gitops.app, name="gitops")
app.add_typer(registry.app, name="registry")
app.add_typer(pipeline_upload.app, name="pipeline")
app.command("run")(pipeline.run)
app.command("compile")(pipeline.compile_command)
app.command("submit")(submit.submit)
app.command("lineage")(lineage.lineage)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cdarts {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """CDARTS cyclic differentiable architecture search, as pipeline stages."""


def main() -> None:
    app()
